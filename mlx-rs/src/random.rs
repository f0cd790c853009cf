//! Random sampling: Python's `mx.random` (mlx-c's `random.h`).
//!
//! ```
//! use mlx_rs::{Dtype, random};
//!
//! let key = random::key(7)?;
//! let x = random::uniform(0.0, 1.0, &[2, 3], Dtype::Float32, Some(&key))?;
//! assert_eq!(x.shape(), [2, 3]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Every sampler takes `key: Option<&Array>`, Python's `key=`: a PRNG key
//! made by [`key`] or [`split`]. The same key always gives the same values.
//! Without a key MLX takes the next key of its global state, which
//! [`seed`] resets; the values then match Python's after `mx.random.seed`
//! with the same calls in the same order.
//!
//! Unlike Python's, MLX's global state is per thread: [`seed`] affects only
//! the calling thread, and every thread starts from the same time-based
//! seed. Pass keys explicitly where threads must differ or reproduce.
//!
//! Bounds and parameters that Python takes as "scalar or array" (`low`,
//! `high`, `p`...) are an [`IntoOperand`]: an [`Array`] or a Rust scalar,
//! which becomes an array as `mx.array(scalar)` would (int32 or float32;
//! int64 for integers outside int32).

use mlx_sys as sys;

use crate::array::{Array, check_shape};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::ffi::check;
use crate::ops::{IntoOperand, to_array};
use crate::stream::Stream;

/// Seeds the calling thread's global PRNG state (`mx.random.seed`).
///
/// MLX keeps this state per thread; other threads are unaffected.
pub fn seed(seed: u64) -> Result<()> {
    // SAFETY: plain value argument.
    check(|| unsafe { sys::mlx_random_seed(seed) })
}

/// A PRNG key made from `seed` (`mx.random.key`): a uint32 array of shape
/// `[2]` holding the seed's high and low 32 bits.
pub fn key(seed: u64) -> Result<Array> {
    // SAFETY: mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_random_key(res, seed) })
}

/// `num` new keys from `key`, as an array of shape `[num, 2]`
/// (`mx.random.split(key, num)`; Python's default `num` is 2).
pub fn split(key: &Array, num: i32) -> Result<Array> {
    if num < 0 {
        return Err(Error::invalid(format!(
            "cannot split a key into {num} keys: the number must not be negative"
        )));
    }
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_split_num(res, key.as_raw(), num, s.as_raw())
    })
}

/// Two new keys from `key`, as two arrays of shape `[2]`: the rows of
/// [`split(key, 2)`](split) (`mx.random.split(key)` unpacked as
/// `k1, k2 = ...`).
pub fn split_pair(key: &Array) -> Result<(Array, Array)> {
    let s = Stream::current()?;
    let (mut first, mut second) = (Array::empty(), Array::empty());
    // SAFETY: valid handles; mlx-c writes one new array into each output.
    check(|| unsafe {
        sys::mlx_random_split(
            first.as_mut_ptr(),
            second.as_mut_ptr(),
            key.as_raw(),
            s.as_raw(),
        )
    })?;
    Ok((first, second))
}

/// Raw random bits of `shape`, `width` bytes per element: uint32 for 4,
/// uint16 for 2, uint8 for 1.
///
/// MLX's C++ `mlx::core::random::bits`; Python has no counterpart.
pub fn bits(shape: &[i32], width: i32, key: Option<&Array>) -> Result<Array> {
    check_shape("bits", shape, Dtype::Uint32)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_bits(
            res,
            shape.as_ptr(),
            shape.len(),
            width,
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Uniform samples in `[low, high)` of `shape` and floating point `dtype`
/// (`mx.random.uniform`).
///
/// Python's defaults are `low=0`, `high=1`, `shape=[]`,
/// `dtype=float32`. `low` and `high` must broadcast to `shape`.
pub fn uniform<'a>(
    low: impl IntoOperand<'a>,
    high: impl IntoOperand<'a>,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_shape("uniform", shape, dtype)?;
    let (low, high) = (to_array(low)?, to_array(high)?);
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_uniform(
            res,
            low.as_raw(),
            high.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Options of [`normal`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalOptions {
    /// The output dtype (float32): a floating point type, or complex64
    /// (real and imaginary parts each with variance 1/2).
    pub dtype: Dtype,
    /// The mean (0.0).
    pub loc: f32,
    /// The standard deviation (1.0).
    pub scale: f32,
}

impl Default for NormalOptions {
    fn default() -> Self {
        NormalOptions {
            dtype: Dtype::Float32,
            loc: 0.0,
            scale: 1.0,
        }
    }
}

/// Normally distributed samples of `shape` (`mx.random.normal` with scalar
/// `loc` and `scale`).
///
/// For array `loc`/`scale` see [`normal_broadcast`].
pub fn normal(shape: &[i32], options: NormalOptions, key: Option<&Array>) -> Result<Array> {
    check_shape("normal", shape, options.dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_normal(
            res,
            shape.as_ptr(),
            shape.len(),
            options.dtype.to_raw(),
            options.loc,
            options.scale,
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Options of [`normal_broadcast`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct NormalBroadcastOptions<'a> {
    /// The output dtype (float32), as for [`NormalOptions::dtype`].
    pub dtype: Dtype,
    /// The mean, broadcast against `shape` (none: 0).
    pub loc: Option<&'a Array>,
    /// The standard deviation, broadcast against `shape` (none: 1).
    pub scale: Option<&'a Array>,
}

impl Default for NormalBroadcastOptions<'_> {
    fn default() -> Self {
        NormalBroadcastOptions {
            dtype: Dtype::Float32,
            loc: None,
            scale: None,
        }
    }
}

/// Normally distributed samples of `shape` with array `loc` and `scale`
/// (`mx.random.normal(shape, loc=array, scale=array)`).
///
/// As in Python, MLX draws `shape` samples and broadcasts `loc` and `scale`
/// into them, so the result has the broadcast shape of all three.
pub fn normal_broadcast(
    shape: &[i32],
    options: NormalBroadcastOptions<'_>,
    key: Option<&Array>,
) -> Result<Array> {
    check_shape("normal", shape, options.dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null array means "none"); `shape` outlives
    // the call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_normal_broadcast(
            res,
            shape.as_ptr(),
            shape.len(),
            options.dtype.to_raw(),
            Array::raw_or_null(options.loc),
            Array::raw_or_null(options.scale),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Options of [`laplace`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaplaceOptions {
    /// The output dtype (float32), a floating point type.
    pub dtype: Dtype,
    /// The mean (0.0).
    pub loc: f32,
    /// The scale `b` (1.0).
    pub scale: f32,
}

impl Default for LaplaceOptions {
    fn default() -> Self {
        LaplaceOptions {
            dtype: Dtype::Float32,
            loc: 0.0,
            scale: 1.0,
        }
    }
}

/// Laplace distributed samples of `shape` (`mx.random.laplace`).
pub fn laplace(shape: &[i32], options: LaplaceOptions, key: Option<&Array>) -> Result<Array> {
    check_shape("laplace", shape, options.dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_laplace(
            res,
            shape.as_ptr(),
            shape.len(),
            options.dtype.to_raw(),
            options.loc,
            options.scale,
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Jointly normal samples with `mean` (`[..., n]`) and covariance `cov`
/// (`[..., n, n]`, positive semi-definite) (`mx.random.multivariate_normal`).
///
/// The result has shape `broadcast(shape, mean batch, cov batch) + [n]`;
/// Python's defaults are `shape=[]` and `dtype=float32`, the only dtype MLX
/// supports. MLX computes an SVD, which runs on the CPU only: call this
/// inside [`with_device`](crate::with_device)`(&Device::cpu(), ...)` when
/// the default device is a GPU.
pub fn multivariate_normal(
    mean: &Array,
    cov: &Array,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_shape("multivariate_normal", shape, dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_multivariate_normal(
            res,
            mean.as_raw(),
            cov.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Integers drawn uniformly from `[low, high)`, of `shape` and integer (or
/// bool) `dtype` (`mx.random.randint`).
///
/// Python's defaults are `shape=[]` and `dtype=int32`. `low` and `high`
/// must broadcast to `shape`.
pub fn randint<'a>(
    low: impl IntoOperand<'a>,
    high: impl IntoOperand<'a>,
    shape: &[i32],
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    check_shape("randint", shape, dtype)?;
    let (low, high) = (to_array(low)?, to_array(high)?);
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_randint(
            res,
            low.as_raw(),
            high.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Booleans that are true with probability `p` (`mx.random.bernoulli`).
///
/// `p` is a floating point array or scalar (Python's default is 0.5); the
/// result has `shape`, or `p`'s shape when `shape` is `None`.
pub fn bernoulli<'a>(
    p: impl IntoOperand<'a>,
    shape: Option<&[i32]>,
    key: Option<&Array>,
) -> Result<Array> {
    let p = to_array(p)?;
    let shape = shape.unwrap_or(p.shape()).to_vec();
    check_shape("bernoulli", &shape, Dtype::Bool)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_bernoulli(
            res,
            p.as_raw(),
            shape.as_ptr(),
            shape.len(),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Samples of a normal distribution truncated to `(lower, upper)`, of
/// floating point `dtype` (`mx.random.truncated_normal`).
///
/// The result has `shape`, or the broadcast shape of `lower` and `upper`
/// when `shape` is `None` (Python's default); Python's default dtype is
/// float32.
pub fn truncated_normal<'a>(
    lower: impl IntoOperand<'a>,
    upper: impl IntoOperand<'a>,
    shape: Option<&[i32]>,
    dtype: Dtype,
    key: Option<&Array>,
) -> Result<Array> {
    let (lower, upper) = (to_array(lower)?, to_array(upper)?);
    let shape = match shape {
        Some(shape) => shape.to_vec(),
        None => broadcast_shapes(lower.shape(), upper.shape())?,
    };
    check_shape("truncated_normal", &shape, dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_truncated_normal(
            res,
            lower.as_raw(),
            upper.as_raw(),
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// Samples of the standard Gumbel distribution, of `shape` and floating
/// point `dtype` (`mx.random.gumbel`; Python's default dtype is float32).
pub fn gumbel(shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    check_shape("gumbel", shape, dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); `shape` outlives the
    // call; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_gumbel(
            res,
            shape.as_ptr(),
            shape.len(),
            dtype.to_raw(),
            raw_key(key),
            s.as_raw(),
        )
    })
}

/// How many samples [`categorical`] draws: Python's `shape=` and
/// `num_samples=`, of which at most one may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CategoricalSamples<'a> {
    /// One sample per distribution: the result has `logits`' shape without
    /// `axis` (neither `shape` nor `num_samples`; Python's default).
    #[default]
    One,
    /// A result of this shape, which must broadcast with `logits`' shape
    /// without `axis` (`shape=`).
    Shape(&'a [i32]),
    /// This many samples per distribution, in a new last axis
    /// (`num_samples=`).
    Num(i32),
}

/// Indices sampled from the categorical distributions given by the
/// unnormalised log-probabilities `logits` along `axis`, as uint32
/// (`mx.random.categorical`).
///
/// Python's default `axis` is -1.
pub fn categorical(
    logits: &Array,
    axis: i32,
    samples: CategoricalSamples<'_>,
    key: Option<&Array>,
) -> Result<Array> {
    let s = Stream::current()?;
    let key = raw_key(key);
    match samples {
        CategoricalSamples::One => {
            // SAFETY: valid handles (a null key means "none"); mlx-c writes
            // a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_random_categorical(res, logits.as_raw(), axis, key, s.as_raw())
            })
        }
        CategoricalSamples::Shape(shape) => {
            check_shape("categorical", shape, Dtype::Uint32)?;
            // SAFETY: valid handles (a null key means "none"); `shape`
            // outlives the call; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_random_categorical_shape(
                    res,
                    logits.as_raw(),
                    axis,
                    shape.as_ptr(),
                    shape.len(),
                    key,
                    s.as_raw(),
                )
            })
        }
        CategoricalSamples::Num(num) => {
            if num < 0 {
                return Err(Error::invalid(format!(
                    "[categorical] num_samples must not be negative, got {num}"
                )));
            }
            // SAFETY: valid handles (a null key means "none"); mlx-c writes
            // a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_random_categorical_num_samples(
                    res,
                    logits.as_raw(),
                    axis,
                    num,
                    key,
                    s.as_raw(),
                )
            })
        }
    }
}

/// `x` with its entries along `axis` randomly permuted
/// (`mx.random.permutation(x, axis)` with an array; Python's default `axis`
/// is 0).
///
/// For a permutation of `0..n` see [`permutation_arange`].
pub fn permutation(x: &Array, axis: i32, key: Option<&Array>) -> Result<Array> {
    // MLX reads `x.shape(axis)` unchecked (std::vector::at), so check here
    // for a clear message.
    x.dim(axis)?;
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); mlx-c writes a new
    // array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_permutation(res, x.as_raw(), axis, raw_key(key), s.as_raw())
    })
}

/// A random permutation of `0..n`, as uint32
/// (`mx.random.permutation(n)` with an integer).
pub fn permutation_arange(n: i32, key: Option<&Array>) -> Result<Array> {
    if n < 0 {
        return Err(Error::invalid(format!(
            "[permutation] cannot permute {n} elements: the count must not be negative"
        )));
    }
    let s = Stream::current()?;
    // SAFETY: valid handles (a null key means "none"); mlx-c writes a new
    // array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_random_permutation_arange(res, n, raw_key(key), s.as_raw())
    })
}

/// The raw handle of an optional key: null means "take the global state's
/// next key".
fn raw_key(key: Option<&Array>) -> sys::mlx_array {
    Array::raw_or_null(key)
}

/// The shape `a` and `b` broadcast to, by NumPy's rule.
fn broadcast_shapes(a: &[i32], b: &[i32]) -> Result<Vec<i32>> {
    let ndim = a.len().max(b.len());
    let dim = |shape: &[i32], i: usize| {
        let pad = ndim - shape.len();
        if i < pad { 1 } else { shape[i - pad] }
    };
    (0..ndim)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(Error::invalid(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            ))),
        })
        .collect()
}
