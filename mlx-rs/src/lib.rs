//! Safe Rust bindings to [MLX](https://github.com/ml-explore/mlx) through its
//! C API (mlx-c 0.7.0 over MLX 0.32.2), reading like Python's `mlx.core`.
//!
//! ```
//! use mlx_rs::{Array, Dtype, ops};
//!
//! let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = &a * 2.0f32 + 1.0f32;             // weak scalars keep float32
//! let c = ops::as_type(&b, Dtype::Int32)?;
//! assert_eq!(c.to_vec::<i32>()?, [3, 5, 7, 9]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # From Python to Rust
//!
//! | Python (`import mlx.core as mx`) | Rust (`use mlx_rs::*`) |
//! |---|---|
//! | `mx.array([[1, 2], [3, 4]], dtype=mx.float32)` | `Array::from_slice(&[1f32, 2., 3., 4.], &[2, 2])?` |
//! | `mx.array(2.5)` | `Array::from(2.5f32)` or `Array::scalar(2.5f32)` |
//! | `a.shape`, `a.dtype`, `a.ndim`, `a.size` | `a.shape()`, `a.dtype()`, `a.ndim()`, `a.size()` |
//! | `a.item()`, `a.tolist()` (flat) | `a.item::<f32>()?`, `a.to_vec::<f32>()?` (exact dtype; `item_as`/`to_vec_as` cast) |
//! | `a.astype(mx.int32)` | `a.as_type(Dtype::Int32)?` |
//! | `a + b`, `a * 2`, `-a` | `&a + &b`, `&a * 2.0f32`, `-&a` (panic on shape errors; `ops::add(&a, &b)?` returns `Result`) |
//! | `mx.add(a, 1)` | `ops::add(&a, 1)?`: a Rust scalar takes the array's dtype like Python's weak scalars |
//! | `mx.sum(a, axis=(0, 2), keepdims=True)` | `ops::sum(&a, [0, 2], true)?` (`Axes::All` for `axis=None`) |
//! | `mx.conv2d(x, w, stride=2)` | `ops::conv2d(&x, &w, Conv2dOptions { stride: [2, 2], ..Default::default() })?`: optional arguments are option structs with `Default` |
//! | `a[1:3, None, ..., idx]` | `a.index(idx![1..3, NewAxis, .., &idx])?` |
//! | `a[0, 1:] = v` | `a.index_put(idx![0, 1..], &v)?` |
//! | `mx.random.normal((2, 3), key=k)` | `random::normal(&[2, 3], NormalOptions::default(), Some(&k))?` |
//! | `mx.linalg.norm(a)`, `mx.fft.rfft(a)`, `mx.fast.rms_norm(x, w, eps)` | `linalg::norm(&a, NormOptions::default())?`, `fft::rfft(&a, FftOptions::default())?`, `fast::rms_norm(&x, Some(&w), eps)?` |
//! | `mx.grad(f)(x)` | `transforms::grad(f, &[0])?(&[x])?` where `f: Fn(&[Array]) -> Result<Vec<Array>>` |
//! | `mx.compile(f)` | `transforms::compile(f, false)?` |
//! | `mx.eval(a, b)` | `eval([&a, &b])?` or `a.eval()?` |
//! | `class M(nn.Module)` | `#[derive(mlx_rs::Module)] struct M { ... }` (see [`nn::Module`]) |
//! | `nn.value_and_grad(model, loss_fn)(model, x, y)` | `nn::value_and_grad(&mut model, &[x, y], loss_fn)?` |
//! | `optimizer.update(model, grads)` | `optimizers::update_model(&mut optimizer, &mut model, &grads)?` |
//! | `nn.quantize(model, 64, 4)` | `nn::quantize(&mut model, Some(64), Some(4), QuantizationMode::Affine, \|_, _\| true)?` |
//! | `with mx.stream(mx.cpu): ...` | `with_device(&Device::cpu(), \|\| ...)?` or `with_stream(&s, \|\| ...)` |
//! | `mx.load("w.safetensors")`, `mx.save_safetensors(...)` | `io::load_safetensors(..)`, `io::save_safetensors(..)` |
//!
//! # Lazy evaluation
//! Operations build a graph and return at once; MLX computes an array when
//! it is read (`to_vec`, `item`, printing) or evaluated (`eval`,
//! `async_eval`). As in Python, evaluate once per step of a loop rather
//! than once per op.
//!
//! # Streams and devices
//! Python passes `stream=` to each op. Here an op runs on the current
//! thread's stream: the innermost [`with_stream`] or [`with_device`] scope,
//! else the default stream of MLX's default device. [`with_device`] reuses
//! that device's default stream; no scope creates a stream. MLX 0.32's
//! default streams belong to the thread that made them (see [`Array`]).
//!
//! # Errors
//! Every fallible function returns [`Result`]. MLX's own failures (a shape
//! that does not broadcast, a missing file) come back as [`Error::Mlx`] with
//! MLX's message; nothing prints and exits as mlx-c's default handler would.
//! A panic inside a Rust closure that MLX calls (`grad`, `vmap`...) is
//! caught at the FFI boundary and returned as [`Error::CallbackPanicked`].
//! The arithmetic operators are the exception: like Python they raise (here:
//! panic) on operands that do not broadcast.

// The derive macro names `::mlx_rs`, also inside this crate.
extern crate self as mlx_rs;

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
pub mod nn;
pub mod ops;
pub mod optimizers;
pub mod random;
mod stream;
pub mod transforms;

pub use array::{Array, Ellipsis, Index, NewAxis};
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

/// `#[derive(Module)]` (see [`nn::Module`]).
pub use mlx_rs_derive::Module;

/// The raw bindings this crate is built on.
pub use mlx_sys as sys;

/// Re-exported so that `f16`, `bf16` and complex values can be made without
/// naming the crates.
pub use half::{bf16, f16};
pub use num_complex::Complex32;
