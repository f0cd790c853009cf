//! `mlx_vlm/models/gemma3/processing_gemma3.py`: Gemma 3's processor, with
//! Python's `prepare_inputs` (`mlx_vlm/utils.py`) for this family: a
//! text-only prompt bypasses the processor there and is tokenized with the
//! tokenizer's special tokens (a second `<bos>` after the template's, as
//! Python's prompts have).
//!
//! Divergences from Python:
//! - `boi_token`, `eoi_token` and `image_token` are read from
//!   `tokenizer_config.json` (transformers' tokenizer attributes of the same
//!   names); a missing one is a typed error naming the key, where Python
//!   fails with an `AttributeError`.
//! - A `<start_of_image>` count that differs from the images given is an
//!   [`Error::ImageTokenMismatch`] (Python: a `ValueError` with the same
//!   counts).
//! - Python's empty-text branch (`text=None` with images) has no
//!   counterpart: the prompt is always given.
//! - `return_mm_token_type_ids`, `batch_decode`, `decode` and
//!   `model_input_names` are not ported (training and tokenizer business).

use std::path::Path;

use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::image::load_image;
use crate::image_processing::gemma3::Gemma3ImageProcessor;
use crate::models::ModelInputs;
use crate::models::paligemma::processing_paligemma::siglip_patches_per_side;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The processor's inputs for the model (Python: the `pixel_values` of
/// the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct Gemma3Inputs {
    /// `[images + crops, 3, height, width]` float32: each image followed by
    /// its pan-and-scan crops.
    pub pixel_values: Array,
}

/// Python: `Gemma3Processor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Processor {
    /// transformers' `Gemma3ImageProcessorPil`, pan-and-scan included.
    pub image_processor: Gemma3ImageProcessor,
    /// Image tokens per image (Python: `image_seq_length`, default 256,
    /// from `processor_config.json`).
    pub image_seq_length: usize,
    /// Python: `boi_token` (`<start_of_image>`).
    pub boi_token: String,
    /// Python: `image_token` (`<image_soft_token>`).
    pub image_token: String,
    /// Python: `full_image_sequence`: `\n\n<start_of_image>`, the image
    /// token `image_seq_length` times, `<end_of_image>\n\n`.
    pub full_image_sequence: String,
    /// Patches per image side, for the memory pre-flight.
    patches_per_side: i32,
}

/// The string `key` of the tokenizer's configuration, or an error naming it
/// (and `processor`, the processor that needs it).
pub(crate) fn token(
    config: &Value,
    key: &str,
    file: &Path,
    example: &str,
    processor: &str,
) -> Result<String> {
    config
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Config {
            file: file.display().to_string(),
            message: format!(
                "{processor} needs the tokenizer's {key}; add \"{key}\": \"{example}\""
            ),
        })
}

const GEMMA3: &str = "Gemma 3's processor";

impl Gemma3Processor {
    /// Python: `Gemma3Processor.__init__`.
    pub fn new(
        image_processor: Gemma3ImageProcessor,
        image_seq_length: usize,
        boi_token: String,
        image_token: String,
        eoi_token: &str,
    ) -> Self {
        let image_tokens_expanded = image_token.repeat(image_seq_length);
        let full_image_sequence = format!("\n\n{boi_token}{image_tokens_expanded}{eoi_token}\n\n");
        let (w, _) = image_processor.settings.size;
        Gemma3Processor {
            image_processor,
            image_seq_length,
            boi_token,
            image_token,
            full_image_sequence,
            // SigLIP's 14-pixel patches until the factory reads the
            // model's (`config.json`).
            patches_per_side: i32::try_from(w / 14).unwrap_or(i32::MAX),
        }
    }

    /// Python: `Gemma3Processor.from_pretrained`: the image processor of
    /// the checkpoint folder, `processor_config.json`'s `image_seq_length`
    /// and the tokenizer's image tokens.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let image_processor = Gemma3ImageProcessor::from_pretrained(dir)?;
        let proc_file = dir.join("processor_config.json");
        let proc_cfg = crate::utils::read_json_if_exists(&proc_file)?.unwrap_or(Value::Null);
        let image_seq_length = match proc_cfg.get("image_seq_length") {
            None => 256,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::Config {
                    file: proc_file.display().to_string(),
                    message: format!(
                        "image_seq_length is {v}; give a positive integer (the model's \
                         mm_tokens_per_image, 256 for released Gemma 3)"
                    ),
                })?,
        };
        let tok_file = dir.join("tokenizer_config.json");
        let tok_cfg = crate::utils::read_json_if_exists(&tok_file)?.unwrap_or(Value::Null);
        let boi = token(&tok_cfg, "boi_token", &tok_file, "<start_of_image>", GEMMA3)?;
        let image = token(&tok_cfg, "image_token", &tok_file, "<image_soft_token>", GEMMA3)?;
        let eoi = token(&tok_cfg, "eoi_token", &tok_file, "<end_of_image>", GEMMA3)?;
        Ok(Self::new(
            image_processor,
            image_seq_length,
            boi,
            image,
            &eoi,
        ))
    }

    /// Python: `__call__`'s prompt: each image's `<start_of_image>` with
    /// its pan-and-scan crops' (`num_crops`, per image in order) spelled
    /// out, then every `<start_of_image>` replaced by
    /// [`Gemma3Processor::full_image_sequence`].
    pub fn expand_prompt(&self, prompt: &str, num_crops: &[usize]) -> Result<String> {
        let boi = self.boi_token.as_str();
        let image_indexes: Vec<usize> = prompt.match_indices(boi).map(|(i, _)| i).collect();
        if image_indexes.len() != num_crops.len() {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "Prompt contained {} image tokens but received {} images; put one {boi} \
                     per image in the prompt",
                    image_indexes.len(),
                    num_crops.len()
                ),
            });
        }
        let mut prompt = prompt.to_string();
        for (&num, &idx) in num_crops.iter().zip(&image_indexes).rev() {
            if num > 0 {
                let crops = vec![boi; num].join(" ");
                let formatted = format!(
                    "Here is the original image {boi} and here are some crops to help you see \
                     better {crops}"
                );
                prompt.replace_range(idx..idx + boi.len(), &formatted);
            }
        }
        Ok(prompt.replace(boi, &self.full_image_sequence))
    }
}

impl ModelProcessor for Gemma3Processor {
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
                "Gemma 3 takes no videos; pass a video's frames as images".into(),
            ));
        }
        // Python's prepare_inputs: no media, no processor.
        if media.images.is_empty() {
            return Ok(GenerateInputs::text(input_ids_array(
                &tokenizer.encode(prompt)?,
            )?));
        }
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let processed = self.image_processor.preprocess(&images)?;
        let text = self.expand_prompt(prompt, &processed.num_crops)?;
        let ids = tokenizer.encode(&text)?;
        let p = self.patches_per_side;
        let n = processed.pixel_values.shape().first().copied().unwrap_or(0);
        Ok(GenerateInputs {
            input_ids: input_ids_array(&ids)?,
            mask: None,
            media: Some(ModelInputs::new(
                Gemma3Inputs {
                    pixel_values: processed.pixel_values,
                },
                vec![[1, p, p]; usize::try_from(n).unwrap_or(0)],
            )),
        })
    }
}

/// The family's processor factory: [`Gemma3Processor::from_pretrained`],
/// with the vision tower's patch grid of `config` for the memory
/// pre-flight.
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    let mut processor = Gemma3Processor::from_pretrained(model_path)?;
    if let Some(p) = siglip_patches_per_side(config) {
        processor.patches_per_side = p;
    }
    Ok(Box::new(processor))
}
