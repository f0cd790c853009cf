//! Layers: Python's `mlx/nn/layers/`, one file per Python file.

mod containers;
mod dropout;
mod embedding;
mod linear;
mod normalization;

pub use containers::{Identity, Sequential};
pub use dropout::{Dropout, Dropout2d, Dropout3d};
pub use embedding::Embedding;
pub use linear::Linear;
pub use normalization::{BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm};
