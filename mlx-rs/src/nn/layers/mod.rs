//! Layers: Python's `mlx/nn/layers/`, one file per Python file.

mod embedding;
mod linear;
mod normalization;

pub use embedding::Embedding;
pub use linear::Linear;
pub use normalization::{LayerNorm, RMSNorm};
