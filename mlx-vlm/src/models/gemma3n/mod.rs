//! Gemma 3n: Python's `mlx_vlm/models/gemma3n/`, one Rust file per Python
//! file.
//!
//! Partial port (not yet a registered family): the configuration, the
//! language model (AltUp, Laurel blocks, per-layer inputs, KV sharing,
//! activation sparsity), the vision tower (MobileNetV5) and the audio
//! encoder (Conformer). The model (`gemma3n.py`), the processor and the
//! registration follow.

pub mod audio;
pub mod config;
pub mod language;
pub mod vision;
