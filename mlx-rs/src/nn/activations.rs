//! Activation functions: the functions of Python's
//! `mlx/nn/layers/activations.py`, one to one, with the same formulas and
//! defaults.
//!
//! ```
//! use mlx_rs::{Array, nn::activations};
//!
//! let x = Array::from_slice(&[-2.0f32, 0.0, 3.0], &[3])?;
//! let y = activations::relu(&x)?;
//! assert_eq!(y.to_vec::<f32>()?, [0.0, 0.0, 3.0]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Scalar parameters (`alpha`, `negative_slope`...) are weak scalars, as
//! Python's floats are: a bfloat16 input gives a bfloat16 result.
//!
//! Python wraps most of these in `mx.compile(shapeless=True)`. Here
//! [`gelu`], [`gelu_approx`], [`gelu_fast_approx`] and [`silu`], the
//! activations of the ported models, are compiled too; the rest are plain
//! ops. Compiling `gelu` is needed for Python's values: MLX's fused CPU
//! kernel (compiled at run time where a C++ compiler is found) computes
//! `erf` differently from the `erf` primitive, by one float32 ulp on about
//! a third of the values (measured with MLX 0.32.2 on x86-64). For every
//! other function here the compiled and plain forms gave identical
//! float32 and bfloat16 values on a million normal samples; the other
//! three are compiled because one fused kernel costs less a call than
//! their three to eight ops, which matters in small models' decoding.
//!
//! The layer classes (`nn.ReLU`, `nn.GELU`, `nn.PReLU`...) come with the
//! `Module` trait.

use std::cell::OnceCell;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ops::{self, Axes};
use crate::transforms::Function;

/// `$graph(x)` through a shapeless compiled function, one per thread (a
/// [`Function`] is not `Send`), made on first use: Python's
/// `@partial(mx.compile, shapeless=True)`.
macro_rules! compiled {
    ($graph:ident, $x:expr) => {{
        thread_local! {
            static COMPILED: OnceCell<Function> = const { OnceCell::new() };
        }
        COMPILED.with(|cell| apply_compiled(cell, $graph, stringify!($graph), $x))
    }};
}

/// Applies the compiled form of `graph` kept in `cell`, compiling it first
/// if the cell is empty.
fn apply_compiled(
    cell: &OnceCell<Function>,
    graph: fn(&Array) -> Result<Array>,
    name: &str,
    x: &Array,
) -> Result<Array> {
    let compiled = Function::compiled_in(
        cell,
        move |args: &[Array]| match args {
            [x] => Ok(vec![graph(x)?]),
            _ => Err(Error::invalid(format!(
                "an activation takes one array, got {}",
                args.len()
            ))),
        },
        true,
    )?;
    compiled
        .apply(std::slice::from_ref(x))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid(format!("compiled {name} returned no array")))
}

/// The logistic sigmoid `1 / (1 + exp(-x))` (`nn.sigmoid`).
pub fn sigmoid(x: &Array) -> Result<Array> {
    ops::sigmoid(x)
}

/// The Rectified Linear Unit `max(x, 0)` (`nn.relu`).
pub fn relu(x: &Array) -> Result<Array> {
    ops::maximum(x, 0)
}

/// The ReLU² activation `max(x, 0)^2` (`nn.relu2`).
pub fn relu2(x: &Array) -> Result<Array> {
    ops::square(&ops::maximum(x, 0)?)
}

/// The Rectified Linear Unit 6 `min(max(x, 0), 6)` (`nn.relu6`).
pub fn relu6(x: &Array) -> Result<Array> {
    ops::minimum(ops::maximum(x, 0)?, 6.0)
}

/// The Leaky Rectified Linear Unit `max(negative_slope * x, x)`
/// (`nn.leaky_relu`; Python's default `negative_slope` is `0.01`).
pub fn leaky_relu(x: &Array, negative_slope: f32) -> Result<Array> {
    ops::maximum(ops::multiply(negative_slope, x)?, x)
}

/// The Log Softmax `x - log(sum(exp(x)))` over `axis` (`nn.log_softmax`;
/// Python's default `axis` is `-1`). As in Python, `x` is first shifted by
/// its maximum over `axis`, behind a stop-gradient.
pub fn log_softmax(x: &Array, axis: impl Into<Axes>) -> Result<Array> {
    let axis = axis.into();
    let max = ops::max(x, axis.clone(), true)?;
    let x = ops::subtract(x, ops::stop_gradient(&max)?)?;
    let lse = ops::logsumexp(&x, axis, true)?;
    ops::subtract(&x, lse)
}

/// The Exponential Linear Unit `where(x > 0, x, alpha * (exp(x) - 1))`
/// (`nn.elu`; Python's default `alpha` is `1.0`).
pub fn elu(x: &Array, alpha: f32) -> Result<Array> {
    let negative = ops::multiply(alpha, ops::subtract(ops::exp(x)?, 1)?)?;
    ops::r#where(ops::greater(x, 0)?, x, negative)
}

/// The Softmax `exp(x_i) / sum_j exp(x_j)` over `axis` (`nn.softmax`;
/// Python's default `axis` is `-1`). Calls `mx.softmax` with
/// `precise=False`, as Python does.
pub fn softmax(x: &Array, axis: impl Into<Axes>) -> Result<Array> {
    ops::softmax(x, axis, false)
}

/// The Softplus `log(1 + exp(x))`, computed as `logaddexp(x, 0)`
/// (`nn.softplus`).
pub fn softplus(x: &Array) -> Result<Array> {
    ops::logaddexp(x, 0)
}

/// The Softsign `x / (1 + |x|)` (`nn.softsign`).
pub fn softsign(x: &Array) -> Result<Array> {
    ops::divide(x, ops::add(1, ops::abs(x)?)?)
}

/// The Softshrink: `x - lambd * sign(x)` where `|x| > lambd`, else `0`
/// (`nn.softshrink`; Python's default `lambd` is `0.5`).
pub fn softshrink(x: &Array, lambd: f32) -> Result<Array> {
    let shrunk = ops::subtract(x, ops::multiply(ops::sign(x)?, lambd)?)?;
    ops::r#where(ops::greater(ops::abs(x)?, lambd)?, shrunk, 0)
}

/// The Continuously Differentiable Exponential Linear Unit
/// `max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1)` (`nn.celu`; Python's
/// default `alpha` is `1.0`).
pub fn celu(x: &Array, alpha: f32) -> Result<Array> {
    let negative = ops::exp(&ops::divide(ops::minimum(x, 0.0)?, alpha)?)?;
    let negative = ops::multiply(alpha, ops::subtract(negative, 1)?)?;
    ops::add(ops::maximum(x, 0.0)?, negative)
}

/// The Sigmoid Linear Unit (Swish) `x * sigmoid(x)` (`nn.silu`).
pub fn silu(x: &Array) -> Result<Array> {
    compiled!(silu_graph, x)
}

fn silu_graph(x: &Array) -> Result<Array> {
    ops::multiply(x, ops::sigmoid(x)?)
}

/// The Log Sigmoid `log(sigmoid(x)) = -softplus(-x)` (`nn.log_sigmoid`).
pub fn log_sigmoid(x: &Array) -> Result<Array> {
    ops::negative(&softplus(&ops::negative(x)?)?)
}

/// The Gaussian Error Linear Unit `x * (1 + erf(x / sqrt(2))) / 2`
/// (`nn.gelu`), compiled (shapeless) as Python's is, so that it gives
/// Python's values where MLX fuses it (the module docs say why). See
/// [`gelu_approx`] and [`gelu_fast_approx`] for faster approximations.
pub fn gelu(x: &Array) -> Result<Array> {
    compiled!(gelu_graph, x)
}

/// The ops of [`gelu`], as Python's body writes them.
fn gelu_graph(x: &Array) -> Result<Array> {
    let cdf = ops::add(1, ops::erf(&ops::divide(x, std::f64::consts::SQRT_2)?)?)?;
    ops::divide(ops::multiply(x, cdf)?, 2)
}

/// The tanh approximation of [`gelu`],
/// `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`
/// (`nn.gelu_approx`; absolute error under 0.0005 on `[-6, 6]`).
pub fn gelu_approx(x: &Array) -> Result<Array> {
    compiled!(gelu_approx_graph, x)
}

fn gelu_approx_graph(x: &Array) -> Result<Array> {
    let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
    let cube = ops::multiply(0.044715, ops::power(x, 3)?)?;
    let inner = ops::multiply(sqrt_2_over_pi, ops::add(x, cube)?)?;
    let gate = ops::add(1, ops::tanh(&inner)?)?;
    ops::multiply(ops::multiply(0.5, x)?, gate)
}

/// The sigmoid approximation of [`gelu`], `x * sigmoid(1.702 * x)`
/// (`nn.gelu_fast_approx`; absolute error under 0.015 on `[-6, 6]`).
pub fn gelu_fast_approx(x: &Array) -> Result<Array> {
    compiled!(gelu_fast_approx_graph, x)
}

fn gelu_fast_approx_graph(x: &Array) -> Result<Array> {
    ops::multiply(x, ops::sigmoid(&ops::multiply(1.702, x)?)?)
}

/// The Gated Linear Unit `a * sigmoid(b)`, where `a` and `b` are the two
/// halves of `x` along `axis` (`nn.glu`; Python's default `axis` is `-1`).
/// An odd size along `axis` is an error.
pub fn glu(x: &Array, axis: i32) -> Result<Array> {
    let parts = ops::split(x, 2, axis)?;
    let [a, b] = <[Array; 2]>::try_from(parts).map_err(|parts| {
        crate::Error::invalid(format!("glu: split gave {} parts, not 2", parts.len()))
    })?;
    ops::multiply(a, ops::sigmoid(&b)?)
}

/// The binary step: `1` where `x >= threshold`, else `0`, as int32
/// (`nn.step`; Python's default `threshold` is `0.0`).
pub fn step(x: &Array, threshold: f32) -> Result<Array> {
    ops::r#where(ops::greater_equal(x, threshold)?, 1, 0)
}

/// The Scaled Exponential Linear Unit `elu(x, 1.67326) * 1.0507`
/// (`nn.selu`).
pub fn selu(x: &Array) -> Result<Array> {
    ops::multiply(elu(x, 1.67326)?, 1.0507)
}

/// The parametric ReLU `max(0, x) + alpha * min(0, x)`, with `alpha` an
/// array broadcast against `x` (`nn.prelu`).
pub fn prelu(x: &Array, alpha: &Array) -> Result<Array> {
    let negative = ops::multiply(alpha, ops::minimum(0, x)?)?;
    ops::add(ops::maximum(0, x)?, negative)
}

/// The Mish `x * tanh(softplus(x))` (`nn.mish`).
pub fn mish(x: &Array) -> Result<Array> {
    ops::multiply(x, ops::tanh(&softplus(x)?)?)
}

/// The Hardswish `x * min(max(x + 3, 0), 6) / 6` (`nn.hardswish`).
pub fn hardswish(x: &Array) -> Result<Array> {
    let max_x_3 = ops::maximum(ops::add(x, 3)?, 0)?;
    ops::divide(ops::multiply(x, ops::minimum(max_x_3, 6)?)?, 6)
}

/// The HardTanh `min(max(x, min_val), max_val)` (`nn.hard_tanh`; Python's
/// defaults are `min_val=-1.0`, `max_val=1.0`).
pub fn hard_tanh(x: &Array, min_val: f32, max_val: f32) -> Result<Array> {
    ops::minimum(ops::maximum(x, min_val)?, max_val)
}

/// The HardShrink: `x` where `|x| > lambd`, else `0` (`nn.hard_shrink`;
/// Python's default `lambd` is `0.5`).
pub fn hard_shrink(x: &Array, lambd: f32) -> Result<Array> {
    ops::r#where(ops::greater(ops::abs(x)?, lambd)?, x, 0)
}

/// The Softmin `softmax(-x)` over `axis` (`nn.softmin`; Python's default
/// `axis` is `-1`).
pub fn softmin(x: &Array, axis: impl Into<Axes>) -> Result<Array> {
    ops::softmax(&ops::negative(x)?, axis, false)
}

/// The hyperbolic tangent (`nn.tanh`, which is `mx.tanh`).
pub fn tanh(x: &Array) -> Result<Array> {
    ops::tanh(x)
}
