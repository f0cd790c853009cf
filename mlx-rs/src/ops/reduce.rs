//! Reductions over axes: `mx.sum`, `mx.mean`, `mx.max`, `mx.argmax`...
//!
//! Each takes the axes to reduce as an [`Axes`] (`Axes::All`, an `i32` or a
//! list of `i32`), with Python's `keepdims`. An axis out of range or listed
//! twice is an [`Error::Mlx`](crate::Error::Mlx).

use mlx_sys as sys;

use super::Axes;
use crate::array::Array;
use crate::error::Result;
use crate::stream::Stream;

/// Defines `fn name(a, axes, keepdims, extra...) -> Result<Array>` over
/// mlx-c's all-axes, `_axis` and `_axes` functions, whose arguments are
/// `(res, a, [axis | axes, axes_num], keepdims, extra..., stream)`.
macro_rules! reduce_op {
    ($(#[$doc:meta])* $name:ident($($extra:ident: $ty:ty),*) => $all:ident, $one:ident, $many:ident) => {
        $(#[$doc])*
        pub fn $name(
            a: &Array,
            axes: impl Into<Axes>,
            keepdims: bool
            $(, $extra: $ty)*
        ) -> Result<Array> {
            let s = Stream::current()?;
            match axes.into() {
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Axes::All => Array::try_from_op(|res| unsafe {
                    sys::$all(res, a.as_raw(), keepdims $(, $extra)*, s.as_raw())
                }),
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Axes::One(axis) => Array::try_from_op(|res| unsafe {
                    sys::$one(res, a.as_raw(), axis, keepdims $(, $extra)*, s.as_raw())
                }),
                // SAFETY: valid handles; `axes` holds `axes.len()` ints that
                // mlx-c copies during the call; it writes a new array into `res`.
                Axes::Many(axes) => Array::try_from_op(|res| unsafe {
                    sys::$many(
                        res,
                        a.as_raw(),
                        axes.as_ptr(),
                        axes.len(),
                        keepdims
                        $(, $extra)*,
                        s.as_raw(),
                    )
                }),
            }
        }
    };
}

reduce_op!(
    /// Whether every element over `axes` is true (non-zero) (`mx.all`).
    all() => mlx_all, mlx_all_axis, mlx_all_axes
);
reduce_op!(
    /// Whether any element over `axes` is true (non-zero) (`mx.any`).
    any() => mlx_any, mlx_any_axis, mlx_any_axes
);
reduce_op!(
    /// The number of non-zero elements over `axes`, as int32
    /// (`mx.count_nonzero`).
    count_nonzero() => mlx_count_nonzero, mlx_count_nonzero_axis, mlx_count_nonzero_axes
);
reduce_op!(
    /// `log(sum(exp(a)))` over `axes`, computed stably (`mx.logsumexp`).
    logsumexp() => mlx_logsumexp, mlx_logsumexp_axis, mlx_logsumexp_axes
);
reduce_op!(
    /// The maximum over `axes` (`mx.max`). Fails on an empty axis.
    max() => mlx_max, mlx_max_axis, mlx_max_axes
);
reduce_op!(
    /// The arithmetic mean over `axes` (`mx.mean`); integers give float32.
    mean() => mlx_mean, mlx_mean_axis, mlx_mean_axes
);
reduce_op!(
    /// The median over `axes` (`mx.median`); integers give float32.
    median() => mlx_median, mlx_median_axis, mlx_median_axes
);
reduce_op!(
    /// The minimum over `axes` (`mx.min`). Fails on an empty axis.
    min() => mlx_min, mlx_min_axis, mlx_min_axes
);
reduce_op!(
    /// The product over `axes` (`mx.prod`); bool and small integers give
    /// (u)int32.
    prod() => mlx_prod, mlx_prod_axis, mlx_prod_axes
);
reduce_op!(
    /// The standard deviation over `axes`, dividing by `N - ddof`
    /// (`mx.std`; Python's default `ddof` is 0).
    std(ddof: i32) => mlx_std, mlx_std_axis, mlx_std_axes
);
reduce_op!(
    /// The sum over `axes` (`mx.sum`); bool and small integers give
    /// (u)int32.
    sum() => mlx_sum, mlx_sum_axis, mlx_sum_axes
);
reduce_op!(
    /// The variance over `axes`, dividing by `N - ddof` (`mx.var`; Python's
    /// default `ddof` is 0).
    var(ddof: i32) => mlx_var, mlx_var_axis, mlx_var_axes
);

/// Defines `fn name(a, axis: Option<i32>, keepdims)` over mlx-c's
/// flattening and `_axis` functions.
macro_rules! arg_reduce_op {
    ($(#[$doc:meta])* $name:ident => $all:ident, $one:ident) => {
        $(#[$doc])*
        pub fn $name(a: &Array, axis: Option<i32>, keepdims: bool) -> Result<Array> {
            let s = Stream::current()?;
            match axis {
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                None => Array::try_from_op(|res| unsafe {
                    sys::$all(res, a.as_raw(), keepdims, s.as_raw())
                }),
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Some(axis) => Array::try_from_op(|res| unsafe {
                    sys::$one(res, a.as_raw(), axis, keepdims, s.as_raw())
                }),
            }
        }
    };
}

arg_reduce_op!(
    /// The index (uint32) of the first maximum along `axis`, or in the
    /// flattened array for `None` (`mx.argmax`).
    argmax => mlx_argmax, mlx_argmax_axis
);
arg_reduce_op!(
    /// The index (uint32) of the first minimum along `axis`, or in the
    /// flattened array for `None` (`mx.argmin`).
    argmin => mlx_argmin, mlx_argmin_axis
);

impl Array {
    /// Whether every element over `axes` is true (`a.all()`); see [`all`].
    pub fn all(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        all(self, axes, keepdims)
    }

    /// Whether any element over `axes` is true (`a.any()`); see [`any`].
    pub fn any(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        any(self, axes, keepdims)
    }

    /// The index of the maximum along `axis` (`a.argmax()`); see [`argmax`].
    pub fn argmax(&self, axis: Option<i32>, keepdims: bool) -> Result<Array> {
        argmax(self, axis, keepdims)
    }

    /// The index of the minimum along `axis` (`a.argmin()`); see [`argmin`].
    pub fn argmin(&self, axis: Option<i32>, keepdims: bool) -> Result<Array> {
        argmin(self, axis, keepdims)
    }

    /// `log(sum(exp(a)))` over `axes` (`a.logsumexp()`); see [`logsumexp`].
    pub fn logsumexp(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        logsumexp(self, axes, keepdims)
    }

    /// The maximum over `axes` (`a.max()`); see [`max`].
    pub fn max(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        max(self, axes, keepdims)
    }

    /// The mean over `axes` (`a.mean()`); see [`mean`].
    pub fn mean(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        mean(self, axes, keepdims)
    }

    /// The minimum over `axes` (`a.min()`); see [`min`].
    pub fn min(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        min(self, axes, keepdims)
    }

    /// The product over `axes` (`a.prod()`); see [`prod`].
    pub fn prod(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        prod(self, axes, keepdims)
    }

    /// The standard deviation over `axes` (`a.std()`); see [`std()`].
    pub fn std(&self, axes: impl Into<Axes>, keepdims: bool, ddof: i32) -> Result<Array> {
        std(self, axes, keepdims, ddof)
    }

    /// The sum over `axes` (`a.sum()`); see [`sum`].
    pub fn sum(&self, axes: impl Into<Axes>, keepdims: bool) -> Result<Array> {
        sum(self, axes, keepdims)
    }

    /// The variance over `axes` (`a.var()`); see [`var`].
    pub fn var(&self, axes: impl Into<Axes>, keepdims: bool, ddof: i32) -> Result<Array> {
        var(self, axes, keepdims, ddof)
    }
}
