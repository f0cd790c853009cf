//! `mlx_vlm/models/qwen3_vl_moe/qwen3_vl_moe.py`: the Qwen3-VL-MoE model.
//!
//! The model is Qwen3-VL's ([`qwen3_vl::Model`]) with this family's vision
//! GELUs and experts ([`Model`]); `Model.sanitize` ([`sanitize`]) is this
//! file's own.
//!
//! Differences from Python:
//! - `get_input_embeddings` is Qwen3-VL's: images and videos in one prompt
//!   are both encoded and their deepstack features merged in token order.
//!   Python's copy here encodes only `pixel_values` (else the videos') with
//!   the image grid, so a prompt with both fails there on the feature
//!   count; with images or videos alone the two are the same computation.
//! - `shard` is not ported. The vision feature cache is Qwen3-VL's (see
//!   [`qwen3_vl::qwen3_vl`]): deepstack features cached too, where
//!   Python's `cached_image_features` path drops them.
//! - `sanitize` also takes the experts in transformers' in-memory layout
//!   (`gate_up_proj` `[experts, 2 * moe_intermediate, hidden]`, as
//!   transformers 5 saves them with `save_original_format=False`); Python
//!   assumes the original `[experts, hidden, 2 * moe_intermediate]`.
//! - `sanitize` transposes `down_proj` only when it is 3-D (the stacked
//!   experts); Python transposes every `model.language_model` key naming
//!   `down_proj` with three axes and so fails on the dense MLP of
//!   `mlp_only_layers` (or `decoder_sparse_step > 1`) checkpoints.
//! - A `gate_up_proj` that is not 3-D with an even last axis is an
//!   [`Error::Weights`] naming the key; Python fails on the slice or the
//!   transpose.

use std::collections::HashMap;

use mlx_rs::{Array, idx};

use super::config::ModelConfig;
use super::language::{self, Qwen3VLMoEMLP};
use super::vision::vision_model;
use crate::models::qwen3_vl;
use crate::models::qwen3_vl::qwen3_vl::Qwen3VlVariant;
use crate::registry::Family;
use crate::{Error, Result};

/// Python: `Model`: Qwen3-VL's model with this family's vision tower and
/// experts.
pub type Model = qwen3_vl::qwen3_vl::Model<Qwen3VLMoEMLP>;

/// Python: `Model.__init__(config)`.
pub fn model(config: &ModelConfig) -> Result<Model> {
    Ok(qwen3_vl::qwen3_vl::Model {
        config: config.base.clone(),
        vision_tower: vision_model(&config.base.vision_config)?,
        language_model: language::language_model(&config.text_config, &config.base)?,
    })
}

/// The `...experts.` prefixes whose fused experts are in transformers'
/// in-memory layout (`gate_up_proj` `[experts, 2 * moe_intermediate,
/// hidden]`, `down_proj` `[experts, hidden, moe_intermediate]`), as
/// transformers 5 saves them with `save_original_format=False`; the
/// original layout has `gate_up_proj`'s axis 1 equal to `down_proj`'s axis
/// 2 (both `hidden`), this one its axis 2 equal to `down_proj`'s axis 1, and
/// a pair cannot be both (that would need `moe_intermediate` = 0).
fn transposed_experts(weights: &HashMap<String, Array>) -> Vec<String> {
    weights
        .iter()
        .filter_map(|(key, gate_up)| {
            let prefix = key.strip_suffix("gate_up_proj")?;
            let down = weights.get(&format!("{prefix}down_proj"))?;
            let (g, d) = (gate_up.shape(), down.shape());
            (g.len() == 3 && d.len() == 3 && g[2] == d[1] && g[1] != d[2] && g[1] % 2 == 0)
                .then(|| prefix.to_string())
        })
        .collect()
}

/// Renames Hugging Face keys to this model's and splits the experts'
/// fused `gate_up_proj` (`[experts, hidden, 2 * moe_intermediate]`) into
/// `gate_proj` and `up_proj` and transposes them and `down_proj` to
/// `[experts, out, in]` (Python: `Model.sanitize`). Keys already in the
/// mlx-community layout pass unchanged.
pub fn sanitize(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
    let transposed = transposed_experts(&weights);
    let mut sanitized = HashMap::with_capacity(weights.len());
    for (key, value) in weights {
        let mut key = key;
        if key.contains("model") {
            if key.contains("model.language_model") {
                let model_layout = transposed.iter().any(|p| key.starts_with(p.as_str()));
                key = key.replace("model.language_model", "language_model.model");
                if model_layout && key.contains("gate_up_proj") {
                    // [experts, 2 * moe_intermediate, hidden]: halves of
                    // axis 1, already [experts, out, in].
                    let mid = value.shape()[1] / 2;
                    sanitized.insert(
                        key.replace("gate_up_proj", "gate_proj"),
                        value.index(idx![.., ..mid])?,
                    );
                    sanitized.insert(
                        key.replace("gate_up_proj", "up_proj"),
                        value.index(idx![.., mid..])?,
                    );
                    continue;
                }
                if model_layout && key.contains("down_proj") {
                    sanitized.insert(key, value);
                    continue;
                }
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

impl Qwen3VlVariant for Qwen3VLMoEMLP {
    const FAMILY: &'static Family = &super::FAMILY;

    fn sanitize(
        model: &Model,
        weights: HashMap<String, Array>,
    ) -> Result<HashMap<String, Array>> {
        // Python's loader runs Model.sanitize, VisionModel.sanitize, then
        // LanguageModel.sanitize.
        let weights = model.vision_tower.sanitize(sanitize(weights)?)?;
        language::sanitize(weights, model.language_model.args.num_hidden_layers)
    }

    /// The dense MLP's width, or a sparse layer's `top_k` experts'
    /// intermediate and output rows before they are summed, the wider.
    fn feed_forward_width(model: &Model) -> i32 {
        let args = &model.language_model.args;
        let experts = model
            .language_model
            .layers()
            .iter()
            .filter_map(|layer| match &layer.mlp {
                Qwen3VLMoEMLP::Sparse(block) => Some(
                    block.top_k * (block.switch_mlp.gate_proj.output_dims() + args.hidden_size),
                ),
                Qwen3VLMoEMLP::Dense(_) => None,
            })
            .max()
            .unwrap_or(0);
        args.intermediate_size.max(experts)
    }
}
