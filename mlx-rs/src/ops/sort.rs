//! Sorting, selection and scans along an axis: `mx.sort`, `mx.topk`,
//! `mx.cumsum`, `mx.softmax`, `mx.searchsorted`...
//!
//! `axis: None` flattens the array first, as Python's `axis=None`; note that
//! Python's default for the sorting ops is `axis=-1` (pass `Some(-1)`).
//!
//! MLX 0.32's CPU sort and scan kernels divide by the length of the axis, so
//! evaluating them along an empty axis kills the process (SIGFPE) in Python.
//! Here a result with no elements is returned as a fresh empty array of the
//! right shape and dtype instead, which never runs the kernel.

use std::ffi::CStr;

use mlx_sys as sys;

use super::Axes;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::stream::Stream;

/// `out` itself, or, if it has no elements, an empty array of its shape and
/// dtype that does not depend on the kernel that would compute `out`.
fn without_empty_kernel(out: Array) -> Result<Array> {
    if out.size() != 0 {
        return Ok(out);
    }
    let s = Stream::current()?;
    let shape = out.shape();
    // SAFETY: valid handles; `shape` holds `shape.len()` ints that mlx-c
    // copies during the call; it writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_zeros(
            res,
            shape.as_ptr(),
            shape.len(),
            out.dtype().to_raw(),
            s.as_raw(),
        )
    })
}

/// Defines `fn name(a, axis: Option<i32>)` over mlx-c's flattening and
/// `_axis` functions.
macro_rules! sort_op {
    ($(#[$doc:meta])* $name:ident => $all:ident, $one:ident) => {
        $(#[$doc])*
        pub fn $name(a: &Array, axis: Option<i32>) -> Result<Array> {
            let s = Stream::current()?;
            let out = match axis {
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                None => Array::try_from_op(|res| unsafe { sys::$all(res, a.as_raw(), s.as_raw()) }),
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Some(axis) => Array::try_from_op(|res| unsafe {
                    sys::$one(res, a.as_raw(), axis, s.as_raw())
                }),
            }?;
            without_empty_kernel(out)
        }
    };
}

sort_op!(
    /// `a` sorted in ascending order along `axis`, or flattened for `None`
    /// (`mx.sort`; Python's default axis is -1).
    sort => mlx_sort, mlx_sort_axis
);
sort_op!(
    /// The indices (uint32) that sort `a` along `axis`, or of the flattened
    /// array for `None` (`mx.argsort`; Python's default axis is -1).
    argsort => mlx_argsort, mlx_argsort_axis
);

/// Defines `fn name(a, $n: i32, axis: Option<i32>)` over mlx-c's flattening
/// and `_axis` functions.
macro_rules! select_op {
    ($(#[$doc:meta])* $name:ident($n:ident) => $all:ident, $one:ident) => {
        $(#[$doc])*
        pub fn $name(a: &Array, $n: i32, axis: Option<i32>) -> Result<Array> {
            let s = Stream::current()?;
            let out = match axis {
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                None => Array::try_from_op(|res| unsafe {
                    sys::$all(res, a.as_raw(), $n, s.as_raw())
                }),
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Some(axis) => Array::try_from_op(|res| unsafe {
                    sys::$one(res, a.as_raw(), $n, axis, s.as_raw())
                }),
            }?;
            without_empty_kernel(out)
        }
    };
}

select_op!(
    /// `a` rearranged along `axis` (flattened for `None`) so that the
    /// element at `kth` is where sorting would put it, with no larger
    /// element before it and no smaller one after (`mx.partition`; Python's
    /// default axis is -1). The order within each side is unspecified.
    /// Negative `kth` counts from the end.
    partition(kth) => mlx_partition, mlx_partition_axis
);
select_op!(
    /// The indices (uint32) that [`partition`] `a` around `kth` along `axis`
    /// (`mx.argpartition`; Python's default axis is -1). The order within
    /// each side is unspecified.
    argpartition(kth) => mlx_argpartition, mlx_argpartition_axis
);
select_op!(
    /// The `k` largest elements along `axis`, or of the flattened array for
    /// `None`, in unspecified order (`mx.topk`; Python's default axis is -1).
    topk(k) => mlx_topk, mlx_topk_axis
);

/// Options of [`cummax`], [`cummin`] and [`logcumsumexp`], with Python's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CumulativeOptions {
    /// Scan from the end of the axis towards its start (false).
    pub reverse: bool,
    /// Include each element in its own result; if false, each result
    /// covers only the elements before it (true).
    pub inclusive: bool,
}

impl Default for CumulativeOptions {
    fn default() -> Self {
        CumulativeOptions {
            reverse: false,
            inclusive: true,
        }
    }
}

/// Options of [`cumsum`] and [`cumprod`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccumulateOptions {
    /// Scan from the end of the axis towards its start (false).
    pub reverse: bool,
    /// Include each element in its own result; if false, each result
    /// covers only the elements before it (true).
    pub inclusive: bool,
    /// The dtype to accumulate in and return (`None`: MLX's choice, which
    /// is the input's dtype, or int32 for bool).
    pub dtype: Option<Dtype>,
}

impl Default for AccumulateOptions {
    fn default() -> Self {
        AccumulateOptions {
            reverse: false,
            inclusive: true,
            dtype: None,
        }
    }
}

/// Defines `fn name(a, axis: Option<i32>, options: CumulativeOptions)`.
macro_rules! scan_op {
    ($(#[$doc:meta])* $name:ident => $all:ident, $one:ident) => {
        $(#[$doc])*
        pub fn $name(a: &Array, axis: Option<i32>, options: CumulativeOptions) -> Result<Array> {
            let CumulativeOptions { reverse, inclusive } = options;
            let s = Stream::current()?;
            let out = match axis {
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                None => Array::try_from_op(|res| unsafe {
                    sys::$all(res, a.as_raw(), reverse, inclusive, s.as_raw())
                }),
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Some(axis) => Array::try_from_op(|res| unsafe {
                    sys::$one(res, a.as_raw(), axis, reverse, inclusive, s.as_raw())
                }),
            }?;
            without_empty_kernel(out)
        }
    };
}

scan_op!(
    /// The running maximum along `axis`, or of the flattened array for
    /// `None` (`mx.cummax`).
    cummax => mlx_cummax, mlx_cummax_axis
);
scan_op!(
    /// The running minimum along `axis`, or of the flattened array for
    /// `None` (`mx.cummin`).
    cummin => mlx_cummin, mlx_cummin_axis
);
scan_op!(
    /// The running `log(sum(exp(a)))` along `axis`, or of the flattened
    /// array for `None` (`mx.logcumsumexp`).
    logcumsumexp => mlx_logcumsumexp, mlx_logcumsumexp_axis
);

/// Defines `fn name(a, axis: Option<i32>, options: AccumulateOptions)`.
macro_rules! accumulate_op {
    ($(#[$doc:meta])* $name:ident => $all:ident, $one:ident) => {
        $(#[$doc])*
        pub fn $name(a: &Array, axis: Option<i32>, options: AccumulateOptions) -> Result<Array> {
            let AccumulateOptions { reverse, inclusive, dtype } = options;
            let dtype = Dtype::optional(dtype);
            let s = Stream::current()?;
            let out = match axis {
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                None => Array::try_from_op(|res| unsafe {
                    sys::$all(res, a.as_raw(), reverse, inclusive, dtype, s.as_raw())
                }),
                // SAFETY: valid handles; mlx-c writes a new array into `res`.
                Some(axis) => Array::try_from_op(|res| unsafe {
                    sys::$one(res, a.as_raw(), axis, reverse, inclusive, dtype, s.as_raw())
                }),
            }?;
            without_empty_kernel(out)
        }
    };
}

accumulate_op!(
    /// The running product along `axis`, or of the flattened array for
    /// `None` (`mx.cumprod`).
    cumprod => mlx_cumprod, mlx_cumprod_axis
);
accumulate_op!(
    /// The running sum along `axis`, or of the flattened array for `None`
    /// (`mx.cumsum`).
    cumsum => mlx_cumsum, mlx_cumsum_axis
);

/// Which index [`searchsorted`] returns for a value equal to elements of the
/// sequence: Python's `side="left"` or `side="right"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SearchSide {
    /// The first index where the value could be inserted (`"left"`).
    #[default]
    Left,
    /// The last index where the value could be inserted (`"right"`).
    Right,
}

impl SearchSide {
    fn as_c_str(self) -> &'static CStr {
        match self {
            SearchSide::Left => c"left",
            SearchSide::Right => c"right",
        }
    }
}

/// For each of `values`, the index (uint32) at which inserting it would
/// keep the 1-D, ascending `sorted_sequence` sorted (`mx.searchsorted`;
/// `side` is an enum rather than a string).
pub fn searchsorted(sorted_sequence: &Array, values: &Array, side: SearchSide) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles and a NUL-terminated static string; mlx-c writes
    // a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_searchsorted(
            res,
            sorted_sequence.as_raw(),
            values.as_raw(),
            side.as_c_str().as_ptr(),
            s.as_raw(),
        )
    })
}

/// `exp(a) / sum(exp(a))` over `axes` (`mx.softmax`). With `precise`, a
/// half-precision input is computed in float32.
pub fn softmax(a: &Array, axes: impl Into<Axes>, precise: bool) -> Result<Array> {
    let s = Stream::current()?;
    match axes.into() {
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        Axes::All => Array::try_from_op(|res| unsafe {
            sys::mlx_softmax(res, a.as_raw(), precise, s.as_raw())
        }),
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        Axes::One(axis) => Array::try_from_op(|res| unsafe {
            sys::mlx_softmax_axis(res, a.as_raw(), axis, precise, s.as_raw())
        }),
        // SAFETY: valid handles; `axes` holds `axes.len()` ints that mlx-c
        // copies during the call; it writes a new array into `res`.
        Axes::Many(axes) => Array::try_from_op(|res| unsafe {
            sys::mlx_softmax_axes(
                res,
                a.as_raw(),
                axes.as_ptr(),
                axes.len(),
                precise,
                s.as_raw(),
            )
        }),
    }
}

impl Array {
    /// The running maximum along `axis` (`a.cummax()`); see [`cummax`].
    pub fn cummax(&self, axis: Option<i32>, options: CumulativeOptions) -> Result<Array> {
        cummax(self, axis, options)
    }

    /// The running minimum along `axis` (`a.cummin()`); see [`cummin`].
    pub fn cummin(&self, axis: Option<i32>, options: CumulativeOptions) -> Result<Array> {
        cummin(self, axis, options)
    }

    /// The running product along `axis` (`a.cumprod()`); see [`cumprod`].
    /// Unlike Python's method, this also takes the function's `dtype`.
    pub fn cumprod(&self, axis: Option<i32>, options: AccumulateOptions) -> Result<Array> {
        cumprod(self, axis, options)
    }

    /// The running sum along `axis` (`a.cumsum()`); see [`cumsum`]. Unlike
    /// Python's method, this also takes the function's `dtype`.
    pub fn cumsum(&self, axis: Option<i32>, options: AccumulateOptions) -> Result<Array> {
        cumsum(self, axis, options)
    }

    /// The running `log(sum(exp(a)))` along `axis` (`a.logcumsumexp()`); see
    /// [`logcumsumexp`].
    pub fn logcumsumexp(&self, axis: Option<i32>, options: CumulativeOptions) -> Result<Array> {
        logcumsumexp(self, axis, options)
    }
}
