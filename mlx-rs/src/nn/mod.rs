//! Neural networks: Python's `mlx.nn`.
//!
//! [`Module`] (with `#[derive(mlx_rs::Module)]`) is the module tree; layers
//! live in `layers/` as in Python; activation and loss functions in
//! [`activations`] and [`losses`].

pub mod activations;
mod layers;
pub mod losses;
mod module;
pub mod quantized;
mod weights;

pub use layers::{
    AvgPool1d, AvgPool2d, AvgPool3d, Conv1d, Conv2d, Conv3d, ConvOptions, ConvTranspose1d,
    ConvTranspose2d, ConvTranspose3d, ConvTransposeOptions, MaxPool1d, MaxPool2d, MaxPool3d,
    ScaleFactor, Upsample, UpsampleMode,
};
pub use layers::{Embedding, LayerNorm, Linear, RMSNorm};
pub use mlx_rs_derive::Module;
pub use module::{
    Item, ItemMut, Module, ModuleExt, ModuleField, Param, UnaryLayer, UpdateProblem, Verify,
};
pub use quantized::{QuantSpec, Quantizable, dequantize, quantize, quantize_like_checkpoint};
pub use weights::{load_weights, save_weights};
