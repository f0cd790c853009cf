//! `mlx_vlm/models/switch_layers.py`: mixture-of-experts layers whose
//! experts' weights are stacked `[num_experts, output_dims, input_dims]`
//! and applied to the experts a router chose (`mx.gather_mm` /
//! `mx.gather_qmm`).
//!
//! Differences from Python:
//! - `QuantizedSwitchLinear` is [`SwitchLinear`] in its quantized form, as
//!   mlx-rs's `Linear` holds `QuantizedLinear`: one field type quantized in
//!   place by `nn::quantize` ([`Quantizable`]), keeping Python's keys
//!   (`weight`, `scales`, `biases`, `bias`).
//! - `SwitchGLU.__call__`'s `weights`, `shared` and `residual` arguments
//!   (and `_combine`'s hyper-connection expansion) are left out: the
//!   families ported so far weight and sum the experts themselves. Its
//!   decode-block path (1 < length <= `DECODE_BLOCK_SIZE`) is ported with
//!   the kernels that run without Metal: quantized experts unsorted
//!   (Python: `exact_quantized_switch_linear` /
//!   `exact_quantized_selected_linear`), float experts one position at a
//!   time (Python: `linear.tokenwise`). The Metal-only fused kernels
//!   (`exact_affine_switch_gate_up`, `exact_affine_moe_down`) are not
//!   ported; Python falls back to the same paths without Metal.
//! - `MoE` (routed plus shared experts, distributed sharding) and
//!   `OffloadedSwitchGLU` (experts paged from disk) are not ported: no
//!   ported family uses them (`qwen3_vl_moe` has its own sparse block).
//! - No training mode: `stop_gradient` on the indices is not needed.
//! - On the CPU, float experts of another dtype than float32 (bf16, f16)
//!   are multiplied in float32 and the result cast back: MLX's CPU
//!   `gather_mm` takes float32 only, so Python fails there ("GatherMM::eval
//!   Currently only supports float32"). Other devices run the dtype as is.

use mlx_rs::nn::{GELU, GeluApprox, Param, QuantSpec, Quantizable, activations};
use mlx_rs::ops::{self, GatherMmOptions, GatherQmmOptions, QuantizationMode};
use mlx_rs::{Array, Dtype, idx, random};

use crate::{Error, Result};

/// Whether the current stream runs on the CPU.
fn on_cpu() -> Result<bool> {
    let device = mlx_rs::Stream::current()?.device()?;
    Ok(device.device_type()? == mlx_rs::DeviceType::Cpu)
}

/// Positions up to which a multi-token call takes the decode-block path
/// (Python: `linear.DECODE_BLOCK_SIZE`).
pub const DECODE_BLOCK_SIZE: i32 = 8;

/// The tokens of `x` (`[..., 1, 1, D]`) reordered so that their experts
/// `indices` (`[..., K]`) are sorted: `(x rows, sorted indices, inverse
/// order)` (Python: `_gather_sort`).
pub fn gather_sort(x: &Array, indices: &Array) -> Result<(Array, Array, Array)> {
    let m = indices.shape().last().copied().unwrap_or(1);
    let indices = indices.flatten(0, -1)?;
    let order = ops::argsort(&indices, Some(-1))?;
    let inv_order = ops::argsort(&order, Some(-1))?;
    let rows = ops::floor_divide(&order, m)?;
    let x = ops::take(&x.flatten(0, -3)?, &rows, 0)?;
    let sorted = ops::take(&indices, &order, 0)?;
    Ok((x, sorted, inv_order))
}

/// `x`'s rows back in their order before [`gather_sort`], unflattened to
/// `shape` when given (Python: `_scatter_unsort`).
pub fn scatter_unsort(x: &Array, inv_order: &Array, shape: Option<&[i32]>) -> Result<Array> {
    let x = ops::take(x, inv_order, 0)?;
    Ok(match shape {
        Some(shape) => ops::unflatten(&x, 0, shape)?,
        None => x,
    })
}

/// Whether `spec` is one of MLX's native weight formats (Python:
/// `quantized_verifier.supports_quantization`).
fn supports_quantization(spec: QuantSpec) -> bool {
    match spec.mode {
        QuantizationMode::Affine => {
            [2, 3, 4, 5, 6, 8].contains(&spec.bits) && [32, 64, 128].contains(&spec.group_size)
        }
        QuantizationMode::Mxfp4 => (spec.bits, spec.group_size) == (4, 32),
        QuantizationMode::Mxfp8 => (spec.bits, spec.group_size) == (8, 32),
        QuantizationMode::Nvfp4 => (spec.bits, spec.group_size) == (4, 16),
    }
}

/// One linear layer per expert, applied to the experts `indices` name
/// (Python: `SwitchLinear`, and `QuantizedSwitchLinear` once quantized).
/// Weights are `[num_experts, output_dims, input_dims]`.
#[derive(Debug, Clone, mlx_rs::Module)]
#[module(quantizable)]
pub struct SwitchLinear {
    /// `[num_experts, output_dims, input_dims]`; packed `uint32` when
    /// quantized.
    pub weight: Param,
    /// `[num_experts, output_dims]`, if the layer has a bias.
    pub bias: Option<Param>,
    /// Quantized only: one scale per group.
    pub scales: Option<Param>,
    /// Quantized (affine) only: one bias per group.
    pub biases: Option<Param>,
    /// Quantized only: how.
    #[module(skip)]
    pub quantization: Option<QuantSpec>,
}

impl SwitchLinear {
    /// Python: `SwitchLinear.__init__(input_dims, output_dims, num_experts,
    /// bias)`: weights uniform in `±sqrt(1 / input_dims)`, a zero bias.
    pub fn new(input_dims: i32, output_dims: i32, num_experts: i32, bias: bool) -> Result<Self> {
        let scale = (1.0 / f64::from(input_dims.max(1))).sqrt() as f32;
        let weight = random::uniform(
            -scale,
            scale,
            &[num_experts, output_dims, input_dims],
            Dtype::Float32,
            None,
        )?;
        let bias = if bias {
            Some(Param::new(ops::zeros(
                &[num_experts, output_dims],
                Dtype::Float32,
            )?))
        } else {
            None
        };
        Ok(SwitchLinear {
            weight: Param::new(weight),
            bias,
            scales: None,
            biases: None,
            quantization: None,
        })
    }

    /// Python: `QuantizedSwitchLinear.__init__(input_dims, output_dims,
    /// num_experts, bias, group_size, bits, mode)`: random weights
    /// quantized by `spec`, every parameter frozen.
    pub fn new_quantized(
        input_dims: i32,
        output_dims: i32,
        num_experts: i32,
        bias: bool,
        spec: QuantSpec,
    ) -> Result<Self> {
        let mut layer = SwitchLinear::new(input_dims, output_dims, num_experts, bias)?;
        layer.quantize(spec)?;
        Ok(layer)
    }

    /// Python: the `input_dims` property.
    pub fn input_dims(&self) -> i32 {
        match (self.quantization, &self.scales) {
            (Some(spec), Some(scales)) => scales.shape()[2] * spec.group_size,
            _ => self.weight.shape()[2],
        }
    }

    /// Python: the `output_dims` property.
    pub fn output_dims(&self) -> i32 {
        self.weight.shape()[1]
    }

    /// Python: the `num_experts` property.
    pub fn num_experts(&self) -> i32 {
        self.weight.shape()[0]
    }

    /// `x @ W[indices]^T + b[indices]` (Python: `SwitchLinear.__call__` /
    /// `QuantizedSwitchLinear.__call__`); `sorted_indices` says the
    /// indices are sorted.
    pub fn forward(&self, x: &Array, indices: &Array, sorted_indices: bool) -> Result<Array> {
        if self.weight.ndim() != 3 {
            return Err(Error::InvalidArgument(format!(
                "SwitchLinear weight has shape {:?}; expected [num_experts, output_dims, \
                 input_dims]",
                self.weight.shape()
            )));
        }
        let y = match (self.quantization, &self.scales) {
            (Some(spec), Some(scales)) => ops::gather_qmm(
                x,
                &self.weight,
                scales,
                self.biases.as_deref(),
                GatherQmmOptions {
                    lhs_indices: None,
                    rhs_indices: Some(indices),
                    transpose: true,
                    group_size: Some(spec.group_size),
                    bits: Some(spec.bits),
                    mode: spec.mode,
                    sorted_indices,
                },
            )?,
            _ => {
                // MLX's CPU `gather_mm` takes float32 only; there other
                // float dtypes run in float32 and come back in x's dtype.
                let upcast = x.dtype() != Dtype::Float32 && on_cpu()?;
                let (lhs, rhs) = if upcast {
                    (
                        x.as_type(Dtype::Float32)?,
                        self.weight.as_type(Dtype::Float32)?,
                    )
                } else {
                    (x.clone(), (*self.weight).clone())
                };
                let y = ops::gather_mm(
                    &lhs,
                    &rhs.swapaxes(-1, -2)?,
                    GatherMmOptions {
                        lhs_indices: None,
                        rhs_indices: Some(indices),
                        sorted_indices,
                    },
                )?;
                if upcast { y.as_type(x.dtype())? } else { y }
            }
        };
        match &self.bias {
            Some(bias) => {
                let b = ops::expand_dims(&ops::take(bias, indices, 0)?, -2)?;
                Ok(ops::add(&y, &b)?)
            }
            None => Ok(y),
        }
    }

    /// Whether the layer holds quantized weights in a native format
    /// (Python: `isinstance(linear, QuantizedSwitchLinear) and
    /// supports_quantization(linear)`).
    fn native_quantized(&self) -> bool {
        self.quantization.is_some_and(supports_quantization)
    }
}

impl Quantizable for SwitchLinear {
    /// Python: `SwitchLinear.to_quantized`: the stacked weight quantized
    /// along its input width, the bias kept.
    fn quantize(&mut self, spec: QuantSpec) -> Result<(), mlx_rs::Error> {
        let q = ops::quantize(
            &self.weight,
            ops::QuantizeOptions {
                group_size: Some(spec.group_size),
                bits: Some(spec.bits),
                mode: spec.mode,
                global_scale: None,
            },
        )?;
        let frozen = |a: Array| {
            let mut p = Param::new(a);
            p.set_frozen(true);
            p
        };
        self.weight = frozen(q.weights);
        self.scales = Some(frozen(q.scales));
        self.biases = q.biases.map(frozen);
        if let Some(bias) = &mut self.bias {
            bias.set_frozen(true);
        }
        self.quantization = Some(spec);
        Ok(())
    }

    /// Python: `quant_utils.dequantize_model` for `QuantizedSwitchLinear`.
    fn dequantize(&mut self) -> Result<(), mlx_rs::Error> {
        let (Some(spec), Some(scales)) = (self.quantization, &self.scales) else {
            return Ok(());
        };
        let weight = ops::dequantize(
            &self.weight,
            scales,
            self.biases.as_deref(),
            ops::DequantizeOptions {
                group_size: Some(spec.group_size),
                bits: Some(spec.bits),
                mode: spec.mode,
                global_scale: None,
                dtype: None,
            },
        )?;
        self.weight = Param::new(weight);
        self.scales = None;
        self.biases = None;
        self.quantization = None;
        Ok(())
    }

    fn quantization(&self) -> Option<QuantSpec> {
        self.quantization
    }
}

/// `silu(gate) * x` (Python: `SwiGLU`, calling `activations.swiglu`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SwiGLU;

impl SwiGLU {
    /// Python: `SwiGLU.__call__(x, gate)`.
    pub fn forward(&self, x: &Array, gate: &Array) -> Result<Array> {
        Ok(ops::multiply(&activations::silu(gate)?, x)?)
    }
}

/// A SwiGLU feed-forward network per expert (Python: `SwitchGLU`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct SwitchGLU {
    /// `input_dims → hidden_dims`, through the activation.
    pub gate_proj: SwitchLinear,
    /// `input_dims → hidden_dims`, the gated values.
    pub up_proj: SwitchLinear,
    /// `hidden_dims → input_dims`.
    pub down_proj: SwitchLinear,
    /// Python: `activation(x_up, x_gate)` (`SwiGLU()` unless given).
    #[module(skip)]
    pub activation: GluActivation,
}

/// A gated activation `f(x, gate)` as [`SwitchGLU`] takes it (Python: any
/// callable, e.g. `SwiGLU()` or Kimi-VL's `clipped_silu`).
pub type GluActivation = fn(&Array, &Array) -> Result<Array>;

/// [`SwiGLU`] as a [`GluActivation`].
fn swiglu(x: &Array, gate: &Array) -> Result<Array> {
    SwiGLU.forward(x, gate)
}

impl SwitchGLU {
    /// Python: `SwitchGLU.__init__(input_dims, hidden_dims, num_experts,
    /// activation=SwiGLU(), bias)`.
    pub fn new(input_dims: i32, hidden_dims: i32, num_experts: i32, bias: bool) -> Result<Self> {
        Self::with_activation(input_dims, hidden_dims, num_experts, swiglu, bias)
    }

    /// Python: `SwitchGLU.__init__(input_dims, hidden_dims, num_experts,
    /// activation, bias)`.
    pub fn with_activation(
        input_dims: i32,
        hidden_dims: i32,
        num_experts: i32,
        activation: GluActivation,
        bias: bool,
    ) -> Result<Self> {
        Ok(SwitchGLU {
            gate_proj: SwitchLinear::new(input_dims, hidden_dims, num_experts, bias)?,
            up_proj: SwitchLinear::new(input_dims, hidden_dims, num_experts, bias)?,
            down_proj: SwitchLinear::new(hidden_dims, input_dims, num_experts, bias)?,
            activation,
        })
    }

    /// Each token of `x` (`[..., D]`) through its experts `indices`
    /// (`[..., K]`), unweighted: `[..., K, D]` (Python:
    /// `SwitchGLU.__call__(x, indices)`). The expert rows are sorted first
    /// when there are at least 64 of them.
    pub fn forward(&self, x: &Array, indices: &Array) -> Result<Array> {
        let shape = x.shape();
        if x.ndim() == 3 && 1 < shape[1] && shape[1] <= DECODE_BLOCK_SIZE {
            return self.forward_decode_block(x, indices);
        }
        let x = ops::expand_dims(x, [-2, -3])?;
        let do_sort = indices.size() >= 64;
        let (x, idx, inv_order) = if do_sort {
            let (x, idx, inv) = gather_sort(&x, indices)?;
            (x, idx, Some(inv))
        } else {
            (x, indices.clone(), None)
        };
        let x_up = self.up_proj.forward(&x, &idx, do_sort)?;
        let x_gate = self.gate_proj.forward(&x, &idx, do_sort)?;
        let mut y = self
            .down_proj
            .forward(&(self.activation)(&x_up, &x_gate)?, &idx, do_sort)?;
        if let Some(inv) = inv_order {
            y = scatter_unsort(&y, &inv, Some(indices.shape()))?;
        }
        Ok(y.squeeze(-2)?)
    }

    /// Python's branch of `SwitchGLU.__call__` for `[B, L, D]` inputs with
    /// `1 < L <= DECODE_BLOCK_SIZE`, without Metal: quantized experts
    /// unsorted when fewer than 64 routes per position
    /// (`exact_quantized_switch_linear`, `exact_quantized_selected_linear`),
    /// otherwise one position at a time (`tokenwise`).
    fn forward_decode_block(&self, x: &Array, indices: &Array) -> Result<Array> {
        let routes = x.shape()[0] * indices.shape().last().copied().unwrap_or(1);
        let selected = indices.ndim() == 3 && indices.shape()[..2] == x.shape()[..2];
        if routes < 64 && selected {
            let quantized_in =
                |l: &SwitchLinear| l.native_quantized() && x.shape()[2] == l.input_dims();
            if quantized_in(&self.up_proj) && quantized_in(&self.gate_proj) {
                let projected = ops::expand_dims(x, [-2, -3])?;
                let up = self
                    .up_proj
                    .forward(&projected, indices, false)?
                    .squeeze(-2)?;
                let gate = self
                    .gate_proj
                    .forward(&projected, indices, false)?
                    .squeeze(-2)?;
                let activated = (self.activation)(&up, &gate)?;
                let down = &self.down_proj;
                if down.native_quantized()
                    && activated.shape().last().copied() == Some(down.input_dims())
                {
                    let projected = ops::expand_dims(&activated, -2)?;
                    return Ok(down.forward(&projected, indices, false)?.squeeze(-2)?);
                }
            }
        }
        // Python: `tokenwise(self, x, indices)`.
        let length = x.shape()[1];
        let mut outputs = Vec::with_capacity(length as usize);
        for i in 0..length {
            let xi = ops::contiguous(&x.index(idx![.., i..i + 1])?, false)?;
            let ii = ops::contiguous(&indices.index(idx![.., i..i + 1])?, false)?;
            outputs.push(self.forward(&xi, &ii)?);
        }
        Ok(ops::concatenate(&outputs, 1)?)
    }
}

/// A two-layer GELU network per expert (Python: `SwitchMLP`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct SwitchMLP {
    /// `input_dims → hidden_dims`.
    pub fc1: SwitchLinear,
    /// `hidden_dims → input_dims`.
    pub fc2: SwitchLinear,
    /// Python: `activation` (`nn.GELU(approx="precise")`, the tanh form).
    #[module(skip)]
    pub activation: GELU,
}

impl SwitchMLP {
    /// Python: `SwitchMLP.__init__(input_dims, hidden_dims, num_experts,
    /// activation=nn.GELU(approx="precise"), bias)`.
    pub fn new(input_dims: i32, hidden_dims: i32, num_experts: i32, bias: bool) -> Result<Self> {
        Ok(SwitchMLP {
            fc1: SwitchLinear::new(input_dims, hidden_dims, num_experts, bias)?,
            fc2: SwitchLinear::new(hidden_dims, input_dims, num_experts, bias)?,
            activation: GELU {
                approx: GeluApprox::Precise,
            },
        })
    }

    /// Each token of `x` (`[..., D]`) through its experts `indices`
    /// (`[..., K]`): `[..., K, D]` (Python: `SwitchMLP.__call__`).
    pub fn forward(&self, x: &Array, indices: &Array) -> Result<Array> {
        let x = ops::expand_dims(x, [-2, -3])?;
        let do_sort = indices.size() >= 64;
        let (x, idx, inv_order) = if do_sort {
            let (x, idx, inv) = gather_sort(&x, indices)?;
            (x, idx, Some(inv))
        } else {
            (x, indices.clone(), None)
        };
        let x = self.fc1.forward(&x, &idx, do_sort)?;
        let x = self.activation.forward(&x)?;
        let mut x = self.fc2.forward(&x, &idx, do_sort)?;
        if let Some(inv) = inv_order {
            x = scatter_unsort(&x, &inv, Some(indices.shape()))?;
        }
        Ok(x.squeeze(-2)?)
    }
}
