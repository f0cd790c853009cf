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
/// `Array` is `Send` and `Sync`: an array, a clone of it or a reference to
/// it may be used on any thread, several at once. MLX itself does not
/// synchronise two threads building or evaluating the same graph (clones of
/// one lazy array evaluated on two threads at once crash inside MLX), so
/// mlx-rs serialises every MLX call that builds, evaluates or reads a graph
/// under one process-wide lock. Only reference-count updates (cloning,
/// dropping) and reads of what never changes (dtype, shape) run outside it.
/// Threads therefore never run MLX work concurrently through mlx-rs; MLX's
/// own per-stream threads still run the kernels in parallel.
///
/// Streams still matter: MLX 0.32's default streams belong to the thread
/// that made them, so an array built lazily on one thread's default stream
/// has to be evaluated on that thread (elsewhere MLX returns an error, it
/// does not crash). Evaluate ([`Array::eval`], [`eval`](crate::eval))
/// before handing a lazy graph to other threads, or build it on a stream
/// every thread has (a [`ThreadLocalStream`](crate::ThreadLocalStream)).
/// Evaluated arrays (model weights, say) can be read and used as inputs of
/// new graphs on any thread.
///
/// A thread that used MLX through mlx-rs destroys its MLX streams when it
/// ends (MLX's `clear_streams`, which MLX asks every such thread to call),
/// holding the lock, so nothing is left to MLX's own thread-exit
/// destructors, which run without it.
///
/// ```
/// use mlx_rs::{Array, ops};
///
/// fn shared<T: Send + Sync>() {}
/// shared::<Array>();
///
/// let weights = Array::from_slice(&[1.0f32, 2.0], &[2])?;
/// weights.eval()?; // evaluate before sharing
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let y = ops::multiply(&weights, 2.0f32).unwrap();
///             assert_eq!(y.to_vec::<f32>().unwrap(), [2.0, 4.0]);
///         });
///     }
/// });
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub struct Array {
    raw: sys::mlx_array,
}

// SAFETY: an mlx_array is a handle to an mlx::core::array whose reference
// counts (std::shared_ptr) are atomic, so it may be cloned, dropped and
// moved on any thread.
unsafe impl Send for Array {}
// SAFETY: `&Array` gives access to MLX only through mlx-rs's calls, which
// run every mlx-c call that builds, evaluates or reads a graph under the
// process-wide MLX lock (`crate::ffi::locked`), so no two threads are
// inside MLX on the same graph at once. Outside the lock, `&Array` only
// copies the handle (atomic counts) and reads the dtype, shape and sizes,
// which MLX never changes after making the array; `strides` evaluates
// first, after which the strides do not change either.
unsafe impl Sync for Array {}

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
        // which lives as long as the slice (`&self` is borrowed); MLX never
        // changes an array's shape after making it, so no lock is needed.
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

    /// The strides of the underlying data, in elements. Evaluates first:
    /// MLX sets an array's strides when it computes it.
    pub fn strides(&self) -> Result<&[usize]> {
        self.eval()?;
        let ndim = self.ndim();
        if ndim == 0 {
            return Ok(&[]);
        }
        // SAFETY: mlx-c returns a pointer to `ndim` strides owned by the
        // array; the array is evaluated, after which MLX does not change its
        // strides, and it lives as long as the slice (`&self` is borrowed).
        Ok(unsafe { std::slice::from_raw_parts(sys::mlx_array_strides(self.raw), ndim) })
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
