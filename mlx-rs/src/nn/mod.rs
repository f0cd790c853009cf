//! Neural networks: Python's `mlx.nn`.
//!
//! [`Module`] (with `#[derive(mlx_rs::Module)]`) is the module tree; layers
//! live in `layers/` as in Python; activation and loss functions in
//! [`activations`] and [`losses`].

pub mod activations;
mod cpu_parallel;
mod layers;
pub mod losses;
mod module;
pub mod quantized;
mod rms_norm;
mod utils;
mod weights;

pub use cpu_parallel::{cpu_parallelism, set_cpu_parallelism, split_rows};
pub use layers::*;
pub use mlx_rs_derive::Module;
pub use module::{
    Item, ItemMut, Module, ModuleExt, ModuleField, Param, UnaryLayer, UpdateProblem, Verify,
};
pub use quantized::{
    QuantSpec, Quantizable, dequantize, quantize, quantize_like_checkpoint, quantize_with,
};
pub use rms_norm::{rms_norm, rms_norm_one_plus};
pub use utils::value_and_grad;
pub use weights::{load_weights, save_weights};
