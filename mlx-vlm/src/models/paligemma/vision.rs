//! `mlx_vlm/models/paligemma/vision.py`: the SigLIP vision tower (patch
//! convolution, learned position embeddings, pre-norm encoder layers,
//! final LayerNorm).
//!
//! Divergences from Python: a tower built for another `model_type`, and
//! pixel values whose size is not the configured `image_size`, are typed
//! errors (Python raises for the first and fails in the position addition
//! for the second).

use std::collections::HashMap;

use mlx_rs::nn::{Conv2d, ConvOptions, Embedding, LayerNorm};
use mlx_rs::{Array, idx, ops};

use super::config::VisionConfig;
use crate::models::attention::VisionAttention as Attention;
use crate::models::base::AttentionMask;
use crate::models::base::check_array_shape;
use crate::models::mlp::GELUMLP as MLP;
use crate::{Error, Result};

/// One pre-norm encoder layer (Python: `EncoderLayer`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct EncoderLayer {
    /// Width of the layer.
    #[module(skip)]
    pub embed_dim: i32,
    /// Self-attention.
    pub self_attn: Attention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// The MLP.
    pub mlp: MLP,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm,
}

impl EncoderLayer {
    /// Python: `EncoderLayer(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        let dim = config.hidden_size;
        Ok(EncoderLayer {
            embed_dim: dim,
            self_attn: Attention::new(dim, config.num_attention_heads, true)?,
            layer_norm1: LayerNorm::new(dim, config.layer_norm_eps, true, true)?,
            mlp: MLP::new(dim, config.intermediate_size)?,
            layer_norm2: LayerNorm::new(dim, config.layer_norm_eps, true, true)?,
        })
    }

    /// Python: `EncoderLayer.__call__(x, mask)`.
    pub fn forward(&self, x: &Array, mask: &AttentionMask) -> Result<Array> {
        let r = self
            .self_attn
            .forward(&self.layer_norm1.forward(x)?, mask)?;
        let h = ops::add(x, &r)?;
        let r = self.mlp.forward(&self.layer_norm2.forward(&h)?)?;
        Ok(ops::add(&h, &r)?)
    }
}

/// The encoder layers (Python: `Encoder`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Encoder {
    /// PaliGemma's encoder returns the first image's state (`x[0]`);
    /// Gemma 3's copy returns the whole batch.
    #[module(skip)]
    pub first_image_only: bool,
    /// The layers.
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Python: `Encoder(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Ok(Encoder {
            first_image_only: true,
            layers: (0..config.num_hidden_layers)
                .map(|_| EncoderLayer::new(config))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// Python: `Encoder.__call__(x, output_hidden_states, mask)`: the first
    /// batch element's last hidden state (`x[0]`, as Python returns it) and,
    /// when asked for, every layer's input and the last output.
    pub fn forward(
        &self,
        x: &Array,
        output_hidden_states: bool,
        mask: &AttentionMask,
    ) -> Result<(Array, Option<Vec<Array>>)> {
        let mut states = output_hidden_states.then(|| vec![x.clone()]);
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.forward(&x, mask)?;
            if let Some(states) = &mut states {
                states.push(x.clone());
            }
        }
        let h = if self.first_image_only {
            x.index(idx![0])?
        } else {
            x
        };
        Ok((h, states))
    }
}

/// Patch and position embeddings (Python: `VisionEmbeddings`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionEmbeddings {
    /// Side of the input image.
    #[module(skip)]
    pub image_size: i32,
    /// Side of a patch.
    #[module(skip)]
    pub patch_size: i32,
    /// `(image_size / patch_size)²`.
    #[module(skip)]
    pub num_positions: i32,
    /// The patch convolution (channels-last weights).
    pub patch_embedding: Conv2d,
    /// One learned embedding per patch position.
    pub position_embedding: Embedding,
}

impl VisionEmbeddings {
    /// Python: `VisionEmbeddings(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        let num_patches = (config.image_size / config.patch_size).pow(2);
        Ok(VisionEmbeddings {
            image_size: config.image_size,
            patch_size: config.patch_size,
            num_positions: num_patches,
            patch_embedding: Conv2d::new(
                config.num_channels,
                config.hidden_size,
                [config.patch_size; 2],
                ConvOptions {
                    stride: [config.patch_size; 2],
                    ..Default::default()
                },
            )?,
            position_embedding: Embedding::new(num_patches, config.hidden_size)?,
        })
    }

    /// Python: `VisionEmbeddings.__call__` on channels-last pixels
    /// `[batch, image_size, image_size, channels]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let shape = x.shape();
        if shape.len() != 4 || shape[1] != self.image_size || shape[2] != self.image_size {
            return Err(Error::InvalidArgument(format!(
                "SigLIP takes pixels [batch, {0}, {0}, channels], got {shape:?}; resize images \
                 to the checkpoint's image_size with its processor",
                self.image_size
            )));
        }
        let patches = self.patch_embedding.forward(x)?.flatten(1, 2)?;
        let position_ids = ops::arange(0, self.num_positions, 1, None)?.reshape(&[1, -1])?;
        Ok(ops::add(
            &patches,
            &self.position_embedding.forward(&position_ids)?,
        )?)
    }
}

/// Python: `SigLipVisionModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct SigLipVisionModel {
    /// Patch and position embeddings.
    pub embeddings: VisionEmbeddings,
    /// The encoder.
    pub encoder: Encoder,
    /// The final LayerNorm (MLX's default epsilon, 1e-5, as Python builds
    /// it).
    pub post_layernorm: LayerNorm,
}

impl SigLipVisionModel {
    /// Python: `SigLipVisionModel(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Ok(SigLipVisionModel {
            embeddings: VisionEmbeddings::new(config)?,
            encoder: Encoder::new(config)?,
            post_layernorm: LayerNorm::new(config.hidden_size, 1e-5, true, true)?,
        })
    }

    /// Python: `SigLipVisionModel.__call__`: the post-norm last hidden
    /// state of the first image, the embeddings, and the hidden states when
    /// asked for.
    pub fn forward(
        &self,
        x: &Array,
        output_hidden_states: bool,
    ) -> Result<(Array, Array, Option<Vec<Array>>)> {
        let x = self.embeddings.forward(x)?;
        let (last, states) =
            self.encoder
                .forward(&x, output_hidden_states, &AttentionMask::None)?;
        Ok((self.post_layernorm.forward(&last)?, x, states))
    }
}

/// Python: `VisionModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// `model_type` (`siglip_vision_model`).
    #[module(skip)]
    pub model_type: String,
    /// The tower.
    pub vision_model: SigLipVisionModel,
}

impl VisionModel {
    /// Python: `VisionModel(config)`; fails, as Python, for another
    /// `model_type`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Self::with_variant(config, &["siglip_vision_model"], true)
    }

    /// The tower for the `model_types` a family accepts; Gemma 3's copy of
    /// this file (which accepts `gemma3` and `gemma3_vision` too) returns
    /// every image's state rather than the first's (`first_image_only`).
    pub fn with_variant(
        config: &VisionConfig,
        model_types: &[&str],
        first_image_only: bool,
    ) -> Result<Self> {
        if !model_types.contains(&config.model_type.as_str()) {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: model_types.join(", "),
            });
        }
        let mut vision_model = SigLipVisionModel::new(config)?;
        vision_model.encoder.first_image_only = first_image_only;
        Ok(VisionModel {
            model_type: config.model_type.clone(),
            vision_model,
        })
    }

    /// Python: `VisionModel.__call__(x, output_hidden_states)`.
    pub fn forward(
        &self,
        x: &Array,
        output_hidden_states: bool,
    ) -> Result<(Array, Array, Option<Vec<Array>>)> {
        self.vision_model.forward(x, output_hidden_states)
    }

    /// Python: `VisionModel.sanitize`: drops `position_ids`, makes a
    /// PyTorch patch-convolution weight `[out, in, kh, kw]` channels-last
    /// `[out, kh, kw, in]` unless it already is.
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let mut sanitized = HashMap::with_capacity(weights.len());
        for (key, value) in weights {
            if key.contains("position_ids") {
                continue;
            }
            if key.contains("patch_embedding.weight") && !check_array_shape(&value) {
                sanitized.insert(key, value.transpose([0, 2, 3, 1])?);
                continue;
            }
            sanitized.insert(key, value);
        }
        Ok(sanitized)
    }
}
