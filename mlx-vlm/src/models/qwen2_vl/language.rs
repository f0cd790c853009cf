//! `mlx_vlm/models/qwen2_vl/language.py`: a copy of Qwen2.5-VL's
//! `language.py` in Python (it differs only in tiling batch-1 position ids
//! `(3, 1, 1)` where Qwen2.5-VL tiles `(3, B, 1)`, the same for one
//! sequence); Rust shares Qwen2.5-VL's.

pub use crate::models::qwen2_5_vl::language::*;
