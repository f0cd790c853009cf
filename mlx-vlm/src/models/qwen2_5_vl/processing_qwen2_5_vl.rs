//! Qwen2.5-VL's processor: Python's
//! `mlx_vlm/models/qwen2_5_vl/processing_qwen2_5_vl.py`. Its image
//! processor is the Qwen one of `qwen3_vl/processing_qwen3_vl.rs`, as in
//! Python.

use std::path::Path;

use image::RgbImage;
use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::models::qwen3_vl::processing_qwen3_vl::{
    Qwen3VlImageProcessor, Qwen3VlVideoProcessor, expand_image_tokens, expand_video_tokens,
    prepare_qwen_inputs,
};
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Python: `Qwen2_5_VLProcessor.image_token` when the tokenizer names none.
pub const IMAGE_TOKEN: &str = "<|image_pad|>";

/// Python: `Qwen2_5_VLProcessor.video_token` when the tokenizer names none.
pub const VIDEO_TOKEN: &str = "<|video_pad|>";

/// Qwen2.5-VL's processor: images to `pixel_values`, and the prompt's image
/// placeholders expanded to one token per merged patch.
///
/// Python: `Qwen2_5_VLProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2_5VlProcessor {
    /// The image processor.
    pub image_processor: Qwen3VlImageProcessor,
    /// The video processor.
    pub video_processor: Qwen3VlVideoProcessor,
    /// The placeholder each image's tokens replace.
    pub image_token: String,
    /// The placeholder each video's tokens replace.
    pub video_token: String,
    /// Whether videos get `second_per_grid_ts` for absolute-time positions
    /// (Rust only, on by default; off gives Python mlx-vlm's positions).
    pub absolute_video_time: bool,
}

impl Qwen2_5VlProcessor {
    /// A processor around `image_processor` with the default image token.
    ///
    /// Python: `Qwen2_5_VLProcessor.__init__`.
    pub fn new(image_processor: Qwen3VlImageProcessor) -> Self {
        let video_processor = Qwen3VlVideoProcessor {
            settings: Qwen3VlImageProcessor {
                patch_size: 14,
                ..Qwen3VlVideoProcessor::default().settings
            },
            ..Qwen3VlVideoProcessor::default()
        };
        Qwen2_5VlProcessor {
            image_processor,
            video_processor,
            image_token: IMAGE_TOKEN.to_owned(),
            video_token: VIDEO_TOKEN.to_owned(),
            absolute_video_time: true,
        }
    }

    /// The processor of the checkpoint folder `dir`, from its
    /// `preprocessor_config.json` and `processor_config.json` (each
    /// optional, as in Python, where defaults apply).
    ///
    /// Python: `Qwen2_5_VLProcessor.from_pretrained` (image part).
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Ok(Self {
            video_processor: Qwen3VlVideoProcessor::from_pretrained(dir, 14)?,
            ..Self::new(Qwen3VlImageProcessor::from_pretrained(dir, 14)?)
        })
    }

    /// The processor of a parsed `preprocessor_config.json` (and optional
    /// `processor_config.json`), patch size 14 unless given.
    ///
    /// Python: `Qwen2_5_VLProcessor.from_pretrained` (image part).
    pub fn from_config(
        preprocessor_config: &Value,
        processor_config: Option<&Value>,
    ) -> Result<Self> {
        Ok(Self::new(Qwen3VlImageProcessor::from_config(
            preprocessor_config,
            processor_config,
            14,
        )?))
    }

    /// [`Qwen3VlImageProcessor::with_pixels`] on the image processor.
    pub fn with_pixels(self, min_pixels: Option<u64>, max_pixels: Option<u64>) -> Self {
        Self {
            image_processor: self.image_processor.with_pixels(min_pixels, max_pixels),
            ..self
        }
    }

    /// [`Qwen3VlImageProcessor::try_with_pixels`] on the image processor.
    pub fn try_with_pixels(self, min_pixels: Option<u64>, max_pixels: Option<u64>) -> Result<Self> {
        Ok(Self {
            image_processor: self.image_processor.try_with_pixels(min_pixels, max_pixels)?,
            ..self
        })
    }

    /// `pixel_values` and grids of `images` (see
    /// [`Qwen3VlImageProcessor::preprocess`]).
    ///
    /// Python: the image part of `Qwen2_5_VLProcessor.__call__`.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<(Array, Vec<[i32; 3]>)> {
        self.image_processor.preprocess(images)
    }

    /// `text` with its i-th image token repeated `t*h*w / merge_size^2`
    /// times for the i-th grid.
    ///
    /// Python: the placeholder loop of `Qwen2_5_VLProcessor.__call__`.
    /// Unlike Python, which ignores surplus images and fails on surplus
    /// tokens, any difference in counts is an [`Error::ImageTokenMismatch`].
    pub fn expand_image_tokens(&self, text: &str, grids: &[[i32; 3]]) -> Result<String> {
        let found = text.matches(self.image_token.as_str()).count();
        if found != grids.len() {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {found} {token} placeholder(s) but {} image(s) were given; \
                     put one {token} (inside <|vision_start|>...<|vision_end|>) in the prompt \
                     per image, e.g. through the chat template's image entries",
                    grids.len(),
                    token = self.image_token
                ),
            });
        }
        expand_image_tokens(
            text,
            &self.image_token,
            grids,
            self.image_processor.merge_size,
        )
    }
}

impl ModelProcessor for Qwen2_5VlProcessor {
    fn with_options(&self, options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>> {
        let mut out = self
            .clone()
            .try_with_pixels(options.min_pixels, options.max_pixels)?;
        if let Some(absolute) = options.absolute_video_time {
            out.absolute_video_time = absolute;
        }
        Ok(Box::new(out))
    }

    /// Python: `Qwen2_5_VLProcessor.__call__` then the tokenizer.
    fn prepare_inputs(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs> {
        prepare_qwen_inputs(
            tokenizer,
            prompt,
            media,
            &self.image_processor,
            &self.video_processor,
            self.absolute_video_time,
            |text, grids| {
                let text = self.expand_image_tokens(text, grids.images)?;
                expand_video_tokens(
                    &text,
                    &self.video_token,
                    grids.videos,
                    self.video_processor.settings.merge_size,
                )
            },
        )
    }
}

/// The family's processor factory (Python:
/// `Qwen2_5_VLProcessor.from_pretrained`).
pub fn load_processor(model_path: &Path, _config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(Qwen2_5VlProcessor::from_pretrained(model_path)?))
}
