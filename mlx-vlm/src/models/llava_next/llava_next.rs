//! `mlx_vlm/models/llava_next/llava_next.py`: the model joining the CLIP
//! tower, the two-layer GELU projector and the Llama/Mistral decoder.
//!
//! What Python mlx-vlm 0.7.6 does, and this port with it (the goldens are
//! its output): the tower runs on the first image's tiles
//! (`pixel_values[0]`, base image first), each tile's features are
//! projected, and `image_newline` broadcast to the same shape is appended
//! as as many extra "tiles": `2 * tiles` blocks of `(image_size /
//! patch_size)²` features. The merge then puts block `k` where the `k`-th
//! `<image>` token was and drops every later `<image>` token. There is no
//! anyres unpadding and no per-row newline: the processor's token count
//! (`_get_number_of_features`, transformers' layout) only sets how many
//! `<image>` tokens the prompt carries, and the embeddings come out longer
//! than the prompt (99 prompt tokens give 171 embeddings in the tiny test
//! model). Generation runs on the embeddings, as Python's does.
//!
//! As Python, the tower runs on the pixel values as the processor made
//! them (float32), so a bf16 or 4-bit checkpoint's tower computes in
//! float32; the features (with the newline) are cast to the embeddings'
//! dtype.
//!
//! Divergences from Python: Python reads `image_newline` through
//! `np.array`, which cannot take bfloat16, so every image prompt of a bf16
//! or 4-bit checkpoint fails there; here the newline is widened to the
//! features' dtype (exact), what the goldens' patched Python does. Fewer
//! `<image>` tokens than feature blocks (Python silently drops the
//! remaining blocks) and a batch of more than one prompt (Python's merge
//! takes every row's positions as the first row's) are typed errors.
//! `image_newline` starts at zeros (Python: random normal; checkpoints
//! always hold it); Python's `cached_image_features` argument is the
//! vision feature cache here (`FamilyModel::get_input_embeddings_cached`),
//! which keys the projected tiles by the pixel values' and image sizes'
//! content.

use std::collections::HashMap;

use mlx_rs::nn::Param;
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::ModelConfig;
use super::language::{LanguageModel, language_model};
use super::processing_llava_next::LlavaNextInputs;
use super::vision::{VisionModel, vision_model};
use crate::models::{FamilyModel, KvQuantization};
use crate::models::cache::{Cache, make_prompt_cache};
use crate::models::llava::llava::{count_image_tokens, memory_dims, select_image_features};
use crate::models::paligemma::paligemma::eos_ids;
use crate::models::qwen2_5_vl::qwen2_5_vl::estimate_memory;
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

pub use crate::models::llava::llava::LlavaMultiModalProjector;

/// Python: `Model`.
#[derive(Debug, mlx_rs::Module)]
pub struct Model {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// The CLIP tower.
    pub vision_tower: VisionModel,
    /// The Llama/Mistral decoder.
    pub language_model: LanguageModel,
    /// The learned separator block appended after the image features.
    pub image_newline: Param,
    /// The projector.
    pub multi_modal_projector: LlavaMultiModalProjector,
}

impl Model {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        Ok(Model {
            vision_tower: vision_model(&config.vision_config)?,
            language_model: language_model(&config.text_config)?,
            image_newline: Param::new(ops::zeros(
                &[config.text_config.hidden_size],
                Dtype::Float32,
            )?),
            multi_modal_projector: LlavaMultiModalProjector::new(&config)?,
            config,
        })
    }

    /// The projected features `[tiles, tokens, hidden]` of the first
    /// image's tiles (`pixel_values` `[images, tiles, 3, height, width]`),
    /// before the newline blocks.
    pub fn image_features(&self, pixel_values: &Array) -> Result<Array> {
        let shape = pixel_values.shape();
        if shape.len() != 5 {
            return Err(Error::InvalidArgument(format!(
                "LLaVA-NeXT takes pixel values [images, tiles, 3, height, width], got {shape:?}; \
                 make them with its processor"
            )));
        }
        let tiles = pixel_values.index(idx![0])?;
        let (_, _, hidden_states) = self
            .vision_tower
            .forward(&tiles.transpose([0, 2, 3, 1])?, true)?;
        let selected = select_image_features(&self.config, &hidden_states.unwrap_or_default())?;
        self.multi_modal_projector.forward(&selected)
    }

    /// Python: `Model.get_input_embeddings`: the token embeddings, and
    /// with pixel values the feature blocks spliced in (see the file's
    /// documentation).
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
    ) -> Result<Array> {
        self.embed_with(input_ids, pixel_values, None, None)
    }

    /// [`Model::get_input_embeddings`], the projected tiles taken from
    /// `cache` when it holds those of the pixel values and `image_sizes`
    /// (`[images, 2]`; part of the key though the features ignore them, as
    /// Python's model does), else encoded and stored: the cached and
    /// uncached paths differ only there.
    fn embed_with(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        image_sizes: Option<&Array>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<Array> {
        let inputs_embeds = self.language_model.model.embed_tokens.forward(input_ids)?;
        let Some(pixel_values) = pixel_values else {
            return Ok(inputs_embeds);
        };
        let features = cached_feature(
            cache,
            &self.config.model_type,
            &[Some(pixel_values), image_sizes],
            || self.image_features(pixel_values),
        )?;
        let newline = self.image_newline.as_type(features.dtype())?;
        let newline = ops::broadcast_to(&newline.reshape(&[1, 1, -1])?, features.shape())?;
        let features =
            ops::concatenate(&[features, newline], 0)?.as_type(inputs_embeds.dtype())?;
        self.merge_input_ids_with_image_features(&features, &inputs_embeds, input_ids)
    }

    /// Python: `Model._merge_input_ids_with_image_features`: the text
    /// before the `k`-th `<image>` token, then feature block `k`, for as
    /// many blocks as there are; then the text after the last `<image>`.
    pub fn merge_input_ids_with_image_features(
        &self,
        image_features: &Array,
        inputs_embeds: &Array,
        input_ids: &Array,
    ) -> Result<Array> {
        let image_token = self.config.image_token_index;
        count_image_tokens(input_ids, image_token, "LLaVA-NeXT")?;
        let ids: Vec<i64> = input_ids.to_vec_as::<i64>()?;
        let positions: Vec<i32> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| **id == i64::from(image_token))
            .map(|(i, _)| i as i32)
            .collect();
        let blocks = image_features.shape()[0];
        if (positions.len() as i64) < i64::from(blocks) {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {} <image> tokens (id {image_token}) but the image gives {blocks} \
                     feature blocks (its tiles and their newline blocks); let the LLaVA-NeXT \
                     processor expand the <image> of the prompt",
                    positions.len()
                ),
            });
        }
        let mut parts = Vec::with_capacity(2 * blocks as usize + 1);
        let mut start = 0;
        for (k, &position) in positions.iter().enumerate() {
            if (k as i32) < blocks {
                parts.push(inputs_embeds.index(idx![.., start..position])?);
                parts.push(image_features.index(idx![k as i32..k as i32 + 1])?);
            }
            start = position + 1;
        }
        parts.push(inputs_embeds.index(idx![.., start..])?);
        Ok(ops::concatenate(&parts, 1)?)
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }

    /// Python: `Model.__call__`: logits of the prompt.
    pub fn forward(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let embeds = self.get_input_embeddings(input_ids, pixel_values)?;
        self.language_model
            .forward(input_ids, Some(&embeds), None, cache)
    }

    /// The loader's sanitize chain for this model: Python's `VisionModel`
    /// and `LanguageModel` sanitizers (the model has none of its own).
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let weights = self.vision_tower.sanitize(weights)?;
        Ok(LanguageModel::sanitize(weights))
    }
}

impl Model {
    /// The [`FamilyModel`] embeddings of `inputs`, through `cache` when
    /// given.
    fn family_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&LlavaNextInputs>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<(Array, ())> {
        let image_sizes = inputs
            .map(|i| {
                let sizes: Vec<u32> = i.image_sizes.iter().flat_map(|&(h, w)| [h, w]).collect();
                Array::from_slice(&sizes, &[i.image_sizes.len() as i32, 2])
            })
            .transpose()?;
        let pixel_values = inputs.map(|i| &i.pixel_values);
        let embeds = self.embed_with(input_ids, pixel_values, image_sizes.as_ref(), cache)?;
        Ok((embeds, ()))
    }
}

impl FamilyModel for Model {
    type Inputs = LlavaNextInputs;
    type Prefill = ();
    type State = ();

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&LlavaNextInputs>,
        _mask: Option<&Array>,
    ) -> Result<(Array, ())> {
        self.family_embeddings(input_ids, inputs, None)
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&LlavaNextInputs>,
        _mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, ())> {
        self.family_embeddings(input_ids, inputs, Some(cache))
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
            .forward(inputs, inputs_embeds, None, cache)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        // Python: no `make_cache`, so `make_prompt_cache`'s default.
        make_prompt_cache(self.layers(), max_kv_size)
    }

    // Plain KV caches and 1-D RoPE, which rotates each row at its own count.
    crate::models::batch_layer_cache::language_model_decodes_batches!(());

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Model::sanitize(self, weights)
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_ids(self.config.eos_token_id.as_deref())
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let itemsize = self.multi_modal_projector.linear_2.weight.itemsize();
        let (vision, text) = memory_dims(&self.config, &self.language_model, itemsize);
        Ok(estimate_memory(&vision, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        let d = self.language_model.head_dim();
        KvQuantization::HeadDims { keys: d, values: d }
    }
}
