//! `mlx_vlm/models/kimi_vl/vision.py`: the MoonViT tower: each image's
//! patches (native resolution, packed one image after another) embedded by
//! a convolution plus a learned 2-D position embedding bicubically resized
//! to the image's patch grid, transformer blocks attending within their
//! image with a 2-D rotary embedding, a final norm, and the patch merger
//! gathering each `merge_kernel_size` window of patches into one token.
//!
//! `VisionRotaryEmbedding` and `apply_rotary_pos_emb_vision` (defined but
//! unused by Python's tower) are not ported.
//!
//! Divergences from Python:
//! - The 2-D RoPE is applied with real arithmetic on (even, odd) feature
//!   pairs, `(a c - b d, a d + b c)`, where Python multiplies complex64
//!   arrays (the same products).
//! - `Rope2DPosEmb.get_freqs_cis` computes the angles of the grid's
//!   positions only, not the whole 512x512 table first (the same values:
//!   positions are exact in float32).
//! - A grid outside `1..=512` patches per side, a grid whose sides are not
//!   multiples of the merge kernel, or patches that do not add up to the
//!   grids are typed errors (Python asserts or fails in a reshape).

use mlx_rs::nn::{Conv2d, ConvOptions, LayerNorm, Linear, Param, activations};
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::VisionConfig;
use crate::models::base::{AttentionMask, check_array_shape, scaled_dot_product_attention};
use crate::models::kernels::bicubic_interpolate;
use crate::{Error, Result};

/// Largest patch grid side of the 2-D RoPE (Python:
/// `Rope2DPosEmb(head_dim, 512, 512)`).
pub const ROPE_MAX_SIDE: i32 = 512;

/// Python: `make_block_attention_mask(cu_seqlens, seq_length)`: true where
/// query and key belong to the same image.
pub fn make_block_attention_mask(cu_seqlens: &Array, seq_length: i32) -> Result<Array> {
    let pos = ops::arange(0, seq_length, 1, None)?;
    let n = cu_seqlens.shape().first().copied().unwrap_or(0);
    let ends = ops::expand_dims(&cu_seqlens.index(idx![1..n])?, 1)?;
    let block_id = ops::sum(
        &ops::greater_equal(&ops::expand_dims(&pos, 0)?, &ends)?,
        0,
        false,
    )?;
    Ok(ops::equal(
        &ops::expand_dims(&block_id, 1)?,
        &ops::expand_dims(&block_id, 0)?,
    )?)
}


/// Python: `Learnable2DInterpPosEmb`: a learned `[height, width, dim]`
/// grid, bicubically resized to each image's patch grid.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Learnable2DInterpPosEmb {
    /// `[height, width, dim]`.
    pub weight: Param,
}

impl Learnable2DInterpPosEmb {
    /// Python: `Learnable2DInterpPosEmb(height, width, dim)`.
    pub fn new(height: i32, width: i32, dim: i32) -> Result<Self> {
        Ok(Learnable2DInterpPosEmb {
            weight: Param::new(ops::ones(&[height, width, dim], Dtype::Float32)?),
        })
    }

    /// Python: `_get_pos_emb(shape)`: `[h * w, dim]`.
    pub fn get_pos_emb(&self, (h, w): (i32, i32)) -> Result<Array> {
        let shape = self.weight.shape();
        if shape.len() == 3 && shape[0] == h && shape[1] == w {
            return Ok(self.weight.flatten(0, 1)?);
        }
        let grid = ops::expand_dims(&self.weight.transpose([2, 0, 1])?, 0)?;
        let resized = bicubic_interpolate(&grid, (h, w), false, false)?;
        Ok(resized.squeeze(0)?.transpose([1, 2, 0])?.flatten(0, 1)?)
    }

    /// Python: `__call__(x, grid_hws)`: `x` plus every image's embedding.
    pub fn forward(&self, x: &Array, grid_hws: &[(i32, i32)]) -> Result<Array> {
        let embs = grid_hws
            .iter()
            .map(|&s| self.get_pos_emb(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(ops::add(x, &ops::concatenate(&embs, 0)?.as_type(x.dtype())?)?)
    }
}

/// Python: `PatchEmbed`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct PatchEmbed {
    /// `patch_size` x `patch_size` convolution with stride `patch_size`.
    pub proj: Conv2d,
    /// The learned position embedding.
    pub pos_emb: Learnable2DInterpPosEmb,
}

impl PatchEmbed {
    /// Python: `PatchEmbed(patch_size, num_channels, embed_dim,
    /// init_pos_emb_height)` (a square position grid).
    pub fn new(
        patch_size: i32,
        num_channels: i32,
        embed_dim: i32,
        init_pos_emb_height: i32,
    ) -> Result<Self> {
        Ok(PatchEmbed {
            proj: Conv2d::new(
                num_channels,
                embed_dim,
                [patch_size; 2],
                ConvOptions {
                    stride: [patch_size; 2],
                    ..Default::default()
                },
            )?,
            pos_emb: Learnable2DInterpPosEmb::new(
                init_pos_emb_height,
                init_pos_emb_height,
                embed_dim,
            )?,
        })
    }

    /// Python: `PatchEmbed.__call__` on channels-last patches `[patches,
    /// p, p, channels]`: `[patches, embed_dim]`.
    pub fn forward(&self, hidden_states: &Array, grid_hws: &[(i32, i32)]) -> Result<Array> {
        let h = self.proj.forward(hidden_states)?.swapaxes(1, 3)?;
        let n = h.shape()[0];
        let h = h.reshape(&[n, -1])?;
        self.pos_emb.forward(&h, grid_hws)
    }
}

/// `(cos, sin)` of the 2-D rotary angles, each `[patches, head_dim / 2]`
/// (Python: `Rope2DPosEmb.get_freqs_cis`, complex there): feature pair `2i`
/// rotates by the patch's column times `theta_base ** (-4 i / dim)`, pair
/// `2i + 1` by its row times the same.
#[derive(Debug, Clone)]
pub struct FreqsCis {
    /// Real parts.
    pub cos: Array,
    /// Imaginary parts.
    pub sin: Array,
}

/// Python: `Rope2DPosEmb(dim, max_height, max_width, theta_base)`.
#[derive(Debug, Clone)]
pub struct Rope2DPosEmb {
    /// Features per head (a multiple of 4).
    pub dim: i32,
    /// Largest grid height.
    pub max_height: i32,
    /// Largest grid width.
    pub max_width: i32,
    /// RoPE base (10000).
    pub theta_base: f32,
}

impl Rope2DPosEmb {
    /// Python: `Rope2DPosEmb.get_freqs_cis(grid_hws)`.
    pub fn get_freqs_cis(&self, grid_hws: &[(i32, i32)]) -> Result<FreqsCis> {
        let dim_range = ops::arange(0, self.dim, 4, None)?
            .index(idx![..self.dim / 4])?
            .as_type(Dtype::Float32)?;
        let freqs = ops::divide(
            1.0f32,
            &ops::power(self.theta_base, &ops::divide(&dim_range, self.dim as f32)?)?,
        )?;
        let mut parts = Vec::with_capacity(grid_hws.len());
        for &(h, w) in grid_hws {
            if !(1..=self.max_height).contains(&h) || !(1..=self.max_width).contains(&w) {
                return Err(Error::InvalidArgument(format!(
                    "an image of {h}x{w} patches is outside the 2-D RoPE's 1..={}x1..={} \
                     patches; resize it smaller",
                    self.max_height, self.max_width
                )));
            }
            let x_pos = ops::tile(&ops::arange(0, w, 1, Some(Dtype::Float32))?, &[h])?;
            let y_pos = ops::repeat(&ops::arange(0, h, 1, Some(Dtype::Float32))?, w, 0)?;
            let x_freqs = ops::outer(&x_pos, &freqs)?;
            let y_freqs = ops::outer(&y_pos, &freqs)?;
            // [patches, dim / 4, 2] -> [patches, dim / 2], x before y.
            parts.push(ops::stack(&[x_freqs, y_freqs], -1)?.reshape(&[h * w, -1])?);
        }
        let angles = ops::concatenate(&parts, 0)?;
        Ok(FreqsCis {
            cos: ops::cos(&angles)?,
            sin: ops::sin(&angles)?,
        })
    }
}

/// Python: `apply_rope(q, k, freqs_cis)` for one of `q`, `k` (`[seq,
/// heads, head_dim]`): each (even, odd) feature pair rotated, in float32,
/// cast back.
pub fn apply_rope(x: &Array, freqs: &FreqsCis) -> Result<Array> {
    let shape = x.shape().to_vec();
    let [seq, heads, head_dim] = shape[..] else {
        return Err(Error::InvalidArgument(format!(
            "apply_rope takes [seq, heads, head_dim], got {shape:?}"
        )));
    };
    let pairs = x
        .as_type(Dtype::Float32)?
        .reshape(&[seq, heads, head_dim / 2, 2])?;
    let parts = ops::split(&pairs, 2, -1)?;
    let (a, b) = (parts[0].squeeze(-1)?, parts[1].squeeze(-1)?);
    let c = ops::expand_dims(&freqs.cos, 1)?;
    let d = ops::expand_dims(&freqs.sin, 1)?;
    let real = ops::subtract(&ops::multiply(&a, &c)?, &ops::multiply(&b, &d)?)?;
    let imag = ops::add(&ops::multiply(&a, &d)?, &ops::multiply(&b, &c)?)?;
    let out = ops::stack(&[real, imag], -1)?.reshape(&[seq, heads, head_dim])?;
    Ok(out.as_type(x.dtype())?)
}

/// Python: `Attention`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Attention {
    /// Heads.
    #[module(skip)]
    pub num_heads: i32,
    /// Features per head.
    #[module(skip)]
    pub head_dim: i32,
    /// `head_dim ** -0.5`.
    #[module(skip)]
    pub scale: f32,
    /// Queries, keys and values at once.
    pub wqkv: Linear,
    /// Output projection.
    pub wo: Linear,
}

impl Attention {
    /// Python: `Attention(dim, num_heads)`.
    pub fn new(dim: i32, num_heads: i32) -> Result<Self> {
        let head_dim = dim / num_heads;
        Ok(Attention {
            num_heads,
            head_dim,
            scale: (head_dim as f32).powf(-0.5),
            wqkv: Linear::new(dim, dim * 3, true)?,
            wo: Linear::new(dim, dim, true)?,
        })
    }

    /// Python: `Attention.__call__(x, rotary_pos_emb=..., attention_mask=...)`.
    pub fn forward(&self, x: &Array, freqs: &FreqsCis, attention_mask: &Array) -> Result<Array> {
        let seq = x.shape().first().copied().unwrap_or(0);
        let qkv = self
            .wqkv
            .forward(x)?
            .reshape(&[seq, 3, self.num_heads, self.head_dim])?
            .transpose([1, 0, 2, 3])?;
        let parts = ops::split(&qkv, 3, 0)?;
        let q = apply_rope(&parts[0].squeeze(0)?, freqs)?;
        let k = apply_rope(&parts[1].squeeze(0)?, freqs)?;
        let v = parts[2].squeeze(0)?;
        let heads_first = |a: &Array| -> Result<Array> {
            Ok(ops::expand_dims(&a.transpose([1, 0, 2])?, 0)?)
        };
        let out = scaled_dot_product_attention(
            &heads_first(&q)?,
            &heads_first(&k)?,
            &heads_first(&v)?,
            self.scale,
            &AttentionMask::Array(attention_mask.clone()),
            None,
        )?;
        let out = out.transpose([0, 2, 1, 3])?.reshape(&[seq, -1])?;
        Ok(self.wo.forward(&out)?)
    }
}

/// Python: `MLP`: `fc1(gelu(fc0(x)))` (exact GELU).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// `dim → hidden_dim`.
    pub fc0: Linear,
    /// `hidden_dim → dim`.
    pub fc1: Linear,
}

impl MLP {
    /// Python: `MLP(dim, hidden_dim)`.
    pub fn new(dim: i32, hidden_dim: i32) -> Result<Self> {
        Ok(MLP {
            fc0: Linear::new(dim, hidden_dim, true)?,
            fc1: Linear::new(hidden_dim, dim, true)?,
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let h = activations::gelu(&self.fc0.forward(x)?)?;
        Ok(self.fc1.forward(&h)?)
    }
}

/// Python: `Qwen2VLVisionBlock` (MoonViT's block keeps Python's name).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen2VLVisionBlock {
    /// Norm before attention.
    pub norm0: LayerNorm,
    /// Norm before the MLP.
    pub norm1: LayerNorm,
    /// Self-attention within each image.
    pub attn: Attention,
    /// The MLP.
    pub mlp: MLP,
}

impl Qwen2VLVisionBlock {
    /// Python: `Qwen2VLVisionBlock(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        Ok(Qwen2VLVisionBlock {
            norm0: LayerNorm::new(config.embed_dim, 1e-6, true, true)?,
            norm1: LayerNorm::new(config.embed_dim, 1e-6, true, true)?,
            attn: Attention::new(config.embed_dim, config.num_heads)?,
            mlp: MLP::new(config.embed_dim, config.intermediate_size)?,
        })
    }

    /// Python: `Qwen2VLVisionBlock.__call__`.
    pub fn forward(&self, x: &Array, freqs: &FreqsCis, attention_mask: &Array) -> Result<Array> {
        let h = ops::add(
            x,
            &self
                .attn
                .forward(&self.norm0.forward(x)?, freqs, attention_mask)?,
        )?;
        Ok(ops::add(&h, &self.mlp.forward(&self.norm1.forward(&h)?)?)?)
    }
}

/// Python: `patch_merger(x, grid_hws, merge_kernel_size)`: per image
/// `[tokens, kh * kw, dim]`, each token the kernel's patches in row order.
pub fn patch_merger(x: &Array, grid_hws: &[(i32, i32)], merge_kernel: [i32; 2]) -> Result<Vec<Array>> {
    let d_model = x.shape().last().copied().unwrap_or(0);
    let [kh, kw] = merge_kernel;
    let mut outputs = Vec::with_capacity(grid_hws.len());
    let mut start = 0;
    for &(h, w) in grid_hws {
        if h % kh != 0 || w % kw != 0 {
            return Err(Error::InvalidArgument(format!(
                "an image of {h}x{w} patches does not split into the {kh}x{kw} merge kernel; \
                 crop it to multiples of the kernel (Kimi-VL's processor does)"
            )));
        }
        let seq = x.index(idx![start..start + h * w])?;
        start += h * w;
        let (nh, nw) = (h / kh, w / kw);
        let merged = seq
            .reshape(&[nh, kh, nw, kw, d_model])?
            .transpose([0, 2, 1, 3, 4])?
            .reshape(&[nh * nw, kh * kw, -1])?;
        outputs.push(merged);
    }
    Ok(outputs)
}

/// Python: `VisionModel` (MoonViT).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionModel {
    /// The patches' merge kernel `[height, width]`.
    #[module(skip)]
    pub merge_kernel_size: [i32; 2],
    /// Patch and position embedding.
    pub patch_embed: PatchEmbed,
    /// The blocks.
    pub blocks: Vec<Qwen2VLVisionBlock>,
    /// Final norm.
    pub final_layernorm: LayerNorm,
    /// The 2-D RoPE.
    #[module(skip)]
    pub rope_pos_emb: Rope2DPosEmb,
}

impl VisionModel {
    /// Python: `VisionModel(config)`.
    pub fn new(config: &VisionConfig) -> Result<Self> {
        let head_dim = config.embed_dim / config.num_heads;
        Ok(VisionModel {
            merge_kernel_size: config.merge_kernel(),
            patch_embed: PatchEmbed::new(
                config.patch_size,
                config.num_channels,
                config.embed_dim,
                config.init_pos_emb_height,
            )?,
            blocks: (0..config.depth)
                .map(|_| Qwen2VLVisionBlock::new(config))
                .collect::<Result<Vec<_>>>()?,
            final_layernorm: LayerNorm::new(config.hidden_size, 1e-6, true, true)?,
            rope_pos_emb: Rope2DPosEmb {
                dim: head_dim,
                max_height: ROPE_MAX_SIDE,
                max_width: ROPE_MAX_SIDE,
                theta_base: 10000.0,
            },
        })
    }

    /// The embedded patches, their RoPE and the per-image attention mask
    /// (the first half of Python's `__call__`); checks that the patches
    /// add up to the grids.
    pub fn embed(
        &self,
        hidden_states: &Array,
        grid_hws: &[(i32, i32)],
    ) -> Result<(Array, FreqsCis, Array)> {
        let total: i64 = grid_hws.iter().map(|&(h, w)| i64::from(h) * i64::from(w)).sum();
        let patches = hidden_states.shape().first().copied().unwrap_or(0);
        if i64::from(patches) != total {
            return Err(Error::InvalidArgument(format!(
                "{patches} patches were given for image grids {grid_hws:?} ({total} patches); \
                 pass the processor's pixel_values with its image_grid_hws"
            )));
        }
        let h = self.patch_embed.forward(hidden_states, grid_hws)?;
        let freqs = self.rope_pos_emb.get_freqs_cis(grid_hws)?;
        let mut cu = vec![0i32];
        for &(gh, gw) in grid_hws {
            cu.push(cu[cu.len() - 1] + gh * gw);
        }
        let n = cu.len() as i32;
        let cu_seqlens = Array::from_slice(&cu, &[n])?;
        let mask = make_block_attention_mask(&cu_seqlens, h.shape()[0])?;
        Ok((h, freqs, mask))
    }

    /// Python: `VisionModel.__call__(pixel_values, grid_thw)` on
    /// channels-last patches `[patches, p, p, channels]`: each image's
    /// merged features `[tokens, kh * kw, hidden_size]`.
    pub fn forward(&self, hidden_states: &Array, grid_hws: &[(i32, i32)]) -> Result<Vec<Array>> {
        let (mut h, freqs, mask) = self.embed(hidden_states, grid_hws)?;
        for blk in &self.blocks {
            h = blk.forward(&h, &freqs, &mask)?;
        }
        let h = self.final_layernorm.forward(&h)?;
        patch_merger(&h, grid_hws, self.merge_kernel_size)
    }
}

/// Python: `VisionModel.sanitize`: `position_ids` dropped, the patch
/// convolution made channels-last unless it already is, and blocks' bare
/// `wqkv`/`wo` moved under `attn`.
pub fn sanitize(
    weights: std::collections::HashMap<String, Array>,
) -> Result<std::collections::HashMap<String, Array>> {
    let mut out = std::collections::HashMap::with_capacity(weights.len());
    for (k, v) in weights {
        if k.contains("position_ids") {
            continue;
        } else if k.contains("patch_embed.proj.weight") {
            let v = if check_array_shape(&v) {
                v
            } else {
                if v.ndim() != 4 {
                    return Err(Error::Weights {
                        path: k.clone(),
                        message: format!(
                            "{k} has shape {:?}; the patch convolution is 4-D",
                            v.shape()
                        ),
                    });
                }
                v.transpose([0, 2, 3, 1])?
            };
            out.insert(k, v);
        } else if k.contains("vision_tower.blocks") && !k.contains("attn") && (k.contains("wqkv") || k.contains("wo")) {
            out.insert(k.replace("wqkv", "attn.wqkv").replace("wo", "attn.wo"), v);
        } else {
            out.insert(k, v);
        }
    }
    Ok(out)
}
