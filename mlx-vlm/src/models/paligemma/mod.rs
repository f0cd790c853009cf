//! PaliGemma: Python's `mlx_vlm/models/paligemma/`, one Rust file per
//! Python file, in Python's order.
//!
//! Partial port (not yet a registered family): the configuration, the Gemma
//! language model and the SigLIP vision tower. The model and the processor
//! follow.

pub mod config;
pub mod language;
pub mod vision;
