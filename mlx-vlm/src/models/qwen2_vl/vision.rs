//! `mlx_vlm/models/qwen2_vl/vision.py`: the vision tower. Patches of pixels
//! are embedded by a 3-D convolution, pass through transformer blocks that
//! attend within each frame, and are merged 2x2 into the language model's
//! width.
//!
//! Python's `check_array_shape`, `apply_rotary_pos_emb_vision`,
//! `VisionRotaryEmbedding`, `PatchEmbed` and `Attention` are copies of
//! Qwen2.5-VL's and are used from there, as are the host-side grid checks
//! and rotary positions. `PatchMerger` (a LayerNorm), `MLP` (fc1, fast
//! GELU, fc2), the block and the model (no windows) are Qwen2-VL's own.
//!
//! Divergences from Python: `grid_thw` is read to the host once and
//! checked (as Qwen2.5-VL's tower does), so a bad grid is an error rather
//! than an MLX failure; the block segments (`cu_seqlens`) are host lists.

use std::collections::HashMap;

use mlx_rs::nn::{GELU, GeluApprox, LayerNorm, Linear};
use mlx_rs::{Array, ops};

use super::config::VisionConfig;
use crate::error::{Error, Result};
pub use crate::models::qwen2_5_vl::vision::{
    Attention, PatchEmbed, VisionRotaryEmbedding, apply_rotary_pos_emb_vision, check_array_shape,
};
use crate::models::qwen2_5_vl::vision::{
    check_grid, grid_thw_tolist, rot_pos_emb, sanitize_vision_weights,
};

/// The only `model_type` this vision tower implements.
const MODEL_TYPE: &str = "qwen2_vl";

/// Merges each `merge x merge` group of patches into one feature of the
/// language model's width (Python: `PatchMerger`); `mlp.0`, `mlp.1`,
/// `mlp.2` are the items of Python's `mlp` list.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct PatchMerger {
    /// Width of a merged group: `context_dim * merge^2`.
    pub hidden_size: i32,
    /// Layer norm of each patch, before merging.
    pub ln_q: LayerNorm,
    /// Python's `mlp[0]`.
    #[module(key = "mlp.0")]
    pub mlp_0: Linear,
    /// Python's `mlp[1]`.
    #[module(key = "mlp.1")]
    pub mlp_1: GELU,
    /// Python's `mlp[2]`.
    #[module(key = "mlp.2")]
    pub mlp_2: Linear,
}

impl PatchMerger {
    /// Python: `PatchMerger(dim, context_dim, spatial_merge_size=2)`.
    pub fn new(dim: i32, context_dim: i32, spatial_merge_size: i32) -> Result<PatchMerger> {
        let hidden_size = context_dim * spatial_merge_size * spatial_merge_size;
        Ok(PatchMerger {
            hidden_size,
            ln_q: LayerNorm::new(context_dim, 1e-6, true, true)?,
            mlp_0: Linear::new(hidden_size, hidden_size, true)?,
            mlp_1: GELU::default(),
            mlp_2: Linear::new(hidden_size, dim, true)?,
        })
    }

    /// `[n_patches, context_dim]` to `[n_patches / merge^2, dim]` (Python:
    /// `PatchMerger.__call__`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.ln_q.forward(x)?.reshape(&[-1, self.hidden_size])?;
        let x = self.mlp_0.forward(&x)?;
        let x = self.mlp_1.forward(&x)?;
        Ok(self.mlp_2.forward(&x)?)
    }
}

/// The block's MLP: fc1, GELU (fast approximation), fc2 (Python: `MLP`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// Python: `nn.GELU(approx="fast")`.
    pub activation_fn: GELU,
    /// Up projection.
    pub fc1: Linear,
    /// Down projection.
    pub fc2: Linear,
}

impl MLP {
    /// Python: `MLP(dim, hidden_dim)`.
    pub fn new(dim: i32, hidden_dim: i32) -> Result<MLP> {
        Ok(MLP {
            activation_fn: GELU {
                approx: GeluApprox::Fast,
            },
            fc1: Linear::new(dim, hidden_dim, true)?,
            fc2: Linear::new(hidden_dim, dim, true)?,
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.activation_fn.forward(&self.fc1.forward(x)?)?;
        Ok(self.fc2.forward(&x)?)
    }
}

/// One vision block: pre-norm attention and MLP, each residual (Python:
/// `Qwen2VLVisionBlock`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen2VLVisionBlock {
    /// Norm before attention.
    pub norm1: LayerNorm,
    /// Norm before the MLP.
    pub norm2: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// The MLP.
    pub mlp: MLP,
}

impl Qwen2VLVisionBlock {
    /// Python: `Qwen2VLVisionBlock(config)`.
    pub fn new(config: &VisionConfig) -> Result<Qwen2VLVisionBlock> {
        let mlp_hidden_dim = (config.embed_dim as f32 * config.mlp_ratio) as i32;
        Ok(Qwen2VLVisionBlock {
            norm1: LayerNorm::new(config.embed_dim, 1e-6, true, true)?,
            norm2: LayerNorm::new(config.embed_dim, 1e-6, true, true)?,
            attn: Attention::new(config.embed_dim, config.num_heads)?,
            mlp: MLP::new(config.embed_dim, mlp_hidden_dim)?,
        })
    }

    /// Python: `Qwen2VLVisionBlock.__call__`.
    pub fn forward(
        &self,
        hidden_states: &Array,
        cu_seqlens: &[i32],
        rotary_pos_emb: &Array,
    ) -> Result<Array> {
        let attn = self
            .attn
            .forward(&self.norm1.forward(hidden_states)?, cu_seqlens, rotary_pos_emb)?;
        let hidden_states = ops::add(hidden_states, &attn)?;
        let mlp = self.mlp.forward(&self.norm2.forward(&hidden_states)?)?;
        Ok(ops::add(&hidden_states, &mlp)?)
    }
}

/// The vision tower (Python: `VisionModel`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// Python: `VisionModel.config`.
    #[module(skip)]
    pub config: VisionConfig,
    /// Patches merged per side.
    pub spatial_merge_size: i32,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Rotary angles of the patches.
    pub rotary_pos_emb: VisionRotaryEmbedding,
    /// The blocks.
    pub blocks: Vec<Qwen2VLVisionBlock>,
    /// The merger.
    pub merger: PatchMerger,
}

impl VisionModel {
    /// Python: `VisionModel(config)`; fails, as Python, for a `model_type`
    /// other than `qwen2_vl`.
    pub fn new(config: &VisionConfig) -> Result<VisionModel> {
        if config.model_type != MODEL_TYPE {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: MODEL_TYPE.into(),
            });
        }
        if config.num_heads <= 0
            || config.embed_dim % config.num_heads != 0
            || config.spatial_merge_size <= 0
            || config.patch_size <= 0
        {
            return Err(Error::Config {
                file: "vision_config".into(),
                message: format!(
                    "embed_dim {} must be a positive multiple of num_heads {}, and \
                     spatial_merge_size {} and patch_size {} positive",
                    config.embed_dim,
                    config.num_heads,
                    config.spatial_merge_size,
                    config.patch_size
                ),
            });
        }
        let head_dim = config.embed_dim / config.num_heads;
        Ok(VisionModel {
            config: config.clone(),
            spatial_merge_size: config.spatial_merge_size,
            patch_embed: PatchEmbed::new(
                config.patch_size,
                config.temporal_patch_size,
                config.in_channels,
                config.embed_dim,
            )?,
            rotary_pos_emb: VisionRotaryEmbedding::new(head_dim / 2, 10000.0),
            blocks: (0..config.depth)
                .map(|_| Qwen2VLVisionBlock::new(config))
                .collect::<Result<Vec<_>>>()?,
            // Python passes no spatial_merge_size here: the default, 2.
            merger: PatchMerger::new(config.hidden_size, config.embed_dim, 2)?,
        })
    }

    /// The rotary angles of every patch (Python: `VisionModel.rot_pos_emb`).
    pub fn rot_pos_emb(&self, grid_thw: &[[i32; 3]]) -> Result<Array> {
        rot_pos_emb(
            &self.rotary_pos_emb,
            grid_thw,
            self.spatial_merge_size,
            self.config.patch_size,
        )
    }

    /// Pixel patches (the processor's `pixel_values`, in the weights'
    /// dtype) of the images of `grid_thw` to `[n_patches / merge^2,
    /// hidden_size]` features in image order (Python:
    /// `VisionModel.__call__`). Fails when the grid is bad or does not
    /// account for every patch.
    pub fn forward(&self, hidden_states: &Array, grid_thw: &Array) -> Result<Array> {
        let (merge, patch) = (self.spatial_merge_size, self.config.patch_size);
        let grid = grid_thw_tolist(grid_thw, merge, patch)?;
        let n_patches = check_grid(&grid, merge, patch)?;
        let patch_volume = self.patch_embed.in_channels
            * self.patch_embed.temporal_patch_size
            * self.patch_embed.patch_size
            * self.patch_embed.patch_size;
        if hidden_states.size() as i64 != i64::from(n_patches) * i64::from(patch_volume) {
            return Err(Error::InvalidArgument(format!(
                "pixel_values of shape {:?} do not hold the {n_patches} patches of {patch_volume} \
                 values that image_grid_thw {grid:?} describes; pass the grid the processor \
                 returned with these pixel values",
                hidden_states.shape()
            )));
        }
        let mut hidden_states = self.patch_embed.forward(hidden_states)?;
        let rotary_pos_emb = self.rot_pos_emb(&grid)?;
        // Each frame of each image is one attention segment.
        let mut cu_seqlens = vec![0];
        for &[t, h, w] in &grid {
            for _ in 0..t {
                let last = cu_seqlens.last().copied().unwrap_or(0);
                cu_seqlens.push(last + h * w);
            }
        }
        for blk in &self.blocks {
            hidden_states = blk.forward(&hidden_states, &cu_seqlens, &rotary_pos_emb)?;
        }
        self.merger.forward(&hidden_states)
    }

    /// Checkpoint weights (keys relative to the vision tower) in this
    /// module's layout (Python: `VisionModel.sanitize`, the same as
    /// Qwen2.5-VL's): drops `position_ids`, makes a PyTorch patch-embedding
    /// weight channels-last.
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        sanitize_vision_weights(weights)
    }
}
