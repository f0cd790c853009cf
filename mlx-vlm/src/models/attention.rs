//! `mlx_vlm/models/attention.py`: the multi-head attention of the vision
//! towers (`VisionAttention`, as `mlx.nn.MultiHeadAttention` with biases);
//! and [`HeadLayout`], how the language models' attentions split their
//! projections into heads and merge them back.

use mlx_rs::Array;
use mlx_rs::nn::Linear;

use crate::models::base::{AttentionMask, scaled_dot_product_attention};
use crate::{Error, Result};

/// Python: `VisionAttention`: queries, keys and values projected from the
/// input, attended per head, projected out.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct VisionAttention {
    /// Heads.
    #[module(skip)]
    pub num_heads: i32,
    /// `head_dim ** -0.5`.
    #[module(skip)]
    pub scale: f32,
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
}

impl VisionAttention {
    /// Python: `VisionAttention(dims, num_heads, bias=bias)` (the other
    /// widths equal to `dims`, as every ported tower uses it). Fails, as
    /// Python, when `dims` is not a multiple of `num_heads`.
    pub fn new(dims: i32, num_heads: i32, bias: bool) -> Result<Self> {
        if num_heads <= 0 || dims % num_heads != 0 {
            return Err(Error::InvalidArgument(format!(
                "The input feature dimensions should be divisible by the number of heads \
                 ({dims} % {num_heads}) != 0"
            )));
        }
        let head_dim = dims / num_heads;
        Ok(VisionAttention {
            num_heads,
            scale: (head_dim as f32).powf(-0.5),
            q_proj: Linear::new(dims, dims, bias)?,
            k_proj: Linear::new(dims, dims, bias)?,
            v_proj: Linear::new(dims, dims, bias)?,
            out_proj: Linear::new(dims, dims, bias)?,
        })
    }

    /// Python: `VisionAttention.__call__(x, mask)` over `[batch, len, dims]`.
    pub fn forward(&self, x: &Array, mask: &AttentionMask) -> Result<Array> {
        let queries = self.q_proj.forward(x)?;
        let keys = self.k_proj.forward(x)?;
        let values = self.v_proj.forward(x)?;
        let shape = queries.shape().to_vec();
        let [b, l, _] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "VisionAttention takes [batch, len, dims], got {shape:?}"
            )));
        };
        let s = keys.shape()[1];
        let heads = |a: &Array, len: i32| -> Result<Array> {
            Ok(a.reshape(&[b, len, self.num_heads, -1])?
                .transpose([0, 2, 1, 3])?)
        };
        let output = scaled_dot_product_attention(
            &heads(&queries, l)?,
            &heads(&keys, s)?,
            &heads(&values, s)?,
            self.scale,
            mask,
            None,
        )?;
        let output = output.transpose([0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok(self.out_proj.forward(&output)?)
    }
}

/// How a language model's attention input is laid out, to split its
/// projections into heads `[batch, heads, len, head_dim]` and merge the
/// attended heads back: `[batch, len, hidden]` (Python's layout), or
/// `[rows, hidden]` for one token a row (a batched decode step, a
/// Rust-only layout), or `[len, hidden]` for one request's tokens
/// ([`HeadLayout::one_request`], Rust-only too).
///
/// One token a row needs no sequence axis: its projections then multiply
/// matrices (a 3-D input adds a flatten and an unflatten to each product)
/// and each split or merge is one reshape instead of a reshape and a
/// transpose; the values are the same. One request's tokens as a matrix
/// save the projections' flattens and unflattens alike.
#[derive(Debug, Clone, Copy)]
pub struct HeadLayout {
    /// Rows (the batch).
    batch: i32,
    /// Tokens a row.
    len: i32,
    /// Whether the input is `[rows, hidden]`.
    token_rows: bool,
    /// Whether the input is `[len, hidden]`, one request's tokens.
    one_request: bool,
}

impl HeadLayout {
    /// The layout of `x`, `[batch, len, hidden]` or `[rows, hidden]`;
    /// `who` names the attention in the error for any other shape.
    pub fn of(x: &Array, who: &str) -> Result<Self> {
        match *x.shape() {
            [batch, len, _] => Ok(HeadLayout {
                batch,
                len,
                token_rows: false,
                one_request: false,
            }),
            [batch, _] => Ok(HeadLayout {
                batch,
                len: 1,
                token_rows: true,
                one_request: false,
            }),
            ref shape => Err(Error::InvalidArgument(format!(
                "{who} takes [batch, len, hidden] (or [rows, hidden], one token a row), got \
                 {shape:?}"
            ))),
        }
    }

    /// The layout of one request's `len` tokens as a `[len, hidden]`
    /// matrix (which [`HeadLayout::of`] would read as `len` rows of one
    /// token: the caller says which it is).
    pub fn one_request(len: i32) -> Self {
        HeadLayout {
            batch: 1,
            len,
            token_rows: false,
            one_request: true,
        }
    }

    /// A projection `a` split into `heads` heads `[batch, heads, len,
    /// head_dim]`.
    pub fn split(&self, a: &Array, heads: i32) -> Result<Array> {
        let (b, l) = (self.batch, self.len);
        if self.token_rows {
            return Ok(a.reshape(&[b, heads, 1, -1])?);
        }
        Ok(a.reshape(&[b, l, heads, -1])?.transpose([0, 2, 1, 3])?)
    }

    /// Attended heads `[batch, heads, len, head_dim]` merged back into the
    /// input's layout.
    pub fn merge(&self, a: &Array) -> Result<Array> {
        if self.token_rows {
            return Ok(a.reshape(&[self.batch, -1])?);
        }
        let a = a.transpose([0, 2, 1, 3])?;
        if self.one_request {
            return Ok(a.reshape(&[self.len, -1])?);
        }
        Ok(a.reshape(&[self.batch, self.len, -1])?)
    }
}
