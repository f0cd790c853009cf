//! `mlx_vlm/models/qwen3_vl/qwen3_vl.py`: the model joining the vision
//! tower and the language model.
//!
//! Divergences from Python:
//!
//! - `masked_scatter` is Qwen2.5-VL's `merge_input_ids_with_image_features`
//!   for one token kind at a time (the same result); a feature count that
//!   does not match the prompt's tokens is a typed error, as in Python
//!   (where it is a shape error).
//! - The `skip_vision` path and `hidden_state_at_layer` (Python's
//!   embedding tools) are not ported.
//! - Python's `cached_image_features` argument (which no caller passes a
//!   Qwen model: it has no `encode_image`) merges the cached features and
//!   drops the deepstack ones. Rust's vision cache
//!   (`FamilyModel::get_input_embeddings_cached`) stores the merged and the
//!   deepstack features together, so a hit equals the uncached result;
//!   the images' and the videos' entries are keyed each by its own
//!   patches and grid.
//! - The mRoPE state Python keeps on the model is the caller's
//!   ([`RequestState`]).

use std::collections::HashMap;

use mlx_rs::{Array, ops};

use super::config::ModelConfig;
use super::language::{Deepstack, FeedForward, LanguageModel, LanguageModelArgs, RequestState};
use super::processing_qwen3_vl::QwenVlInputs;
use super::vision::VisionModel;
use crate::models::qwen2_5_vl::qwen2_5_vl::{
    Model as Qwen2_5VlModel, TextDims, VisionDims, eos_token_ids, estimate_memory,
};
use crate::models::mlp::SwiGLUMLP;
use crate::models::{Cache, FamilyModel, KvQuantization};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_features};
use crate::{Error, Result};

/// What `get_input_embeddings` hands the prefill calls (Python: the
/// `InputEmbeddingsFeatures` fields passed to `language_model` as
/// `**kwargs`).
#[derive(Debug, Clone, Default)]
pub struct PrefillArgs {
    /// Full-prompt mRoPE position ids.
    pub position_ids: Option<Array>,
    /// Full-prompt rope deltas.
    pub rope_deltas: Option<Array>,
    /// `[images, 3]` grids of the prompt's images.
    pub image_grid_thw: Option<Array>,
    /// `[videos, 3]` grids of the prompt's videos.
    pub video_grid_thw: Option<Array>,
    /// `[batch, seq]`: the image and video tokens of the prompt.
    pub visual_pos_masks: Option<Array>,
    /// One `[n_visual, hidden]` array per deepstack layer, in token order.
    pub deepstack_visual_embeds: Option<Vec<Array>>,
}

impl PrefillArgs {
    fn as_args(&self) -> LanguageModelArgs<'_> {
        LanguageModelArgs {
            position_ids: self.position_ids.as_ref(),
            rope_deltas: self.rope_deltas.as_ref(),
            image_grid_thw: self.image_grid_thw.as_ref(),
            video_grid_thw: self.video_grid_thw.as_ref(),
            ..Default::default()
        }
    }

    fn deepstack(&self) -> Option<Deepstack<'_>> {
        match (&self.visual_pos_masks, &self.deepstack_visual_embeds) {
            (Some(visual_pos_masks), Some(embeds)) => Some(Deepstack {
                visual_pos_masks,
                deepstack_visual_embeds: embeds,
            }),
            _ => None,
        }
    }
}

/// Python: `Model`; generic over the decoder's feed-forward block, as
/// Python's Qwen3-VL-MoE copy of this file differs only in its language
/// model (and vision GELUs and sanitize).
#[derive(Debug, mlx_rs::Module)]
pub struct Model<M: FeedForward = SwiGLUMLP> {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// Python: `Model.vision_tower`.
    pub vision_tower: VisionModel,
    /// Python: `Model.language_model`.
    pub language_model: LanguageModel<M>,
}

impl Model {
    /// Python: `Model.__init__`.
    pub fn new(config: ModelConfig) -> Result<Model> {
        let vision_tower = VisionModel::new(&config.vision_config)?;
        let language_model = LanguageModel::new(&config.text_config, &config)?;
        Ok(Model {
            config,
            vision_tower,
            language_model,
        })
    }

    /// Python: `Model.sanitize`: `model.language_model.*` becomes
    /// `language_model.model.*`, `model.visual.*` `vision_tower.*`,
    /// `lm_head.*` `language_model.lm_head.*`.
    pub fn sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
        weights
            .into_iter()
            .map(|(key, value)| {
                let key = if key.contains("model") {
                    if key.contains("model.language_model") {
                        key.replace("model.language_model", "language_model.model")
                    } else if key.contains("model.visual") {
                        key.replace("model.visual", "vision_tower")
                    } else {
                        key
                    }
                } else if key.contains("lm_head") {
                    key.replace("lm_head", "language_model.lm_head")
                } else {
                    key
                };
                (key, value)
            })
            .collect()
    }
}

impl<M: FeedForward> Model<M> {
    /// Python: `Model.get_input_embeddings`: the images' and the videos'
    /// features replace their tokens' embeddings, the deepstack features
    /// of both are merged in token order, and the rope index covers both.
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
    ) -> Result<(Array, PrefillArgs)> {
        self.embed_with(input_ids, inputs, mask, |pixels, grid| {
            self.vision_tower.forward(pixels, grid)
        })
    }

    /// [`Model::get_input_embeddings`], taking the images' and the
    /// videos' features (and deepstack features) from
    /// `vision(pixel_values, grid_thw)`, the pixels cast to the tower's
    /// dtype: the tower, or a cache's copy of its output.
    fn embed_with(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
        mut vision: impl FnMut(&Array, &Array) -> Result<(Array, Vec<Array>)>,
    ) -> Result<(Array, PrefillArgs)> {
        let pixel_values = inputs.and_then(|i| i.pixel_values.as_ref());
        let pixel_values_videos = inputs.and_then(|i| i.pixel_values_videos.as_ref());
        let image_grid_thw = inputs.and_then(|i| i.image_grid_thw.as_ref());
        let video_grid_thw = inputs.and_then(|i| i.video_grid_thw.as_ref());
        let mut inputs_embeds = self.language_model.model.embed_tokens.forward(input_ids)?;
        if pixel_values.is_none() && pixel_values_videos.is_none() {
            let (position_ids, rope_deltas) =
                self.language_model
                    .get_rope_index(input_ids, None, None, mask)?;
            return Ok((
                inputs_embeds,
                PrefillArgs {
                    position_ids: Some(position_ids),
                    rope_deltas: Some(rope_deltas),
                    ..Default::default()
                },
            ));
        }
        let dtype = self.vision_tower.patch_embed.proj.weight.dtype();
        let mut encode = |pixels: Option<&Array>,
                          grid: Option<&Array>,
                          what: &str|
         -> Result<Option<(Array, Vec<Array>)>> {
            let Some(pixels) = pixels else {
                return Ok(None);
            };
            let grid = grid.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{what} pixel values were given without their grid; pass the grids the \
                     processor returned"
                ))
            })?;
            Ok(Some(vision(&pixels.as_type(dtype)?, grid)?))
        };
        let images = encode(pixel_values, image_grid_thw, "image")?;
        let videos = encode(pixel_values_videos, video_grid_thw, "video")?;
        let (image_id, video_id) = (self.config.image_token_id, self.config.video_token_id);
        for ((features, _), id) in [(&images, image_id), (&videos, video_id)]
            .into_iter()
            .filter_map(|(f, id)| f.as_ref().map(|f| (f, id)))
        {
            inputs_embeds = Qwen2_5VlModel::merge_input_ids_with_image_features(
                id,
                id,
                features,
                &inputs_embeds,
                input_ids,
            )?;
        }
        let deepstack_visual_embeds = self.merge_deepstack_features(
            input_ids,
            images.as_ref().map(|(_, d)| d.as_slice()),
            videos.as_ref().map(|(_, d)| d.as_slice()),
        )?;
        let visual_pos_masks = ops::logical_or(
            &ops::equal(input_ids, image_id)?,
            &ops::equal(input_ids, video_id)?,
        )?;
        if let Some(d) = &deepstack_visual_embeds {
            mlx_rs::transforms::eval(d.iter())?;
        }
        let (position_ids, rope_deltas) =
            self.language_model
                .get_rope_index(input_ids, image_grid_thw, video_grid_thw, mask)?;
        Ok((
            inputs_embeds,
            PrefillArgs {
                position_ids: Some(position_ids),
                rope_deltas: Some(rope_deltas),
                image_grid_thw: image_grid_thw.cloned(),
                video_grid_thw: video_grid_thw.cloned(),
                visual_pos_masks: Some(visual_pos_masks),
                deepstack_visual_embeds,
            },
        ))
    }

    /// The deepstack features of images and videos in token order (Python:
    /// `Model._merge_deepstack_features`).
    fn merge_deepstack_features(
        &self,
        input_ids: &Array,
        image_features: Option<&[Array]>,
        video_features: Option<&[Array]>,
    ) -> Result<Option<Vec<Array>>> {
        let (image_features, video_features) = match (image_features, video_features) {
            (None, v) => return Ok(v.map(<[Array]>::to_vec)),
            (i, None) => return Ok(i.map(<[Array]>::to_vec)),
            (Some(i), Some(v)) => (i, v),
        };
        if image_features.len() != video_features.len() {
            return Err(Error::InvalidArgument(
                "image and video deepstack feature counts must match".into(),
            ));
        }
        let n_images = image_features
            .first()
            .map_or(0, |a| a.shape().first().copied().unwrap_or(0));
        let (image_id, video_id) = (
            i64::from(self.config.image_token_id),
            i64::from(self.config.video_token_id),
        );
        // Rows of [image features; video features] in token order.
        let (mut image_index, mut video_index) = (0i32, 0i32);
        let mut order = Vec::new();
        for token in input_ids.to_vec_as::<i64>()? {
            if token == image_id {
                order.push(image_index);
                image_index += 1;
            } else if token == video_id {
                order.push(n_images + video_index);
                video_index += 1;
            }
        }
        let len = order.len() as i32;
        let order = Array::from_vec_shaped(order, &[len])?;
        image_features
            .iter()
            .zip(video_features)
            .map(|(i, v)| Ok(ops::take(&ops::concatenate(&[i, v], 0)?, &order, 0)?))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }
}

/// What a family built on this model adds to it (Qwen3-VL with
/// [`SwiGLUMLP`], Qwen3-VL-MoE with its experts): its registration, the
/// sanitize chain Python's loader runs for it, and the feed-forward width
/// of the memory estimate. One [`FamilyModel`] impl serves every variant.
pub trait Qwen3VlVariant: FeedForward {
    /// The family's registration.
    const FAMILY: &'static Family;

    /// The checkpoint's weights renamed and reshaped for `model`.
    fn sanitize(
        model: &Model<Self>,
        weights: HashMap<String, Array>,
    ) -> Result<HashMap<String, Array>>;

    /// The widest feed-forward activation per token, for the memory
    /// estimate.
    fn feed_forward_width(model: &Model<Self>) -> i32;
}

impl Qwen3VlVariant for SwiGLUMLP {
    const FAMILY: &'static Family = &super::FAMILY;

    fn sanitize(
        model: &Model<Self>,
        weights: HashMap<String, Array>,
    ) -> Result<HashMap<String, Array>> {
        // Python's loader runs Model.sanitize, then VisionModel.sanitize.
        model.vision_tower.sanitize(Model::sanitize(weights))
    }

    fn feed_forward_width(model: &Model<Self>) -> i32 {
        model.language_model.args.intermediate_size
    }
}

impl<M: Qwen3VlVariant> FamilyModel for Model<M> {
    type Inputs = QwenVlInputs;
    type Prefill = PrefillArgs;
    type State = RequestState;

    const FAMILY: &'static Family = M::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
    ) -> Result<(Array, PrefillArgs)> {
        Model::get_input_embeddings(self, input_ids, inputs, mask)
    }

    /// The images' and the videos' features (the merged ones and the
    /// deepstack layers', one entry) each keyed by its patches and grid.
    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&QwenVlInputs>,
        mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, PrefillArgs)> {
        let model_type = &self.config.model_type;
        self.embed_with(input_ids, inputs, mask, |pixels, grid| {
            let mut features = cached_features(
                Some(&mut *cache),
                model_type,
                &[Some(pixels), Some(grid)],
                || {
                    let (merged, deepstack) = self.vision_tower.forward(pixels, grid)?;
                    Ok(std::iter::once(merged).chain(deepstack).collect())
                },
            )?;
            if features.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the vision feature cache held no array for a {model_type} image; use one \
                     cache per model"
                )));
            }
            let merged = features.remove(0);
            Ok((merged, features))
        })
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
        let deepstack = prefill.and_then(PrefillArgs::deepstack);
        self.language_model
            .forward(inputs, inputs_embeds, cache, &args, deepstack, state)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        crate::models::cache::make_prompt_cache(self.layers(), max_kv_size)
    }

    // Qwen3-VL and Qwen3-VL-MoE alike: the decoder is generic over its MLP.
    crate::models::batch_layer_cache::language_model_decodes_batches!(RequestState);

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        M::sanitize(self, weights)
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_token_ids(self.config.eos_token_id.as_deref())
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let vision = &self.config.vision_config;
        let dims = VisionDims {
            in_channels: vision.in_channels,
            temporal_patch_size: vision.temporal_patch_size,
            patch_size: vision.patch_size,
            hidden_size: vision.hidden_size,
            intermediate_size: vision.intermediate_size,
            num_heads: vision.num_heads,
            out_hidden_size: vision.out_hidden_size,
            spatial_merge_size: vision.spatial_merge_size,
            has_full_attention: true,
            window_size: 0,
            itemsize: self.vision_tower.patch_embed.proj.weight.itemsize(),
        };
        let lm = &self.language_model;
        let text = TextDims {
            hidden_size: lm.args.hidden_size,
            num_attention_heads: lm.args.num_attention_heads,
            head_dim: lm.args.head_dim,
            kv_heads: lm.n_kv_heads(),
            intermediate_size: M::feed_forward_width(self),
            vocab_size: lm.args.vocab_size,
            layers: lm.model.layers.len(),
            itemsize: lm.model.embed_tokens.weight.itemsize(),
        };
        Ok(estimate_memory(&dims, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        // The attention's width (`head_dim` of the config), not
        // `LanguageModel.head_dim` (hidden / heads), which Python's cache
        // never reads.
        let d = self.language_model.args.head_dim;
        KvQuantization::HeadDims { keys: d, values: d }
    }
}
