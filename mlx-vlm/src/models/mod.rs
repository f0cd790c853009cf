//! The models, one folder per Python `mlx_vlm/models/<name>/` package.

pub mod qwen2_5_vl;
