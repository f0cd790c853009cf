//! `mlx_vlm/models/gemma3n/vision.py`: Gemma 3n's vision tower, timm's
//! MobileNetV5 (`mobilenetv5_300m_enc`), its items in Python's order.
//!
//! A stride-2 stem, then four stages of edge residuals, universal inverted
//! residuals and mobile multi-query attention blocks (keys and values
//! shared by the heads, optionally downsampled by a strided depthwise
//! convolution), then the multi-scale fusion adapter: the outputs of stages
//! 3 and 4, the smaller upsampled (nearest) to the larger, concatenated,
//! through an inverted residual, average-pooled to 16x16 and normalized.
//! Activations are channels-last (`[B, H, W, C]`) inside; the input is
//! channels-first pixels (`[B, 3, H, W]`), as Python takes them.
//!
//! Python's `VisionTower` hard-codes its widths (stem 64, adapter 1920 ->
//! 2048 at 16x16) and takes its blocks from [`gemma3n_mobilenet_def`];
//! [`VisionTower::with_blocks`] (Rust only) takes another block list, as
//! the tests do to build a small tower, and so does a config's
//! `vision_config.block_definition` (Rust only: the tiny end-to-end
//! checkpoint's; Python's generators replace the module function).
//!
//! Divergences from Python:
//! - the block definitions are a [`BlockConfig`] enum over `config.rs`'s
//!   three configs (Python: a list of dataclasses matched by class, other
//!   objects skipped), and a stage's blocks a [`Block`] enum;
//! - Python's `nn.Identity` members (`dw_start`, `dw_mid`, `layer_scale`,
//!   `drop`, `drop_path`, `attn_drop`, `proj_drop`) are `Option`s or
//!   absent; [`NamedSequential`] has the three named members Python adds
//!   (`down_conv`, `norm`, `proj`) as fields, in Python's call order;
//! - [`ConvNormAct`] takes its convolution class as [`ConvClass`];
//!   constructor arguments Python accepts and ignores (`pad_type`,
//!   `norm_layer`, `conv_kwargs`, `drop_path_rate`, `act_layer`,
//!   `aa_layer`, `use_bias`, `cpe_dw_kernel_size`, `group_size` of the
//!   attention, dropout rates) are not taken; keyword arguments are
//!   `*Args` structs whose `Default` is Python's defaults;
//! - Python's `assert`s and `NotImplementedError`s (a stride without a
//!   depthwise kernel, a group size not dividing the channels,
//!   `use_multi_query=False`), its failures on bad block lists (sizes
//!   below 1, fewer than 4 stages, stages 3 and 4 not ending with 1920
//!   channels together: checked before building) and on bad inputs (not
//!   `[B, 3, H, W]` pixels, a stage-3 resolution that is not a multiple of
//!   the adapter's 16x16 output) are typed errors naming the value and the
//!   fix. For the last, Python calls `bicubic_interpolate` and then fails
//!   normalizing its channels-first result (`broadcast_shapes`), so Rust
//!   returns the error before any work and `kernels.py`'s
//!   `bicubic_interpolate` is not ported;
//! - `nearest_interpolate` (Python's `kernels.py`) is a private function
//!   here, its pure-MLX path (the one Python takes without Metal; its
//!   Metal kernel computes the same indices);
//! - Rust only: [`VisionTower::with_blocks`] and
//!   [`VisionModel::with_blocks`] (another block list),
//!   [`VisionTower::stem`] (the stem, with the input's shape checked) and
//!   [`MobileNetV5MultiScaleFusionAdapter::resize_and_concatenate`] (the
//!   adapter's first step), so that tests can check each stage; the
//!   `_er`/`_uir`/`_mmqa` helpers are [`er`], [`uir`], [`mmqa`];
//! - `VisionTower.__call__`'s `output_hidden_states` (ignored by Python)
//!   is not taken; [`VisionModel::sanitize`] is an associated function
//!   (Python's ignores `self`) returning a typed error when the probe key
//!   `vision_tower.timm_model.blocks.0.0.conv_exp.weight` is missing or
//!   not 4-D (Python: `KeyError`/`ValueError`).
//!
//! Python behaviours kept as they are (see `tests/gemma3n_vision.rs`):
//! - the adapter runs its inverted residual and pooling on
//!   `swapaxes(1, 3)` of a channels-first array, i.e. `[B, W, H, C]`: the
//!   tower's output is `[B, W', H', C]`, rows and columns swapped relative
//!   to the image (the same for square images up to a transpose of the
//!   soft-token grid), and the pooling kernel `(H/16, W/16)` is applied to
//!   `(W, H)`;
//! - when stage 3 is already at 16x16 the adapter neither pools nor
//!   normalizes, and returns channels-first `[B, C, H, W]`;
//! - `sanitize` transposes every 4-D value whose key holds `conv` and
//!   `weight`, or `proj.weight` (Python's `("attn" and "proj.weight") in k`
//!   is `"proj.weight" in k`), whatever the module, unless the probe key
//!   shows MLX's layout already.
//!
//! Quantization: Python's `mlx_vlm.convert` quantizes the layers that have
//! `to_quantized` (`nn.Linear`, `nn.Embedding`); the tower has none
//! (convolutions and norms only), so it stays unquantized there and here.

use std::collections::HashMap;

use mlx_rs::nn::{AvgPool2d, Conv2d, ConvOptions, Item, ItemMut, Module, Param, activations};
use mlx_rs::{Array, Dtype, fast, ops};
use serde::Deserialize;

use super::config::{
    EdgeResidualConfig, MultiQueryAttentionBlockConfig, UniversalInvertedResidualConfig,
    VisionConfig,
};
use crate::{Error, Result};

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// `Module` for an enum whose variants each hold one module: the variant's
/// items, with no key of its own (Python's list or attribute holds the
/// module itself).
macro_rules! module_enum {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl Module for $name {
            fn items<'a>(&'a self, f: &mut dyn FnMut(&str, Item<'a>)) {
                match self {
                    $($name::$variant(m) => m.items(f),)+
                }
            }
            fn items_mut(&mut self, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
                match self {
                    $($name::$variant(m) => m.items_mut(f),)+
                }
            }
        }
    };
}

/// Python: `MobileNetV5MultiScaleFusionAdapter.__init__`'s keyword
/// arguments, with Python's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetV5MultiScaleFusionAdapterArgs {
    /// Expansion of the inverted residual (2).
    pub expansion_ratio: f32,
    /// `interpolation_mode` ("nearest"; stored, unused, as in Python).
    pub interpolation_mode: String,
    /// Whether the inverted residual has a layer scale (false).
    pub use_layer_scale: bool,
    /// Its initial value (1e-5).
    pub layer_scale_init_value: f32,
    /// No residual in the inverted residual, and a norm after pooling
    /// (true).
    pub noskip: bool,
}

impl Default for MobileNetV5MultiScaleFusionAdapterArgs {
    fn default() -> Self {
        MobileNetV5MultiScaleFusionAdapterArgs {
            expansion_ratio: 2.0,
            interpolation_mode: "nearest".into(),
            use_layer_scale: false,
            layer_scale_init_value: 1e-5,
            noskip: true,
        }
    }
}

/// Python: `MobileNetV5MultiScaleFusionAdapter`: resizes its inputs to the
/// first's resolution, concatenates their channels, mixes them with an
/// inverted residual and pools to `output_resolution`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MobileNetV5MultiScaleFusionAdapter {
    /// Sum of the inputs' channels.
    pub in_channels: i32,
    /// Output channels.
    pub out_channels: i32,
    /// Output `(height, width)`.
    #[module(skip)]
    pub output_resolution: [i32; 2],
    /// Expansion of the inverted residual.
    pub expansion_ratio: f32,
    /// Python's `interpolation_mode` (unused: resizing is nearest).
    pub interpolation_mode: String,
    /// Whether the inverted residual has a layer scale.
    pub use_layer_scale: bool,
    /// The layer scale's initial value.
    pub layer_scale_init_value: f32,
    /// No residual; normalize after pooling.
    pub noskip: bool,
    /// The channel mixer.
    pub ffn: UniversalInvertedResidual,
    /// The norm after pooling.
    pub norm: RMSNormAct2d,
}

impl MobileNetV5MultiScaleFusionAdapter {
    /// Python: `MobileNetV5MultiScaleFusionAdapter(in_chs, out_chs,
    /// output_resolution, ...)`.
    pub fn new(
        in_chs: &[i32],
        out_chs: i32,
        output_resolution: i32,
        args: MobileNetV5MultiScaleFusionAdapterArgs,
    ) -> Result<Self> {
        let in_channels = in_chs.iter().sum();
        let ffn = UniversalInvertedResidual::new(
            in_channels,
            out_chs,
            UniversalInvertedResidualArgs {
                dw_kernel_size_mid: 0,
                exp_ratio: args.expansion_ratio,
                noskip: args.noskip,
                layer_scale_init_value: args.use_layer_scale.then_some(args.layer_scale_init_value),
                ..Default::default()
            },
        )?;
        Ok(MobileNetV5MultiScaleFusionAdapter {
            in_channels,
            out_channels: out_chs,
            output_resolution: to_2tuple(output_resolution),
            expansion_ratio: args.expansion_ratio,
            interpolation_mode: args.interpolation_mode,
            use_layer_scale: args.use_layer_scale,
            layer_scale_init_value: args.layer_scale_init_value,
            noskip: args.noskip,
            ffn,
            norm: RMSNormAct2d::new(out_chs, 1e-6, false)?,
        })
    }

    /// The first part of Python's `__call__`: the channels-last `inputs`
    /// made channels-first, each smaller one resized (nearest) to the
    /// first's resolution, concatenated on channels: `[B, C, H, W]`.
    pub fn resize_and_concatenate(&self, inputs: &[Array]) -> Result<Array> {
        let inputs = inputs
            .iter()
            .map(|i| i.transpose([0, 3, 1, 2]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let Some(first) = inputs.first() else {
            return Err(invalid(
                "MobileNetV5MultiScaleFusionAdapter takes at least one input".into(),
            ));
        };
        let high_resolution = spatial(first)?;
        let mut resized = Vec::with_capacity(inputs.len());
        for img in inputs {
            let size = spatial(&img)?;
            if size[0] < high_resolution[0] || size[1] < high_resolution[1] {
                resized.push(nearest_interpolate(&img, high_resolution)?);
            } else {
                resized.push(img);
            }
        }
        Ok(ops::concatenate(&resized, 1)?)
    }

    /// Python: `MobileNetV5MultiScaleFusionAdapter.__call__` on the
    /// channels-last stage outputs (the highest resolution first); see the
    /// module documentation for the layout of the result.
    pub fn forward(&self, inputs: &[Array]) -> Result<Array> {
        let channel_cat_imgs = self.resize_and_concatenate(inputs)?;
        let high_resolution = spatial(&channel_cat_imgs)?;
        let [out_h, out_w] = self.output_resolution;
        let resizes = high_resolution != self.output_resolution;
        if resizes && (high_resolution[0] % out_h != 0 || high_resolution[1] % out_w != 0) {
            return Err(invalid(format!(
                "the vision tower's stage-3 features are {}x{}, not a multiple of the fusion \
                 adapter's {out_h}x{out_w} output; Python resizes them bicubically and then \
                 fails. Give images whose side is a multiple of {} pixels (Gemma 3n's \
                 processor makes 768x768)",
                high_resolution[0],
                high_resolution[1],
                out_h * 16,
            )));
        }
        // Python's axes as they are: [B, W, H, C] through the mixer.
        let img = self.ffn.forward(&channel_cat_imgs.swapaxes(1, 3)?)?;
        let img = img.swapaxes(1, 3)?;
        if !resizes {
            return Ok(img);
        }
        let strides = [high_resolution[0] / out_h, high_resolution[1] / out_w];
        let pooled =
            AvgPool2d::new(strides, Some(strides), [0, 0])?.forward(&img.swapaxes(1, 3)?)?;
        if self.noskip {
            self.norm.forward(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

/// `[H, W]` of a channels-first `[B, C, H, W]` array.
fn spatial(x: &Array) -> Result<[i32; 2]> {
    match x.shape() {
        [_, _, h, w] => Ok([*h, *w]),
        shape => Err(invalid(format!(
            "the fusion adapter takes 4-D feature maps, got shape {shape:?}"
        ))),
    }
}

/// Python's `kernels.nearest_interpolate(x, size)` (its pure-MLX path) on
/// a channels-first `[B, C, H, W]` array: PyTorch's nearest mapping,
/// `floor(out_index * in_size / out_size)`.
fn nearest_interpolate(x: &Array, size: [i32; 2]) -> Result<Array> {
    let [in_h, in_w] = spatial(x)?;
    let indices = |out: i32, input: i32| -> Result<Array> {
        let scaled = ops::multiply(
            ops::arange(0, out, 1, Some(Dtype::Float32))?,
            f64::from(input) / f64::from(out),
        )?;
        let index = ops::floor(&scaled)?.as_type(Dtype::Int32)?;
        Ok(ops::clip(&index, 0, input - 1)?)
    };
    let rows = ops::take(x, &indices(size[0], in_h)?, 2)?;
    Ok(ops::take(&rows, &indices(size[1], in_w)?, 3)?)
}

/// Python: `LayerScale2d`: a learned per-channel scale of channels-last
/// features.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LayerScale2d {
    /// Python's `inplace` (the product is the same).
    pub inplace: bool,
    /// `[dim]`, `init_values` at first.
    pub gamma: Param,
}

impl LayerScale2d {
    /// Python: `LayerScale2d(dim, init_values)`.
    pub fn new(dim: i32, init_values: f32) -> Result<Self> {
        Ok(LayerScale2d {
            inplace: false,
            gamma: Param::new(ops::multiply(
                ops::ones(&[dim], Dtype::Float32)?,
                init_values,
            )?),
        })
    }

    /// Python: `LayerScale2d.__call__`: `x * gamma`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(ops::multiply(x, &*self.gamma)?)
    }
}

/// Python: `rms_norm2d`: RMS norm of a channels-first `[B, C, H, W]` array
/// over its channels, `x * rsqrt(mean(x², channels) + eps)`, times `weight`
/// per channel when given.
pub fn rms_norm2d(
    x: &Array,
    normalized_shape: &[i32],
    weight: Option<&Array>,
    eps: f32,
) -> Result<Array> {
    if normalized_shape.len() != 1 {
        return Err(invalid(format!(
            "rms_norm2d normalizes one axis, got normalized_shape {normalized_shape:?}"
        )));
    }
    let dtype = x.dtype();
    let v = ops::power(x, 2)?.mean(1, true)?;
    let x = ops::multiply(x, ops::rsqrt(&ops::add(&v, eps)?)?)?;
    match weight {
        Some(weight) => Ok(ops::multiply(
            x.as_type(dtype)?,
            weight.reshape(&[1, -1, 1, 1])?,
        )?),
        None => Ok(x),
    }
}

/// Python: `RMSNormAct2d` (an `nn.RMSNorm`): [`rms_norm2d`] of
/// channels-last features over their channels, then GELU unless
/// `apply_act` is false.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct RMSNormAct2d {
    /// `[num_channels]`, ones at first.
    pub weight: Param,
    /// Added to the mean square.
    pub eps: f32,
    /// `[num_channels]`.
    #[module(skip)]
    pub normalized_shape: Vec<i32>,
    /// Whether GELU follows (Python's `act`: `nn.GELU()` or identity).
    pub apply_act: bool,
}

impl RMSNormAct2d {
    /// Python: `RMSNormAct2d(num_channels, eps, apply_act)`.
    pub fn new(num_channels: i32, eps: f32, apply_act: bool) -> Result<Self> {
        Ok(RMSNormAct2d {
            weight: Param::new(ops::ones(&[num_channels], Dtype::Float32)?),
            eps,
            normalized_shape: vec![num_channels],
            apply_act,
        })
    }

    /// Python: `RMSNormAct2d.__call__` on `[B, H, W, C]` (normalized as
    /// `[B, C, H, W]`, as Python does).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = x.transpose([0, 3, 1, 2])?;
        let mut x = rms_norm2d(&x, &self.normalized_shape, Some(&self.weight), self.eps)?;
        if self.apply_act {
            x = activations::gelu(&x)?;
        }
        Ok(x.transpose([0, 2, 3, 1])?)
    }
}

/// Python: `UniversalInvertedResidual.__init__`'s keyword arguments, with
/// Python's defaults (`group_size` 1: depthwise).
#[derive(Debug, Clone, PartialEq)]
pub struct UniversalInvertedResidualArgs {
    /// Depthwise kernel before the expansion (0: none).
    pub dw_kernel_size_start: i32,
    /// Depthwise kernel after the expansion (3; 0: none).
    pub dw_kernel_size_mid: i32,
    /// Python's `dw_kernel_size_end` (0): only checked with the stride;
    /// Python builds no such convolution.
    pub dw_kernel_size_end: i32,
    /// Stride of the first depthwise convolution (1).
    pub stride: i32,
    /// Dilation of the depthwise convolutions (1).
    pub dilation: i32,
    /// Channels per depthwise group (1; 0: one group).
    pub group_size: i32,
    /// No residual even when the shapes allow one (false).
    pub noskip: bool,
    /// Expansion ratio (1).
    pub exp_ratio: f32,
    /// Initial layer scale, or none (`Some(1e-5)`).
    pub layer_scale_init_value: Option<f32>,
}

impl Default for UniversalInvertedResidualArgs {
    fn default() -> Self {
        UniversalInvertedResidualArgs {
            dw_kernel_size_start: 0,
            dw_kernel_size_mid: 3,
            dw_kernel_size_end: 0,
            stride: 1,
            dilation: 1,
            group_size: 1,
            noskip: false,
            exp_ratio: 1.0,
            layer_scale_init_value: Some(1e-5),
        }
    }
}

/// Python: `UniversalInvertedResidual`: optional depthwise convolution,
/// pointwise expansion, optional (strided, "same"-padded) depthwise
/// convolution, pointwise projection, optional layer scale, residual when
/// the shapes allow it.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct UniversalInvertedResidual {
    /// Whether the input is added back.
    pub has_skip: bool,
    /// Depthwise convolution before the expansion, if any.
    pub dw_start: Option<ConvNormAct>,
    /// Pointwise expansion with GELU.
    pub pw_exp: ConvNormAct,
    /// Depthwise convolution after the expansion, if any.
    pub dw_mid: Option<ConvNormAct>,
    /// Pointwise projection, no activation.
    pub pw_proj: ConvNormAct,
    /// Per-channel scale, if any.
    pub layer_scale: Option<LayerScale2d>,
}

impl UniversalInvertedResidual {
    /// Python: `UniversalInvertedResidual(in_chs, out_chs, ...)`.
    pub fn new(in_chs: i32, out_chs: i32, args: UniversalInvertedResidualArgs) -> Result<Self> {
        let has_skip = in_chs == out_chs && args.stride == 1 && !args.noskip;
        if args.stride > 1
            && args.dw_kernel_size_start == 0
            && args.dw_kernel_size_mid == 0
            && args.dw_kernel_size_end == 0
        {
            return Err(invalid(format!(
                "UniversalInvertedResidual({in_chs}, {out_chs}) has stride {} but no depthwise \
                 kernel to apply it; give dw_kernel_size_start or dw_kernel_size_mid",
                args.stride
            )));
        }
        let dw_start = if args.dw_kernel_size_start != 0 {
            let k = args.dw_kernel_size_start;
            let stride = if args.dw_kernel_size_mid == 0 {
                args.stride
            } else {
                1
            };
            Some(ConvNormAct::new(
                ConvClass::Conv2d,
                in_chs,
                in_chs,
                ConvNormActArgs {
                    kernel_size: k,
                    stride,
                    padding: (k - 1) / 2,
                    dilation: args.dilation,
                    groups: num_groups(args.group_size, in_chs)?,
                    bias: false,
                    apply_act: false,
                    eps: 1e-5,
                },
            )?)
        } else {
            None
        };
        let mid_chs = make_divisible(f64::from(in_chs) * f64::from(args.exp_ratio), 8, None, 0.9);
        let pointwise = |apply_act| ConvNormActArgs {
            kernel_size: 1,
            apply_act,
            eps: 1e-5,
            ..Default::default()
        };
        let pw_exp = ConvNormAct::new(ConvClass::Conv2d, in_chs, mid_chs, pointwise(true))?;
        let dw_mid = if args.dw_kernel_size_mid != 0 {
            Some(ConvNormAct::new(
                ConvClass::Conv2dSame,
                mid_chs,
                mid_chs,
                ConvNormActArgs {
                    kernel_size: args.dw_kernel_size_mid,
                    stride: args.stride,
                    padding: 0,
                    dilation: args.dilation,
                    groups: num_groups(args.group_size, mid_chs)?,
                    bias: false,
                    apply_act: true,
                    eps: 1e-5,
                },
            )?)
        } else {
            None
        };
        let pw_proj = ConvNormAct::new(ConvClass::Conv2d, mid_chs, out_chs, pointwise(false))?;
        let layer_scale = args
            .layer_scale_init_value
            .map(|value| LayerScale2d::new(out_chs, value))
            .transpose()?;
        Ok(UniversalInvertedResidual {
            has_skip,
            dw_start,
            pw_exp,
            dw_mid,
            pw_proj,
            layer_scale,
        })
    }

    /// Python: `UniversalInvertedResidual.__call__` on `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let shortcut = x;
        let mut x = match &self.dw_start {
            Some(dw_start) => dw_start.forward(x)?,
            None => x.clone(),
        };
        x = self.pw_exp.forward(&x)?;
        if let Some(dw_mid) = &self.dw_mid {
            x = dw_mid.forward(&x)?;
        }
        x = self.pw_proj.forward(&x)?;
        if let Some(layer_scale) = &self.layer_scale {
            x = layer_scale.forward(&x)?;
        }
        if self.has_skip {
            x = ops::add(&x, shortcut)?;
        }
        Ok(x)
    }
}

/// Python: `ConvNormAct.__init__`'s `conv_cls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvClass {
    /// `nn.Conv2d`: symmetric `padding`.
    Conv2d,
    /// [`Conv2dSame`]: TensorFlow's "same" padding.
    Conv2dSame,
}

/// Python: `ConvNormAct.__init__`'s other keyword arguments, with Python's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvNormActArgs {
    /// Square kernel side (3).
    pub kernel_size: i32,
    /// Stride (1).
    pub stride: i32,
    /// Symmetric padding of `nn.Conv2d` (0).
    pub padding: i32,
    /// Dilation (1).
    pub dilation: i32,
    /// Groups (1).
    pub groups: i32,
    /// Whether the convolution has a bias (false).
    pub bias: bool,
    /// Whether GELU follows the norm (true).
    pub apply_act: bool,
    /// The norm's epsilon (1e-6).
    pub eps: f32,
}

impl Default for ConvNormActArgs {
    fn default() -> Self {
        ConvNormActArgs {
            kernel_size: 3,
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
            bias: false,
            apply_act: true,
            eps: 1e-6,
        }
    }
}

/// A [`ConvNormAct`]'s convolution: Python's `conv_cls` instance.
#[derive(Debug, Clone)]
pub enum ConvNormActConv {
    /// `nn.Conv2d`.
    Conv2d(Conv2d),
    /// [`Conv2dSame`].
    Conv2dSame(Conv2dSame),
}

module_enum!(ConvNormActConv { Conv2d, Conv2dSame });

impl ConvNormActConv {
    /// The convolution of `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            ConvNormActConv::Conv2d(conv) => Ok(conv.forward(x)?),
            ConvNormActConv::Conv2dSame(conv) => conv.forward(x),
        }
    }
}

/// Python: `ConvNormAct`: a convolution, then [`RMSNormAct2d`] (`bn`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct ConvNormAct {
    /// Output channels.
    pub out_chs: i32,
    /// The convolution.
    pub conv: ConvNormActConv,
    /// The norm (and activation).
    pub bn: RMSNormAct2d,
}

impl ConvNormAct {
    /// Python: `ConvNormAct(conv_cls, in_chs, out_chs, ...)`.
    pub fn new(
        conv_cls: ConvClass,
        in_chs: i32,
        out_chs: i32,
        args: ConvNormActArgs,
    ) -> Result<Self> {
        let options = ConvOptions {
            stride: [args.stride; 2],
            padding: [args.padding; 2],
            dilation: [args.dilation; 2],
            groups: args.groups,
            bias: args.bias,
        };
        let conv = Conv2d::new(in_chs, out_chs, [args.kernel_size; 2], options)?;
        let conv = match conv_cls {
            ConvClass::Conv2d => ConvNormActConv::Conv2d(conv),
            ConvClass::Conv2dSame => ConvNormActConv::Conv2dSame(Conv2dSame::from_conv(conv)),
        };
        Ok(ConvNormAct {
            out_chs,
            conv,
            bn: RMSNormAct2d::new(out_chs, args.eps, args.apply_act)?,
        })
    }

    /// Python: `ConvNormAct.__call__` on `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        self.bn.forward(&self.conv.forward(x)?)
    }
}

/// Python: `pad_same`: zero-pads the height and width of a channels-last
/// `x` for a "same" convolution, the odd pixel after.
pub fn pad_same(
    x: &Array,
    kernel_size: [i32; 2],
    stride: [i32; 2],
    dilation: [i32; 2],
    value: f32,
) -> Result<Array> {
    let [_, ih, iw, _] = *x.shape() else {
        return Err(invalid(format!(
            "pad_same takes [B, H, W, C], got shape {:?}",
            x.shape()
        )));
    };
    let pad_h = get_same_padding(ih, kernel_size[0], stride[0], dilation[0]);
    let pad_w = get_same_padding(iw, kernel_size[1], stride[1], dilation[1]);
    let pad_widths = vec![
        (0, 0),
        (pad_h / 2, pad_h - pad_h / 2),
        (pad_w / 2, pad_w - pad_w / 2),
        (0, 0),
    ];
    Ok(ops::pad(
        x,
        pad_widths,
        ops::PadOptions::constant(Array::scalar(value)),
    )?)
}

/// Python: `get_padding_value` for a string `padding` ("same", "valid" or
/// anything else: PyTorch-style symmetric): the padding and whether it is
/// dynamic ("same" with a stride). An integer padding is Python's identity.
pub fn get_padding_value(
    padding: &str,
    kernel_size: [i32; 2],
    stride: [i32; 2],
    dilation: [i32; 2],
) -> ([i32; 2], bool) {
    match padding.to_lowercase().as_str() {
        "same" if is_static_pad(stride) => (get_padding(kernel_size, dilation), false),
        "same" => ([0, 0], true),
        "valid" => ([0, 0], false),
        _ => (get_padding(kernel_size, dilation), false),
    }
}

/// Python: `get_same_padding`: the total padding of one axis for a "same"
/// convolution.
pub fn get_same_padding(input_size: i32, kernel_size: i32, stride: i32, dilation: i32) -> i32 {
    let effective_kernel_size = dilation * (kernel_size - 1) + 1;
    let output_size = (input_size + stride - 1) / stride;
    ((output_size - 1) * stride + effective_kernel_size - input_size).max(0)
}

/// Python: `get_padding`: symmetric padding per axis,
/// `(dilation * (kernel - 1)) // 2` (Python's `stride` is unused).
pub fn get_padding(kernel_size: [i32; 2], dilation: [i32; 2]) -> [i32; 2] {
    [0, 1].map(|i| dilation[i] * (kernel_size[i] - 1) / 2)
}

/// Python: `is_static_pad`: "same" padding is static when every stride is 1.
pub fn is_static_pad(stride: [i32; 2]) -> bool {
    stride.iter().all(|&s| s == 1)
}

/// Python: `Conv2dSame`, an `nn.Conv2d` whose input is first padded by
/// [`pad_same`]. Its parameters are the convolution's (`weight`, `bias`).
#[derive(Debug, Clone)]
pub struct Conv2dSame {
    /// The convolution (built with padding 0).
    pub conv: Conv2d,
    /// `weight.shape[1:3]`.
    pub kernel_size: [i32; 2],
}

impl Module for Conv2dSame {
    fn items<'a>(&'a self, f: &mut dyn FnMut(&str, Item<'a>)) {
        self.conv.items(f)
    }
    fn items_mut(&mut self, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        self.conv.items_mut(f)
    }
}

impl Conv2dSame {
    /// Python: `Conv2dSame(in_channels, out_channels, kernel_size, stride,
    /// padding, dilation, groups, bias)`.
    pub fn new(
        in_channels: i32,
        out_channels: i32,
        kernel_size: i32,
        options: ConvOptions<2>,
    ) -> Result<Self> {
        let conv = Conv2d::new(in_channels, out_channels, [kernel_size; 2], options)?;
        Ok(Self::from_conv(conv))
    }

    /// The layer around an existing convolution.
    pub fn from_conv(conv: Conv2d) -> Self {
        // `Conv2d::new` always makes a 4-D weight; the fallback is never
        // taken.
        let kernel_size = match conv.weight.shape() {
            [_, kh, kw, _] => [*kh, *kw],
            _ => [1, 1],
        };
        Conv2dSame { conv, kernel_size }
    }

    /// Python: `Conv2dSame.__call__` on `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = pad_same(
            x,
            self.kernel_size,
            self.conv.stride,
            self.conv.dilation,
            0.0,
        )?;
        Ok(self.conv.forward(&x)?)
    }
}

/// Python: `EdgeResidual.__init__`'s keyword arguments, with Python's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeResidualArgs {
    /// Kernel of the expanding convolution (3).
    pub exp_kernel_size: i32,
    /// Its stride (1).
    pub stride: i32,
    /// Its dilation (1).
    pub dilation: i32,
    /// Channels per group (0: one group).
    pub group_size: i32,
    /// Channels the expansion is computed from, when positive (0).
    pub force_in_chs: i32,
    /// No residual even when the shapes allow one (false).
    pub noskip: bool,
    /// Expansion ratio (1).
    pub expand_ratio: f32,
    /// Kernel of the projection (1).
    pub pw_kernel_size: i32,
}

impl Default for EdgeResidualArgs {
    fn default() -> Self {
        EdgeResidualArgs {
            exp_kernel_size: 3,
            stride: 1,
            dilation: 1,
            group_size: 0,
            force_in_chs: 0,
            noskip: false,
            expand_ratio: 1.0,
            pw_kernel_size: 1,
        }
    }
}

/// Python: `EdgeResidual`: a full ("same"-padded, possibly strided)
/// expanding convolution with norm and GELU, a pointwise projection with
/// norm, residual when the shapes allow it.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct EdgeResidual {
    /// Whether the input is added back.
    pub has_skip: bool,
    /// The expanding convolution.
    pub conv_exp: Conv2dSame,
    /// Its norm and GELU.
    pub bn1: RMSNormAct2d,
    /// The projection.
    pub conv_pwl: Conv2d,
    /// Its norm, no activation.
    pub bn2: RMSNormAct2d,
}

impl EdgeResidual {
    /// Python: `EdgeResidual(in_chs, out_chs, ...)`.
    pub fn new(in_chs: i32, out_chs: i32, args: EdgeResidualArgs) -> Result<Self> {
        let from = if args.force_in_chs > 0 {
            args.force_in_chs
        } else {
            in_chs
        };
        let mid_chs = make_divisible(f64::from(from) * f64::from(args.expand_ratio), 8, None, 0.9);
        let groups = num_groups(args.group_size, mid_chs)?;
        let has_skip = in_chs == out_chs && args.stride == 1 && !args.noskip;
        let conv_exp = Conv2dSame::new(
            in_chs,
            mid_chs,
            args.exp_kernel_size,
            ConvOptions {
                stride: [args.stride; 2],
                padding: [0; 2],
                dilation: [args.dilation; 2],
                groups,
                bias: false,
            },
        )?;
        let padding_pwl = (args.pw_kernel_size - 1) / 2;
        let conv_pwl = Conv2d::new(
            mid_chs,
            out_chs,
            [args.pw_kernel_size; 2],
            ConvOptions {
                padding: [padding_pwl; 2],
                bias: false,
                ..Default::default()
            },
        )?;
        Ok(EdgeResidual {
            has_skip,
            conv_exp,
            bn1: RMSNormAct2d::new(mid_chs, 1e-5, true)?,
            conv_pwl,
            bn2: RMSNormAct2d::new(out_chs, 1e-5, false)?,
        })
    }

    /// Python: `EdgeResidual.__call__` on `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut y = self.conv_exp.forward(x)?;
        y = self.bn1.forward(&y)?;
        y = self.conv_pwl.forward(&y)?;
        y = self.bn2.forward(&y)?;
        if self.has_skip {
            y = ops::add(&y, x)?;
        }
        Ok(y)
    }
}

/// Python: `MobileAttention.__init__`'s keyword arguments that it uses,
/// with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileAttentionArgs {
    /// Stride (1; only decides the residual, as in Python).
    pub stride: i32,
    /// Kernel of the key/value downsampling (3).
    pub dw_kernel_size: i32,
    /// Its dilation (1).
    pub dilation: i32,
    /// Heads (`Some(8)`; `None`: `in_chs / key_dim`).
    pub num_heads: Option<i32>,
    /// Query/key width per head (64).
    pub key_dim: i32,
    /// Value width (64).
    pub value_dim: i32,
    /// Multi-query attention (true; Python implements nothing else).
    pub use_multi_query: bool,
    /// Query strides (`[1, 1]`; only scale the output grid, as in Python).
    pub query_strides: [i32; 2],
    /// Key/value downsampling stride (1: none).
    pub kv_stride: i32,
    /// No residual even when the shapes allow one (false).
    pub noskip: bool,
    /// Initial layer scale, or none (`Some(1e-5)`).
    pub layer_scale_init_value: Option<f32>,
}

impl Default for MobileAttentionArgs {
    fn default() -> Self {
        MobileAttentionArgs {
            stride: 1,
            dw_kernel_size: 3,
            dilation: 1,
            num_heads: Some(8),
            key_dim: 64,
            value_dim: 64,
            use_multi_query: true,
            query_strides: [1, 1],
            kv_stride: 1,
            noskip: false,
            layer_scale_init_value: Some(1e-5),
        }
    }
}

/// Python: `MobileAttention`: norm, multi-query attention, optional layer
/// scale, residual.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MobileAttention {
    /// Whether the input is added back.
    pub has_skip: bool,
    /// Query strides.
    #[module(skip)]
    pub query_strides: [i32; 2],
    /// Key/value downsampling stride.
    pub kv_stride: i32,
    /// Whether a query stride exceeds 1.
    pub has_query_stride: bool,
    /// The norm before attention.
    pub norm: RMSNormAct2d,
    /// The attention.
    pub attn: MultiQueryAttention2d,
    /// Per-channel scale, if any.
    pub layer_scale: Option<LayerScale2d>,
}

impl MobileAttention {
    /// Python: `MobileAttention(in_chs, out_chs, ...)`.
    pub fn new(in_chs: i32, out_chs: i32, args: MobileAttentionArgs) -> Result<Self> {
        let has_skip = args.stride == 1 && in_chs == out_chs && !args.noskip;
        let num_heads = match args.num_heads {
            Some(heads) => heads,
            None if args.key_dim > 0 && in_chs % args.key_dim == 0 => in_chs / args.key_dim,
            None => {
                return Err(invalid(format!(
                    "MobileAttention without num_heads needs in_chs ({in_chs}) to be a multiple \
                     of key_dim ({})",
                    args.key_dim
                )));
            }
        };
        if !args.use_multi_query {
            return Err(invalid(
                "MobileAttention implements multi-query attention only (Python: \"attention \
                 not implemented\"); set use_multi_query"
                    .into(),
            ));
        }
        let attn = MultiQueryAttention2d::new(
            in_chs,
            MultiQueryAttention2dArgs {
                dim_out: Some(out_chs),
                num_heads,
                key_dim: args.key_dim,
                value_dim: args.value_dim,
                query_strides: args.query_strides,
                kv_stride: args.kv_stride,
                dilation: args.dilation,
                dw_kernel_size: args.dw_kernel_size,
            },
        )?;
        let layer_scale = args
            .layer_scale_init_value
            .map(|value| LayerScale2d::new(out_chs, value))
            .transpose()?;
        Ok(MobileAttention {
            has_skip,
            query_strides: args.query_strides,
            kv_stride: args.kv_stride,
            has_query_stride: args.query_strides.iter().any(|&s| s > 1),
            norm: RMSNormAct2d::new(in_chs, 1e-5, false)?,
            attn,
            layer_scale,
        })
    }

    /// Python: `MobileAttention.__call__` on `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut y = self.norm.forward(x)?;
        y = self.attn.forward(&y)?;
        if let Some(layer_scale) = &self.layer_scale {
            y = layer_scale.forward(&y)?;
        }
        if self.has_skip {
            y = ops::add(&y, x)?;
        }
        Ok(y)
    }
}

/// Python: `create_conv2d`: an `nn.Conv2d` with symmetric padding
/// `(kernel_size - 1) // 2 * dilation`, depthwise (`groups = in_channels`)
/// if asked.
pub fn create_conv2d(
    in_channels: i32,
    out_channels: i32,
    kernel_size: i32,
    stride: i32,
    dilation: i32,
    depthwise: bool,
    bias: bool,
) -> Result<Conv2d> {
    let options = ConvOptions {
        stride: [stride; 2],
        padding: [(kernel_size - 1) / 2 * dilation; 2],
        dilation: [dilation; 2],
        groups: if depthwise { in_channels } else { 1 },
        bias,
    };
    Ok(Conv2d::new(
        in_channels,
        out_channels,
        [kernel_size; 2],
        options,
    )?)
}

/// Python: `to_2tuple` of an integer.
pub fn to_2tuple(x: i32) -> [i32; 2] {
    [x, x]
}

/// Python: `NamedSequential` as [`MultiQueryAttention2d`] fills it: the
/// members Python adds, called in Python's order (`down_conv`, `norm`,
/// `proj`); the first two only with key/value downsampling.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct NamedSequential {
    /// Strided depthwise convolution, if any.
    pub down_conv: Option<Conv2d>,
    /// Norm after it, if any.
    pub norm: Option<RMSNormAct2d>,
    /// Pointwise projection.
    pub proj: Conv2d,
}

impl NamedSequential {
    /// A sequence of just `proj`.
    pub fn proj(proj: Conv2d) -> Self {
        NamedSequential {
            down_conv: None,
            norm: None,
            proj,
        }
    }

    /// Python: `NamedSequential.__call__`: the members in order.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut x = x.clone();
        if let Some(down_conv) = &self.down_conv {
            x = down_conv.forward(&x)?;
        }
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
        }
        Ok(self.proj.forward(&x)?)
    }
}

/// Python: `MultiQueryAttention2d.__init__`'s keyword arguments that it
/// uses, with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiQueryAttention2dArgs {
    /// Output channels (`None`: `dim`).
    pub dim_out: Option<i32>,
    /// Query heads (8).
    pub num_heads: i32,
    /// Query/key width per head (64).
    pub key_dim: i32,
    /// Value width (64).
    pub value_dim: i32,
    /// Query strides (`[1, 1]`).
    pub query_strides: [i32; 2],
    /// Key/value downsampling stride (1: none).
    pub kv_stride: i32,
    /// Dilation of the downsampling (1).
    pub dilation: i32,
    /// Kernel of the downsampling (3).
    pub dw_kernel_size: i32,
}

impl Default for MultiQueryAttention2dArgs {
    fn default() -> Self {
        MultiQueryAttention2dArgs {
            dim_out: None,
            num_heads: 8,
            key_dim: 64,
            value_dim: 64,
            query_strides: [1, 1],
            kv_stride: 1,
            dilation: 1,
            dw_kernel_size: 3,
        }
    }
}

/// Python: `MultiQueryAttention2d`: per-head queries of every position,
/// one key and one value per (downsampled) position shared by all heads.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MultiQueryAttention2d {
    /// Query heads.
    pub num_heads: i32,
    /// Query strides.
    #[module(skip)]
    pub query_strides: [i32; 2],
    /// Key/value downsampling stride.
    pub kv_stride: i32,
    /// Query/key width per head.
    pub key_dim: i32,
    /// Value width.
    pub value_dim: i32,
    /// `key_dim ** -0.5` (stored; the call uses the query's width, the
    /// same).
    pub scale: f32,
    /// `proj`.
    pub query: NamedSequential,
    /// `down_conv`, `norm` (with downsampling), `proj`.
    pub key: NamedSequential,
    /// `down_conv`, `norm` (with downsampling), `proj`.
    pub value: NamedSequential,
    /// `proj`.
    pub output: NamedSequential,
}

impl MultiQueryAttention2d {
    /// Python: `MultiQueryAttention2d(dim, ...)`.
    pub fn new(dim: i32, args: MultiQueryAttention2dArgs) -> Result<Self> {
        let dim_out = args.dim_out.unwrap_or(dim);
        let kv = |out: i32| -> Result<NamedSequential> {
            let proj = create_conv2d(dim, out, 1, 1, 1, false, false)?;
            if args.kv_stride <= 1 {
                return Ok(NamedSequential::proj(proj));
            }
            Ok(NamedSequential {
                down_conv: Some(create_conv2d(
                    dim,
                    dim,
                    args.dw_kernel_size,
                    args.kv_stride,
                    args.dilation,
                    true,
                    false,
                )?),
                norm: Some(RMSNormAct2d::new(dim, 1e-6, false)?),
                proj,
            })
        };
        Ok(MultiQueryAttention2d {
            num_heads: args.num_heads,
            query_strides: args.query_strides,
            kv_stride: args.kv_stride,
            key_dim: args.key_dim,
            value_dim: args.value_dim,
            scale: (args.key_dim as f32).powf(-0.5),
            query: NamedSequential::proj(create_conv2d(
                dim,
                args.num_heads * args.key_dim,
                1,
                1,
                1,
                false,
                false,
            )?),
            key: kv(args.key_dim)?,
            value: kv(args.value_dim)?,
            output: NamedSequential::proj(create_conv2d(
                args.value_dim * args.num_heads,
                dim_out,
                1,
                1,
                1,
                false,
                false,
            )?),
        })
    }

    /// Python: `_reshape_input`: `[B, H, W, C]` to `[B, 1, H * W, C]`.
    pub fn reshape_input(&self, t: &Array) -> Result<Array> {
        let [b, _, _, c] = dims4(t)?;
        Ok(t.reshape(&[b, 1, -1, c])?)
    }

    /// Python: `_reshape_projected_query`: `[B, H, W, heads * key_dim]` to
    /// `[B, heads, H * W, key_dim]`.
    pub fn reshape_projected_query(
        &self,
        t: &Array,
        num_heads: i32,
        key_dim: i32,
    ) -> Result<Array> {
        let [b, h, w, _] = dims4(t)?;
        Ok(t.reshape(&[b, h * w, num_heads, key_dim])?
            .transpose([0, 2, 1, 3])?)
    }

    /// Python: `_reshape_output`: `[B, heads, L, D]` to
    /// `[B, h_px, w_px, heads * D]`.
    pub fn reshape_output(&self, t: &Array, num_heads: i32, h_px: i32, w_px: i32) -> Result<Array> {
        let [b, _, _, d] = dims4(t)?;
        Ok(t.transpose([0, 2, 1, 3])?
            .reshape(&[b, h_px, w_px, num_heads * d])?)
    }

    /// Python: `MultiQueryAttention2d.__call__` on `[B, H, W, C]` (no
    /// mask: Python's `attn_mask` is unused).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let [_, h, w, _] = dims4(x)?;
        let q = self.query.forward(x)?;
        let q = self.reshape_projected_query(&q, self.num_heads, self.key_dim)?;
        let k = self.reshape_input(&self.key.forward(x)?)?;
        let v = self.reshape_input(&self.value.forward(x)?)?;
        let head_dim = q.shape().last().copied().unwrap_or(self.key_dim);
        let scale = 1.0 / f64::from(head_dim).sqrt();
        let o = fast::scaled_dot_product_attention(&q, &k, &v, scale as f32, Default::default())?;
        let o = self.reshape_output(
            &o,
            self.num_heads,
            h / self.query_strides[0],
            w / self.query_strides[1],
        )?;
        self.output.forward(&o)
    }
}

/// The four dimensions of a 4-D array.
fn dims4(x: &Array) -> Result<[i32; 4]> {
    match *x.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(invalid(format!(
            "the attention takes [B, H, W, C] features, got shape {:?}",
            x.shape()
        ))),
    }
}

/// Python: `num_groups`: 1 for `group_size` 0, else
/// `channels / group_size` (1: depthwise).
pub fn num_groups(group_size: i32, channels: i32) -> Result<i32> {
    if group_size == 0 {
        return Ok(1);
    }
    if group_size < 0 || channels % group_size != 0 {
        return Err(invalid(format!(
            "group_size {group_size} does not divide {channels} channels; give a divisor of the \
             channels (1: depthwise, 0: one group)"
        )));
    }
    Ok(channels / group_size)
}

/// Python: `make_divisible`: `v` rounded to the nearest multiple of
/// `divisor` (at least `min_value`, default `divisor`), one more `divisor`
/// when that loses over `1 - round_limit` of `v`.
pub fn make_divisible(v: f64, divisor: i32, min_value: Option<i32>, round_limit: f64) -> i32 {
    let min_value = match min_value {
        Some(m) if m != 0 => m,
        _ => divisor,
    };
    let rounded = (v + f64::from(divisor) / 2.0).trunc() as i32 / divisor * divisor;
    let mut new_v = min_value.max(rounded);
    if f64::from(new_v) < round_limit * v {
        new_v += divisor;
    }
    new_v
}

/// One block of a MobileNetV5 stage definition (Python: the dataclass
/// instances of `gemma3n_mobilenet_def`'s lists). Deserializes from an
/// object whose `kind` is Python's class name.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "kind")]
pub enum BlockConfig {
    /// An [`EdgeResidual`].
    #[serde(rename = "EdgeResidualConfig")]
    EdgeResidual(EdgeResidualConfig),
    /// A [`UniversalInvertedResidual`].
    #[serde(rename = "UniversalInvertedResidualConfig")]
    UniversalInvertedResidual(UniversalInvertedResidualConfig),
    /// A [`MobileAttention`].
    #[serde(rename = "MultiQueryAttentionBlockConfig")]
    MultiQueryAttention(MultiQueryAttentionBlockConfig),
}

/// Python: `_er`: an edge residual's definition.
pub fn er(
    kernel_size: i32,
    filters: i32,
    strides: i32,
    expand_ratio: f32,
    is_multiscale: bool,
) -> BlockConfig {
    BlockConfig::EdgeResidual(EdgeResidualConfig {
        kernel_size,
        filters,
        strides,
        expand_ratio,
        is_multiscale,
    })
}

/// Python: `_uir`: a universal inverted residual's definition.
pub fn uir(
    start_dw_kernel_size: i32,
    mid_dw_kernel_size: i32,
    filters: i32,
    strides: i32,
    expand_ratio: f32,
    is_multiscale: bool,
) -> BlockConfig {
    BlockConfig::UniversalInvertedResidual(UniversalInvertedResidualConfig {
        start_dw_kernel_size,
        mid_dw_kernel_size,
        filters,
        strides,
        expand_ratio,
        is_multiscale,
    })
}

/// Python: `_mmqa`: a mobile multi-query attention block's definition
/// (Python's other fields at their defaults).
pub fn mmqa(
    num_heads: i32,
    kv_dim: i32,
    kv_strides: i32,
    mmqa_avg_pool_kv: bool,
    is_multiscale: bool,
) -> BlockConfig {
    BlockConfig::MultiQueryAttention(MultiQueryAttentionBlockConfig {
        num_heads,
        kv_dim,
        kv_strides,
        mmqa_avg_pool_kv,
        is_multiscale,
        ..Default::default()
    })
}

/// Python: `gemma3n_mobilenet_def`: the four stages of
/// `mobilenetv5_300m_enc` (3 + 5 + 37 + 39 blocks).
pub fn gemma3n_mobilenet_def() -> Vec<Vec<BlockConfig>> {
    let uir_plain =
        |filters, expand_ratio, multiscale| uir(0, 0, filters, 1, expand_ratio, multiscale);
    let mut stage1 = vec![er(3, 128, 2, 4.0, false)];
    stage1.extend(std::iter::repeat_n(er(3, 128, 1, 4.0, false), 2));
    let mut stage2 = vec![uir(3, 5, 256, 2, 6.0, false)];
    stage2.extend([5, 3, 5, 3].map(|k| uir(k, 0, 256, 1, 4.0, false)));
    let mut stage3 = vec![uir(5, 5, 640, 2, 6.0, false)];
    stage3.extend(std::iter::repeat_n(uir(5, 0, 640, 1, 4.0, false), 7));
    stage3.push(uir_plain(640, 1.0, false));
    for _ in 0..13 {
        stage3.push(mmqa(12, 64, 2, false, false));
        stage3.push(uir_plain(640, 2.0, false));
    }
    stage3.push(mmqa(12, 64, 2, false, false));
    stage3.push(uir_plain(640, 2.0, true));
    let mut stage4 = vec![uir(5, 5, 1280, 2, 6.0, false)];
    for _ in 0..18 {
        stage4.push(mmqa(16, 96, 1, false, false));
        stage4.push(uir_plain(1280, 2.0, false));
    }
    stage4.push(mmqa(16, 96, 1, false, false));
    stage4.push(uir_plain(1280, 2.0, true));
    vec![stage1, stage2, stage3, stage4]
}

/// One block of a stage (Python's `blocks[stage][i]`), boxed: the
/// variants' sizes differ widely.
#[derive(Debug, Clone)]
pub enum Block {
    /// An [`EdgeResidual`].
    EdgeResidual(Box<EdgeResidual>),
    /// A [`UniversalInvertedResidual`].
    UniversalInvertedResidual(Box<UniversalInvertedResidual>),
    /// A [`MobileAttention`].
    MobileAttention(Box<MobileAttention>),
}

module_enum!(Block {
    EdgeResidual,
    UniversalInvertedResidual,
    MobileAttention
});

impl Block {
    /// The block applied to `[B, H, W, C]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Block::EdgeResidual(b) => b.forward(x),
            Block::UniversalInvertedResidual(b) => b.forward(x),
            Block::MobileAttention(b) => b.forward(x),
        }
    }
}

/// Python: `VisionTower`: the stem, the stages, the fusion adapter.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionTower {
    /// The stride-2 "same" convolution from RGB to 64 channels.
    pub conv_stem: ConvNormAct,
    /// Channels of the last stage (Python's `num_features`).
    pub num_features: i32,
    /// Python's `head_hidden_size` (`num_features`).
    pub head_hidden_size: i32,
    /// The stages' blocks.
    pub blocks: Vec<Vec<Block>>,
    /// Feature indices the adapter reads (0: the stem; `i`: stage `i`).
    #[module(skip)]
    pub msfa_indices: [usize; 2],
    /// The adapter's output resolution.
    #[module(skip)]
    pub msfa_output_resolution: [i32; 2],
    /// The multi-scale fusion adapter.
    pub msfa: MobileNetV5MultiScaleFusionAdapter,
}

impl VisionTower {
    /// Python: `VisionTower(config)`: `mobilenetv5_300m_enc`, or the
    /// config's `block_definition` (Rust only) when it has one.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        match &config.block_definition {
            Some(definition) => Self::with_blocks(config, definition),
            None => Self::with_blocks(config, &gemma3n_mobilenet_def()),
        }
    }

    /// The tower with the stages `definition` instead of
    /// [`gemma3n_mobilenet_def`] (Rust only; Python's tests replace the
    /// module function). The stem and adapter are Python's, fixed: the
    /// outputs of stages 3 and 4 must have 1920 channels together.
    pub fn with_blocks(_config: &VisionConfig, definition: &[Vec<BlockConfig>]) -> Result<Self> {
        let conv_stem = ConvNormAct::new(
            ConvClass::Conv2dSame,
            3,
            64,
            ConvNormActArgs {
                kernel_size: 3,
                stride: 2,
                padding: 0,
                eps: 1e-5,
                bias: true,
                ..Default::default()
            },
        )?;
        check_fusion_widths(conv_stem.out_chs, definition, 1920)?;
        let (num_features, blocks) = Self::build(conv_stem.out_chs, definition)?;
        let msfa = MobileNetV5MultiScaleFusionAdapter::new(&[1920], 2048, 16, Default::default())?;
        Ok(VisionTower {
            conv_stem,
            num_features,
            head_hidden_size: num_features,
            blocks,
            msfa_indices: [3, 4],
            msfa_output_resolution: [16, 16],
            msfa,
        })
    }

    /// Python: `VisionTower.build`: the blocks of each stage, each block's
    /// input the previous one's output; returns the last width too.
    pub fn build(stem_chs: i32, definition: &[Vec<BlockConfig>]) -> Result<(i32, Vec<Vec<Block>>)> {
        let mut in_chs = stem_chs;
        let mut blocks = Vec::with_capacity(definition.len());
        for stage in definition {
            let mut block_group = Vec::with_capacity(stage.len());
            for config in stage {
                let block = match config {
                    BlockConfig::EdgeResidual(c) => {
                        let args = EdgeResidualArgs {
                            exp_kernel_size: c.kernel_size,
                            stride: c.strides,
                            expand_ratio: c.expand_ratio,
                            ..Default::default()
                        };
                        let block = EdgeResidual::new(in_chs, c.filters, args)?;
                        in_chs = c.filters;
                        Block::EdgeResidual(Box::new(block))
                    }
                    BlockConfig::UniversalInvertedResidual(c) => {
                        let args = UniversalInvertedResidualArgs {
                            dw_kernel_size_start: c.start_dw_kernel_size,
                            dw_kernel_size_mid: c.mid_dw_kernel_size,
                            stride: c.strides,
                            exp_ratio: c.expand_ratio,
                            ..Default::default()
                        };
                        let block = UniversalInvertedResidual::new(in_chs, c.filters, args)?;
                        in_chs = c.filters;
                        Block::UniversalInvertedResidual(Box::new(block))
                    }
                    BlockConfig::MultiQueryAttention(c) => {
                        let args = MobileAttentionArgs {
                            stride: 1,
                            num_heads: Some(c.num_heads),
                            key_dim: c.kv_dim,
                            value_dim: c.kv_dim,
                            kv_stride: c.kv_strides,
                            ..Default::default()
                        };
                        Block::MobileAttention(Box::new(MobileAttention::new(
                            in_chs, in_chs, args,
                        )?))
                    }
                };
                block_group.push(block);
            }
            blocks.push(block_group);
        }
        Ok((in_chs, blocks))
    }

    /// The stem on channels-first pixels `[B, 3, H, W]`: `[B, H/2, W/2, 64]`
    /// (checks the input's shape).
    pub fn stem(&self, x: &Array) -> Result<Array> {
        match x.shape() {
            [_, 3, h, w] if *h > 0 && *w > 0 => {}
            shape => {
                return Err(invalid(format!(
                    "the Gemma 3n vision tower takes channels-first RGB pixels [batch, 3, \
                     height, width], got shape {shape:?}; transpose channels-last images with \
                     (0, 3, 1, 2)"
                )));
            }
        }
        self.conv_stem.forward(&x.transpose([0, 2, 3, 1])?)
    }

    /// Python: `VisionTower.__call__` on channels-first pixels
    /// `[B, 3, H, W]`: `[B, 16, 16, 2048]` when stage 3's resolution
    /// (`H/16`, `W/16`) is a multiple of 16x16 (rows and columns swapped,
    /// see the module documentation; 768x768 images give this), channels-first
    /// `[B, 2048, 16, 16]` when it is 16x16, an error otherwise.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut x = self.stem(x)?;
        let mut intermediates = Vec::with_capacity(self.msfa_indices.len());
        let mut feat_idx = 0;
        if self.msfa_indices.contains(&feat_idx) {
            intermediates.push(x.clone());
        }
        for block_group in &self.blocks {
            feat_idx += 1;
            for block in block_group {
                x = block.forward(&x)?;
            }
            if self.msfa_indices.contains(&feat_idx) {
                intermediates.push(x.clone());
            }
        }
        self.msfa.forward(&intermediates)
    }
}

/// Checks a block definition's sizes before building it (Python fails
/// later, inside a convolution, or never for a zero stride's division).
fn check_block(stage: usize, index: usize, config: &BlockConfig) -> Result<()> {
    // (name, value, least valid value): kernels may be 0 (no convolution).
    let (limits, expand_ratio) = match config {
        BlockConfig::EdgeResidual(c) => (
            vec![
                ("kernel_size", c.kernel_size, 1),
                ("filters", c.filters, 1),
                ("strides", c.strides, 1),
            ],
            c.expand_ratio,
        ),
        BlockConfig::UniversalInvertedResidual(c) => (
            vec![
                ("start_dw_kernel_size", c.start_dw_kernel_size, 0),
                ("mid_dw_kernel_size", c.mid_dw_kernel_size, 0),
                ("filters", c.filters, 1),
                ("strides", c.strides, 1),
            ],
            c.expand_ratio,
        ),
        BlockConfig::MultiQueryAttention(c) => (
            vec![
                ("num_heads", c.num_heads, 1),
                ("kv_dim", c.kv_dim, 1),
                ("kv_strides", c.kv_strides, 1),
            ],
            1.0,
        ),
    };
    let problem = match limits.iter().find(|(_, value, least)| value < least) {
        Some((name, value, least)) => {
            Some(format!("{name} is {value}; it must be at least {least}"))
        }
        None if expand_ratio.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) => Some(
            format!("expand_ratio is {expand_ratio}; it must be positive"),
        ),
        None => None,
    };
    match problem {
        Some(problem) => Err(invalid(format!(
            "MobileNetV5 block {index} of stage {}: {problem}",
            stage + 1
        ))),
        None => Ok(()),
    }
}

/// Checks that `definition` has the stages 3 and 4 the fusion adapter
/// reads and that their outputs have `fused` channels together (Python
/// fails inside the adapter's convolution otherwise).
fn check_fusion_widths(stem_chs: i32, definition: &[Vec<BlockConfig>], fused: i32) -> Result<()> {
    let mut width = stem_chs;
    let mut widths = Vec::with_capacity(definition.len());
    for (s, stage) in definition.iter().enumerate() {
        for (b, config) in stage.iter().enumerate() {
            check_block(s, b, config)?;
            match config {
                BlockConfig::EdgeResidual(c) => width = c.filters,
                BlockConfig::UniversalInvertedResidual(c) => width = c.filters,
                BlockConfig::MultiQueryAttention(_) => {}
            }
        }
        widths.push(width);
    }
    match widths.get(2..4) {
        Some([third, fourth]) if third + fourth == fused => Ok(()),
        Some([third, fourth]) => Err(invalid(format!(
            "the fusion adapter takes {fused} channels from stages 3 and 4, but they end with \
             {third} + {fourth}; change their last filters"
        ))),
        _ => Err(invalid(format!(
            "the fusion adapter reads stages 3 and 4, but the block definition has {} stages; \
             give at least 4",
            definition.len()
        ))),
    }
}

/// The model types Python's `VisionModel` accepts.
pub const MODEL_TYPES: [&str; 3] = ["gemma3", "gemma3_vision", "gemma3n_vision"];

/// The key whose shape tells [`VisionModel::sanitize`] the checkpoint's
/// convolution layout.
pub const SANITIZE_PROBE_KEY: &str = "vision_tower.timm_model.blocks.0.0.conv_exp.weight";

/// Python: `VisionModel`: the tower (`timm_model`, as Hugging Face's timm
/// wrapper names it).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// `model_type` of the vision config.
    pub model_type: String,
    /// The MobileNetV5 tower.
    pub timm_model: VisionTower,
}

impl VisionModel {
    /// Python: `VisionModel(config)`; fails on a `model_type` Python
    /// rejects.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        match &config.block_definition {
            Some(definition) => Self::with_blocks(config, definition),
            None => Self::with_blocks(config, &gemma3n_mobilenet_def()),
        }
    }

    /// [`VisionModel::new`] with the stages `definition` (see
    /// [`VisionTower::with_blocks`]).
    pub fn with_blocks(config: &VisionConfig, definition: &[Vec<BlockConfig>]) -> Result<Self> {
        if !MODEL_TYPES.contains(&config.model_type.as_str()) {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: MODEL_TYPES.join(", "),
            });
        }
        Ok(VisionModel {
            model_type: config.model_type.clone(),
            timm_model: VisionTower::with_blocks(config, definition)?,
        })
    }

    /// Python: `VisionModel.__call__`: the tower on `[B, 3, H, W]` pixels.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        self.timm_model.forward(x)
    }

    /// Python: `VisionModel.sanitize` of the checkpoint's weights (keys
    /// after the model's sanitize: `vision_tower.timm_model.*`, any
    /// others): PyTorch's 4-D convolution weights `[out, in, kh, kw]` made
    /// MLX's `[out, kh, kw, in]`, unless the probe key shows MLX's layout
    /// already; every key kept.
    pub fn sanitize(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let probe = weights
            .get(SANITIZE_PROBE_KEY)
            .ok_or_else(|| Error::Weights {
                path: "vision_tower".into(),
                message: format!(
                    "no {SANITIZE_PROBE_KEY}; Gemma 3n's sanitize reads its shape to tell the \
                 convolution layout: give the vision tower's weights (Hugging Face names them \
                 model.vision_tower.timm_model.*; strip \"model.\" first)"
                ),
            })?;
        let [_, h, _, c] = *probe.shape() else {
            return Err(Error::Weights {
                path: "vision_tower".into(),
                message: format!(
                    "{SANITIZE_PROBE_KEY} has shape {:?}; a convolution weight is 4-D",
                    probe.shape()
                ),
            });
        };
        let skip_transpose = c > h;
        weights
            .into_iter()
            .map(|(k, v)| {
                let convolution =
                    (k.contains("conv") && k.contains("weight")) || k.contains("proj.weight");
                if convolution && v.ndim() == 4 && !skip_transpose {
                    let v = v.transpose([0, 2, 3, 1])?;
                    return Ok((k, v));
                }
                Ok((k, v))
            })
            .collect()
    }
}
