//! Gemma 3: Python's `mlx_vlm/models/gemma3/`, one Rust file per Python
//! file, in Python's order.
//!
//! Partial port (not yet a registered family): the configuration, the
//! language model with its per-layer caches, the vision tower (PaliGemma's,
//! as Python copies it) and the model's forward pieces. The processor and
//! the registration follow.

pub mod config;
#[allow(clippy::module_inception)]
pub mod gemma3;
pub mod language;
pub mod vision;
