//! Layers: Python's `mlx/nn/layers/`, one file per Python file.

mod activations;
mod bilinear;
mod embedding;
mod linear;
mod normalization;
mod positional_encoding;
mod transformer;

pub use activations::{
    CELU, ELU, GELU, GLU, GeluApprox, HardShrink, HardTanh, Hardswish, LeakyReLU, LogSigmoid,
    LogSoftmax, Mish, PReLU, ReLU, ReLU2, ReLU6, SELU, SiLU, Sigmoid, Softmax, Softmin, Softplus,
    Softshrink, Softsign, Step, Tanh,
};
pub use bilinear::Bilinear;
pub use embedding::Embedding;
pub use linear::Linear;
pub use normalization::{LayerNorm, RMSNorm};
pub use positional_encoding::{ALiBi, RoPE, SinusoidalOptions, SinusoidalPositionalEncoding};
pub use transformer::{MultiHeadAttention, MultiHeadAttentionOptions};
