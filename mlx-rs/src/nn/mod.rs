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
    ALiBi, Bilinear, MultiHeadAttention, MultiHeadAttentionOptions, RoPE, SinusoidalOptions,
    SinusoidalPositionalEncoding,
};
pub use layers::{Embedding, LayerNorm, Linear, RMSNorm};
pub use mlx_rs_derive::Module;
pub use module::{
    Item, ItemMut, Module, ModuleExt, ModuleField, Param, UnaryLayer, UpdateProblem, Verify,
};
pub use quantized::{QuantSpec, Quantizable, dequantize, quantize, quantize_like_checkpoint};
pub use weights::{load_weights, save_weights};
