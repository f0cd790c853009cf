//! `mlx_vlm/models/qwen2_5_vl/qwen2_5_vl.py`: the model joining the vision
//! tower and the language model.
//!
//! Divergences from Python:
//!
//! - A prompt with both images and videos is an error: Python encodes only
//!   the images and leaves the video tokens as text.
//! - Image features and image tokens must match in number over the whole
//!   batch (Python ignores surplus features).
//! - The mRoPE state Python keeps on the model is the caller's
//!   ([`RequestState`], the family's `FamilyModel::State`).
//! - Python's `cached_image_features` argument is passed by no caller (a
//!   Qwen model has no `encode_image`); here the vision feature cache
//!   (`FamilyModel::get_input_embeddings_cached`) is used by the batch
//!   generator, keyed by the patches and the tower's grid.

use std::collections::HashMap;

use mlx_rs::{Array, Dtype, ops};

use super::config::ModelConfig;
use super::language::{LanguageModel, LanguageModelArgs, RequestState};
use super::vision::VisionModel;
use crate::models::base::InputEmbeddingsFeatures;
use crate::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use crate::models::{Cache, FamilyModel, KvQuantization};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// What `get_input_embeddings` hands the prefill calls (Python: the
/// `InputEmbeddingsFeatures` fields and the processor's grids, passed to
/// `language_model` as `**kwargs`).
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
    /// Seconds per temporal patch of each video, when the positions keep
    /// absolute time.
    pub second_per_grid_ts: Option<Vec<f64>>,
}

impl PrefillArgs {
    /// The keyword arguments of one prefill call.
    pub fn as_args(&self) -> LanguageModelArgs<'_> {
        LanguageModelArgs {
            position_ids: self.position_ids.as_ref(),
            rope_deltas: self.rope_deltas.as_ref(),
            image_grid_thw: self.image_grid_thw.as_ref(),
            video_grid_thw: self.video_grid_thw.as_ref(),
            second_per_grid_ts: self.second_per_grid_ts.as_deref(),
            ..Default::default()
        }
    }
}

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
        let language_model = LanguageModel::new(&config.text_config, &config)?;
        Ok(Model {
            config,
            vision_tower,
            language_model,
        })
    }

    /// Python: `Model.get_input_embeddings`: `pixel_values` are the
    /// images' patches, else the videos'; the grid of the images, else the
    /// videos', goes to the vision tower, and both to the rope index, with
    /// the videos' `second_per_grid_ts` when given (Rust only: absolute-time
    /// positions, see `LanguageModel::get_rope_index_timed`).
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        image_grid_thw: Option<&Array>,
        video_grid_thw: Option<&Array>,
        second_per_grid_ts: Option<&[f64]>,
        mask: Option<&Array>,
    ) -> Result<InputEmbeddingsFeatures> {
        let media = QwenMedia {
            pixel_values,
            image_grid_thw,
            video_grid_thw,
        };
        self.embed_with(input_ids, &media, second_per_grid_ts, mask, |pixels, grid| {
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
        second_per_grid_ts: Option<&[f64]>,
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

        let final_inputs_embeds = Self::merge_input_ids_with_image_features(
            self.config.image_token_id,
            self.config.video_token_id,
            &hidden_states,
            &inputs_embeds,
            input_ids,
        )?;

        let (position_ids, rope_deltas) = self.language_model.get_rope_index_timed(
            input_ids,
            image_grid_thw,
            video_grid_thw,
            second_per_grid_ts,
            mask,
        )?;
        Ok(InputEmbeddingsFeatures {
            inputs_embeds: final_inputs_embeds,
            position_ids: Some(position_ids),
            rope_deltas: Some(rope_deltas),
        })
    }

    /// Python: `Model.merge_input_ids_with_image_features`: the image
    /// features replace the embeddings at the image (else video) token
    /// positions, in order.
    pub fn merge_input_ids_with_image_features(
        image_token_id: i32,
        video_token_id: i32,
        image_features: &Array,
        inputs_embeds: &Array,
        input_ids: &Array,
    ) -> Result<Array> {
        let mut token_id = image_token_id;
        let mut image_positions = ops::equal(input_ids, image_token_id)?;
        if ops::sum(&image_positions, None, false)?.item_as::<i64>()? == 0 {
            token_id = video_token_id;
            image_positions = ops::equal(input_ids, video_token_id)?;
        }
        let shape = input_ids.shape();
        let [batch_size, _seq_len] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "input_ids must be [batch, seq], got {shape:?}"
            )));
        };
        // Python checks each batch row's slice; checking the total as well
        // catches surplus images, which Python silently ignores.
        let n_features = image_features.shape().first().copied().unwrap_or(0);
        let total = ops::sum(&image_positions, None, false)?.item_as::<i64>()?;
        if total != i64::from(n_features) {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {total} image or video tokens (id {token_id}) but the media \
                     give {n_features} features; each image (video) needs one \
                     <|vision_start|><|image_pad|><|vision_end|> \
                     (<|vision_start|><|video_pad|><|vision_end|>) in the prompt, its pad token \
                     expanded to t*h*w/4 tokens of its grid"
                ),
            });
        }
        let mut batch_outputs = Vec::with_capacity(batch_size as usize);
        let mut feature_start_idx = 0;
        for batch_idx in 0..batch_size {
            let image_mask = image_positions.index(mlx_rs::idx![batch_idx])?;
            let num_positions = ops::sum(&image_mask, None, false)?.item_as::<i64>()? as i32;
            let embeds = inputs_embeds.index(mlx_rs::idx![batch_idx])?;
            if num_positions == 0 {
                batch_outputs.push(embeds);
                continue;
            }
            let batch_features = image_features.index(mlx_rs::idx![
                feature_start_idx..feature_start_idx + num_positions
            ])?;
            let cumsum = ops::cumsum(
                &image_mask.as_type(Dtype::Int32)?,
                Some(0),
                ops::AccumulateOptions::default(),
            )?;
            let feature_indices = ops::r#where(&image_mask, &(&cumsum - 1), 0)?;
            let gathered_features = ops::take(&batch_features, &feature_indices, 0)?;
            let image_mask_expanded = ops::expand_dims(&image_mask, -1)?;
            batch_outputs.push(ops::r#where(
                &image_mask_expanded,
                &gathered_features,
                &embeds,
            )?);
            feature_start_idx += num_positions;
        }
        Ok(ops::stack(&batch_outputs, 0)?)
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
            self.get_input_embeddings(input_ids, pixel_values, image_grid_thw, None, None, mask)?;
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

    /// Python: `Model.sanitize`: Hugging Face names (`visual.*`, `model.*`,
    /// `lm_head.*`) become this model's (`vision_tower.*`,
    /// `language_model.model.*`, `language_model.lm_head.*`).
    pub fn sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
        fn transform_key(key: &str) -> String {
            let mut key = key.to_string();
            if !key.contains("vision_tower") {
                key = key.replace("visual", "vision_tower");
            }
            if !key.contains("language_model") {
                if key.contains("model") {
                    key = key.replace("model", "language_model.model");
                } else if key.contains("lm_head") {
                    key = key.replace("lm_head", "language_model.lm_head");
                }
            }
            key
        }
        weights
            .into_iter()
            .map(|(k, v)| (transform_key(&k), v))
            .collect()
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
        let media = QwenMedia::of(inputs, "Qwen2.5-VL")?;
        let second_per_grid_ts = inputs.and_then(|i| i.second_per_grid_ts.clone());
        let features = self.embed_with(
            input_ids,
            &media,
            second_per_grid_ts.as_deref(),
            mask,
            |pixels, grid| {
                tower_features(cache, &self.config.model_type, pixels, grid, || {
                    self.vision_tower.forward(pixels, grid)
                })
            },
        )?;
        Ok(media.embeddings_and_prefill(features, second_per_grid_ts))
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

    crate::models::batch_layer_cache::language_model_decodes_batches!(RequestState);

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        // Python's loader runs Model.sanitize, then VisionModel.sanitize.
        // Rust only: transformers-5 re-saved checkpoints too.
        let weights = crate::utils::normalize_transformers5_layout(weights);
        self.vision_tower.sanitize(Model::sanitize(weights))
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
            has_full_attention: vision
                .fullatt_block_indexes
                .iter()
                .any(|&i| i >= 0 && i < vision.depth),
            window_size: vision.window_size,
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

/// What the Qwen2 families' `get_input_embeddings` takes of the processor's
/// inputs (Python: the same lines in Qwen2-VL's and Qwen2.5-VL's
/// `Model.get_input_embeddings`): the images' patches, else the videos',
/// and both grids.
#[derive(Clone, Copy)]
pub(crate) struct QwenMedia<'a> {
    /// The patches the vision tower encodes.
    pub pixel_values: Option<&'a Array>,
    /// `[images, 3]` grids.
    pub image_grid_thw: Option<&'a Array>,
    /// `[videos, 3]` grids.
    pub video_grid_thw: Option<&'a Array>,
}

impl<'a> QwenMedia<'a> {
    /// Refuses images and videos together, naming `family` (Python encodes
    /// only the images and leaves the video tokens as text).
    pub(crate) fn of(inputs: Option<&'a QwenVlInputs>, family: &str) -> Result<Self> {
        if let Some(i) = inputs
            && i.pixel_values.is_some()
            && i.pixel_values_videos.is_some()
        {
            return Err(Error::InvalidArgument(format!(
                "{family} takes images or videos in one prompt, not both (Python mlx-vlm \
                 encodes only the images); send them in separate prompts"
            )));
        }
        Ok(QwenMedia {
            pixel_values: inputs.and_then(|i| {
                i.pixel_values
                    .as_ref()
                    .or(i.pixel_values_videos.as_ref())
            }),
            image_grid_thw: inputs.and_then(|i| i.image_grid_thw.as_ref()),
            video_grid_thw: inputs.and_then(|i| i.video_grid_thw.as_ref()),
        })
    }

    /// The merged embeddings and the prefill arguments of a prompt with
    /// these media.
    pub(crate) fn embeddings_and_prefill(
        &self,
        features: InputEmbeddingsFeatures,
        second_per_grid_ts: Option<Vec<f64>>,
    ) -> (Array, PrefillArgs) {
        (
            features.inputs_embeds,
            PrefillArgs {
                position_ids: features.position_ids,
                rope_deltas: features.rope_deltas,
                image_grid_thw: self.image_grid_thw.cloned(),
                video_grid_thw: self.video_grid_thw.cloned(),
                second_per_grid_ts,
            },
        )
    }
}

/// `encode`'s features of `pixel_values` (cast to the tower's dtype) with
/// `grid_thw` (the tower's grid), through `cache` when given, keyed by
/// both under `model_type`: the vision features of the Qwen2 families.
pub(crate) fn tower_features(
    cache: Option<&mut VisionFeatureCache>,
    model_type: &str,
    pixel_values: &Array,
    grid_thw: &Array,
    encode: impl FnOnce() -> Result<Array>,
) -> Result<Array> {
    cached_feature(
        cache,
        model_type,
        &[Some(pixel_values), Some(grid_thw)],
        encode,
    )
}

/// The end-of-sequence ids of a Qwen config's `eos_token_id`, the
/// negative ones dropped.
pub(crate) fn eos_token_ids(ids: Option<&[i32]>) -> Vec<u32> {
    ids.into_iter()
        .flatten()
        .filter_map(|&id| u32::try_from(id).ok())
        .collect()
}

/// The vision tower's sizes the memory estimate needs (Qwen2-VL's and
/// Qwen2.5-VL's towers name them differently).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VisionDims {
    /// Image channels.
    pub in_channels: i32,
    /// Frames per temporal patch.
    pub temporal_patch_size: i32,
    /// Pixels per patch side.
    pub patch_size: i32,
    /// Width of the blocks.
    pub hidden_size: i32,
    /// Width of the block MLP.
    pub intermediate_size: i32,
    /// Attention heads.
    pub num_heads: i32,
    /// Width after the merger.
    pub out_hidden_size: i32,
    /// Patches merged per side.
    pub spatial_merge_size: i32,
    /// Whether some block attends over whole frames.
    pub has_full_attention: bool,
    /// Window side in pixels, for blocks without full attention.
    pub window_size: i32,
    /// Bytes per weight of the tower.
    pub itemsize: usize,
}

/// The language model's sizes the memory estimate needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextDims {
    /// Width of the decoder.
    pub hidden_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// Features per head.
    pub head_dim: i32,
    /// Key/value heads.
    pub kv_heads: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Decoder layers.
    pub layers: usize,
    /// Bytes per activation (the final norm's weight).
    pub itemsize: usize,
}

impl TextDims {
    /// Qwen2.5-VL's (and Qwen2-VL's) language model's sizes.
    pub(crate) fn of(language_model: &LanguageModel) -> TextDims {
        let args = &language_model.args;
        TextDims {
            hidden_size: args.hidden_size,
            num_attention_heads: args.num_attention_heads,
            head_dim: language_model.head_dim(),
            kv_heads: language_model.n_kv_heads(),
            intermediate_size: args.intermediate_size,
            vocab_size: args.vocab_size,
            layers: language_model.model.layers.len(),
            itemsize: language_model.model.norm.weight.itemsize(),
        }
    }
}

/// The peak bytes of `request` beyond the weights (Rust only; Python has
/// no memory pre-flight). Counts the arrays alive at each stage's peak:
///
/// - vision: `pixel_values` (f32, and its cast), a block's activations
///   (`8·hidden + 3·intermediate` per patch) and one attention matrix
///   (`heads · L²`, L the largest frame in a full-attention block, else a
///   window). MLX's CPU attention donates the scores to the softmax, so
///   one matrix is alive at a time (measured: the tiny f32 model at
///   1792x1792 peaks at 2.33 GB, 2.15 GB of it the matrix).
/// - prefill: embeddings and merged image features of the whole prompt,
///   one step's activations and attention scores against the prompt so
///   far, and the last step's f32 logits.
/// - KV cache: keys and values of every layer for the prompt plus the
///   generated tokens (or `max_kv_size`), in 256-token steps, plus one
///   layer's copy while it grows.
pub(crate) fn estimate_memory(
    vision: &VisionDims,
    text: &TextDims,
    request: &MemoryRequest,
) -> MemoryEstimate {
    let width = |d: i32| u64::try_from(d).unwrap_or(0);
    let vision_bytes_per = u64::try_from(vision.itemsize).unwrap_or(4);
    let text_bytes_per = u64::try_from(text.itemsize).unwrap_or(4);

    // Vision tower.
    let patches: Vec<u64> = request
        .image_grids
        .iter()
        .map(|&[t, h, w]| width(t) * width(h) * width(w))
        .collect();
    let n_patches: u64 = patches.iter().sum();
    let frame_patches = request
        .image_grids
        .iter()
        .map(|&[_, h, w]| width(h) * width(w))
        .max()
        .unwrap_or(0);
    let has_full_attention = vision.has_full_attention;
    let window_patches = (width(vision.window_size) / width(vision.patch_size).max(1)).pow(2);
    let attention_len = if has_full_attention {
        frame_patches
    } else {
        frame_patches.min(window_patches)
    };
    let vision_scores = width(vision.num_heads) * attention_len * attention_len;
    let patch_values = width(vision.in_channels)
        * width(vision.temporal_patch_size)
        * width(vision.patch_size).pow(2);
    let vision_bytes = if n_patches == 0 {
        0
    } else {
        n_patches * patch_values * (4 + vision_bytes_per)
            + n_patches
                * (8 * width(vision.hidden_size) + 3 * width(vision.intermediate_size))
                * vision_bytes_per
            + vision_scores * vision_bytes_per.max(4)
    };

    // Prefill.
    let prompt = request.prompt_tokens;
    let step = request
        .prefill_step_size
        .map_or(prompt, |s| s.min(prompt))
        .max(1);
    let hidden = width(text.hidden_size);
    let heads = width(text.num_attention_heads);
    let head_dim = width(text.head_dim);
    let kv_heads = width(text.kv_heads);
    let merge = width(vision.spatial_merge_size).pow(2).max(1);
    let features = n_patches / merge * width(vision.out_hidden_size) * text_bytes_per;
    let text_scores = heads * step * prompt;
    let prefill_bytes = 2 * prompt * hidden * text_bytes_per
        + features
        + 3 * prompt * 4
        + step
            * (5 * hidden + 3 * width(text.intermediate_size) + 2 * kv_heads * head_dim)
            * text_bytes_per
        + text_scores * text_bytes_per.max(4)
        + 2 * width(text.vocab_size) * 4;

    // KV cache.
    let mut tokens = prompt + request.max_tokens;
    if let Some(max_kv) = request.max_kv_size {
        tokens = tokens.min(max_kv + step);
    }
    let tokens = tokens.div_ceil(256) * 256;
    let layer_cache = 2 * kv_heads * head_dim * tokens * text_bytes_per;
    let kv_cache_bytes = layer_cache * (u64::try_from(text.layers).unwrap_or(0) + 1);

    let (largest_array_elements, largest_array_bytes) = if vision_scores >= text_scores {
        (vision_scores, vision_scores * vision_bytes_per.max(4))
    } else {
        (text_scores, text_scores * text_bytes_per.max(4))
    };
    MemoryEstimate {
        vision_bytes,
        prefill_bytes,
        kv_cache_bytes,
        largest_array_elements,
        largest_array_bytes,
        pixels_per_patch: width(vision.patch_size).pow(2),
    }
}
