//! `mlx_vlm/models/gemma3n/audio.py`: the Gemma 3n audio encoder (a
//! Conformer), its items in Python's order. Log-mel features `[batch,
//! frames, input_feat_size]` go through two strided 2-D convolutions, each
//! followed by a cumulative (causal) group norm and a ReLU, and a linear
//! projection ([`Gemma3nAudioSubSampleConvProjection`]), then through
//! Conformer blocks: a half-weighted feed-forward, local attention over
//! chunks of `conf_attention_chunk_size` frames with relative position
//! embeddings and a logit softcap, a causal depthwise convolution, another
//! feed-forward and a norm, with gradient clipping in between. The padding
//! mask (true at padded frames) is subsampled with the features; every
//! `conf_reduction_factor`-th frame is kept and padded frames are zeroed.
//!
//! Divergences from Python:
//! - bad inputs are typed errors before any work, where Python fails deep
//!   inside or not at all ([`AudioModel::forward`]): features not `[batch,
//!   frames, input_feat_size]`, no clip or no frame (Python returns one
//!   frame computed from the convolutions' padding alone: MLX sizes a
//!   convolution over 2 padded frames with a 3-frame kernel as 1 frame), a
//!   mask that is not `[batch, frames]` booleans (Python gathers from a
//!   mask of any length and inverts an integer mask bitwise);
//!   [`Gemma3nAudioAttention::forward`] checks its mask against its input
//!   (Python raises `ValueError` on the extracted blocks); a bad audio
//!   configuration is an
//!   [`Error::Config`] in [`AudioModel::new`] ([`validate_audio_config`],
//!   Rust only), where Python fails later with a shape error;
//! - `AudioModel.__call__`'s two fallbacks for a mask whose length differs
//!   from the features' after the gather and after the reduction are left
//!   out: both lengths come from the same `t_sub` and the same stride, so
//!   neither branch can run;
//! - [`AudioModel::forward_with_block_outputs`] (Rust only) also returns
//!   the subsampling output and every Conformer block's output, for tests;
//! - [`Gemma3nCumulativeGroupNorm::forward`] with a mask runs Python's
//!   masked arithmetic; Python's own masked path raises `AttributeError`
//!   (it checks `mask.dtype != mx.bool`, a name MLX spells `mx.bool_`), so
//!   its goldens come from Python with that name aliased. A mask that is
//!   not booleans of the input's `[batch, time]` is an error, as in Python;
//! - the modules keep the configuration values they read instead of the
//!   whole `config`; Python's underscore constants (`_inv_timescales`,
//!   `_q_scale`, `_softcap`, `_gradient_clipping`, `_post_layer_scale`,
//!   `_local_causal_valid_mask`) are float32 (or bool) arrays that are not
//!   parameters, as in Python, so a bfloat16 model computes in float32
//!   after the first clip exactly as Python's does;
//! - [`convert_torch_to_mlx_pad_width`] takes the number of dimensions
//!   instead of the shape (Python reads only its length); the other
//!   helpers (`_pad_dim1`, `unfold_mlx`, ...) take Python's arguments;
//! - [`AudioModel::sanitize`] is an associated function (Python's ignores
//!   `self`) and returns a `Result` (a transpose can fail).

use std::collections::HashMap;

use mlx_rs::nn::{Conv1d, Conv2d, ConvOptions, Linear, Param, activations};
use mlx_rs::ops::{self, AccumulateOptions, PadOptions, PadWidth};
use mlx_rs::{Array, Dtype, idx};

use super::config::AudioConfig;
use super::language::Gemma3nRMSNorm;
use crate::models::base::check_array_shape;
use crate::{Error, Result};

/// An [`Error::InvalidArgument`] with `message`.
fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// An [`Error::Config`] about `audio_config.{key}`.
fn config_error(key: &str, message: String) -> Error {
    Error::Config {
        file: "config.json".to_string(),
        message: format!("audio_config.{key}: {message}"),
    }
}

/// Rust only: the audio configuration values [`AudioModel::new`] needs to
/// build a model that can run, each an [`Error::Config`] naming the key
/// (Python builds any configuration and fails on the first call).
pub fn validate_audio_config(config: &AudioConfig) -> Result<()> {
    let positive = [
        ("input_feat_size", config.input_feat_size),
        ("hidden_size", config.hidden_size),
        (
            "conf_attention_chunk_size",
            config.conf_attention_chunk_size,
        ),
        ("conf_num_attention_heads", config.conf_num_attention_heads),
        ("conf_conv_kernel_size", config.conf_conv_kernel_size),
        (
            "sscp_conv_channel_size[0]",
            config.sscp_conv_channel_size[0],
        ),
        (
            "sscp_conv_channel_size[1]",
            config.sscp_conv_channel_size[1],
        ),
    ];
    for (key, value) in positive {
        if value <= 0 {
            return Err(config_error(key, format!("must be positive, got {value}")));
        }
    }
    if config.conf_num_hidden_layers < 0 || config.conf_attention_context_right < 0 {
        return Err(config_error(
            "conf_num_hidden_layers/conf_attention_context_right",
            format!(
                "must not be negative, got {} and {}",
                config.conf_num_hidden_layers, config.conf_attention_context_right
            ),
        ));
    }
    if config.hidden_size % config.conf_num_attention_heads != 0 {
        return Err(config_error(
            "hidden_size",
            format!(
                "{} is not a multiple of conf_num_attention_heads ({})",
                config.hidden_size, config.conf_num_attention_heads
            ),
        ));
    }
    if config.hidden_size % 2 != 0 {
        return Err(config_error(
            "hidden_size",
            format!(
                "{} must be even: the relative position embedding concatenates sines and \
                 cosines of hidden_size / 2 timescales",
                config.hidden_size
            ),
        ));
    }
    let mut freq = config.input_feat_size;
    for i in 0..2 {
        let [kernel_h, kernel_w] = config.sscp_conv_kernel_size[i];
        let [stride_h, stride_w] = config.sscp_conv_stride_size[i];
        if kernel_h <= 0 || kernel_w <= 0 || stride_h <= 0 || stride_w <= 0 {
            return Err(config_error(
                &format!("sscp_conv_kernel_size[{i}]/sscp_conv_stride_size[{i}]"),
                format!(
                    "must be positive, got kernel {:?} and stride {:?}",
                    config.sscp_conv_kernel_size[i], config.sscp_conv_stride_size[i]
                ),
            ));
        }
        if freq + 2 < kernel_w {
            return Err(config_error(
                &format!("sscp_conv_kernel_size[{i}]"),
                format!(
                    "kernel width {kernel_w} is wider than the {freq} mel bins (plus 2 of \
                     padding) reaching subsampling convolution {i}"
                ),
            ));
        }
        freq = (freq + 2 - kernel_w) / stride_w + 1;
    }
    Ok(())
}

/// Python: `convert_torch_to_mlx_pad_width`: PyTorch's `F.pad` tuple (last
/// dimension first, `(left, right)` pairs) as MLX's per-axis
/// `(before, after)` list for an array of `ndim` dimensions. As in Python,
/// at most the last 4 dimensions are padded and pairs beyond `ndim` are
/// ignored.
pub fn convert_torch_to_mlx_pad_width(padding: &[i32], ndim: usize) -> Vec<(i32, i32)> {
    let mut pad_width = vec![(0, 0); ndim];
    for (from_end, pair) in padding.chunks_exact(2).take(4.min(ndim)).enumerate() {
        pad_width[ndim - 1 - from_end] = (pair[0], pair[1]);
    }
    pad_width
}

/// `mx.pad(x, convert_torch_to_mlx_pad_width(padding, x.shape))` with
/// zeros.
fn torch_pad(x: &Array, padding: &[i32]) -> Result<Array> {
    let pad_width = convert_torch_to_mlx_pad_width(padding, x.ndim());
    Ok(ops::pad(
        x,
        PadWidth::PerAxis(pad_width),
        PadOptions::default(),
    )?)
}

/// The dimensions of `x` as the fixed-size array `[_; N]`, or an error
/// naming `what` and the layout it takes.
fn dims<const N: usize>(x: &Array, what: &str, layout: &str) -> Result<[i32; N]> {
    <[i32; N]>::try_from(x.shape())
        .map_err(|_| invalid(format!("{what} takes {layout}, got shape {:?}", x.shape())))
}

/// Python: `Gemma3nAudioRelativePositionEmbedding`: Transformer-XL style
/// relative position logits: the queries against projected sinusoidal
/// embeddings of the relative positions `max_backward ..= -max_forward`,
/// shifted into each chunk's key context and added to the content logits.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioRelativePositionEmbedding {
    /// Attention heads.
    #[module(skip)]
    pub num_heads: i32,
    /// Width of the embeddings (`hidden_size`).
    #[module(skip)]
    pub channels: i32,
    /// Features per head.
    #[module(skip)]
    pub head_dim: i32,
    /// Farthest past position (`conf_attention_context_left - 1`, or 0).
    #[module(skip)]
    pub max_backward: i32,
    /// Farthest future position (`conf_attention_context_right`).
    #[module(skip)]
    pub max_forward: i32,
    /// Projection of the sinusoidal embeddings.
    pub pos_proj: Linear,
    /// Python's `_inv_timescales`: `[1, 1, channels / 2]` float32, not a
    /// parameter.
    #[module(skip)]
    pub inv_timescales: Array,
}

impl Gemma3nAudioRelativePositionEmbedding {
    /// Python: `Gemma3nAudioRelativePositionEmbedding(config)`.
    /// The configuration must pass [`validate_audio_config`] (checked:
    /// the sizes it divides by).
    pub fn new(config: &AudioConfig) -> Result<Self> {
        validate_audio_config(config)?;
        let num_heads = config.conf_num_attention_heads;
        let channels = config.hidden_size;
        let head_dim = channels / num_heads;
        let num_timescales = channels / 2;
        let (min_timescale, max_timescale) = (1.0f64, 1.0e4f64);
        let log_timescale_increment =
            (max_timescale / min_timescale).ln() / f64::from((num_timescales - 1).max(1));
        // Python: arange (int32) times a Python float is float32.
        let steps = ops::arange(0, num_timescales, 1, Some(Dtype::Float32))?;
        let inv_timescales = ops::multiply(
            min_timescale as f32,
            &ops::exp(&ops::multiply(&steps, -log_timescale_increment as f32)?)?,
        )?;
        Ok(Gemma3nAudioRelativePositionEmbedding {
            num_heads,
            channels,
            head_dim,
            max_backward: (config.conf_attention_context_left - 1).max(0),
            max_forward: config.conf_attention_context_right,
            pos_proj: Linear::new(channels, num_heads * head_dim, false)?,
            inv_timescales: inv_timescales.reshape(&[1, 1, num_timescales])?,
        })
    }

    /// Python: `_get_timing_signal_1d_pos`: `[sin, cos]` of the `[1, F]`
    /// positions times the inverse timescales, `[1, F, channels]` in
    /// `dtype`.
    fn get_timing_signal_1d_pos(&self, position: &Array, dtype: Dtype) -> Result<Array> {
        let position = ops::expand_dims(&position.as_type(Dtype::Float32)?, -1)?;
        let scaled_time = ops::multiply(&position, &self.inv_timescales)?;
        let timing_signal =
            ops::concatenate(&[ops::sin(&scaled_time)?, ops::cos(&scaled_time)?], -1)?;
        Ok(timing_signal.as_type(dtype)?)
    }

    /// Python: `_relative_shift`: `[B, N, U, W, F]` position logits to
    /// `[B, N, U, W, C]` key-context logits, by padding each row to `C + 1`
    /// and re-reading the flattened rows `C` at a time (JAX's trick: row
    /// `w` moves right by `w`).
    #[allow(clippy::too_many_arguments)]
    fn relative_shift(
        &self,
        term_bd_before_shift: &Array,
        batch_size: i32,
        num_heads: i32,
        num_query_blocks: i32,
        query_block_size: i32,
        key_context_size: i32,
        max_span_plus_1: i32,
    ) -> Result<Array> {
        let pad_amount_last_dim = (key_context_size + 1) - max_span_plus_1;
        let term_bd_padded = torch_pad(term_bd_before_shift, &[0, pad_amount_last_dim])?;
        let term_bd_reshaped = term_bd_padded.reshape(&[
            batch_size,
            num_heads,
            num_query_blocks,
            query_block_size * (key_context_size + 1),
        ])?;
        let term_bd_sliced =
            term_bd_reshaped.index(idx![.., .., .., ..query_block_size * key_context_size])?;
        Ok(term_bd_sliced.reshape(&[
            batch_size,
            num_heads,
            num_query_blocks,
            query_block_size,
            key_context_size,
        ])?)
    }

    /// Python: `Gemma3nAudioRelativePositionEmbedding.__call__`: the logits
    /// `[B, N, U, W, C]` of queries `[B, U, W, N, H]` against keys
    /// `[B, U, C, N, H]`, content plus relative position.
    pub fn forward(&self, queries: &Array, keys: &Array) -> Result<Array> {
        let layout = "[batch, blocks, block_size|context, heads, head_dim]";
        let [
            batch_size,
            num_query_blocks,
            query_block_size,
            num_heads,
            head_dim,
        ] = dims::<5>(queries, "the relative position embedding's queries", layout)?;
        let [_, _, key_context_size, _, _] =
            dims::<5>(keys, "the relative position embedding's keys", layout)?;

        // Relative positions L, L-1, ..., -R.
        let pos_indices = ops::expand_dims(
            &ops::arange(self.max_backward, -self.max_forward - 1, -1, None)?,
            0,
        )?;
        let max_span_plus_1 = pos_indices.shape()[1];
        let sin_emb_timing_signal = self.get_timing_signal_1d_pos(&pos_indices, queries.dtype())?;
        let projected_sin_emb = self.pos_proj.forward(&sin_emb_timing_signal)?;
        let sin_emb = projected_sin_emb
            .reshape(&[1, max_span_plus_1, self.num_heads, self.head_dim])?
            .squeeze(0)?;

        let queries_p = queries.transpose([0, 3, 1, 2, 4])?;
        let keys_p_t = keys.transpose([0, 3, 1, 4, 2])?;
        let term_ac = ops::matmul(&queries_p, &keys_p_t)?;

        let q_transposed = queries.transpose([0, 3, 1, 2, 4])?;
        let s_transposed = sin_emb.transpose([1, 2, 0])?;
        let q_reshaped = q_transposed.reshape(&[
            batch_size,
            num_heads,
            num_query_blocks * query_block_size,
            head_dim,
        ])?;
        let term_bd_unshifed_matmul = ops::matmul(&q_reshaped, &s_transposed)?;
        let term_bd_unshifed = term_bd_unshifed_matmul.reshape(&[
            batch_size,
            num_heads,
            num_query_blocks,
            query_block_size,
            max_span_plus_1,
        ])?;
        let term_bd_shifted = self.relative_shift(
            &term_bd_unshifed,
            batch_size,
            num_heads,
            num_query_blocks,
            query_block_size,
            key_context_size,
            max_span_plus_1,
        )?;
        Ok(ops::add(&term_ac, &term_bd_shifted)?)
    }
}

/// Python: `Gemma3nAudioAttention`: chunked local self-attention. Queries
/// are cut into blocks of `chunk_size` frames; each block attends to a
/// context of `max_past_horizon` frames before it, itself and
/// `max_future_horizon` after, with relative position logits, a softcap,
/// and a learned per-dimension query scale.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioAttention {
    /// Attention heads.
    #[module(skip)]
    pub num_heads: i32,
    /// Model width.
    #[module(skip)]
    pub hidden_size: i32,
    /// Features per head.
    #[module(skip)]
    pub head_dim: i32,
    /// Frames per query block.
    #[module(skip)]
    pub chunk_size: i32,
    /// Future frames each block sees.
    #[module(skip)]
    pub max_future_horizon: i32,
    /// Past frames each block sees.
    #[module(skip)]
    pub max_past_horizon: i32,
    /// Logit of masked positions.
    #[module(skip)]
    pub attention_invalid_logits_value: f32,
    /// Logit softcap.
    #[module(skip)]
    pub attention_logits_soft_cap: f32,
    /// Keys per block: `chunk_size + max_past_horizon + max_future_horizon`.
    #[module(skip)]
    pub context_size: i32,
    /// Relative position logits.
    pub relative_position_embedding: Gemma3nAudioRelativePositionEmbedding,
    /// `(head_dim,)`, zeros: the query scale is its softplus.
    pub per_dim_scale: Param,
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Python's `_q_scale`: `head_dim^-0.5 / ln 2`, a float32 scalar
    /// array (so it promotes bfloat16 queries to float32, as in Python).
    #[module(skip)]
    pub q_scale: Array,
    /// Python's `_local_causal_valid_mask`: `[chunk_size, context_size]`,
    /// true where query `w` may see context key `c`
    /// (`w <= c <= w + max_past_horizon + max_future_horizon`).
    #[module(skip)]
    pub local_causal_valid_mask: Array,
    /// Python's `_softcap`: the softcap as a float32 scalar array.
    #[module(skip)]
    pub softcap: Array,
}

impl Gemma3nAudioAttention {
    /// Python: `Gemma3nAudioAttention(config)`.
    /// The configuration must pass [`validate_audio_config`] (checked:
    /// the sizes it divides by).
    pub fn new(config: &AudioConfig) -> Result<Self> {
        validate_audio_config(config)?;
        let num_heads = config.conf_num_attention_heads;
        let hidden_size = config.hidden_size;
        let head_dim = hidden_size / num_heads;
        let chunk_size = config.conf_attention_chunk_size;
        let max_future_horizon = config.conf_attention_context_right;
        let max_past_horizon = (config.conf_attention_context_left - 1).max(0);
        let context_size = chunk_size + max_past_horizon + max_future_horizon;

        let q_scale = f64::from(head_dim).powf(-0.5) as f32;
        // Python: `1.0 / mx.log(2.0)`, a float32 array, times a Python float.
        let r_softplus_0 = ops::divide(1.0f32, &ops::log(&Array::scalar(2.0f32))?)?;
        let q_scale = ops::multiply(q_scale, &r_softplus_0)?;

        let lower_causal_mask =
            ops::tril(&ops::ones(&[context_size, chunk_size], Dtype::Bool)?, 0)?
                .transpose([1, 0])?;
        let upper_causal_mask = ops::tril(
            &ops::ones(&[chunk_size, context_size], Dtype::Bool)?,
            max_past_horizon + max_future_horizon,
        )?;
        let local_causal_valid_mask = ops::logical_and(&lower_causal_mask, &upper_causal_mask)?;

        Ok(Gemma3nAudioAttention {
            num_heads,
            hidden_size,
            head_dim,
            chunk_size,
            max_future_horizon,
            max_past_horizon,
            attention_invalid_logits_value: config.conf_attention_invalid_logits_value,
            attention_logits_soft_cap: config.conf_attention_logit_cap,
            context_size,
            relative_position_embedding: Gemma3nAudioRelativePositionEmbedding::new(config)?,
            per_dim_scale: Param::new(ops::zeros(&[head_dim], Dtype::Float32)?),
            q_proj: Linear::new(hidden_size, num_heads * head_dim, false)?,
            k_proj: Linear::new(hidden_size, num_heads * head_dim, false)?,
            v_proj: Linear::new(hidden_size, num_heads * head_dim, false)?,
            q_scale,
            local_causal_valid_mask,
            softcap: Array::scalar(config.conf_attention_logit_cap),
        })
    }

    /// Python: `_pad_dim1`: `x` padded along axis 1 by `dim10_val` before
    /// and `dim11_val` after.
    fn pad_dim1(&self, x: &Array, dim10_val: i32, dim11_val: i32) -> Result<Array> {
        let ndim = x.ndim();
        let mut padding_tuple = vec![0; ndim * 2];
        let start_idx_for_dim = 2 * (ndim - 2);
        padding_tuple[start_idx_for_dim] = dim10_val;
        padding_tuple[start_idx_for_dim + 1] = dim11_val;
        torch_pad(x, &padding_tuple)
    }

    /// Python: `_convert_to_block`: `[B, T, ...]` padded to whole blocks and
    /// reshaped to `[B, num_blocks, chunk_size, ...]`.
    fn convert_to_block(&self, x: &Array) -> Result<Array> {
        let shape = x.shape();
        let (b, t) = (shape[0], shape[1]);
        let num_blocks = (t + self.chunk_size - 1) / self.chunk_size;
        let padding_len = num_blocks * self.chunk_size - t;
        let x = if padding_len > 0 {
            self.pad_dim1(x, 0, padding_len)?
        } else {
            x.clone()
        };
        let mut permute_dims = vec![b, num_blocks, self.chunk_size];
        permute_dims.extend_from_slice(&shape[2..]);
        Ok(x.reshape(&permute_dims)?)
    }

    /// Python: `unfold_mlx`: the windows of `size` elements every `step`
    /// along `dimension`, stacked on a new axis after it. A dimension
    /// shorter than one window, or a size or step below 1, is an error
    /// (Python: `mx.stack` of no windows, or a division by zero).
    pub fn unfold_mlx(&self, x: &Array, dimension: usize, size: i32, step: i32) -> Result<Array> {
        let shape = x.shape();
        let dim_size = match shape.get(dimension) {
            Some(&n) if size >= 1 && step >= 1 && n >= size => n,
            _ => {
                return Err(invalid(format!(
                    "unfold_mlx: no window of size {size} (step {step}) along dimension \
                     {dimension} of shape {shape:?}; the dimension must exist and hold at least \
                     one window, size and step be positive"
                )));
            }
        };
        let num_windows = (dim_size - size) / step + 1;
        let windows = (0..num_windows)
            .map(|i| {
                let mut start = vec![0; shape.len()];
                let mut stop = shape.to_vec();
                start[dimension] = i * step;
                stop[dimension] = i * step + size;
                ops::slice(x, &start, &stop, None)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(ops::stack(&windows, dimension as i32 + 1)?)
    }

    /// Python: `_extract_block_context`: for each query block, its context
    /// of `context_size` frames (`max_past_horizon` before,
    /// `max_future_horizon` after, zero-padded at the ends): `[B, T, N, H]`
    /// to `[B, U, C, N, H]`, a `[B, T]` mask to `[B, C, U]`.
    fn extract_block_context(&self, x: &Array) -> Result<Array> {
        let pad_left = self.max_past_horizon;
        let pad_right = self.max_future_horizon + self.chunk_size - 1;
        let x = self.pad_dim1(x, pad_left, pad_right)?;
        let x_unfolded = self.unfold_mlx(&x, 1, self.context_size, self.chunk_size)?;
        if x.ndim() > 2 && x_unfolded.ndim() > 3 {
            return Ok(x_unfolded.transpose([0, 2, 1, 3, 4])?);
        }
        Ok(x_unfolded)
    }

    /// Python: `Gemma3nAudioAttention.__call__`: `x` `[B, T, hidden]` and
    /// `mask` `[B, T]` (true at padded frames) to `[B, T, heads, head_dim]`.
    pub fn forward(&self, x: &Array, mask: &Array) -> Result<Array> {
        let [batch_size, q_time, _] = dims::<3>(x, "audio attention", "[batch, time, hidden]")?;
        if mask.shape() != [batch_size, q_time] {
            return Err(invalid(format!(
                "audio attention: mask shape {:?} must be the input's [batch, time] \
                 [{batch_size}, {q_time}]",
                mask.shape()
            )));
        }
        let heads_shape = [batch_size, q_time, self.num_heads, self.head_dim];
        let query_states = self.q_proj.forward(x)?.reshape(&heads_shape)?;
        let key_states = self.k_proj.forward(x)?.reshape(&heads_shape)?;
        let value_states = self.v_proj.forward(x)?.reshape(&heads_shape)?;

        let per_dim_scale_sp = ops::logaddexp(&*self.per_dim_scale, 0.0f32)?;
        let per_dim_scale_sp_broadcast = per_dim_scale_sp.reshape(&[1, 1, 1, self.head_dim])?;
        let query_states = ops::multiply(
            &ops::multiply(&query_states, &self.q_scale)?,
            &per_dim_scale_sp_broadcast,
        )?;

        let query_blocks = self.convert_to_block(&query_states)?;
        let key_blocks = self.extract_block_context(&key_states)?;
        let value_blocks = self.extract_block_context(&value_states)?;
        let num_query_blocks = query_blocks.shape()[1];

        let original_valid_mask = ops::logical_not(mask)?;
        let extracted_valid_mask_blocks = self
            .extract_block_context(&original_valid_mask)?
            .transpose([0, 2, 1])?;
        // Python reshapes a 4-D result and checks the shape; a [B, T] mask
        // always gives [B, U, C] here.
        let condition_from_input_validity =
            ops::expand_dims(&ops::expand_dims(&extracted_valid_mask_blocks, 1)?, -2)?;
        let condition_from_causality =
            self.local_causal_valid_mask
                .reshape(&[1, 1, 1, self.chunk_size, self.context_size])?;
        let final_condition_for_where =
            ops::logical_and(&condition_from_input_validity, &condition_from_causality)?;

        let logits = self
            .relative_position_embedding
            .forward(&query_blocks, &key_blocks)?;
        let logits = ops::divide(&logits, &self.softcap)?;
        let logits = activations::tanh(&logits)?;
        let logits = ops::multiply(&logits, &self.softcap)?;
        let logits = ops::r#where(
            &final_condition_for_where,
            &logits,
            self.attention_invalid_logits_value,
        )?;
        let probabilities = activations::softmax(&logits.as_type(Dtype::Float32)?, -1)?
            .as_type(value_blocks.dtype())?;

        // Python's einsum "BNuwc,BucNH->BuwNH" as a batched matmul.
        let [b_dim, n_dim, u_dim, w_dim, c_dim] = dims::<5>(
            &probabilities,
            "audio attention probabilities",
            "[B, N, U, W, C]",
        )?;
        let h_dim = self.head_dim;
        let prob_bun = probabilities
            .transpose([0, 2, 1, 3, 4])?
            .reshape(&[-1, w_dim, c_dim])?;
        let v_bun = value_blocks
            .transpose([0, 1, 3, 2, 4])?
            .reshape(&[-1, c_dim, h_dim])?;
        let result_bmm = ops::matmul(&prob_bun, &v_bun)?;
        let context_vectors = result_bmm
            .reshape(&[b_dim, u_dim, n_dim, w_dim, h_dim])?
            .transpose([0, 1, 3, 2, 4])?
            .reshape(&[
                batch_size,
                num_query_blocks * self.chunk_size,
                self.num_heads,
                self.head_dim,
            ])?;
        Ok(context_vectors.index(idx![.., ..q_time])?)
    }
}

/// Python: `Gemma3nCumulativeGroupNorm`: group norm (one group) whose mean
/// and variance at time `t` are over all features of the valid steps up to
/// `t`, computed in float32; scaled (and shifted) per channel; masked steps
/// output zeros.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nCumulativeGroupNorm {
    /// Channels (the last dimension).
    #[module(skip)]
    pub num_channels: i32,
    /// The dimensions between time and channels.
    #[module(skip)]
    pub feature_dims: Vec<i32>,
    /// Epsilon.
    #[module(skip)]
    pub eps: f32,
    /// Whether there is a per-channel scale.
    #[module(skip)]
    pub use_scale: bool,
    /// Whether there is a per-channel bias.
    #[module(skip)]
    pub use_bias: bool,
    /// `(num_channels,)`, ones, with a scale.
    pub weight: Option<Param>,
    /// `(num_channels,)`, zeros, with a bias.
    pub bias: Option<Param>,
    /// Every axis after batch and time.
    #[module(skip)]
    pub reduction_axes: Vec<i32>,
}

impl Gemma3nCumulativeGroupNorm {
    /// Python: `Gemma3nCumulativeGroupNorm(num_channels, feature_dims, eps,
    /// use_scale, use_bias)` (Python's defaults: eps 1e-3, a scale, no
    /// bias).
    pub fn new(
        num_channels: i32,
        feature_dims: &[i32],
        eps: f32,
        use_scale: bool,
        use_bias: bool,
    ) -> Result<Self> {
        let weight = match use_scale {
            true => Some(Param::new(ops::ones(&[num_channels], Dtype::Float32)?)),
            false => None,
        };
        let bias = match use_bias {
            true => Some(Param::new(ops::zeros(&[num_channels], Dtype::Float32)?)),
            false => None,
        };
        let last_axis = 2 + feature_dims.len() as i32;
        Ok(Gemma3nCumulativeGroupNorm {
            num_channels,
            feature_dims: feature_dims.to_vec(),
            eps,
            use_scale,
            use_bias,
            weight,
            bias,
            reduction_axes: (2..=last_axis).collect(),
        })
    }

    /// Python: `Gemma3nCumulativeGroupNorm.__call__`: `x` `[B, T,
    /// *feature_dims, C]`, `mask` `[B, T]` booleans (true where valid;
    /// `None`: all valid). Errors name a shape that does not fit.
    pub fn forward(&self, x: &Array, mask: Option<&Array>) -> Result<Array> {
        let mut expected_input_suffix = self.feature_dims.clone();
        expected_input_suffix.push(self.num_channels);
        if x.ndim() < 2 || x.shape()[2..] != expected_input_suffix[..] {
            return Err(invalid(format!(
                "cumulative group norm: input shape {:?} must be [batch, time, *feature_dims, \
                 num_channels], the last ones {expected_input_suffix:?}",
                x.shape()
            )));
        }
        if let Some(mask) = mask
            && (mask.shape() != &x.shape()[..2] || mask.dtype() != Dtype::Bool)
        {
            return Err(invalid(format!(
                "cumulative group norm: mask of shape {:?} and dtype {:?} must be booleans of \
                 the input's [batch, time] {:?}",
                mask.shape(),
                mask.dtype(),
                &x.shape()[..2]
            )));
        }

        let input_dtype = x.dtype();
        let calc_dtype = Dtype::Float32;
        let x_calc = x.as_type(calc_dtype)?;
        let mask_calc = match mask {
            Some(mask) => {
                let mut shape = mask.shape().to_vec();
                shape.extend(std::iter::repeat_n(1, expected_input_suffix.len()));
                mask.reshape(&shape)?.as_type(calc_dtype)?
            }
            None => ops::ones_like(&x_calc, None)?.as_type(calc_dtype)?,
        };
        let axes = &self.reduction_axes[..];
        let cumulative = |a: &Array| a.cumsum(Some(1), AccumulateOptions::default());

        let x_masked_for_sum = ops::multiply(&x_calc, &mask_calc)?;
        let sum_values_at_t = x_masked_for_sum.sum(axes, true)?;
        let cum_sum_values = cumulative(&sum_values_at_t)?;
        let elements_in_group_at_t = mask_calc.sum(axes, true)?;
        let cum_count_elements = cumulative(&elements_in_group_at_t)?;
        let safe_cum_count_elements = ops::clip(&cum_count_elements, 1.0f32, None)?;
        let cum_mean = ops::divide(&cum_sum_values, &safe_cum_count_elements)?;

        let centered = ops::subtract(&x_calc, &cum_mean)?;
        let squared_diff_from_mean = ops::power(&centered, 2.0f32)?;
        let sum_sq_diff_at_t =
            ops::multiply(&squared_diff_from_mean, &mask_calc)?.sum(axes, true)?;
        let cum_sum_sq_diff = cumulative(&sum_sq_diff_at_t)?;
        let cum_variance = ops::divide(&cum_sum_sq_diff, &safe_cum_count_elements)?;

        let mut normalized_x =
            ops::multiply(&centered, &ops::rsqrt(&ops::add(&cum_variance, self.eps)?)?)?;
        let mut view_shape = vec![1; x.ndim() - 1];
        view_shape.push(self.num_channels);
        if let (true, Some(weight)) = (self.use_scale, &self.weight) {
            let scale = weight.as_type(calc_dtype)?.reshape(&view_shape)?;
            normalized_x = ops::multiply(&normalized_x, &scale)?;
        }
        if let (true, Some(bias)) = (self.use_bias, &self.bias) {
            let bias = bias.as_type(calc_dtype)?.reshape(&view_shape)?;
            normalized_x = ops::add(&normalized_x, &bias)?;
        }
        let final_output = ops::multiply(&normalized_x, &mask_calc)?;
        Ok(final_output.as_type(input_dtype)?)
    }
}

/// Python: `Gemma3nAudioSSCPConvBlock`: one subsampling step on
/// channels-first `[B, C_in, T, F]`: pad (frequency both sides, time after),
/// a strided convolution, the cumulative group norm, a ReLU.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioSSCPConvBlock {
    /// `(pad_F_left, pad_F_right, pad_T_top, pad_T_bottom)`.
    #[module(skip)]
    pub manual_padding: [i32; 4],
    /// The convolution (no padding, no bias).
    pub conv: Conv2d,
    /// Cumulative group norm over frequency and channels.
    pub norm: Gemma3nCumulativeGroupNorm,
}

impl Gemma3nAudioSSCPConvBlock {
    /// Python: `Gemma3nAudioSSCPConvBlock(idx, input_freq_dim, config,
    /// manual_padding)`; the configuration must pass
    /// [`validate_audio_config`] (checked).
    pub fn new(
        idx: usize,
        input_freq_dim: i32,
        config: &AudioConfig,
        manual_padding: [i32; 4],
    ) -> Result<Self> {
        validate_audio_config(config)?;
        let in_channels = match idx {
            0 => 1,
            1 => config.sscp_conv_channel_size[0],
            _ => {
                return Err(invalid(format!(
                    "Gemma3nAudioSSCPConvBlock index {idx}: the audio configuration describes \
                     subsampling blocks 0 and 1 only"
                )));
            }
        };
        let out_channels = config.sscp_conv_channel_size[idx];
        let [kernel_h, kernel_w] = config.sscp_conv_kernel_size[idx];
        let [stride_h, stride_w] = config.sscp_conv_stride_size[idx];
        let conv = Conv2d::new(
            in_channels,
            out_channels,
            [kernel_h, kernel_w],
            ConvOptions {
                stride: [stride_h, stride_w],
                bias: false,
                ..Default::default()
            },
        )?;
        let f_in_padded = input_freq_dim + manual_padding[0] + manual_padding[1];
        let f_out_conv = (f_in_padded - kernel_w) / stride_w + 1;
        let norm = Gemma3nCumulativeGroupNorm::new(
            out_channels,
            &[f_out_conv],
            config.sscp_conv_eps,
            true,
            false,
        )?;
        Ok(Gemma3nAudioSSCPConvBlock {
            manual_padding,
            conv,
            norm,
        })
    }

    /// Python: `Gemma3nAudioSSCPConvBlock.__call__`: `[B, C_in, T_in, F_in]`
    /// to `[B, C_out, T_out, F_out]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let audio_encodings_padded = torch_pad(x, &self.manual_padding)?;
        let audio_encodings_conv = self
            .conv
            .forward(&audio_encodings_padded.transpose([0, 2, 3, 1])?)?;
        let x_normed = self.norm.forward(&audio_encodings_conv, None)?;
        let audio_encodings_normed = x_normed.transpose([0, 3, 1, 2])?;
        Ok(activations::relu(&audio_encodings_normed)?)
    }
}

/// Python: `Gemma3nAudioSubSampleConvProjection`: two
/// [`Gemma3nAudioSSCPConvBlock`]s (time padded after by `kernel - 1`,
/// frequency by 1 on each side) and a linear projection of the flattened
/// frequency and channels to `hidden_size`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioSubSampleConvProjection {
    /// First subsampling block (1 input channel).
    pub conv_0: Gemma3nAudioSSCPConvBlock,
    /// Second subsampling block.
    pub conv_1: Gemma3nAudioSSCPConvBlock,
    /// `channels * frequency` after the second block.
    #[module(skip)]
    pub input_proj_in_features: i32,
    /// Projection to `hidden_size`.
    pub input_proj_linear: Linear,
}

impl Gemma3nAudioSubSampleConvProjection {
    /// Python: `Gemma3nAudioSubSampleConvProjection(config)`.
    /// The configuration must pass [`validate_audio_config`] (checked:
    /// the sizes it divides by).
    pub fn new(config: &AudioConfig) -> Result<Self> {
        validate_audio_config(config)?;
        let mut current_f_for_block_input = config.input_feat_size;
        let mut calculated_block_padding = Vec::with_capacity(2);
        let mut calculated_f_out_dims = Vec::with_capacity(2);
        for i in 0..2 {
            let [kernel_h, kernel_w] = config.sscp_conv_kernel_size[i];
            let [_, stride_w] = config.sscp_conv_stride_size[i];
            // Time: JAX's "reverse causal" (0, kernel - 1); frequency: (1, 1).
            let (pad_t_top, pad_t_bottom) = (0, kernel_h - 1);
            let (pad_f_left, pad_f_right) = (1, 1);
            calculated_block_padding.push([pad_f_left, pad_f_right, pad_t_top, pad_t_bottom]);
            let f_in_padded = current_f_for_block_input + pad_f_left + pad_f_right;
            let f_out_after_conv = (f_in_padded - kernel_w) / stride_w + 1;
            calculated_f_out_dims.push(f_out_after_conv);
            current_f_for_block_input = f_out_after_conv;
        }
        let conv_0 = Gemma3nAudioSSCPConvBlock::new(
            0,
            config.input_feat_size,
            config,
            calculated_block_padding[0],
        )?;
        let conv_1 = Gemma3nAudioSSCPConvBlock::new(
            1,
            calculated_f_out_dims[0],
            config,
            calculated_block_padding[1],
        )?;
        let final_c_out = config.sscp_conv_channel_size[1];
        let final_f_out = calculated_f_out_dims[1];
        let input_proj_in_features = final_c_out * final_f_out;
        Ok(Gemma3nAudioSubSampleConvProjection {
            conv_0,
            conv_1,
            input_proj_in_features,
            input_proj_linear: Linear::new(input_proj_in_features, config.hidden_size, false)?,
        })
    }

    /// Python: `Gemma3nAudioSubSampleConvProjection.__call__`: `[B, T,
    /// F_in]` to `[B, T_sub, hidden]`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let audio_encodings_reshaped = ops::expand_dims(x, 1)?;
        let x = self.conv_0.forward(&audio_encodings_reshaped)?;
        let x = self.conv_1.forward(&x)?;
        let [b, c_out, t_out, f_out] = dims::<4>(&x, "the subsampling output", "[B, C, T, F]")?;
        let x_transposed = x.transpose([0, 2, 3, 1])?;
        let output_flattened = x_transposed.reshape(&[b, t_out, f_out * c_out])?;
        Ok(self.input_proj_linear.forward(&output_flattened)?)
    }
}

/// `mx.clip(x, -bound, bound)` with `bound` a float32 scalar array, as
/// Python's `_gradient_clipping` (a bfloat16 `x` comes out float32).
fn clip_symmetric(x: &Array, bound: &Array) -> Result<Array> {
    Ok(ops::clip(x, &ops::negative(bound)?, bound)?)
}

/// Python: `Gemma3nAudioConformerAttention`: clipped, normed input through
/// [`Gemma3nAudioAttention`] and a projection, clipped and normed again,
/// added to the input.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioConformerAttention {
    /// `(heads, head_dim)` of the attention output.
    #[module(skip)]
    pub post_in_shape: [i32; 2],
    /// Width of the attention output (`hidden_size`).
    #[module(skip)]
    pub post_in_features: i32,
    /// Python's `_gradient_clipping`: a float32 scalar array.
    #[module(skip)]
    pub gradient_clipping: Array,
    /// Norm before attention.
    pub pre_attn_norm: Gemma3nRMSNorm,
    /// The chunked local attention.
    pub attn: Gemma3nAudioAttention,
    /// Output projection.
    pub post: Linear,
    /// Norm after the projection.
    pub post_norm: Gemma3nRMSNorm,
}

impl Gemma3nAudioConformerAttention {
    /// Python: `Gemma3nAudioConformerAttention(config)`.
    /// The configuration must pass [`validate_audio_config`] (checked:
    /// the sizes it divides by).
    pub fn new(config: &AudioConfig) -> Result<Self> {
        validate_audio_config(config)?;
        let head_dim = config.hidden_size / config.conf_num_attention_heads;
        Ok(Gemma3nAudioConformerAttention {
            post_in_shape: [config.conf_num_attention_heads, head_dim],
            post_in_features: config.hidden_size,
            gradient_clipping: Array::scalar(config.gradient_clipping),
            pre_attn_norm: Gemma3nRMSNorm::new(config.hidden_size, 1e-6, 0.0, true)?,
            attn: Gemma3nAudioAttention::new(config)?,
            post: Linear::new(config.hidden_size, config.hidden_size, false)?,
            post_norm: Gemma3nRMSNorm::new(config.hidden_size, 1e-6, 0.0, true)?,
        })
    }

    /// Python: `Gemma3nAudioConformerAttention.__call__`.
    pub fn forward(&self, x: &Array, mask: &Array) -> Result<Array> {
        let audio_encodings_input_to_attn = x;
        let x = clip_symmetric(x, &self.gradient_clipping)?;
        let audio_encodings_norm = self.pre_attn_norm.forward(&x)?;
        let audio_encodings_attn_out = self.attn.forward(&audio_encodings_norm, mask)?;
        let [b, t, num_heads, head_dim] = dims::<4>(
            &audio_encodings_attn_out,
            "the audio attention output",
            "[B, T, heads, head_dim]",
        )?;
        let audio_encodings_reshaped =
            audio_encodings_attn_out.reshape(&[b, t, num_heads * head_dim])?;
        let x = self.post.forward(&audio_encodings_reshaped)?;
        let x = clip_symmetric(&x, &self.gradient_clipping)?;
        Ok(ops::add(
            audio_encodings_input_to_attn,
            &self.post_norm.forward(&x)?,
        )?)
    }
}

/// Python: `Gemma3nAudioConformerFeedForward`: clipped, normed input
/// through a SiLU MLP (4x wide), clipped and normed again, added to the
/// input times `conf_residual_weight`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioConformerFeedForward {
    /// Python's `_gradient_clipping`: a float32 scalar array.
    #[module(skip)]
    pub gradient_clipping: Array,
    /// Norm before the MLP.
    pub pre_layer_norm: Gemma3nRMSNorm,
    /// Up to `4 * hidden_size`.
    pub ffw_layer_1: Linear,
    /// Back to `hidden_size`.
    pub ffw_layer_2: Linear,
    /// Norm after the MLP.
    pub post_layer_norm: Gemma3nRMSNorm,
    /// Python's `_post_layer_scale`: `conf_residual_weight` as a float32
    /// scalar array.
    #[module(skip)]
    pub post_layer_scale: Array,
}

impl Gemma3nAudioConformerFeedForward {
    /// Python: `Gemma3nAudioConformerFeedForward(config)`.
    pub fn new(config: &AudioConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Gemma3nAudioConformerFeedForward {
            gradient_clipping: Array::scalar(config.gradient_clipping),
            pre_layer_norm: Gemma3nRMSNorm::new(hidden, 1e-6, 0.0, true)?,
            ffw_layer_1: Linear::new(hidden, hidden * 4, false)?,
            ffw_layer_2: Linear::new(hidden * 4, hidden, false)?,
            post_layer_norm: Gemma3nRMSNorm::new(hidden, 1e-6, 0.0, true)?,
            post_layer_scale: Array::scalar(config.conf_residual_weight),
        })
    }

    /// Python: `Gemma3nAudioConformerFeedForward.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let residual = x;
        let x = clip_symmetric(x, &self.gradient_clipping)?;
        let x = self.pre_layer_norm.forward(&x)?;
        let x = self.ffw_layer_1.forward(&x)?;
        let x = activations::silu(&x)?;
        let x = self.ffw_layer_2.forward(&x)?;
        let x = clip_symmetric(&x, &self.gradient_clipping)?;
        let x = self.post_layer_norm.forward(&x)?;
        Ok(ops::add(
            residual,
            &ops::multiply(&x, &self.post_layer_scale)?,
        )?)
    }
}

/// Python: `Gemma3nAudioConformerLightConv1d`: normed input through a GLU,
/// a causal depthwise convolution (`conf_conv_kernel_size` frames back),
/// clipping, a norm, SiLU and a projection, added to the input.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioConformerLightConv1d {
    /// Norm before the GLU (`rms_norm_eps`).
    pub pre_layer_norm: Gemma3nRMSNorm,
    /// Up to `2 * hidden_size`, halved by the GLU.
    pub linear_start: Linear,
    /// Depthwise, unpadded: the causal padding is added by hand.
    pub depthwise_conv1d: Conv1d,
    /// Python's `_gradient_clipping`: a float32 scalar array.
    #[module(skip)]
    pub gradient_clipping: Array,
    /// Norm after the convolution (`rms_norm_eps`).
    pub conv_norm: Gemma3nRMSNorm,
    /// Output projection.
    pub linear_end: Linear,
    /// Frames of left padding: `conf_conv_kernel_size - 1`.
    #[module(skip)]
    pub causal_padding: i32,
}

impl Gemma3nAudioConformerLightConv1d {
    /// Python: `Gemma3nAudioConformerLightConv1d(config)`.
    pub fn new(config: &AudioConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Gemma3nAudioConformerLightConv1d {
            pre_layer_norm: Gemma3nRMSNorm::new(hidden, config.rms_norm_eps, 0.0, true)?,
            linear_start: Linear::new(hidden, hidden * 2, false)?,
            depthwise_conv1d: Conv1d::new(
                hidden,
                hidden,
                [config.conf_conv_kernel_size],
                ConvOptions {
                    groups: hidden,
                    bias: false,
                    ..Default::default()
                },
            )?,
            gradient_clipping: Array::scalar(config.gradient_clipping),
            conv_norm: Gemma3nRMSNorm::new(hidden, config.rms_norm_eps, 0.0, true)?,
            linear_end: Linear::new(hidden, hidden, false)?,
            causal_padding: config.conf_conv_kernel_size - 1,
        })
    }

    /// Python: `Gemma3nAudioConformerLightConv1d.__call__`.
    pub fn forward(&self, audio_encodings: &Array) -> Result<Array> {
        let audio_encodings_residual = audio_encodings;
        let audio_encodings = self.pre_layer_norm.forward(audio_encodings)?;
        let audio_encodings = self.linear_start.forward(&audio_encodings)?;
        let audio_encodings = activations::glu(&audio_encodings, -1)?;
        let audio_encodings_transposed = audio_encodings.transpose([0, 2, 1])?;
        let audio_encodings_transposed_padded =
            torch_pad(&audio_encodings_transposed, &[self.causal_padding, 0])?;
        let audio_encodings = self
            .depthwise_conv1d
            .forward(&audio_encodings_transposed_padded.transpose([0, 2, 1])?)?;
        let audio_encodings = clip_symmetric(&audio_encodings, &self.gradient_clipping)?;
        let audio_encodings = self.conv_norm.forward(&audio_encodings)?;
        let audio_encodings = activations::silu(&audio_encodings)?;
        let audio_encodings = self.linear_end.forward(&audio_encodings)?;
        Ok(ops::add(&audio_encodings, audio_encodings_residual)?)
    }
}

/// Python: `Gemma3nAudioConformerBlock`: feed-forward, attention, the
/// light convolution on the masked (padded frames zeroed) result,
/// feed-forward, clipping and a norm.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAudioConformerBlock {
    /// First feed-forward.
    pub ffw_layer_start: Gemma3nAudioConformerFeedForward,
    /// Attention.
    pub attention: Gemma3nAudioConformerAttention,
    /// Light convolution.
    pub lconv1d: Gemma3nAudioConformerLightConv1d,
    /// Second feed-forward.
    pub ffw_layer_end: Gemma3nAudioConformerFeedForward,
    /// Python's `_gradient_clipping`: a float32 scalar array.
    #[module(skip)]
    pub gradient_clipping: Array,
    /// Output norm.
    pub norm: Gemma3nRMSNorm,
}

impl Gemma3nAudioConformerBlock {
    /// Python: `Gemma3nAudioConformerBlock(config)`.
    pub fn new(config: &AudioConfig) -> Result<Self> {
        Ok(Gemma3nAudioConformerBlock {
            ffw_layer_start: Gemma3nAudioConformerFeedForward::new(config)?,
            attention: Gemma3nAudioConformerAttention::new(config)?,
            lconv1d: Gemma3nAudioConformerLightConv1d::new(config)?,
            ffw_layer_end: Gemma3nAudioConformerFeedForward::new(config)?,
            gradient_clipping: Array::scalar(config.gradient_clipping),
            norm: Gemma3nRMSNorm::new(config.hidden_size, 1e-6, 0.0, true)?,
        })
    }

    /// Python: `Gemma3nAudioConformerBlock.__call__`: `audio_encodings`
    /// `[B, T, hidden]`, `audio_mel_mask` `[B, T]` true at padded frames.
    pub fn forward(&self, audio_encodings: &Array, audio_mel_mask: &Array) -> Result<Array> {
        let audio_encodings = self.ffw_layer_start.forward(audio_encodings)?;
        let audio_encodings = self.attention.forward(&audio_encodings, audio_mel_mask)?;
        let validity_mask_for_lconv = ops::logical_not(audio_mel_mask)?;
        let audio_encodings_for_lconv_input = ops::multiply(
            &audio_encodings,
            &ops::expand_dims(&validity_mask_for_lconv, -1)?.as_type(audio_encodings.dtype())?,
        )?;
        let audio_encodings = self.lconv1d.forward(&audio_encodings_for_lconv_input)?;
        let audio_encodings = self.ffw_layer_end.forward(&audio_encodings)?;
        let audio_encodings = clip_symmetric(&audio_encodings, &self.gradient_clipping)?;
        self.norm.forward(&audio_encodings)
    }
}

/// Rust only: [`AudioModel::forward_with_block_outputs`]'s result.
#[derive(Debug, Clone)]
pub struct AudioModelOutputs {
    /// The subsampling output `[B, T_sub, hidden]`.
    pub subsampled: Array,
    /// Each Conformer block's output `[B, T_sub, hidden]`.
    pub block_outputs: Vec<Array>,
    /// The encodings `[B, T_out, hidden]`, zero at padded frames.
    pub encodings: Array,
    /// The output mask `[B, T_out]`, true at padded frames.
    pub mask: Array,
}

/// Python: `AudioModel`: the Gemma 3n audio encoder.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct AudioModel {
    /// The audio configuration.
    #[module(skip)]
    pub config: AudioConfig,
    /// The convolutional subsampling.
    pub subsample_conv_projection: Gemma3nAudioSubSampleConvProjection,
    /// The Conformer blocks.
    pub conformer: Vec<Gemma3nAudioConformerBlock>,
}

impl AudioModel {
    /// Python: `AudioModel(config)`, after [`validate_audio_config`].
    pub fn new(config: &AudioConfig) -> Result<Self> {
        validate_audio_config(config)?;
        Ok(AudioModel {
            config: config.clone(),
            subsample_conv_projection: Gemma3nAudioSubSampleConvProjection::new(config)?,
            conformer: (0..config.conf_num_hidden_layers)
                .map(|_| Gemma3nAudioConformerBlock::new(config))
                .collect::<Result<_>>()?,
        })
    }

    /// Rust only: the checks of [`AudioModel::forward`]'s inputs.
    fn check_inputs(&self, audio_mel: &Array, audio_mel_mask: &Array) -> Result<()> {
        let feat = self.config.input_feat_size;
        let fix = "pass the feature extractor's input_features with a batch axis";
        let [batch, frames, width] = <[i32; 3]>::try_from(audio_mel.shape()).map_err(|_| {
            invalid(format!(
                "the Gemma 3n audio encoder takes log-mel features [batch, frames, {feat}], got \
                 shape {:?}; {fix}",
                audio_mel.shape()
            ))
        })?;
        if width != feat {
            return Err(invalid(format!(
                "the Gemma 3n audio encoder takes {feat} mel bins per frame \
                 (audio_config.input_feat_size), got features of shape {:?}; extract them with \
                 the checkpoint's feature extractor (feature_size {feat})",
                audio_mel.shape()
            )));
        }
        if batch == 0 || frames == 0 {
            return Err(invalid(format!(
                "the Gemma 3n audio encoder got features of shape {:?}: no clip or no frame to \
                 subsample; a clip shorter than one analysis frame (32 ms at 16 kHz) gives no \
                 frames: pad it or give a longer clip",
                audio_mel.shape()
            )));
        }
        if audio_mel_mask.shape() != [batch, frames] || audio_mel_mask.dtype() != Dtype::Bool {
            return Err(invalid(format!(
                "the Gemma 3n audio mask must be booleans [batch, frames] = [{batch}, {frames}], \
                 true at padded frames (the negation of the feature extractor's \
                 input_features_mask), got shape {:?} and dtype {:?}",
                audio_mel_mask.shape(),
                audio_mel_mask.dtype()
            )));
        }
        Ok(())
    }

    /// Python: `AudioModel.__call__`: log-mel features `audio_mel` `[B, T,
    /// input_feat_size]` and `audio_mel_mask` `[B, T]` (true at padded
    /// frames) to the encodings `[B, T_out, hidden]` (zero at padded
    /// frames) and their mask `[B, T_out]`. Bad inputs are
    /// [`Error::InvalidArgument`]s naming the shape and the fix.
    pub fn forward(&self, audio_mel: &Array, audio_mel_mask: &Array) -> Result<(Array, Array)> {
        let outputs = self.forward_with_block_outputs(audio_mel, audio_mel_mask)?;
        Ok((outputs.encodings, outputs.mask))
    }

    /// Rust only: [`AudioModel::forward`], also returning the subsampling
    /// output and every Conformer block's output.
    pub fn forward_with_block_outputs(
        &self,
        audio_mel: &Array,
        audio_mel_mask: &Array,
    ) -> Result<AudioModelOutputs> {
        self.check_inputs(audio_mel, audio_mel_mask)?;
        let subsampled = self.subsample_conv_projection.forward(audio_mel)?;
        let t_sub = subsampled.shape()[1];
        let mut current_mask = self.subsample_mask(audio_mel_mask, t_sub)?;

        let mut audio_encodings = subsampled.clone();
        let mut block_outputs = Vec::with_capacity(self.conformer.len());
        for block in &self.conformer {
            audio_encodings = block.forward(&audio_encodings, &current_mask)?;
            block_outputs.push(audio_encodings.clone());
        }

        let reduction = self.config.conf_reduction_factor;
        if reduction > 1 {
            audio_encodings = audio_encodings.index(idx![.., ..;i64::from(reduction)])?;
            current_mask = current_mask.index(idx![.., ..;i64::from(reduction)])?;
        }
        let encodings = ops::r#where(
            &ops::expand_dims(&current_mask, -1)?,
            0.0f32,
            &audio_encodings,
        )?;
        Ok(AudioModelOutputs {
            subsampled,
            block_outputs,
            encodings,
            mask: current_mask,
        })
    }

    /// The part of Python's `AudioModel.__call__` that subsamples the mask:
    /// the mask at the first frame of each subsampled frame's receptive
    /// field (`arange(t_sub) * prod(time strides)`, clipped to the mask).
    fn subsample_mask(&self, audio_mel_mask: &Array, t_sub: i32) -> Result<Array> {
        let time_stride_product: i32 = self
            .config
            .sscp_conv_stride_size
            .iter()
            .map(|[stride_t, _]| stride_t)
            .product();
        let [batch, frames] = dims::<2>(audio_mel_mask, "the audio mask", "[batch, frames]")?;
        let indices = ops::multiply(&ops::arange(0, t_sub, 1, None)?, time_stride_product)?;
        let indices = ops::clip(&indices, None, frames - 1)?;
        let indices = ops::broadcast_to(&ops::expand_dims(&indices, 0)?, &[batch, t_sub])?;
        Ok(ops::take_along_axis(audio_mel_mask, &indices, 1)?)
    }

    /// Python: `AudioModel.sanitize`: convolution weights in PyTorch's
    /// layout made channels-last unless [`check_array_shape`] finds them
    /// converted: keys containing `conv.weight` `[out, in, kh, kw]` to
    /// `[out, kh, kw, in]`, keys containing `conv1d.weight` `[out, in, k]`
    /// to `[out, k, in]`; the rest unchanged. As in Python's `load_model`,
    /// it runs on every key of the checkpoint (after the model's sanitize
    /// strips `model.`), so the vision tower's `conv.weight`s pass through
    /// it too.
    pub fn sanitize(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let mut sanitized_weights = HashMap::with_capacity(weights.len());
        for (k, v) in weights {
            let v = if k.contains("conv.weight") && !check_array_shape(&v) {
                v.transpose([0, 2, 3, 1])?
            } else if k.contains("conv1d.weight") && !check_array_shape(&v) {
                v.transpose([0, 2, 1])?
            } else {
                v
            };
            sanitized_weights.insert(k, v);
        }
        Ok(sanitized_weights)
    }
}
