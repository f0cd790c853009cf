//! Vision-language models on MLX, ported one to one from Python mlx-vlm.
//!
//! The first model (Qwen2.5-VL) is being ported; this crate holds no model yet.

pub use mlx_rs;
