//! Reading and writing parts of arrays: slices, `mx.take`,
//! `mx.take_along_axis`, `mx.put_along_axis`, and the gather and scatter
//! primitives behind Python's `a[...]` and `a[...] = v`.
//!
//! # Indices out of range
//! MLX does not check index values (they are data, known only when the
//! graph runs): an index outside its axis makes MLX read or write outside
//! the array's memory. So that no safe call can do that, every index array
//! and dynamic start given here is first clamped into its axis, with a few
//! element-wise ops in the graph. In-range indices, negative ones included
//! (which count from the end once, as in MLX), give exactly MLX's result;
//! an index past the end acts as the last valid one, an index before the
//! start as the first.
//!
//! Static slices (`start`/`stop`/`strides` as numbers) follow NumPy and
//! MLX: negative values count from the end and bounds are clamped, so they
//! never fail for being out of range.

use mlx_sys as sys;

use super::binary::{add, less, maximum, minimum, r#where};
use super::shape::normalize_axis;
use crate::array::Array;
use crate::dtype::{Dtype, DtypeCategory};
use crate::error::{Error, Result};
use crate::handles::VectorArray;
use crate::stream::Stream;

// ---------------------------------------------------------------------------
// Index clamping.

/// `indices` clamped so that MLX reads or writes inside an axis of `size`
/// elements a block of `size - high` elements starting at each index:
/// negative indices are wrapped once (as MLX would) and then every index
/// is clamped into `0..=high`. Indices of a non-integer dtype are returned
/// as they are, for MLX to reject; so is everything when `high < 0` (MLX
/// rejects the call or reads nothing).
fn clamp_indices(indices: &Array, size: i64, high: i64) -> Result<Array> {
    if high < 0 {
        return Ok(indices.clone());
    }
    let dtype = indices.dtype();
    let signed = match dtype.category() {
        DtypeCategory::SignedInteger => true,
        DtypeCategory::UnsignedInteger => false,
        _ => return Ok(indices.clone()),
    };
    // A dtype that holds -size..=size, so the bounds below are exact.
    let wide = match (size > i64::from(i32::MAX), signed) {
        (true, true) => Dtype::Int64,
        (true, false) => Dtype::Uint64,
        (false, true) if dtype.size() < 4 => Dtype::Int32,
        (false, false) if dtype.size() < 4 => Dtype::Uint32,
        _ => dtype,
    };
    let indices = if wide == dtype {
        indices.clone()
    } else {
        indices.as_type(wide)?
    };
    if !signed {
        return minimum(&indices, high);
    }
    if high == size - 1 {
        // Blocks of one: MLX's own wrap of -size..0 stays in range.
        return minimum(maximum(&indices, -size)?, high);
    }
    let wrapped = r#where(less(&indices, 0)?, add(&indices, size)?, &indices)?;
    minimum(maximum(wrapped, 0)?, high)
}

/// A dynamic `start` (one index per axis of `highs`) clamped into
/// `0..=highs[i]`, as int64. Returned as it is where MLX will reject it.
fn clamp_start(start: &Array, highs: &[i64]) -> Result<Array> {
    if !start.dtype().is_integer()
        || start.ndim() > 1
        || start.size() != highs.len()
        || highs.iter().any(|&h| h < 0)
    {
        return Ok(start.clone());
    }
    let len = i32::try_from(highs.len()).map_err(|_| Error::invalid("too many axes"))?;
    let highs = Array::from_slice(highs, &[len])?;
    minimum(maximum(start.as_type(Dtype::Int64)?, 0i64)?, &highs)
}

/// Rejects boolean index arrays, which MLX's scatter reports by throwing a
/// non-exception (aborting the process).
fn reject_bool_indices<A: AsRef<Array>>(indices: &[A], what: &str) -> Result<()> {
    if indices.iter().any(|i| i.as_ref().dtype() == Dtype::Bool) {
        return Err(Error::invalid(format!(
            "[{what}] boolean indices are not supported; use integer indices"
        )));
    }
    Ok(())
}

/// `axes` as indices below `ndim` if all are (gather and scatter take no
/// negative axes).
fn valid_axes(axes: &[i32], ndim: usize) -> Option<Vec<usize>> {
    axes.iter()
        .map(|&ax| usize::try_from(ax).ok().filter(|&ax| ax < ndim))
        .collect()
}

// ---------------------------------------------------------------------------
// Static slices.

/// The strides of a static slice: ones for `None`; zero is rejected (MLX
/// would divide by it) and magnitudes past an axis's size are cut to it
/// (same elements; keeps MLX's size arithmetic from overflowing).
fn slice_strides(shape: &[i32], strides: Option<&[i32]>, what: &str) -> Result<Vec<i32>> {
    let Some(strides) = strides else {
        return Ok(vec![1; shape.len()]);
    };
    if strides.contains(&0) {
        return Err(Error::invalid(format!(
            "[{what}] slice strides must not be zero, got {strides:?}"
        )));
    }
    Ok(strides
        .iter()
        .enumerate()
        .map(|(i, &stride)| match shape.get(i) {
            Some(&n) => stride.clamp(-n.max(1), n.max(1)),
            None => stride,
        })
        .collect())
}

/// The elements `start[i]..stop[i]` step `strides[i]` along each axis, as
/// Python's `a[start:stop:step, ...]` with all three given for every axis
/// (C++ `mlx::core::slice`; Python's `mx.slice` is [`slice_dynamic`]).
///
/// Negative starts and stops count from the end; bounds are clamped as in
/// NumPy. For a negative stride, Python's omitted stop is `-size - 1`.
/// `strides = None` means steps of one; a zero stride is rejected.
pub fn slice(a: &Array, start: &[i32], stop: &[i32], strides: Option<&[i32]>) -> Result<Array> {
    let strides = slice_strides(a.shape(), strides, "slice")?;
    let s = Stream::current()?;
    // SAFETY: valid handles; each slice holds its length of ints; mlx-c
    // writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_slice(
            res,
            a.as_raw(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            s.as_raw(),
        )
    })
}

/// Defines a static slice update `fn name(src, update, start, stop,
/// strides)` over mlx-c's `$c`.
macro_rules! slice_update_op {
    ($(#[$doc:meta])* $name:ident => $c:ident) => {
        $(#[$doc])*
        pub fn $name(
            src: &Array,
            update: &Array,
            start: &[i32],
            stop: &[i32],
            strides: Option<&[i32]>,
        ) -> Result<Array> {
            let strides = slice_strides(src.shape(), strides, stringify!($name))?;
            let s = Stream::current()?;
            // SAFETY: valid handles; each slice holds its length of ints;
            // mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::$c(
                    res,
                    src.as_raw(),
                    update.as_raw(),
                    start.as_ptr(),
                    start.len(),
                    stop.as_ptr(),
                    stop.len(),
                    strides.as_ptr(),
                    strides.len(),
                    s.as_raw(),
                )
            })
        }
    };
}

slice_update_op!(
    /// `src` with the slice given as in [`slice()`] replaced by `update`
    /// (cast to `src`'s dtype and broadcast to the slice): Python's
    /// `a[start:stop:step, ...] = update` (C++ `mlx::core::slice_update`;
    /// Python's `mx.slice_update` is [`slice_update_dynamic`]).
    slice_update => mlx_slice_update
);
slice_update_op!(
    /// `src` with `update` added to the slice given as in [`slice()`]:
    /// Python's `a.at[start:stop:step].add(update)` (C++
    /// `mlx::core::slice_update_add`).
    slice_update_add => mlx_slice_update_add
);
slice_update_op!(
    /// `src` with the slice given as in [`slice()`] multiplied by `update`:
    /// Python's `a.at[start:stop:step].multiply(update)` (C++
    /// `mlx::core::slice_update_prod`).
    slice_update_prod => mlx_slice_update_prod
);
slice_update_op!(
    /// `src` with the slice given as in [`slice()`] raised to at least
    /// `update`: Python's `a.at[start:stop:step].maximum(update)` (C++
    /// `mlx::core::slice_update_max`).
    slice_update_max => mlx_slice_update_max
);
slice_update_op!(
    /// `src` with the slice given as in [`slice()`] lowered to at most
    /// `update`: Python's `a.at[start:stop:step].minimum(update)` (C++
    /// `mlx::core::slice_update_min`).
    slice_update_min => mlx_slice_update_min
);

// ---------------------------------------------------------------------------
// Dynamic slices.

/// A block of `slice_size` elements starting, along `axes`, at the indices
/// held in `start` (`mx.slice`), and at 0 along the other axes.
///
/// `start` is an integer array of one index per axis in `axes`, read when
/// the graph runs; starts are clamped so the block lies inside `a` (MLX
/// would read outside it). Negative slice sizes are rejected.
pub fn slice_dynamic(a: &Array, start: &Array, axes: &[i32], slice_size: &[i32]) -> Result<Array> {
    if slice_size.iter().any(|&n| n < 0) {
        return Err(Error::invalid(format!(
            "[slice] slice sizes must not be negative, got {slice_size:?}"
        )));
    }
    let shape = a.shape();
    let highs: Option<Vec<i64>> = (slice_size.len() == shape.len())
        .then(|| {
            axes.iter()
                .map(|&ax| {
                    let ax = normalize_axis(ax, shape.len(), "slice").ok()?;
                    Some(i64::from(shape[ax]) - i64::from(slice_size[ax]))
                })
                .collect()
        })
        .flatten();
    let start = match highs {
        Some(highs) => clamp_start(start, &highs)?,
        None => start.clone(),
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; each slice holds its length of ints; mlx-c
    // writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_slice_dynamic(
            res,
            a.as_raw(),
            start.as_raw(),
            axes.as_ptr(),
            axes.len(),
            slice_size.as_ptr(),
            slice_size.len(),
            s.as_raw(),
        )
    })
}

/// `src` with the block of `update`'s shape starting, along `axes`, at the
/// indices held in `start` replaced by `update` (`mx.slice_update`).
///
/// `update` is cast to `src`'s dtype; missing leading axes of `update` are
/// taken from `src` (size one along `axes`). Starts are clamped so the
/// block lies inside `src` (MLX would write outside it); `update` may not
/// have more axes than `src`.
pub fn slice_update_dynamic(
    src: &Array,
    update: &Array,
    start: &Array,
    axes: &[i32],
) -> Result<Array> {
    let (shape, ushape) = (src.shape(), update.shape());
    if ushape.len() > shape.len() {
        return Err(Error::invalid(format!(
            "[slice_update] the update of shape {ushape:?} has more axes than the \
             array of shape {shape:?}"
        )));
    }
    // The update's extent along each axis, as MLX broadcasts it.
    let lead = shape.len() - ushape.len();
    let highs: Option<Vec<i64>> = axes
        .iter()
        .map(|&ax| {
            let ax = normalize_axis(ax, shape.len(), "slice_update").ok()?;
            let extent = if ax < lead {
                1
            } else {
                ushape[ax - lead].min(shape[ax])
            };
            Some(i64::from(shape[ax]) - i64::from(extent))
        })
        .collect();
    let start = match highs {
        Some(highs) => clamp_start(start, &highs)?,
        None => start.clone(),
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_slice_update_dynamic(
            res,
            src.as_raw(),
            update.as_raw(),
            start.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s.as_raw(),
        )
    })
}

// ---------------------------------------------------------------------------
// Take and put.

/// The elements of `a` at `indices` along `axis`, as `a[:, indices]` for
/// axis 1; with `None` (Python's default) from the flattened array
/// (`mx.take`).
///
/// Python's integer index is a 0-dimensional array here.
///
/// MLX does not check index values (they are data, known only when the
/// graph runs) and would read outside the array for an index out of range.
/// So indices are first clamped into the axis, with a few element-wise ops
/// in the graph: in-range indices, negative ones included (counting from
/// the end), give MLX's result; an index past the end acts as the last
/// element, one before the start as the first. The same holds for every
/// index and dynamic start of this module's functions.
pub fn take(a: &Array, indices: &Array, axis: impl Into<Option<i32>>) -> Result<Array> {
    let s = Stream::current()?;
    match axis.into() {
        Some(axis) => {
            let indices = match normalize_axis(axis, a.ndim(), "take") {
                Ok(ax) => {
                    let n = i64::from(a.shape()[ax]);
                    clamp_indices(indices, n, n - 1)?
                }
                Err(_) => indices.clone(),
            };
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_take_axis(res, a.as_raw(), indices.as_raw(), axis, s.as_raw())
            })
        }
        None => {
            let n = a.size() as i64;
            let indices = clamp_indices(indices, n, n - 1)?;
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_take(res, a.as_raw(), indices.as_raw(), s.as_raw())
            })
        }
    }
}

/// The elements of `a` at `indices` along `axis`, `indices` having `a`'s
/// number of axes and broadcasting with it on the others
/// (`mx.take_along_axis`); `None` (Python's default) takes from the
/// flattened array.
///
/// Indices out of range are clamped into the axis (see [`take`]); taking
/// from an empty axis is rejected (MLX would read outside the array).
pub fn take_along_axis(a: &Array, indices: &Array, axis: impl Into<Option<i32>>) -> Result<Array> {
    let (a, axis) = match axis.into() {
        Some(axis) => (a.clone(), axis),
        None => (super::shape::reshape(a, &[-1])?, 0),
    };
    let indices = match normalize_axis(axis, a.ndim(), "take_along_axis") {
        Ok(ax) => {
            let n = i64::from(a.shape()[ax]);
            if n == 0 && indices.size() > 0 {
                return Err(Error::invalid(format!(
                    "[take_along_axis] cannot take from the empty axis {axis} of an array \
                     of shape {:?}",
                    a.shape()
                )));
            }
            clamp_indices(indices, n, n - 1)?
        }
        Err(_) => indices.clone(),
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_take_along_axis(res, a.as_raw(), indices.as_raw(), axis, s.as_raw())
    })
}

/// Shared by [`put_along_axis`] and [`scatter_add_axis`]: clamps the
/// indices and flattens for `axis = None`.
fn scatter_axis(
    a: &Array,
    indices: &Array,
    axis: Option<i32>,
    what: &str,
    op: impl FnOnce(&Array, &Array, i32) -> Result<Array>,
) -> Result<Array> {
    let (target, axis) = match axis {
        Some(axis) => (a.clone(), axis),
        None => (super::shape::reshape(a, &[-1])?, 0),
    };
    let indices = match normalize_axis(axis, target.ndim(), what) {
        Ok(ax) => {
            let n = i64::from(target.shape()[ax]);
            clamp_indices(indices, n, n - 1)?
        }
        Err(_) => indices.clone(),
    };
    let out = op(&target, &indices, axis)?;
    if target.ndim() == a.ndim() {
        Ok(out)
    } else {
        super::shape::reshape(&out, a.shape())
    }
}

/// `a` with `values` written at `indices` along `axis`, the inverse of
/// [`take_along_axis`] (`mx.put_along_axis`); `None` (Python's default)
/// writes into the flattened array and restores the shape.
///
/// Indices out of range are clamped into the axis (see [`take`]).
pub fn put_along_axis(
    a: &Array,
    indices: &Array,
    values: &Array,
    axis: impl Into<Option<i32>>,
) -> Result<Array> {
    scatter_axis(
        a,
        indices,
        axis.into(),
        "put_along_axis",
        |a, indices, axis| {
            let s = Stream::current()?;
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_put_along_axis(
                    res,
                    a.as_raw(),
                    indices.as_raw(),
                    values.as_raw(),
                    axis,
                    s.as_raw(),
                )
            })
        },
    )
}

/// `a` with `values` added at `indices` along `axis`, repeated indices
/// adding up (C++ `mlx::core::scatter_add_axis`; Python has no
/// counterpart); `None` works on the flattened array as
/// [`put_along_axis`] does.
///
/// Indices out of range are clamped into the axis (see [`take`]).
pub fn scatter_add_axis(
    a: &Array,
    indices: &Array,
    values: &Array,
    axis: impl Into<Option<i32>>,
) -> Result<Array> {
    scatter_axis(
        a,
        indices,
        axis.into(),
        "scatter_add_axis",
        |a, indices, axis| {
            let s = Stream::current()?;
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_scatter_add_axis(
                    res,
                    a.as_raw(),
                    indices.as_raw(),
                    values.as_raw(),
                    axis,
                    s.as_raw(),
                )
            })
        },
    )
}

// ---------------------------------------------------------------------------
// Gather and scatter.

/// Blocks of `slice_sizes` from `a`, one per position of the broadcast
/// `indices`, the block for index tuple `(i0, i1, ...)` starting at `i0`
/// along `axes[0]`, `i1` along `axes[1]`... and at 0 along other axes (C++
/// `mlx::core::gather`, behind Python's `a[idx]`; Python has no function).
///
/// The result has the broadcast index shape followed by `slice_sizes`.
/// `axes` must be non-negative, as in MLX. One index array calls mlx-c's
/// `mlx_gather_single`. Indices are clamped so each block lies inside `a`
/// (see [`take`]); negative slice sizes are rejected.
pub fn gather<A: AsRef<Array>>(
    a: &Array,
    indices: &[A],
    axes: &[i32],
    slice_sizes: &[i32],
) -> Result<Array> {
    if slice_sizes.iter().any(|&n| n < 0) {
        return Err(Error::invalid(format!(
            "[gather] slice sizes must not be negative, got {slice_sizes:?}"
        )));
    }
    let shape = a.shape();
    let clamped: Vec<Array> = match valid_axes(axes, shape.len()) {
        Some(axes) if axes.len() == indices.len() && slice_sizes.len() == shape.len() => indices
            .iter()
            .zip(&axes)
            .map(|(idx, &ax)| {
                let n = i64::from(shape[ax]);
                clamp_indices(idx.as_ref(), n, n - i64::from(slice_sizes[ax]))
            })
            .collect::<Result<_>>()?,
        _ => indices.iter().map(|i| i.as_ref().clone()).collect(),
    };
    let s = Stream::current()?;
    if let ([index], [axis]) = (clamped.as_slice(), axes) {
        // SAFETY: valid handles; `slice_sizes` holds its length of ints;
        // mlx-c writes a new array into `res`.
        return Array::try_from_op(|res| unsafe {
            sys::mlx_gather_single(
                res,
                a.as_raw(),
                index.as_raw(),
                *axis,
                slice_sizes.as_ptr(),
                slice_sizes.len(),
                s.as_raw(),
            )
        });
    }
    let indices = VectorArray::from_arrays(&clamped);
    // SAFETY: valid handles; `axes` and `slice_sizes` hold their lengths of
    // ints; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_gather(
            res,
            a.as_raw(),
            indices.as_raw(),
            axes.as_ptr(),
            axes.len(),
            slice_sizes.as_ptr(),
            slice_sizes.len(),
            s.as_raw(),
        )
    })
}

/// The raw entry points of one scatter variant.
struct ScatterFns {
    name: &'static str,
    many: unsafe extern "C" fn(
        *mut sys::mlx_array,
        sys::mlx_array,
        sys::mlx_vector_array,
        sys::mlx_array,
        *const std::ffi::c_int,
        usize,
        sys::mlx_stream,
    ) -> std::ffi::c_int,
    single: unsafe extern "C" fn(
        *mut sys::mlx_array,
        sys::mlx_array,
        sys::mlx_array,
        sys::mlx_array,
        std::ffi::c_int,
        sys::mlx_stream,
    ) -> std::ffi::c_int,
}

/// Shared by the scatter variants: checks, clamps, and dispatches to the
/// single-index entry point for one index array.
fn scatter_with<A: AsRef<Array>>(
    fns: ScatterFns,
    a: &Array,
    indices: &[A],
    updates: &Array,
    axes: &[i32],
) -> Result<Array> {
    reject_bool_indices(indices, fns.name)?;
    let shape = a.shape();
    let index_ndim = indices.iter().map(|i| i.as_ref().ndim()).max().unwrap_or(0);
    let clamped: Vec<Array> = match valid_axes(axes, shape.len()) {
        Some(axes) if axes.len() == indices.len() && updates.ndim() == shape.len() + index_ndim => {
            let ushape = updates.shape();
            indices
                .iter()
                .zip(&axes)
                .map(|(idx, &ax)| {
                    let n = i64::from(shape[ax]);
                    let block = i64::from(ushape[index_ndim + ax]);
                    clamp_indices(idx.as_ref(), n, n - block)
                })
                .collect::<Result<_>>()?
        }
        _ => indices.iter().map(|i| i.as_ref().clone()).collect(),
    };
    let s = Stream::current()?;
    if let ([index], [axis]) = (clamped.as_slice(), axes) {
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        return Array::try_from_op(|res| unsafe {
            (fns.single)(
                res,
                a.as_raw(),
                index.as_raw(),
                updates.as_raw(),
                *axis,
                s.as_raw(),
            )
        });
    }
    let indices = VectorArray::from_arrays(&clamped);
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        (fns.many)(
            res,
            a.as_raw(),
            indices.as_raw(),
            updates.as_raw(),
            axes.as_ptr(),
            axes.len(),
            s.as_raw(),
        )
    })
}

/// Defines a scatter variant `fn name(a, indices, updates, axes)`.
macro_rules! scatter_op {
    ($(#[$doc:meta])* $name:ident => $many:ident, $single:ident) => {
        $(#[$doc])*
        ///
        /// `updates` has the broadcast index shape followed by one block of
        /// at most `a`'s shape, written starting at the indexed positions
        /// along `axes` (non-negative, as in MLX) and at 0 along other axes;
        /// it is cast to `a`'s dtype. One index array calls mlx-c's
        /// single-index entry point. Indices are clamped so each block lies
        /// inside `a` (see [`take`]); boolean indices are
        /// rejected (MLX would abort the process).
        pub fn $name<A: AsRef<Array>>(
            a: &Array,
            indices: &[A],
            updates: &Array,
            axes: &[i32],
        ) -> Result<Array> {
            scatter_with(
                ScatterFns {
                    name: stringify!($name),
                    many: sys::$many,
                    single: sys::$single,
                },
                a,
                indices,
                updates,
                axes,
            )
        }
    };
}

scatter_op!(
    /// `a` with `updates` written at `indices` (C++ `mlx::core::scatter`,
    /// behind Python's `a[idx] = updates`; Python has no function). Where
    /// indices repeat, which update lands is unspecified.
    scatter => mlx_scatter, mlx_scatter_single
);
scatter_op!(
    /// `a` with `updates` added at `indices`, repeated indices adding up
    /// (C++ `mlx::core::scatter_add`, behind Python's
    /// `a.at[idx].add(updates)`).
    scatter_add => mlx_scatter_add, mlx_scatter_add_single
);
scatter_op!(
    /// `a` multiplied by `updates` at `indices` (C++
    /// `mlx::core::scatter_prod`, behind Python's
    /// `a.at[idx].multiply(updates)`).
    scatter_prod => mlx_scatter_prod, mlx_scatter_prod_single
);
scatter_op!(
    /// `a` raised to at least `updates` at `indices` (C++
    /// `mlx::core::scatter_max`, behind Python's
    /// `a.at[idx].maximum(updates)`).
    scatter_max => mlx_scatter_max, mlx_scatter_max_single
);
scatter_op!(
    /// `a` lowered to at most `updates` at `indices` (C++
    /// `mlx::core::scatter_min`, behind Python's
    /// `a.at[idx].minimum(updates)`).
    scatter_min => mlx_scatter_min, mlx_scatter_min_single
);

/// `a` with the positions where `mask` holds filled, in row-major order,
/// from the elements of `src` (C++ `mlx::core::masked_scatter`, behind
/// Python's `a[mask] = src`).
///
/// `mask` is boolean and matches the leading axes of `a`. If `src` has too
/// few elements, evaluating the result fails.
pub fn masked_scatter(a: &Array, mask: &Array, src: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_masked_scatter(res, a.as_raw(), mask.as_raw(), src.as_raw(), s.as_raw())
    })
}
