//! Python's indexing: `a[1, 2:5, None, ..., idx]` and `a[...] = v`.
//!
//! ```
//! use mlx_rs::{Array, idx, NewAxis, Ellipsis};
//!
//! let a = Array::from_iter(0..24i32, &[2, 3, 4])?;
//! let b = a.index(idx![1, 1.., NewAxis, ..;2])?;        // a[1, 1:, None, ::2]
//! assert_eq!(b.shape(), [2, 1, 2]);
//! let rows = Array::from_slice(&[2i32, 0], &[2])?;
//! let c = a.index(idx![Ellipsis, &rows])?;               // a[..., [2, 0]]
//! assert_eq!(c.shape(), [2, 3, 2]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Integer and slice indices follow Python exactly (negative values count
//! from the end; an integer out of range is
//! [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange)); integer
//! arrays follow NumPy's advanced indexing, including where the indexed
//! axes land in the result. MLX does not check the values inside index
//! arrays; mlx-rs clamps them into range (see `ops::take`), as JAX does,
//! rather than read outside the array. Boolean masks are not supported (the
//! result's shape would depend on the data): use `ops::where`.

use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use super::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::ops::{self, IntoOperand};

/// One entry of an index expression.
#[derive(Debug, Clone)]
pub enum Index {
    /// `a[i]`: one position, removing the axis.
    Int(i64),
    /// `a[start:stop:step]`.
    Slice {
        /// First position (`None`: the start, or the end for a negative step).
        start: Option<i64>,
        /// Position past the last (`None`: through the end).
        stop: Option<i64>,
        /// Step (`None`: 1); zero is an error.
        step: Option<i64>,
    },
    /// `a[None]`: a new axis of size 1.
    NewAxis,
    /// `a[...]`: as many full slices as the other entries leave.
    Ellipsis,
    /// `a[idx]` with an integer array: NumPy's advanced indexing.
    Array(Array),
}

/// `None` in a Python index (`a[None]`).
#[allow(non_upper_case_globals)]
pub const NewAxis: Index = Index::NewAxis;
/// `...` in a Python index.
#[allow(non_upper_case_globals)]
pub const Ellipsis: Index = Index::Ellipsis;

impl Index {
    /// `start:stop:step` with any part omitted (`None`).
    pub fn slice(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> Index {
        Index::Slice { start, stop, step }
    }

    /// `start:stop:step` from a Rust range and a step (`(2..).step(3)` is
    /// not valid Rust, so this reads `Index::step(2.., 3)`).
    pub fn step(range: impl Into<Index>, step: i64) -> Index {
        match range.into() {
            Index::Slice { start, stop, .. } => Index::Slice {
                start,
                stop,
                step: Some(step),
            },
            other => other,
        }
    }
}

impl From<i32> for Index {
    fn from(i: i32) -> Index {
        Index::Int(i.into())
    }
}

impl From<i64> for Index {
    fn from(i: i64) -> Index {
        Index::Int(i)
    }
}

impl From<Range<i32>> for Index {
    fn from(r: Range<i32>) -> Index {
        Index::slice(Some(r.start.into()), Some(r.end.into()), None)
    }
}

impl From<RangeFrom<i32>> for Index {
    fn from(r: RangeFrom<i32>) -> Index {
        Index::slice(Some(r.start.into()), None, None)
    }
}

impl From<RangeTo<i32>> for Index {
    fn from(r: RangeTo<i32>) -> Index {
        Index::slice(None, Some(r.end.into()), None)
    }
}

impl From<RangeInclusive<i32>> for Index {
    fn from(r: RangeInclusive<i32>) -> Index {
        let end = i64::from(*r.end());
        // `a..=-1` runs through the end, like Python's `a:`.
        let stop = if end == -1 { None } else { Some(end + 1) };
        Index::slice(Some((*r.start()).into()), stop, None)
    }
}

impl From<RangeToInclusive<i32>> for Index {
    fn from(r: RangeToInclusive<i32>) -> Index {
        let end = i64::from(r.end);
        let stop = if end == -1 { None } else { Some(end + 1) };
        Index::slice(None, stop, None)
    }
}

impl From<RangeFull> for Index {
    fn from(_: RangeFull) -> Index {
        Index::slice(None, None, None)
    }
}

impl From<Array> for Index {
    fn from(a: Array) -> Index {
        Index::Array(a)
    }
}

impl From<&Array> for Index {
    fn from(a: &Array) -> Index {
        Index::Array(a.clone())
    }
}

/// An index expression: `idx![1, 2..5, NewAxis, .., &rows]`. A `..;k`
/// entry is a full slice with step `k` (`::k`); `a..b;k` is `a:b:k`.
#[macro_export]
macro_rules! idx {
    ($($entry:tt)*) => { $crate::__idx_entries!([] $($entry)*) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __idx_entries {
    ([$($done:expr),*]) => { &[$($done),*][..] };
    ([$($done:expr),*] $range:expr ; $step:expr , $($rest:tt)*) => {
        $crate::__idx_entries!([$($done,)* $crate::Index::step($range, $step)] $($rest)*)
    };
    ([$($done:expr),*] $range:expr ; $step:expr) => {
        $crate::__idx_entries!([$($done,)* $crate::Index::step($range, $step)])
    };
    ([$($done:expr),*] $entry:expr , $($rest:tt)*) => {
        $crate::__idx_entries!([$($done,)* $crate::Index::from($entry)] $($rest)*)
    };
    ([$($done:expr),*] $entry:expr) => {
        $crate::__idx_entries!([$($done,)* $crate::Index::from($entry)])
    };
}

/// A slice resolved against an axis, in MLX's terms.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    start: i32,
    stop: i32,
    step: i32,
    len: i32,
}

/// Python's `slice.indices(size)`, then MLX's spelling of "before the
/// first element" (`-size - 1`) for a negative step.
fn resolve_slice(
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
    size: i32,
) -> Result<Resolved> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::invalid("slice step cannot be zero"));
    }
    let n = i64::from(size);
    let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
    let norm = |v: i64| if v < 0 { v + n } else { v };
    let (start, stop) = if step > 0 {
        (
            start.map_or(0, |s| clamp(norm(s), 0, n)),
            stop.map_or(n, |s| clamp(norm(s), 0, n)),
        )
    } else {
        (
            start.map_or(n - 1, |s| clamp(norm(s), -1, n - 1)),
            stop.map_or(-1, |s| clamp(norm(s), -1, n - 1)),
        )
    };
    let len = if step > 0 {
        if stop > start {
            (stop - start + step - 1) / step
        } else {
            0
        }
    } else if start > stop {
        (start - stop + (-step) - 1) / (-step)
    } else {
        0
    };
    let step = step.clamp(-n.max(1), n.max(1));
    let mlx_stop = if step < 0 && stop < 0 { -n - 1 } else { stop };
    // Every value is within [-size - 1, size], so it fits i32.
    Ok(Resolved {
        start: start as i32,
        stop: mlx_stop as i32,
        step: step as i32,
        len: len as i32,
    })
}

fn check_int(i: i64, axis: usize, size: i32) -> Result<i32> {
    let n = i64::from(size);
    let wrapped = if i < 0 { i + n } else { i };
    if (0..n).contains(&wrapped) {
        Ok(wrapped as i32)
    } else {
        Err(Error::IndexOutOfRange {
            index: i,
            axis,
            size,
        })
    }
}

/// The index with `...` expanded and `None` entries turned into size-1 axes
/// of `a` (indexed by full slices), so every entry consumes one axis.
fn normalize(a: &Array, index: &[Index]) -> Result<(Array, Vec<Index>)> {
    let consuming = index
        .iter()
        .filter(|i| !matches!(i, Index::NewAxis | Index::Ellipsis))
        .count();
    let ellipses = index
        .iter()
        .filter(|i| matches!(i, Index::Ellipsis))
        .count();
    if ellipses > 1 {
        return Err(Error::invalid(
            "an index can only have a single ellipsis ('...')",
        ));
    }
    let ndim = a.ndim();
    if consuming > ndim {
        return Err(Error::invalid(format!(
            "too many indices for array: array is {ndim}-dimensional, but {consuming} were indexed"
        )));
    }
    let mut entries = Vec::with_capacity(ndim + index.len());
    for entry in index {
        match entry {
            Index::Ellipsis => {
                entries.extend((0..ndim - consuming).map(|_| Index::slice(None, None, None)))
            }
            other => entries.push(other.clone()),
        }
    }
    if ellipses == 0 {
        entries.extend((0..ndim - consuming).map(|_| Index::slice(None, None, None)));
    }
    let new_axes: Vec<i32> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Index::NewAxis))
        .map(|(i, _)| i as i32)
        .collect();
    let expanded = if new_axes.is_empty() {
        a.clone()
    } else {
        ops::expand_dims(a, new_axes)?
    };
    let entries = entries
        .into_iter()
        .map(|e| match e {
            Index::NewAxis => Index::slice(None, None, None),
            other => other,
        })
        .collect();
    Ok((expanded, entries))
}

/// The static slice that basic `entries` (integers and slices) select:
/// MLX's start, stop and strides per axis, the region's shape (integers as
/// size 1) and the result's shape (integer axes removed).
struct BasicSlice {
    start: Vec<i32>,
    stop: Vec<i32>,
    step: Vec<i32>,
    region: Vec<i32>,
    indexed: Vec<i32>,
}

fn basic_slice(entries: &[Index], shape: &[i32]) -> Result<BasicSlice> {
    let mut out = BasicSlice {
        start: vec![],
        stop: vec![],
        step: vec![],
        region: vec![],
        indexed: vec![],
    };
    for (axis, (entry, &size)) in entries.iter().zip(shape).enumerate() {
        let (start, stop, step, len) = match entry {
            Index::Int(i) => {
                let i = check_int(*i, axis, size)?;
                (i, i + 1, 1, None)
            }
            Index::Slice { start, stop, step } => {
                let r = resolve_slice(*start, *stop, *step, size)?;
                (r.start, r.stop, r.step, Some(r.len))
            }
            _ => unreachable!("basic indexing has only integers and slices"),
        };
        out.start.push(start);
        out.stop.push(stop);
        out.step.push(step);
        out.region.push(len.unwrap_or(1));
        out.indexed.extend(len);
    }
    Ok(out)
}

impl Array {
    /// `a[index]` (Python's `__getitem__`); build `index` with [`idx!`].
    pub fn index(&self, index: &[Index]) -> Result<Array> {
        let (a, entries) = normalize(self, index)?;
        if entries.iter().any(|e| matches!(e, Index::Array(_))) {
            return advanced_get(&a, &entries);
        }
        let b = basic_slice(&entries, a.shape())?;
        let sliced = ops::slice(&a, &b.start, &b.stop, Some(&b.step))?;
        if sliced.shape() == b.indexed.as_slice() {
            Ok(sliced)
        } else {
            ops::reshape(&sliced, &b.indexed)
        }
    }

    /// `a[index] = value` (Python's `__setitem__`): `self` becomes the
    /// updated array. A scalar `value` takes `self`'s dtype; an array is
    /// cast to it and broadcast to the indexed shape.
    pub fn index_put<'a>(&mut self, index: &[Index], value: impl IntoOperand<'a>) -> Result<()> {
        let dtype = self.dtype();
        let value = ops::to_array(value)?;
        let value = if value.dtype() == dtype {
            value
        } else {
            value.as_type(dtype)?
        };
        let (a, entries) = normalize(self, index)?;
        let expanded_by = a.ndim() - self.ndim();
        let updated = if entries.iter().any(|e| matches!(e, Index::Array(_))) {
            advanced_put(&a, &entries, &value)?
        } else {
            basic_put(&a, &entries, &value)?
        };
        // Remove the size-1 axes `None` entries added.
        *self = if expanded_by == 0 {
            updated
        } else {
            ops::reshape(&updated, self.shape())?
        };
        Ok(())
    }
}

fn basic_put(a: &Array, entries: &[Index], value: &Array) -> Result<Array> {
    let b = basic_slice(entries, a.shape())?;
    // The value broadcasts to what `a[index]` would be, then takes the
    // region's shape (integer axes as size 1).
    let update = ops::reshape(&ops::broadcast_to(value, &b.indexed)?, &b.region)?;
    ops::slice_update(a, &update, &b.start, &b.stop, Some(&b.step))
}

/// NumPy's advanced indexing through one gather: integer entries become
/// 0-d index arrays, slices are applied first, and the broadcast index
/// dimensions go where NumPy puts them.
fn advanced_get(a: &Array, entries: &[Index]) -> Result<Array> {
    let shape = a.shape().to_vec();
    let (mut start, mut stop, mut step) = (vec![], vec![], vec![]);
    let mut indices: Vec<Array> = vec![];
    let mut axes: Vec<i32> = vec![];
    for (axis, (entry, &size)) in entries.iter().zip(&shape).enumerate() {
        match entry {
            Index::Slice {
                start: b,
                stop: e,
                step: k,
            } => {
                let r = resolve_slice(*b, *e, *k, size)?;
                start.push(r.start);
                stop.push(r.stop);
                step.push(r.step);
            }
            Index::Int(i) => {
                start.push(0);
                stop.push(size);
                step.push(1);
                indices.push(Array::scalar(check_int(*i, axis, size)?));
                axes.push(axis as i32);
            }
            Index::Array(idx) => {
                if !idx.dtype().is_integer() {
                    return Err(Error::invalid(format!(
                        "arrays used as indices must be of integer type, not {}{}",
                        idx.dtype(),
                        if idx.dtype() == Dtype::Bool {
                            " (boolean masks are not supported: use ops::where)"
                        } else {
                            ""
                        }
                    )));
                }
                start.push(0);
                stop.push(size);
                step.push(1);
                indices.push(idx.clone());
                axes.push(axis as i32);
            }
            _ => unreachable!("normalize leaves integers, slices and arrays"),
        }
    }
    let sliced = ops::slice(a, &start, &stop, Some(&step))?;
    let indices = ops::broadcast_arrays(&indices)?;
    let index_ndim = indices.first().map_or(0, Array::ndim);
    let mut slice_sizes: Vec<i32> = sliced.shape().to_vec();
    for &axis in &axes {
        slice_sizes[axis as usize] = 1;
    }
    // gather: index dims, then every axis of `sliced` (size 1 on the indexed ones).
    let gathered = ops::gather(&sliced, &indices, &axes, &slice_sizes)?;
    let squeeze: Vec<i32> = axes.iter().map(|&ax| index_ndim as i32 + ax).collect();
    let gathered = ops::squeeze(&gathered, squeeze)?;
    // NumPy: indexed axes that are adjacent keep their place; otherwise the
    // index dims lead.
    let adjacent = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if !adjacent || axes[0] == 0 {
        return Ok(gathered);
    }
    let first = axes[0] as usize;
    let rest = gathered.ndim() - index_ndim;
    let mut order: Vec<i32> = (index_ndim..index_ndim + first).map(|d| d as i32).collect();
    order.extend((0..index_ndim).map(|d| d as i32));
    order.extend((index_ndim + first..index_ndim + rest).map(|d| d as i32));
    ops::transpose(&gathered, order)
}

/// Advanced assignment: the positions `a[index]` selects are found by
/// indexing an array of flat positions, then one scatter writes them.
fn advanced_put(a: &Array, entries: &[Index], value: &Array) -> Result<Array> {
    let size = a.size();
    let position_dtype = if i32::try_from(size).is_ok() {
        Dtype::Int32
    } else {
        Dtype::Int64
    };
    let positions = ops::reshape(
        &ops::arange(0, size as i64, 1, Some(position_dtype))?,
        a.shape(),
    )?;
    let selected = advanced_get(&positions, entries)?;
    let update = ops::broadcast_to(value, selected.shape())?;
    let count = selected.size() as i32;
    let flat = ops::reshape(a, &[size as i32])?;
    let written = ops::scatter(
        &flat,
        &[ops::reshape(&selected, &[count])?],
        &ops::reshape(&update, &[count, 1])?,
        &[0],
    )?;
    ops::reshape(&written, a.shape())
}
