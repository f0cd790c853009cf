//! `mlx_vlm/models/idefics3/idefics3.py`: the model joining the vision
//! tower, the pixel-shuffle connector and the Llama decoder. SmolVLM's
//! `Model` is a subclass adding nothing; here both are [`Model`], told
//! apart by its [`Variant`] (which family registration it reports).
//!
//! Python's generate passes `pixel_attention_mask` on to
//! `get_input_embeddings` and nothing else to the language model, which
//! builds its own causal mask; the [`FamilyModel`] impl does the same.
//!
//! Divergences from Python: an image-token count that does not match the
//! features is an [`Error::ImageTokenMismatch`] (Python: a `ValueError`
//! with the same counts); pixel values that are not `[batch, images,
//! channels, height, width]`, or a pixel mask of another size, are
//! [`Error::InvalidArgument`]; when every image is padding (all zeros)
//! the tower is not run and the image tokens then mismatch (Python runs
//! it on an empty batch); `masked_scatter` gathers the features in token
//! order instead of a scatter into a flattened copy (the same result);
//! Python's `cached_image_features` argument is the vision feature cache
//! here (`FamilyModel::get_input_embeddings_cached`), which keys the
//! connector's features by the pixel values' and pixel mask's content.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use mlx_rs::nn::Linear;
use mlx_rs::{Array, Dtype, ops};

use super::config::ModelConfig;
use super::language::LanguageModel;
use super::processing_idefics3::Idefics3Inputs;
use super::vision::{VisionModel, sanitize as sanitize_vision};
use crate::models::{FamilyModel, KvQuantization};
use crate::models::cache::{Cache, make_prompt_cache};
use crate::models::paligemma::paligemma::{eos_ids, siglip_dims};
use crate::models::qwen2_5_vl::qwen2_5_vl::{TextDims, estimate_memory};
use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::{VisionFeatureCache, cached_feature};
use crate::{Error, Result};

/// Which family a [`Model`] is registered as (Python: the `Model` class
/// of `idefics3` or its `smolvlm` subclass).
pub trait Variant: fmt::Debug + Send + Sync + 'static {
    /// The family's registration.
    const FAMILY: &'static Family;
}

/// Idefics3 ([`super::FAMILY`]).
#[derive(Debug, Clone, Copy)]
pub struct Idefics3;

impl Variant for Idefics3 {
    const FAMILY: &'static Family = &super::FAMILY;
}

/// Python: `masked_scatter(final_embedding, image_mask_expanded,
/// scaled_image_features)`: the rows of `features` (`[n, hidden]`), in
/// order, at the positions of `input_ids` equal to `image_token`, cast to
/// `embeds`' dtype (as Python's assignment into it casts).
pub fn masked_scatter(
    embeds: &Array,
    input_ids: &Array,
    image_token: i32,
    features: &Array,
) -> Result<Array> {
    let ids = input_ids.to_vec_as::<i64>()?;
    let mut order = Vec::with_capacity(ids.len());
    let mut k = 0i32;
    for &t in &ids {
        if t == i64::from(image_token) {
            order.push(k);
            k += 1;
        } else {
            order.push(0);
        }
    }
    if k == 0 {
        return Ok(embeds.clone());
    }
    let order = Array::from_vec_shaped(order, input_ids.shape())?;
    let gathered = ops::take(features, &order, 0)?.as_type(embeds.dtype())?;
    let image_mask = ops::expand_dims(&ops::equal(input_ids, image_token)?, -1)?;
    Ok(ops::r#where(&image_mask, &gathered, embeds)?)
}

/// Python: `MLP`: the connector's projection of the shuffled features.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// `vision hidden · scale_factor² → text hidden`, no bias.
    pub proj: Linear,
}

impl MLP {
    /// Python: `MLP(config)`.
    pub fn new(config: &ModelConfig) -> Result<Self> {
        let input_size = config.vision_config.hidden_size * config.scale_factor.pow(2);
        Ok(MLP {
            proj: Linear::new(input_size, config.text_config.hidden_size, false)?,
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(self.proj.forward(x)?)
    }
}

/// Python: `Idefics3Connector`: pixel shuffle, then the projection.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Idefics3Connector {
    /// Patches merged per side.
    #[module(skip)]
    pub scale_factor: i32,
    /// The projection.
    pub modality_projection: MLP,
}

impl Idefics3Connector {
    /// Python: `Idefics3Connector(config)`.
    pub fn new(config: &ModelConfig) -> Result<Self> {
        Ok(Idefics3Connector {
            scale_factor: config.scale_factor,
            modality_projection: MLP::new(config)?,
        })
    }

    /// Python: `pixel_shuffle(x, scale_factor)`: `[batch, seq, dim]` with
    /// `seq` a square to `[batch, seq / s², dim · s²]`, each `s × s` block
    /// of patches concatenated.
    pub fn pixel_shuffle(&self, x: &Array, scale_factor: i32) -> Result<Array> {
        let shape = x.shape().to_vec();
        let [bsz, seq, embed_dim] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "pixel_shuffle takes [batch, seq, dim], got {shape:?}"
            )));
        };
        let side = (f64::from(seq)).sqrt() as i32;
        let s = scale_factor;
        if side * side != seq || s <= 0 || side % s != 0 {
            return Err(Error::InvalidArgument(format!(
                "pixel_shuffle: {seq} patches are not a square grid whose side is a multiple \
                 of scale_factor {s}"
            )));
        }
        let (height, width) = (side, side);
        let x = x.reshape(&[bsz, height, width, embed_dim])?;
        let x = x.reshape(&[bsz, height, width / s, embed_dim * s])?;
        let x = x.transpose([0, 2, 1, 3])?;
        let x = x.reshape(&[bsz, width / s, height / s, embed_dim * s * s])?;
        let x = x.transpose([0, 2, 1, 3])?;
        Ok(x.reshape(&[bsz, seq / (s * s), embed_dim * s * s])?)
    }

    /// Python: `Idefics3Connector.__call__`.
    pub fn forward(&self, image_hidden_states: &Array) -> Result<Array> {
        let x = self.pixel_shuffle(image_hidden_states, self.scale_factor)?;
        self.modality_projection.forward(&x)
    }
}

/// Python: `Model` (SmolVLM's `Model` is `Model<SmolVlm>`).
#[derive(Debug, mlx_rs::Module)]
pub struct Model<V: Variant = Idefics3> {
    /// Python: `Model.config`.
    #[module(skip)]
    pub config: ModelConfig,
    /// The vision tower.
    pub vision_model: VisionModel,
    /// The Llama decoder.
    pub language_model: LanguageModel,
    /// The pixel-shuffle connector.
    pub connector: Idefics3Connector,
    #[module(skip)]
    variant: PhantomData<V>,
}

impl<V: Variant> Model<V> {
    /// Python: `Model.__init__(config)`.
    pub fn new(config: ModelConfig) -> Result<Self> {
        Ok(Model {
            vision_model: VisionModel::new(&config.vision_config)?,
            language_model: LanguageModel::new(&config.text_config)?,
            connector: Idefics3Connector::new(&config)?,
            config,
            variant: PhantomData,
        })
    }

    /// The tiles that are not padding (Python: the images not all zero)
    /// of `[tiles, channels, height, width]` pixel values.
    fn real_images(pixel_values: &Array) -> Result<Vec<i32>> {
        let zeros = ops::equal(pixel_values, Array::scalar::<f32>(0.0))?;
        let counts: Vec<i64> = zeros.sum(&[-1, -2, -3][..], false)?.to_vec_as()?;
        let per_image: i64 = pixel_values.shape()[1..]
            .iter()
            .map(|&d| i64::from(d))
            .product();
        Ok(counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != per_image)
            .map(|(i, _)| i as i32)
            .collect())
    }

    /// Python: `Model.get_input_embeddings`: the token embeddings, and
    /// with pixel values (`[batch, images, channels, height, width]`) every
    /// real tile's connector features at the image tokens.
    /// `pixel_attention_mask` is `[batch, images, height, width]` (`None`:
    /// every pixel valid).
    pub fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        pixel_attention_mask: Option<&Array>,
    ) -> Result<Array> {
        self.embed_with(input_ids, pixel_values, pixel_attention_mask, None)
    }

    /// [`Model::get_input_embeddings`], the connector's features taken
    /// from `cache` when it holds those of the pixel values and pixel mask
    /// (else encoded and stored): the cached and uncached paths differ
    /// only there.
    fn embed_with(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        pixel_attention_mask: Option<&Array>,
        cache: Option<&mut VisionFeatureCache>,
    ) -> Result<Array> {
        let inputs_embeds = self.language_model.embed_tokens.forward(input_ids)?;
        let Some(pixel_values) = pixel_values else {
            return Ok(inputs_embeds);
        };
        let image_features = cached_feature(
            cache,
            &self.config.model_type,
            &[Some(pixel_values), pixel_attention_mask],
            || self.image_features(pixel_values, pixel_attention_mask),
        )?;
        self.prepare_inputs_for_multimodal(&image_features, &inputs_embeds, input_ids)
    }

    /// The connector's features `[tokens, text hidden]` of every real tile
    /// of `pixel_values` (`[batch, images, channels, height, width]`), with
    /// `pixel_attention_mask` (`[batch, images, height, width]`, `None`:
    /// every pixel valid): the vision half of Python's
    /// `get_input_embeddings`.
    pub fn image_features(
        &self,
        pixel_values: &Array,
        pixel_attention_mask: Option<&Array>,
    ) -> Result<Array> {
        let shape = pixel_values.shape().to_vec();
        let [batch_size, num_images, num_channels, height, width] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "pixel_values must be [batch, images, channels, height, width], got {shape:?}"
            )));
        };
        let pixel_values =
            pixel_values.reshape(&[batch_size * num_images, num_channels, height, width])?;
        let real = Self::real_images(&pixel_values)?;
        let hidden = self.config.text_config.hidden_size;
        Ok(if real.is_empty() {
            ops::zeros(&[0, hidden], pixel_values.dtype())?
        } else {
            let real_inds = Array::from_slice(&real, &[real.len() as i32])?;
            let pixel_values = ops::take(&pixel_values, &real_inds, 0)?;
            let mask = match pixel_attention_mask {
                None => ops::ones(
                    &[real.len() as i32, height, width],
                    Dtype::Bool,
                )?,
                Some(m) => {
                    if m.size() != (batch_size * num_images * height * width) as usize {
                        return Err(Error::InvalidArgument(format!(
                            "pixel_attention_mask {:?} does not match pixel_values {shape:?}",
                            m.shape()
                        )));
                    }
                    let m = m.reshape(&[batch_size * num_images, height, width])?;
                    ops::take(&m, &real_inds, 0)?
                }
            };
            let patch_attention_mask = self.patch_attention_mask(&mask)?;
            let (pooler_output, _, _) = self.vision_model.forward(
                &pixel_values.transpose([0, 2, 3, 1])?,
                Some(&patch_attention_mask),
                true,
            )?;
            let image_features = pooler_output.as_type(pixel_values.dtype())?;
            let image_features = self.connector.forward(&image_features)?;
            let last = image_features.shape().last().copied().unwrap_or(hidden);
            image_features.reshape(&[-1, last])?
        })
    }

    /// Python's patch mask: a patch is kept when any of its pixels is
    /// (`[tiles, height, width]` to `[tiles, patches_h, patches_w]`).
    pub fn patch_attention_mask(&self, mask: &Array) -> Result<Array> {
        let p = self.config.vision_config.patch_size;
        let shape = mask.shape().to_vec();
        let [n, height, width] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "pixel mask must be [tiles, height, width], got {shape:?}"
            )));
        };
        let (ph, pw) = (height / p, width / p);
        let reshaped = mask.index(mlx_rs::idx![.., ..ph * p, ..pw * p])?;
        let reshaped = reshaped
            .reshape(&[n, ph, p, pw, p])?
            .transpose([0, 1, 3, 2, 4])?;
        Ok(ops::greater(
            &reshaped.sum(&[-1, -2][..], false)?,
            Array::scalar::<i32>(0),
        )?)
    }

    /// Python: `Model._prepare_inputs_for_multimodal`: the features at the
    /// image tokens, or the counts when they differ.
    fn prepare_inputs_for_multimodal(
        &self,
        image_features: &Array,
        inputs_embeds: &Array,
        input_ids: &Array,
    ) -> Result<Array> {
        let image_token = self.config.image_token_index;
        let ids = input_ids.to_vec_as::<i64>()?;
        let n_image_tokens = ids.iter().filter(|&&t| t == i64::from(image_token)).count();
        let hidden = inputs_embeds.shape().last().copied().unwrap_or(0).max(1) as usize;
        let n_image_features = image_features.shape().first().copied().unwrap_or(0);
        if n_image_tokens * hidden != image_features.size() {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "Image features and image tokens do not match: tokens: {n_image_tokens}, \
                     features {n_image_features}; each <image> of the prompt must be expanded \
                     by the processor (image_seq_len tokens per tile)"
                ),
            });
        }
        masked_scatter(inputs_embeds, input_ids, image_token, image_features)
    }

    /// Python: `Model.__call__`: logits of the prompt.
    pub fn forward(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        pixel_attention_mask: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let embeds = self.get_input_embeddings(input_ids, pixel_values, pixel_attention_mask)?;
        self.language_model
            .forward(input_ids, Some(&embeds), None, cache)
    }

    /// Python: `Model.layers`.
    pub fn layers(&self) -> usize {
        self.language_model.layers.len()
    }

    /// Python: `Model.sanitize`: Hugging Face keys to the model's
    /// (`model.` dropped, `lm_head.*` and `text_model.*` under
    /// `language_model.`).
    pub fn sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
        weights
            .into_iter()
            .map(|(k, v)| {
                let k = if let Some(rest) = k.strip_prefix("model.") {
                    rest.to_string()
                } else if k.starts_with("lm_head.") {
                    format!("language_model.{k}")
                } else {
                    k
                };
                let k = match k.strip_prefix("text_model.") {
                    Some(rest) => format!("language_model.{rest}"),
                    None => k,
                };
                (k, v)
            })
            .collect()
    }
}

impl<V: Variant> FamilyModel for Model<V> {
    type Inputs = Idefics3Inputs;
    type Prefill = ();
    type State = ();

    const FAMILY: &'static Family = V::FAMILY;

    fn model_type(&self) -> &str {
        &self.config.model_type
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&Idefics3Inputs>,
        _mask: Option<&Array>,
    ) -> Result<(Array, ())> {
        let embeds = self.embed_with(
            input_ids,
            inputs.map(|i| &i.pixel_values),
            inputs.map(|i| &i.pixel_attention_mask),
            None,
        )?;
        Ok((embeds, ()))
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&Idefics3Inputs>,
        _mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<(Array, ())> {
        let embeds = self.embed_with(
            input_ids,
            inputs.map(|i| &i.pixel_values),
            inputs.map(|i| &i.pixel_attention_mask),
            Some(cache),
        )?;
        Ok((embeds, ()))
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
        make_prompt_cache(self.layers(), max_kv_size)
    }

    // Plain KV caches and 1-D RoPE, which rotates each row at its own count.
    crate::models::batch_layer_cache::language_model_decodes_batches!(());

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Ok(LanguageModel::sanitize(sanitize_vision(Model::<V>::sanitize(
            weights,
        ))?))
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        eos_ids(self.config.eos_token_id.as_deref())
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        let t = &self.config.text_config;
        let vision = siglip_dims(
            &self.config.vision_config.siglip(),
            t.hidden_size,
            self.config.scale_factor,
            self.connector.modality_projection.proj.weight.itemsize(),
        );
        let text = TextDims {
            hidden_size: t.hidden_size,
            num_attention_heads: t.num_attention_heads,
            head_dim: t.head_dim(),
            kv_heads: t.num_key_value_heads,
            intermediate_size: t.intermediate_size,
            vocab_size: t.vocab_size,
            layers: self.layers(),
            itemsize: self.language_model.norm.weight.itemsize(),
        };
        Ok(estimate_memory(&vision, &text, request))
    }

    fn kv_quantization(&self) -> KvQuantization {
        let d = self.config.text_config.head_dim();
        KvQuantization::HeadDims { keys: d, values: d }
    }
}
