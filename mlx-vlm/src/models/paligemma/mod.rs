//! PaliGemma: Python's `mlx_vlm/models/paligemma/`, one Rust file per
//! Python file, in Python's order.
//!
//! Partial port (not yet a registered family): the configuration and the
//! SigLIP vision tower. The Gemma language model, the model and the
//! processor follow.

pub mod config;
pub mod vision;
