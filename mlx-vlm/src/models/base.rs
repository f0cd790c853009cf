//! The parts of Python's `mlx_vlm/models/base.py` the models use: what
//! `get_input_embeddings` returns, the attention mask the language models
//! build and the attention they run.

use mlx_rs::Array;
use mlx_rs::fast::{self, AttentionOptions};

use crate::Result;
use crate::models::cache::{CachedKv, QuantizedArrays, create_causal_mask};

/// What a model's `get_input_embeddings` returns (Python:
/// `InputEmbeddingsFeatures`; the fields of the ported families).
#[derive(Debug, Clone)]
pub struct InputEmbeddingsFeatures {
    /// `[batch, seq, hidden]` token embeddings with the media features
    /// merged in.
    pub inputs_embeds: Array,
    /// mRoPE position ids `[3, batch, seq]`, for models that use them.
    pub position_ids: Option<Array>,
    /// `[batch, 1]` offset between mRoPE positions and token positions.
    pub rope_deltas: Option<Array>,
}

/// The mask a decoder layer's attention applies: Python passes `None`, the
/// string `"causal"` or an array through the same argument.
#[derive(Debug, Clone, Default)]
pub enum AttentionMask {
    /// Python's `None`: every query sees every key.
    #[default]
    None,
    /// Python's `"causal"`: each query sees the keys up to its own position,
    /// aligned so that the last query sees the last key.
    Causal,
    /// A boolean (true keeps a score) or additive mask broadcasting to
    /// `[batch, heads, queries, keys]`.
    Array(Array),
}

impl AttentionMask {
    /// A `[batch, 1, queries, keys]` array mask broadcast to `heads` query
    /// heads (any other mask as it is): what attention broadcasts it to in
    /// every layer, done once for all the layers that share it (the same
    /// values, one graph operation in all instead of one a layer).
    pub fn for_heads(self, heads: i32) -> Result<AttentionMask> {
        match self {
            AttentionMask::Array(m) if m.ndim() == 4 && m.shape()[1] == 1 => {
                let s = m.shape();
                let shape = [s[0], heads, s[2], s[3]];
                Ok(AttentionMask::Array(mlx_rs::ops::broadcast_to(&m, &shape)?))
            }
            other => Ok(other),
        }
    }

    /// The form `mlx_rs::fast::scaled_dot_product_attention` takes.
    pub fn as_attention_mask(&self) -> fast::AttentionMask<'_> {
        match self {
            AttentionMask::None => fast::AttentionMask::None,
            AttentionMask::Causal => fast::AttentionMask::Causal,
            AttentionMask::Array(mask) => fast::AttentionMask::Array(mask),
        }
    }
}

/// The mask for hidden states `h` `[batch, seq, hidden]` (Python:
/// `create_attention_mask`).
///
/// Python first asks a single cache for `make_mask`; the language models
/// pass their list of caches, which has none, so that branch is left out.
/// One token needs no mask; a window shorter than the sequence, or
/// `return_array`, gives the explicit boolean mask, else `"causal"`.
pub fn create_attention_mask(
    h: &Array,
    window_size: Option<i32>,
    return_array: bool,
) -> Result<AttentionMask> {
    let n = h.shape().get(1).copied().unwrap_or(1);
    if n == 1 {
        return Ok(AttentionMask::None);
    }
    if return_array || window_size.is_some_and(|w| n > w) {
        return Ok(AttentionMask::Array(create_causal_mask(
            n,
            0,
            window_size,
            None,
            None,
        )?));
    }
    Ok(AttentionMask::Causal)
}

/// `softmax(scale * q kᵀ + mask) v` over queries `[batch, heads, q_len,
/// head_dim]` and keys/values `[batch, kv_heads, kv_len, head_dim]`
/// (Python: `scaled_dot_product_attention`, the plain-cache path).
///
/// Python's quantized-cache branch is [`scaled_dot_product_attention_cached`];
/// its TurboQuant branch is not ported (refused by `GenerateParams::validate`).
pub fn scaled_dot_product_attention(
    queries: &Array,
    keys: &Array,
    values: &Array,
    scale: f32,
    mask: &AttentionMask,
    sinks: Option<&Array>,
) -> Result<Array> {
    let mut options = AttentionOptions::default().mask(mask.as_attention_mask());
    if let Some(sinks) = sinks {
        options = options.sinks(sinks);
    }
    Ok(fast::scaled_dot_product_attention(
        queries, keys, values, scale, options,
    )?)
}

/// Python's `mx.finfo(dtype).min` for the float dtypes attention runs in.
fn finfo_min(dtype: mlx_rs::Dtype) -> f64 {
    match dtype {
        mlx_rs::Dtype::Float16 => -65504.0,
        mlx_rs::Dtype::Bfloat16 => -3.3895313892515355e38,
        _ => f64::from(f32::MIN),
    }
}

/// Python: `align_attention_mask_to_scores`: size-1 axes inserted before
/// the last two until the mask has the scores' rank.
fn align_attention_mask_to_scores(mask: &Array, scores: &Array) -> Result<Array> {
    let mut mask = mask.clone();
    while mask.ndim() < scores.ndim() {
        let at = (mask.ndim() as i32 - 2).max(0);
        mask = mlx_rs::ops::expand_dims(&mask, &[at][..])?;
    }
    Ok(mask)
}

/// Python: `quantized_scaled_dot_product_attention`: attention over
/// quantized keys/values with `mx.quantized_matmul`.
pub fn quantized_scaled_dot_product_attention(
    queries: &Array,
    q_keys: &QuantizedArrays,
    q_values: &QuantizedArrays,
    scale: f32,
    mask: &AttentionMask,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    use mlx_rs::ops;
    let shape = queries.shape().to_vec();
    let [b, n_q_heads, l, d] = shape[..] else {
        return Err(crate::Error::InvalidArgument(format!(
            "quantized attention takes queries [batch, heads, len, head_dim], got {shape:?}"
        )));
    };
    let n_kv_heads = q_keys.data.shape().get(1).copied().unwrap_or(1).max(1);
    let n_repeats = n_q_heads / n_kv_heads;
    let mut queries = ops::multiply(
        queries,
        Array::scalar::<f32>(scale).as_type(queries.dtype())?,
    )?;
    let expand = |q: &QuantizedArrays| -> Result<QuantizedArrays> {
        Ok(QuantizedArrays {
            data: ops::expand_dims(&q.data, &[-3][..])?,
            scales: ops::expand_dims(&q.scales, &[-3][..])?,
            biases: ops::expand_dims(&q.biases, &[-3][..])?,
        })
    };
    let (q_keys, q_values) = if n_repeats > 1 {
        queries = queries.reshape(&[b, n_kv_heads, n_repeats, l, d])?;
        (expand(q_keys)?, expand(q_values)?)
    } else {
        (q_keys.clone(), q_values.clone())
    };
    let qmm = |x: &Array, q: &QuantizedArrays, transpose: bool| -> Result<Array> {
        Ok(ops::quantized_matmul(
            x,
            &q.data,
            &q.scales,
            Some(&q.biases),
            ops::QuantizedMatmulOptions {
                transpose,
                group_size: Some(group_size),
                bits: Some(bits),
                ..Default::default()
            },
        )?)
    };
    let mut scores = qmm(&queries, &q_keys, true)?;
    let mask = match mask {
        AttentionMask::None => None,
        AttentionMask::Causal => {
            let s = scores.shape();
            let (ql, kl) = (s[s.len() - 2], s[s.len() - 1]);
            let q_indices = ops::arange(kl - ql, kl, 1, None)?.reshape(&[-1, 1])?;
            let k_indices = ops::arange(0, kl, 1, None)?.reshape(&[1, -1])?;
            Some(ops::greater_equal(&q_indices, &k_indices)?)
        }
        AttentionMask::Array(m) => Some(m.clone()),
    };
    if let Some(mask) = mask {
        let mask = align_attention_mask_to_scores(&mask, &scores)?;
        if mask.dtype() == mlx_rs::Dtype::Bool {
            let min =
                Array::scalar::<f32>(finfo_min(scores.dtype()) as f32).as_type(scores.dtype())?;
            scores = ops::r#where(&mask, &scores, &min)?;
        } else {
            scores = ops::add(&scores, &mask)?;
        }
    }
    let scores = ops::softmax(&scores, -1, true)?;
    let mut out = qmm(&scores, &q_values, false)?;
    if n_repeats > 1 {
        out = out.reshape(&[b, n_q_heads, l, d])?;
    }
    Ok(out)
}

/// Python: `scaled_dot_product_attention(queries, keys, values, cache, ...)`:
/// the quantized path when the cache handed back quantized keys/values,
/// the plain one otherwise.
pub fn scaled_dot_product_attention_cached(
    queries: &Array,
    cached: &CachedKv,
    scale: f32,
    mask: &AttentionMask,
    sinks: Option<&Array>,
) -> Result<Array> {
    match cached {
        CachedKv::Plain(keys, values) => {
            scaled_dot_product_attention(queries, keys, values, scale, mask, sinks)
        }
        CachedKv::Quantized {
            keys,
            values,
            group_size,
            bits,
        } => {
            if sinks.is_some() {
                return Err(crate::Error::InvalidArgument(
                    "Quantized SDPA does not support attention sinks.".into(),
                ));
            }
            quantized_scaled_dot_product_attention(
                queries,
                keys,
                values,
                scale,
                mask,
                *group_size,
                *bits,
            )
        }
    }
}

/// Python: `kv_sequence_length(keys)`: the number of keys attention reads,
/// from what the cache's update returned (plain or quantized).
pub fn kv_sequence_length(cached: &CachedKv) -> i32 {
    let keys = match cached {
        CachedKv::Plain(keys, _) => keys,
        CachedKv::Quantized { keys, .. } => &keys.data,
    };
    let shape = keys.shape();
    shape.len().checked_sub(2).map_or(0, |at| shape[at])
}

/// Python: `check_array_shape`: whether a convolution weight is already in
/// MLX's channels-last layout: 4-D `[out, kh, kw, in]` with a square kernel
/// and `out` the largest, or 3-D `[_, kw, out]` with `kw >= out` (Python's
/// rule, as it is).
pub fn check_array_shape(arr: &Array) -> bool {
    match *arr.shape() {
        [out_channels, kh, kw, _] => out_channels >= kh && out_channels >= kw && kh == kw,
        [_, kw, out_channels] => kw >= out_channels,
        _ => false,
    }
}

/// The [`crate::Error::Config`] for `file` (shared by the families'
/// `config.rs`).
pub(crate) fn config_error(file: &str, message: String) -> crate::Error {
    crate::Error::Config {
        file: file.to_string(),
        message,
    }
}

/// A JSON int or list of ints, as `config.json` writes `eos_token_id`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// One int.
    One(i32),
    /// A list.
    Many(Vec<i32>),
}

impl OneOrMany {
    /// The ints as a list.
    pub(crate) fn into_vec(self) -> Vec<i32> {
        match self {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        }
    }
}
