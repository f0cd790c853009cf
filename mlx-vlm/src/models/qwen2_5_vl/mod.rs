//! Qwen2.5-VL: Python's `mlx_vlm/models/qwen2_5_vl/`, one Rust file per
//! Python file (config so far; vision, language, processing and the model
//! follow).

pub mod config;
pub mod processing_qwen2_5_vl;
