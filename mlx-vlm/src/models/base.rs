//! The parts of Python's `mlx_vlm/models/base.py` the models use: what
//! `get_input_embeddings` returns, the attention mask the language models
//! build and the attention they run.

use mlx_rs::Array;
use mlx_rs::fast::{self, AttentionOptions};

use crate::Result;
use crate::models::cache::create_causal_mask;

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
/// Python's quantized and TurboQuant cache branches are not ported: the
/// caches of this crate hand back plain arrays.
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
