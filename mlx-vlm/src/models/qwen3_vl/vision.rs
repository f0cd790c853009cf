//! `mlx_vlm/models/qwen3_vl/vision.py`: the vision tower. Patches are
//! embedded by a 3-D convolution (with a bias), get a learned position
//! embedding bilinearly interpolated to the image's grid, pass through
//! LayerNorm blocks that attend within each frame, and are merged 2x2;
//! the outputs of the `deepstack_visual_indexes` blocks are merged too
//! (deepstack features, added to the first decoder layers).
//!
//! Python's `check_array_shape`, `apply_rotary_pos_emb_vision`,
//! `VisionRotaryEmbedding`, `Attention` and the rotary positions of
//! `rot_pos_emb` are Qwen2.5-VL's (Python copies them) and used from
//! there; `PatchEmbed` is Qwen2.5-VL's with a bias.
//!
//! Divergences from Python: `grid_thw` is read to the host once and
//! checked (as Qwen2.5-VL's tower does); the interpolation's indices and
//! weights are computed on the host in float32, as Python's `.tolist()`
//! of its float32 `linspace` arithmetic gives them.

use std::collections::HashMap;

use mlx_rs::nn::{Embedding, GELU, GeluApprox, LayerNorm, Linear};
use mlx_rs::{Array, ops};

use super::config::VisionConfig;
use crate::error::{Error, Result};
pub use crate::models::qwen2_5_vl::vision::{
    Attention, PatchEmbed, VisionRotaryEmbedding, apply_rotary_pos_emb_vision, check_array_shape,
};
use crate::models::qwen2_5_vl::vision::{
    check_grid, grid_thw_tolist, rot_pos_emb, sanitize_vision_weights,
};

/// The model types whose vision config this tower accepts (Python's list).
pub const MODEL_TYPES: [&str; 7] = [
    "qwen3_vl",
    "qwen3_5",
    "qwen3_5_moe",
    "qwen3_5_vision",
    "qwen3_5_moe_vision",
    "qwen4_exp",
    "qwen4_exp_vision",
];

/// The tower's two GELUs: Python's Qwen3-VL-MoE copy of this file swaps
/// them (its merger uses the tanh approximation, its block MLP the exact
/// form), so the MoE port builds this tower with its own pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionActivations {
    /// The mergers' GELU (`PatchMerger.act_fn`).
    pub merger: GeluApprox,
    /// The blocks' MLP GELU (`MLP.act_fn`).
    pub mlp: GeluApprox,
}

/// Qwen3-VL's GELUs: exact in the mergers, tanh in the block MLPs.
pub const QWEN3_VL_ACTIVATIONS: VisionActivations = VisionActivations {
    merger: GeluApprox::None,
    mlp: GeluApprox::Precise,
};

/// Merges each `merge x merge` group of patches into one feature of the
/// language model's width (Python: `PatchMerger`); with
/// `use_postshuffle_norm` the norm runs on the merged group (deepstack
/// mergers), else on each patch.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct PatchMerger {
    /// Width of a merged group: `hidden_size * merge^2`.
    #[module(skip)]
    pub hidden_size: i32,
    /// Whether the norm runs after the merge.
    #[module(skip)]
    pub use_postshuffle_norm: bool,
    /// The norm.
    pub norm: LayerNorm,
    /// First projection.
    pub linear_fc1: Linear,
    /// GELU (exact).
    pub act_fn: GELU,
    /// Second projection, to `out_hidden_size`.
    pub linear_fc2: Linear,
}

impl PatchMerger {
    /// Python: `PatchMerger(config, use_postshuffle_norm)`.
    pub fn new(config: &VisionConfig, use_postshuffle_norm: bool) -> Result<PatchMerger> {
        Self::with_activation(config, use_postshuffle_norm, QWEN3_VL_ACTIVATIONS.merger)
    }

    /// [`PatchMerger::new`] with the given GELU.
    pub fn with_activation(
        config: &VisionConfig,
        use_postshuffle_norm: bool,
        approx: GeluApprox,
    ) -> Result<PatchMerger> {
        let hidden_size = config.hidden_size * config.spatial_merge_size * config.spatial_merge_size;
        let norm_dims = if use_postshuffle_norm {
            hidden_size
        } else {
            config.hidden_size
        };
        Ok(PatchMerger {
            hidden_size,
            use_postshuffle_norm,
            norm: LayerNorm::new(norm_dims, 1e-6, true, true)?,
            linear_fc1: Linear::new(hidden_size, hidden_size, true)?,
            act_fn: GELU { approx },
            linear_fc2: Linear::new(hidden_size, config.out_hidden_size, true)?,
        })
    }

    /// `[n_patches, hidden]` to `[n_patches / merge^2, out_hidden]`
    /// (Python: `PatchMerger.__call__`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = if self.use_postshuffle_norm {
            self.norm.forward(&x.reshape(&[-1, self.hidden_size])?)?
        } else {
            self.norm.forward(x)?
        };
        let x = x.reshape(&[-1, self.hidden_size])?;
        let x = self.act_fn.forward(&self.linear_fc1.forward(&x)?)?;
        Ok(self.linear_fc2.forward(&x)?)
    }
}

/// The block's MLP: fc1, GELU (tanh approximation), fc2 (Python: `MLP`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// Up projection.
    pub linear_fc1: Linear,
    /// Down projection.
    pub linear_fc2: Linear,
    /// Python: `nn.GELU(approx="tanh")`.
    pub act_fn: GELU,
}

impl MLP {
    /// Python: `MLP(dim, hidden_dim)`.
    pub fn new(dim: i32, hidden_dim: i32) -> Result<MLP> {
        Self::with_activation(dim, hidden_dim, QWEN3_VL_ACTIVATIONS.mlp)
    }

    /// [`MLP::new`] with the given GELU.
    pub fn with_activation(dim: i32, hidden_dim: i32, approx: GeluApprox) -> Result<MLP> {
        Ok(MLP {
            linear_fc1: Linear::new(dim, hidden_dim, true)?,
            linear_fc2: Linear::new(hidden_dim, dim, true)?,
            act_fn: GELU { approx },
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.act_fn.forward(&self.linear_fc1.forward(x)?)?;
        Ok(self.linear_fc2.forward(&x)?)
    }
}

/// One vision block (Python: `Qwen3VLMoEVisionBlock`, its name in
/// Python's file too).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen3VLMoEVisionBlock {
    /// Norm before attention.
    pub norm1: LayerNorm,
    /// Norm before the MLP.
    pub norm2: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// The MLP.
    pub mlp: MLP,
}

impl Qwen3VLMoEVisionBlock {
    /// Python: `Qwen3VLMoEVisionBlock(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Self::with_activation(config, QWEN3_VL_ACTIVATIONS.mlp)
    }

    /// [`Qwen3VLMoEVisionBlock::new`] with the given MLP GELU.
    pub fn with_activation(config: &VisionConfig, mlp_approx: GeluApprox) -> Result<Self> {
        Ok(Qwen3VLMoEVisionBlock {
            norm1: LayerNorm::new(config.hidden_size, 1e-6, true, true)?,
            norm2: LayerNorm::new(config.hidden_size, 1e-6, true, true)?,
            attn: Attention::new(config.hidden_size, config.num_heads)?,
            mlp: MLP::with_activation(config.hidden_size, config.intermediate_size, mlp_approx)?,
        })
    }

    /// Python: `Qwen3VLMoEVisionBlock.__call__`.
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
    #[module(skip)]
    pub spatial_merge_size: i32,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Rotary angles of the patches.
    pub rotary_pos_emb: VisionRotaryEmbedding,
    /// The learned position table, `num_grid_per_side^2` rows.
    pub pos_embed: Embedding,
    /// Side of the position table's grid.
    #[module(skip)]
    pub num_grid_per_side: i32,
    /// The blocks.
    pub blocks: Vec<Qwen3VLMoEVisionBlock>,
    /// The final merger.
    pub merger: PatchMerger,
    /// Blocks feeding the deepstack mergers.
    #[module(skip)]
    pub deepstack_visual_indexes: Vec<i32>,
    /// One merger per deepstack block.
    pub deepstack_merger_list: Vec<PatchMerger>,
}

impl VisionModel {
    /// Python: `VisionModel(config)`; fails, as Python, for a model type it
    /// does not list.
    pub fn new(config: &VisionConfig) -> Result<VisionModel> {
        Self::with_variant(config, &MODEL_TYPES, QWEN3_VL_ACTIVATIONS)
    }

    /// The tower for the `model_types` a family accepts, with its GELUs
    /// (Qwen3-VL-MoE's copy of this tower differs only in these).
    pub fn with_variant(
        config: &VisionConfig,
        model_types: &[&str],
        activations: VisionActivations,
    ) -> Result<VisionModel> {
        if !model_types.contains(&config.model_type.as_str()) {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: model_types.join(", "),
            });
        }
        if config.num_heads <= 0
            || config.hidden_size % config.num_heads != 0
            || config.spatial_merge_size <= 0
            || config.patch_size <= 0
        {
            return Err(Error::Config {
                file: "vision_config".into(),
                message: format!(
                    "hidden_size {} must be a positive multiple of num_heads {}, and \
                     spatial_merge_size {} and patch_size {} positive",
                    config.hidden_size,
                    config.num_heads,
                    config.spatial_merge_size,
                    config.patch_size
                ),
            });
        }
        let head_dim = config.hidden_size / config.num_heads;
        Ok(VisionModel {
            config: config.clone(),
            spatial_merge_size: config.spatial_merge_size,
            patch_embed: PatchEmbed::with_bias(
                config.patch_size,
                config.temporal_patch_size,
                config.in_channels,
                config.hidden_size,
                true,
            )?,
            rotary_pos_emb: VisionRotaryEmbedding::new(head_dim / 2, 10000.0),
            pos_embed: Embedding::new(config.num_position_embeddings, config.hidden_size)?,
            num_grid_per_side: f64::from(config.num_position_embeddings).sqrt() as i32,
            blocks: (0..config.depth)
                .map(|_| Qwen3VLMoEVisionBlock::with_activation(config, activations.mlp))
                .collect::<Result<Vec<_>>>()?,
            merger: PatchMerger::with_activation(config, false, activations.merger)?,
            deepstack_visual_indexes: config.deepstack_visual_indexes.clone(),
            deepstack_merger_list: config
                .deepstack_visual_indexes
                .iter()
                .map(|_| PatchMerger::with_activation(config, true, activations.merger))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// The rotary angles of every patch (Python: `VisionModel.rot_pos_emb`,
    /// the same positions as Qwen2.5-VL's).
    pub fn rot_pos_emb(&self, grid_thw: &[[i32; 3]]) -> Result<Array> {
        rot_pos_emb(
            &self.rotary_pos_emb,
            grid_thw,
            self.spatial_merge_size,
            self.config.patch_size,
        )
    }

    /// The learned position embedding of every patch, `[n_patches,
    /// hidden]`: the table bilinearly interpolated to each image's `h x w`
    /// grid, repeated over its frames, in merge-group order (Python:
    /// `VisionModel.fast_pos_embed_interpolate`).
    pub fn fast_pos_embed_interpolate(&self, grid_thw: &[[i32; 3]]) -> Result<Array> {
        let side = self.num_grid_per_side;
        // Python: mx.linspace(0, side - 1, n) in float32.
        let linspace = |n: i32| -> Vec<f32> {
            if n == 1 {
                return vec![0.0];
            }
            // MLX divides in double and multiplies in float32.
            let step = (f64::from(side - 1) / f64::from(n - 1)) as f32;
            (0..n).map(|i| i as f32 * step).collect()
        };
        let mut idx: [Vec<i32>; 4] = Default::default();
        let mut weight: [Vec<f32>; 4] = Default::default();
        for &[_, h, w] in grid_thw {
            let (hs, ws) = (linspace(h), linspace(w));
            for &hv in &hs {
                let hf = hv as i32;
                let hc = (hf + 1).min(side - 1);
                let dh = hv - hf as f32;
                for &wv in &ws {
                    let wf = wv as i32;
                    let wc = (wf + 1).min(side - 1);
                    let dw = wv - wf as f32;
                    let corners = [
                        (hf * side + wf, (1.0 - dh) * (1.0 - dw)),
                        (hf * side + wc, (1.0 - dh) * dw),
                        (hc * side + wf, dh * (1.0 - dw)),
                        (hc * side + wc, dh * dw),
                    ];
                    for (k, (i, wt)) in corners.into_iter().enumerate() {
                        idx[k].push(i);
                        weight[k].push(wt);
                    }
                }
            }
        }
        let n = i32::try_from(idx[0].len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "image_grid_thw {grid_thw:?} has more patches than int32 can index"
            ))
        })?;
        let idx_tensor = Array::from_vec_shaped(idx.concat(), &[4, n])?;
        let pos_embeds = self.pos_embed.forward(&idx_tensor)?;
        let weight_tensor =
            Array::from_vec_shaped(weight.concat(), &[4, n])?.as_type(pos_embeds.dtype())?;
        let pos_embeds = ops::multiply(&pos_embeds, &ops::expand_dims(&weight_tensor, -1)?)?;
        // Python adds the four corners in order.
        let corner = |k: i32| pos_embeds.index(mlx_rs::idx![k]);
        let patch_pos_embeds = ops::add(
            &ops::add(&ops::add(&corner(0)?, &corner(1)?)?, &corner(2)?)?,
            &corner(3)?,
        )?;

        // Each image's rows repeated over its frames, in merge-group order.
        let m = self.spatial_merge_size;
        let mut order: Vec<i32> = Vec::new();
        let mut offset = 0;
        for &[t, h, w] in grid_thw {
            for _ in 0..t {
                for bh in 0..h / m {
                    for bw in 0..w / m {
                        for ih in 0..m {
                            for iw in 0..m {
                                order.push(offset + (bh * m + ih) * w + bw * m + iw);
                            }
                        }
                    }
                }
            }
            offset += h * w;
        }
        let len = order.len() as i32;
        Ok(ops::take(
            &patch_pos_embeds,
            &Array::from_vec_shaped(order, &[len])?,
            0,
        )?)
    }

    /// Pixel patches of the images of `grid_thw` to the merged features
    /// `[n_patches / merge^2, out_hidden_size]` and the deepstack features
    /// of the same shape, one per deepstack block (Python:
    /// `VisionModel.__call__`). Fails when the grid is bad or does not
    /// account for every patch.
    pub fn forward(&self, hidden_states: &Array, grid_thw: &Array) -> Result<(Array, Vec<Array>)> {
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
                 values that the grid {grid:?} describes; pass the grid the processor returned \
                 with these pixel values",
                hidden_states.shape()
            )));
        }
        let hidden_states = self.patch_embed.forward(hidden_states)?;
        let pos_embeds = self.fast_pos_embed_interpolate(&grid)?;
        let mut hidden_states = ops::add(&hidden_states, &pos_embeds)?;
        let rotary_pos_emb = self.rot_pos_emb(&grid)?;
        let mut cu_seqlens = vec![0];
        for &[t, h, w] in &grid {
            for _ in 0..t {
                let last = cu_seqlens.last().copied().unwrap_or(0);
                cu_seqlens.push(last + h * w);
            }
        }
        let mut deepstack_feature_lists = Vec::new();
        for (layer_num, blk) in self.blocks.iter().enumerate() {
            hidden_states = blk.forward(&hidden_states, &cu_seqlens, &rotary_pos_emb)?;
            if let Some(k) = self
                .deepstack_visual_indexes
                .iter()
                .position(|&i| usize::try_from(i).ok() == Some(layer_num))
                && let Some(merger) = self.deepstack_merger_list.get(k)
            {
                deepstack_feature_lists.push(merger.forward(&hidden_states)?);
            }
        }
        Ok((self.merger.forward(&hidden_states)?, deepstack_feature_lists))
    }

    /// Checkpoint weights (keys relative to the tower) in this module's
    /// layout (Python: `VisionModel.sanitize`, Qwen2.5-VL's): drops
    /// `position_ids`, makes a PyTorch patch-embedding weight
    /// channels-last.
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        sanitize_vision_weights(weights)
    }
}
