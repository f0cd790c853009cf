//! `mlx_vlm/models/qwen2_vl/qwen2_vl.py`: the model joining the vision
//! tower and the language model. Python's file is a copy of Qwen2.5-VL's
//! with Qwen2-VL's tower; Rust shares what does not depend on the tower
//! (`merge_input_ids_with_image_features`, the prefill arguments, the
//! request state and the memory estimate) with
//! [`crate::models::qwen2_5_vl::qwen2_5_vl`].
//!
//! Divergences from Python (as Qwen2.5-VL's):
//!
//! - A prompt with both images and videos is an error: Python encodes only
//!   the images and leaves the video tokens as text.
//! - Image features and image tokens must match in number over the whole
//!   batch (Python ignores surplus features).
//! - The mRoPE state Python keeps on the model is the caller's.
//! - The vision feature cache is used (Python's `cached_image_features`
//!   is passed by no caller).

use std::collections::HashMap;

use mlx_rs::Array;

use super::config::ModelConfig;
use super::language::{LanguageModel, LanguageModelArgs, RequestState};
use super::vision::VisionModel;
use crate::models::base::InputEmbeddingsFeatures;
use crate::models::qwen2_5_vl::qwen2_5_vl::{
    Model as Qwen2_5VlModel, PrefillArgs, QwenMedia, TextDims, VisionDims, eos_token_ids,
    estimate_memory, tower_features,
};
use crate::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use crate::models::{Cache, FamilyModel, KvQuantization};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::VisionFeatureCache;
use crate::{Error, Result};

/// Python: `Model`.
#[derive(Debug, mlx_rs::Module)]
pub struct Model {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// Python: `Model.vision_tower`.
    pub vision_tower: VisionModel,
    /// Python: `Model.language_model`.
    pub language_model: LanguageModel,
}

impl Model {
    /// Python: `Model.__init__`.
    pub fn new(config: ModelConfig) -> Result<Model> {
        let vision_tower = VisionModel::new(&config.vision_config)?;
        let language_model = LanguageModel::new(&config.text_config, &config.language)?;
        Ok(Model {
            config,
            vision_tower,
            language_model,
        })
    }

    /// Python: `Model.get_input_embeddings`: `pixel_values` are the
    /// images' patches, else the videos'; the grid of the images, else the
    /// videos', goes to the vision tower, and both to the rope index.
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        image_grid_thw: Option<&Array>,
        video_grid_thw: Option<&Array>,
        mask: Option<&Array>,
    ) -> Result<InputEmbeddingsFeatures> {
        let media = QwenMedia {
            pixel_values,
            image_grid_thw,
            video_grid_thw,
        };
        self.embed_with(input_ids, &media, mask, |pixels, grid| {
            self.vision_tower.forward(pixels, grid)
        })
    }

    /// [`Model::get_input_embeddings`] with the vision features of
    /// `encode(pixel_values, grid_thw)`, the pixels cast to the tower's
    /// dtype: the tower, or a cache's copy of its output.
    fn embed_with(
        &self,
        input_ids: &Array,
        media: &QwenMedia<'_>,
        mask: Option<&Array>,
        encode: impl FnOnce(&Array, &Array) -> Result<Array>,
    ) -> Result<InputEmbeddingsFeatures> {
        let QwenMedia {
            pixel_values,
            image_grid_thw,
            video_grid_thw,
        } = *media;
        let Some(pixel_values) = pixel_values else {
            let (position_ids, rope_deltas) = self
                .language_model
                .get_rope_index(input_ids, None, None, mask)?;
            return Ok(InputEmbeddingsFeatures {
                inputs_embeds: self.language_model.model.embed_tokens.forward(input_ids)?,
                position_ids: Some(position_ids),
                rope_deltas: Some(rope_deltas),
            });
        };
        let grid_thw = image_grid_thw.or(video_grid_thw).ok_or_else(|| {
            Error::InvalidArgument(
                "pixel_values were given without image_grid_thw or video_grid_thw; pass the \
                 grids the processor returned"
                    .into(),
            )
        })?;
        let dtype = self.vision_tower.patch_embed.proj.weight.dtype();
        let pixel_values = pixel_values.as_type(dtype)?;
        let inputs_embeds = self.language_model.model.embed_tokens.forward(input_ids)?;
        let hidden_states = encode(&pixel_values, grid_thw)?;
        let final_inputs_embeds = Qwen2_5VlModel::merge_input_ids_with_image_features(
            self.config.language.image_token_id,
            self.config.language.video_token_id,
            &hidden_states,
            &inputs_embeds,
            input_ids,
        )?;
        let (position_ids, rope_deltas) =
            self.language_model
                .get_rope_index(input_ids, image_grid_thw, video_grid_thw, mask)?;
        Ok(InputEmbeddingsFeatures {
            inputs_embeds: final_inputs_embeds,
            position_ids: Some(position_ids),
            rope_deltas: Some(rope_deltas),
        })
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }

    /// Python: `Model.__call__`: logits of a whole prompt, without a cache.
    pub fn forward(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        image_grid_thw: Option<&Array>,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let features =
            self.get_input_embeddings(input_ids, pixel_values, image_grid_thw, None, mask)?;
        let args = LanguageModelArgs {
            mask,
            has_pixel_values: pixel_values.is_some(),
            image_grid_thw,
            ..Default::default()
        };
        let mut state = RequestState::default();
        self.language_model.forward(
            input_ids,
            Some(&features.inputs_embeds),
            mask,
            &mut [],
            &args,
            &mut state,
        )
    }

    /// Python: `Model.sanitize` (Qwen2.5-VL's): `visual.*`, `model.*`,
    /// `lm_head.*` become `vision_tower.*`, `language_model.model.*`,
    /// `language_model.lm_head.*`.
    pub fn sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
        Qwen2_5VlModel::sanitize(weights)
    }
}

impl Model {
    /// The embeddings and prefill arguments of [`FamilyModel`]'s
    /// `get_input_embeddings`, the vision features through `cache` when
    /// given.
    fn family_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<(Array, PrefillArgs)> {
        let media = QwenMedia::of(inputs, "Qwen2-VL")?;
        let features = self.embed_with(input_ids, &media, mask, |pixels, grid| {
            tower_features(cache, &self.config.model_type, pixels, grid, || {
                self.vision_tower.forward(pixels, grid)
            })
        })?;
        Ok(media.embeddings_and_prefill(features, None))
    }
}

impl FamilyModel for Model {
    type Inputs = QwenVlInputs;
    type Prefill = PrefillArgs;
    type State = RequestState;

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
    ) -> Result<(Array, PrefillArgs)> {
        self.family_embeddings(input_ids, inputs, mask, None)
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, PrefillArgs)> {
        self.family_embeddings(input_ids, inputs, mask, Some(cache))
    }

    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        prefill: Option<&PrefillArgs>,
        state: &mut RequestState,
    ) -> Result<Array> {
        let args = prefill.map(PrefillArgs::as_args).unwrap_or_default();
        self.language_model
            .forward(inputs, inputs_embeds, None, cache, &args, state)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        crate::models::cache::make_prompt_cache(self.layers(), max_kv_size)
    }

    // Qwen2.5-VL's language model, so its batched decode too.
    crate::models::batch_layer_cache::language_model_decodes_batches!(RequestState);

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        // Python's loader runs Model.sanitize, then VisionModel.sanitize.
        // Rust only: transformers-5 re-saved checkpoints too.
        let weights = crate::utils::normalize_transformers5_layout(weights);
        self.vision_tower.sanitize(Model::sanitize(weights))
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_token_ids(self.config.language.eos_token_id.as_deref())
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let vision = &self.config.vision_config;
        let dims = VisionDims {
            in_channels: vision.in_channels,
            temporal_patch_size: vision.temporal_patch_size,
            patch_size: vision.patch_size,
            hidden_size: vision.embed_dim,
            intermediate_size: (vision.embed_dim as f32 * vision.mlp_ratio) as i32,
            num_heads: vision.num_heads,
            out_hidden_size: vision.hidden_size,
            spatial_merge_size: vision.spatial_merge_size,
            has_full_attention: true,
            window_size: 0,
            itemsize: self.vision_tower.patch_embed.proj.weight.itemsize(),
        };
        Ok(estimate_memory(
            &dims,
            &TextDims::of(&self.language_model),
            request,
        ))
    }

    fn kv_quantization(&self) -> KvQuantization {
        let d = self.language_model.head_dim();
        KvQuantization::HeadDims { keys: d, values: d }
    }
}
