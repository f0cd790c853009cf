//! `mlx_vlm/models/gemma3/gemma3.py`: the model joining the SigLIP tower,
//! the pooling projector and the Gemma 3 decoder.
//!
//! Python's generate hands `attention_mask_4d` to
//! `language_model(**kwargs)`, which ignores it, so generation prefills
//! with the layers' own sliding and global masks; only `Model.__call__`
//! applies the 4-D mask. The [`FamilyModel`] impl does the same; its
//! caches are `LanguageModel.make_cache`'s (Python's `make_prompt_cache`
//! prefers it and so ignores `max_kv_size`).
//!
//! Divergences from Python: a feature count that does not match the
//! prompt's image tokens is a typed error (Python's scatter fails or
//! misplaces them); `masked_scatter` gathers the features in token order
//! instead of a scatter into a flattened copy (the same result);
//! checkpoints re-saved by transformers 5 load
//! ([`normalize_transformers5_layout`]; Python fails on them); Python's
//! `cached_image_features` argument is the vision feature cache here
//! (`FamilyModel::get_input_embeddings_cached`), which keys the projected
//! features by the pixel values' content.

use std::collections::HashMap;

use mlx_rs::nn::{AvgPool2d, Param};
use mlx_rs::{Array, Dtype, ops};

use super::config::ModelConfig;
use super::language::{LanguageModel, RMSNorm};
use super::vision::{VisionModel, sanitize as sanitize_vision, vision_model};
use super::processing_gemma3::Gemma3Inputs;
use crate::models::{FamilyModel, KvQuantization};
use crate::models::base::AttentionMask;
use crate::models::cache::Cache;
use crate::models::paligemma::paligemma::{
    PrefillArgs, eos_ids, normalize_transformers5_layout, prefix_mask_4d, siglip_dims,
};
use crate::models::qwen2_5_vl::qwen2_5_vl::{TextDims, estimate_memory};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// Python: `Gemma3MultiModalProjector`: patches average-pooled to
/// `mm_tokens_per_image` tokens, normed, projected to the text width.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3MultiModalProjector {
    /// `[vision hidden, text hidden]`.
    pub mm_input_projection_weight: Param,
    /// Norm of the pooled features.
    pub mm_soft_emb_norm: RMSNorm,
    /// Patches per image side.
    #[module(skip)]
    pub patches_per_image: i32,
    /// Tokens per image side.
    #[module(skip)]
    pub tokens_per_side: i32,
    /// The pooling window.
    #[module(skip)]
    pub avg_pool: AvgPool2d,
}

impl Gemma3MultiModalProjector {
    /// Python: `Gemma3MultiModalProjector(config)`.
    pub fn new(config: &ModelConfig) -> Result<Self> {
        let v = &config.vision_config;
        let patches_per_image = v.image_size / v.patch_size;
        let tokens_per_side = (f64::from(config.text_config.mm_tokens_per_image)).sqrt() as i32;
        let kernel_size = patches_per_image / tokens_per_side.max(1);
        Ok(Gemma3MultiModalProjector {
            mm_input_projection_weight: Param::new(ops::ones(
                &[v.hidden_size, config.text_config.hidden_size],
                Dtype::Float32,
            )?),
            mm_soft_emb_norm: RMSNorm::new(v.hidden_size, v.layer_norm_eps)?,
            patches_per_image,
            tokens_per_side,
            avg_pool: AvgPool2d::new([kernel_size; 2], Some([kernel_size; 2]), [0; 2])?,
        })
    }

    /// Python: `Gemma3MultiModalProjector.__call__` on `[batch, patches,
    /// vision hidden]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let shape = x.shape().to_vec();
        let [b, _, l] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "the projector takes [batch, patches, hidden], got {shape:?}"
            )));
        };
        let p = self.patches_per_image;
        let grid = x.transpose([0, 2, 1])?.reshape(&[b, l, p, p])?;
        let pooled = self.avg_pool.forward(&grid.transpose([0, 2, 3, 1])?)?;
        let pooled = pooled
            .transpose([0, 3, 1, 2])?
            .flatten(2, -1)?
            .transpose([0, 2, 1])?;
        let normed = self.mm_soft_emb_norm.forward(&pooled)?;
        let projected = ops::matmul(&normed, &self.mm_input_projection_weight)?;
        Ok(projected.as_type(x.dtype())?)
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
    /// The Gemma 3 decoder.
    pub language_model: LanguageModel,
    /// The projector.
    pub multi_modal_projector: Gemma3MultiModalProjector,
}

impl Model {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        Ok(Model {
            vision_tower: vision_model(&config.vision_config)?,
            language_model: LanguageModel::new(&config.text_config)?,
            multi_modal_projector: Gemma3MultiModalProjector::new(&config)?,
            config,
        })
    }

    /// Python: `Model.get_input_embeddings`: the token embeddings, and with
    /// pixel values (`[images, channels, height, width]`) the projected
    /// features of every image at the image tokens and the 4-D mask of
    /// `mask` (`[batch, seq]`).
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
                self.multi_modal_projector.forward(&hidden_state)
            },
        )?;
        let mask = match mask {
            Some(m) => m.clone(),
            None => ops::ones(input_ids.shape(), Dtype::Int32)?,
        };
        let (embeds, mask_4d) =
            self.prepare_inputs_for_multimodal(&image_features, &inputs_embeds, input_ids, &mask)?;
        Ok((embeds, Some(mask_4d)))
    }

    /// Python: `Model.prepare_inputs_for_multimodal`: text embeddings at the
    /// text positions, zeros at padding, the image features (divided by
    /// `sqrt(config.hidden_size)`) at the image tokens in order, cast to
    /// the embeddings' dtype; and the mask's outer product.
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
        let image_id = self.config.image_token_index;
        let pad_id = self.config.pad_token_id;
        let ids = input_ids.to_vec_as::<i64>()?;
        let n_features = image_features.size() as i64 / i64::from(embed_dim.max(1));
        let n_tokens = ids.iter().filter(|&&t| t == i64::from(image_id)).count() as i64;
        if n_tokens != n_features {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {n_tokens} image tokens but the images give {n_features} \
                     features; each image needs its <start_of_image> expanded to \
                     mm_tokens_per_image ({}) image tokens",
                    self.config.text_config.mm_tokens_per_image
                ),
            });
        }
        let scale = (self.config.hidden_size as f32).sqrt();
        let scaled = ops::divide(image_features, Array::scalar::<f32>(scale))?;
        let zeros = ops::zeros(&[batch_size, sequence_length, embed_dim], Dtype::Float32)?;
        let expand = |m: Array| -> Result<Array> { Ok(ops::expand_dims(&m, -1)?) };
        let text_mask = expand(ops::logical_and(
            &ops::not_equal(input_ids, image_id)?,
            &ops::not_equal(input_ids, pad_id)?,
        )?)?;
        let pad_mask = expand(ops::equal(input_ids, pad_id)?)?;
        let mut final_embedding = ops::r#where(&text_mask, inputs_embeds, &zeros)?;
        final_embedding = ops::r#where(
            &pad_mask,
            &ops::zeros_like(&final_embedding, None)?,
            &final_embedding,
        )?;
        // masked_scatter: the features, in order, at the image tokens.
        let mut order = Vec::with_capacity(ids.len());
        let mut k = 0i32;
        for &t in &ids {
            if t == i64::from(image_id) {
                order.push(k);
                k += 1;
            } else {
                order.push(0);
            }
        }
        let order = Array::from_vec_shaped(order, &[batch_size, sequence_length])?;
        let flat = scaled.reshape(&[-1, embed_dim])?;
        let gathered = ops::take(&flat, &order, 0)?;
        let image_mask = expand(ops::equal(input_ids, image_id)?)?;
        final_embedding = ops::r#where(&image_mask, &gathered, &final_embedding)?;
        Ok((
            final_embedding.as_type(inputs_embeds.dtype())?,
            prefix_mask_4d(attention_mask)?,
        ))
    }

    /// Python: `Model.__call__`: logits of the prompt, with the 4-D mask.
    pub fn forward(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        mask: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let (embeds, mask_4d) = self.get_input_embeddings(input_ids, pixel_values, mask)?;
        let mask_4d = mask_4d.map(AttentionMask::Array);
        self.language_model
            .forward(input_ids, Some(&embeds), mask_4d.as_ref(), cache)
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }

    /// The loader's sanitize chain: Python's `VisionModel` and
    /// `LanguageModel` sanitizers (the model has none of its own).
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Ok(LanguageModel::sanitize(sanitize_vision(weights)?))
    }
}

impl FamilyModel for Model {
    type Inputs = Gemma3Inputs;
    type Prefill = PrefillArgs;
    type State = ();

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3Inputs>,
        mask: Option<&Array>,
    ) -> Result<(Array, PrefillArgs)> {
        let pixel_values = inputs.map(|i| &i.pixel_values);
        let (embeds, attention_mask_4d) = self.embed_with(input_ids, pixel_values, mask, None)?;
        Ok((embeds, PrefillArgs { attention_mask_4d }))
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3Inputs>,
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

    fn make_cache(&self, _max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        self.language_model.make_cache()
    }

    crate::models::batch_layer_cache::language_model_decodes_batches!(());

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Model::sanitize(self, normalize_transformers5_layout(weights, true))
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_ids(self.config.eos_token_id.as_deref())
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let t = &self.config.text_config;
        let v = &self.config.vision_config;
        let projector = &self.multi_modal_projector;
        // Each image's patch grid is pooled to tokens_per_side² tokens.
        let merge = projector.patches_per_image / projector.tokens_per_side.max(1);
        let vision = siglip_dims(
            &v.siglip(),
            t.hidden_size,
            merge,
            projector.mm_input_projection_weight.itemsize(),
        );
        let text = TextDims {
            hidden_size: t.hidden_size,
            num_attention_heads: t.num_attention_heads,
            head_dim: t.head_dim,
            kv_heads: t.num_key_value_heads,
            intermediate_size: t.intermediate_size,
            vocab_size: t.vocab_size,
            layers: self.layers(),
            itemsize: self.language_model.model.norm.weight.itemsize(),
        };
        Ok(estimate_memory(&vision, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        let d = self.config.text_config.head_dim;
        KvQuantization::HeadDims { keys: d, values: d }
    }
}
