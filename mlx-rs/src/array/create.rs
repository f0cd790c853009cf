//! Arrays from Rust data: `mx.array(...)`.

use mlx_sys as sys;

use super::Array;
use crate::dtype::{ArrayElement, Dtype};
use crate::error::{Error, Result};
use crate::ffi::check_handle;

impl Array {
    /// An array of `shape` holding a copy of `data` in row-major order
    /// (`mx.array(data).reshape(shape)`).
    ///
    /// Fails if a dimension is negative or `data` does not fill the shape.
    pub fn from_slice<T: ArrayElement>(data: &[T], shape: &[i32]) -> Result<Array> {
        let expected = element_count(shape)?;
        if expected != data.len() {
            return Err(Error::ShapeMismatch {
                shape: shape.to_vec(),
                expected,
                actual: data.len(),
            });
        }
        // SAFETY: `data` holds the shape's element count of T, whose layout
        // is T::DTYPE's, aligned for T.
        unsafe { copy_data(data.as_ptr().cast(), shape, T::DTYPE) }
    }

    /// An array of `shape` that takes ownership of `data` (row-major)
    /// without copying it where the backend can use the memory as is (the
    /// CPU); elsewhere MLX copies it. The vector is freed when MLX no
    /// longer needs it.
    pub fn from_vec_shaped<T: ArrayElement>(data: Vec<T>, shape: &[i32]) -> Result<Array> {
        let expected = element_count(shape)?;
        if expected != data.len() {
            return Err(Error::ShapeMismatch {
                shape: shape.to_vec(),
                expected,
                actual: data.len(),
            });
        }
        if data.is_empty() {
            return Array::from_slice(&data, shape);
        }
        let ndim = i32::try_from(shape.len())
            .map_err(|_| Error::invalid(format!("{} dimensions are too many", shape.len())))?;
        extern "C" fn free_vec<T>(payload: *mut std::ffi::c_void) {
            let _ = std::panic::catch_unwind(|| {
                // SAFETY: `payload` is the `Box<Vec<T>>` leaked below; MLX
                // calls this deleter once.
                drop(unsafe { Box::from_raw(payload.cast::<Vec<T>>()) });
            });
        }
        let mut boxed = Box::new(data);
        let pointer = boxed.as_mut_ptr().cast::<std::ffi::c_void>();
        let payload = Box::into_raw(boxed).cast::<std::ffi::c_void>();
        check_handle(
            "array",
            || {
                Array {
                    // SAFETY: `pointer` addresses the vector's `expected`
                    // elements of T::DTYPE, which stay alive until MLX calls
                    // `free_vec` with the payload. (Should mlx-c fail after the
                    // checks above, the vector leaks rather than being freed
                    // twice.)
                    raw: unsafe {
                        sys::mlx_array_new_data_managed_payload(
                            pointer,
                            shape.as_ptr(),
                            ndim,
                            T::DTYPE.to_raw(),
                            payload,
                            Some(free_vec::<T>),
                        )
                    },
                }
            },
            |a| a.raw.ctx.is_null(),
        )
    }

    /// An array of `shape` and `dtype` from raw little-endian bytes in
    /// row-major order, as stored in safetensors or NumPy files.
    pub fn from_bytes(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        let expected = element_count(shape)?;
        if bytes.len() != expected * dtype.size() {
            return Err(Error::invalid(format!(
                "shape {shape:?} of {dtype} needs {} bytes, but {} were given",
                expected * dtype.size(),
                bytes.len()
            )));
        }
        // mlx-c reads the data through a typed pointer, so it must be
        // aligned for the dtype (8 bytes covers every dtype).
        let mut aligned = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `aligned` has at least `bytes.len()` bytes; no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                aligned.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            )
        };
        // SAFETY: `aligned` holds exactly the shape's elements of `dtype`,
        // suitably aligned.
        unsafe { copy_data(aligned.as_ptr().cast(), shape, dtype) }
    }

    /// An array of `shape` from the values of `iter` in row-major order.
    pub fn from_iter<T: ArrayElement>(
        iter: impl IntoIterator<Item = T>,
        shape: &[i32],
    ) -> Result<Array> {
        let data: Vec<T> = iter.into_iter().collect();
        Array::from_slice(&data, shape)
    }

    /// A 0-dimensional array holding `value` (`mx.array(value)`).
    pub fn scalar<T: ArrayElement>(value: T) -> Array {
        // A one-element slice always fills shape [], so this cannot fail
        // short of MLX running out of memory.
        Array::from_slice(&[value], &[])
            .unwrap_or_else(|e| panic!("making a scalar array failed: {e}"))
    }
}

/// A new array holding a copy of the elements at `data`.
///
/// # Safety
/// `data` must point at the element count of `shape` in `dtype`'s layout,
/// aligned for it, readable for the duration of the call.
unsafe fn copy_data(data: *const std::ffi::c_void, shape: &[i32], dtype: Dtype) -> Result<Array> {
    let ndim = i32::try_from(shape.len())
        .map_err(|_| Error::invalid(format!("{} dimensions are too many", shape.len())))?;
    check_handle(
        "array",
        || Array {
            // SAFETY: guaranteed by the caller; mlx-c copies the data
            // before returning.
            raw: unsafe { sys::mlx_array_new_data(data, shape.as_ptr(), ndim, dtype.to_raw()) },
        },
        |a| a.raw.ctx.is_null(),
    )
}

/// Fails unless `shape` has no negative dimension and its data, in
/// `dtype`, fits in memory addresses: MLX wraps the byte count around
/// silently and would then read and write out of bounds. `op` names the
/// operation in the message.
pub(crate) fn check_shape(op: &str, shape: &[i32], dtype: Dtype) -> Result<()> {
    let mut bytes = dtype.size();
    let mut overflow = false;
    for &dim in shape {
        let dim = usize::try_from(dim).map_err(|_| {
            Error::invalid(format!("[{op}] shape {shape:?} has a negative dimension"))
        })?;
        match bytes.checked_mul(dim) {
            Some(b) => bytes = b,
            None => overflow = true,
        }
    }
    // A zero dimension makes the array empty however large the others are.
    if !shape.contains(&0) && (overflow || bytes > isize::MAX as usize) {
        return Err(Error::invalid(format!(
            "[{op}] shape {shape:?} of {dtype} is too large to address"
        )));
    }
    Ok(())
}

/// The number of elements of `shape`, checking each dimension.
pub(crate) fn element_count(shape: &[i32]) -> Result<usize> {
    shape.iter().try_fold(1usize, |count, &dim| {
        let dim = usize::try_from(dim)
            .map_err(|_| Error::invalid(format!("shape {shape:?} has a negative dimension")))?;
        count
            .checked_mul(dim)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} has too many elements")))
    })
}

impl<T: ArrayElement> From<T> for Array {
    /// A 0-dimensional array.
    fn from(value: T) -> Array {
        Array::scalar(value)
    }
}

impl<T: ArrayElement> From<&[T]> for Array {
    /// A 1-dimensional array.
    ///
    /// # Panics
    /// If the slice has more than `i32::MAX` elements.
    fn from(data: &[T]) -> Array {
        let len = i32::try_from(data.len()).expect("a 1-D array holds at most i32::MAX elements");
        Array::from_slice(data, &[len]).unwrap_or_else(|e| panic!("making a 1-D array failed: {e}"))
    }
}

impl<T: ArrayElement, const N: usize> From<[T; N]> for Array {
    /// A 1-dimensional array.
    fn from(data: [T; N]) -> Array {
        Array::from(&data[..])
    }
}

impl<T: ArrayElement> From<Vec<T>> for Array {
    /// A 1-dimensional array.
    fn from(data: Vec<T>) -> Array {
        Array::from(&data[..])
    }
}
