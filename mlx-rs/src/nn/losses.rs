//! Loss functions: Python's `mlx.nn.losses`.
//!
//! Each function is a one to one port of its Python counterpart: same
//! name, same formula, same defaults, same argument order. Python's
//! `reduction="none" | "mean" | "sum"` string is a [`Reduction`]; functions
//! with more than two optional arguments take an options struct whose
//! `Default` gives Python's defaults. Python's `ValueError`s (shapes that do
//! not match, a bad `label_smoothing`) are [`Error::InvalidArgument`] with
//! Python's message; MLX's own failures are [`Error::Mlx`].
//!
//! ```
//! use mlx_rs::{Array, nn::losses::{self, CrossEntropyOptions, Reduction}};
//!
//! let logits = Array::from_slice(&[2.0f32, -1.0, -1.0, 2.0], &[2, 2])?;
//! let targets = Array::from_slice(&[0i32, 1], &[2])?;
//! let loss = losses::cross_entropy(&logits, &targets, CrossEntropyOptions::default())?;
//! assert!((loss.to_vec::<f32>()?[0] - 0.0485873).abs() < 1e-6);
//!
//! let mse = losses::mse_loss(&logits, &logits, Reduction::Sum)?;
//! assert_eq!(mse.item::<f32>()?, 0.0);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::linalg::{self, NormOptions};
use crate::ops;
use crate::stream::{DeviceType, Stream};

/// How a loss is reduced over its elements: Python's `reduction` string
/// (`Literal["none", "mean", "sum"]`).
///
/// `Default` is [`Reduction::None`], the default of Python's `_reduce`;
/// each loss has its own default, given in its documentation and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// No reduction: the loss of every element (`"none"`).
    #[default]
    None,
    /// The mean over all elements (`"mean"`).
    Mean,
    /// The sum over all elements (`"sum"`).
    Sum,
}

impl Reduction {
    /// Python's name of the reduction: `"none"`, `"mean"` or `"sum"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }

    /// `loss` reduced (Python's `_reduce(loss, reduction)`).
    pub fn reduce(self, loss: Array) -> Result<Array> {
        match self {
            Reduction::None => Ok(loss),
            Reduction::Mean => ops::mean(&loss, ops::Axes::All, false),
            Reduction::Sum => ops::sum(&loss, ops::Axes::All, false),
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reduction {
    type Err = Error;

    /// Parses Python's reduction string; anything else is Python's
    /// `_reduce` error, as [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<Reduction> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            other => Err(Error::invalid(format!(
                "Invalid reduction {other:?}. Must be one of ('none', 'mean', 'sum')."
            ))),
        }
    }
}

/// A shape as Python prints a tuple: `(2, 3)`, `(4,)`, `()`.
fn py_shape(shape: &[i32]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(i32::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Python's check that optional `weights` have the loss's shape, then
/// `loss * weights`.
fn apply_weights(loss: Array, weights: Option<&Array>) -> Result<Array> {
    match weights {
        None => Ok(loss),
        Some(weights) if weights.shape() != loss.shape() => Err(Error::invalid(format!(
            "Weights with shape {} is not the same as output loss with shape {}.",
            py_shape(weights.shape()),
            py_shape(loss.shape())
        ))),
        Some(weights) => ops::multiply(&loss, weights),
    }
}

/// Python's check that two arrays have the same shape, with its message
/// `"{a_name} shape {a} does not match {b_name} shape {b}."`.
fn check_same_shape(a_name: &str, a: &Array, b_name: &str, b: &Array) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{a_name} shape {} does not match {b_name} shape {}.",
            py_shape(a.shape()),
            py_shape(b.shape())
        )))
    }
}

/// Options of [`cross_entropy`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct CrossEntropyOptions<'a> {
    /// Weights for each target, of the shape of the unreduced loss (`None`).
    pub weights: Option<&'a Array>,
    /// The axis over which to compute the softmax (-1).
    pub axis: i32,
    /// The label smoothing factor, in `[0, 1)` (0).
    pub label_smoothing: f32,
    /// The reduction of the output ([`Reduction::None`]).
    pub reduction: Reduction,
}

impl Default for CrossEntropyOptions<'_> {
    fn default() -> Self {
        CrossEntropyOptions {
            weights: None,
            axis: -1,
            label_smoothing: 0.0,
            reduction: Reduction::None,
        }
    }
}

/// The cross entropy loss of unnormalized `logits` against `targets`
/// (`nn.losses.cross_entropy`).
///
/// `targets` are class indices (the shape of `logits` without `axis`) or
/// probabilities (the shape of `logits`). As in Python, on a CUDA GPU,
/// integer class indices with no label smoothing over the last axis use
/// the fused `mx.fast.cross_entropy` (the GPU counts as the default device
/// when the current stream is on `gpu:0`).
pub fn cross_entropy(
    logits: &Array,
    targets: &Array,
    options: CrossEntropyOptions<'_>,
) -> Result<Array> {
    let CrossEntropyOptions {
        weights,
        axis,
        label_smoothing,
        reduction,
    } = options;
    // Python's comparisons, kept as they are: NaN passes (and then
    // smooths nothing), where `!(0.0..1.0).contains(..)` would reject it.
    #[allow(clippy::manual_range_contains)]
    if label_smoothing < 0.0 || label_smoothing >= 1.0 {
        return Err(Error::invalid(format!(
            "Label smoothing must be in [0, 1), got {label_smoothing:?}."
        )));
    }

    // Whether targets are class indices or probabilities.
    let targets_as_probs = targets.ndim() == logits.ndim();

    // Python's `_drop_dim`: `list(shape).pop(axis)`.
    let drop_dim = |shape: &[i32], axis: i32| -> Result<Vec<i32>> {
        let n = shape.len() as i64;
        let at = if axis < 0 {
            i64::from(axis) + n
        } else {
            i64::from(axis)
        };
        if !(0..n).contains(&at) {
            return Err(Error::invalid(format!(
                "Axis {axis} is out of range for logits shape {}.",
                py_shape(shape)
            )));
        }
        let mut shape = shape.to_vec();
        shape.remove(at as usize);
        Ok(shape)
    };

    let mismatch = if targets_as_probs {
        targets.shape() != logits.shape()
    } else {
        targets.shape() != drop_dim(logits.shape(), axis)?.as_slice()
    };
    if mismatch {
        return Err(Error::invalid(format!(
            "Targets shape {} does not match logits shape {}.",
            py_shape(targets.shape()),
            py_shape(logits.shape())
        )));
    }

    let use_fast = !targets_as_probs
        && label_smoothing == 0.0
        && (axis == -1 || i64::from(axis) == logits.ndim() as i64 - 1)
        && logits.dtype().category() == crate::DtypeCategory::Floating
        && targets.dtype().is_integer()
        && crate::gpu::cuda::is_available()?
        && on_default_gpu()?;

    let loss = if use_fast {
        crate::fast::cross_entropy(logits, targets)?.as_type(logits.dtype())?
    } else {
        let max = ops::max(logits, axis, true)?;
        let logits = ops::subtract(logits, ops::stop_gradient(&max)?)?;

        let score = if targets_as_probs {
            ops::sum(&ops::multiply(&logits, targets)?, axis, false)?
        } else {
            let picked = ops::take_along_axis(&logits, &ops::expand_dims(targets, axis)?, axis)?;
            ops::squeeze(&picked, axis)?
        };

        let logsumexp_logits = ops::logsumexp(&logits, axis, false)?;
        if label_smoothing > 0.0 {
            let adjusted_score = ops::multiply(1.0 - f64::from(label_smoothing), &score)?;

            let mean_logits = ops::mean(&logits, axis, false)?;
            let smoothed_loss = ops::multiply(ops::negative(&mean_logits)?, label_smoothing)?;

            ops::add(
                ops::subtract(&logsumexp_logits, &adjusted_score)?,
                &smoothed_loss,
            )?
        } else {
            ops::subtract(&logsumexp_logits, &score)?
        }
    };

    // Apply weights if provided.
    let loss = apply_weights(loss, weights)?;

    reduction.reduce(loss)
}

/// Python's `mx.default_device() == mx.gpu`, read from the current stream
/// (Python's `with mx.stream(...)` sets the default device as well).
fn on_default_gpu() -> Result<bool> {
    let device = Stream::current()?.device()?;
    Ok(device.device_type()? == DeviceType::Gpu && device.index()? == 0)
}

/// Options of [`binary_cross_entropy`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct BinaryCrossEntropyOptions<'a> {
    /// Weights for each target, of the shape of the unreduced loss (`None`).
    pub weights: Option<&'a Array>,
    /// Whether `inputs` are logits rather than probabilities (true).
    pub with_logits: bool,
    /// The reduction of the output ([`Reduction::Mean`]).
    pub reduction: Reduction,
}

impl Default for BinaryCrossEntropyOptions<'_> {
    fn default() -> Self {
        BinaryCrossEntropyOptions {
            weights: None,
            with_logits: true,
            reduction: Reduction::Mean,
        }
    }
}

/// The binary cross entropy loss of `inputs` (logits, or probabilities when
/// `with_logits` is false) against binary `targets`
/// (`nn.losses.binary_cross_entropy`).
///
/// With probabilities, the logarithms are clipped below at -100, as in
/// Python.
pub fn binary_cross_entropy(
    inputs: &Array,
    targets: &Array,
    options: BinaryCrossEntropyOptions<'_>,
) -> Result<Array> {
    check_same_shape("Inputs", inputs, "targets", targets)?;

    let loss = if options.with_logits {
        ops::subtract(
            ops::logaddexp(0.0, inputs)?,
            ops::multiply(inputs, targets)?,
        )?
    } else {
        let log_inputs_clip = ops::clip(&ops::log(inputs)?, -100, None)?;
        let inv = ops::subtract(1, inputs)?;
        let log_inputs_inv_clip = ops::clip(&ops::log(&inv)?, -100, None)?;
        let positive = ops::multiply(targets, &log_inputs_clip)?;
        let negative = ops::multiply(ops::subtract(1, targets)?, &log_inputs_inv_clip)?;
        ops::negative(&ops::add(&positive, &negative)?)?
    };

    // Apply weights if provided.
    let loss = apply_weights(loss, options.weights)?;

    options.reduction.reduce(loss)
}

/// The L1 loss `|predictions - targets|` (`nn.losses.l1_loss`); Python's
/// default reduction is [`Reduction::Mean`].
pub fn l1_loss(predictions: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    check_same_shape("Predictions", predictions, "targets", targets)?;
    let loss = ops::abs(&ops::subtract(predictions, targets)?)?;

    reduction.reduce(loss)
}

/// The squared error loss `(predictions - targets)²` (`nn.losses.mse_loss`);
/// Python's default reduction is [`Reduction::Mean`].
pub fn mse_loss(predictions: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    check_same_shape("Predictions", predictions, "targets", targets)?;

    let loss = ops::square(&ops::subtract(predictions, targets)?)?;
    reduction.reduce(loss)
}

/// The negative log likelihood loss of log probabilities `inputs` over
/// `axis` against class indices `targets` (`nn.losses.nll_loss`); Python's
/// defaults are `axis = -1` and [`Reduction::None`].
pub fn nll_loss(inputs: &Array, targets: &Array, axis: i32, reduction: Reduction) -> Result<Array> {
    let picked = ops::take_along_axis(inputs, &ops::expand_dims(targets, axis)?, axis)?;
    let loss = ops::negative(&ops::squeeze(&picked, axis)?)?;

    reduction.reduce(loss)
}

/// Options of [`gaussian_nll_loss`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianNllLossOptions {
    /// Whether to add the constant `0.5 * log(2π)` (false).
    pub full: bool,
    /// The lower bound of the variances, for stability (1e-6).
    pub eps: f32,
    /// The reduction of the output ([`Reduction::Mean`]).
    pub reduction: Reduction,
}

impl Default for GaussianNllLossOptions {
    fn default() -> Self {
        GaussianNllLossOptions {
            full: false,
            eps: 1e-6,
            reduction: Reduction::Mean,
        }
    }
}

/// The negative log likelihood of `targets` under Gaussians of means
/// `inputs` and variances `vars` (`nn.losses.gaussian_nll_loss`).
pub fn gaussian_nll_loss(
    inputs: &Array,
    targets: &Array,
    vars: &Array,
    options: GaussianNllLossOptions,
) -> Result<Array> {
    check_same_shape("Inputs", inputs, "targets", targets)?;
    check_same_shape("Inputs", inputs, "vars", vars)?;

    // For stability.
    let vars = ops::maximum(vars, options.eps)?;
    let squared = ops::square(&ops::subtract(targets, inputs)?)?;
    let inner = ops::add(ops::log(&vars)?, ops::divide(&squared, &vars)?)?;
    let mut loss = ops::multiply(0.5, &inner)?;

    if options.full {
        loss = ops::add(&loss, 0.5 * (2.0 * std::f64::consts::PI).ln())?;
    }

    options.reduction.reduce(loss)
}

/// The Kullback-Leibler divergence `sum(exp(targets) * (targets - inputs),
/// axis)` of log probabilities (`nn.losses.kl_div_loss`); Python's defaults
/// are `axis = -1` and [`Reduction::None`].
pub fn kl_div_loss(
    inputs: &Array,
    targets: &Array,
    axis: i32,
    reduction: Reduction,
) -> Result<Array> {
    let terms = ops::multiply(ops::exp(targets)?, ops::subtract(targets, inputs)?)?;
    let loss = ops::sum(&terms, axis, false)?;

    reduction.reduce(loss)
}

/// The smooth L1 loss: `0.5 d² / beta` where `d = |predictions - targets|
/// < beta`, else `d - 0.5 beta` (`nn.losses.smooth_l1_loss`); Python's
/// defaults are `beta = 1.0` and [`Reduction::Mean`].
pub fn smooth_l1_loss(
    predictions: &Array,
    targets: &Array,
    beta: f32,
    reduction: Reduction,
) -> Result<Array> {
    check_same_shape("Predictions", predictions, "targets", targets)?;

    let diff = ops::abs(&ops::subtract(predictions, targets)?)?;
    let beta = f64::from(beta);
    let quadratic = ops::divide(ops::multiply(0.5, ops::square(&diff)?)?, beta)?;
    let linear = ops::subtract(ops::abs(&diff)?, 0.5 * beta)?;
    let loss = ops::r#where(ops::less(&diff, beta)?, &quadratic, &linear)?;

    reduction.reduce(loss)
}

/// Options of [`triplet_loss`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletLossOptions {
    /// The axis of the samples' features (-1).
    pub axis: i32,
    /// The degree of the norm of the pairwise distances (2).
    pub p: i32,
    /// The margin of the loss (1.0).
    pub margin: f32,
    /// Added to the sum of powers before its `1 / p` power (1e-6).
    pub eps: f32,
    /// The reduction of the output ([`Reduction::None`]).
    pub reduction: Reduction,
}

impl Default for TripletLossOptions {
    fn default() -> Self {
        TripletLossOptions {
            axis: -1,
            p: 2,
            margin: 1.0,
            eps: 1e-6,
            reduction: Reduction::None,
        }
    }
}

/// The triplet loss `max(‖A - P‖_p - ‖A - N‖_p + margin, 0)` of anchors,
/// positives and negatives (`nn.losses.triplet_loss`).
pub fn triplet_loss(
    anchors: &Array,
    positives: &Array,
    negatives: &Array,
    options: TripletLossOptions,
) -> Result<Array> {
    let TripletLossOptions {
        axis,
        p,
        margin,
        eps,
        reduction,
    } = options;
    let distance = |other: &Array| -> Result<Array> {
        let powers = ops::power(ops::abs(&ops::subtract(anchors, other)?)?, p)?;
        let total = ops::add(ops::sum(&powers, axis, false)?, eps)?;
        ops::power(&total, 1.0 / f64::from(p))
    };
    let pos_dist = distance(positives)?;
    let neg_dist = distance(negatives)?;
    let loss = ops::maximum(ops::add(ops::subtract(&pos_dist, &neg_dist)?, margin)?, 0)?;
    reduction.reduce(loss)
}

/// The hinge loss `max(1 - inputs * targets, 0)` for targets of -1 or 1
/// (`nn.losses.hinge_loss`); Python's default reduction is
/// [`Reduction::None`].
pub fn hinge_loss(inputs: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    let loss = ops::maximum(ops::subtract(1, ops::multiply(inputs, targets)?)?, 0)?;

    reduction.reduce(loss)
}

/// The Huber loss: `0.5 a²` where `|a| <= delta`, else
/// `delta (|a| - 0.5 delta)`, for `a = inputs - targets`
/// (`nn.losses.huber_loss`); Python's defaults are `delta = 1.0` and
/// [`Reduction::None`].
pub fn huber_loss(
    inputs: &Array,
    targets: &Array,
    delta: f32,
    reduction: Reduction,
) -> Result<Array> {
    let errors = ops::subtract(inputs, targets)?;
    let abs_errors = ops::abs(&errors)?;
    let quadratic = ops::minimum(&abs_errors, delta)?;
    let linear = ops::subtract(&abs_errors, &quadratic)?;
    let loss = ops::add(
        ops::multiply(0.5, ops::power(&quadratic, 2)?)?,
        ops::multiply(delta, &linear)?,
    )?;

    reduction.reduce(loss)
}

/// The log cosh loss `log(cosh(inputs - targets))`, computed as
/// `logaddexp(e, -e) - log 2` (`nn.losses.log_cosh_loss`); Python's default
/// reduction is [`Reduction::None`].
pub fn log_cosh_loss(inputs: &Array, targets: &Array, reduction: Reduction) -> Result<Array> {
    let errors = ops::subtract(inputs, targets)?;
    let loss = ops::subtract(
        ops::logaddexp(&errors, ops::negative(&errors)?)?,
        std::f64::consts::LN_2,
    )?;

    reduction.reduce(loss)
}

/// Options of [`cosine_similarity_loss`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSimilarityLossOptions {
    /// The embedding axis (1).
    pub axis: i32,
    /// The lower bound of the denominator (1e-8).
    pub eps: f32,
    /// The reduction of the output ([`Reduction::None`]).
    pub reduction: Reduction,
}

impl Default for CosineSimilarityLossOptions {
    fn default() -> Self {
        CosineSimilarityLossOptions {
            axis: 1,
            eps: 1e-8,
            reduction: Reduction::None,
        }
    }
}

/// The cosine similarity `x1 · x2 / max(‖x1‖ ‖x2‖, eps)` over `axis`
/// (`nn.losses.cosine_similarity_loss`).
pub fn cosine_similarity_loss(
    x1: &Array,
    x2: &Array,
    options: CosineSimilarityLossOptions,
) -> Result<Array> {
    let CosineSimilarityLossOptions {
        axis,
        eps,
        reduction,
    } = options;
    let x1_norm = linalg::norm(x1, NormOptions::default().axis(axis))?;
    let x2_norm = linalg::norm(x2, NormOptions::default().axis(axis))?;

    let dot = ops::sum(&ops::multiply(x1, x2)?, axis, false)?;
    let loss = ops::divide(&dot, ops::maximum(ops::multiply(&x1_norm, &x2_norm)?, eps)?)?;

    reduction.reduce(loss)
}

/// The margin ranking loss `max(0, -targets * (inputs1 - inputs2) +
/// margin)` for targets of 1 or -1 (`nn.losses.margin_ranking_loss`);
/// Python's defaults are `margin = 0.0` and [`Reduction::None`].
pub fn margin_ranking_loss(
    inputs1: &Array,
    inputs2: &Array,
    targets: &Array,
    margin: f32,
    reduction: Reduction,
) -> Result<Array> {
    if !(inputs1.shape() == inputs2.shape() && inputs2.shape() == targets.shape()) {
        return Err(Error::invalid(format!(
            "The shapes of the arguments do not match. The provided shapes are \
             inputs1.shape={}, inputs2.shape={}, and targets.shape={}.",
            py_shape(inputs1.shape()),
            py_shape(inputs2.shape()),
            py_shape(targets.shape())
        )));
    }

    let differences = ops::subtract(inputs1, inputs2)?;
    let scaled = ops::multiply(ops::negative(targets)?, &differences)?;
    let loss = ops::maximum(0, ops::add(&scaled, margin)?)?;

    reduction.reduce(loss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_shape_prints_tuples() {
        assert_eq!(py_shape(&[]), "()");
        assert_eq!(py_shape(&[4]), "(4,)");
        assert_eq!(py_shape(&[2, 3]), "(2, 3)");
    }

    #[test]
    fn reduction_parses_python_strings() {
        for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            assert_eq!(r.as_str().parse::<Reduction>().unwrap(), r);
        }
        assert!(matches!(
            "avg".parse::<Reduction>(),
            Err(Error::InvalidArgument(m)) if m.contains("Invalid reduction")
        ));
    }
}
