//! [`Array`]: Python's `mx.array`.

mod arith;
mod create;

pub(crate) use create::check_shape;
mod fmt;
mod index;
mod read;

pub use index::{Ellipsis, Index, NewAxis};

use std::ffi::c_int;

use mlx_sys as sys;

use crate::dtype::Dtype;
use crate::error::Result;
use crate::ffi::check;

/// An n-dimensional array of one [`Dtype`], evaluated lazily: Python's
/// `mx.array`.
///
/// Operations build a graph; data is computed when it is read
/// ([`Array::to_vec`], [`Array::item`], printing) or by [`Array::eval`] /
/// [`eval`](crate::eval).
///
/// `Clone` is O(1): the clone shares the underlying MLX array (reference
/// counted), as Python's assignment does.
///
/// # Threads
/// `Array` is `Send`: MLX's reference counts are atomic, so an array (or a
/// clone) may move to another thread and be used there. It is not `Sync`:
/// MLX does not synchronise two threads evaluating the same graph at once,
/// so sharing `&Array` between threads could race inside MLX. Independent
/// graphs may be built and evaluated on several threads at once.
///
/// MLX 0.32's default streams belong to the thread that made them: an
/// array built but not yet evaluated on one thread must be evaluated there
/// (or its graph built on a [`Stream::new_thread_unsafe`](crate::Stream)
/// stream); evaluating it on another thread returns an error. Evaluated
/// arrays can be read anywhere.
pub struct Array {
    raw: sys::mlx_array,
}

// SAFETY: an mlx_array is a handle to a reference-counted mlx::core::array
// whose count is atomic; moving the handle to another thread is sound. See
// the type's docs for why it is not Sync.
unsafe impl Send for Array {}

impl Array {
    /// An empty handle for mlx-c to write into.
    pub(crate) fn empty() -> Array {
        Array {
            // SAFETY: plain constructor of an empty handle.
            raw: unsafe { sys::mlx_array_new() },
        }
    }

    /// Runs an mlx-c operation that writes its result into `*res` and
    /// returns it as an `Array`. This is how every op is wrapped.
    pub(crate) fn try_from_op(op: impl FnOnce(&mut sys::mlx_array) -> c_int) -> Result<Array> {
        let mut out = Array::empty();
        check(|| op(&mut out.raw))?;
        Ok(out)
    }

    /// Takes ownership of a raw handle (which the result frees).
    ///
    /// # Safety
    /// `raw` must be a valid `mlx_array` that nothing else frees.
    pub unsafe fn from_raw(raw: sys::mlx_array) -> Array {
        Array { raw }
    }

    /// mlx-c's "no array" (a null handle) for `None`, for arguments the C
    /// API marks as optional.
    pub(crate) fn raw_or_null(array: Option<&Array>) -> sys::mlx_array {
        array.map_or(
            sys::mlx_array {
                ctx: std::ptr::null_mut(),
            },
            Array::as_raw,
        )
    }

    /// The raw handle, valid while `self` lives.
    pub fn as_raw(&self) -> sys::mlx_array {
        self.raw
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_array {
        &mut self.raw
    }

    /// The element type (`a.dtype`).
    pub fn dtype(&self) -> Dtype {
        // SAFETY: `self.raw` is a valid array.
        let raw = unsafe { sys::mlx_array_dtype(self.raw) };
        // mlx-c only returns dtypes of its own enum, all of which Dtype has.
        Dtype::from_raw(raw).unwrap_or(Dtype::Float32)
    }

    /// The shape (`a.shape`).
    pub fn shape(&self) -> &[i32] {
        let ndim = self.ndim();
        if ndim == 0 {
            return &[];
        }
        // SAFETY: mlx-c returns a pointer to `ndim` ints owned by the array,
        // which lives (unchanged, as `&self` is borrowed) as long as the slice.
        unsafe { std::slice::from_raw_parts(sys::mlx_array_shape(self.raw), ndim) }
    }

    /// The size of `axis` (negative counts from the end), as `a.shape[axis]`.
    pub fn dim(&self, axis: i32) -> Result<i32> {
        let ndim = self.ndim() as i32;
        let index = if axis < 0 { axis + ndim } else { axis };
        if !(0..ndim).contains(&index) {
            return Err(crate::Error::invalid(format!(
                "axis {axis} is out of range for an array of {ndim} dimensions"
            )));
        }
        // SAFETY: valid array and an axis checked to be in range.
        Ok(unsafe { sys::mlx_array_dim(self.raw, index) })
    }

    /// Whether the array's data is computed and ready to read (C++
    /// `array::is_available`).
    pub fn is_available(&self) -> Result<bool> {
        let mut available = false;
        // SAFETY: valid array; writes one value.
        check(|| unsafe { sys::_mlx_array_is_available(&mut available, self.raw) })?;
        Ok(available)
    }

    /// Blocks until an evaluation already started (`async_eval`) has
    /// computed the array (C++ `array::wait`).
    pub fn wait(&self) -> Result<()> {
        // SAFETY: valid array.
        check(|| unsafe { sys::_mlx_array_wait(self.raw) })
    }

    /// Whether the data is contiguous in memory, in row- or column-major
    /// order (C++ `flags().contiguous`). Evaluates first.
    pub fn is_contiguous(&self) -> Result<bool> {
        self.flag(sys::_mlx_array_is_contiguous)
    }

    /// Whether the data is row-major contiguous. Evaluates first.
    pub fn is_row_contiguous(&self) -> Result<bool> {
        self.flag(sys::_mlx_array_is_row_contiguous)
    }

    /// Whether the data is column-major contiguous. Evaluates first.
    pub fn is_col_contiguous(&self) -> Result<bool> {
        self.flag(sys::_mlx_array_is_col_contiguous)
    }

    fn flag(
        &self,
        query: unsafe extern "C" fn(*mut bool, sys::mlx_array) -> c_int,
    ) -> Result<bool> {
        self.eval()?;
        let mut value = false;
        // SAFETY: `query` is one of mlx-c's flag accessors, given a valid,
        // evaluated array; it writes one value.
        check(|| unsafe { query(&mut value, self.raw) })?;
        Ok(value)
    }

    /// The strides of the underlying data, in elements.
    pub fn strides(&self) -> &[usize] {
        let ndim = self.ndim();
        if ndim == 0 {
            return &[];
        }
        // SAFETY: as for `shape`.
        unsafe { std::slice::from_raw_parts(sys::mlx_array_strides(self.raw), ndim) }
    }

    /// The number of dimensions (`a.ndim`).
    pub fn ndim(&self) -> usize {
        // SAFETY: `self.raw` is a valid array.
        unsafe { sys::mlx_array_ndim(self.raw) }
    }

    /// The number of elements (`a.size`).
    pub fn size(&self) -> usize {
        // SAFETY: `self.raw` is a valid array.
        unsafe { sys::mlx_array_size(self.raw) }
    }

    /// The size of one element in bytes (`a.itemsize`).
    pub fn itemsize(&self) -> usize {
        // SAFETY: `self.raw` is a valid array.
        unsafe { sys::mlx_array_itemsize(self.raw) }
    }

    /// The number of bytes of data (`a.nbytes`).
    pub fn nbytes(&self) -> usize {
        // SAFETY: `self.raw` is a valid array.
        unsafe { sys::mlx_array_nbytes(self.raw) }
    }

    /// Computes the array now (`mx.eval(a)`).
    pub fn eval(&self) -> Result<()> {
        // SAFETY: `self.raw` is a valid array.
        check(|| unsafe { sys::mlx_array_eval(self.raw) })
    }
}

impl Clone for Array {
    fn clone(&self) -> Array {
        let mut copy = Array::empty();
        // SAFETY: shares the valid source array into an owned handle; this
        // copies a shared pointer and cannot fail for a valid source.
        unsafe { sys::mlx_array_set(&mut copy.raw, self.raw) };
        copy
    }
}

impl Drop for Array {
    fn drop(&mut self) {
        // SAFETY: `self.raw` is owned and freed once.
        unsafe { sys::mlx_array_free(self.raw) };
    }
}

impl AsRef<Array> for Array {
    fn as_ref(&self) -> &Array {
        self
    }
}
