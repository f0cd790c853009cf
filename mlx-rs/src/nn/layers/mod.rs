//! Layers: Python's `mlx/nn/layers/`, one file per Python file.

mod bilinear;
mod embedding;
mod linear;
mod normalization;
mod positional_encoding;
mod transformer;

pub use bilinear::Bilinear;
pub use embedding::Embedding;
pub use linear::Linear;
pub use normalization::{LayerNorm, RMSNorm};
pub use positional_encoding::{ALiBi, RoPE, SinusoidalOptions, SinusoidalPositionalEncoding};
pub use transformer::{MultiHeadAttention, MultiHeadAttentionOptions};
