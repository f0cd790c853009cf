//! `mlx_vlm/models/gemma3n/gemma3n.py`: the model joining the MobileNetV5
//! vision tower, the Conformer audio encoder and the Gemma 3n decoder,
//! each tower's output brought to the text width by a
//! [`Gemma3nMultimodalEmbedder`]. Items in Python's order.
//!
//! The prompt's ids decide the embeddings: ids in the vision vocabulary
//! (`[vision.vocab_offset, audio.vocab_offset)`) take `embed_vision`'s hard
//! embeddings, ids from `audio.vocab_offset` on `embed_audio`'s, the
//! others the decoder's; then the image features replace the
//! `image_token_id` tokens and the audio features (each clip padded to
//! `audio_soft_tokens_per_image` with the embedding of the last text id)
//! the `audio_token_id` tokens. The per-layer inputs are those of the ids,
//! ids outside `[0, vocab_size_per_layer_input)` read as 0.
//!
//! Divergences from Python:
//! - a feature count that does not match the prompt's soft tokens, an
//!   audio clip longer than `audio_soft_tokens_per_image` frames after the
//!   encoder (Python's `broadcast_to` fails on a negative length), pixel
//!   values with `input_features` missing their mask, and a vision output
//!   of another size than `vision_soft_tokens_per_image` tokens are typed
//!   errors where Python raises `ValueError`s from inside MLX;
//! - `cached_image_features` (Python's prompt-cache reuse) is the vision
//!   feature cache here (`FamilyModel::get_input_embeddings_cached`),
//!   which keys the image features by the pixel values' content; audio
//!   features are not cached (Python's are not either);
//! - `get_input_embeddings` without `input_ids` (Python's `inputs_embeds`
//!   comparison branch of `construct_special_modality_mask`) is not ported:
//!   the generic code always has the ids;
//! - [`masked_scatter`] gathers the features in token order (Python: a
//!   cumulative-sum index modulo the source's length: the same values
//!   whenever the counts match, which is checked first);
//! - [`Model::sanitize`] is the loader's whole chain (the model's, then
//!   the vision tower's, the language model's and the audio encoder's, as
//!   Python's `load_model` runs them);
//! - prompts never continue a conversation's caches
//!   ([`FamilyModel::reuses_prompt_cache`] is false: Python's unscaled
//!   prompt embeddings make a continued cache give other ids than a cold
//!   prefill; Python reuses it anyway).

use std::collections::HashMap;

use mlx_rs::nn::{Embedding, Linear};
use mlx_rs::{Array, Dtype, ops};

use super::audio::AudioModel;
use super::config::{ModelConfig, TextConfig};
use super::language::{Gemma3nRMSNorm, LanguageModel};
use super::processing_gemma3n::Gemma3nInputs;
use super::vision::VisionModel;
use crate::models::{FamilyModel, KvQuantization};
use crate::models::cache::Cache;
use crate::models::paligemma::paligemma::eos_ids;
use crate::models::qwen2_5_vl::qwen2_5_vl::{TextDims, VisionDims, estimate_memory};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// Python: `masked_scatter(input_tensor, mask, source)`: `source`'s values,
/// in order, where `mask` (broadcast to `input`'s shape) is true. The
/// caller checks that `source` has exactly as many values as `mask` has
/// true entries ([`Model::merge_multimodal_and_text`]).
pub fn masked_scatter(input: &Array, mask: &Array, source: &Array) -> Result<Array> {
    let mask = mask.as_type(Dtype::Bool)?;
    let shape = mask.shape().to_vec();
    let result_flat = ops::broadcast_to(input, &shape)?.flatten(0, -1)?;
    let mask_flat = mask.flatten(0, -1)?;
    let source_flat = source.flatten(0, -1)?;
    if source_flat.size() == 0 {
        return Ok(result_flat.reshape(&shape)?);
    }
    // Python: cumsum(mask) - 1 indexes the source at each masked entry.
    let selection = ops::subtract(
        &ops::cumsum(
            &mask_flat.as_type(Dtype::Int32)?,
            Some(0),
            ops::AccumulateOptions::default(),
        )?,
        1,
    )?;
    let len = i32::try_from(source_flat.size()).map_err(|_| {
        Error::InvalidArgument(format!(
            "{} features exceed int32 indices",
            source_flat.size()
        ))
    })?;
    let bounded = ops::remainder(&selection, len)?;
    let selected = ops::take(&source_flat, &bounded, 0)?;
    Ok(ops::r#where(&mask_flat, &selected, &result_flat)?.reshape(&shape)?)
}

/// Python: `Gemma3nMultimodalEmbedder`: a tower's soft tokens (or its hard
/// token ids) into the language model's space.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nMultimodalEmbedder {
    /// The tower's width (`multimodal_hidden_size`).
    #[module(skip)]
    pub multimodal_hidden_size: i32,
    /// Norm epsilon.
    #[module(skip)]
    pub eps: f32,
    /// First id of the tower's vocabulary.
    #[module(skip)]
    pub vocab_offset: i32,
    /// Size of the tower's vocabulary.
    #[module(skip)]
    pub vocab_size: i32,
    /// The decoder's width.
    #[module(skip)]
    pub text_hidden_size: i32,
    /// Hard embeddings of the tower's ids.
    pub embedding: Embedding,
    /// Norm of the hard embeddings.
    pub hard_embedding_norm: Gemma3nRMSNorm,
    /// Norm of the soft tokens.
    pub soft_embedding_norm: Gemma3nRMSNorm,
    /// Projection to the decoder's width.
    pub embedding_projection: Linear,
    /// Unscaled norm after the projection.
    pub embedding_post_projection_norm: Gemma3nRMSNorm,
}

impl Gemma3nMultimodalEmbedder {
    /// Python: `Gemma3nMultimodalEmbedder(multimodal_config, text_config)`,
    /// the tower's `hidden_size`, `rms_norm_eps`, `vocab_offset` and
    /// `vocab_size` given one by one (the vision and audio configs share
    /// these fields, not a type).
    pub fn new(
        hidden_size: i32,
        rms_norm_eps: f32,
        vocab_offset: i32,
        vocab_size: i32,
        text_config: &TextConfig,
    ) -> Result<Self> {
        let text = text_config.hidden_size;
        Ok(Gemma3nMultimodalEmbedder {
            multimodal_hidden_size: hidden_size,
            eps: rms_norm_eps,
            vocab_offset,
            vocab_size,
            text_hidden_size: text,
            embedding: Embedding::new(vocab_size, hidden_size)?,
            hard_embedding_norm: Gemma3nRMSNorm::new(hidden_size, rms_norm_eps, 0.0, true)?,
            soft_embedding_norm: Gemma3nRMSNorm::new(hidden_size, rms_norm_eps, 0.0, true)?,
            embedding_projection: Linear::new(hidden_size, text, false)?,
            embedding_post_projection_norm: Gemma3nRMSNorm::new(text, rms_norm_eps, 0.0, false)?,
        })
    }

    /// Python: `__call__(input_ids=...)`: the normed hard embeddings of
    /// `input_ids` (ids of this tower's vocabulary), projected and normed.
    pub fn embed_ids(&self, input_ids: &Array) -> Result<Array> {
        let hard_emb = self
            .embedding
            .forward(&ops::subtract(input_ids, self.vocab_offset)?)?;
        self.project(&self.hard_embedding_norm.forward(&hard_emb)?)
    }

    /// Python: `__call__(inputs_embeds=...)`: the tower's soft tokens
    /// normed, projected and normed.
    pub fn embed_soft(&self, inputs_embeds: &Array) -> Result<Array> {
        self.project(&self.soft_embedding_norm.forward(inputs_embeds)?)
    }

    fn project(&self, emb_norm: &Array) -> Result<Array> {
        let emb_norm_proj = self.embedding_projection.forward(emb_norm)?;
        self.embedding_post_projection_norm.forward(&emb_norm_proj)
    }
}

/// What [`Model::get_input_embeddings`] returns (Python:
/// `InputEmbeddingsFeatures(inputs_embeds, per_layer_inputs)`); the
/// per-layer inputs go to every prefill call.
#[derive(Debug, Clone)]
pub struct Gemma3nPrefill {
    /// `[batch, len, layers, hidden_size_per_layer_input]`.
    pub per_layer_inputs: Array,
}

/// Python: `Model`.
#[derive(Debug, mlx_rs::Module)]
pub struct Model {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// The Gemma 3n decoder.
    pub language_model: LanguageModel,
    /// The MobileNetV5 tower.
    pub vision_tower: VisionModel,
    /// Vision soft tokens to text width.
    pub embed_vision: Gemma3nMultimodalEmbedder,
    /// The Conformer audio encoder.
    pub audio_tower: AudioModel,
    /// Audio soft tokens to text width.
    pub embed_audio: Gemma3nMultimodalEmbedder,
}

impl Model {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        let t = &config.text_config;
        let (v, a) = (&config.vision_config, &config.audio_config);
        Ok(Model {
            language_model: LanguageModel::new(t)?,
            vision_tower: VisionModel::new(v)?,
            embed_vision: Gemma3nMultimodalEmbedder::new(
                v.hidden_size,
                v.rms_norm_eps,
                v.vocab_offset,
                v.vocab_size,
                t,
            )?,
            audio_tower: AudioModel::new(a)?,
            embed_audio: Gemma3nMultimodalEmbedder::new(
                a.hidden_size,
                a.rms_norm_eps,
                a.vocab_offset,
                a.vocab_size,
                t,
            )?,
            config,
        })
    }

    /// Python: `Model.get_input_embeddings`: the embeddings of `input_ids`
    /// (`[batch, len]`) with the images' and audio clips' features at
    /// their soft tokens, and the ids' per-layer inputs.
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3nInputs>,
    ) -> Result<(Array, Gemma3nPrefill)> {
        self.embed_with(input_ids, inputs, None)
    }

    /// [`Model::get_input_embeddings`], the image features taken from
    /// `cache` when it holds the pixel values' (else encoded and stored;
    /// the audio features are not cached): the cached and uncached paths
    /// differ only there.
    fn embed_with(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3nInputs>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<(Array, Gemma3nPrefill)> {
        let model = &self.language_model.model;
        let mut inputs_embeds = model.embed_tokens.forward(input_ids)?;
        let per_layer_inputs_mask = ops::logical_and(
            &ops::greater_equal(input_ids, 0)?,
            &ops::less(input_ids, self.config.text_config.vocab_size_per_layer_input)?,
        )?;
        let per_layer_inputs_tokens = ops::r#where(
            &per_layer_inputs_mask,
            input_ids,
            &ops::zeros_like(input_ids, None)?,
        )?;
        let per_layer_inputs = model.get_per_layer_inputs(&per_layer_inputs_tokens)?;
        let pixel_values = inputs.and_then(|i| i.pixel_values.as_ref());
        let audio = inputs.and_then(|i| i.input_features.as_ref());
        if pixel_values.is_none() && audio.is_none() {
            return Ok((inputs_embeds, Gemma3nPrefill { per_layer_inputs }));
        }

        // Hard embeddings of the vision and audio vocabularies' ids.
        let (ev, ea) = (&self.embed_vision, &self.embed_audio);
        let vision_mask = ops::logical_and(
            &ops::greater_equal(input_ids, ev.vocab_offset)?,
            &ops::less(input_ids, ea.vocab_offset)?,
        )?;
        let dummy_vision_token_id = Array::scalar(ev.vocab_offset + ev.vocab_size - 1);
        let vision_tokens = ops::r#where(&vision_mask, input_ids, &dummy_vision_token_id)?;
        let vision_embeds_flat = ev.embed_ids(&vision_tokens)?;
        inputs_embeds = ops::r#where(
            &ops::expand_dims(&vision_mask, -1)?,
            &vision_embeds_flat,
            &inputs_embeds,
        )?;
        let audio_mask = ops::greater_equal(input_ids, ea.vocab_offset)?;
        let dummy_audio_token_id = Array::scalar(ea.vocab_offset + ea.vocab_size - 1);
        let audio_tokens = ops::r#where(&audio_mask, input_ids, &dummy_audio_token_id)?;
        let audio_embeds_flat = ea.embed_ids(&audio_tokens)?;
        inputs_embeds = ops::r#where(
            &ops::expand_dims(&audio_mask, -1)?,
            &audio_embeds_flat,
            &inputs_embeds,
        )?;

        if let Some(pixel_values) = pixel_values {
            let image_features = cached_feature(
                cache,
                &self.config.model_type,
                &[Some(pixel_values)],
                || self.get_image_features(pixel_values),
            )?;
            let mask = self.construct_special_modality_mask(
                input_ids,
                &inputs_embeds,
                self.config.image_token_id,
            )?;
            inputs_embeds =
                Self::merge_multimodal_and_text(&inputs_embeds, &image_features, &mask, "image")?;
        }

        if let Some(input_features) = audio {
            let input_features_mask = inputs
                .and_then(|i| i.input_features_mask.as_ref())
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "input_features came without input_features_mask; pass the feature \
                         extractor's mask (true at valid frames) with the features"
                            .into(),
                    )
                })?;
            let audio_features = self.audio_features_padded(input_features, input_features_mask)?;
            let mask = self.construct_special_modality_mask(
                input_ids,
                &inputs_embeds,
                self.config.audio_token_id,
            )?;
            inputs_embeds =
                Self::merge_multimodal_and_text(&inputs_embeds, &audio_features, &mask, "audio")?;
        }
        Ok((inputs_embeds, Gemma3nPrefill { per_layer_inputs }))
    }

    /// `get_input_embeddings`' audio features: the encoder's soft tokens
    /// with the padded frames, then `audio_soft_tokens_per_image` minus
    /// their length more, set to the embedding of the last text id.
    pub fn audio_features_padded(
        &self,
        input_features: &Array,
        input_features_mask: &Array,
    ) -> Result<Array> {
        let (audio_features, audio_mask) = self
            .get_audio_features(input_features, &ops::logical_not(input_features_mask)?)?;
        let last_id = Array::from_slice(&[self.config.text_config.vocab_size - 1], &[1, 1])?;
        let audio_padding_embs = self.embed_audio.embed_ids(&last_id)?;
        let audio_features = ops::r#where(
            &ops::expand_dims(&audio_mask, -1)?,
            &audio_padding_embs,
            &audio_features,
        )?;
        let &[batch, seq_len, dim] = audio_features.shape() else {
            return Err(Error::InvalidArgument(format!(
                "the audio features are not [clips, frames, hidden]: {:?}",
                audio_features.shape()
            )));
        };
        let soft_tokens = self.config.audio_soft_tokens_per_image;
        let extra_padding_tokens = soft_tokens - seq_len;
        if extra_padding_tokens < 0 {
            return Err(Error::InvalidArgument(format!(
                "an audio clip gives {seq_len} soft tokens, more than config.json's \
                 audio_soft_tokens_per_image ({soft_tokens}); shorten the clip (the feature \
                 extractor's max_length bounds it)"
            )));
        }
        let extra =
            ops::broadcast_to(&audio_padding_embs, &[batch, extra_padding_tokens, dim])?;
        Ok(ops::concatenate(&[&audio_features, &extra], 1)?)
    }

    /// Python: `Model.get_audio_features`: the encoder's output through
    /// `embed_audio`, and its mask (true at padded frames); `mask` is true
    /// at padded input frames.
    pub fn get_audio_features(&self, input_features: &Array, mask: &Array) -> Result<(Array, Array)> {
        let (audio_outputs, audio_mask) = self.audio_tower.forward(input_features, mask)?;
        Ok((self.embed_audio.embed_soft(&audio_outputs)?, audio_mask))
    }

    /// Python: `Model.get_image_features`: the tower's output as
    /// `vision_soft_tokens_per_image` tokens per image, times
    /// `sqrt(vision hidden_size)`, through `embed_vision`.
    pub fn get_image_features(&self, pixel_values: &Array) -> Result<Array> {
        let vision_outputs = self.vision_tower.forward(pixel_values)?;
        let hidden = self.config.vision_config.hidden_size;
        let tokens = self.config.vision_soft_tokens_per_image;
        let vision_outputs = vision_outputs.transpose([0, 3, 1, 2])?;
        let shape = vision_outputs.shape().to_vec();
        let per_image: i64 = shape.iter().skip(1).map(|&d| i64::from(d)).product();
        if per_image != i64::from(hidden) * i64::from(tokens) {
            return Err(Error::InvalidArgument(format!(
                "the vision tower's output {shape:?} (after Python's transpose) is not \
                 vision_config.hidden_size ({hidden}) x vision_soft_tokens_per_image ({tokens}) \
                 per image; give images of the processor's size (768x768 for released \
                 Gemma 3n) or fix config.json"
            )));
        }
        let vision_outputs = vision_outputs
            .reshape(&[shape[0], hidden, tokens])?
            .transpose([0, 2, 1])?;
        // Python: `vision_outputs *= hidden_size**0.5`, a Python float.
        let vision_outputs = ops::multiply(&vision_outputs, f64::from(hidden).powf(0.5))?;
        self.embed_vision.embed_soft(&vision_outputs)
    }

    /// Python: `Model.construct_special_modality_mask` with `input_ids`:
    /// `input_ids == token_id` broadcast to the embeddings' shape.
    pub fn construct_special_modality_mask(
        &self,
        input_ids: &Array,
        inputs_embeds: &Array,
        token_id: i32,
    ) -> Result<Array> {
        let mask = ops::expand_dims(&ops::equal(input_ids, token_id)?, -1)?;
        Ok(ops::broadcast_to(&mask, inputs_embeds.shape())?)
    }

    /// Python: `Model.merge_multimodal_and_text`: `features` (cast to the
    /// embeddings' dtype) at the mask, after checking that the prompt's
    /// `modality` tokens take exactly the features given.
    pub fn merge_multimodal_and_text(
        inputs_embeds: &Array,
        features: &Array,
        special_modality_mask: &Array,
        modality: &str,
    ) -> Result<Array> {
        let modality_tokens_in_text = special_modality_mask
            .as_type(Dtype::Int64)?
            .sum(None, false)?
            .item::<i64>()?;
        let feature_tokens = features.size() as i64;
        if modality_tokens_in_text != feature_tokens {
            let dim = i64::from(inputs_embeds.shape().last().copied().unwrap_or(1).max(1));
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "Number of {modality}s does not match number of special {modality} tokens \
                     in the input text: {} {modality} tokens in the text and {} from the \
                     {modality} features; expand each {modality}'s placeholder with this \
                     model's processor",
                    modality_tokens_in_text / dim,
                    feature_tokens / dim
                ),
            });
        }
        let features = features.as_type(inputs_embeds.dtype())?;
        masked_scatter(inputs_embeds, special_modality_mask, &features)
    }

    /// Python: `Model.__call__` without `inputs_embeds`: the logits of the
    /// prompt and its media, through the language model with `cache`.
    pub fn forward(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3nInputs>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let (embeds, prefill) = self.get_input_embeddings(input_ids, inputs)?;
        self.language_model.forward(
            None,
            Some(&embeds),
            None,
            cache,
            Some(&prefill.per_layer_inputs),
        )
    }

    /// The loader's sanitize chain (Python: `Model.sanitize`, which strips
    /// a leading `model.`, then `VisionModel.sanitize`,
    /// `LanguageModel.sanitize` and `AudioModel.sanitize`, as `load_model`
    /// runs them).
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let stripped = weights
            .into_iter()
            .map(|(k, v)| match k.strip_prefix("model.") {
                Some(rest) => (rest.to_string(), v),
                None => (k, v),
            })
            .collect();
        let vision = VisionModel::sanitize(stripped)?;
        AudioModel::sanitize(LanguageModel::sanitize(vision))
    }

    /// Python: `Model.make_cache`: the language model's caches, one per
    /// decoder layer keeping its own keys and values (fewer than the
    /// layers: the KV-shared layers read earlier layers' caches).
    pub fn make_cache(&self) -> Vec<Box<dyn Cache>> {
        self.language_model.make_cache()
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.model.layers.len()
    }
}

impl FamilyModel for Model {
    type Inputs = Gemma3nInputs;
    type Prefill = Gemma3nPrefill;
    type State = ();

    const FAMILY: &'static Family = &super::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3nInputs>,
        _mask: Option<&Array>,
    ) -> Result<(Array, Gemma3nPrefill)> {
        self.embed_with(input_ids, inputs, None)
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&Gemma3nInputs>,
        _mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, Gemma3nPrefill)> {
        self.embed_with(input_ids, inputs, Some(cache))
    }

    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        prefill: Option<&Gemma3nPrefill>,
        _state: &mut (),
    ) -> Result<Array> {
        // Python's generate passes the prompt's per-layer inputs to every
        // prefill call (the language model slices them at the cache's
        // position); decode steps compute them from the ids.
        self.language_model.forward(
            Some(inputs),
            inputs_embeds,
            None,
            cache,
            prefill.map(|p| &p.per_layer_inputs),
        )
    }

    fn make_cache(&self, _max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        // Python's make_prompt_cache prefers the model's make_cache and so
        // ignores max_kv_size.
        Model::make_cache(self)
    }

    // One batched cache per layer keeping its own KV.
    crate::models::batch_layer_cache::language_model_decodes_batches!(());

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Model::sanitize(self, weights)
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_ids(self.config.eos_token_id.as_deref())
    }

    /// Rust only: a prompt continuing its conversation's caches gets other
    /// ids than its cold prefill (`tests/batch.rs`), so its prompts are
    /// prefilled cold. The cause is Python's embedding: a prompt's tokens
    /// are embedded by `get_input_embeddings`, without the decoder's
    /// `sqrt(hidden_size)` scale, while a decode step's token goes in as
    /// an id and is scaled, so a cached conversation holds its answer's
    /// tokens scaled where a cold prefill of the same text holds them
    /// unscaled. (Scaling the prompt's embeddings too makes the continued
    /// turn give the cold ids, but changes every Python golden.) The
    /// KV-shared layers' RoPE offset, taken after the update, also makes
    /// the first token depend on the length of the last prefill call.
    fn reuses_prompt_cache(&self) -> bool {
        false
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let t = &self.config.text_config;
        let v = &self.config.vision_config;
        // MobileNetV5 is convolutional; the estimate takes it as a tower of
        // its output width over its soft-token grid (an approximation: the
        // activations of the largest stage are of that order).
        let side = (f64::from(self.config.vision_soft_tokens_per_image).sqrt() as i32).max(1);
        let vision = VisionDims {
            in_channels: v.num_channels,
            temporal_patch_size: 1,
            patch_size: (v.image_size / side).max(1),
            hidden_size: v.hidden_size,
            intermediate_size: v.intermediate_size,
            num_heads: v.num_attention_heads,
            out_hidden_size: t.hidden_size,
            spatial_merge_size: 1,
            has_full_attention: true,
            window_size: 0,
            itemsize: self.embed_vision.embedding_projection.weight.itemsize(),
        };
        let text = TextDims {
            hidden_size: t.hidden_size,
            num_attention_heads: t.num_attention_heads,
            head_dim: t.head_dim,
            kv_heads: t.num_key_value_heads,
            intermediate_size: t.intermediate_size.first().unwrap_or(t.hidden_size * 4),
            vocab_size: t.vocab_size,
            // The KV-shared layers keep no cache.
            layers: self.language_model.make_cache().len(),
            itemsize: self.language_model.model.norm.weight.itemsize(),
        };
        Ok(estimate_memory(&vision, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        let d = self.language_model.head_dim();
        KvQuantization::HeadDims { keys: d, values: d }
    }
}
