//! Samplers and logits processors (Python: `mlx_vlm/sample_utils.py`).
//!
//! Python's `top_n_sigma`, `p_less`, `typical_p` and XTC samplers are not
//! ported: the plain generation path never enables them.

use std::collections::HashMap;

use mlx_rs::ops::{self, AccumulateOptions};
use mlx_rs::random::{self, CategoricalSamples};
use mlx_rs::{Array, Dtype, Index, idx};

use crate::{Error, Result};

/// Turns log-probabilities `[batch, vocab]` into token ids `[batch]`
/// (Python: the callable `make_sampler` returns).
pub type Sampler = Box<dyn Fn(&Array) -> Result<Array> + Send>;

/// Maps `(tokens, logits)` to new logits (Python: one entry of the list
/// `make_logits_processors` returns).
pub type LogitsProcessor = Box<dyn Fn(&Array, &Array) -> Result<Array> + Send>;

/// Python: `MIN_SAMPLING_TEMPERATURE`.
pub const MIN_SAMPLING_TEMPERATURE: f64 = 0.01;

/// Positive temperatures below [`MIN_SAMPLING_TEMPERATURE`] raised to it;
/// zero (greedy) kept (Python: `clamp_temperature`).
pub fn clamp_temperature(temperature: f64) -> f64 {
    if 0.0 < temperature && temperature < MIN_SAMPLING_TEMPERATURE {
        MIN_SAMPLING_TEMPERATURE
    } else {
        temperature
    }
}

/// The keyword arguments of Python's `make_sampler`, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerArgs {
    /// Temperature; 0 takes the argmax (`temp`, 0.0).
    pub temp: f64,
    /// Nucleus mass, active in (0, 1) (`top_p`, 0.0).
    pub top_p: f64,
    /// Minimum probability relative to the top token, active when non-zero
    /// (`min_p`, 0.0).
    pub min_p: f64,
    /// Tokens min-p never removes (`min_tokens_to_keep`, 1).
    pub min_tokens_to_keep: i32,
    /// Keep only the `top_k` most likely tokens, active when positive
    /// (`top_k`, 0).
    pub top_k: i32,
}

impl Default for SamplerArgs {
    fn default() -> Self {
        Self {
            temp: 0.0,
            top_p: 0.0,
            min_p: 0.0,
            min_tokens_to_keep: 1,
            top_k: 0,
        }
    }
}

/// A sampler of log-probabilities (Python: `make_sampler`): argmax at
/// temperature 0, else top-p, min-p and top-k filters in that order, then a
/// categorical draw from MLX's global key.
pub fn make_sampler(args: SamplerArgs) -> Sampler {
    if args.temp == 0.0 {
        return Box::new(|x: &Array| Ok(ops::argmax(x, Some(-1), false)?));
    }
    let temp = clamp_temperature(args.temp);
    Box::new(move |logprobs: &Array| {
        let mut logprobs = logprobs.clone();
        if args.top_p > 0.0 && args.top_p < 1.0 {
            logprobs = apply_top_p(&logprobs, args.top_p)?;
        }
        if args.min_p != 0.0 {
            logprobs = apply_min_p(&logprobs, args.min_p, args.min_tokens_to_keep)?;
        }
        if args.top_k > 0 {
            logprobs = apply_top_k(&logprobs, args.top_k)?;
        }
        categorical_sampling(&logprobs, temp)
    })
}

/// The arguments of Python's `make_logits_processors`, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitsProcessorArgs {
    /// Additive bias per token id (`logit_bias`, none).
    pub logit_bias: Option<HashMap<u32, f64>>,
    /// Sign-aware multiplicative penalty (`repetition_penalty`, none).
    pub repetition_penalty: Option<f64>,
    /// Tokens it looks back over (`repetition_context_size`, 20).
    pub repetition_context_size: i32,
    /// Additive penalty for tokens present (`presence_penalty`, none).
    pub presence_penalty: Option<f64>,
    /// Tokens it looks back over (`presence_context_size`, 20).
    pub presence_context_size: i32,
    /// Additive penalty per occurrence (`frequency_penalty`, none).
    pub frequency_penalty: Option<f64>,
    /// Tokens it looks back over (`frequency_context_size`, 20).
    pub frequency_context_size: i32,
}

impl Default for LogitsProcessorArgs {
    fn default() -> Self {
        Self {
            logit_bias: None,
            repetition_penalty: None,
            repetition_context_size: 20,
            presence_penalty: None,
            presence_context_size: 20,
            frequency_penalty: None,
            frequency_context_size: 20,
        }
    }
}

impl LogitsProcessorArgs {
    /// Checks the penalties, their context sizes and the logit bias before
    /// any work (called by `GenerateParams::validate`).
    ///
    /// Rejected, with an [`Error::InvalidParameter`] naming the parameter,
    /// its value and the fix (NaN fails every check):
    ///
    /// - `repetition_penalty` negative (Python's message) or not finite;
    ///   0 turns it off, as in Python;
    /// - `presence_penalty`, `frequency_penalty` or a `logit_bias` value
    ///   not finite (Python checks none of them);
    /// - a context size below 1 (Python's `tokens[-0:]` would silently
    ///   take every token, and a negative size would skip the first ones).
    pub fn validate(&self) -> Result<()> {
        if let Some(penalty) = self.repetition_penalty {
            if penalty < 0.0 {
                // Python's `make_repetition_penalty` message.
                return Err(invalid_parameter(
                    "repetition_penalty",
                    py_float(penalty),
                    format!(
                        "repetition_penalty: penalty must be a non-negative float, got {}",
                        py_float(penalty)
                    ),
                ));
            }
            if !penalty.is_finite() {
                return Err(invalid_parameter(
                    "repetition_penalty",
                    py_float(penalty),
                    format!(
                        "repetition_penalty must be a finite number >= 0 (1 leaves the logits \
                         unchanged, 0 turns it off), got {}",
                        py_float(penalty)
                    ),
                ));
            }
        }
        for (name, penalty) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(penalty) = penalty.filter(|p| !p.is_finite()) {
                return Err(invalid_parameter(
                    name,
                    py_float(penalty),
                    format!(
                        "{name} must be a finite number (0 turns it off), got {}",
                        py_float(penalty)
                    ),
                ));
            }
        }
        for (name, size) in [
            ("repetition_context_size", self.repetition_context_size),
            ("presence_context_size", self.presence_context_size),
            ("frequency_context_size", self.frequency_context_size),
        ] {
            if size < 1 {
                return Err(invalid_parameter(
                    name,
                    size.to_string(),
                    format!(
                        "{name} must be >= 1 (the number of recent tokens the penalty looks at), \
                         got {size}"
                    ),
                ));
            }
        }
        if let Some(bias) = &self.logit_bias {
            // The smallest id first, so the message does not depend on the
            // map's order.
            let bad = bias
                .iter()
                .filter(|(_, value)| !value.is_finite())
                .min_by_key(|&(&id, _)| id);
            if let Some((id, &value)) = bad {
                return Err(invalid_parameter(
                    "logit_bias",
                    py_float(value),
                    format!(
                        "logit_bias[{id}] must be a finite number, got {}",
                        py_float(value)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// An [`Error::InvalidParameter`].
pub(crate) fn invalid_parameter(name: &'static str, value: String, message: String) -> Error {
    Error::InvalidParameter {
        name,
        value,
        message,
    }
}

/// A float as Python's `str` writes it in messages: `nan`, `inf`, `-1.0`,
/// `0.5`.
pub(crate) fn py_float(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{value:?}")
    }
}

/// A penalty processor's constructor: `(penalty, context_size)`.
type MakePenalty = fn(f64, i32) -> Result<LogitsProcessor>;

/// The logits processors, in Python's order: logit bias, then repetition,
/// presence and frequency penalties, each only when set and non-zero
/// (Python: `make_logits_processors`).
pub fn make_logits_processors(args: &LogitsProcessorArgs) -> Result<Vec<LogitsProcessor>> {
    let mut processors: Vec<LogitsProcessor> = Vec::new();
    if let Some(bias) = args.logit_bias.as_ref().filter(|b| !b.is_empty()) {
        let (ids, values): (Vec<u32>, Vec<f32>) =
            bias.iter().map(|(&id, &value)| (id, value as f32)).unzip();
        let n = i32::try_from(ids.len())
            .map_err(|_| Error::InvalidArgument("logit_bias has too many entries".into()))?;
        let indices = Array::from_slice(&ids, &[n])?;
        let values = Array::from_slice(&values, &[n])?;
        processors.push(Box::new(move |_tokens: &Array, logits: &Array| {
            at_columns_add(logits, &indices, &values)
        }));
    }
    let penalties: [(MakePenalty, Option<f64>, i32); 3] = [
        (
            make_repetition_penalty,
            args.repetition_penalty,
            args.repetition_context_size,
        ),
        (
            make_presence_penalty,
            args.presence_penalty,
            args.presence_context_size,
        ),
        (
            make_frequency_penalty,
            args.frequency_penalty,
            args.frequency_context_size,
        ),
    ];
    for (make_penalty, penalty, context_size) in penalties {
        if let Some(penalty) = penalty.filter(|&p| p != 0.0) {
            processors.push(make_penalty(penalty, context_size)?);
        }
    }
    Ok(processors)
}

/// Python's `logits.at[:, columns].add(values)`: repeated columns add up.
fn at_columns_add(logits: &Array, columns: &Array, values: &Array) -> Result<Array> {
    let batch = logits.dim(0)?;
    let k = columns.dim(0)?;
    // Updates of `scatter_add` along axis 1: one [batch, 1] block per index.
    let updates = ops::broadcast_to(
        &ops::reshape(&values.as_type(logits.dtype())?, &[k, 1, 1])?,
        &[k, batch, 1],
    )?;
    let columns = columns.as_type(Dtype::Int32)?;
    Ok(ops::scatter_add(logits, &[columns], &updates, &[1])?)
}

/// Log-probabilities outside the `top_k` largest set to `-inf` (Python:
/// `apply_top_k`); `top_k` must lie in `(0, vocab)`.
pub fn apply_top_k(logprobs: &Array, top_k: i32) -> Result<Array> {
    let vocab_size = logprobs.dim(-1)?;
    if !(0 < top_k && top_k < vocab_size) {
        return Err(Error::InvalidArgument(format!(
            "`top_k` has to be an integer in the (0, {vocab_size}] interval, but is {top_k}."
        )));
    }
    let mask_idx = ops::argpartition(&ops::negative(logprobs)?, top_k - 1, Some(-1))?;
    let mask_idx = mask_idx.index(idx![mlx_rs::Ellipsis, top_k..])?;
    let neg_inf = ops::full(&[], f64::NEG_INFINITY, Some(logprobs.dtype()))?;
    let shape = mask_idx.shape().to_vec();
    let neg_inf = ops::broadcast_to(&neg_inf, &shape)?;
    Ok(ops::put_along_axis(logprobs, &mask_idx, &neg_inf, -1)?)
}

/// Tokens less likely than `min_p` times the top token's probability set
/// to `-inf`, keeping at least `min_tokens_to_keep` (Python: `apply_min_p`).
///
/// Python 0.7.6 raises a TypeError when `min_tokens_to_keep > 1` (it passes
/// a bool to `mx.put_along_axis`); this computes what it means to.
pub fn apply_min_p(logprobs: &Array, min_p: f64, min_tokens_to_keep: i32) -> Result<Array> {
    if !(0.0..=1.0).contains(&min_p) {
        return Err(Error::InvalidArgument(format!(
            "`min_p` has to be a float in the [0, 1] interval, but is {min_p}"
        )));
    }
    if min_tokens_to_keep < 1 {
        return Err(Error::InvalidArgument(format!(
            "`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}"
        )));
    }
    let top_logprobs = ops::max(logprobs, -1, true)?;
    let scaled_min_p = ops::add(&top_logprobs, min_p.ln())?;
    let mut tokens_to_remove = ops::less(logprobs, &scaled_min_p)?;
    if min_tokens_to_keep > 1 {
        let top_indices = ops::argpartition(logprobs, -min_tokens_to_keep, Some(-1))?;
        let top_indices = top_indices.index(idx![mlx_rs::Ellipsis, (-min_tokens_to_keep)..])?;
        let keep = ops::broadcast_to(&Array::from(false), top_indices.shape())?;
        tokens_to_remove = ops::put_along_axis(&tokens_to_remove, &top_indices, &keep, -1)?;
    }
    Ok(ops::r#where(
        &tokens_to_remove,
        f64::NEG_INFINITY,
        logprobs,
    )?)
}

/// Tokens outside the smallest set holding `top_p` of the probability mass
/// set to `-inf` (Python: `apply_top_p`).
pub fn apply_top_p(logprobs: &Array, top_p: f64) -> Result<Array> {
    // An exclusive reverse scan keeps the maximum for any positive top_p
    // without subtracting a tiny probability from 1.
    let sorted_logprobs = ops::sort(logprobs, Some(-1))?;
    let sorted_probs = ops::exp(&sorted_logprobs.as_type(Dtype::Float32)?)?;
    let mass_above = ops::cumsum(
        &sorted_probs,
        Some(-1),
        AccumulateOptions {
            reverse: true,
            inclusive: false,
            dtype: None,
        },
    )?;
    let first: &[Index] = idx![mlx_rs::Ellipsis, ..1];
    let total_mass = ops::add(&mass_above.index(first)?, &sorted_probs.index(first)?)?;
    let dropped = ops::greater_equal(&mass_above, &ops::multiply(&total_mass, top_p)?)?;
    let num_dropped = ops::sum(&dropped, -1, true)?;
    let threshold = ops::take_along_axis(&sorted_logprobs, &num_dropped, -1)?;
    Ok(ops::r#where(
        &ops::less(logprobs, &threshold)?,
        f64::NEG_INFINITY,
        logprobs,
    )?)
}

/// A draw from `softmax(logits / temp)` with MLX's global key (Python:
/// `categorical_sampling`).
pub fn categorical_sampling(logits: &Array, temp: f64) -> Result<Array> {
    let scaled = ops::multiply(logits, 1.0 / temp)?;
    Ok(random::categorical(
        &scaled,
        -1,
        CategoricalSamples::One,
        None,
    )?)
}

/// The last `context_size` entries of `tokens` (Python: `tokens[-n:]`).
fn context_window(tokens: &Array, context_size: i32) -> Result<Array> {
    let window = if context_size == 0 {
        // Python's `tokens[-0:]` is the whole array.
        tokens.clone()
    } else {
        tokens.index(idx![(-context_size)..])?
    };
    Ok(window.as_type(Dtype::Int32)?)
}

/// The repetition penalty processor (Python: `make_repetition_penalty`):
/// logits of the last `context_size` tokens divided by `penalty` when
/// positive, multiplied when negative.
pub fn make_repetition_penalty(penalty: f64, context_size: i32) -> Result<LogitsProcessor> {
    if penalty < 0.0 || penalty.is_nan() {
        return Err(Error::InvalidArgument(format!(
            "penalty must be a non-negative float, got {penalty}"
        )));
    }
    Ok(Box::new(move |tokens: &Array, logits: &Array| {
        if tokens.size() == 0 {
            return Ok(logits.clone());
        }
        let tokens = context_window(tokens, context_size)?;
        let columns: &[Index] = idx![.., &tokens];
        let selected = logits.index(columns)?;
        let selected = ops::r#where(
            &ops::less(&selected, 0.0)?,
            &ops::multiply(&selected, penalty)?,
            &ops::divide(&selected, penalty)?,
        )?;
        let mut logits = logits.clone();
        logits.index_put(columns, &selected)?;
        Ok(logits)
    }))
}

/// The presence penalty processor (Python: `make_presence_penalty`):
/// `penalty` subtracted once from each token of the last `context_size`.
pub fn make_presence_penalty(penalty: f64, context_size: i32) -> Result<LogitsProcessor> {
    Ok(Box::new(move |tokens: &Array, logits: &Array| {
        if tokens.size() == 0 {
            return Ok(logits.clone());
        }
        let tokens = context_window(tokens, context_size)?;
        let columns: &[Index] = idx![.., &tokens];
        let lowered = ops::subtract(&logits.index(columns)?, penalty)?;
        let mut logits = logits.clone();
        logits.index_put(columns, &lowered)?;
        Ok(logits)
    }))
}

/// The frequency penalty processor (Python: `make_frequency_penalty`):
/// `penalty` subtracted once per occurrence in the last `context_size`.
pub fn make_frequency_penalty(penalty: f64, context_size: i32) -> Result<LogitsProcessor> {
    Ok(Box::new(move |tokens: &Array, logits: &Array| {
        if tokens.size() == 0 {
            return Ok(logits.clone());
        }
        let tokens = context_window(tokens, context_size)?;
        let k = tokens.dim(0)?;
        let minus = ops::full(&[k], -penalty, Some(logits.dtype()))?;
        at_columns_add(logits, &tokens, &minus)
    }))
}

/// Top-p sampling of raw logits at `temperature`, with an optional key
/// (Python: `top_p_sampling`); temperature 0 takes the argmax.
pub fn top_p_sampling(
    logits: &Array,
    top_p: f64,
    temperature: f64,
    key: Option<&Array>,
) -> Result<Array> {
    if temperature == 0.0 {
        return Ok(ops::argmax(logits, Some(-1), false)?);
    }
    let logits = ops::divide(
        &logits.as_type(Dtype::Float32)?,
        clamp_temperature(temperature),
    )?;
    let mut logprobs = ops::subtract(&logits, &ops::logsumexp(&logits, -1, true)?)?;
    if 0.0 < top_p && top_p < 1.0 {
        logprobs = apply_top_p(&logprobs, top_p)?;
    }
    Ok(random::categorical(
        &logprobs,
        -1,
        CategoricalSamples::One,
        key,
    )?)
}
