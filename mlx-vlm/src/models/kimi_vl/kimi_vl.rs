//! `mlx_vlm/models/kimi_vl/kimi_vl.py`: the model joining the MoonViT
//! tower, the projector and the DeepSeek-V3 decoder.
//!
//! As in Python, the pixel values reach the tower in float32 whatever the
//! checkpoint's dtype (no cast), so a bf16 checkpoint's tower, projector
//! and merged embeddings compute in float32; the merged embeddings then
//! carry float32 into the decoder.
//!
//! Divergences from Python: a feature count that differs from the prompt's
//! image tokens is a typed error (Python gathers out of range or leaves
//! features unused); `cached_image_features` (the CLI's image cache) is the
//! vision feature cache here (`FamilyModel::get_input_embeddings_cached`),
//! which keys the projected features by the pixel values' and grids'
//! content; the grids travel as `(h, w)` pairs (Python: `image_grid_hws`
//! and `_grid_shapes`).

use std::collections::HashMap;

use mlx_rs::nn::{LayerNorm, Linear, activations};
use mlx_rs::{Array, ops};

use super::config::ModelConfig;
use super::language::LanguageModel;
use super::processing_kimi_vl::KimiVLInputs;
use super::vision::{VisionModel, sanitize as sanitize_vision};
use crate::models::{FamilyModel, KvQuantization};
use crate::models::cache::{Cache, make_prompt_cache};
use crate::models::qwen2_5_vl::qwen2_5_vl::{TextDims, VisionDims, eos_token_ids, estimate_memory};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// Python: `KimiVLMultiModalProjector`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct KimiVLMultiModalProjector {
    /// `vision hidden * kh * kw`.
    #[module(skip)]
    pub hidden_size: i32,
    /// Norm of each patch's features (eps 1e-5).
    pub pre_norm: LayerNorm,
    /// `hidden_size → hidden_size`.
    pub linear_1: Linear,
    /// `hidden_size → text hidden`.
    pub linear_2: Linear,
}

impl KimiVLMultiModalProjector {
    /// Python: `KimiVLMultiModalProjector(config)`.
    pub fn new(config: &ModelConfig) -> Result<Self> {
        let v = &config.vision_config;
        let [kh, kw] = v.merge_kernel();
        let hidden_size = v.hidden_size * kh * kw;
        Ok(KimiVLMultiModalProjector {
            hidden_size,
            pre_norm: LayerNorm::new(v.hidden_size, 1e-5, true, true)?,
            linear_1: Linear::new(hidden_size, hidden_size, true)?,
            linear_2: Linear::new(hidden_size, config.text_config.hidden_size, true)?,
        })
    }

    /// Python: `KimiVLMultiModalProjector.__call__(image_features)`: every
    /// image's merged tokens, `[tokens, text hidden]`.
    pub fn forward(&self, image_features: &[Array]) -> Result<Array> {
        let x = ops::concatenate(image_features, 0)?;
        let h = self.pre_norm.forward(&x)?.reshape(&[-1, self.hidden_size])?;
        let h = self.linear_1.forward(&h)?;
        let h = activations::gelu(&h)?;
        Ok(self.linear_2.forward(&h)?)
    }
}

/// Python: `Model`.
#[derive(Debug, mlx_rs::Module)]
pub struct Model {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// The MoonViT tower.
    pub vision_tower: VisionModel,
    /// The DeepSeek-V3 decoder.
    pub language_model: LanguageModel,
    /// The projector.
    pub multi_modal_projector: KimiVLMultiModalProjector,
}

impl Model {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        Ok(Model {
            vision_tower: VisionModel::new(&config.vision_config)?,
            language_model: LanguageModel::new(&config.text_config)?,
            multi_modal_projector: KimiVLMultiModalProjector::new(&config)?,
            config,
        })
    }

    /// The projected features of `inputs`' images, `[tokens, text hidden]`
    /// (the tower on the channels-last pixel values, then the projector).
    pub fn image_features(&self, inputs: &KimiVLInputs) -> Result<Array> {
        let pixels = inputs.pixel_values.transpose([0, 2, 3, 1])?;
        let hidden = self.vision_tower.forward(&pixels, &inputs.grid_hws)?;
        self.multi_modal_projector.forward(&hidden)
    }

    /// Python: `Model.get_input_embeddings(input_ids, pixel_values,
    /// image_grid_hws=..., image_token_id=...)`: the token embeddings, with
    /// the image features in order at the image tokens (`image_token_id`,
    /// `image_token_index` or `media_placeholder_token_id`).
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&KimiVLInputs>,
    ) -> Result<Array> {
        self.embed_with(input_ids, inputs, None)
    }

    /// [`Model::get_input_embeddings`], the projected features taken from
    /// `cache` when it holds those of the pixel values and grids (else
    /// encoded and stored): the cached and uncached paths differ only
    /// there.
    fn embed_with(
        &self,
        input_ids: &Array,
        inputs: Option<&KimiVLInputs>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<Array> {
        let inputs_embeds = self.language_model.model.embed_tokens.forward(input_ids)?;
        let Some(inputs) = inputs else {
            return Ok(inputs_embeds);
        };
        let grids: Vec<i32> = inputs.grid_hws.iter().flat_map(|&(h, w)| [h, w]).collect();
        let grids = Array::from_slice(&grids, &[inputs.grid_hws.len() as i32, 2])?;
        let image_features = cached_feature(
            cache,
            &self.config.model_type,
            &[Some(&inputs.pixel_values), Some(&grids)],
            || self.image_features(inputs),
        )?;
        let ids = input_ids.to_vec_as::<i64>()?;
        let image_ids: Vec<i64> = [
            inputs.image_token_id,
            Some(self.config.image_token_index),
            Some(self.config.media_placeholder_token_id),
        ]
        .into_iter()
        .flatten()
        .map(i64::from)
        .collect();
        // Python: cumsum of the mask - 1 where it holds, else 0.
        let mut order = Vec::with_capacity(ids.len());
        let mut k = 0i32;
        for t in &ids {
            if image_ids.contains(t) {
                order.push(k);
                k += 1;
            } else {
                order.push(0);
            }
        }
        let n_features = image_features.shape().first().copied().unwrap_or(0);
        if k != n_features {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {k} image tokens but the images give {n_features} features; \
                     each image's <|media_pad|> must be expanded to (grid height x grid width) / \
                     (merge kernel area) tokens, as Kimi-VL's processor does"
                ),
            });
        }
        let mask = ops::expand_dims(
            &Array::from_vec_shaped(
                ids.iter().map(|t| image_ids.contains(t)).collect::<Vec<bool>>(),
                input_ids.shape(),
            )?,
            -1,
        )?;
        let feat_idx = Array::from_vec_shaped(order, input_ids.shape())?;
        let gathered = ops::take(&image_features, &feat_idx, 0)?;
        Ok(ops::r#where(&mask, &gathered, &inputs_embeds)?)
    }

    /// Python: `Model.__call__`: logits of the prompt.
    pub fn forward(
        &self,
        input_ids: &Array,
        inputs: Option<&KimiVLInputs>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let embeds = self.get_input_embeddings(input_ids, inputs)?;
        self.language_model
            .forward(input_ids, Some(&embeds), cache, None)
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }

    /// The loader's sanitize chain (Python: `Model.sanitize`, then the
    /// tower's and the language model's): `encoder.` dropped from the
    /// tower's keys, the tower's own renames, the experts stacked.
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let weights: HashMap<String, Array> = weights
            .into_iter()
            .map(|(k, v)| {
                if k.contains("vision_tower") {
                    (k.replace("encoder.", ""), v)
                } else {
                    (k, v)
                }
            })
            .collect();
        self.language_model.sanitize(sanitize_vision(weights)?)
    }
}

impl FamilyModel for Model {
    type Inputs = KimiVLInputs;
    type Prefill = ();
    type State = ();

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&KimiVLInputs>,
        _mask: Option<&Array>,
    ) -> Result<(Array, ())> {
        Ok((self.embed_with(input_ids, inputs, None)?, ()))
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&KimiVLInputs>,
        _mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, ())> {
        Ok((self.embed_with(input_ids, inputs, Some(cache))?, ()))
    }

    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        _prefill: Option<&()>,
        _state: &mut (),
    ) -> Result<Array> {
        self.language_model
            .forward(inputs, inputs_embeds, cache, None)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        make_prompt_cache(self.layers(), max_kv_size)
    }

    // Plain KV caches; the (YaRN) RoPE rotates each row at its own count.
    crate::models::batch_layer_cache::language_model_decodes_batches!(());

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Model::sanitize(self, weights)
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_token_ids(self.config.eos_token_id.as_deref())
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let t = &self.config.text_config;
        let v = &self.config.vision_config;
        let [kh, _] = v.merge_kernel();
        let vision = VisionDims {
            in_channels: v.num_channels,
            temporal_patch_size: 1,
            patch_size: v.patch_size,
            hidden_size: v.embed_dim,
            intermediate_size: v.intermediate_size,
            num_heads: v.num_heads,
            out_hidden_size: t.hidden_size,
            spatial_merge_size: kh,
            has_full_attention: true,
            window_size: 0,
            // The tower computes in float32 (see the module docs).
            itemsize: 4,
        };
        // The cache holds full keys (nope + rope) and values per head; the
        // widest of the two stands for both.
        let head_dim = (t.qk_nope_head_dim + t.qk_rope_head_dim).max(t.v_head_dim);
        let text = TextDims {
            hidden_size: t.hidden_size,
            num_attention_heads: t.num_attention_heads,
            head_dim,
            kv_heads: t.num_attention_heads,
            intermediate_size: t.intermediate_size,
            vocab_size: t.vocab_size,
            layers: self.layers(),
            itemsize: self.language_model.model.norm.weight.itemsize(),
        };
        Ok(estimate_memory(&vision, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        // Multi-head latent attention caches whole keys (nope + rope
        // parts) and values of their own width; Python quantizes both.
        let t = &self.config.text_config;
        KvQuantization::HeadDims {
            keys: t.qk_nope_head_dim + t.qk_rope_head_dim,
            values: t.v_head_dim,
        }
    }
}
