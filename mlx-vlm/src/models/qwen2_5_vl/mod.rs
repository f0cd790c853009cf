//! Qwen2.5-VL: Python's `mlx_vlm/models/qwen2_5_vl/`, one Rust file per
//! Python file, in Python's order.

pub mod config;
pub mod language;
pub mod processing_qwen2_5_vl;
#[allow(clippy::module_inception)]
pub mod qwen2_5_vl;
pub mod vision;

pub use config::ModelConfig;
pub use qwen2_5_vl::Model;
