//! Operations on arrays: mlx-c's `ops.h`, as Python's `mlx.core` functions.
//!
//! Every function runs on the thread's current stream (see
//! [`with_stream`](crate::with_stream)) and returns a lazily evaluated
//! [`Array`]. Optional arguments come as option structs implementing
//! `Default`; variants that Python selects by `axis=None`/`axis=int`/
//! `axis=[...]` take an [`Axes`] value.

mod axes;
mod binary;
mod creation;
mod gather;
mod linear;
mod operand;
mod reduce;
mod shape;
mod sort;
mod unary;

pub use axes::Axes;
pub use binary::*;
pub use creation::*;
pub use gather::*;
pub use linear::*;
pub(crate) use operand::to_array;
pub use operand::{IntoOperand, Operand, Scalar, promote};
pub use reduce::*;
pub use shape::*;
pub use sort::*;
pub use unary::*;

use mlx_sys as sys;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::stream::Stream;

/// `a` cast to `dtype` (`a.astype(dtype)`).
pub fn as_type(a: &Array, dtype: Dtype) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_astype(res, a.as_raw(), dtype.to_raw(), s.as_raw())
    })
}

/// `a` with row-major (or, if `allow_col_major`, column-major) contiguous
/// data (`mx.contiguous`).
pub fn contiguous(a: &Array, allow_col_major: bool) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_contiguous(res, a.as_raw(), allow_col_major, s.as_raw())
    })
}

impl Array {
    /// `self` cast to `dtype` (`a.astype(dtype)`).
    pub fn as_type(&self, dtype: Dtype) -> Result<Array> {
        as_type(self, dtype)
    }
}
