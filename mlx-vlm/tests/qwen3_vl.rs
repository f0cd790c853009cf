//! Qwen3-VL against Python mlx-vlm 0.7.6.

#[path = "qwen3_vl/processing.rs"]
mod processing;
