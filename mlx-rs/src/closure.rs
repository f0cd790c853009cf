//! Rust closures as mlx-c closures (`closure.h`).
//!
//! Each kind of mlx-c closure gets one `extern "C"` trampoline that calls
//! the boxed Rust closure passed as its payload, through
//! [`ffi::callback`](crate::ffi::callback): panics and errors are caught
//! there and returned by the mlx-c call that invoked the closure. The box is
//! freed by mlx-c (through the payload destructor) when its last copy goes.
//!
//! A closure borrowing data (`'a`) may only be handed to mlx-c calls that
//! keep no copy after they return; the public transforms that keep one
//! (`compile`, `checkpoint`, custom functions, export) require `'static`.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::marker::PhantomData;

use mlx_sys as sys;

use crate::array::Array;
use crate::error::Result;
use crate::ffi::{callback, check, check_handle};
use crate::handles::{MapStringToArray, VectorArray, VectorInt};

/// Reads the arrays of a vector mlx-c lends to a callback (not freed here).
fn read_lent(vector: sys::mlx_vector_array) -> Result<Vec<Array>> {
    // SAFETY: the vector is valid for the duration of the callback.
    let len = unsafe { sys::mlx_vector_array_size(vector) };
    (0..len)
        .map(|i| {
            // SAFETY: `i` is within the vector; writes a new handle.
            Array::try_from_op(|res| unsafe { sys::mlx_vector_array_get(res, vector, i) })
        })
        .collect()
}

/// Fills the result vector mlx-c gave a callback (an empty handle, which
/// only `set` can fill).
fn write_out(out: *mut sys::mlx_vector_array, arrays: &[Array]) -> Result<()> {
    let arrays = VectorArray::from_arrays(arrays);
    // SAFETY: `out` points at a vector handle owned by mlx-c for the
    // duration of the callback; the contents are copied into it.
    check(|| unsafe { sys::mlx_vector_array_set(out, arrays.as_raw()) })
}

fn write_ints(out: *mut sys::mlx_vector_int, values: &[i32]) -> Result<()> {
    let mut ints = VectorInt::new();
    for &value in values {
        // SAFETY: valid owned vector.
        check(|| unsafe { sys::mlx_vector_int_append_value(*ints.as_mut_ptr(), value) })?;
    }
    // SAFETY: `out` points at a vector handle owned by mlx-c; the contents
    // are copied into it.
    check(|| unsafe { sys::mlx_vector_int_set(out, *ints.as_mut_ptr()) })
}

fn lent_ints<'a>(data: *const c_int, len: usize) -> &'a [i32] {
    if data.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: mlx-c passes `len` ints valid for the callback.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

/// Frees a boxed payload of type `F`; called by mlx-c exactly once.
extern "C" fn drop_payload<F>(payload: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `payload` is the `Box<F>` leaked by the constructor that
        // registered this destructor; mlx-c calls it once.
        drop(unsafe { Box::from_raw(payload.cast::<F>()) });
    });
}

/// The Rust closure behind a payload.
///
/// # Safety
/// `payload` must be the `Box<F>` leaked by one of this module's
/// constructors, still alive (mlx-c frees it only after the last call).
unsafe fn payload_ref<'p, F>(payload: *mut c_void) -> &'p F {
    // SAFETY: guaranteed by the caller.
    unsafe { &*payload.cast::<F>() }
}

/// A function of arrays: mlx-c's `mlx_closure`.
pub(crate) struct Closure<'a> {
    raw: sys::mlx_closure,
    _borrows: PhantomData<&'a ()>,
}

impl<'a> Closure<'a> {
    /// Wraps `f`; see the module docs for what `'a` allows.
    pub(crate) fn new<F>(f: F) -> Result<Closure<'a>>
    where
        F: Fn(&[Array]) -> Result<Vec<Array>> + 'a,
    {
        extern "C" fn trampoline<F: Fn(&[Array]) -> Result<Vec<Array>>>(
            out: *mut sys::mlx_vector_array,
            input: sys::mlx_vector_array,
            payload: *mut c_void,
        ) -> c_int {
            callback(|| {
                // SAFETY: registered with a `Box<F>` payload below.
                let f = unsafe { payload_ref::<F>(payload) };
                write_out(out, &f(&read_lent(input)?)?)
            })
        }
        let payload = Box::into_raw(Box::new(f)).cast::<c_void>();
        let raw = check_handle(
            "closure",
            // SAFETY: the trampoline and destructor match the payload's type.
            || unsafe {
                sys::mlx_closure_new_func_payload(
                    Some(trampoline::<F>),
                    payload,
                    Some(drop_payload::<F>),
                )
            },
            |c| c.ctx.is_null(),
        )?;
        Ok(Closure {
            raw,
            _borrows: PhantomData,
        })
    }

    /// An empty closure for mlx-c to write into.
    pub(crate) fn empty() -> Closure<'a> {
        Closure {
            // SAFETY: plain constructor of an empty handle.
            raw: unsafe { sys::mlx_closure_new() },
            _borrows: PhantomData,
        }
    }

    /// Calls the closure.
    pub(crate) fn apply(&self, args: &[Array]) -> Result<Vec<Array>> {
        let args = VectorArray::from_arrays(args);
        let mut out = VectorArray::new();
        // SAFETY: valid handles; mlx-c writes the results into `out`.
        check(|| unsafe { sys::mlx_closure_apply(out.as_mut_ptr(), self.raw, args.as_raw()) })?;
        out.to_vec()
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure {
        self.raw
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_closure {
        &mut self.raw
    }
}

impl Clone for Closure<'_> {
    fn clone(&self) -> Self {
        let mut copy = Closure::empty();
        // SAFETY: copies a valid closure (a shared std::function) into an
        // owned handle; cannot fail for a valid source.
        unsafe { sys::mlx_closure_set(&mut copy.raw, self.raw) };
        copy
    }
}

impl Drop for Closure<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_free(self.raw) };
    }
}

/// A function of positional and keyword arrays: `mlx_closure_kwargs`.
pub(crate) struct ClosureKwargs {
    raw: sys::mlx_closure_kwargs,
}

impl ClosureKwargs {
    pub(crate) fn new<F>(f: F) -> Result<ClosureKwargs>
    where
        F: Fn(&[Array], &HashMap<String, Array>) -> Result<Vec<Array>> + 'static,
    {
        extern "C" fn trampoline<F: Fn(&[Array], &HashMap<String, Array>) -> Result<Vec<Array>>>(
            out: *mut sys::mlx_vector_array,
            args: sys::mlx_vector_array,
            kwargs: sys::mlx_map_string_to_array,
            payload: *mut c_void,
        ) -> c_int {
            callback(|| {
                // SAFETY: registered with a `Box<F>` payload below.
                let f = unsafe { payload_ref::<F>(payload) };
                let kwargs = MapStringToArray::read_lent(kwargs)?;
                write_out(out, &f(&read_lent(args)?, &kwargs)?)
            })
        }
        let payload = Box::into_raw(Box::new(f)).cast::<c_void>();
        let raw = check_handle(
            "closure",
            // SAFETY: the trampoline and destructor match the payload's type.
            || unsafe {
                sys::mlx_closure_kwargs_new_func_payload(
                    Some(trampoline::<F>),
                    payload,
                    Some(drop_payload::<F>),
                )
            },
            |c| c.ctx.is_null(),
        )?;
        Ok(ClosureKwargs { raw })
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure_kwargs {
        self.raw
    }
}

impl Drop for ClosureKwargs {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_kwargs_free(self.raw) };
    }
}

/// The function `value_and_grad` returns: `mlx_closure_value_and_grad`.
pub(crate) struct ClosureValueAndGrad<'a> {
    raw: sys::mlx_closure_value_and_grad,
    _borrows: PhantomData<&'a ()>,
}

impl<'a> ClosureValueAndGrad<'a> {
    pub(crate) fn empty() -> Self {
        ClosureValueAndGrad {
            // SAFETY: plain constructor of an empty handle.
            raw: unsafe { sys::mlx_closure_value_and_grad_new() },
            _borrows: PhantomData,
        }
    }

    pub(crate) fn apply(&self, args: &[Array]) -> Result<(Vec<Array>, Vec<Array>)> {
        let args = VectorArray::from_arrays(args);
        let (mut values, mut grads) = (VectorArray::new(), VectorArray::new());
        // SAFETY: valid handles; mlx-c writes both results.
        check(|| unsafe {
            sys::mlx_closure_value_and_grad_apply(
                values.as_mut_ptr(),
                grads.as_mut_ptr(),
                self.raw,
                args.as_raw(),
            )
        })?;
        Ok((values.to_vec()?, grads.to_vec()?))
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_closure_value_and_grad {
        &mut self.raw
    }
}

impl Drop for ClosureValueAndGrad<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_value_and_grad_free(self.raw) };
    }
}

/// A custom vector-Jacobian product: `(primals, cotangents, outputs) ->
/// vjps` (`mlx_closure_custom`).
pub(crate) struct ClosureCustom {
    raw: sys::mlx_closure_custom,
}

impl ClosureCustom {
    pub(crate) fn new<F>(f: F) -> Result<Self>
    where
        F: Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + 'static,
    {
        extern "C" fn trampoline<F: Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>>>(
            out: *mut sys::mlx_vector_array,
            primals: sys::mlx_vector_array,
            cotangents: sys::mlx_vector_array,
            outputs: sys::mlx_vector_array,
            payload: *mut c_void,
        ) -> c_int {
            callback(|| {
                // SAFETY: registered with a `Box<F>` payload below.
                let f = unsafe { payload_ref::<F>(payload) };
                let result = f(
                    &read_lent(primals)?,
                    &read_lent(cotangents)?,
                    &read_lent(outputs)?,
                )?;
                write_out(out, &result)
            })
        }
        let payload = Box::into_raw(Box::new(f)).cast::<c_void>();
        let raw = check_handle(
            "closure",
            // SAFETY: the trampoline and destructor match the payload's type.
            || unsafe {
                sys::mlx_closure_custom_new_func_payload(
                    Some(trampoline::<F>),
                    payload,
                    Some(drop_payload::<F>),
                )
            },
            |c| c.ctx.is_null(),
        )?;
        Ok(ClosureCustom { raw })
    }

    pub(crate) fn empty() -> Self {
        ClosureCustom {
            // SAFETY: plain constructor of an empty handle ("no custom vjp").
            raw: unsafe { sys::mlx_closure_custom_new() },
        }
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure_custom {
        self.raw
    }
}

impl Drop for ClosureCustom {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_custom_free(self.raw) };
    }
}

/// A custom Jacobian-vector product: `(primals, tangents, argnums) -> jvps`
/// (`mlx_closure_custom_jvp`).
pub(crate) struct ClosureCustomJvp {
    raw: sys::mlx_closure_custom_jvp,
}

impl ClosureCustomJvp {
    pub(crate) fn new<F>(f: F) -> Result<Self>
    where
        F: Fn(&[Array], &[Array], &[i32]) -> Result<Vec<Array>> + 'static,
    {
        extern "C" fn trampoline<F: Fn(&[Array], &[Array], &[i32]) -> Result<Vec<Array>>>(
            out: *mut sys::mlx_vector_array,
            primals: sys::mlx_vector_array,
            tangents: sys::mlx_vector_array,
            argnums: *const c_int,
            argnums_len: usize,
            payload: *mut c_void,
        ) -> c_int {
            callback(|| {
                // SAFETY: registered with a `Box<F>` payload below.
                let f = unsafe { payload_ref::<F>(payload) };
                let result = f(
                    &read_lent(primals)?,
                    &read_lent(tangents)?,
                    lent_ints(argnums, argnums_len),
                )?;
                write_out(out, &result)
            })
        }
        let payload = Box::into_raw(Box::new(f)).cast::<c_void>();
        let raw = check_handle(
            "closure",
            // SAFETY: the trampoline and destructor match the payload's type.
            || unsafe {
                sys::mlx_closure_custom_jvp_new_func_payload(
                    Some(trampoline::<F>),
                    payload,
                    Some(drop_payload::<F>),
                )
            },
            |c| c.ctx.is_null(),
        )?;
        Ok(ClosureCustomJvp { raw })
    }

    pub(crate) fn empty() -> Self {
        ClosureCustomJvp {
            // SAFETY: plain constructor of an empty handle ("no custom jvp").
            raw: unsafe { sys::mlx_closure_custom_jvp_new() },
        }
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure_custom_jvp {
        self.raw
    }
}

impl Drop for ClosureCustomJvp {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_custom_jvp_free(self.raw) };
    }
}

/// A custom vectorisation rule: `(inputs, axes) -> (outputs, out_axes)`
/// (`mlx_closure_custom_vmap`).
pub(crate) struct ClosureCustomVmap {
    raw: sys::mlx_closure_custom_vmap,
}

impl ClosureCustomVmap {
    pub(crate) fn new<F>(f: F) -> Result<Self>
    where
        F: Fn(&[Array], &[i32]) -> Result<(Vec<Array>, Vec<i32>)> + 'static,
    {
        extern "C" fn trampoline<F: Fn(&[Array], &[i32]) -> Result<(Vec<Array>, Vec<i32>)>>(
            out: *mut sys::mlx_vector_array,
            out_axes: *mut sys::mlx_vector_int,
            inputs: sys::mlx_vector_array,
            axes: *const c_int,
            axes_len: usize,
            payload: *mut c_void,
        ) -> c_int {
            callback(|| {
                // SAFETY: registered with a `Box<F>` payload below.
                let f = unsafe { payload_ref::<F>(payload) };
                let (outputs, axes) = f(&read_lent(inputs)?, lent_ints(axes, axes_len))?;
                write_out(out, &outputs)?;
                write_ints(out_axes, &axes)
            })
        }
        let payload = Box::into_raw(Box::new(f)).cast::<c_void>();
        let raw = check_handle(
            "closure",
            // SAFETY: the trampoline and destructor match the payload's type.
            || unsafe {
                sys::mlx_closure_custom_vmap_new_func_payload(
                    Some(trampoline::<F>),
                    payload,
                    Some(drop_payload::<F>),
                )
            },
            |c| c.ctx.is_null(),
        )?;
        Ok(ClosureCustomVmap { raw })
    }

    pub(crate) fn empty() -> Self {
        ClosureCustomVmap {
            // SAFETY: plain constructor of an empty handle ("no custom vmap").
            raw: unsafe { sys::mlx_closure_custom_vmap_new() },
        }
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_closure_custom_vmap {
        self.raw
    }
}

impl Drop for ClosureCustomVmap {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_closure_custom_vmap_free(self.raw) };
    }
}
