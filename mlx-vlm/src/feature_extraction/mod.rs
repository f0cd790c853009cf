//! Audio feature extractors: ports of the transformers feature extractors
//! that Python mlx-vlm's processors delegate to (mlx-vlm 0.7.6 loads them
//! with transformers' `AutoFeatureExtractor`).
//!
//! Each extractor's module lists its divergences from transformers.

pub mod gemma3n;

pub use gemma3n::{Gemma3nAudioFeatureExtractor, Gemma3nAudioFeatures, Padding};
