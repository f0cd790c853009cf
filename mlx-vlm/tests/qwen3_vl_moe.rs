//! Qwen3-VL-MoE and its mixture-of-experts layers against Python mlx-vlm
//! 0.7.6.

#[path = "qwen3_vl_moe/switch_layers.rs"]
mod switch_layers;

#[path = "qwen3_vl_moe/moe_block.rs"]
mod moe_block;
