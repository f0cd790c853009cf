//! Safe Rust bindings to [MLX](https://github.com/ml-explore/mlx) through its
//! C API (mlx-c 0.7.0 over MLX 0.32.2), reading like Python's `mlx.core`.
//!
//! ```
//! use mlx_rs::{Array, ops};
//!
//! let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = ops::as_type(&a, mlx_rs::Dtype::Int32)?;
//! assert_eq!(b.to_vec::<i32>()?, [1, 2, 3, 4]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! Errors from MLX (a shape that does not broadcast, a bad file...) come
//! back as [`Error`]; nothing here prints and exits as mlx-c's default
//! handler would.

mod array;
mod closure;
pub mod distributed;
mod dtype;
mod error;
pub mod export;
pub mod fast;
mod ffi;
pub mod fft;
pub mod gpu;
pub mod graph;
mod handles;
pub mod io;
pub mod linalg;
pub mod memory;
pub mod ops;
pub mod random;
mod stream;
pub mod transforms;

pub use array::Array;
pub use dtype::{ArrayElement, Dtype, DtypeCategory};
pub use error::{Error, PanicPayload, Result};
pub use stream::{
    Device, DeviceType, Stream, ThreadLocalStream, clear_streams, synchronize, with_device,
    with_stream,
};
pub use transforms::{async_eval, eval};

/// The version of the linked MLX library (`mx.__version__`).
pub fn version() -> Result<String> {
    let mut text = handles::MlxString::new();
    // SAFETY: writes into an owned string.
    ffi::check(|| unsafe { sys::mlx_version(text.as_mut_ptr()) })?;
    Ok(text.to_string_lossy())
}

/// The raw bindings this crate is built on.
pub use mlx_sys as sys;

/// Re-exported so that `f16`, `bf16` and complex values can be made without
/// naming the crates.
pub use half::{bf16, f16};
pub use num_complex::Complex32;
