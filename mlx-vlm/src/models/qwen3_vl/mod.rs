//! Qwen3-VL: Python's `mlx_vlm/models/qwen3_vl/`, one Rust file per Python
//! file, in Python's order.

pub mod processing_qwen3_vl;
