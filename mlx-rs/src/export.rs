//! Exporting functions to files and importing them (`export.h`):
//! `mx.export_function`, `mx.exporter`, `mx.import_function`.
//!
//! An exported graph names its streams by index, and MLX 0.32's streams
//! belong to the thread that made them: import and call an exported function
//! on the thread that exported it, or in a process whose main thread does
//! the work (as a Python script does).

use std::collections::HashMap;
use std::path::Path;

use mlx_sys as sys;

use crate::array::Array;
use crate::closure::{Closure, ClosureKwargs};
use crate::error::{Error, Result};
use crate::ffi::{c_path, check, check_handle};
use crate::handles::{MapStringToArray, VectorArray};

fn kwargs_map(kwargs: &HashMap<String, Array>) -> Result<MapStringToArray> {
    MapStringToArray::from_map(kwargs.iter().map(|(k, v)| (k.as_str(), v)))
}

/// Traces `f` at `args` and writes it to `path` (`mx.export_function`).
/// With `shapeless`, the exported function accepts other shapes.
pub fn export_function<F>(
    path: impl AsRef<Path>,
    f: F,
    args: &[Array],
    shapeless: bool,
) -> Result<()>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    let path = c_path(path.as_ref())?;
    let f = Closure::new(f)?;
    let args = VectorArray::from_arrays(args);
    // SAFETY: valid path string and handles; `f` lives through the call,
    // which traces it and keeps no copy.
    check(|| unsafe {
        sys::mlx_export_function(path.as_ptr(), f.as_raw(), args.as_raw(), shapeless)
    })
}

/// [`export_function`] for a function that also takes named arrays.
pub fn export_function_kwargs<F>(
    path: impl AsRef<Path>,
    f: F,
    args: &[Array],
    kwargs: &HashMap<String, Array>,
    shapeless: bool,
) -> Result<()>
where
    F: Fn(&[Array], &HashMap<String, Array>) -> Result<Vec<Array>> + 'static,
{
    let path = c_path(path.as_ref())?;
    let f = ClosureKwargs::new(f)?;
    let (args, kwargs) = (VectorArray::from_arrays(args), kwargs_map(kwargs)?);
    // SAFETY: valid path string and handles.
    check(|| unsafe {
        sys::mlx_export_function_kwargs(
            path.as_ptr(),
            f.as_raw(),
            args.as_raw(),
            kwargs.as_raw(),
            shapeless,
        )
    })
}

/// Writes several traces of one function to a file, one per call of
/// [`FunctionExporter::apply`] (`mx.exporter`).
pub struct FunctionExporter {
    raw: sys::mlx_function_exporter,
}

impl FunctionExporter {
    /// An exporter of `f` writing to `path`.
    pub fn new<F>(path: impl AsRef<Path>, f: F, shapeless: bool) -> Result<FunctionExporter>
    where
        F: Fn(&[Array]) -> Result<Vec<Array>> + 'static,
    {
        let path = c_path(path.as_ref())?;
        let f = Closure::new(f)?;
        check_handle(
            "function exporter",
            || FunctionExporter {
                // SAFETY: valid path string and closure; the exporter keeps its
                // own copy of the ('static) closure.
                raw: unsafe {
                    sys::mlx_function_exporter_new(path.as_ptr(), f.as_raw(), shapeless)
                },
            },
            |e| e.raw.ctx.is_null(),
        )
    }

    /// Traces the function at `args` and adds the trace to the file.
    pub fn apply(&self, args: &[Array]) -> Result<()> {
        let args = VectorArray::from_arrays(args);
        // SAFETY: valid handles.
        check(|| unsafe { sys::mlx_function_exporter_apply(self.raw, args.as_raw()) })
    }

    /// [`FunctionExporter::apply`] with named arrays too.
    pub fn apply_kwargs(&self, args: &[Array], kwargs: &HashMap<String, Array>) -> Result<()> {
        let (args, kwargs) = (VectorArray::from_arrays(args), kwargs_map(kwargs)?);
        // SAFETY: valid handles.
        check(|| unsafe {
            sys::mlx_function_exporter_apply_kwargs(self.raw, args.as_raw(), kwargs.as_raw())
        })
    }
}

impl Drop for FunctionExporter {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once (this also closes the file).
        unsafe { sys::mlx_function_exporter_free(self.raw) };
    }
}

/// A function read from a file written by [`export_function`] or
/// [`FunctionExporter`] (`mx.import_function`).
pub struct ImportedFunction {
    raw: sys::mlx_imported_function,
}

impl ImportedFunction {
    /// Reads the function in `path`.
    pub fn new(path: impl AsRef<Path>) -> Result<ImportedFunction> {
        let shown = path.as_ref().display().to_string();
        let path = c_path(path.as_ref())?;
        check_handle(
            "imported function",
            || ImportedFunction {
                // SAFETY: valid path string; the handle is owned by the result.
                raw: unsafe { sys::mlx_imported_function_new(path.as_ptr()) },
            },
            |f| f.raw.ctx.is_null(),
        )
        .map_err(|e| Error::Io {
            path: shown,
            message: e.to_string(),
        })
    }

    /// Calls the function.
    pub fn apply(&self, args: &[Array]) -> Result<Vec<Array>> {
        let args = VectorArray::from_arrays(args);
        let mut out = VectorArray::new();
        // SAFETY: valid handles; mlx-c writes the results into `out`.
        check(|| unsafe {
            sys::mlx_imported_function_apply(out.as_mut_ptr(), self.raw, args.as_raw())
        })?;
        out.to_vec()
    }

    /// Calls the function with named arrays too.
    pub fn apply_kwargs(
        &self,
        args: &[Array],
        kwargs: &HashMap<String, Array>,
    ) -> Result<Vec<Array>> {
        let (args, kwargs) = (VectorArray::from_arrays(args), kwargs_map(kwargs)?);
        let mut out = VectorArray::new();
        // SAFETY: valid handles; mlx-c writes the results into `out`.
        check(|| unsafe {
            sys::mlx_imported_function_apply_kwargs(
                out.as_mut_ptr(),
                self.raw,
                args.as_raw(),
                kwargs.as_raw(),
            )
        })?;
        out.to_vec()
    }
}

impl Drop for ImportedFunction {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_imported_function_free(self.raw) };
    }
}
