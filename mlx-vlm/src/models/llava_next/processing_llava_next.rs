//! `mlx_vlm/models/llava_next/processing_llava_next.py`: LLaVA-NeXT's
//! processor (its `LlavaNextProcessor`), with Python's `prepare_inputs`
//! for this family (a text-only prompt is tokenized as it is, `<s>`
//! first).
//!
//! Each `<image>` becomes `_get_number_of_features` image tokens (the
//! unpadded tile grid's features, one newline per row, the base image's
//! features; one fewer for the `default` strategy), with `image_grid_pinpoints`
//! of the image processor and the tile size of the pixel values.
//!
//! Divergences from Python:
//! - More images than one is an [`Error::InvalidArgument`]: Python's model
//!   uses only the first image's tiles (`pixel_values[0]`), and mlx-vlm
//!   lists the family in `SINGLE_IMAGE_ONLY_MODELS`.
//! - An `<image>` count that differs from the images given (an `<image>`
//!   typed in the user's text) is an [`Error::ImageTokenMismatch`]; Python
//!   raises `StopIteration` for more `<image>`s than images (reported by
//!   `prepare_inputs` as "Failed to process inputs with error: " and no
//!   message) and leaves extra images without tokens.
//! - `batch_decode`, `decode` and `model_input_names` are the tokenizer's
//!   and the model's business here.

use std::path::Path;

use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::image::load_image;
use crate::image_processing::llava_next::{LlavaNextImageProcessor, select_best_resolution};
use crate::models::ModelInputs;
use crate::models::llava::processing_llava::{ProcessorSettings, tokenize};
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The processor's inputs for the model (Python: the `BatchFeature`'s
/// `pixel_values` and `image_sizes`).
#[derive(Debug, Clone)]
pub struct LlavaNextInputs {
    /// `[images, tiles, 3, height, width]` float32.
    pub pixel_values: Array,
    /// `(height, width)` of each original image (Python passes them to the
    /// model, which ignores them).
    pub image_sizes: Vec<(u32, u32)>,
}

/// Python: `LlavaNextProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaNextProcessor {
    /// transformers' `LlavaNextImageProcessorPil`.
    pub image_processor: LlavaNextImageProcessor,
    /// `processor_config.json`'s settings.
    pub settings: ProcessorSettings,
}

/// Python's `int(round(x, 7))`.
fn int_round7(x: f64) -> i64 {
    ((x * 1e7).round_ties_even() / 1e7) as i64
}

impl LlavaNextProcessor {
    /// Python: `LlavaNextProcessor.from_pretrained`.
    pub fn from_pretrained(dir: &Path, config: &Value) -> Result<Self> {
        Ok(LlavaNextProcessor {
            image_processor: LlavaNextImageProcessor::from_pretrained(dir)?,
            settings: ProcessorSettings::from_pretrained(dir, config)?,
        })
    }

    /// Python: `_get_number_of_features(orig_height, orig_width, height,
    /// width)`, without the `default` strategy's one fewer.
    pub fn get_number_of_features(
        &self,
        orig_height: u32,
        orig_width: u32,
        height: u32,
        width: u32,
    ) -> Result<i64> {
        let best = select_best_resolution(
            (orig_height, orig_width),
            &self.image_processor.image_grid_pinpoints,
        )
        .ok_or_else(|| Error::Config {
            file: "preprocessor_config.json".into(),
            message: "image_grid_pinpoints is empty; give at least one [height, width]".into(),
        })?;
        let (scale_height, scale_width) = (best.0 / height, best.1 / width);
        let patch = self.settings.patch_size;
        let (patches_height, patches_width) = (height / patch, width / patch);
        let (unpadded, newline) = get_unpadded_features(
            orig_height,
            orig_width,
            patches_height,
            patches_width,
            scale_height,
            scale_width,
        );
        let base = i64::from(patches_height) * i64::from(patches_width)
            + i64::from(self.settings.num_additional_image_tokens);
        Ok(unpadded + newline + base)
    }
}

/// Python: `_get_unpadded_features`: the features of the tile grid once
/// the padding rows (or columns) are taken off, and one newline per row.
pub fn get_unpadded_features(
    height: u32,
    width: u32,
    patches_height: u32,
    patches_width: u32,
    scale_height: u32,
    scale_width: u32,
) -> (i64, i64) {
    let mut current_height = i64::from(patches_height) * i64::from(scale_height);
    let mut current_width = i64::from(patches_width) * i64::from(scale_width);
    let (h, w) = (f64::from(height), f64::from(width));
    let original_aspect_ratio = w / h;
    let current_aspect_ratio = current_width as f64 / current_height as f64;
    if original_aspect_ratio > current_aspect_ratio {
        let new_height = int_round7(h * (current_width as f64 / w));
        let padding = (current_height - new_height).div_euclid(2);
        current_height -= padding * 2;
    } else {
        let new_width = int_round7(w * (current_height as f64 / h));
        let padding = (current_width - new_width).div_euclid(2);
        current_width -= padding * 2;
    }
    (current_height * current_width, current_height)
}

impl ModelProcessor for LlavaNextProcessor {
    fn with_options(&self, options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>> {
        let mut out = self.clone();
        out.image_processor = self
            .image_processor
            .with_options(&options.image_processor)?;
        Ok(Box::new(out))
    }

    fn prepare_inputs(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs> {
        if !media.videos.is_empty() {
            return Err(Error::InvalidArgument(
                "LLaVA-NeXT takes no videos; pass one frame as an image".into(),
            ));
        }
        if media.images.is_empty() {
            return Ok(GenerateInputs::text(tokenize(tokenizer, prompt)?));
        }
        if media.images.len() > 1 {
            return Err(Error::InvalidArgument(format!(
                "LLaVA-NeXT takes one image per prompt (its model reads only the first image's \
                 tiles), got {}; pass a single image",
                media.images.len()
            )));
        }
        self.settings
            .check_image_tokens(prompt, media.images.len(), "LLaVA-NeXT")?;
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let processed = self.image_processor.preprocess(&images)?;
        let shape = processed.pixel_values.shape();
        let (height, width) = (shape[3] as u32, shape[4] as u32);
        let token = self.settings.image_token.as_str();
        let mut text = prompt.to_owned();
        for &(orig_height, orig_width) in &processed.image_sizes {
            let mut n = self.get_number_of_features(orig_height, orig_width, height, width)?;
            if self.settings.vision_feature_select_strategy == "default" {
                n -= 1;
            }
            let n = usize::try_from(n).unwrap_or(0);
            text = text.replacen(token, &"<placeholder>".repeat(n), 1);
        }
        let text = text.replace("<placeholder>", token);
        let p = self.settings.patch_size as i32;
        let grids = processed
            .num_patches
            .iter()
            .map(|&tiles| [tiles as i32, height as i32 / p, width as i32 / p])
            .collect();
        Ok(GenerateInputs {
            input_ids: tokenize(tokenizer, &text)?,
            mask: None,
            media: Some(ModelInputs::new(
                LlavaNextInputs {
                    pixel_values: processed.pixel_values,
                    image_sizes: processed.image_sizes,
                },
                grids,
            )),
        })
    }
}

/// The family's processor factory: [`LlavaNextProcessor::from_pretrained`].
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(LlavaNextProcessor::from_pretrained(
        model_path, config,
    )?))
}
