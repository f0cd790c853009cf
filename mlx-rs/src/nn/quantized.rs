//! Quantization of a module tree: Python's `mlx/nn/layers/quantized.py`
//! (`nn.quantize`, `QuantizedLinear`, `QuantizedEmbedding`).
//!
//! A quantized layer keeps Python's keys at the float layer's level:
//! `weight` (packed `uint32`), `scales`, `biases` (affine mode only) and
//! the layer's own `bias`. As in mlx-swift, where `QuantizedLinear` is a
//! `Linear`, a [`Linear`](super::Linear) or [`Embedding`](super::Embedding)
//! field holds either form, so a model is declared once and quantized in
//! place.

use std::collections::BTreeSet;

use super::module::{Module, ModuleExt, Param};
use crate::Array;
use crate::error::{Error, Result};
use crate::ops::{
    self, DequantizeOptions, QuantizationMode, QuantizeOptions, QuantizedMatmulOptions,
};

/// How a layer is quantized: Python's `group_size`, `bits`, `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantSpec {
    /// Elements per group sharing a scale.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
    /// Format.
    pub mode: QuantizationMode,
}

impl QuantSpec {
    /// The spec with the mode's defaults for unset values (Python's
    /// `_defaults_for_mode`): affine 64 / 4, mxfp4 32 / 4, mxfp8 32 / 8,
    /// nvfp4 16 / 4.
    pub fn new(group_size: Option<i32>, bits: Option<i32>, mode: QuantizationMode) -> QuantSpec {
        let (g, b) = match mode {
            QuantizationMode::Affine => (64, 4),
            QuantizationMode::Mxfp4 => (32, 4),
            QuantizationMode::Mxfp8 => (32, 8),
            QuantizationMode::Nvfp4 => (16, 4),
        };
        QuantSpec {
            group_size: group_size.unwrap_or(g),
            bits: bits.unwrap_or(b),
            mode,
        }
    }

    pub(crate) fn quantize_options(&self) -> QuantizeOptions<'static> {
        QuantizeOptions {
            group_size: Some(self.group_size),
            bits: Some(self.bits),
            mode: self.mode,
            global_scale: None,
        }
    }

    /// `quantized_matmul` options for `x @ w.T` with this spec, as the
    /// quantized layers call it.
    pub(crate) fn matmul_options(&self) -> QuantizedMatmulOptions {
        QuantizedMatmulOptions {
            transpose: true,
            group_size: Some(self.group_size),
            bits: Some(self.bits),
            mode: self.mode,
        }
    }

    pub(crate) fn dequantize_options(&self) -> DequantizeOptions<'static> {
        DequantizeOptions {
            group_size: Some(self.group_size),
            bits: Some(self.bits),
            mode: self.mode,
            global_scale: None,
            dtype: None,
        }
    }
}

/// A layer that can switch between float and quantized weights in place
/// (Python's `to_quantized` / `from_linear`).
pub trait Quantizable {
    /// Quantizes the weight; the quantized parameters are frozen, as in
    /// Python.
    fn quantize(&mut self, spec: QuantSpec) -> Result<()>;
    /// Turns the weight back into floats.
    fn dequantize(&mut self) -> Result<()>;
    /// The spec, if quantized.
    fn quantization(&self) -> Option<QuantSpec>;
}

/// The weight, scales and biases of a quantized layer, as stored in its
/// `weight`, `scales` and `biases` fields.
pub(crate) struct QuantizedWeight {
    pub weight: Param,
    pub scales: Param,
    pub biases: Option<Param>,
}

/// `weight` quantized by `spec`, frozen.
pub(crate) fn quantize_weight(weight: &Array, spec: QuantSpec) -> Result<QuantizedWeight> {
    let q = ops::quantize(weight, spec.quantize_options())?;
    let frozen = |a: Array| {
        let mut p = Param::new(a);
        p.set_frozen(true);
        p
    };
    Ok(QuantizedWeight {
        weight: frozen(q.weights),
        scales: frozen(q.scales),
        biases: q.biases.map(frozen),
    })
}

/// The float weight of a quantized layer (`mx.dequantize`).
pub(crate) fn dequantize_weight(
    weight: &Array,
    scales: &Array,
    biases: Option<&Array>,
    spec: QuantSpec,
) -> Result<Param> {
    ops::dequantize(weight, scales, biases, spec.dequantize_options()).map(Param::new)
}

/// Quantizes, in place, every quantizable layer for which `predicate(path,
/// layer)` holds (`nn.quantize(model, group_size, bits, mode=...,
/// class_predicate=...)`; Python's default predicate accepts every layer
/// that can be quantized). Layers already quantized are left alone.
pub fn quantize(
    model: &mut dyn Module,
    group_size: Option<i32>,
    bits: Option<i32>,
    mode: QuantizationMode,
    mut predicate: impl FnMut(&str, &dyn Module) -> bool,
) -> Result<()> {
    let spec = QuantSpec::new(group_size, bits, mode);
    quantize_with(model, |path, module| {
        predicate(path, module).then_some(spec)
    })
}

/// Quantizes, in place, every quantizable layer for which `spec_of(path,
/// layer)` gives a spec, with that spec (`nn.quantize` with a
/// `class_predicate` returning per-layer parameters, as checkpoints with
/// per-layer `quantization` entries need). Layers already quantized are
/// left alone.
pub fn quantize_with(
    model: &mut dyn Module,
    mut spec_of: impl FnMut(&str, &dyn Module) -> Option<QuantSpec>,
) -> Result<()> {
    let mut result = Ok(());
    model.apply_to_modules(&mut |path, module| {
        if result.is_err()
            || module
                .quantizable()
                .is_none_or(|q| q.quantization().is_some())
        {
            return;
        }
        if let Some(spec) = spec_of(path, &*module)
            && let Some(layer) = module.as_quantizable()
        {
            result = layer.quantize(spec).map_err(|e| match e {
                Error::Mlx { message } => Error::Mlx {
                    message: format!("quantizing {path}: {message}"),
                },
                other => other,
            });
        }
    });
    result
}

/// Quantizes exactly the layers whose `<path>.scales` is among `keys`: the
/// keys of a quantized checkpoint, whose `config.json` gives the spec.
pub fn quantize_like_checkpoint<'k>(
    model: &mut dyn Module,
    keys: impl IntoIterator<Item = &'k str>,
    group_size: Option<i32>,
    bits: Option<i32>,
    mode: QuantizationMode,
) -> Result<()> {
    let keys: BTreeSet<&str> = keys.into_iter().collect();
    quantize(model, group_size, bits, mode, |path, _| {
        keys.contains(format!("{path}.scales").as_str())
    })
}

/// Turns every quantized layer back into floats.
pub fn dequantize(model: &mut dyn Module) -> Result<()> {
    let mut result = Ok(());
    model.apply_to_modules(&mut |_, module| {
        if result.is_ok()
            && let Some(layer) = module.as_quantizable()
            && layer.quantization().is_some()
        {
            result = layer.dequantize();
        }
    });
    result
}
