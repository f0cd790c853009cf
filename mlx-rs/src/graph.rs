//! Printing computation graphs (`graph_utils.h`): `mx.export_to_dot`.

use std::ffi::CStr;

use mlx_sys as sys;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ffi::{c_string, check, check_handle};
use crate::handles::VectorArray;

/// Names given to graph nodes when a graph is printed.
pub struct NodeNamer {
    raw: sys::mlx_node_namer,
}

impl NodeNamer {
    /// A namer that numbers unnamed nodes.
    pub fn new() -> Result<NodeNamer> {
        check_handle(
            "node namer",
            || NodeNamer {
                // SAFETY: plain constructor; the handle is owned by the result.
                raw: unsafe { sys::mlx_node_namer_new() },
            },
            |n| n.raw.ctx.is_null(),
        )
    }

    /// Names the node of `array`.
    pub fn set_name(&self, array: &Array, name: &str) -> Result<()> {
        let name = c_string(name)?;
        // SAFETY: valid handles; mlx-c copies the name.
        check(|| unsafe { sys::mlx_node_namer_set_name(self.raw, array.as_raw(), name.as_ptr()) })
    }

    /// The name of `array`'s node (a generated one if none was set).
    pub fn name(&self, array: &Array) -> Result<String> {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: valid handles; the name stays valid while the namer lives
        // and is copied at once.
        check(|| unsafe { sys::mlx_node_namer_get_name(&mut name, self.raw, array.as_raw()) })?;
        if name.is_null() {
            return Err(Error::NullHandle { what: "node name" });
        }
        // SAFETY: NUL-terminated string owned by the namer.
        Ok(unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned())
    }
}

impl Drop for NodeNamer {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_node_namer_free(self.raw) };
    }
}

/// The graph computing `outputs` in Graphviz dot format (`mx.export_to_dot`).
pub fn export_to_dot(outputs: &[Array], namer: Option<&NodeNamer>) -> Result<String> {
    write_graph(outputs, namer, |file, namer, outputs| {
        // SAFETY: valid FILE, namer and vector.
        unsafe { sys::mlx_export_to_dot(file, namer, outputs) }
    })
}

/// The graph computing `outputs` as text (C++ `print_graph`).
pub fn print_graph(outputs: &[Array], namer: Option<&NodeNamer>) -> Result<String> {
    write_graph(outputs, namer, |file, namer, outputs| {
        // SAFETY: valid FILE, namer and vector.
        unsafe { sys::mlx_print_graph(file, namer, outputs) }
    })
}

/// Runs a graph printer on a temporary C `FILE` and returns what it wrote.
fn write_graph(
    outputs: &[Array],
    namer: Option<&NodeNamer>,
    print: impl FnOnce(*mut sys::FILE, sys::mlx_node_namer, sys::mlx_vector_array) -> std::ffi::c_int,
) -> Result<String> {
    let default_namer;
    let namer = match namer {
        Some(n) => n,
        None => {
            default_namer = NodeNamer::new()?;
            &default_namer
        }
    };
    let outputs = VectorArray::from_arrays(outputs);
    // SAFETY: tmpfile has no preconditions; the FILE is closed below.
    let file = unsafe { libc::tmpfile() };
    if file.is_null() {
        return Err(Error::Io {
            path: "a temporary file".into(),
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    let printed = check(|| print(file.cast(), namer.raw, outputs.as_raw()));
    let text = printed.and_then(|()| read_back(file));
    // SAFETY: `file` came from tmpfile and is closed once.
    unsafe { libc::fclose(file) };
    text
}

fn read_back(file: *mut libc::FILE) -> Result<String> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    // SAFETY: `file` is an open FILE; each fread writes at most `chunk.len()`
    // bytes into `chunk`.
    unsafe {
        libc::fflush(file);
        libc::rewind(file);
        loop {
            let n = libc::fread(chunk.as_mut_ptr().cast(), 1, chunk.len(), file);
            bytes.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
