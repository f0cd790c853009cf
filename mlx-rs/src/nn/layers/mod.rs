//! Layers: Python's `mlx/nn/layers/`, one file per Python file.

mod activations;
mod bilinear;
mod containers;
mod convolution;
mod convolution_transpose;
mod dropout;
mod embedding;
mod linear;
mod normalization;
mod pooling;
mod positional_encoding;
mod transformer;
mod upsample;

pub use activations::{
    CELU, ELU, GELU, GLU, GeluApprox, HardShrink, HardTanh, Hardswish, LeakyReLU, LogSigmoid,
    LogSoftmax, Mish, PReLU, ReLU, ReLU2, ReLU6, SELU, SiLU, Sigmoid, Softmax, Softmin, Softplus,
    Softshrink, Softsign, Step, Tanh,
};
pub use bilinear::Bilinear;
pub use containers::{Identity, Sequential};
pub use convolution::{Conv1d, Conv2d, Conv3d, ConvOptions};
pub use convolution_transpose::{
    ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, ConvTransposeOptions,
};
pub use dropout::{Dropout, Dropout2d, Dropout3d};
pub use embedding::Embedding;
pub use linear::Linear;
pub use normalization::{BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm};
pub use pooling::{AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d};
pub use positional_encoding::{ALiBi, RoPE, SinusoidalOptions, SinusoidalPositionalEncoding};
pub use transformer::{MultiHeadAttention, MultiHeadAttentionOptions};
pub use upsample::{ScaleFactor, Upsample, UpsampleMode};
