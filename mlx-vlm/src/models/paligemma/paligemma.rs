//! `mlx_vlm/models/paligemma/paligemma.py`: the model joining the SigLIP
//! tower, its projector and the Gemma decoder.
//!
//! Python's generate hands `attention_mask_4d` to
//! `language_model(**kwargs)`, which ignores it, so generation prefills
//! with `mask=None` (bidirectional: no mask) and, the prefix-LM mask
//! spanning the whole prompt, in one pass (`chunked_prefill_policy`); only
//! `Model.__call__` applies the 4-D mask. The [`FamilyModel`] impl does
//! the same.
//!
//! Divergences from Python: a feature count that does not fill the
//! prompt's image tokens is a typed error (Python pads or fails in a
//! shape error); Python's `cached_image_features` argument is the
//! vision feature cache here (`FamilyModel::get_input_embeddings_cached`),
//! which keys the projected features by the pixel values' content;
//! checkpoints re-saved by transformers 5 (`model.language_model.*`,
//! `model.vision_tower.*`, `model.multi_modal_projector.*`) load
//! ([`normalize_transformers5_layout`]; Python fails on them).

use std::collections::HashMap;

use mlx_rs::nn::Linear;
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::ModelConfig;
use super::language::LanguageModel;
use super::processing_paligemma::PaliGemmaInputs;
use super::vision::VisionModel;
use crate::models::{FamilyModel, KvQuantization};
use crate::models::cache::{Cache, make_prompt_cache};
use crate::models::qwen2_5_vl::qwen2_5_vl::{TextDims, VisionDims, estimate_memory};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// The `[batch, 1, seq, seq]` outer product of a `[batch, seq]` attention
/// mask (Python: the end of `_prepare_inputs_for_multimodal`, which Gemma 3
/// copies).
pub fn prefix_mask_4d(attention_mask: &Array) -> Result<Array> {
    let mask_4d = ops::multiply(
        &ops::expand_dims(attention_mask, 1)?,
        &ops::expand_dims(attention_mask, 2)?,
    )?;
    Ok(ops::expand_dims(&mask_4d, 1)?)
}

/// Python: `PaliGemmaMultiModalProjector`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct PaliGemmaMultiModalProjector {
    /// `vision hidden → projection_dim`.
    pub linear: Linear,
}

impl PaliGemmaMultiModalProjector {
    /// Python: `PaliGemmaMultiModalProjector(config)`.
    pub fn new(config: &ModelConfig) -> Result<Self> {
        Ok(PaliGemmaMultiModalProjector {
            linear: Linear::new(
                config.vision_config.hidden_size,
                config.vision_config.projection_dim,
                true,
            )?,
        })
    }

    /// Python: `PaliGemmaMultiModalProjector.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(self.linear.forward(x)?)
    }
}

/// Python: `Model`.
#[derive(Debug, mlx_rs::Module)]
pub struct Model {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// The SigLIP tower.
    pub vision_tower: VisionModel,
    /// The Gemma decoder.
    pub language_model: LanguageModel,
    /// The projector.
    pub multi_modal_projector: PaliGemmaMultiModalProjector,
}

impl Model {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        Ok(Model {
            vision_tower: VisionModel::new(&config.vision_config)?,
            language_model: LanguageModel::new(&config.text_config)?,
            multi_modal_projector: PaliGemmaMultiModalProjector::new(&config)?,
            config,
        })
    }

    /// Python: `Model.chunked_prefill_policy`: the prefix-LM mask spans the
    /// whole prompt, so a bidirectional model prefills in one pass.
    pub fn chunked_prefill(&self) -> bool {
        !self
            .config
            .text_config
            .use_bidirectional_attention
            .unwrap_or(false)
    }

    /// Python: `Model.get_input_embeddings`: the token embeddings, and with
    /// pixel values (`[batch, channels, height, width]`) the projected
    /// image features of the first image in place of the image tokens and
    /// the 4-D prefix-LM mask built from `mask` (`[batch, seq]`).
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        mask: Option<&Array>,
    ) -> Result<(Array, Option<Array>)> {
        self.embed_with(input_ids, pixel_values, mask, None)
    }

    /// [`Model::get_input_embeddings`], the projected image features taken
    /// from `cache` when it holds the pixel values' (else encoded and
    /// stored): the cached and uncached paths differ only there.
    fn embed_with(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        mask: Option<&Array>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<(Array, Option<Array>)> {
        let inputs_embeds = self.language_model.model.embed_tokens.forward(input_ids)?;
        let Some(pixel_values) = pixel_values else {
            return Ok((inputs_embeds, None));
        };
        // The tower's input dtype is the embeddings', fixed per model: the
        // pixel values alone key the features.
        let image_features = cached_feature(
            cache,
            &self.config.model_type,
            &[Some(pixel_values)],
            || {
                let pixels = pixel_values
                    .transpose([0, 2, 3, 1])?
                    .as_type(inputs_embeds.dtype())?;
                let (hidden_state, _, _) = self.vision_tower.forward(&pixels, true)?;
                let image_features = hidden_state
                    .index(idx![mlx_rs::NewAxis, ..])?
                    .as_type(pixel_values.dtype())?;
                self.multi_modal_projector.forward(&image_features)
            },
        )?;
        let mask = match mask {
            Some(m) => m.clone(),
            None => ops::ones(input_ids.shape(), Dtype::Int32)?,
        };
        self.prepare_inputs_for_multimodal(&image_features, &inputs_embeds, input_ids, &mask)
            .map(|(e, m)| (e, Some(m)))
    }

    /// Python: `Model._prepare_inputs_for_multimodal`: text embeddings at
    /// text positions, zeros at padding, the image features (divided by
    /// `sqrt(config.hidden_size)`) at the image positions in order; and the
    /// mask's outer product `[batch, 1, seq, seq]`. The embeddings come out
    /// in float32, as Python's `mx.zeros` makes them.
    fn prepare_inputs_for_multimodal(
        &self,
        image_features: &Array,
        inputs_embeds: &Array,
        input_ids: &Array,
        attention_mask: &Array,
    ) -> Result<(Array, Array)> {
        let embed_dim = image_features.shape().last().copied().unwrap_or(0);
        let shape = input_ids.shape().to_vec();
        let [batch_size, sequence_length] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "input_ids must be [batch, seq], got {shape:?}"
            )));
        };
        let n_image = image_features.shape().get(1).copied().unwrap_or(0);
        let image_tokens = ops::sum(
            &ops::equal(input_ids, self.config.image_token_index)?,
            None,
            false,
        )?
        .item_as::<i64>()?;
        if image_tokens != i64::from(n_image) * i64::from(batch_size) || n_image > sequence_length {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {image_tokens} image tokens but the image gives {n_image} \
                     features; PaliGemma takes one image, its <image> token repeated \
                     (image_size / patch_size)² times before <bos>"
                ),
            });
        }
        let scale = (self.config.hidden_size as f32).sqrt();
        let scaled = ops::divide(image_features, Array::scalar::<f32>(scale))?;
        let zeros = ops::zeros(&[batch_size, sequence_length, embed_dim], Dtype::Float32)?;
        let image_id = self.config.image_token_index;
        let pad_id = self.config.pad_token_id;
        let expand = |m: Array| -> Result<Array> { Ok(ops::expand_dims(&m, -1)?) };
        let text_mask = expand(ops::logical_and(
            &ops::not_equal(input_ids, image_id)?,
            &ops::not_equal(input_ids, pad_id)?,
        )?)?;
        let image_mask = expand(ops::equal(input_ids, image_id)?)?;
        let pad_mask = expand(ops::equal(input_ids, pad_id)?)?;
        let mut final_embedding = ops::r#where(&text_mask, inputs_embeds, &zeros)?;
        final_embedding = ops::r#where(
            &pad_mask,
            &ops::zeros_like(&final_embedding, None)?,
            &final_embedding,
        )?;
        let pad_size = sequence_length - n_image;
        let widths: &[(i32, i32)] = &[(0, 0), (0, pad_size), (0, 0)];
        let scaled = ops::pad(&scaled, widths, ops::PadOptions::default())?;
        final_embedding = ops::r#where(&image_mask, &scaled, &final_embedding)?;
        final_embedding = ops::r#where(
            &pad_mask,
            &ops::zeros_like(&final_embedding, None)?,
            &final_embedding,
        )?;
        Ok((final_embedding, prefix_mask_4d(attention_mask)?))
    }

    /// Python: `Model.__call__`: logits of the prompt.
    pub fn forward(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        mask: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let (embeds, mask_4d) = self.get_input_embeddings(input_ids, pixel_values, mask)?;
        self.language_model
            .forward(input_ids, Some(&embeds), mask_4d.as_ref(), cache)
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }

    /// The loader's sanitize chain for this model: Python's `VisionModel`
    /// and `LanguageModel` sanitizers (the model has none of its own).
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let weights = self.vision_tower.sanitize(weights)?;
        Ok(LanguageModel::sanitize(weights))
    }
}

/// Keys of a checkpoint re-saved by transformers 5 back to the original
/// Hugging Face layout this model's sanitize reads (Rust only): PaliGemma's
/// and Gemma 3's `model.language_model.*` (or `model.language_model.model.*`,
/// as transformers 5.10 to 5.23 wrote some) to `language_model.model.*`,
/// `model.vision_tower.*` and `model.multi_modal_projector.*` to their
/// names without `model.`, and a root `lm_head.weight` to
/// `language_model.lm_head.weight` (Gemma 3) or dropped (`keep_lm_head`
/// false: PaliGemma's output layer is the tied embedding).
pub fn normalize_transformers5_layout(
    weights: HashMap<String, Array>,
    keep_lm_head: bool,
) -> HashMap<String, Array> {
    let is_tf5 = weights.keys().any(|k| {
        k.starts_with("model.language_model.")
            || k.starts_with("model.vision_tower.")
            || k.starts_with("model.multi_modal_projector.")
    });
    if !is_tf5 {
        return weights;
    }
    weights
        .into_iter()
        .filter_map(|(key, value)| {
            // transformers 5.10 to 5.23 saved some of these checkpoints
            // with a doubled `.model` (its conversion_mapping.py, #45534).
            let key = if let Some(rest) = key
                .strip_prefix("model.language_model.model.")
                .or_else(|| key.strip_prefix("model.language_model."))
            {
                format!("language_model.model.{rest}")
            } else if let Some(rest) = key.strip_prefix("model.") {
                rest.to_string()
            } else if key.starts_with("lm_head.") {
                if !keep_lm_head {
                    return None;
                }
                format!("language_model.{key}")
            } else {
                key
            };
            Some((key, value))
        })
        .collect()
}

/// What PaliGemma's `get_input_embeddings` hands to the prefill (Python:
/// `InputEmbeddingsFeatures.attention_mask_4d`), which its language model
/// ignores there, as Python's does.
#[derive(Debug, Clone)]
pub struct PrefillArgs {
    /// The prefix-LM mask `[batch, 1, seq, seq]`, with an image.
    pub attention_mask_4d: Option<Array>,
}

/// The SigLIP tower's memory dimensions (a fixed grid of full-attention
/// patches, each merged `merge²` to one language token).
pub(crate) fn siglip_dims(
    vision: &super::config::VisionConfig,
    out_hidden_size: i32,
    spatial_merge_size: i32,
    itemsize: usize,
) -> VisionDims {
    VisionDims {
        in_channels: vision.num_channels,
        temporal_patch_size: 1,
        patch_size: vision.patch_size,
        hidden_size: vision.hidden_size,
        intermediate_size: vision.intermediate_size,
        num_heads: vision.num_attention_heads,
        out_hidden_size,
        spatial_merge_size,
        has_full_attention: true,
        window_size: 0,
        itemsize,
    }
}

/// Negative ids dropped.
pub(crate) fn eos_ids(ids: Option<&[i32]>) -> Vec<u32> {
    ids.into_iter()
        .flatten()
        .filter_map(|&id| u32::try_from(id).ok())
        .collect()
}

impl FamilyModel for Model {
    type Inputs = PaliGemmaInputs;
    type Prefill = PrefillArgs;
    type State = ();

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&PaliGemmaInputs>,
        mask: Option<&Array>,
    ) -> Result<(Array, PrefillArgs)> {
        let pixel_values = inputs.map(|i| &i.pixel_values);
        let (embeds, attention_mask_4d) = self.embed_with(input_ids, pixel_values, mask, None)?;
        Ok((embeds, PrefillArgs { attention_mask_4d }))
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&PaliGemmaInputs>,
        mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, PrefillArgs)> {
        let pixel_values = inputs.map(|i| &i.pixel_values);
        let (embeds, attention_mask_4d) =
            self.embed_with(input_ids, pixel_values, mask, Some(cache))?;
        Ok((embeds, PrefillArgs { attention_mask_4d }))
    }

    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        _prefill: Option<&PrefillArgs>,
        _state: &mut (),
    ) -> Result<Array> {
        // Python: `language_model(..., **kwargs)` drops attention_mask_4d.
        self.language_model
            .forward(inputs, inputs_embeds, None, cache)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        // Python: no `make_cache`, so `make_prompt_cache`'s default.
        make_prompt_cache(self.layers(), max_kv_size)
    }

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Model::sanitize(self, normalize_transformers5_layout(weights, false))
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_ids(self.config.eos_token_id.as_deref())
    }

    fn chunked_prefill(&self, _prefill: &PrefillArgs) -> bool {
        Model::chunked_prefill(self)
    }

    /// Rust only: the prefix-LM mask lets the prompt's prefix attend to
    /// itself both ways, so a cached earlier turn saw less of it than a
    /// cold prefill of the whole conversation does.
    fn reuses_prompt_cache(&self) -> bool {
        false
    }

    // Plain KV caches and 1-D RoPE, which rotates each row at its own count;
    // the decode step is one token, so the prefix-LM mask plays no part.
    crate::models::batch_layer_cache::language_model_decodes_batches!(());

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let t = &self.language_model.config;
        let vision = siglip_dims(
            &self.config.vision_config,
            self.config.vision_config.projection_dim,
            1,
            self.multi_modal_projector.linear.weight.itemsize(),
        );
        let text = TextDims {
            hidden_size: t.hidden_size,
            num_attention_heads: t.num_attention_heads,
            head_dim: self.language_model.head_dim(),
            kv_heads: self.language_model.n_kv_heads(),
            intermediate_size: t.intermediate_size,
            vocab_size: t.vocab_size,
            layers: self.layers(),
            itemsize: self.language_model.model.norm.weight.itemsize(),
        };
        Ok(estimate_memory(&vision, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        if self.language_model.config.model_type == "gemma" {
            let d = self.language_model.head_dim();
            KvQuantization::HeadDims { keys: d, values: d }
        } else {
            KvQuantization::Unsupported(super::language::GEMMA2_KV_QUANTIZATION.into())
        }
    }
}
