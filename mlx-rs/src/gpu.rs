//! GPU backends and device properties: Python's `mx.metal`, `mx.cuda` and
//! `mx.device_info` (mlx-c's `metal.h`, `cuda.h` and the `mlx_device_info_*`
//! functions of `device.h`).
//!
//! ```
//! use mlx_rs::{Device, gpu};
//!
//! let info = gpu::device_info(&Device::cpu())?;
//! if let Some(gpu::DeviceInfoValue::String(name)) = info.get("device_name") {
//!     println!("running on {name}");
//! }
//! println!("Metal: {}, CUDA: {}", gpu::metal::is_available()?, gpu::cuda::is_available()?);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::collections::HashMap;
use std::ffi::{CStr, c_char};

use mlx_sys as sys;

use crate::error::{Error, Result};
use crate::ffi::{c_string, check};
use crate::handles::VectorString;
use crate::stream::Device;

/// One value of [`device_info`]: Python's `str` or `int`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceInfoValue {
    /// A text property, such as `device_name` or `architecture`.
    String(String),
    /// A size or count, such as `memory_size` (bytes).
    Size(usize),
}

impl DeviceInfoValue {
    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            DeviceInfoValue::String(text) => Some(text),
            DeviceInfoValue::Size(_) => None,
        }
    }

    /// The number, if this is a size.
    pub fn as_size(&self) -> Option<usize> {
        match self {
            DeviceInfoValue::String(_) => None,
            DeviceInfoValue::Size(size) => Some(*size),
        }
    }
}

/// An owned `mlx_device_info`.
struct DeviceInfo(sys::mlx_device_info);

impl DeviceInfo {
    fn get(device: &Device) -> Result<DeviceInfo> {
        // SAFETY: plain constructor of an empty handle, owned by the result.
        let mut info = DeviceInfo(unsafe { sys::mlx_device_info_new() });
        // SAFETY: `device` is valid; mlx-c fills the owned handle.
        check(|| unsafe { sys::mlx_device_info_get(&mut info.0, device.as_raw()) })?;
        Ok(info)
    }

    fn keys(&self) -> Result<Vec<String>> {
        let mut keys = VectorString::new();
        // SAFETY: valid handles; mlx-c writes the keys into `keys`.
        check(|| unsafe { sys::mlx_device_info_get_keys(keys.as_mut_ptr(), self.0) })?;
        keys.to_vec()
    }

    fn value(&self, key: &str) -> Result<DeviceInfoValue> {
        let c_key = c_string(key)?;
        // mlx-c answers a missing key with status 2 and no message; ask
        // first so the error can name the key.
        let mut exists = false;
        // SAFETY: valid handle and NUL-terminated key; writes one value.
        check(|| unsafe { sys::mlx_device_info_has_key(&mut exists, self.0, c_key.as_ptr()) })?;
        if !exists {
            return Err(Error::invalid(format!("device info has no key {key:?}")));
        }
        let mut is_string = false;
        // SAFETY: as above.
        check(|| unsafe {
            sys::mlx_device_info_is_string(&mut is_string, self.0, c_key.as_ptr())
        })?;
        if is_string {
            let mut text: *const c_char = std::ptr::null();
            // SAFETY: as above; the string stays valid while `self` lives
            // and is copied at once.
            check(|| unsafe {
                sys::mlx_device_info_get_string(&mut text, self.0, c_key.as_ptr())
            })?;
            if text.is_null() {
                return Err(Error::NullHandle {
                    what: "device info string",
                });
            }
            // SAFETY: a NUL-terminated string owned by the info.
            let text = unsafe { CStr::from_ptr(text) };
            Ok(DeviceInfoValue::String(text.to_string_lossy().into_owned()))
        } else {
            let mut size = 0;
            // SAFETY: as above; writes one value.
            check(|| unsafe { sys::mlx_device_info_get_size(&mut size, self.0, c_key.as_ptr()) })?;
            Ok(DeviceInfoValue::Size(size))
        }
    }
}

impl Drop for DeviceInfo {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_device_info_free(self.0) };
    }
}

/// The properties of `device` (`mx.device_info(device)`), such as
/// `device_name`, `architecture` and `memory_size`.
///
/// The keys depend on the backend; a GPU that this build of MLX cannot use
/// gives an empty map, as in Python.
pub fn device_info(device: &Device) -> Result<HashMap<String, DeviceInfoValue>> {
    let info = DeviceInfo::get(device)?;
    info.keys()?
        .into_iter()
        .map(|key| {
            let value = info.value(&key)?;
            Ok((key, value))
        })
        .collect()
}

/// Apple's Metal backend: Python's `mx.metal`.
pub mod metal {
    use std::path::Path;

    use mlx_sys as sys;

    use crate::error::{Error, Result};
    use crate::ffi::{c_path, check};
    use crate::handles::MlxString;

    /// Whether this build of MLX can use Metal (`mx.metal.is_available`).
    pub fn is_available() -> Result<bool> {
        let mut available = false;
        // SAFETY: writes one value.
        check(|| unsafe { sys::mlx_metal_is_available(&mut available) })?;
        Ok(available)
    }

    /// `Err` naming `what` when Metal is not available: MLX's no-Metal
    /// build silently ignores these calls.
    fn require_metal(what: &str) -> Result<()> {
        if is_available()? {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "[metal::{what}] Metal is not available in this build of MLX"
            )))
        }
    }

    /// Starts capturing Metal work into `path`, which should end in
    /// `.gputrace` (`mx.metal.start_capture`).
    ///
    /// Unlike Python, which silently does nothing without Metal, this
    /// returns `Err` when Metal is not available.
    pub fn start_capture(path: impl AsRef<Path>) -> Result<()> {
        require_metal("start_capture")?;
        let path = c_path(path.as_ref())?;
        // SAFETY: NUL-terminated path; mlx-c copies it.
        check(|| unsafe { sys::mlx_metal_start_capture(path.as_ptr()) })
    }

    /// Stops the capture begun by [`start_capture`]
    /// (`mx.metal.stop_capture`).
    ///
    /// Unlike Python, which silently does nothing without Metal, this
    /// returns `Err` when Metal is not available.
    pub fn stop_capture() -> Result<()> {
        require_metal("stop_capture")?;
        // SAFETY: no arguments.
        check(|| unsafe { sys::mlx_metal_stop_capture() })
    }

    /// The path MLX loads its Metal kernels (`mlx.metallib`) from.
    ///
    /// MLX's C++ `metal::get_metallib_path`; Python has no counterpart.
    /// Without Metal, MLX itself returns an error.
    pub fn get_metallib_path() -> Result<String> {
        let mut path = MlxString::new();
        // SAFETY: writes into the owned string.
        check(|| unsafe { sys::mlx_metal_get_metallib_path(path.as_mut_ptr()) })?;
        Ok(path.to_string_lossy())
    }

    /// Sets the path MLX loads its Metal kernels from, before any GPU work.
    ///
    /// MLX's C++ `metal::set_metallib_path`; Python has no counterpart.
    /// Returns `Err` when Metal is not available, where MLX would ignore it.
    pub fn set_metallib_path(path: impl AsRef<Path>) -> Result<()> {
        require_metal("set_metallib_path")?;
        let path = c_path(path.as_ref())?;
        // SAFETY: NUL-terminated path; mlx-c copies it.
        check(|| unsafe { sys::mlx_metal_set_metallib_path(path.as_ptr()) })
    }
}

/// NVIDIA's CUDA backend: Python's `mx.cuda`.
pub mod cuda {
    use mlx_sys as sys;

    use crate::error::Result;
    use crate::ffi::check;

    /// Whether this build of MLX can use CUDA (`mx.cuda.is_available`).
    pub fn is_available() -> Result<bool> {
        let mut available = false;
        // SAFETY: writes one value.
        check(|| unsafe { sys::mlx_cuda_is_available(&mut available) })?;
        Ok(available)
    }
}
