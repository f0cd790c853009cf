//! Gemma 3n: Python's `mlx_vlm/models/gemma3n/`, one Rust file per Python
//! file.
//!
//! Partial port (not yet a registered family): the configuration and the
//! language model (AltUp, Laurel blocks, per-layer inputs, KV sharing,
//! activation sparsity). The vision tower (MobileNetV5), the audio encoder,
//! the processor and the registration are separate work.

pub mod audio;
pub mod config;
pub mod language;
pub mod vision;
