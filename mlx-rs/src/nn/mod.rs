//! Neural networks: Python's `mlx.nn`.
//!
//! The activation and loss functions are here; the `Module` trait, layers,
//! quantization and weight loading follow.

pub mod activations;
pub mod losses;
