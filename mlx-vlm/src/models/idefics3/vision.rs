//! `mlx_vlm/models/idefics3/vision.py`: the SigLIP-style tower of Idefics3
//! and SmolVLM. Its encoder layers are Python's copy of PaliGemma's
//! (shared here: [`EncoderLayer`], [`Encoder`] returning every tile's
//! state); its embeddings differ: each tile's position ids are bucketed
//! from the patches its `patch_attention_mask` keeps, and the position
//! embeddings of masked patches are zeroed.
//!
//! Divergences from Python: a tower built for another `model_type` is
//! [`Error::UnknownModelType`] (Python: a `ValueError`); pixels or a mask
//! of the wrong rank, or a mask whose patch grid is not the image's, are
//! [`Error::InvalidArgument`] (Python fails in a reshape or broadcasts).

use std::collections::HashMap;

use mlx_rs::nn::{Conv2d, ConvOptions, Embedding, LayerNorm};
use mlx_rs::{Array, Dtype, ops};

use super::config::VisionConfig;
use crate::models::base::{AttentionMask, check_array_shape};
pub use crate::models::paligemma::vision::{Encoder, EncoderLayer};
use crate::{Error, Result};

/// The model types this tower accepts (Python's list).
pub const MODEL_TYPES: [&str; 4] = [
    "siglip_vision_model",
    "idefics3",
    "idefics3_vision",
    "smolvlm_vision",
];

/// Python: `VisionEmbeddings`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionEmbeddings {
    /// Width of the tower.
    #[module(skip)]
    pub embed_dim: i32,
    /// Side of a tile.
    #[module(skip)]
    pub image_size: i32,
    /// Side of a patch.
    #[module(skip)]
    pub patch_size: i32,
    /// Patches per tile side.
    #[module(skip)]
    pub num_patches_per_side: i32,
    /// The patch convolution (channels-last weights).
    pub patch_embedding: Conv2d,
    /// One learned embedding per patch position.
    pub position_embedding: Embedding,
}

impl VisionEmbeddings {
    /// Python: `VisionEmbeddings(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        let per_side = config.image_size / config.patch_size;
        Ok(VisionEmbeddings {
            embed_dim: config.hidden_size,
            image_size: config.image_size,
            patch_size: config.patch_size,
            num_patches_per_side: per_side,
            patch_embedding: Conv2d::new(
                config.num_channels,
                config.hidden_size,
                [config.patch_size; 2],
                ConvOptions {
                    stride: [config.patch_size; 2],
                    ..Default::default()
                },
            )?,
            position_embedding: Embedding::new(per_side * per_side, config.hidden_size)?,
        })
    }

    /// Python: `VisionEmbeddings.__call__(x, patch_attention_mask)` on
    /// channels-last pixels `[batch, height, width, channels]` and a
    /// boolean `[batch, patches_h, patches_w]` mask (`None`: positions
    /// `0..seq` for every tile).
    pub fn forward(&self, x: &Array, patch_attention_mask: Option<&Array>) -> Result<Array> {
        if x.ndim() != 4 {
            return Err(Error::InvalidArgument(format!(
                "the vision tower takes pixels [batch, height, width, channels], got {:?}",
                x.shape()
            )));
        }
        let batch_size = x.shape()[0];
        let patch_embeds = self.patch_embedding.forward(x)?;
        let embeddings = patch_embeds.flatten(1, 2)?;
        let seq_len = embeddings.shape()[1];
        let Some(mask) = patch_attention_mask else {
            let ids = ops::arange(0, seq_len, 1, None)?.reshape(&[1, -1])?;
            let ids = ops::broadcast_to(&ids, &[batch_size, seq_len])?;
            let pos = self.position_embedding.forward(&ids)?;
            return Ok(ops::add(&embeddings, &pos)?);
        };
        let (position_ids, flat_mask) = self.position_ids(mask, batch_size, seq_len)?;
        let pos = self.position_embedding.forward(&position_ids)?;
        // Zero the position embeddings of padding patches.
        let pos = ops::multiply(&pos, &ops::expand_dims(&flat_mask, -1)?)?;
        Ok(ops::add(&embeddings, &pos)?)
    }

    /// The bucketed position ids `[batch, seq_len]` (int32) and the flat
    /// mask `[batch, seq_len]` of `mask` (Python's loop over the batch).
    fn position_ids(&self, mask: &Array, batch_size: i32, seq_len: i32) -> Result<(Array, Array)> {
        let shape = mask.shape().to_vec();
        let [b, ph, pw] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "patch_attention_mask must be [batch, patches_h, patches_w], got {shape:?}"
            )));
        };
        if b != batch_size || ph * pw < seq_len || ph * pw == 0 {
            return Err(Error::InvalidArgument(format!(
                "patch_attention_mask {shape:?} does not cover the {batch_size} tiles of \
                 {seq_len} patches (tiles must be at least one patch wide and high)"
            )));
        }
        let n = self.num_patches_per_side;
        let step = 1.0 / f64::from(n);
        // MLX's own arange, as Python builds it (float32, accumulated).
        let boundaries: Vec<f32> = ops::arange(step, 1.0, step, None)?.to_vec()?;
        let host: Vec<i32> = mask.as_type(Dtype::Int32)?.to_vec()?;
        let (ph, pw, seq) = (ph as usize, pw as usize, seq_len as usize);
        let bucket = |nb: usize| -> Vec<i32> {
            (0..nb)
                .map(|i| {
                    let f = (i as f32 / nb as f32).clamp(0.0, (1.0f64 - 1e-6) as f32);
                    boundaries.iter().filter(|&&b| f >= b).count() as i32
                })
                .collect()
        };
        let mut ids = vec![0i32; batch_size as usize * seq];
        for (image, out) in host.chunks_exact(ph * pw).zip(ids.chunks_exact_mut(seq)) {
            // Valid rows (first column) and columns (first row), at least 1.
            let nb_h = (0..ph).filter(|&r| image[r * pw] != 0).count().max(1);
            let nb_w = (0..pw).filter(|&c| image[c] != 0).count().max(1);
            let (bh, bw) = (bucket(nb_h), bucket(nb_w));
            let pos = bh
                .iter()
                .flat_map(|&h| bw.iter().map(move |&w| h * n + w));
            for (slot, id) in out.iter_mut().zip(pos) {
                *slot = id;
            }
        }
        let position_ids = Array::from_vec_shaped(ids, &[batch_size, seq_len])?;
        let flat = mask.reshape(&[batch_size, -1])?;
        let flat = flat.index(mlx_rs::idx![.., ..seq_len])?;
        Ok((position_ids, flat))
    }
}

/// Python: `VisionModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// `model_type`.
    #[module(skip)]
    pub model_type: String,
    /// Patch and position embeddings.
    pub embeddings: VisionEmbeddings,
    /// The encoder.
    pub encoder: Encoder,
    /// The final LayerNorm (MLX's default epsilon, 1e-5, as Python builds
    /// it).
    pub post_layernorm: LayerNorm,
}

impl VisionModel {
    /// Python: `VisionModel(config)`; fails, as Python, for a `model_type`
    /// outside [`MODEL_TYPES`].
    pub fn new(config: &VisionConfig) -> Result<Self> {
        if !MODEL_TYPES.contains(&config.model_type.as_str()) {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: MODEL_TYPES.join(", "),
            });
        }
        let mut encoder = Encoder::new(&config.siglip())?;
        encoder.first_image_only = false;
        Ok(VisionModel {
            model_type: config.model_type.clone(),
            embeddings: VisionEmbeddings::new(config)?,
            encoder,
            post_layernorm: LayerNorm::new(config.hidden_size, 1e-5, true, true)?,
        })
    }

    /// Python: `VisionModel.__call__(x, patch_attention_mask,
    /// output_hidden_states)`: the post-norm last hidden state of every
    /// tile, the embeddings (cast to the patch weight's dtype) and, when
    /// asked for, every layer's input and the last output.
    pub fn forward(
        &self,
        x: &Array,
        patch_attention_mask: Option<&Array>,
        output_hidden_states: bool,
    ) -> Result<(Array, Array, Option<Vec<Array>>)> {
        let x = self.embeddings.forward(x, patch_attention_mask)?;
        let x = x.as_type(self.embeddings.patch_embedding.weight.dtype())?;
        let (last, states) =
            self.encoder
                .forward(&x, output_hidden_states, &AttentionMask::None)?;
        Ok((self.post_layernorm.forward(&last)?, x, states))
    }
}

/// Python: `VisionModel.sanitize`: `position_ids` dropped, a PyTorch patch
/// convolution weight made channels-last.
pub fn sanitize(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
    let mut out = HashMap::with_capacity(weights.len());
    for (key, value) in weights {
        if key.contains("position_ids") {
            continue;
        }
        if key.contains("patch_embedding.weight") && !check_array_shape(&value) {
            out.insert(key, value.transpose([0, 2, 3, 1])?);
        } else {
            out.insert(key, value);
        }
    }
    Ok(out)
}
