//! Qwen3-VL-MoE: Python's `mlx_vlm/models/qwen3_vl_moe/` package
//! (Qwen3-VL with mixture-of-experts decoder layers).
//!
//! Partial port (not yet a registered family): the configuration's text
//! part, the sparse block and the weight sanitizing. The rest are Python
//! copies of Qwen3-VL and are reused from its port once it lands.

pub mod config;
pub mod language;
#[allow(clippy::module_inception)]
pub mod qwen3_vl_moe;
