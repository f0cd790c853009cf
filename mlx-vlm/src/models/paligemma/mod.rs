//! PaliGemma: Python's `mlx_vlm/models/paligemma/`, one Rust file per
//! Python file, in Python's order.
//!
//! Partial port (not yet a registered family): the configuration, the Gemma
//! language model, the SigLIP vision tower and the model's forward pieces.
//! The processor and the registration follow.

pub mod config;
pub mod language;
#[allow(clippy::module_inception)]
pub mod paligemma;
pub mod vision;
