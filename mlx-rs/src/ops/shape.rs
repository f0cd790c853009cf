//! Shape manipulation: `mx.reshape`, `mx.transpose`, `mx.concatenate`,
//! `mx.pad`, `mx.split`...
//!
//! Besides what MLX checks, these functions reject what MLX would accept
//! and then crash on or silently get wrong: dimensions below `-1` in a
//! target shape, a dimension inferred from a zero-size remainder, strided
//! views reaching outside the array, axes out of range where MLX wraps them.

use std::ffi::c_int;

use mlx_sys as sys;

use super::axes::Axes;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::ffi::{c_string, check};
use crate::handles::VectorArray;
use crate::stream::Stream;

// ---------------------------------------------------------------------------
// Private helpers, shared with `gather.rs`.

/// Runs an mlx-c op that writes a vector of arrays into `*res`.
pub(super) fn arrays_from_op(
    op: impl FnOnce(*mut sys::mlx_vector_array) -> c_int,
) -> Result<Vec<Array>> {
    let mut out = VectorArray::new();
    check(|| op(out.as_mut_ptr()))?;
    out.to_vec()
}

/// `axis` (negative counts from the end) as an index below `ndim`.
pub(super) fn normalize_axis(axis: i32, ndim: usize, what: &str) -> Result<usize> {
    let n = ndim as i64;
    let index = if axis < 0 {
        i64::from(axis) + n
    } else {
        i64::from(axis)
    };
    if (0..n).contains(&index) {
        Ok(index as usize)
    } else {
        Err(Error::invalid(format!(
            "[{what}] axis {axis} is out of range for an array of {ndim} dimensions"
        )))
    }
}

/// Checks a target shape in which `-1` means "inferred": no dimension below
/// `-1` (MLX multiplies them as unsigned sizes and accepts, for example,
/// `[-2, -2]` for four elements) and a product that fits in memory sizes.
/// Returns the product of the given (non-inferred) dimensions.
fn check_target_shape(what: &str, shape: &[i32]) -> Result<u64> {
    let mut product: u64 = 1;
    for &dim in shape {
        if dim < -1 {
            return Err(Error::invalid(format!(
                "[{what}] shape {shape:?} has a negative dimension"
            )));
        }
        if dim >= 0 {
            product = product.checked_mul(dim as u64).ok_or_else(|| {
                Error::invalid(format!("[{what}] shape {shape:?} has too many elements"))
            })?;
        }
    }
    Ok(product)
}

/// The length of a slice as mlx-c's `int`.
fn len_i32(len: usize, what: &str) -> Result<i32> {
    i32::try_from(len).map_err(|_| Error::invalid(format!("[{what}] {len} is too many")))
}

// ---------------------------------------------------------------------------
// Reshaping.

/// `a` with a new shape holding the same elements (`mx.reshape`).
///
/// One dimension may be `-1`, inferred from the others. Dimensions below
/// `-1` are rejected (MLX itself would accept some of them).
pub fn reshape(a: &Array, shape: &[i32]) -> Result<Array> {
    check_target_shape("reshape", shape)?;
    let s = Stream::current()?;
    // SAFETY: valid handles; `shape` holds `shape.len()` ints; mlx-c writes
    // a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_reshape(res, a.as_raw(), shape.as_ptr(), shape.len(), s.as_raw())
    })
}

/// Axes `start_axis..=end_axis` merged into one (`mx.flatten`).
///
/// Python's defaults are `0` and `-1`. As in MLX, axes past either end are
/// clamped to the array's axes.
pub fn flatten(a: &Array, start_axis: i32, end_axis: i32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_flatten(res, a.as_raw(), start_axis, end_axis, s.as_raw())
    })
}

/// Axis `axis` split into `shape` (`mx.unflatten`).
///
/// One entry of `shape` may be `-1`, inferred from the others; it cannot be
/// inferred when the others multiply to zero (MLX would divide by zero).
pub fn unflatten(a: &Array, axis: i32, shape: &[i32]) -> Result<Array> {
    let product = check_target_shape("unflatten", shape)?;
    if product == 0 && shape.contains(&-1) {
        return Err(Error::invalid(format!(
            "[unflatten] cannot infer the -1 dimension of shape {shape:?} with zero elements"
        )));
    }
    let s = Stream::current()?;
    // SAFETY: valid handles; `shape` holds `shape.len()` ints; mlx-c writes
    // a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_unflatten(
            res,
            a.as_raw(),
            axis,
            shape.as_ptr(),
            shape.len(),
            s.as_raw(),
        )
    })
}

/// Axes of size one removed (`mx.squeeze`): all of them for [`Axes::All`],
/// else the given ones, which must have size one.
pub fn squeeze(a: &Array, axes: impl Into<Axes>) -> Result<Array> {
    let axes = axes.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        match &axes {
            Axes::All => sys::mlx_squeeze(res, a.as_raw(), s.as_raw()),
            Axes::One(axis) => sys::mlx_squeeze_axis(res, a.as_raw(), *axis, s.as_raw()),
            Axes::Many(axes) => {
                sys::mlx_squeeze_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s.as_raw())
            }
        }
    })
}

/// Axes of size one inserted at `axes`, positions in the result
/// (`mx.expand_dims`).
///
/// Python requires the axes; [`Axes::All`] is rejected.
pub fn expand_dims(a: &Array, axes: impl Into<Axes>) -> Result<Array> {
    let axes = match axes.into() {
        Axes::All => {
            return Err(Error::invalid(
                "[expand_dims] the axes to insert must be given",
            ));
        }
        Axes::One(axis) => vec![axis],
        Axes::Many(axes) => axes,
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        match axes.as_slice() {
            &[axis] => sys::mlx_expand_dims(res, a.as_raw(), axis, s.as_raw()),
            axes => {
                sys::mlx_expand_dims_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s.as_raw())
            }
        }
    })
}

/// At least one dimension: a scalar becomes shape `[1]` (`mx.atleast_1d`).
///
/// Python also accepts several arrays; map over them instead.
pub fn atleast_1d(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_atleast_1d(res, a.as_raw(), s.as_raw()) })
}

/// At least two dimensions, adding leading axes (`mx.atleast_2d`).
///
/// Python also accepts several arrays; map over them instead.
pub fn atleast_2d(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_atleast_2d(res, a.as_raw(), s.as_raw()) })
}

/// At least three dimensions: `[n]` becomes `[1, n, 1]`, `[m, n]` becomes
/// `[m, n, 1]` (`mx.atleast_3d`).
///
/// Python also accepts several arrays; map over them instead.
pub fn atleast_3d(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_atleast_3d(res, a.as_raw(), s.as_raw()) })
}

/// The bytes of `a` read as `dtype` (`mx.view`); the last axis grows or
/// shrinks when the element sizes differ.
pub fn view(a: &Array, dtype: Dtype) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_view(res, a.as_raw(), dtype.to_raw(), s.as_raw()) })
}

/// Options of [`as_strided`], with Python's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsStridedOptions {
    /// The shape of the view (`None`: the input's shape).
    pub shape: Option<Vec<i32>>,
    /// The strides of the view in elements (`None`: row-major strides of
    /// `shape`).
    pub strides: Option<Vec<i64>>,
    /// Elements to skip at the start (0).
    pub offset: usize,
}

/// A view of `a`'s elements, in row-major order, with the given shape,
/// strides and offset (`mx.as_strided`).
///
/// Unlike MLX, views reaching outside the array's elements are rejected
/// (MLX would read outside its memory), as are strides of another length
/// than the shape.
pub fn as_strided(a: &Array, options: AsStridedOptions) -> Result<Array> {
    let shape = options.shape.unwrap_or_else(|| a.shape().to_vec());
    let strides = match options.strides {
        Some(strides) => strides,
        None => {
            let mut strides = vec![1i64; shape.len()];
            for i in (1..shape.len()).rev() {
                strides[i - 1] = strides[i].saturating_mul(i64::from(shape[i]));
            }
            strides
        }
    };
    if strides.len() != shape.len() {
        return Err(Error::invalid(format!(
            "[as_strided] {} strides were given for shape {shape:?}",
            strides.len()
        )));
    }
    if shape.iter().any(|&d| d < 0) {
        return Err(Error::invalid(format!(
            "[as_strided] shape {shape:?} has a negative dimension"
        )));
    }
    if !shape.contains(&0) {
        // The lowest and highest element offsets the view reaches.
        let (mut low, mut high) = (options.offset as i128, options.offset as i128);
        for (&dim, &stride) in shape.iter().zip(&strides) {
            let reach = i128::from(stride) * i128::from(dim - 1);
            if reach < 0 {
                low += reach;
            } else {
                high += reach;
            }
        }
        if low < 0 || high >= a.size() as i128 {
            return Err(Error::invalid(format!(
                "[as_strided] shape {shape:?}, strides {strides:?} and offset {} reach \
                 elements {low}..={high}, outside the {} elements of the array",
                options.offset,
                a.size()
            )));
        }
    }
    let s = Stream::current()?;
    // SAFETY: valid handles; `shape` and `strides` hold their lengths of
    // ints; the view stays within the array (checked above); mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_as_strided(
            res,
            a.as_raw(),
            shape.as_ptr(),
            shape.len(),
            strides.as_ptr(),
            strides.len(),
            options.offset,
            s.as_raw(),
        )
    })
}

// ---------------------------------------------------------------------------
// Reordering axes.

/// Axes permuted (`mx.transpose`): reversed for [`Axes::All`] (Python's
/// default), else `axes[i]` is the input axis that becomes axis `i`.
pub fn transpose(a: &Array, axes: impl Into<Axes>) -> Result<Array> {
    let axes = axes.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        match &axes {
            Axes::All => sys::mlx_transpose(res, a.as_raw(), s.as_raw()),
            Axes::One(axis) => sys::mlx_transpose_axes(res, a.as_raw(), axis, 1, s.as_raw()),
            Axes::Many(axes) => {
                sys::mlx_transpose_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s.as_raw())
            }
        }
    })
}

/// Two axes exchanged (`mx.swapaxes`).
pub fn swapaxes(a: &Array, axis1: i32, axis2: i32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_swapaxes(res, a.as_raw(), axis1, axis2, s.as_raw())
    })
}

/// Axis `source` moved to position `destination` (`mx.moveaxis`).
pub fn moveaxis(a: &Array, source: i32, destination: i32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_moveaxis(res, a.as_raw(), source, destination, s.as_raw())
    })
}

/// Elements reversed along `axes`, all of them for [`Axes::All`]
/// (`mx.flip`).
pub fn flip(a: &Array, axes: impl Into<Axes>) -> Result<Array> {
    let axes = axes.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        match &axes {
            Axes::All => sys::mlx_flip(res, a.as_raw(), s.as_raw()),
            Axes::One(axis) => sys::mlx_flip_axis(res, a.as_raw(), *axis, s.as_raw()),
            Axes::Many(axes) => {
                sys::mlx_flip_axes(res, a.as_raw(), axes.as_ptr(), axes.len(), s.as_raw())
            }
        }
    })
}

/// The `shift` argument of [`roll`]: Python's `int` or `tuple[int]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shift {
    /// One shift (`shift=2`), used for every axis rolled.
    One(i32),
    /// One shift per axis (`shift=(1, -2)`). With [`Axes::All`] or
    /// [`Axes::One`] the shifts are added up, as in MLX.
    Many(Vec<i32>),
}

impl From<i32> for Shift {
    fn from(shift: i32) -> Shift {
        Shift::One(shift)
    }
}

impl From<&[i32]> for Shift {
    fn from(shifts: &[i32]) -> Shift {
        Shift::Many(shifts.to_vec())
    }
}

impl<const N: usize> From<[i32; N]> for Shift {
    fn from(shifts: [i32; N]) -> Shift {
        Shift::Many(shifts.to_vec())
    }
}

impl From<Vec<i32>> for Shift {
    fn from(shifts: Vec<i32>) -> Shift {
        Shift::Many(shifts)
    }
}

/// Elements rotated by `shift` places along `axes` (`mx.roll`); with
/// [`Axes::All`] (Python's `axis=None`) the array is rolled as if
/// flattened.
pub fn roll(a: &Array, shift: impl Into<Shift>, axes: impl Into<Axes>) -> Result<Array> {
    let axes = axes.into();
    let shifts = match (shift.into(), &axes) {
        (Shift::One(shift), Axes::Many(axes)) => vec![shift; axes.len()],
        (Shift::One(shift), _) => vec![shift],
        (Shift::Many(shifts), _) => shifts,
    };
    let (sp, sn) = (shifts.as_ptr(), shifts.len());
    let s = Stream::current()?;
    // SAFETY: valid handles; `shifts` and `axes` hold their lengths of ints;
    // mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        match &axes {
            Axes::All => sys::mlx_roll(res, a.as_raw(), sp, sn, s.as_raw()),
            Axes::One(axis) => sys::mlx_roll_axis(res, a.as_raw(), sp, sn, *axis, s.as_raw()),
            Axes::Many(axes) => sys::mlx_roll_axes(
                res,
                a.as_raw(),
                sp,
                sn,
                axes.as_ptr(),
                axes.len(),
                s.as_raw(),
            ),
        }
    })
}

// ---------------------------------------------------------------------------
// Broadcasting.

/// `a` broadcast to `shape` (`mx.broadcast_to`).
pub fn broadcast_to(a: &Array, shape: &[i32]) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; `shape` holds `shape.len()` ints; mlx-c writes
    // a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_broadcast_to(res, a.as_raw(), shape.as_ptr(), shape.len(), s.as_raw())
    })
}

/// The arrays broadcast against one another (`mx.broadcast_arrays`).
pub fn broadcast_arrays<A: AsRef<Array>>(arrays: &[A]) -> Result<Vec<Array>> {
    let inputs = VectorArray::from_arrays(arrays.iter().map(AsRef::as_ref));
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a vector into `res`.
    arrays_from_op(|res| unsafe { sys::mlx_broadcast_arrays(res, inputs.as_raw(), s.as_raw()) })
}

/// Coordinate grids from 1-D coordinate arrays (`mx.meshgrid`).
///
/// Python's defaults are `sparse = false` and `indexing = "xy"`
/// (Cartesian); `"ij"` gives matrix indexing.
pub fn meshgrid<A: AsRef<Array>>(arrays: &[A], sparse: bool, indexing: &str) -> Result<Vec<Array>> {
    let inputs = VectorArray::from_arrays(arrays.iter().map(AsRef::as_ref));
    let indexing = c_string(indexing)?;
    let s = Stream::current()?;
    // SAFETY: valid handles and a NUL-terminated string; mlx-c writes a
    // vector into `res`.
    arrays_from_op(|res| unsafe {
        sys::mlx_meshgrid(res, inputs.as_raw(), sparse, indexing.as_ptr(), s.as_raw())
    })
}

// ---------------------------------------------------------------------------
// Joining and splitting.

/// The arrays joined along an existing axis (`mx.concatenate`); `None`
/// (Python's `axis=None`) joins them flattened. Python's default is `0`.
pub fn concatenate<A: AsRef<Array>>(arrays: &[A], axis: impl Into<Option<i32>>) -> Result<Array> {
    let inputs = VectorArray::from_arrays(arrays.iter().map(AsRef::as_ref));
    let axis = axis.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        match axis {
            Some(axis) => sys::mlx_concatenate_axis(res, inputs.as_raw(), axis, s.as_raw()),
            None => sys::mlx_concatenate(res, inputs.as_raw(), s.as_raw()),
        }
    })
}

/// The arrays, all of one shape, joined along a new axis (`mx.stack`);
/// `None` means axis 0, as in Python.
pub fn stack<A: AsRef<Array>>(arrays: &[A], axis: impl Into<Option<i32>>) -> Result<Array> {
    let inputs = VectorArray::from_arrays(arrays.iter().map(AsRef::as_ref));
    let axis = axis.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        match axis {
            Some(axis) => sys::mlx_stack_axis(res, inputs.as_raw(), axis, s.as_raw()),
            None => sys::mlx_stack(res, inputs.as_raw(), s.as_raw()),
        }
    })
}

/// The `indices_or_sections` argument of [`split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndicesOrSections {
    /// That many equal parts (`2`); the axis must divide evenly.
    Sections(i32),
    /// The split points (`[1, 3]`), giving one more part than points.
    Indices(Vec<i32>),
}

impl From<i32> for IndicesOrSections {
    fn from(sections: i32) -> Self {
        IndicesOrSections::Sections(sections)
    }
}

impl From<&[i32]> for IndicesOrSections {
    fn from(indices: &[i32]) -> Self {
        IndicesOrSections::Indices(indices.to_vec())
    }
}

impl<const N: usize> From<[i32; N]> for IndicesOrSections {
    fn from(indices: [i32; N]) -> Self {
        IndicesOrSections::Indices(indices.to_vec())
    }
}

impl From<Vec<i32>> for IndicesOrSections {
    fn from(indices: Vec<i32>) -> Self {
        IndicesOrSections::Indices(indices)
    }
}

/// `a` cut into parts along `axis` (`mx.split`); Python's default axis is
/// `0`.
pub fn split(
    a: &Array,
    indices_or_sections: impl Into<IndicesOrSections>,
    axis: i32,
) -> Result<Vec<Array>> {
    let split = indices_or_sections.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; `indices` holds `indices.len()` ints; mlx-c
    // writes a vector into `res`.
    arrays_from_op(|res| unsafe {
        match &split {
            IndicesOrSections::Sections(sections) => {
                sys::mlx_split(res, a.as_raw(), *sections, axis, s.as_raw())
            }
            IndicesOrSections::Indices(indices) => sys::mlx_split_sections(
                res,
                a.as_raw(),
                indices.as_ptr(),
                indices.len(),
                axis,
                s.as_raw(),
            ),
        }
    })
}

/// The slices of `a` along `axis`, with that axis removed (`mx.unstack`);
/// `None` means axis 0, Python's default.
pub fn unstack(a: &Array, axis: impl Into<Option<i32>>) -> Result<Vec<Array>> {
    let axis = axis.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a vector into `res`.
    arrays_from_op(|res| unsafe {
        match axis {
            Some(axis) => sys::mlx_unstack_axis(res, a.as_raw(), axis, s.as_raw()),
            None => sys::mlx_unstack(res, a.as_raw(), s.as_raw()),
        }
    })
}

/// Each element repeated `repeats` times along `axis`, or along the
/// flattened array for `None` (`mx.repeat`; Python's default is `None`).
pub fn repeat(a: &Array, repeats: i32, axis: impl Into<Option<i32>>) -> Result<Array> {
    let axis = axis.into();
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        match axis {
            Some(axis) => sys::mlx_repeat_axis(res, a.as_raw(), repeats, axis, s.as_raw()),
            None => sys::mlx_repeat(res, a.as_raw(), repeats, s.as_raw()),
        }
    })
}

/// `a` repeated `reps[i]` times along each axis (`mx.tile`); Python's
/// integer `reps` is `&[reps]`.
pub fn tile(a: &Array, reps: &[i32]) -> Result<Array> {
    if let Some(rep) = reps.iter().find(|&&r| r < 0) {
        return Err(Error::invalid(format!(
            "[tile] repetitions must not be negative, got {rep}"
        )));
    }
    let s = Stream::current()?;
    // SAFETY: valid handles; `reps` holds `reps.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_tile(res, a.as_raw(), reps.as_ptr(), reps.len(), s.as_raw())
    })
}

// ---------------------------------------------------------------------------
// Padding.

/// The `pad_width` argument of [`pad`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PadWidth {
    /// The same number before and after every axis (`pad_width=2`).
    Uniform(i32),
    /// `(before, after)` for every axis (`pad_width=(1, 2)`).
    Pair(i32, i32),
    /// `(before, after)` for each axis in order (`pad_width=[(1, 2), (0,
    /// 3)]`); one pair applies to every axis, as in Python.
    PerAxis(Vec<(i32, i32)>),
}

impl From<i32> for PadWidth {
    fn from(width: i32) -> Self {
        PadWidth::Uniform(width)
    }
}

impl From<(i32, i32)> for PadWidth {
    fn from((before, after): (i32, i32)) -> Self {
        PadWidth::Pair(before, after)
    }
}

impl From<&[(i32, i32)]> for PadWidth {
    fn from(widths: &[(i32, i32)]) -> Self {
        PadWidth::PerAxis(widths.to_vec())
    }
}

impl<const N: usize> From<[(i32, i32); N]> for PadWidth {
    fn from(widths: [(i32, i32); N]) -> Self {
        PadWidth::PerAxis(widths.to_vec())
    }
}

impl From<Vec<(i32, i32)>> for PadWidth {
    fn from(widths: Vec<(i32, i32)>) -> Self {
        PadWidth::PerAxis(widths)
    }
}

/// How [`pad`] fills the new elements (Python's `mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PadMode {
    /// The constant value (`"constant"`, the default).
    #[default]
    Constant,
    /// The edge values repeated (`"edge"`).
    Edge,
    /// The array mirrored without repeating the edge (`"reflect"`).
    Reflect,
    /// The array mirrored, repeating the edge (`"symmetric"`).
    Symmetric,
}

impl PadMode {
    fn as_str(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Edge => "edge",
            PadMode::Reflect => "reflect",
            PadMode::Symmetric => "symmetric",
        }
    }
}

/// Options of [`pad`], with Python's defaults.
#[derive(Debug, Clone, Default)]
pub struct PadOptions {
    /// How to fill ([`PadMode::Constant`]).
    pub mode: PadMode,
    /// The value for [`PadMode::Constant`], cast to the array's dtype
    /// (`None`: zero).
    pub constant_values: Option<Array>,
}

impl PadOptions {
    /// Constant padding with `value`, cast to the array's dtype.
    pub fn constant(value: impl Into<Array>) -> Self {
        PadOptions {
            mode: PadMode::Constant,
            constant_values: Some(value.into()),
        }
    }

    /// Padding in `mode`.
    pub fn mode(mode: PadMode) -> Self {
        PadOptions {
            mode,
            constant_values: None,
        }
    }
}

/// `a` padded on both sides of each axis (`mx.pad`).
pub fn pad(a: &Array, pad_width: impl Into<PadWidth>, options: PadOptions) -> Result<Array> {
    let value = match options.constant_values {
        Some(value) => value,
        None => Array::scalar(0i32),
    };
    let mode = c_string(options.mode.as_str())?;
    let ndim = a.ndim();
    let (low, high): (Vec<i32>, Vec<i32>) = match pad_width.into() {
        PadWidth::Uniform(width) => {
            let s = Stream::current()?;
            // SAFETY: valid handles and a NUL-terminated string; mlx-c
            // writes a new array into `res`.
            return Array::try_from_op(|res| unsafe {
                sys::mlx_pad_symmetric(
                    res,
                    a.as_raw(),
                    width,
                    value.as_raw(),
                    mode.as_ptr(),
                    s.as_raw(),
                )
            });
        }
        PadWidth::Pair(before, after) => (vec![before; ndim], vec![after; ndim]),
        PadWidth::PerAxis(widths) if widths.len() == 1 => {
            (vec![widths[0].0; ndim], vec![widths[0].1; ndim])
        }
        PadWidth::PerAxis(widths) => widths.into_iter().unzip(),
    };
    // Every axis in order, as Python does: MLX's edge mode indexes the
    // widths by axis and only works that way. MLX checks that the widths
    // match the axes in number.
    let axes: Vec<i32> = (0..len_i32(ndim, "pad")?).collect();
    let s = Stream::current()?;
    // SAFETY: valid handles; each vector holds its length of ints; the mode
    // is NUL-terminated; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_pad(
            res,
            a.as_raw(),
            axes.as_ptr(),
            axes.len(),
            low.as_ptr(),
            low.len(),
            high.as_ptr(),
            high.len(),
            value.as_raw(),
            mode.as_ptr(),
            s.as_raw(),
        )
    })
}

// ---------------------------------------------------------------------------
// Diagonals and triangles.

/// Clamps a diagonal offset into `[-rows, cols]`, which selects the same
/// (possibly empty) diagonal and keeps MLX's offset arithmetic from
/// overflowing.
fn clamp_offset(offset: i32, rows: i32, cols: i32) -> i32 {
    offset.clamp(-rows, cols)
}

/// The `k`-th diagonal of a 2-D array, or a square matrix with a 1-D array
/// on its `k`-th diagonal (`mx.diag`; Python's default `k` is 0).
pub fn diag(a: &Array, k: i32) -> Result<Array> {
    let k = match *a.shape() {
        [n] => {
            if i64::from(n) + i64::from(k).abs() > i64::from(i32::MAX) {
                return Err(Error::invalid(format!(
                    "[diag] a {n}-element diagonal at offset {k} does not fit a matrix"
                )));
            }
            k
        }
        [rows, cols] => clamp_offset(k, rows, cols),
        _ => k,
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_diag(res, a.as_raw(), k, s.as_raw()) })
}

/// Options of [`diagonal`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagonalOptions {
    /// Offset from the main diagonal, positive above it (0).
    pub offset: i32,
    /// The first axis of the 2-D sub-arrays (0).
    pub axis1: i32,
    /// The second axis of the 2-D sub-arrays (1).
    pub axis2: i32,
}

impl Default for DiagonalOptions {
    fn default() -> Self {
        DiagonalOptions {
            offset: 0,
            axis1: 0,
            axis2: 1,
        }
    }
}

impl DiagonalOptions {
    /// The diagonal at `offset` of axes 0 and 1.
    pub fn offset(offset: i32) -> Self {
        DiagonalOptions {
            offset,
            ..Default::default()
        }
    }
}

/// The diagonals of the 2-D sub-arrays over `axis1` and `axis2`, as a new
/// last axis (`mx.diagonal`).
pub fn diagonal(a: &Array, options: DiagonalOptions) -> Result<Array> {
    let DiagonalOptions {
        mut offset,
        axis1,
        axis2,
    } = options;
    let ndim = a.ndim();
    if let (Ok(ax1), Ok(ax2)) = (
        normalize_axis(axis1, ndim, "diagonal"),
        normalize_axis(axis2, ndim, "diagonal"),
    ) {
        offset = clamp_offset(offset, a.shape()[ax1], a.shape()[ax2]);
    }
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_diagonal(res, a.as_raw(), offset, axis1, axis2, s.as_raw())
    })
}

/// The last two axes' rows and columns as `(rows, cols)`, if there are two.
fn matrix_dims(x: &Array) -> Option<(i32, i32)> {
    match x.shape() {
        [.., rows, cols] => Some((*rows, *cols)),
        _ => None,
    }
}

/// `x` with the elements above the `k`-th diagonal zeroed (`mx.tril`;
/// Python's default `k` is 0).
pub fn tril(x: &Array, k: i32) -> Result<Array> {
    let k = matrix_dims(x).map_or(k, |(rows, cols)| clamp_offset(k, rows, cols));
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_tril(res, x.as_raw(), k, s.as_raw()) })
}

/// `x` with the elements below the `k`-th diagonal zeroed (`mx.triu`;
/// Python's default `k` is 0).
pub fn triu(x: &Array, k: i32) -> Result<Array> {
    let k = matrix_dims(x).map_or(k, |(rows, cols)| clamp_offset(k, rows, cols));
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_triu(res, x.as_raw(), k, s.as_raw()) })
}

/// The `n`-th discrete difference along `axis` (`mx.diff`; Python's
/// defaults are `n = 1`, `axis = -1`).
pub fn diff(a: &Array, n: i32, axis: i32) -> Result<Array> {
    // MLX builds `n` subtractions; past the axis length the result stays
    // empty, so larger orders are cut there (same result, bounded graph).
    let n = match normalize_axis(axis, a.ndim(), "diff") {
        Ok(ax) if n > 0 => n.min(a.shape()[ax].max(1)),
        _ => n,
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_diff(res, a.as_raw(), n, axis, s.as_raw()) })
}

// ---------------------------------------------------------------------------
// Graph helpers.

/// The number of elements over `axes` as a scalar of `dtype`, or its
/// inverse (C++ `mlx::core::number_of_elements`; Python has no
/// counterpart). Under function transformations the count follows the
/// traced shape.
///
/// Unlike MLX, which wraps axes modulo the dimension count (and divides by
/// zero for a scalar), axes out of range are rejected.
pub fn number_of_elements(a: &Array, axes: &[i32], inverted: bool, dtype: Dtype) -> Result<Array> {
    let axes: Vec<i32> = axes
        .iter()
        .map(|&axis| normalize_axis(axis, a.ndim(), "number_of_elements").map(|ax| ax as i32))
        .collect::<Result<_>>()?;
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` holds `axes.len()` ints; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_number_of_elements(
            res,
            a.as_raw(),
            axes.as_ptr(),
            axes.len(),
            inverted,
            dtype.to_raw(),
            s.as_raw(),
        )
    })
}

/// `inputs` unchanged, but computed only after `dependencies`
/// (`mx.depends`).
///
/// `inputs` must not be empty (MLX would read past it).
pub fn depends<A: AsRef<Array>, B: AsRef<Array>>(
    inputs: &[A],
    dependencies: &[B],
) -> Result<Vec<Array>> {
    if inputs.is_empty() {
        return Err(Error::invalid("[depends] at least one input is needed"));
    }
    let inputs = VectorArray::from_arrays(inputs.iter().map(AsRef::as_ref));
    let dependencies = VectorArray::from_arrays(dependencies.iter().map(AsRef::as_ref));
    // SAFETY: valid handles; mlx-c writes a vector into `res`.
    arrays_from_op(|res| unsafe { sys::mlx_depends(res, inputs.as_raw(), dependencies.as_raw()) })
}

// ---------------------------------------------------------------------------
// Methods.

impl Array {
    /// `self` with a new shape (`a.reshape(shape)`); see [`reshape`].
    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        reshape(self, shape)
    }

    /// Axes `start_axis..=end_axis` merged (`a.flatten(start_axis,
    /// end_axis)`); see [`flatten`].
    pub fn flatten(&self, start_axis: i32, end_axis: i32) -> Result<Array> {
        flatten(self, start_axis, end_axis)
    }

    /// Axes of size one removed (`a.squeeze(axis)`); see [`squeeze`].
    pub fn squeeze(&self, axes: impl Into<Axes>) -> Result<Array> {
        squeeze(self, axes)
    }

    /// Axes permuted (`a.transpose(*axes)`); see [`transpose`].
    pub fn transpose(&self, axes: impl Into<Axes>) -> Result<Array> {
        transpose(self, axes)
    }

    /// Axes reversed (`a.T`).
    #[allow(non_snake_case)]
    pub fn T(&self) -> Result<Array> {
        transpose(self, Axes::All)
    }

    /// Two axes exchanged (`a.swapaxes(axis1, axis2)`); see [`swapaxes`].
    pub fn swapaxes(&self, axis1: i32, axis2: i32) -> Result<Array> {
        swapaxes(self, axis1, axis2)
    }

    /// An axis moved (`a.moveaxis(source, destination)`); see [`moveaxis`].
    pub fn moveaxis(&self, source: i32, destination: i32) -> Result<Array> {
        moveaxis(self, source, destination)
    }

    /// `self` cut into parts (`a.split(indices_or_sections, axis)`); see
    /// [`split`].
    pub fn split(
        &self,
        indices_or_sections: impl Into<IndicesOrSections>,
        axis: i32,
    ) -> Result<Vec<Array>> {
        split(self, indices_or_sections, axis)
    }

    /// A diagonal, or a diagonal matrix (`a.diag(k)`); see [`diag`].
    pub fn diag(&self, k: i32) -> Result<Array> {
        diag(self, k)
    }

    /// Diagonals of 2-D sub-arrays (`a.diagonal(offset, axis1, axis2)`); see
    /// [`diagonal`].
    pub fn diagonal(&self, options: DiagonalOptions) -> Result<Array> {
        diagonal(self, options)
    }

    /// The bytes read as another dtype (`a.view(dtype)`); see [`view`].
    pub fn view(&self, dtype: Dtype) -> Result<Array> {
        view(self, dtype)
    }
}
