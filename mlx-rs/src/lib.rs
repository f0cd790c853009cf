//! Safe Rust bindings to MLX.
//!
//! The safe API (arrays, operations, transforms, io, `nn`) is being built;
//! until then this crate re-exports the raw bindings as [`sys`].

pub use mlx_sys as sys;
