//! `mlx/nn/layers/positional_encoding.py`: RoPE, SinusoidalPositionalEncoding
//! and ALiBi.

use crate::fast::{self, RopeOffset};
use crate::ops;
use crate::{Array, Dtype, Error, Result};

/// Rotary positional encoding (`nn.RoPE`): [`fast::rope`] with the layer's
/// settings. It has no parameters.
#[derive(Debug, Clone, crate::Module)]
pub struct RoPE {
    /// The feature dimensions rotated; the rest are left unchanged.
    pub dims: i32,
    /// Rotate consecutive pairs (the traditional form) rather than pairs
    /// half the feature dimensions apart.
    pub traditional: bool,
    /// The base of the angular frequencies.
    pub base: f32,
    /// The scale applied to the positions.
    pub scale: f32,
}

impl RoPE {
    /// `nn.RoPE(dims, traditional, base, scale)`; Python's defaults are
    /// `traditional = false, base = 10000, scale = 1.0`.
    pub fn new(dims: i32, traditional: bool, base: f32, scale: f32) -> RoPE {
        RoPE {
            dims,
            traditional,
            base,
            scale,
        }
    }

    /// `RoPE.__call__(x, offset)`: `x` shaped `(B, *, T, D)`, positions
    /// starting at `offset` (an integer, or an array as [`fast::rope`]
    /// takes).
    pub fn forward<'a>(&self, x: &Array, offset: impl Into<RopeOffset<'a>>) -> Result<Array> {
        fast::rope(
            x,
            self.dims,
            self.traditional,
            Some(self.base),
            self.scale,
            offset,
            None,
        )
    }
}

impl crate::nn::UnaryLayer for RoPE {
    /// `rope(x)`, offset 0.
    fn forward(&self, x: &Array) -> Result<Array> {
        RoPE::forward(self, x, 0)
    }
}

/// Sinusoidal positional encoding (`nn.SinusoidalPositionalEncoding`):
/// each value becomes `dims` features, `[sin(x σ); cos(x σ)] * scale` over
/// `dims / 2` frequencies σ spaced geometrically from `max_freq` down to
/// `min_freq`. It has no parameters (Python's `_sigmas` is private).
#[derive(Debug, Clone, crate::Module)]
pub struct SinusoidalPositionalEncoding {
    /// The `dims / 2` frequencies (Python's `_sigmas`).
    #[module(skip)]
    pub sigmas: Array,
    /// Multiplies the embeddings (applied unless it is 1).
    pub scale: f32,
    /// Embed as `[cos; sin]` rather than `[sin; cos]`.
    pub cos_first: bool,
}

/// Options of [`SinusoidalPositionalEncoding::new`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct SinusoidalOptions {
    /// The lowest frequency (`0.0001`).
    pub min_freq: f64,
    /// The highest frequency (`1`).
    pub max_freq: f64,
    /// The scale of the embeddings (`None`: `sqrt(2 / dims)`).
    pub scale: Option<f64>,
    /// Embed as `[cos; sin]` (`false`).
    pub cos_first: bool,
    /// Multiply the frequencies by `2π` (`false`).
    pub full_turns: bool,
}

impl Default for SinusoidalOptions {
    fn default() -> Self {
        SinusoidalOptions {
            min_freq: 0.0001,
            max_freq: 1.0,
            scale: None,
            cos_first: false,
            full_turns: false,
        }
    }
}

impl SinusoidalPositionalEncoding {
    /// `nn.SinusoidalPositionalEncoding(dims, min_freq, max_freq, scale,
    /// cos_first, full_turns)`. `dims` must be positive and even.
    pub fn new(dims: i32, options: SinusoidalOptions) -> Result<SinusoidalPositionalEncoding> {
        if dims <= 0 || dims % 2 != 0 {
            return Err(Error::invalid(format!(
                "[SinusoidalPositionalEncoding] dims must be positive and even but got {dims}."
            )));
        }
        let half = dims / 2;
        let one_zero = if dims == 2 {
            Array::from_slice(&[1.0f32], &[1])?
        } else {
            let steps = ops::divide(&ops::arange(0, half, 1, None)?, half - 1)?;
            ops::subtract(1, &steps)?
        };
        let min_freq = options.min_freq.ln();
        let max_freq = options.max_freq.ln();
        let mut sigmas = ops::exp(&ops::add(
            &ops::multiply(&one_zero, max_freq - min_freq)?,
            min_freq,
        )?)?;
        if options.full_turns {
            sigmas = ops::multiply(&sigmas, 2.0 * std::f64::consts::PI)?;
        }
        let scale = options
            .scale
            .unwrap_or_else(|| (2.0 / f64::from(dims)).powf(0.5));
        Ok(SinusoidalPositionalEncoding {
            sigmas,
            scale: scale as f32,
            cos_first: options.cos_first,
        })
    }

    /// `SinusoidalPositionalEncoding.__call__`: `x` of any shape gives
    /// `(*x.shape, dims)`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let y = ops::multiply(&ops::expand_dims(x, -1)?, &self.sigmas)?;
        let cosy = ops::cos(&y)?;
        let siny = ops::sin(&y)?;
        let y = if self.cos_first {
            ops::concatenate(&[cosy, siny], -1)?
        } else {
            ops::concatenate(&[siny, cosy], -1)?
        };
        if self.scale != 1.0 {
            ops::multiply(&y, self.scale)
        } else {
            Ok(y)
        }
    }
}

impl crate::nn::UnaryLayer for SinusoidalPositionalEncoding {
    fn forward(&self, x: &Array) -> Result<Array> {
        SinusoidalPositionalEncoding::forward(self, x)
    }
}

/// Attention with linear biases (`nn.ALiBi`): adds `-|i - j|` times a
/// per-head slope to attention scores. It has no parameters.
#[derive(Debug, Clone, Default, crate::Module)]
pub struct ALiBi {}

/// Python's `get_slopes(n)` in double precision.
fn alibi_slopes(n: u32) -> Vec<f64> {
    if n.is_power_of_two() {
        let log2 = f64::from(n).log2();
        let start = 2f64.powf(-(2f64.powf(-(log2 - 3.0))));
        (0..n).map(|i| start * start.powf(f64::from(i))).collect()
    } else {
        let closest = 1u32 << (31 - n.leading_zeros());
        let mut slopes = alibi_slopes(closest);
        slopes.extend(
            alibi_slopes(2 * closest)
                .into_iter()
                .step_by(2)
                .take((n - closest) as usize),
        );
        slopes
    }
}

impl ALiBi {
    /// `nn.ALiBi()`.
    pub fn new() -> ALiBi {
        ALiBi {}
    }

    /// `ALiBi.create_alibi_slope(num_heads, dtype)`: the slopes shaped
    /// `(num_heads, 1, 1)`. `num_heads` must be positive.
    pub fn create_alibi_slope(num_heads: i32, dtype: Dtype) -> Result<Array> {
        let n = u32::try_from(num_heads)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "[ALiBi] the number of heads must be positive, got {num_heads}"
                ))
            })?;
        // Python builds the array from its floats through float32.
        let slopes: Vec<f32> = alibi_slopes(n).into_iter().map(|s| s as f32).collect();
        let out = Array::from_slice(&slopes, &[num_heads])?.as_type(dtype)?;
        ops::expand_dims(&out, [-1, -2])
    }

    /// `ALiBi.create_alibi_matrix(q_sequence_length, k_sequence_length,
    /// num_heads, offset, dtype)`: the biases shaped `(1, num_heads,
    /// q_sequence_length - offset, k_sequence_length)`.
    pub fn create_alibi_matrix(
        q_sequence_length: i32,
        k_sequence_length: i32,
        num_heads: i32,
        offset: i32,
        dtype: Dtype,
    ) -> Result<Array> {
        let x1 = ops::arange(offset, q_sequence_length, 1, None)?;
        let x2 = ops::arange(0, k_sequence_length, 1, None)?;
        let diff = ops::subtract(&ops::expand_dims(&x1, 1)?, &ops::expand_dims(&x2, 0)?)?;
        let distance = ops::negative(&ops::abs(&ops::expand_dims(&diff, [0, 1])?)?)?;
        let slope = ALiBi::create_alibi_slope(num_heads, dtype)?;
        ops::multiply(&distance, &slope)?.as_type(dtype)
    }

    /// `ALiBi.__call__(attention_scores, offset, mask)`: scores shaped
    /// `(B, num_heads, T_q, T_k)` plus the biases (and `mask`, if given).
    pub fn forward(
        &self,
        attention_scores: &Array,
        offset: i32,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let shape = attention_scores.shape();
        if shape.len() < 2 {
            return Err(Error::invalid(format!(
                "[ALiBi] attention scores need at least 2 dimensions, got shape {shape:?}"
            )));
        }
        let n = shape.len();
        let mut alibi = ALiBi::create_alibi_matrix(
            shape[n - 2] + offset,
            shape[n - 1],
            shape[1],
            offset,
            attention_scores.dtype(),
        )?;
        if let Some(mask) = mask {
            alibi = ops::add(&alibi, mask)?;
        }
        ops::add(attention_scores, &alibi)
    }
}
