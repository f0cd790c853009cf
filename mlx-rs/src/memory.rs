//! MLX's memory counters and limits: Python's `mx.get_active_memory`,
//! `mx.set_memory_limit`... (mlx-c's `memory.h`).
//!
//! ```
//! use mlx_rs::memory;
//!
//! let previous = memory::set_cache_limit(64 << 20)?;
//! memory::set_cache_limit(previous)?;
//! println!("{} bytes in use", memory::get_active_memory()?);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! The counters are those of MLX's allocator for the whole process, in
//! bytes: arrays in use on any thread count. Memory freed by dropped arrays
//! goes to a cache for reuse until [`clear_cache`] or the cache limit
//! releases it.

use mlx_sys as sys;

use crate::error::Result;
use crate::ffi::check;

/// Runs an mlx-c getter that writes one `size_t`.
fn get_size(call: unsafe extern "C" fn(*mut usize) -> std::ffi::c_int) -> Result<usize> {
    let mut value = 0;
    // SAFETY: the getter writes one value into `value`.
    check(|| unsafe { call(&mut value) })?;
    Ok(value)
}

/// Runs an mlx-c setter that writes the previous limit.
fn set_size(
    call: unsafe extern "C" fn(*mut usize, usize) -> std::ffi::c_int,
    limit: usize,
) -> Result<usize> {
    let mut previous = 0;
    // SAFETY: the setter takes a plain value and writes one value.
    check(|| unsafe { call(&mut previous, limit) })?;
    Ok(previous)
}

/// The bytes held by arrays now, not counting the cache
/// (`mx.get_active_memory`).
pub fn get_active_memory() -> Result<usize> {
    get_size(sys::mlx_get_active_memory)
}

/// The bytes held by the cache of freed buffers (`mx.get_cache_memory`).
pub fn get_cache_memory() -> Result<usize> {
    get_size(sys::mlx_get_cache_memory)
}

/// The most bytes held by arrays at once since the start or the last
/// [`reset_peak_memory`] (`mx.get_peak_memory`).
pub fn get_peak_memory() -> Result<usize> {
    get_size(sys::mlx_get_peak_memory)
}

/// Resets the peak counter to the memory in use now
/// (`mx.reset_peak_memory`).
pub fn reset_peak_memory() -> Result<()> {
    // SAFETY: no arguments.
    check(|| unsafe { sys::mlx_reset_peak_memory() })
}

/// The memory limit in bytes, as [`set_memory_limit`] last set it.
///
/// MLX's C++ `get_memory_limit`; Python has no getter (its
/// `set_memory_limit` returns the previous value).
pub fn get_memory_limit() -> Result<usize> {
    get_size(sys::mlx_get_memory_limit)
}

/// Sets the memory limit (a guideline for graph evaluation) and returns
/// the previous one, in bytes (`mx.set_memory_limit`).
pub fn set_memory_limit(limit: usize) -> Result<usize> {
    set_size(sys::mlx_set_memory_limit, limit)
}

/// Sets how many bytes of freed buffers the cache may keep (0 disables the
/// cache) and returns the previous limit (`mx.set_cache_limit`).
pub fn set_cache_limit(limit: usize) -> Result<usize> {
    set_size(sys::mlx_set_cache_limit, limit)
}

/// Sets how many bytes are kept resident (wired) and returns the previous
/// limit (`mx.set_wired_limit`).
///
/// Only Metal on macOS 15 or later uses it; elsewhere MLX accepts and
/// ignores it (and returns 0).
pub fn set_wired_limit(limit: usize) -> Result<usize> {
    set_size(sys::mlx_set_wired_limit, limit)
}

/// Frees the cache of freed buffers (`mx.clear_cache`).
pub fn clear_cache() -> Result<()> {
    // SAFETY: no arguments.
    check(|| unsafe { sys::mlx_clear_cache() })
}
