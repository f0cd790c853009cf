//! Layers: Python's `mlx/nn/layers/`, one file per Python file.

mod convolution;
mod convolution_transpose;
mod embedding;
mod linear;
mod normalization;
mod pooling;
mod upsample;

pub use convolution::{Conv1d, Conv2d, Conv3d, ConvOptions};
pub use convolution_transpose::{
    ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, ConvTransposeOptions,
};
pub use embedding::Embedding;
pub use linear::Linear;
pub use normalization::{LayerNorm, RMSNorm};
pub use pooling::{AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d};
pub use upsample::{ScaleFactor, Upsample, UpsampleMode};
