//! `mlx_vlm/models/qwen2_5_vl/vision.py`: the vision tower. Patches of
//! pixels are embedded by a 3-D convolution, pass through transformer blocks
//! that attend within windows (some blocks over the whole image), and are
//! merged 2x2 into the language model's width.
//!
//! `grid_thw` (`[n_images, 3]`: frames, patch rows, patch columns) is read
//! to the host once per call and checked, so a bad grid is an error rather
//! than an MLX failure deep in the graph. The window and position
//! bookkeeping is integer work on the host, as Python's `.tolist()`/numpy
//! steps are; only the float math runs in MLX.

use std::collections::HashMap;

use mlx_rs::nn::activations::silu;
use mlx_rs::nn::{Conv3d, ConvOptions, GELU, Linear, RMSNorm};
use mlx_rs::ops;
use mlx_rs::{Array, Dtype, fast};

use super::config::VisionConfig;
use crate::error::{Error, Result};
use crate::models::rope_utils::rotate_half;

/// The only `model_type` this vision tower implements.
const MODEL_TYPE: &str = "qwen2_5_vl";

/// Whether a patch-embedding weight is already in MLX's channels-last
/// layout `[out, t, h, w, in]` (Python: `check_array_shape`).
///
/// Python names the five axes `B, out_channels, kH, KW, t` whatever they
/// hold; the test is the same: a last axis of 3 (RGB input channels), or a
/// second axis no smaller than the two before the last, which are equal.
/// Python raises on a 4-D shape (it unpacks five values); here any shape
/// that is not 5-D is "not converted", and [`VisionModel::sanitize`]
/// rejects it.
pub fn check_array_shape(arr: &Array) -> bool {
    let &[_, out_channels, kh, kw, t] = arr.shape() else {
        return false;
    };
    if t == 3 {
        return true;
    }
    out_channels >= kh && out_channels >= kw && kh == kw
}

/// Rotary position embedding of `tensor` (`[.., seq, heads, head_dim]`)
/// by the angles `freqs` (`[seq, head_dim / 2]`), computed in float32 and
/// cast back to `tensor`'s dtype (Python: `apply_rotary_pos_emb_vision`).
pub fn apply_rotary_pos_emb_vision(tensor: &Array, freqs: &Array) -> Result<Array> {
    let orig_dtype = tensor.dtype();
    // [seq, d] -> [1, seq, 1, 2d]: the angles repeat over both halves and
    // broadcast over heads.
    let spread = |a: Array| -> Result<Array> {
        let a = ops::tile(&ops::expand_dims(&a, 1)?, &[1, 1, 2])?;
        Ok(ops::expand_dims(&a, 0)?)
    };
    let cos = spread(ops::cos(freqs)?)?;
    let sin = spread(ops::sin(freqs)?)?;
    let output = ops::add(
        ops::multiply(tensor, &cos)?,
        ops::multiply(rotate_half(tensor)?, &sin)?,
    )?;
    Ok(output.as_type(orig_dtype)?)
}

/// The rotary angles of positions `0..seqlen` (Python:
/// `VisionRotaryEmbedding`). It has no parameters.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionRotaryEmbedding {
    /// Rotated dimensions; there are `dim / 2` frequencies.
    pub dim: i32,
    /// Base of the frequencies.
    pub theta: f32,
}

impl VisionRotaryEmbedding {
    /// Python: `VisionRotaryEmbedding(dim, theta=10000.0)`.
    pub fn new(dim: i32, theta: f32) -> VisionRotaryEmbedding {
        VisionRotaryEmbedding { dim, theta }
    }

    /// `[seqlen, dim / 2]` float32 angles `position * theta^(-2i / dim)`
    /// (Python: `VisionRotaryEmbedding.__call__`).
    pub fn forward(&self, seqlen: i32) -> Result<Array> {
        let exponents = ops::divide(ops::arange(0, self.dim, 2, Some(Dtype::Float32))?, self.dim)?;
        let inv_freq = ops::divide(1.0f32, ops::power(self.theta, &exponents)?)?;
        let seq = ops::arange(0, seqlen, 1, Some(inv_freq.dtype()))?;
        Ok(ops::outer(&seq, &inv_freq)?)
    }
}

/// Embeds flattened pixel patches with a 3-D convolution whose stride is
/// its kernel (Python: `PatchEmbed`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct PatchEmbed {
    /// Pixels per patch side.
    pub patch_size: i32,
    /// Frames per patch.
    pub temporal_patch_size: i32,
    /// Image channels.
    pub in_channels: i32,
    /// Width of the embedding.
    pub hidden_size: i32,
    /// The convolution, weight `[hidden, t, p, p, in]`, no bias.
    pub proj: Conv3d,
}

impl PatchEmbed {
    /// Python: `PatchEmbed(patch_size, temporal_patch_size, in_channels,
    /// hidden_size)`.
    pub fn new(
        patch_size: i32,
        temporal_patch_size: i32,
        in_channels: i32,
        hidden_size: i32,
    ) -> Result<PatchEmbed> {
        Self::with_bias(patch_size, temporal_patch_size, in_channels, hidden_size, false)
    }

    /// [`PatchEmbed::new`] with a bias on the convolution or not (Python:
    /// Qwen3-VL's `PatchEmbed`, a copy of this one with `bias=True`).
    pub fn with_bias(
        patch_size: i32,
        temporal_patch_size: i32,
        in_channels: i32,
        hidden_size: i32,
        bias: bool,
    ) -> Result<PatchEmbed> {
        let kernel_size = [temporal_patch_size, patch_size, patch_size];
        let proj = Conv3d::new(
            in_channels,
            hidden_size,
            kernel_size,
            ConvOptions {
                stride: kernel_size,
                bias,
                ..Default::default()
            },
        )?;
        Ok(PatchEmbed {
            patch_size,
            temporal_patch_size,
            in_channels,
            hidden_size,
            proj,
        })
    }

    /// `[n_patches, in * t * p * p]` pixels (channels first, as the
    /// processor flattens them) to `[n_patches, hidden]` (Python:
    /// `PatchEmbed.__call__`).
    pub fn forward(&self, hidden_states: &Array) -> Result<Array> {
        let hidden_states = hidden_states
            .reshape(&[
                -1,
                self.in_channels,
                self.temporal_patch_size,
                self.patch_size,
                self.patch_size,
            ])?
            .moveaxis(1, 4)?;
        let hidden_states = self.proj.forward(&hidden_states)?;
        Ok(hidden_states.reshape(&[-1, self.hidden_size])?)
    }
}

/// Normalises the patches, joins each `merge x merge` group into one vector
/// and projects it to the language model's width (Python: `PatchMerger`).
///
/// Python's `mlp` is the list `[Linear, GELU, Linear]`; its items are the
/// fields `mlp.0`, `mlp.1` and `mlp.2` here, so the parameter keys are
/// Python's (the GELU has none).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct PatchMerger {
    /// Width of a merged group: `context_dim * merge^2`.
    pub hidden_size: i32,
    /// RMS norm of each patch, before merging.
    pub ln_q: RMSNorm,
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
            ln_q: RMSNorm::new(context_dim, 1e-6)?,
            mlp_0: Linear::new(hidden_size, hidden_size, true)?,
            mlp_1: GELU::default(),
            mlp_2: Linear::new(hidden_size, dim, true)?,
        })
    }

    /// `[n_patches, context_dim]` to `[n_patches / merge^2, dim]`, merging
    /// consecutive rows (Python: `PatchMerger.__call__`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.ln_q.forward(x)?.reshape(&[-1, self.hidden_size])?;
        let x = self.mlp_0.forward(&x)?;
        let x = self.mlp_1.forward(&x)?;
        Ok(self.mlp_2.forward(&x)?)
    }
}

/// Multi-head self-attention with rotary positions, attending within the
/// segments that `cu_seqlens` bounds (Python: `Attention`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Attention {
    /// Attention heads.
    pub num_heads: i32,
    /// Width of a head.
    pub head_dim: i32,
    /// `head_dim^-0.5`.
    pub scale: f32,
    /// Joint query, key and value projection.
    pub qkv: Linear,
    /// Output projection.
    pub proj: Linear,
}

impl Attention {
    /// Python: `Attention(dim, num_heads=16)`.
    pub fn new(dim: i32, num_heads: i32) -> Result<Attention> {
        let head_dim = dim / num_heads.max(1);
        Ok(Attention {
            num_heads,
            head_dim,
            // Python's float is a double, narrowed when MLX takes it.
            scale: f64::from(head_dim).powf(-0.5) as f32,
            qkv: Linear::new(dim, dim * 3, true)?,
            proj: Linear::new(dim, dim, true)?,
        })
    }

    /// Attention of `x` (`[seq, dim]`) within each segment
    /// `cu_seqlens[i]..cu_seqlens[i + 1]` (Python: `Attention.__call__`).
    ///
    /// Python passes `cu_seqlens` as an array and reads it back with
    /// `.tolist()` in every block; here it is the host list itself.
    pub fn forward(&self, x: &Array, cu_seqlens: &[i32], rotary_pos_emb: &Array) -> Result<Array> {
        let seq_length = x.dim(0)?;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape(&[seq_length, 3, self.num_heads, -1])?
            .transpose(&[1, 0, 2, 3][..])?;
        let parts = ops::split(&qkv, 3, 0)?;
        let [q, k, v] = parts.as_slice() else {
            return Err(Error::InvalidArgument(format!(
                "Attention: qkv of shape {:?} did not split into 3",
                qkv.shape()
            )));
        };

        let rope = |t: &Array| -> Result<Array> {
            let rotated = apply_rotary_pos_emb_vision(&ops::expand_dims(t, 0)?, rotary_pos_emb)?;
            Ok(ops::squeeze(&rotated, 0)?.transpose(&[0, 2, 1, 3][..])?)
        };
        let q = rope(q)?;
        let k = rope(k)?;
        let v = v.transpose(&[0, 2, 1, 3][..])?;

        // One attention per segment, as Python does. A single call with a
        // block-diagonal mask over all segments would launch fewer kernels
        // but compute (and mask away) every cross-segment score.
        let bounds = inner_bounds(cu_seqlens);
        let (qs, ks, vs) = (
            ops::split(&q, bounds.clone(), 2)?,
            ops::split(&k, bounds.clone(), 2)?,
            ops::split(&v, bounds, 2)?,
        );
        let attn_outputs = qs
            .iter()
            .zip(&ks)
            .zip(&vs)
            .map(|((q, k), v)| {
                fast::scaled_dot_product_attention(q, k, v, self.scale, Default::default())
            })
            .collect::<mlx_rs::Result<Vec<Array>>>()?;

        let output = ops::concatenate(&attn_outputs, 2)?
            .transpose(&[0, 2, 1, 3][..])?
            .reshape(&[seq_length, -1])?;
        Ok(self.proj.forward(&output)?)
    }
}

/// Python's `cu_seqlens[1:-1]`: the split points between segments.
fn inner_bounds(cu_seqlens: &[i32]) -> Vec<i32> {
    let end = cu_seqlens.len().saturating_sub(1);
    cu_seqlens.get(1..end).unwrap_or_default().to_vec()
}

/// The gated feed-forward network of a block (Python: `MLP`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
}

impl MLP {
    /// Python: `MLP(dim, hidden_dim)`; every projection has a bias.
    pub fn new(dim: i32, hidden_dim: i32) -> Result<MLP> {
        Ok(MLP {
            gate_proj: Linear::new(dim, hidden_dim, true)?,
            up_proj: Linear::new(dim, hidden_dim, true)?,
            down_proj: Linear::new(hidden_dim, dim, true)?,
        })
    }

    /// `down(silu(gate(x)) * up(x))` (Python: `MLP.__call__`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gated = ops::multiply(silu(&self.gate_proj.forward(x)?)?, self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&gated)?)
    }
}

/// A pre-norm transformer block of the vision tower (Python:
/// `Qwen2VLVisionBlock`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen2VLVisionBlock {
    /// Norm before attention.
    pub norm1: RMSNorm,
    /// Norm before the MLP.
    pub norm2: RMSNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Feed-forward network.
    pub mlp: MLP,
}

impl Qwen2VLVisionBlock {
    /// Python: `Qwen2VLVisionBlock(config)`.
    pub fn new(config: &VisionConfig) -> Result<Qwen2VLVisionBlock> {
        Ok(Qwen2VLVisionBlock {
            norm1: RMSNorm::new(config.hidden_size, 1e-6)?,
            norm2: RMSNorm::new(config.hidden_size, 1e-6)?,
            attn: Attention::new(config.hidden_size, config.num_heads)?,
            mlp: MLP::new(config.hidden_size, config.intermediate_size)?,
        })
    }

    /// `x + attn(norm1(x))`, then `+ mlp(norm2(.))` (Python:
    /// `Qwen2VLVisionBlock.__call__`).
    pub fn forward(
        &self,
        hidden_states: &Array,
        cu_seqlens: &[i32],
        rotary_pos_emb: &Array,
    ) -> Result<Array> {
        let attn = self.attn.forward(
            &self.norm1.forward(hidden_states)?,
            cu_seqlens,
            rotary_pos_emb,
        )?;
        let hidden_states = ops::add(hidden_states, &attn)?;
        let mlp = self.mlp.forward(&self.norm2.forward(&hidden_states)?)?;
        Ok(ops::add(&hidden_states, &mlp)?)
    }
}

/// The vision tower of Qwen2.5-VL (Python: `VisionModel`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// The configuration it was built from.
    #[module(skip)]
    pub config: VisionConfig,
    /// `qwen2_5_vl`.
    pub model_type: String,
    /// Patches merged per side by the merger.
    pub spatial_merge_size: i32,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Window side in pixels.
    pub window_size: i32,
    /// Pixels per patch side.
    pub patch_size: i32,
    /// Patches merged into one token: `spatial_merge_size^2`.
    pub spatial_merge_unit: i32,
    /// Blocks that attend over whole images instead of windows.
    pub fullatt_block_indexes: Vec<i32>,
    /// Rotary angles (no parameters).
    pub rotary_pos_emb: VisionRotaryEmbedding,
    /// Transformer blocks.
    pub blocks: Vec<Qwen2VLVisionBlock>,
    /// Patch merger.
    pub merger: PatchMerger,
}

impl VisionModel {
    /// Python: `VisionModel(config)`. Fails, as Python, for a `model_type`
    /// other than `qwen2_5_vl`, and for sizes that would divide by zero
    /// (Python fails on those only when called).
    pub fn new(config: &VisionConfig) -> Result<VisionModel> {
        if config.model_type != MODEL_TYPE {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "vision_config".into(),
                supported: MODEL_TYPE.into(),
            });
        }
        let bad = |message: String| Error::Config {
            file: "vision_config".into(),
            message,
        };
        if config.num_heads <= 0 || config.hidden_size % config.num_heads != 0 {
            return Err(bad(format!(
                "hidden_size {} must be a positive multiple of num_heads {}",
                config.hidden_size, config.num_heads
            )));
        }
        // The widest layer is the merger's, `hidden_size * 2^2`.
        if config.hidden_size.checked_mul(4).is_none() {
            return Err(bad(format!(
                "hidden_size {} is too large for int32 shapes",
                config.hidden_size
            )));
        }
        if config.spatial_merge_size <= 0 || config.patch_size <= 0 {
            return Err(bad(format!(
                "spatial_merge_size {} and patch_size {} must be positive",
                config.spatial_merge_size, config.patch_size
            )));
        }
        if config.window_size / config.spatial_merge_size / config.patch_size <= 0 {
            return Err(bad(format!(
                "window_size {} must be at least spatial_merge_size {} * patch_size {}",
                config.window_size, config.spatial_merge_size, config.patch_size
            )));
        }
        let spatial_merge_size = config.spatial_merge_size;
        let patch_embed = PatchEmbed::new(
            config.patch_size,
            config.temporal_patch_size,
            config.in_channels,
            config.hidden_size,
        )?;
        let head_dim = config.hidden_size / config.num_heads;
        let blocks = (0..config.depth)
            .map(|_| Qwen2VLVisionBlock::new(config))
            .collect::<Result<Vec<_>>>()?;
        Ok(VisionModel {
            config: config.clone(),
            model_type: config.model_type.clone(),
            spatial_merge_size,
            patch_embed,
            window_size: config.window_size,
            patch_size: config.patch_size,
            spatial_merge_unit: spatial_merge_size * spatial_merge_size,
            fullatt_block_indexes: config.fullatt_block_indexes.clone(),
            rotary_pos_emb: VisionRotaryEmbedding::new(head_dim / 2, 10000.0),
            blocks,
            // Python passes no spatial_merge_size here: the default, 2.
            merger: PatchMerger::new(config.out_hidden_size, config.hidden_size, 2)?,
        })
    }

    /// `grid_thw` (`[n_images, 3]` integers) read to the host and checked
    /// (Python: `grid_thw.tolist()`); see [`grid_thw_tolist`].
    pub fn grid_thw_tolist(&self, grid_thw: &Array) -> Result<Vec<[i32; 3]>> {
        grid_thw_tolist(grid_thw, self.spatial_merge_size, self.patch_size)
    }

    fn check_grid(&self, grid_thw: &[[i32; 3]]) -> Result<i32> {
        check_grid(grid_thw, self.spatial_merge_size, self.patch_size)
    }

    /// The rotary angles of every patch (Python: `VisionModel.rot_pos_emb`);
    /// see [`rot_pos_emb`].
    pub fn rot_pos_emb(&self, grid_thw: &[[i32; 3]]) -> Result<Array> {
        rot_pos_emb(
            &self.rotary_pos_emb,
            grid_thw,
            self.spatial_merge_size,
            self.patch_size,
        )
    }

    /// The window index and window bounds, on the host: `window_index[i]`
    /// is the merged token placed `i`-th when tokens are grouped by window;
    /// `cu_window_seqlens` the cumulative patch counts of the windows,
    /// starting at 0, with repeats for empty windows (Python builds them
    /// the same way).
    fn window_index_host(&self, grid_thw: &[[i32; 3]]) -> Result<(Vec<i32>, Vec<i32>)> {
        self.check_grid(grid_thw)?;
        let merge = self.spatial_merge_size;
        let vit = self.window_size / merge / self.patch_size;
        let mut window_index = Vec::new();
        let mut cu_window_seqlens = vec![0];
        let mut window_index_id = 0;
        for &[grid_t, grid_h, grid_w] in grid_thw {
            let (llm_h, llm_w) = (grid_h / merge, grid_w / merge);
            // As Python: a side that is already a multiple of the window
            // still gets a whole window of padding, which adds empty windows.
            let pad_h = vit - llm_h % vit;
            let pad_w = vit - llm_w % vit;
            let (num_h, num_w) = ((llm_h + pad_h) / vit, (llm_w + pad_w) / vit);
            let mut last = cu_window_seqlens.last().copied().unwrap_or(0);
            for t in 0..grid_t {
                for wh in 0..num_h {
                    for ww in 0..num_w {
                        let mut seqlen = 0;
                        for ih in 0..vit {
                            for iw in 0..vit {
                                let (r, c) = (wh * vit + ih, ww * vit + iw);
                                if r < llm_h && c < llm_w {
                                    window_index
                                        .push(window_index_id + (t * llm_h + r) * llm_w + c);
                                    seqlen += 1;
                                }
                            }
                        }
                        last += seqlen * self.spatial_merge_unit;
                        cu_window_seqlens.push(last);
                    }
                }
            }
            window_index_id += grid_t * llm_h * llm_w;
        }
        Ok((window_index, cu_window_seqlens))
    }

    /// `(window_index, cu_window_seqlens)`, both int32 (Python:
    /// `VisionModel.get_window_index`); see the forward pass for their use.
    pub fn get_window_index(&self, grid_thw: &[[i32; 3]]) -> Result<(Array, Array)> {
        let (window_index, cu_window_seqlens) = self.window_index_host(grid_thw)?;
        Ok((host_array(&window_index)?, host_array(&cu_window_seqlens)?))
    }

    /// Pixel patches (`[n_patches, in * t * p * p]`, the processor's
    /// `pixel_values`, already in the weights' dtype) of the images of
    /// `grid_thw` to `[n_patches / merge^2, out_hidden_size]` features in
    /// image order (Python: `VisionModel.__call__`; its
    /// `output_hidden_states` changes nothing it returns and is left out).
    ///
    /// Fails when the grid is bad or does not account for every patch.
    pub fn forward(&self, hidden_states: &Array, grid_thw: &Array) -> Result<Array> {
        let grid = self.grid_thw_tolist(grid_thw)?;
        let n_patches = self.check_grid(&grid)?;
        let patch_volume = self.patch_embed.in_channels
            * self.patch_embed.temporal_patch_size
            * self.patch_size
            * self.patch_size;
        if hidden_states.size() as i64 != i64::from(n_patches) * i64::from(patch_volume) {
            return Err(Error::InvalidArgument(format!(
                "pixel_values of shape {:?} do not hold the {n_patches} patches of {patch_volume} \
                 values that image_grid_thw {grid:?} describes; pass the grid the processor \
                 returned with these pixel values",
                hidden_states.shape()
            )));
        }

        let hidden_states = self.patch_embed.forward(hidden_states)?;
        let rotary_pos_emb = self.rot_pos_emb(&grid)?;
        let (window_index, cu_window_raw) = self.window_index_host(&grid)?;

        // Empty windows repeat a bound; Python keeps the first occurrence of
        // each value, which for these non-decreasing sums is `dedup`.
        let mut cu_window_seqlens = cu_window_raw;
        cu_window_seqlens.dedup();

        // Group the patches (merge group by merge group) by window.
        let window_index = host_array(&window_index)?;
        let seq_len = n_patches;
        let unit = self.spatial_merge_unit;
        let by_window = |a: &Array| -> Result<Array> {
            let a = a.reshape(&[seq_len / unit, unit, -1])?;
            Ok(ops::take(&a, &window_index, 0)?.reshape(&[seq_len, -1])?)
        };
        let mut hidden_states = by_window(&hidden_states)?;
        let rotary_pos_emb = by_window(&rotary_pos_emb)?;

        // Full attention stays within each frame of each image.
        let mut cu_seqlens = vec![0];
        for &[t, h, w] in &grid {
            for _ in 0..t {
                let last = cu_seqlens.last().copied().unwrap_or(0);
                cu_seqlens.push(last + h * w);
            }
        }

        for (layer_num, blk) in self.blocks.iter().enumerate() {
            let full =
                i32::try_from(layer_num).is_ok_and(|n| self.fullatt_block_indexes.contains(&n));
            let cu_seqlens_now = if full {
                &cu_seqlens
            } else {
                &cu_window_seqlens
            };
            hidden_states = blk.forward(&hidden_states, cu_seqlens_now, &rotary_pos_emb)?;
        }

        let hidden_states = self.merger.forward(&hidden_states)?;
        let reverse_indices = ops::argsort(&window_index, Some(0))?;
        Ok(ops::take(&hidden_states, &reverse_indices, 0)?)
    }

    /// Checkpoint weights (keys relative to the vision tower) in this
    /// module's layout (Python: `VisionModel.sanitize`): drops
    /// `position_ids`, and moves a PyTorch patch-embedding weight
    /// `[out, in, t, h, w]` to channels-last `[out, t, h, w, in]` unless
    /// [`check_array_shape`] finds it converted already.
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        sanitize_vision_weights(weights)
    }
}

/// `grid_thw` (`[n_images, 3]` integers) read to the host and checked
/// (Python: `grid_thw.tolist()`): at least one image, every size
/// positive, rows and columns multiples of `spatial_merge_size`.
pub fn grid_thw_tolist(
    grid_thw: &Array,
    spatial_merge_size: i32,
    patch_size: i32,
) -> Result<Vec<[i32; 3]>> {
    let shape = grid_thw.shape();
    if shape.len() != 2 || shape[1] != 3 || !grid_thw.dtype().is_integer() {
        return Err(Error::InvalidArgument(format!(
            "image_grid_thw must be an integer array of shape [n_images, 3], got {:?} of {}",
            shape,
            grid_thw.dtype()
        )));
    }
    let values = grid_thw.to_vec_as::<i64>()?;
    let grid = values
        .chunks_exact(3)
        .map(|row| {
            let mut thw = [0i32; 3];
            for (out, &v) in thw.iter_mut().zip(row) {
                *out = i32::try_from(v).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "image_grid_thw row {row:?}: {v} does not fit in int32"
                    ))
                })?;
            }
            Ok(thw)
        })
        .collect::<Result<Vec<_>>>()?;
    check_grid(&grid, spatial_merge_size, patch_size)?;
    Ok(grid)
}

/// Checks a host grid as [`grid_thw_tolist`] does, and that
/// its patch count fits MLX's int32 shapes; returns that count.
pub fn check_grid(
    grid_thw: &[[i32; 3]],
    spatial_merge_size: i32,
    patch_size: i32,
) -> Result<i32> {
    if grid_thw.is_empty() {
        return Err(Error::InvalidArgument(
            "image_grid_thw has no rows; give one [t, h, w] row per image".into(),
        ));
    }
    let merge = spatial_merge_size;
    let mut total: i64 = 0;
    for (i, &[t, h, w]) in grid_thw.iter().enumerate() {
        if t <= 0 || h <= 0 || w <= 0 || h % merge != 0 || w % merge != 0 {
            return Err(Error::InvalidArgument(format!(
                "image_grid_thw row {i} is [{t}, {h}, {w}]: sizes must be positive and \
                 h, w multiples of spatial_merge_size {merge}; resize the image so that \
                 each side is a multiple of {} pixels",
                merge * patch_size
            )));
        }
        total += i64::from(t) * i64::from(h) * i64::from(w);
    }
    i32::try_from(total).map_err(|_| {
        Error::InvalidArgument(format!(
            "image_grid_thw {grid_thw:?} has {total} patches, more than int32 can index"
        ))
    })
}

/// The rotary angles of every patch, `[n_patches, head_dim / 2]`: the
/// first half from its row, the second from its column, patches ordered
/// merge group by merge group (Python: `VisionModel.rot_pos_emb`, the
/// same in Qwen2-VL's and Qwen2.5-VL's `vision.py`).
pub fn rot_pos_emb(
    rotary_pos_emb: &VisionRotaryEmbedding,
    grid_thw: &[[i32; 3]],
    spatial_merge_size: i32,
    patch_size: i32,
) -> Result<Array> {
    let n_patches = check_grid(grid_thw, spatial_merge_size, patch_size)?;
    let s = spatial_merge_size;
    let mut pos_ids: Vec<i32> = Vec::with_capacity(2 * n_patches as usize);
    for &[t, h, w] in grid_thw {
        // Python's reshape (h/s, s, w/s, s) and transpose (0, 2, 1, 3):
        // merge groups in row-major order, row-major within a group.
        for _ in 0..t {
            for bh in 0..h / s {
                for bw in 0..w / s {
                    for ih in 0..s {
                        for iw in 0..s {
                            pos_ids.extend([bh * s + ih, bw * s + iw]);
                        }
                    }
                }
            }
        }
    }
    let pos_ids = Array::from_slice(&pos_ids, &[n_patches, 2])?;
    let max_grid_size = grid_thw
        .iter()
        .flat_map(|&[_, h, w]| [h, w])
        .max()
        .unwrap_or(1);
    let rotary_pos_emb_full = rotary_pos_emb.forward(max_grid_size)?;
    let rotary_pos_emb = ops::take(&rotary_pos_emb_full, &pos_ids, 0)?;
    Ok(rotary_pos_emb.reshape(&[n_patches, -1])?)
}

/// The vision tower's `sanitize` (Python: `VisionModel.sanitize`, the same
/// in Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's `vision.py`): drops
/// `position_ids`, and moves a PyTorch patch-embedding weight `[out, in,
/// t, h, w]` to channels-last `[out, t, h, w, in]` unless
/// [`check_array_shape`] finds it converted already.
pub fn sanitize_vision_weights(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
    let mut sanitized_weights = HashMap::with_capacity(weights.len());
    for (k, v) in weights {
        if k.contains("position_ids") {
            continue;
        }
        if k.contains("patch_embed.proj.weight") && !check_array_shape(&v) {
            if v.ndim() != 5 {
                return Err(Error::Weights {
                    path: k,
                    message: format!(
                        "shape {:?}: the patch embedding is a 3-D convolution, its weight \
                         needs 5 axes ([out, in, t, h, w] or [out, t, h, w, in])",
                        v.shape()
                    ),
                });
            }
            let v = v.transpose(&[0, 2, 3, 4, 1][..])?;
            sanitized_weights.insert(k, v);
            continue;
        }
        sanitized_weights.insert(k, v);
    }
    Ok(sanitized_weights)
}

/// A 1-D int32 array of `values`.
fn host_array(values: &[i32]) -> Result<Array> {
    let len = i32::try_from(values.len()).map_err(|_| {
        Error::InvalidArgument(format!(
            "{} indices do not fit an int32 shape",
            values.len()
        ))
    })?;
    Ok(Array::from_slice(values, &[len])?)
}
