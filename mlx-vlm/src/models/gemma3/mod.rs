//! Gemma 3: Python's `mlx_vlm/models/gemma3/`, one Rust file per Python
//! file, in Python's order.
//!
//! Partial port (not yet a registered family): the text configuration and
//! the language model with its per-layer caches. The vision tower, the
//! model and the processor follow.

pub mod config;
pub mod language;
