//! `mlx_vlm/models/llava/llava.py`: the model joining the CLIP tower, the
//! two-layer GELU projector and the Llama decoder; each `<image>` token
//! of the prompt takes one image feature, in order.
//!
//! As Python, the tower runs on the pixel values as the processor made
//! them (float32; not cast to the weights' dtype), so a bf16 or 4-bit
//! checkpoint's tower computes in float32; the features are cast to the
//! embeddings' dtype when merged.
//!
//! Divergences from Python: a feature count that differs from the
//! prompt's `<image>` tokens is an [`Error::ImageTokenMismatch`] both
//! ways (Python raises for more features, and fails in an array
//! assignment for fewer); a batch of more than one prompt is refused
//! (Python's merge assumes one: it takes the positions of every row as the
//! first row's); Python's `cached_image_features` argument is the vision
//! feature cache here (`FamilyModel::get_input_embeddings_cached`), which
//! keys the projected features by the pixel values' content; with a
//! list `vision_feature_layer` the projector's `linear_1` takes the
//! concatenated width (`vision hidden_size * layers`), where Python builds
//! it for one layer and fails in its first matmul.

use std::collections::HashMap;

use mlx_rs::nn::{GELU, GeluApprox, Linear};
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::ModelConfig;
use super::language::LanguageModel;
use super::processing_llava::LlavaInputs;
use super::vision::VisionModel;
use crate::models::{FamilyModel, KvQuantization};
use crate::models::cache::{Cache, make_prompt_cache};
use crate::models::paligemma::paligemma::eos_ids;
use crate::models::qwen2_5_vl::qwen2_5_vl::{TextDims, VisionDims, estimate_memory};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// Python: `LlavaMultiModalProjector`: `linear_2(gelu(linear_1(x)))`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LlavaMultiModalProjector {
    /// `vision hidden → text hidden`.
    pub linear_1: Linear,
    /// Python: `nn.GELU()` (the exact erf form).
    pub gelu: GELU,
    /// `text hidden → text hidden`.
    pub linear_2: Linear,
}

impl LlavaMultiModalProjector {
    /// Python: `LlavaMultiModalProjector(config)`; `in_features` is the
    /// vision width times the number of `vision_feature_layer`s (Python
    /// builds it for one layer, so a list of layers fails there in the
    /// first matmul; here it takes the concatenated width).
    pub fn new(config: &ModelConfig) -> Result<Self> {
        let text = config.text_config.hidden_size;
        let in_features = config.vision_config.hidden_size;
        Ok(LlavaMultiModalProjector {
            linear_1: Linear::new(in_features, text, true)?,
            gelu: GELU {
                approx: GeluApprox::None,
            },
            linear_2: Linear::new(text, text, true)?,
        })
    }

    /// Python: `LlavaMultiModalProjector.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.gelu.forward(&self.linear_1.forward(x)?)?;
        Ok(self.linear_2.forward(&x)?)
    }
}

/// The image features of the tower's hidden states (Python: the middle
/// of `get_input_embeddings`): the configured `vision_feature_layer`
/// state, without its CLS token for the `default` strategy; for a list of
/// layers, each so cut and concatenated along the features.
pub fn select_image_features(config: &ModelConfig, hidden_states: &[Array]) -> Result<Array> {
    let default = config.vision_feature_select_strategy == "default";
    let pick = |index: usize| -> Result<Array> {
        let state = hidden_states.get(index).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "vision_feature_layer {index} is outside the tower's {} hidden states",
                hidden_states.len()
            ))
        })?;
        Ok(if default {
            state.index(idx![.., 1.., ..])?
        } else {
            state.clone()
        })
    };
    let indices = config.feature_layer_indices();
    if config.vision_feature_layer_is_int {
        return pick(indices[0]);
    }
    let pool = indices
        .into_iter()
        .map(pick)
        .collect::<Result<Vec<_>>>()?;
    Ok(ops::concatenate(&pool, -1)?)
}

/// The token embeddings with `features` (`[n, hidden]`, already in the
/// embeddings' dtype) at the positions where `input_ids` (`[1, seq]`) is
/// `image_token`, in order (Python: `inputs_embeds[:, image_positions, :]
/// = features`): gathered by each position's running count of image
/// tokens, so the copy is exact.
pub fn scatter_image_features(
    inputs_embeds: &Array,
    input_ids: &Array,
    image_token: i32,
    features: &Array,
) -> Result<Array> {
    let is_image = ops::equal(input_ids, image_token)?;
    let count = is_image
        .as_type(Dtype::Int32)?
        .cumsum(Some(1), ops::AccumulateOptions::default())?;
    let index = ops::maximum(&ops::subtract(&count, 1)?, 0)?;
    let gathered = ops::take(features, &index.reshape(&[-1])?, 0)?;
    let gathered = gathered.reshape(inputs_embeds.shape())?;
    Ok(ops::r#where(
        &ops::expand_dims(&is_image, -1)?,
        &gathered,
        inputs_embeds,
    )?)
}

/// The number of `image_token`s in `input_ids`, and the batch size, which
/// must be one (Python's merge assumes it).
pub fn count_image_tokens(input_ids: &Array, image_token: i32, family: &str) -> Result<i64> {
    let shape = input_ids.shape();
    if shape.len() != 2 || shape[0] != 1 {
        return Err(Error::InvalidArgument(format!(
            "{family} merges image features into one prompt at a time; input_ids must be \
             [1, seq], got {shape:?}"
        )));
    }
    Ok(ops::sum(&ops::equal(input_ids, image_token)?, None, false)?.item_as::<i64>()?)
}

/// Python: `Model`.
#[derive(Debug, mlx_rs::Module)]
pub struct Model {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// The CLIP (or SigLIP) tower.
    pub vision_tower: VisionModel,
    /// The Llama decoder.
    pub language_model: LanguageModel,
    /// The projector.
    pub multi_modal_projector: LlavaMultiModalProjector,
}

impl Model {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        let mut projector = LlavaMultiModalProjector::new(&config)?;
        let layers = config.vision_feature_layer.len() as i32;
        if layers > 1 {
            projector.linear_1 = Linear::new(
                config.vision_config.hidden_size * layers,
                config.text_config.hidden_size,
                true,
            )?;
        }
        Ok(Model {
            vision_tower: VisionModel::new(&config.vision_config)?,
            language_model: LanguageModel::new(&config.text_config)?,
            multi_modal_projector: projector,
            config,
        })
    }

    /// The projected features `[images, tokens, hidden]` of pixel values
    /// `[images, channels, height, width]` (Python: the vision half of
    /// `get_input_embeddings`).
    pub fn image_features(&self, pixel_values: &Array) -> Result<Array> {
        let (_, _, hidden_states) = self
            .vision_tower
            .forward(&pixel_values.transpose([0, 2, 3, 1])?, true)?;
        let hidden_states = hidden_states.unwrap_or_default();
        let selected = select_image_features(&self.config, &hidden_states)?;
        self.multi_modal_projector.forward(&selected)
    }

    /// Python: `Model.get_input_embeddings`: the token embeddings, and
    /// with pixel values the image features in place of the `<image>`
    /// tokens.
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
    ) -> Result<Array> {
        self.embed_with(input_ids, pixel_values, None)
    }

    /// [`Model::get_input_embeddings`], the image features taken from
    /// `cache` when it holds the pixel values' (else encoded and stored):
    /// the cached and uncached paths differ only there.
    fn embed_with(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<Array> {
        let inputs_embeds = self.language_model.model.embed_tokens.forward(input_ids)?;
        let Some(pixel_values) = pixel_values else {
            return Ok(inputs_embeds);
        };
        let image_features = cached_feature(
            cache,
            &self.config.model_type,
            &[Some(pixel_values)],
            || self.image_features(pixel_values),
        )?;
        self.merge_input_ids_with_image_features(&image_features, &inputs_embeds, input_ids)
    }

    /// Python: `Model._merge_input_ids_with_image_features`.
    pub fn merge_input_ids_with_image_features(
        &self,
        image_features: &Array,
        inputs_embeds: &Array,
        input_ids: &Array,
    ) -> Result<Array> {
        let image_token = self.config.image_token_index;
        let positions = count_image_tokens(input_ids, image_token, "LLaVA")?;
        let shape = image_features.shape();
        let hidden = shape.last().copied().unwrap_or(0);
        let features = image_features
            .reshape(&[-1, hidden])?
            .as_type(inputs_embeds.dtype())?;
        let n = i64::from(features.shape()[0]);
        if n != positions {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {positions} <image> tokens (id {image_token}) but the images \
                     give {n} features ({shape:?}); let the LLaVA processor expand one <image> \
                     per image, and do not type <image> in the text"
                ),
            });
        }
        scatter_image_features(inputs_embeds, input_ids, image_token, &features)
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

/// The memory pre-flight's dimensions of a CLIP tower feeding a Llama
/// decoder (shared by LLaVA-NeXT).
pub(crate) fn memory_dims(
    config: &ModelConfig,
    language_model: &LanguageModel,
    itemsize: usize,
) -> (VisionDims, TextDims) {
    let v = &config.vision_config;
    let t = &config.text_config;
    let vision = VisionDims {
        in_channels: v.num_channels,
        temporal_patch_size: 1,
        patch_size: v.patch_size,
        hidden_size: v.hidden_size,
        intermediate_size: v.intermediate_size,
        num_heads: v.num_attention_heads,
        out_hidden_size: t.hidden_size,
        spatial_merge_size: 1,
        has_full_attention: true,
        window_size: 0,
        itemsize,
    };
    let text = TextDims {
        hidden_size: t.hidden_size,
        num_attention_heads: t.num_attention_heads,
        head_dim: language_model.head_dim(),
        kv_heads: language_model.n_kv_heads(),
        intermediate_size: t.intermediate_size,
        vocab_size: t.vocab_size,
        layers: language_model.model.layers.len(),
        itemsize: language_model.model.norm.weight.itemsize(),
    };
    (vision, text)
}

impl FamilyModel for Model {
    type Inputs = LlavaInputs;
    type Prefill = ();
    type State = ();

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&LlavaInputs>,
        _mask: Option<&Array>,
    ) -> Result<(Array, ())> {
        let pixel_values = inputs.map(|i| &i.pixel_values);
        Ok((self.embed_with(input_ids, pixel_values, None)?, ()))
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&LlavaInputs>,
        _mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, ())> {
        let pixel_values = inputs.map(|i| &i.pixel_values);
        Ok((self.embed_with(input_ids, pixel_values, Some(cache))?, ()))
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
