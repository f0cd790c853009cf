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
    BatchNorm, Dropout, Dropout2d, Dropout3d, Embedding, GroupNorm, Identity, InstanceNorm,
    LayerNorm, Linear, RMSNorm, Sequential,
};
pub use mlx_rs_derive::Module;
pub use module::{
    Item, ItemMut, Module, ModuleExt, ModuleField, Param, UnaryLayer, UpdateProblem, Verify,
};
pub use quantized::{QuantSpec, Quantizable, dequantize, quantize, quantize_like_checkpoint};
pub use weights::{load_weights, save_weights};
