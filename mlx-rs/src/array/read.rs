//! Reading data back: `a.item()`, `a.tolist()`, `np.array(a)`.

use mlx_sys as sys;

use super::Array;
use crate::dtype::{ArrayElement, Dtype};
use crate::error::{Error, Result};

impl Array {
    /// The elements in row-major order, evaluating first (`a.tolist()`,
    /// flattened). `T` must be the array's dtype; see [`Array::to_vec_as`].
    pub fn to_vec<T: ArrayElement>(&self) -> Result<Vec<T>> {
        self.require_dtype(T::DTYPE)?;
        // The data pointer is read and copied from under the MLX lock, like
        // every other mlx-c call (see `crate::ffi`): no other thread can
        // evaluate or rewrite the graph in between.
        crate::ffi::locked(|| self.copy_out())
    }

    /// The body of [`Array::to_vec`], run under the MLX lock.
    fn copy_out<T: ArrayElement>(&self) -> Result<Vec<T>> {
        // `is_row_contiguous` evaluates the array; only a strided one needs
        // a contiguous copy, evaluated in turn.
        let copy;
        let source = if self.is_row_contiguous()? {
            self
        } else {
            copy = crate::ops::contiguous(self, false)?;
            copy.eval()?;
            &copy
        };
        let count = source.size();
        if count == 0 {
            return Ok(Vec::new());
        }
        // The byte accessor works for every dtype, including float16 and
        // bfloat16, whose typed accessors mlx-c omits on x86-64.
        // SAFETY: `source` is evaluated and row-contiguous, so its data
        // pointer addresses `count` elements of T::DTYPE; they are copied
        // while `source` is alive.
        let data = unsafe { sys::mlx_array_data_uint8(source.as_raw()) };
        if data.is_null() {
            return Err(Error::NullHandle { what: "array data" });
        }
        let mut out = Vec::<T>::with_capacity(count);
        // SAFETY: see above; `out` has room for `count` T, and T's layout is
        // the dtype's, so the bytes form valid values.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data,
                out.as_mut_ptr().cast::<u8>(),
                count * T::DTYPE.size(),
            );
            out.set_len(count);
        }
        Ok(out)
    }

    /// The elements cast to `T`'s dtype first (`a.astype(...).tolist()`).
    pub fn to_vec_as<T: ArrayElement>(&self) -> Result<Vec<T>> {
        crate::ops::as_type(self, T::DTYPE)?.to_vec()
    }

    /// The single element of a one-element array, evaluating first
    /// (`a.item()`). `T` must be the array's dtype; see [`Array::item_as`].
    pub fn item<T: ArrayElement>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(Error::invalid(format!(
                "item() needs an array of one element, not of shape {:?}",
                self.shape()
            )));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// The single element cast to `T`'s dtype first.
    pub fn item_as<T: ArrayElement>(&self) -> Result<T> {
        crate::ops::as_type(self, T::DTYPE)?.item()
    }

    fn require_dtype(&self, requested: Dtype) -> Result<()> {
        let actual = self.dtype();
        if actual == requested {
            Ok(())
        } else {
            Err(Error::DtypeMismatch { requested, actual })
        }
    }
}
