//! `mlx_vlm/models/qwen3_vl_moe/qwen3_vl_moe.py`: the Qwen3-VL-MoE model.
//!
//! Partial port: `Model.sanitize` ([`sanitize`]). The rest of the model
//! (`get_input_embeddings`, `merge_input_ids_with_image_features`,
//! `masked_scatter`) is a Python copy of Qwen3-VL's and comes with the
//! Qwen3-VL port.
//!
//! Differences from Python:
//! - `sanitize` transposes `down_proj` only when it is 3-D (the stacked
//!   experts); Python transposes every `model.language_model` key naming
//!   `down_proj` with three axes and so fails on the dense MLP of
//!   `mlp_only_layers` (or `decoder_sparse_step > 1`) checkpoints.
//! - A `gate_up_proj` that is not 3-D with an even last axis is an
//!   [`Error::Weights`] naming the key; Python fails on the slice or the
//!   transpose.

use std::collections::HashMap;

use mlx_rs::{Array, idx};

use crate::{Error, Result};

/// Renames Hugging Face keys to this model's and splits the experts'
/// fused `gate_up_proj` (`[experts, hidden, 2 * moe_intermediate]`) into
/// `gate_proj` and `up_proj` and transposes them and `down_proj` to
/// `[experts, out, in]` (Python: `Model.sanitize`). Keys already in the
/// mlx-community layout pass unchanged.
pub fn sanitize(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
    let mut sanitized = HashMap::with_capacity(weights.len());
    for (key, value) in weights {
        let mut key = key;
        if key.contains("model") {
            if key.contains("model.language_model") {
                key = key.replace("model.language_model", "language_model.model");
                if key.contains("gate_up_proj") {
                    let shape = value.shape().to_vec();
                    if shape.len() != 3 || shape[2] % 2 != 0 {
                        return Err(Error::Weights {
                            path: key,
                            message: format!(
                                "experts.gate_up_proj has shape {shape:?}; expected [experts, \
                                 hidden, 2 * moe_intermediate_size]"
                            ),
                        });
                    }
                    let mid = shape[2] / 2;
                    let gate = value.index(idx![mlx_rs::Ellipsis, ..mid])?;
                    let up = value.index(idx![mlx_rs::Ellipsis, mid..])?;
                    sanitized.insert(
                        key.replace("gate_up_proj", "gate_proj"),
                        gate.transpose([0, 2, 1])?,
                    );
                    sanitized.insert(
                        key.replace("gate_up_proj", "up_proj"),
                        up.transpose([0, 2, 1])?,
                    );
                    continue;
                }
                if key.contains("down_proj") && value.ndim() == 3 {
                    sanitized.insert(key, value.transpose([0, 2, 1])?);
                    continue;
                }
            } else if key.contains("model.visual") {
                key = key.replace("model.visual", "vision_tower");
            }
        } else if key.contains("lm_head") {
            key = key.replace("lm_head", "language_model.lm_head");
        }
        sanitized.insert(key, value);
    }
    Ok(sanitized)
}
