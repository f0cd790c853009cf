//! `mlx_vlm/models/llava/processing_llava.py`: LLaVA's processor (its
//! `LlavaProcessor`), with Python's `prepare_inputs` (`mlx_vlm/utils.py`)
//! for this family: a text-only prompt bypasses the processor and is
//! tokenized with the tokenizer's special tokens (`<s>` first).
//!
//! Each `<image>` of the prompt becomes `(height / patch_size) * (width /
//! patch_size) + num_additional_image_tokens` image tokens, one fewer for
//! the `default` feature strategy (the CLS token the model drops), with
//! `height` and `width` those of the pixel values.
//!
//! Divergences from Python:
//! - Python mlx-vlm 0.7.6 hands `prepare_inputs`' `padding=True` to
//!   transformers 5.23's `CLIPImageProcessor`, which raises `TypeError:
//!   ImagesKwargs.__init__() got an unexpected keyword argument 'padding'`:
//!   every LLaVA prompt with an image fails there. Here the image processor
//!   gets no tokenizer options (the goldens patch that one call the same
//!   way, `tests/fixtures/llava/gen_goldens.py`).
//! - An `<image>` count that differs from the images given (an `<image>`
//!   typed in the user's text, or a template that drops one) is an
//!   [`Error::ImageTokenMismatch`]. Python expands every `<image>` of the
//!   text, so a typed one doubles the image tokens and the model then
//!   fails in its array assignment (`[broadcast_shapes] Shapes (16,64) and
//!   (1,32,64) cannot be broadcast` on the tiny model).
//! - `patch_size` missing from `processor_config.json` is an
//!   [`Error::Config`] naming the key (Python fails with a `TypeError` on
//!   `None`); `vision_feature_select_strategy` missing is read from
//!   `config.json` (Python's `None` keeps the CLS token's slot, so its
//!   prompt would then have one token more than the model's features).
//! - `batch_decode`, `decode` and `model_input_names` are the tokenizer's
//!   and the model's business here.

use std::path::Path;

use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::image::load_image;
use crate::image_processing::clip::ClipImageProcessor;
use crate::models::ModelInputs;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The processor's inputs for the model (Python: the `pixel_values` of
/// the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct LlavaInputs {
    /// `[images, 3, height, width]` float32.
    pub pixel_values: Array,
}

/// The settings LLaVA's and LLaVA-NeXT's processors read from
/// `processor_config.json` (Python: the `proc_kwargs` of
/// `from_pretrained`), with `config.json`'s feature strategy as fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSettings {
    /// Python: `patch_size`.
    pub patch_size: u32,
    /// Python: `vision_feature_select_strategy`.
    pub vision_feature_select_strategy: String,
    /// Python: `image_token` (`<image>`).
    pub image_token: String,
    /// Python: `num_additional_image_tokens` (1 for CLIP's CLS token).
    pub num_additional_image_tokens: u32,
}

impl ProcessorSettings {
    /// Reads `processor_config.json` of `dir`; `config` is the parsed
    /// `config.json`.
    pub fn from_pretrained(dir: &Path, config: &Value) -> Result<Self> {
        let file = dir.join("processor_config.json");
        let raw = crate::utils::read_json_if_exists(&file)?.unwrap_or(Value::Null);
        let bad = |key: &str, message: String| Error::Config {
            file: file.display().to_string(),
            message: format!("{key}: {message}"),
        };
        let patch_size = match raw.get("patch_size") {
            Some(v) => v
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .filter(|&p| p > 0)
                .ok_or_else(|| bad("patch_size", format!("expected a positive integer, got {v}")))?,
            None => config
                .pointer("/vision_config/patch_size")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|&p| p > 0)
                .ok_or_else(|| {
                    bad(
                        "patch_size",
                        "missing; add \"patch_size\" (the vision tower's, e.g. 14)".into(),
                    )
                })?,
        };
        let strategy = raw
            .get("vision_feature_select_strategy")
            .or_else(|| config.get("vision_feature_select_strategy"))
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    bad(
                        "vision_feature_select_strategy",
                        format!("expected \"default\" or \"full\", got {v}"),
                    )
                })
            })
            .transpose()?
            .unwrap_or_else(|| "default".into());
        let image_token = match raw.get("image_token") {
            Some(v) => v
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("image_token", format!("expected a token string, got {v}")))?
                .to_owned(),
            None => "<image>".into(),
        };
        let num_additional_image_tokens = match raw.get("num_additional_image_tokens") {
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    bad(
                        "num_additional_image_tokens",
                        format!("expected a non-negative integer, got {v}"),
                    )
                })?,
            None => 0,
        };
        Ok(ProcessorSettings {
            patch_size,
            vision_feature_select_strategy: strategy,
            image_token,
            num_additional_image_tokens,
        })
    }

    /// The `<image>`s of `prompt`, which must be one per image.
    pub fn check_image_tokens(&self, prompt: &str, images: usize, family: &str) -> Result<()> {
        let found = prompt.matches(self.image_token.as_str()).count();
        if found != images {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the {family} prompt has {found} {} tokens for {images} images; give one \
                     image per {0} (the chat template writes them) and do not type {0} in the \
                     text",
                    self.image_token
                ),
            });
        }
        Ok(())
    }
}

/// The ids of `text` with the tokenizer's special tokens (Python:
/// `tokenizer(text)`), as an `[1, seq]` array.
pub(crate) fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Array> {
    input_ids_array(&tokenizer.encode(text)?)
}

/// Python: `LlavaProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaProcessor {
    /// transformers' `CLIPImageProcessorPil`.
    pub image_processor: ClipImageProcessor,
    /// `processor_config.json`'s settings.
    pub settings: ProcessorSettings,
}

impl LlavaProcessor {
    /// Python: `LlavaProcessor.from_pretrained`.
    pub fn from_pretrained(dir: &Path, config: &Value) -> Result<Self> {
        Ok(LlavaProcessor {
            image_processor: ClipImageProcessor::from_pretrained(dir)?,
            settings: ProcessorSettings::from_pretrained(dir, config)?,
        })
    }

    /// Python: `num_image_tokens` of `__call__` for pixel values of
    /// `height` x `width`.
    pub fn num_image_tokens(&self, height: u32, width: u32) -> usize {
        let s = &self.settings;
        let mut n = (height / s.patch_size) as usize * (width / s.patch_size) as usize
            + s.num_additional_image_tokens as usize;
        if s.vision_feature_select_strategy == "default" {
            n = n.saturating_sub(1);
        }
        n
    }
}

impl ModelProcessor for LlavaProcessor {
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
                "LLaVA takes no videos; pass a video's frames as images".into(),
            ));
        }
        // Python's prepare_inputs: no media, no processor.
        if media.images.is_empty() {
            return Ok(GenerateInputs::text(tokenize(tokenizer, prompt)?));
        }
        self.settings
            .check_image_tokens(prompt, media.images.len(), "LLaVA")?;
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let processed = self.image_processor.preprocess(&images)?;
        let shape = processed.pixel_values.shape();
        let (height, width) = (shape[2] as u32, shape[3] as u32);
        let n = self.num_image_tokens(height, width);
        let token = &self.settings.image_token;
        let text = prompt.replace(token.as_str(), &token.repeat(n));
        let p = self.settings.patch_size as i32;
        let grid = [1, height as i32 / p, width as i32 / p];
        Ok(GenerateInputs {
            input_ids: tokenize(tokenizer, &text)?,
            mask: None,
            media: Some(ModelInputs::new(
                LlavaInputs {
                    pixel_values: processed.pixel_values,
                },
                vec![grid; images.len()],
            )),
        })
    }
}

/// The family's processor factory: [`LlavaProcessor::from_pretrained`].
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(LlavaProcessor::from_pretrained(model_path, config)?))
}
