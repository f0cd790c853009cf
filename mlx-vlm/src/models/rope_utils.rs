//! The parts of Python's `mlx_vlm/models/rope_utils.py` the ported
//! language models use: multimodal RoPE (mRoPE) in the "chunked" (Qwen2-VL,
//! Qwen2.5-VL) and "interleaved" (Qwen3-VL) layouts, always on the unfused
//! path; `initialize_rope` for its "default" and "linear" types (Gemma;
//! the other types, such as llama3 and yarn, are not ported yet and are a
//! typed error); and plain RoPE at a cache's position, per row for a
//! batched cache ([`rope_at_cache`]).
//!
//! Rust only: a batched decode step's RoPE angles built once for all the
//! layers that share a RoPE ([`RopeAngles`], [`AttentionAngles`],
//! [`DecodeStepShared`]) where Python's `nn.RoPE` rebuilds them in every
//! call; on the CPU, the only place they are used, they rotate bit for bit
//! as `mx.fast.rope` does.
//!
//! Python fuses the mRoPE application into a Metal kernel where Metal is
//! available; elsewhere (and here) it computes cos/sin in float32, casts them
//! to the activation dtype and rotates with plain ops, which is what the
//! goldens of this crate were produced with.

use std::cell::OnceCell;

use mlx_rs::fast::RopeOffset;
use mlx_rs::nn::RoPE;
use mlx_rs::transforms::Function;
use mlx_rs::{Array, Dtype, Index, idx, ops};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// How the rotary frequencies are laid out over the three position axes
/// (Python: the `style` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MRoPEStyle {
    /// Python's `"chunked"` (Qwen2-VL, Qwen2.5-VL): the first
    /// `mrope_section[0]` frequencies follow the temporal position, the next
    /// `mrope_section[1]` the height, the rest the width.
    #[default]
    Chunked,
    /// Python's `"interleaved"` (Qwen3-VL): frequency `i` follows the
    /// height when `i % 3 == 1` and `i < 3 * mrope_section[1]`, the width
    /// when `i % 3 == 2` and `i < 3 * mrope_section[2]`, else the time.
    Interleaved,
}

/// For each of the `freq_dim` frequencies, the position axis that drives
/// it in the interleaved layout (Python: `_interleaved_position_selector`).
fn interleaved_position_selector(mrope_section: &[i32], freq_dim: i32) -> Result<Array> {
    let mut selector = vec![0i32; usize::try_from(freq_dim.max(0)).unwrap_or(0)];
    for (dim, offset) in [(1usize, 1i32), (2, 2)] {
        let section = mrope_section.get(dim).copied().unwrap_or(0);
        let end = (section.saturating_mul(3)).min(freq_dim);
        let mut i = offset;
        while i < end {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| selector.get_mut(i)) {
                *slot = dim as i32;
            }
            i += 3;
        }
    }
    let n = selector.len() as i32;
    Ok(Array::from_vec_shaped(selector, &[n])?)
}

/// For each of the `freq_dim` frequencies, the position axis (0 = t, 1 = h,
/// 2 = w) that drives it (Python: `_chunked_position_selector`).
fn chunked_position_selector(mrope_section: &[i32], freq_dim: i32) -> Result<Array> {
    let mut selector = vec![0i32; usize::try_from(freq_dim.max(0)).unwrap_or(0)];
    let mut offset = mrope_section.first().copied().unwrap_or(0);
    for (dim, &length) in (1i32..).zip(mrope_section.iter().skip(1)) {
        for i in offset..(offset + length).min(freq_dim) {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| selector.get_mut(i)) {
                *slot = dim;
            }
        }
        offset += length;
    }
    let n = selector.len() as i32;
    Ok(Array::from_vec_shaped(selector, &[n])?)
}

/// Angles `[batch, seq, freq]` of `[3, batch, seq]` position ids, each
/// frequency taking its position from the axis `position_selector` names
/// (Python: `_selected_mrope_freqs`).
fn selected_mrope_freqs(
    position_ids: &Array,
    inv_freq: &Array,
    position_selector: &Array,
) -> Result<Array> {
    let positions = ops::take(position_ids, position_selector, 0)?.transpose([1, 2, 0])?;
    Ok(ops::multiply(
        &positions.as_type(Dtype::Float32)?,
        inv_freq,
    )?)
}

/// The per-frequency axis selector of `style` (Python:
/// `mrope_position_selector`).
pub fn mrope_position_selector(
    style: MRoPEStyle,
    mrope_section: &[i32],
    freq_dim: i32,
) -> Result<Array> {
    match style {
        MRoPEStyle::Chunked => chunked_position_selector(mrope_section, freq_dim),
        MRoPEStyle::Interleaved => interleaved_position_selector(mrope_section, freq_dim),
    }
}

/// The mRoPE sections of a config's `rope_scaling` (or `rope_parameters`),
/// or Python's default `(24, 20, 20)` (Python: `get_mrope_section`).
pub fn get_mrope_section(
    rope_scaling_section: Option<&[i32]>,
    rope_parameters_section: Option<&[i32]>,
) -> Vec<i32> {
    // Python's `or` skips empty lists as well as missing ones.
    rope_parameters_section
        .filter(|s| !s.is_empty())
        .or(rope_scaling_section.filter(|s| !s.is_empty()))
        .map_or_else(|| vec![24, 20, 20], <[i32]>::to_vec)
}

/// `1 / base^(2i / dim)` for `i < dim / 2`, in float32 (Python:
/// `compute_inv_freq`).
pub fn compute_inv_freq(dim: i32, base: f32) -> Result<Array> {
    let exponents = ops::divide(
        &ops::arange(0, dim, 2, None)?.as_type(Dtype::Float32)?,
        dim as f32,
    )?;
    Ok(ops::divide(1.0f32, &ops::power(base, &exponents)?)?)
}

/// Rotary angles `[batch, seq, dim / 2]` of position ids `[batch, seq]`
/// (text only: one position for every axis) or `[3, batch, seq]` (Python:
/// `compute_mrope_frequencies`).
pub fn compute_mrope_frequencies(
    position_ids: &Array,
    inv_freq: &Array,
    mrope_section: &[i32],
    style: MRoPEStyle,
    position_selector: Option<&Array>,
) -> Result<Array> {
    if position_ids.ndim() == 2 {
        let positions = ops::expand_dims(&position_ids.as_type(Dtype::Float32)?, -1)?;
        return Ok(ops::multiply(&positions, inv_freq)?);
    }
    let selector = match position_selector {
        Some(s) => s.clone(),
        None => {
            let freq_dim = inv_freq.shape().first().copied().unwrap_or(0);
            mrope_position_selector(style, mrope_section, freq_dim)?
        }
    };
    selected_mrope_freqs(position_ids, inv_freq, &selector)
}

/// The language-side rotary embedding of mRoPE models (Python:
/// `MRoPERotaryEmbedding`). It holds no parameters: Python keeps its arrays
/// in underscore attributes, which `parameters()` skips.
#[derive(Debug, Clone)]
pub struct MRoPERotaryEmbedding {
    /// Rotated features per head.
    pub dim: i32,
    /// `max_position_embeddings` (informational, as in Python).
    pub max_position_embeddings: i32,
    /// RoPE base (`rope_theta`).
    pub base: f32,
    /// Frequency layout.
    pub style: MRoPEStyle,
    /// Multiplies cos and sin (Python: `attention_scaling`).
    pub attention_scaling: f32,
    /// Whether cos/sin are cast to the activation dtype.
    pub cast_output: bool,
    inv_freq: Array,
    mrope_section: Vec<i32>,
    position_selector: Array,
}

impl MRoPERotaryEmbedding {
    /// Python: `MRoPERotaryEmbedding.__init__`, with `mrope_section`
    /// already resolved by [`get_mrope_section`].
    pub fn new(
        dim: i32,
        max_position_embeddings: i32,
        base: f32,
        mrope_section: Vec<i32>,
        attention_scaling: f32,
        cast_output: bool,
        style: MRoPEStyle,
    ) -> Result<Self> {
        if dim <= 0 || dim % 2 != 0 {
            return Err(Error::InvalidArgument(format!(
                "MRoPERotaryEmbedding: head dim {dim} must be positive and even"
            )));
        }
        let inv_freq = compute_inv_freq(dim, base)?;
        let position_selector = mrope_position_selector(style, &mrope_section, dim / 2)?;
        // Evaluated now: these are not parameters, so loading does not
        // evaluate them, and a lazy array can only be evaluated on the
        // thread whose stream built it; a model is shared across threads.
        mlx_rs::transforms::eval([&inv_freq, &position_selector])?;
        Ok(MRoPERotaryEmbedding {
            dim,
            max_position_embeddings,
            base,
            style,
            attention_scaling,
            cast_output,
            inv_freq,
            mrope_section,
            position_selector,
        })
    }

    /// Python: `MRoPERotaryEmbedding.mrope_section`.
    pub fn mrope_section(&self) -> &[i32] {
        &self.mrope_section
    }

    /// Python: `MRoPERotaryEmbedding.inv_freq`.
    pub fn inv_freq(&self) -> &Array {
        &self.inv_freq
    }

    /// Python: `MRoPERotaryEmbedding.position_selector`.
    pub fn position_selector(&self) -> &Array {
        &self.position_selector
    }

    /// `(cos, sin)`, each `[batch, seq, dim]`, of `position_ids`, in `x`'s
    /// dtype when `cast_output` (Python: `MRoPERotaryEmbedding.__call__`).
    pub fn forward(&self, x: &Array, position_ids: &Array) -> Result<(Array, Array)> {
        let freqs = compute_mrope_frequencies(
            position_ids,
            &self.inv_freq,
            &self.mrope_section,
            self.style,
            Some(&self.position_selector),
        )?;
        let emb = ops::concatenate(&[&freqs, &freqs], -1)?;
        let cos = ops::multiply(&ops::cos(&emb)?, self.attention_scaling)?;
        let sin = ops::multiply(&ops::sin(&emb)?, self.attention_scaling)?;
        if self.cast_output {
            return Ok((cos.as_type(x.dtype())?, sin.as_type(x.dtype())?));
        }
        Ok((cos, sin))
    }

    /// `q` and `k` rotated by the angles of `position_ids` (Python:
    /// `MRoPERotaryEmbedding.apply_rotary`, the unfused path).
    pub fn apply_rotary(
        &self,
        q: &Array,
        k: &Array,
        position_ids: &Array,
        unsqueeze_dim: i32,
        cast_output: bool,
    ) -> Result<(Array, Array)> {
        let (cos, sin) = self.forward(k, position_ids)?;
        apply_multimodal_rotary_pos_emb(
            q,
            k,
            &cos,
            &sin,
            Some(&self.mrope_section),
            unsqueeze_dim,
            self.style,
            cast_output,
        )
    }
}

/// `[-x2, x1]` of the halves `x1`, `x2` of the last axis (Python:
/// `rotate_half`).
pub fn rotate_half(x: &Array) -> Result<Array> {
    let half = x.shape().last().copied().unwrap_or(0) / 2;
    let x1 = x.index(idx![Index::Ellipsis, ..half])?;
    let x2 = x.index(idx![Index::Ellipsis, half..])?;
    Ok(ops::concatenate(&[ops::negative(&x2)?, x1], -1)?)
}

/// Rotates the first `cos.shape[-1]` features of `q` and `k`, passing the
/// rest through (Python: `_apply_rotary_embedding` with `rotate_half`).
fn apply_rotary_embedding(
    q: &Array,
    k: &Array,
    cos: &Array,
    sin: &Array,
    cast_output: bool,
    compute_dtype: Option<Dtype>,
) -> Result<(Array, Array)> {
    let rotary_dim = cos.shape().last().copied().unwrap_or(0);
    let rotate = |x: &Array| -> Result<(Array, Array)> {
        let mut x_rot = x.index(idx![Index::Ellipsis, ..rotary_dim])?;
        let x_pass = x.index(idx![Index::Ellipsis, rotary_dim..])?;
        if let Some(dtype) = compute_dtype {
            x_rot = x_rot.as_type(dtype)?;
        }
        let mut embed = ops::add(
            &ops::multiply(&x_rot, cos)?,
            &ops::multiply(&rotate_half(&x_rot)?, sin)?,
        )?;
        if cast_output {
            embed = embed.as_type(x.dtype())?;
        }
        Ok((embed, x_pass))
    };
    let (q_embed, q_pass) = rotate(q)?;
    let (k_embed, k_pass) = rotate(k)?;
    if q_pass.shape().last() == Some(&0) && k_pass.shape().last() == Some(&0) {
        return Ok((q_embed, k_embed));
    }
    Ok((
        ops::concatenate(&[q_embed, q_pass], -1)?,
        ops::concatenate(&[k_embed, k_pass], -1)?,
    ))
}

/// Rotates `q` and `k` `[batch, heads, seq, head_dim]` by precomputed
/// `cos`/`sin` `[batch, seq, dim]`, inserting the heads axis at
/// `unsqueeze_dim` (Python: `apply_multimodal_rotary_pos_emb`).
///
/// For the chunked style the frequency layout is already in `cos`/`sin`,
/// so `mrope_section` is unused, as in Python.
#[allow(clippy::too_many_arguments)]
pub fn apply_multimodal_rotary_pos_emb(
    q: &Array,
    k: &Array,
    cos: &Array,
    sin: &Array,
    _mrope_section: Option<&[i32]>,
    unsqueeze_dim: i32,
    style: MRoPEStyle,
    cast_output: bool,
) -> Result<(Array, Array)> {
    match style {
        // Python's interleaved fast path (`_apply_interleaved_rotary_pos_emb_axis1`)
        // is the same arithmetic: the layout is already in cos/sin.
        MRoPEStyle::Chunked | MRoPEStyle::Interleaved => {
            let cos = ops::expand_dims(cos, unsqueeze_dim)?;
            let sin = ops::expand_dims(sin, unsqueeze_dim)?;
            apply_rotary_embedding(q, k, &cos, &sin, cast_output, None)
        }
    }
}

/// Python: `initialize_rope(dims, base, traditional, scaling_config, ...)`
/// on its "fast" path: `nn.RoPE` with scale 1, or `1 / factor` for a
/// "linear" `scaling_config` (`type`, else `rope_type`).
pub fn initialize_rope(
    dims: i32,
    base: f32,
    traditional: bool,
    scaling_config: Option<&Map<String, Value>>,
) -> Result<RoPE> {
    let rope_type = scaling_config
        .and_then(|c| c.get("type").or_else(|| c.get("rope_type")))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let scale = match rope_type {
        "default" => 1.0,
        "linear" => {
            let factor = scaling_config
                .and_then(|c| c.get("factor"))
                .and_then(Value::as_f64)
                .filter(|f| *f > 0.0)
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "rope_scaling of type linear needs a positive factor".into(),
                    )
                })?;
            (1.0 / factor) as f32
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "rope_scaling type {other:?} is not supported yet (default, linear)"
            )));
        }
    };
    Ok(RoPE::new(dims, traditional, base, scale))
}

/// Where a cache holds its tokens, as [`mlx_rs::fast::rope`]'s offset
/// (Python: `cache.offset`): each row's own count for a batched cache
/// ([`crate::models::cache::Cache::row_offsets`], one offset a row), else
/// [`crate::models::cache::Cache::offset`].
#[derive(Debug, Clone)]
pub enum CachePosition {
    /// One token count per row of a batched cache, `[rows]`.
    Rows(Array),
    /// One count for every row.
    Scalar(i32),
}

impl CachePosition {
    /// `cache`'s position; `None` (no cache) is position 0.
    pub fn of(cache: Option<&dyn crate::models::cache::Cache>) -> Result<Self> {
        Ok(match cache.map(|c| (c.row_offsets(), c.offset())) {
            Some((Some(rows), _)) => {
                CachePosition::Rows(Array::from_slice(&rows, &[rows.len() as i32])?)
            }
            Some((None, offset)) => CachePosition::Scalar(offset),
            None => CachePosition::Scalar(0),
        })
    }

    /// The offset argument of [`mlx_rs::fast::rope`] and
    /// [`RoPE::forward`].
    pub fn offset(&self) -> RopeOffset<'_> {
        match self {
            CachePosition::Rows(rows) => RopeOffset::Array(rows),
            CachePosition::Scalar(offset) => RopeOffset::Int(*offset),
        }
    }
}

/// `queries` and `keys` `[batch, heads, seq, head_dim]` rotated by `rope`
/// from where `cache` holds its tokens (Python: `rope(x,
/// offset=cache.offset)`): each row from its own count for a batched
/// cache, else from the cache's offset ([`CachePosition`]).
pub fn rope_at_cache(
    rope: &RoPE,
    queries: &Array,
    keys: &Array,
    cache: &dyn crate::models::cache::Cache,
) -> Result<(Array, Array)> {
    let position = CachePosition::of(Some(cache))?;
    Ok((
        rope.forward(queries, position.offset())?,
        rope.forward(keys, position.offset())?,
    ))
}

/// `x` `[batch, heads, seq, head_dim]` rotated by `rope` from where
/// `cache` holds its tokens ([`rope_at_cache`] for one array).
pub fn rope_from_cache(
    rope: &RoPE,
    x: &Array,
    cache: &dyn crate::models::cache::Cache,
) -> Result<Array> {
    Ok(rope.forward(x, CachePosition::of(Some(cache))?.offset())?)
}

/// A RoPE's cosines and sines at a batch's positions, built once for a
/// decode step and applied to the queries and keys of every layer that
/// uses the same RoPE (a Rust-only saving: Python's `nn.RoPE` rebuilds
/// them in each call).
///
/// Only where [`mlx_rs::fast::rope`] itself runs MLX's unfused fallback
/// (the CPU, and only non-traditional rotations): [`RopeAngles::at`] builds
/// the fallback's operations in its order, so the rotated values are bit
/// for bit `fast::rope`'s (`rope_angles_match_fast_rope` checks it against
/// the linked MLX). Elsewhere the fused kernel is one operation and
/// [`RopeAngles::at`] gives `None`.
#[derive(Debug, Clone)]
pub struct RopeAngles {
    /// `cos(θ)` in the activations' dtype, broadcasting to the rotated half.
    cos: Array,
    /// `sin(θ)`, as `cos`.
    sin: Array,
    /// The feature dimensions rotated.
    dims: i32,
}

impl RopeAngles {
    /// The angles of `rope` for `len` tokens per row from `offsets` (one
    /// per row, `[rows]`, as [`CachePosition::Rows`] holds them), cast to
    /// `dtype`; `None` when `fast::rope` would not take its unfused path
    /// (a non-CPU stream, or a traditional rotation), where sharing saves
    /// nothing.
    pub fn at(rope: &RoPE, offsets: &Array, len: i32, dtype: Dtype) -> Result<Option<Self>> {
        let device = mlx_rs::Stream::current()?.device()?.device_type()?;
        if rope.traditional || device != mlx_rs::DeviceType::Cpu || rope.dims % 2 != 0 {
            return Ok(None);
        }
        // MLX's `fast::rope` fallback, step by step (mlx/fast.cpp).
        let half = rope.dims / 2;
        let offsets = if offsets.size() > 1 {
            ops::expand_dims(offsets, [-1, -2])?
        } else {
            offsets.clone()
        };
        let positions = ops::multiply(
            &ops::add(&ops::arange(0, len, 1, Some(Dtype::Float32))?, &offsets)?,
            Array::scalar::<f32>(rope.scale),
        )?;
        let inv_freqs = ops::exp(&ops::multiply(
            &ops::arange(0, -half, -1, Some(Dtype::Float32))?,
            Array::scalar::<f32>(rope.base.ln() / half as f32),
        )?)?;
        let theta = ops::multiply(&ops::expand_dims(&positions, [-1])?, &inv_freqs)?;
        Ok(Some(RopeAngles {
            cos: ops::cos(&theta)?.as_type(dtype)?,
            sin: ops::sin(&theta)?.as_type(dtype)?,
            dims: rope.dims,
        }))
    }

    /// The same angles broadcast to `heads` heads of `rows` rows and `len`
    /// tokens, so that the layers' rotations multiply equal shapes instead
    /// of each broadcasting them again.
    pub fn for_heads(&self, rows: i32, heads: i32, len: i32) -> Result<Self> {
        let shape = [rows, heads, len, self.dims / 2];
        Ok(RopeAngles {
            cos: ops::broadcast_to(&self.cos, &shape)?,
            sin: ops::broadcast_to(&self.sin, &shape)?,
            dims: self.dims,
        })
    }

    /// `x` `[batch, heads, len, head_dim]` rotated (`fast::rope` at the
    /// offsets these angles were built from).
    pub fn apply(&self, x: &Array) -> Result<Array> {
        let shape = x.shape().to_vec();
        let [b, n, t, d] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "RopeAngles::apply takes [batch, heads, len, head_dim], got {shape:?}"
            )));
        };
        let half = self.dims / 2;
        let x1 = ops::slice(x, &[0, 0, 0, 0], &[b, n, t, half], None)?;
        let x2 = ops::slice(x, &[0, 0, 0, half], &[b, n, t, self.dims], None)?;
        thread_local! {
            static ROTATE: OnceCell<Function> = const { OnceCell::new() };
        }
        let mut outs = ROTATE.with(|cell| {
            Function::compiled_in(cell, rotate_halves, true)?.apply(&[
                x1,
                x2,
                self.cos.clone(),
                self.sin.clone(),
            ])
        })?;
        if self.dims < d {
            outs.push(ops::slice(x, &[0, 0, 0, self.dims], &shape, None)?);
        }
        Ok(ops::concatenate(&outs, -1)?)
    }
}

/// The fallback's rotation of the halves `x1`, `x2` by `cos` and `sin`:
/// `[x1 cos - x2 sin, x1 sin + x2 cos]`. [`RopeAngles::apply`] runs it
/// compiled, so MLX fuses the four products and two sums into two
/// kernels (the same float operations: `rope_angles_match_fast_rope`
/// checks the values bit for bit): four graph nodes fewer a rotation.
fn rotate_halves(args: &[Array]) -> mlx_rs::Result<Vec<Array>> {
    let [x1, x2, cos, sin] = args else {
        return Err(mlx_rs::Error::invalid(format!(
            "rotate_halves takes x1, x2, cos and sin, got {} arrays",
            args.len()
        )));
    };
    Ok(vec![
        ops::subtract(ops::multiply(x1, cos)?, ops::multiply(x2, sin)?)?,
        ops::add(ops::multiply(x1, sin)?, ops::multiply(x2, cos)?)?,
    ])
}

/// A decode step's [`RopeAngles`] for an attention's queries and keys, each
/// broadcast to its head count once for all the layers sharing the RoPE.
#[derive(Debug, Clone)]
pub struct AttentionAngles {
    /// The queries' angles `[rows, heads, len, dims / 2]`.
    queries: RopeAngles,
    /// The keys' angles `[rows, kv_heads, len, dims / 2]`.
    keys: RopeAngles,
    /// The activations' dtype the angles were cast to.
    dtype: Dtype,
}

impl AttentionAngles {
    /// The angles of `rope` for `len` new tokens a row at `cache`'s
    /// per-row positions ([`crate::models::cache::Cache::row_offsets`]),
    /// for `heads` (the query and the key heads) in `dtype`; `None` for a
    /// cache without per-row positions (or rows) or where
    /// [`RopeAngles::at`] is.
    pub fn at(
        rope: &RoPE,
        cache: &dyn crate::models::cache::Cache,
        heads: [i32; 2],
        len: i32,
        dtype: Dtype,
    ) -> Result<Option<Self>> {
        let Some(rows) = cache.row_offsets().filter(|rows| !rows.is_empty()) else {
            return Ok(None);
        };
        Self::at_rows(rope, &rows, heads, len, dtype)
    }

    /// The angles of `rope` for one request's `len` new tokens from
    /// `cache`'s offset (a single request's cache, which keeps no per-row
    /// positions), built once for every layer of a kind whose caches hold
    /// as many tokens (a prefill, or a one-request decode step); `None`
    /// where [`RopeAngles::at`] is.
    pub fn at_offset(
        rope: &RoPE,
        cache: &dyn crate::models::cache::Cache,
        heads: [i32; 2],
        len: i32,
        dtype: Dtype,
    ) -> Result<Option<Self>> {
        Self::at_rows(rope, &[cache.offset()], heads, len, dtype)
    }

    /// The angles for `len` new tokens a row at each row's offset in
    /// `rows`.
    fn at_rows(
        rope: &RoPE,
        rows: &[i32],
        [heads, kv_heads]: [i32; 2],
        len: i32,
        dtype: Dtype,
    ) -> Result<Option<Self>> {
        let n = rows.len() as i32;
        let offsets = Array::from_slice(rows, &[n])?;
        let Some(angles) = RopeAngles::at(rope, &offsets, len, dtype)? else {
            return Ok(None);
        };
        Ok(Some(AttentionAngles {
            queries: angles.for_heads(n, heads, len)?,
            keys: angles.for_heads(n, kv_heads, len)?,
            dtype,
        }))
    }

    /// `queries` and `keys` rotated ([`rope_at_cache`] on the cache these
    /// angles were built from), or `None` when their dtype or shape is not
    /// the one the angles were built for (then the caller rotates them
    /// itself).
    pub fn apply(&self, queries: &Array, keys: &Array) -> Result<Option<(Array, Array)>> {
        let fits = |x: &Array, a: &RopeAngles| {
            let (s, c) = (x.shape(), a.cos.shape());
            x.dtype() == self.dtype && s.len() == 4 && s[..3] == c[..3] && s[3] >= a.dims
        };
        if !fits(queries, &self.queries) || !fits(keys, &self.keys) {
            return Ok(None);
        }
        Ok(Some((self.queries.apply(queries)?, self.keys.apply(keys)?)))
    }
}

/// `queries` and `keys` rotated by a decode step's `angles` where given and
/// fitting ([`AttentionAngles::apply`]), else by `rope` from where `cache`
/// holds its tokens ([`rope_at_cache`]): the same values either way.
pub fn rope_at(
    rope: &RoPE,
    queries: &Array,
    keys: &Array,
    cache: &dyn crate::models::cache::Cache,
    angles: Option<&AttentionAngles>,
) -> Result<(Array, Array)> {
    if let Some(angles) = angles
        && let Some(rotated) = angles.apply(queries, keys)?
    {
        return Ok(rotated);
    }
    rope_at_cache(rope, queries, keys, cache)
}

/// A batched decode step of a decoder whose layers all attend alike (one
/// RoPE, one head count), ready for its layers: the hidden states
/// `[rows, hidden]` (see [`crate::models::attention::HeadLayout`]), the
/// step's mask broadcast to the query heads
/// ([`crate::models::base::AttentionMask::for_heads`]), the RoPE angles at
/// the first cache's per-row positions ([`AttentionAngles::at`]) and the
/// layers' caches.
pub struct DecodeStepShared<'c> {
    /// The hidden states, `[rows, hidden]`.
    pub h: Array,
    /// The mask every layer applies.
    pub mask: crate::models::base::AttentionMask,
    /// The angles every layer rotates with, where they can be shared.
    pub angles: Option<AttentionAngles>,
    /// One cache a layer.
    pub caches: Vec<&'c mut dyn crate::models::cache::Cache>,
}

impl<'c> DecodeStepShared<'c> {
    /// From what [`crate::models::batch_layer_cache::decode_step`] hands
    /// its `run`: `h` `[rows, 1, hidden]`, the step's `mask` and the
    /// caches; `rope` is the layers' RoPE with their query and key/value
    /// head counts (`None`: a decoder without layers, nothing shared).
    pub fn new(
        h: Array,
        mask: &crate::models::base::AttentionMask,
        caches: &mut dyn Iterator<Item = &'c mut dyn crate::models::cache::Cache>,
        rope: Option<(&RoPE, [i32; 2])>,
    ) -> Result<Self> {
        let caches: Vec<_> = caches.collect();
        let (mask, angles) = match (rope, caches.first()) {
            (Some((rope, heads)), Some(first)) => (
                mask.clone().for_heads(heads[0])?,
                AttentionAngles::at(rope, &**first, heads, 1, h.dtype())?,
            ),
            _ => (mask.clone(), None),
        };
        let rows = h.shape().first().copied().unwrap_or(0);
        Ok(DecodeStepShared {
            h: h.reshape(&[rows, -1])?,
            mask,
            angles,
            caches,
        })
    }
}
