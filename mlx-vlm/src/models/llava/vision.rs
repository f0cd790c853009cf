//! `mlx_vlm/models/llava/vision.py`: the CLIP vision tower (patch
//! convolution with a class token, learned position embeddings, a
//! LayerNorm before the pre-norm encoder layers, the hidden state of every
//! layer kept), which LLaVA also builds as SigLIP (no class token, no
//! pre-norm) for `siglip_vision_model`.
//!
//! Divergences from Python: the attention is the shared
//! [`crate::models::attention::VisionAttention`] (Python's file has its own
//! copy with the same weights and arithmetic); pixel values whose size is
//! not the configured `image_size` are a typed error (Python fails in the
//! position addition); a tower built for another `model_type` is a typed
//! error (Python raises a `ValueError`).

use std::collections::HashMap;

use mlx_rs::nn::{Conv2d, ConvOptions, Embedding, LayerNorm, Param};
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::VisionConfig;
use crate::models::attention::VisionAttention as Attention;
use crate::models::base::{AttentionMask, check_array_shape};
use crate::models::mlp::FastGELUMLP as MLP;
use crate::{Error, Result};

/// One pre-norm encoder layer (Python: `EncoderLayer`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct EncoderLayer {
    /// Width of the layer.
    #[module(skip)]
    pub embed_dim: i32,
    /// Self-attention (with biases).
    pub self_attn: Attention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// The quick-GELU MLP.
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
        let y = self.layer_norm1.forward(x)?;
        let y = self.self_attn.forward(&y, mask)?;
        let x = ops::add(x, &y)?;
        let y = self.mlp.forward(&self.layer_norm2.forward(&x)?)?;
        Ok(ops::add(&x, &y)?)
    }
}

/// The encoder layers (Python: `Encoder`, which has no `__call__`: the
/// model runs its layers).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Encoder {
    /// The layers.
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Python: `Encoder(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Ok(Encoder {
            layers: (0..config.num_hidden_layers)
                .map(|_| EncoderLayer::new(config))
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

/// Patch, class and position embeddings (Python: `VisionEmbeddings`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionEmbeddings {
    /// Side of the input image.
    #[module(skip)]
    pub image_size: i32,
    /// Side of a patch.
    #[module(skip)]
    pub patch_size: i32,
    /// Patches plus the class token (CLIP), or patches (SigLIP).
    #[module(skip)]
    pub num_positions: i32,
    /// The class token (CLIP; zeros until loaded, as Python).
    pub class_embedding: Option<Param>,
    /// The patch convolution (channels-last weights; a bias for SigLIP).
    pub patch_embedding: Conv2d,
    /// One learned embedding per position.
    pub position_embedding: Embedding,
}

impl VisionEmbeddings {
    /// Python: `VisionEmbeddings(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        let siglip = config.model_type == "siglip_vision_model";
        let num_patches = (config.image_size / config.patch_size).pow(2);
        let num_positions = if config.model_type == "clip_vision_model" {
            num_patches + 1
        } else {
            num_patches
        };
        Ok(VisionEmbeddings {
            image_size: config.image_size,
            patch_size: config.patch_size,
            num_positions,
            class_embedding: if siglip {
                None
            } else {
                Some(Param::new(ops::zeros(
                    &[config.hidden_size],
                    Dtype::Float32,
                )?))
            },
            patch_embedding: Conv2d::new(
                config.num_channels,
                config.hidden_size,
                [config.patch_size; 2],
                ConvOptions {
                    stride: [config.patch_size; 2],
                    bias: siglip,
                    ..Default::default()
                },
            )?,
            position_embedding: Embedding::new(num_positions, config.hidden_size)?,
        })
    }

    /// Python: `VisionEmbeddings.__call__` on channels-last pixels
    /// `[batch, image_size, image_size, channels]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let shape = x.shape();
        if shape.len() != 4 || shape[1] != self.image_size || shape[2] != self.image_size {
            return Err(Error::InvalidArgument(format!(
                "the CLIP tower takes pixels [batch, {0}, {0}, channels], got {shape:?}; resize \
                 images to the checkpoint's image_size with its processor",
                self.image_size
            )));
        }
        let batch_size = shape[0];
        let patches = self.patch_embedding.forward(x)?.flatten(1, 2)?;
        let embeddings = match &self.class_embedding {
            Some(class) => {
                let embed_dim = patches.shape()[2];
                let cls = ops::broadcast_to(class, &[batch_size, 1, embed_dim])?;
                ops::concatenate(&[cls, patches], 1)?
            }
            None => patches,
        };
        let position_ids = ops::arange(0, self.num_positions, 1, None)?.reshape(&[1, -1])?;
        Ok(ops::add(
            &embeddings,
            &self.position_embedding.forward(&position_ids)?,
        )?)
    }
}

/// Python: `ClipVisionModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct ClipVisionModel {
    /// Patch, class and position embeddings.
    pub embeddings: VisionEmbeddings,
    /// The LayerNorm before the encoder (CLIP only; MLX's default epsilon,
    /// as Python builds it; Python's spelling).
    pub pre_layrnorm: Option<LayerNorm>,
    /// The encoder.
    pub encoder: Encoder,
    /// The LayerNorm of the pooled class token.
    pub post_layernorm: LayerNorm,
}

impl ClipVisionModel {
    /// Python: `ClipVisionModel(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        let clip = config.model_type == "clip_vision_model";
        Ok(ClipVisionModel {
            embeddings: VisionEmbeddings::new(config)?,
            pre_layrnorm: if clip {
                Some(LayerNorm::new(config.hidden_size, 1e-5, true, true)?)
            } else {
                None
            },
            encoder: Encoder::new(config)?,
            post_layernorm: LayerNorm::new(config.hidden_size, 1e-5, true, true)?,
        })
    }

    /// Python: `ClipVisionModel.__call__`: the pooled output (the post-norm
    /// first token), the last hidden state, and when asked for every hidden
    /// state: the (pre-normed) embeddings, then each layer's output.
    pub fn forward(
        &self,
        x: &Array,
        output_hidden_states: bool,
    ) -> Result<(Array, Array, Option<Vec<Array>>)> {
        let mut x = self.embeddings.forward(x)?;
        if let Some(norm) = &self.pre_layrnorm {
            x = norm.forward(&x)?;
        }
        let mut states = output_hidden_states.then(|| vec![x.clone()]);
        for layer in &self.encoder.layers {
            x = layer.forward(&x, &AttentionMask::None)?;
            if let Some(states) = &mut states {
                states.push(x.clone());
            }
        }
        let pooler_output = self.post_layernorm.forward(&x.index(idx![.., 0, ..])?)?;
        Ok((pooler_output, x, states))
    }
}

/// Python: `VisionModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// `model_type` of the tower.
    #[module(skip)]
    pub model_type: String,
    /// The tower.
    pub vision_model: ClipVisionModel,
}

impl VisionModel {
    /// Python: `VisionModel(config)`: `clip_vision_model` or
    /// `siglip_vision_model`, else a typed error.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Self::with_model_types(config, &["clip_vision_model", "siglip_vision_model"])
    }

    /// The tower for the `model_types` a family accepts (LLaVA-NeXT's copy
    /// of this file takes `clip_vision_model` only).
    pub fn with_model_types(config: &VisionConfig, model_types: &[&str]) -> Result<Self> {
        if !model_types.contains(&config.model_type.as_str()) {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: model_types.join(", "),
            });
        }
        Ok(VisionModel {
            model_type: config.model_type.clone(),
            vision_model: ClipVisionModel::new(config)?,
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
