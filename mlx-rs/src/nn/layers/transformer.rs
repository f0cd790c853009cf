//! `mlx/nn/layers/transformer.py` (MultiHeadAttention so far).

use crate::fast::{self, AttentionMask, AttentionOptions};
use crate::nn::Linear;
use crate::ops;
use crate::{Array, Dtype, Error, Result};

/// Scaled dot-product attention over several heads, with linear
/// projections of the queries, keys, values and output
/// (`nn.MultiHeadAttention`). The projections are [`Linear`] layers under
/// Python's keys `query_proj`, `key_proj`, `value_proj` and `out_proj`.
#[derive(Debug, Clone, crate::Module)]
pub struct MultiHeadAttention {
    /// The number of attention heads.
    pub num_heads: i32,
    /// `query_input_dims -> dims`.
    pub query_proj: Linear,
    /// `key_input_dims -> dims`.
    pub key_proj: Linear,
    /// `value_input_dims -> value_dims`.
    pub value_proj: Linear,
    /// `value_dims -> value_output_dims`.
    pub out_proj: Linear,
}

/// Options of [`MultiHeadAttention::new`], with Python's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiHeadAttentionOptions {
    /// The input dimensions of the queries (`None`: `dims`).
    pub query_input_dims: Option<i32>,
    /// The input dimensions of the keys (`None`: `dims`).
    pub key_input_dims: Option<i32>,
    /// The input dimensions of the values (`None`: the keys').
    pub value_input_dims: Option<i32>,
    /// The dimensions of the projected values (`None`: `dims`).
    pub value_dims: Option<i32>,
    /// The dimensions of the output (`None`: `dims`).
    pub value_output_dims: Option<i32>,
    /// Whether the projections have a bias (`false`).
    pub bias: bool,
}

impl MultiHeadAttention {
    /// `nn.MultiHeadAttention(dims, num_heads, ...)` with Python's
    /// initialisation of the projections. `num_heads` must be positive and
    /// divide `dims` (as Python checks) and `value_dims` (which Python finds
    /// only when called).
    pub fn new(
        dims: i32,
        num_heads: i32,
        options: MultiHeadAttentionOptions,
    ) -> Result<MultiHeadAttention> {
        let value_dims = options.value_dims.unwrap_or(dims);
        if num_heads <= 0 {
            return Err(Error::invalid(format!(
                "[MultiHeadAttention] the number of heads must be positive, got {num_heads}"
            )));
        }
        if dims % num_heads != 0 || value_dims % num_heads != 0 {
            return Err(Error::invalid(format!(
                "[MultiHeadAttention] The input feature dimensions should be divisible by the \
                 number of heads ({dims} % {num_heads}) != 0 or ({value_dims} % {num_heads}) != 0"
            )));
        }
        let query_input_dims = options.query_input_dims.unwrap_or(dims);
        let key_input_dims = options.key_input_dims.unwrap_or(dims);
        let value_input_dims = options.value_input_dims.unwrap_or(key_input_dims);
        let value_output_dims = options.value_output_dims.unwrap_or(dims);
        let bias = options.bias;
        Ok(MultiHeadAttention {
            num_heads,
            query_proj: Linear::new(query_input_dims, dims, bias)?,
            key_proj: Linear::new(key_input_dims, dims, bias)?,
            value_proj: Linear::new(value_input_dims, value_dims, bias)?,
            out_proj: Linear::new(value_dims, value_output_dims, bias)?,
        })
    }

    /// `MultiHeadAttention.__call__(queries, keys, values, mask)`: inputs
    /// shaped `(B, L, *_input_dims)`; `mask` is Python's `None`, an
    /// additive or boolean array broadcasting to `(B, num_heads, L_q, L_k)`,
    /// or `"causal"` ([`AttentionMask::Causal`]).
    pub fn forward<'a>(
        &self,
        queries: &Array,
        keys: &Array,
        values: &Array,
        mask: impl Into<AttentionMask<'a>>,
    ) -> Result<Array> {
        let split = |x: &Array| -> Result<Array> {
            ops::unflatten(x, -1, &[self.num_heads, -1])?.transpose([0, 2, 1, 3])
        };
        let queries = split(&self.query_proj.forward(queries)?)?;
        let keys = split(&self.key_proj.forward(keys)?)?;
        let values = split(&self.value_proj.forward(values)?)?;
        let head_dim = queries.dim(-1)?;
        let scale = (1.0 / f64::from(head_dim)).sqrt() as f32;
        let output = fast::scaled_dot_product_attention(
            &queries,
            &keys,
            &values,
            scale,
            AttentionOptions::default().mask(mask),
        )?;
        let output = output.transpose([0, 2, 1, 3])?.flatten(-2, -1)?;
        self.out_proj.forward(&output)
    }

    /// `MultiHeadAttention.create_additive_causal_mask(N, dtype)`: `(N, N)`,
    /// 0 where a query may see a key and the dtype's lowest finite value
    /// above the diagonal. `dtype` must be a floating point type.
    pub fn create_additive_causal_mask(n: i32, dtype: Dtype) -> Result<Array> {
        let min = match dtype {
            Dtype::Float16 => f64::from(half::f16::MIN),
            Dtype::Bfloat16 => f64::from(half::bf16::MIN),
            Dtype::Float32 => f64::from(f32::MIN),
            Dtype::Float64 => f64::MIN,
            other => {
                return Err(Error::invalid(format!(
                    "[MultiHeadAttention] the causal mask needs a floating point dtype, got {other}"
                )));
            }
        };
        let indices = ops::arange(0, n, 1, None)?;
        let mask = ops::less(
            &ops::expand_dims(&indices, 1)?,
            &ops::expand_dims(&indices, 0)?,
        )?;
        ops::multiply(&mask.as_type(dtype)?, min)
    }
}
