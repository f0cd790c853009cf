//! Arrays made from sizes and values: `mx.zeros`, `mx.full`, `mx.arange`,
//! `mx.eye`, `mx.linspace`, window functions...

use mlx_sys as sys;

use super::operand::{IntoOperand, Operand, Scalar};
use crate::array::{Array, check_shape};
use crate::dtype::Dtype;
use crate::error::Result;
use crate::stream::Stream;

/// `value` as a double, as mlx-c's `arange` takes it.
fn scalar_to_f64(value: Scalar) -> f64 {
    match value {
        Scalar::Bool(v) => f64::from(u8::from(v)),
        Scalar::Int(v) => v as f64,
        Scalar::Float(v) => v,
    }
}

/// Numbers from `start` up to (not including) `stop` in increments of
/// `step` (`mx.arange(start, stop, step, dtype)`).
///
/// Python's `mx.arange(stop)` is `arange(0, stop, 1, None)`. With `dtype`
/// `None` the dtype follows the arguments as in Python: float32 if any is a
/// float, else int32 (int64 if one is outside int32's range).
pub fn arange(
    start: impl Into<Scalar>,
    stop: impl Into<Scalar>,
    step: impl Into<Scalar>,
    dtype: Option<Dtype>,
) -> Result<Array> {
    let (start, stop, step) = (start.into(), stop.into(), step.into());
    let dtype = match dtype {
        Some(dtype) => dtype,
        None => {
            let dtypes = [start, stop, step].map(Scalar::default_dtype);
            if dtypes.contains(&Dtype::Float32) {
                Dtype::Float32
            } else if dtypes.contains(&Dtype::Int64) {
                Dtype::Int64
            } else {
                Dtype::Int32
            }
        }
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_arange(
            res,
            scalar_to_f64(start),
            scalar_to_f64(stop),
            scalar_to_f64(step),
            dtype.to_raw(),
            s.as_raw(),
        )
    })
}

/// Options of [`eye`] and [`tri`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EyeOptions {
    /// The number of columns (`None`: as many as rows).
    pub m: Option<i32>,
    /// The diagonal: 0 the main one, positive above it, negative below (0).
    pub k: i32,
    /// The dtype (float32).
    pub dtype: Dtype,
}

impl Default for EyeOptions {
    fn default() -> Self {
        EyeOptions {
            m: None,
            k: 0,
            dtype: Dtype::Float32,
        }
    }
}

/// An `n` x `m` matrix with ones on the `k`-th diagonal and zeros elsewhere
/// (`mx.eye`).
pub fn eye(n: i32, options: EyeOptions) -> Result<Array> {
    let m = options.m.unwrap_or(n);
    check_shape("eye", &[n, m], options.dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_eye(res, n, m, options.k, options.dtype.to_raw(), s.as_raw())
    })
}

/// The `n` x `n` identity matrix (`mx.identity`); Python's default dtype is
/// float32.
pub fn identity(n: i32, dtype: Dtype) -> Result<Array> {
    check_shape("identity", &[n, n], dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_identity(res, n, dtype.to_raw(), s.as_raw()) })
}

/// An `n` x `m` matrix with ones at and below the `k`-th diagonal and zeros
/// elsewhere (`mx.tri`).
///
/// As in Python, a negative `n` or `m` gives an empty matrix.
pub fn tri(n: i32, options: EyeOptions) -> Result<Array> {
    let m = options.m.unwrap_or(n);
    check_shape("tri", &[n.max(0), m.max(0)], options.dtype)?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_tri(res, n, m, options.k, options.dtype.to_raw(), s.as_raw())
    })
}

/// An array of `shape` filled with `vals` (`mx.full`).
///
/// `vals` is a scalar or an array broadcastable to `shape`. With `dtype`
/// `None` the dtype is that of `vals` (a scalar alone: bool, int32 or
/// float32). Unlike Python, which ignores `dtype` when `vals` is an array
/// or a float scalar with an integer `dtype`, a given `dtype` is always the
/// result's.
pub fn full<'a>(shape: &[i32], vals: impl IntoOperand<'a>, dtype: Option<Dtype>) -> Result<Array> {
    let (vals, dtype) = match vals.into_operand() {
        Operand::Scalar(v) => {
            let dtype = dtype.unwrap_or_else(|| v.default_dtype());
            (v.to_array(dtype)?, dtype)
        }
        Operand::Ref(a) => (a.clone(), dtype.unwrap_or_else(|| a.dtype())),
        Operand::Owned(a) => {
            let dtype = dtype.unwrap_or_else(|| a.dtype());
            (a, dtype)
        }
    };
    check_shape("full", shape, dtype)?;
    let s = Stream::current()?;
    // SAFETY: `shape` points to `shape.len()` ints, read before returning;
    // valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_full(
            res,
            shape.as_ptr(),
            shape.len(),
            vals.as_raw(),
            dtype.to_raw(),
            s.as_raw(),
        )
    })
}

/// An array of `a`'s shape filled with `vals` (`mx.full_like`).
///
/// `vals` is a scalar or an array broadcastable to `a`'s shape; `dtype`
/// `None` takes `a`'s dtype.
pub fn full_like<'a>(a: &Array, vals: impl IntoOperand<'a>, dtype: Option<Dtype>) -> Result<Array> {
    let dtype = dtype.unwrap_or_else(|| a.dtype());
    let vals = match vals.into_operand() {
        Operand::Scalar(v) => v.to_array(dtype)?,
        Operand::Ref(v) => v.clone(),
        Operand::Owned(v) => v,
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_full_like(res, a.as_raw(), vals.as_raw(), dtype.to_raw(), s.as_raw())
    })
}

/// `num` evenly spaced numbers from `start` to `stop` (`mx.linspace`).
///
/// `stop` is the last number if `endpoint`, else the numbers cover
/// `[start, stop)`. Python's defaults are `num` 50, `endpoint` true and
/// `dtype` float32; here `num` has no default.
pub fn linspace(start: f64, stop: f64, num: i32, endpoint: bool, dtype: Dtype) -> Result<Array> {
    let s = Stream::current()?;
    if endpoint {
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        Array::try_from_op(|res| unsafe {
            sys::mlx_linspace(res, start, stop, num, dtype.to_raw(), s.as_raw())
        })
    } else {
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        Array::try_from_op(|res| unsafe {
            sys::mlx_linspace_endpoint(res, start, stop, num, false, dtype.to_raw(), s.as_raw())
        })
    }
}

/// An array of `shape` filled with ones (`mx.ones`); Python's default
/// dtype is float32.
pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
    check_shape("ones", shape, dtype)?;
    let s = Stream::current()?;
    // SAFETY: `shape` points to `shape.len()` ints, read before returning;
    // valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_ones(res, shape.as_ptr(), shape.len(), dtype.to_raw(), s.as_raw())
    })
}

/// An array of `shape` filled with zeros (`mx.zeros`); Python's default
/// dtype is float32.
pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
    check_shape("zeros", shape, dtype)?;
    let s = Stream::current()?;
    // SAFETY: `shape` points to `shape.len()` ints, read before returning;
    // valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_zeros(res, shape.as_ptr(), shape.len(), dtype.to_raw(), s.as_raw())
    })
}

/// Ones of `a`'s shape, in `dtype` or else `a`'s dtype (`mx.ones_like`).
pub fn ones_like(a: &Array, dtype: Option<Dtype>) -> Result<Array> {
    let s = Stream::current()?;
    match dtype {
        None => {
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe { sys::mlx_ones_like(res, a.as_raw(), s.as_raw()) })
        }
        Some(dtype) => {
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_ones_like_dtype(res, a.as_raw(), dtype.to_raw(), s.as_raw())
            })
        }
    }
}

/// Zeros of `a`'s shape, in `dtype` or else `a`'s dtype (`mx.zeros_like`).
pub fn zeros_like(a: &Array, dtype: Option<Dtype>) -> Result<Array> {
    let s = Stream::current()?;
    match dtype {
        None => {
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe { sys::mlx_zeros_like(res, a.as_raw(), s.as_raw()) })
        }
        Some(dtype) => {
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_zeros_like_dtype(res, a.as_raw(), dtype.to_raw(), s.as_raw())
            })
        }
    }
}

/// Defines a window function `fn name(m: i32) -> Result<Array>` over mlx-c's `$c`.
macro_rules! window {
    ($(#[$doc:meta])* $name:ident => $c:ident) => {
        $(#[$doc])*
        pub fn $name(m: i32) -> Result<Array> {
            let s = Stream::current()?;
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe { sys::$c(res, m, s.as_raw()) })
        }
    };
}

window!(/// The Bartlett (triangular) window of `m` points, float32 (`mx.bartlett`);
    /// empty for `m` < 1, as in Python.
    bartlett => mlx_bartlett);
window!(/// The Blackman window of `m` points, float32 (`mx.blackman`); empty for
    /// `m` < 1, as in Python.
    blackman => mlx_blackman);
window!(/// The Hamming window of `m` points, float32 (`mx.hamming`); empty for
    /// `m` < 1, as in Python.
    hamming => mlx_hamming);
window!(/// The Hann window of `m` points, float32 (`mx.hanning`); empty for
    /// `m` < 1, as in Python.
    hanning => mlx_hanning);
