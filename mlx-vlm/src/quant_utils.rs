//! Weight quantization for `convert`: Python's `mlx_vlm/quant_utils.py`
//! (`get_quantization_params`, `quantize_model`), in that order.
//!
//! Divergences from Python:
//!
//! - Only the `affine` mode is ported (`convert` has no `--q-mode`), and
//!   `bits` and `group_size` are checked against what MLX's affine
//!   quantization supports before any layer is touched (Python finds out
//!   from `mx.quantize` halfway through the model).
//! - A model whose `config` already has `quantization` (Python's
//!   "fine-grained" path, which records every newly quantized layer in the
//!   config) is refused: see [`quantize_model`].
//! - `quant_predicate` returns a bool: the dict form (per-layer
//!   `group_size`/`bits`, `fallback_group_size`) serves only the mixed-bit
//!   recipes and the model-level predicates of families not ported here.
//! - The bits-per-weight figure Python prints is returned instead
//!   ([`QuantizeReport`]); its bytes are the parameters' only, where
//!   Python's `tree_reduce` over the model also counts private arrays such
//!   as a rotary embedding's `_inv_freq` (a relative difference of about
//!   1e-5 on the tiny models).

use mlx_rs::nn::{Item, Module, ModuleExt, QuantSpec, quantize_with};
use mlx_rs::ops::QuantizationMode;
use serde_json::{Value, json};

use crate::{Error, Result};

/// The group sizes MLX's affine quantization supports.
pub const AFFINE_GROUP_SIZES: [i32; 3] = [32, 64, 128];

/// The bit widths MLX's affine quantization supports.
pub const AFFINE_BITS: [i32; 6] = [2, 3, 4, 5, 6, 8];

/// The `quantization` entry of `config.json` (Python: the dict of
/// `get_quantization_params`: `group_size`, `bits`, `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantizationParams {
    /// Elements per group sharing a scale.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
}

impl QuantizationParams {
    /// As `config.json` holds it (`mode` is always `affine` here).
    pub fn to_json(self) -> Value {
        json!({"group_size": self.group_size, "bits": self.bits, "mode": "affine"})
    }
}

/// The affine quantization parameters, defaults filled in (group 64,
/// 4 bits) and checked against what MLX supports (Python:
/// `get_quantization_params(group_size, bits, "affine")`; see the top of
/// this file).
pub fn get_quantization_params(
    group_size: Option<i32>,
    bits: Option<i32>,
) -> Result<QuantizationParams> {
    let group_size = group_size.unwrap_or(64);
    let bits = bits.unwrap_or(4);
    if !AFFINE_BITS.contains(&bits) {
        return Err(Error::InvalidArgument(format!(
            "--q-bits {bits} is not supported by MLX's affine quantization; use one of \
             {AFFINE_BITS:?}"
        )));
    }
    if !AFFINE_GROUP_SIZES.contains(&group_size) {
        return Err(Error::InvalidArgument(format!(
            "--q-group-size {group_size} is not supported by MLX's affine quantization; use \
             one of {AFFINE_GROUP_SIZES:?}"
        )));
    }
    Ok(QuantizationParams { group_size, bits })
}

/// What [`quantize_model`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeReport {
    /// The layers quantized, by path.
    pub quantized: Vec<String>,
    /// Quantizable layers left in float because the group size does not
    /// divide their input width (Python skips them silently).
    pub skipped_width: Vec<String>,
    /// Bits per weight of the whole model (Python:
    /// `compute_bits_per_weight`, which it prints).
    pub bits_per_weight: f64,
}

/// Quantizes `model` in place and returns the config with its
/// `quantization` and `quantization_config` entries (Python:
/// `quantize_model(model, config, group_size, bits, mode="affine",
/// quant_predicate=...)`): every quantizable layer (Linear, Embedding,
/// SwitchLinear) for which `quant_predicate(path)` holds and whose input
/// width (the weight's last dimension) the group size divides.
///
/// A `config` that already has `quantization` is an error: Python then
/// quantizes only the remaining float layers and writes each of them into
/// the config, a path not ported.
pub fn quantize_model(
    model: &mut dyn Module,
    config: &Value,
    params: QuantizationParams,
    quant_predicate: &dyn Fn(&str) -> bool,
) -> Result<(Value, QuantizeReport)> {
    let Value::Object(map) = config else {
        return Err(Error::Config {
            file: "config.json".into(),
            message: "expected a JSON object at the top".into(),
        });
    };
    if map.contains_key("quantization") {
        return Err(Error::Config {
            file: "config.json".into(),
            message: "the checkpoint is already quantized (it has a \"quantization\" entry); \
                      convert a float checkpoint, or drop --quantize to re-save it as is"
                .into(),
        });
    }
    let mut quantized_config = map.clone();
    quantized_config.insert("quantization".into(), params.to_json());
    let spec = QuantSpec::new(
        Some(params.group_size),
        Some(params.bits),
        QuantizationMode::Affine,
    );
    let mut quantized = Vec::new();
    let mut skipped_width = Vec::new();
    // Python's `wrapped_predicate`: the width check first, then the
    // caller's predicate.
    quantize_with(model, |path, module| {
        let input_dims = module
            .parameters()
            .get("weight")
            .and_then(|w| w.shape().last().copied())?;
        if input_dims % params.group_size != 0 {
            if quant_predicate(path) {
                skipped_width.push(path.to_string());
            }
            return None;
        }
        if !quant_predicate(path) {
            return None;
        }
        quantized.push(path.to_string());
        Some(spec)
    })?;
    // Python: "support hf model tree #957".
    quantized_config.insert("quantization_config".into(), params.to_json());
    let bits_per_weight = compute_bits_per_weight(model);
    Ok((
        Value::Object(quantized_config),
        QuantizeReport {
            quantized,
            skipped_width,
            bits_per_weight,
        },
    ))
}

/// Bits per weight of `model` (Python: `compute_bits_per_weight`, with
/// `get_total_parameters`): the bytes of every parameter over the weights
/// of the leaf modules counted unpacked, a quantized layer's weight as
/// `size * 32 / bits` plus its `bias`. As in Python, a parameter held by a
/// module that also has submodules (Gemma 3's projector weight) counts in
/// the bytes but not in the weights.
fn compute_bits_per_weight(model: &mut dyn Module) -> f64 {
    let module: &dyn Module = model;
    let bytes: usize = module.parameters().values().map(|a| a.nbytes()).sum();
    let mut params = 0usize;
    model.apply_to_modules(&mut |_, layer| {
        let mut leaf = true;
        layer.items(&mut |_, item| leaf &= !matches!(item, Item::Module(_)));
        if !leaf {
            return;
        }
        let own = (*layer).parameters();
        params += match layer.quantizable().and_then(|q| q.quantization()) {
            Some(q) => {
                let weight = own.get("weight").map_or(0, |w| w.size());
                let bias = own.get("bias").map_or(0, |b| b.size());
                bias + weight * 32 / q.bits as usize
            }
            None => own.values().map(|v| v.size()).sum(),
        };
    });
    if params == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / params as f64
    }
}
