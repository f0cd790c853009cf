//! Vision-language models on MLX, ported one to one from Python mlx-vlm
//! 0.7.6: each model folder mirrors its Python package file by file, with
//! the same names in the same order.
//!
//! The first model is Qwen2.5-VL.

pub mod audio;
pub mod batch;
pub mod convert;
mod error;
pub mod feature_extraction;
// Behind a feature: it runs pip. Documented by `cargo doc` either way.
#[cfg(any(feature = "fixtures", doc))]
pub mod fixtures;
pub mod generate;
pub mod image;
pub mod image_processing;
pub mod models;
pub mod preflight;
pub mod processor;
pub mod prompt_cache;
pub mod prompt_utils;
pub mod quant_utils;
pub mod registry;
pub mod sample_utils;
mod template_growth;
pub mod tokenizer;
pub mod tokenizer_utils;
pub mod utils;
pub mod video;
pub mod vision_cache;
// Video files through FFmpeg, behind `video::load_video`.
#[cfg(feature = "video")]
mod video_ffmpeg;

pub use audio::AudioSource;
pub use error::{Error, Result};
pub use image::ImageSource;
pub use mlx_rs;
pub use processor::{Processor, load};
pub use utils::LoadOptions;
