//! `mlx_vlm/models/idefics3/processing_idefics3.py`: Idefics3's processor
//! (transformers' `Idefics3ImageProcessorPil`, then each `<image>` of the
//! prompt expanded to its tiles' tokens), with Python's `prepare_inputs`
//! (`mlx_vlm/utils.py`) for this family: a text-only prompt bypasses the
//! processor and is tokenized alone.
//!
//! Each image becomes, when split into `rows x cols` tiles:
//! `<fake_token_around_image><row_1_col_1><image>*image_seq_len` for each
//! tile (a `\n` after each row), then `\n<fake_token_around_image>
//! <global-img><image>*image_seq_len<fake_token_around_image>`; unsplit,
//! only the global part (without the leading `\n`).
//!
//! `<image>` typed into the prompt text by the user counts as an image
//! there as in Python: with images, a count that differs from the images
//! is an [`Error::ImageTokenMismatch`] (Python: a `ValueError` with the
//! same counts); without images the prompt is tokenized as is, the
//! `<image>` token embedded as text (Python does the same: its
//! `get_input_embeddings` merges nothing without pixel values).
//!
//! Divergences from Python:
//! - The three special tokens must be in the tokenizer already (released
//!   checkpoints have them); a missing one is an [`Error::Config`] naming
//!   `tokenizer.json` (Python adds it as a new token, which the model's
//!   embeddings lack).
//! - Python's empty-text branch (`text=None`) has no counterpart: the
//!   prompt is always given. `return_mm_token_type_ids`, `batch_decode`,
//!   `decode` and `model_input_names` are not ported.

use std::path::Path;

use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::image::load_image;
use crate::image_processing::idefics3::{Idefics3ImageProcessor, Idefics3Images};
use crate::models::ModelInputs;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The processor's inputs for the model (Python: the `pixel_values` and
/// `pixel_attention_mask` of the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct Idefics3Inputs {
    /// `[1, tiles, 3, tile, tile]` float32.
    pub pixel_values: Array,
    /// `[1, tiles, tile, tile]` int32, 1 where a pixel is real.
    pub pixel_attention_mask: Array,
}

/// Python: `_prompt_split_image`.
pub fn prompt_split_image(
    image_seq_len: usize,
    image_rows: usize,
    image_cols: usize,
    fake_token_around_image: &str,
    image_token: &str,
    global_img_token: &str,
) -> String {
    let tokens = image_token.repeat(image_seq_len);
    let mut text = String::new();
    for n_h in 0..image_rows {
        for n_w in 0..image_cols {
            text.push_str(&format!(
                "{fake_token_around_image}<row_{}_col_{}>{tokens}",
                n_h + 1,
                n_w + 1
            ));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "\n{fake_token_around_image}{global_img_token}{tokens}{fake_token_around_image}"
    ));
    text
}

/// Python: `_prompt_single_image`.
pub fn prompt_single_image(
    image_seq_len: usize,
    fake_token_around_image: &str,
    image_token: &str,
    global_img_token: &str,
) -> String {
    let tokens = image_token.repeat(image_seq_len);
    format!("{fake_token_around_image}{global_img_token}{tokens}{fake_token_around_image}")
}

/// Python: `get_image_prompt_string`.
pub fn get_image_prompt_string(
    image_rows: usize,
    image_cols: usize,
    image_seq_len: usize,
    fake_token_around_image: &str,
    image_token: &str,
    global_img_token: &str,
) -> String {
    if image_rows == 0 && image_cols == 0 {
        return prompt_single_image(
            image_seq_len,
            fake_token_around_image,
            image_token,
            global_img_token,
        );
    }
    prompt_split_image(
        image_seq_len,
        image_rows,
        image_cols,
        fake_token_around_image,
        image_token,
        global_img_token,
    )
}

/// The tokens around and in an image's expansion (Python: the
/// processor's `fake_image_token`, `image_token`, `global_image_tag` /
/// `global_image_token`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTokens {
    /// `<fake_token_around_image>`.
    pub fake_image_token: String,
    /// `<image>`.
    pub image_token: String,
    /// `<global-img>`.
    pub global_image_token: String,
}

impl Default for ImageTokens {
    fn default() -> Self {
        ImageTokens {
            fake_image_token: "<fake_token_around_image>".into(),
            image_token: "<image>".into(),
            global_image_token: "<global-img>".into(),
        }
    }
}

/// What Idefics3's and SmolVLM's processors share: the image processor,
/// the tokens and the tiles' token count.
#[derive(Debug, Clone, PartialEq)]
pub struct TiledImageProcessor {
    /// transformers' `Idefics3ImageProcessorPil` / `SmolVLMImageProcessorPil`.
    pub image_processor: Idefics3ImageProcessor,
    /// Image tokens per tile (Python: `image_seq_len`, default 169, from
    /// `processor_config.json`).
    pub image_seq_len: usize,
    /// The image tokens.
    pub tokens: ImageTokens,
    /// Patches per tile side, for the memory pre-flight.
    pub patches_per_side: i32,
    /// The Python class, for messages.
    pub name: &'static str,
}

/// `image_seq_len` of `processor_config.json` in `dir` (169 without).
pub(crate) fn read_image_seq_len(dir: &Path) -> Result<usize> {
    let file = dir.join("processor_config.json");
    let cfg = crate::utils::read_json_if_exists(&file)?.unwrap_or(Value::Null);
    match cfg.get("image_seq_len") {
        None => Ok(169),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::Config {
                file: file.display().to_string(),
                message: format!(
                    "image_seq_len is {v}; give a positive integer (the tokens per tile: \
                     (image_size / patch_size)² / scale_factor²)"
                ),
            }),
    }
}

/// Patches per tile side of `config.json`'s `vision_config`.
pub(crate) fn patches_per_side(config: &Value) -> Option<i32> {
    let v = config.get("vision_config")?;
    let image = v.get("image_size")?.as_i64()?;
    let patch = v.get("patch_size")?.as_i64()?;
    i32::try_from(image / patch.max(1)).ok()
}

impl TiledImageProcessor {
    /// Python: `__call__`'s expansion: the images of `prompt` (`<image>`
    /// once per image) replaced by their tiles' tokens.
    pub fn expand_prompt(&self, prompt: &str, images: &Idefics3Images) -> Result<String> {
        let t = &self.tokens;
        let n_text = prompt.matches(t.image_token.as_str()).count();
        if n_text != images.rows.len() {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "{}: the number of images in the text [{n_text}] and images [{}] should be \
                     the same; put one {} per image in the prompt (and none in the text itself)",
                    self.name,
                    images.rows.len(),
                    t.image_token
                ),
            });
        }
        let mut parts = prompt.split(t.image_token.as_str());
        let mut sample = parts.next().unwrap_or_default().to_string();
        for ((&rows, &cols), rest) in images.rows.iter().zip(&images.cols).zip(parts) {
            sample.push_str(&get_image_prompt_string(
                rows,
                cols,
                self.image_seq_len,
                &t.fake_image_token,
                &t.image_token,
                &t.global_image_token,
            ));
            sample.push_str(rest);
        }
        Ok(sample)
    }

    /// Checks that the tokenizer has the image tokens as single tokens.
    pub(crate) fn check_tokenizer(&self, tokenizer: &Tokenizer) -> Result<()> {
        let t = &self.tokens;
        for token in [&t.fake_image_token, &t.image_token] {
            if tokenizer.token_to_id(token).is_none() {
                return Err(Error::Config {
                    file: "tokenizer.json".into(),
                    message: format!(
                        "{} needs the token {token} in the vocabulary; use the tokenizer that \
                         came with the checkpoint",
                        self.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Python's `prepare_inputs` with this processor.
    pub fn prepare(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs> {
        if !media.videos.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} takes no videos here; pass a video's frames as images",
                self.name
            )));
        }
        // Python's prepare_inputs: no media, no processor.
        if media.images.is_empty() {
            return Ok(GenerateInputs::text(input_ids_array(
                &tokenizer.encode(prompt)?,
            )?));
        }
        self.check_tokenizer(tokenizer)?;
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let n_text = prompt.matches(self.tokens.image_token.as_str()).count();
        if n_text != images.len() {
            // Python checks before preprocessing.
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "{}: found {n_text} {} tokens in the prompt but {} images were passed; put \
                     one {} per image in the prompt (and none in the text itself)",
                    self.name,
                    self.tokens.image_token,
                    images.len(),
                    self.tokens.image_token
                ),
            });
        }
        let processed = self.image_processor.preprocess(&images)?;
        let text = self.expand_prompt(prompt, &processed)?;
        let ids = tokenizer.encode(&text)?;
        let p = self.patches_per_side;
        let tiles = processed.pixel_values.shape().get(1).copied().unwrap_or(0);
        Ok(GenerateInputs {
            input_ids: input_ids_array(&ids)?,
            mask: None,
            media: Some(ModelInputs::new(
                Idefics3Inputs {
                    pixel_values: processed.pixel_values,
                    pixel_attention_mask: processed.pixel_attention_mask,
                },
                vec![[1, p, p]; usize::try_from(tiles).unwrap_or(0)],
            )),
        })
    }
}

/// Python: `Idefics3Processor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Idefics3Processor {
    /// The image processor, tokens and tile size.
    pub inner: TiledImageProcessor,
}

impl Idefics3Processor {
    /// Python: `Idefics3Processor.from_pretrained`: the image processor of
    /// the checkpoint folder and `processor_config.json`'s `image_seq_len`;
    /// the tokens are fixed (Python's `AddedToken`s).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Ok(Idefics3Processor {
            inner: TiledImageProcessor {
                image_processor: Idefics3ImageProcessor::from_pretrained(dir, false)?,
                image_seq_len: read_image_seq_len(dir)?,
                tokens: ImageTokens::default(),
                // SigLIP's 14-pixel patches of 364-pixel tiles until the
                // factory reads the model's (`config.json`).
                patches_per_side: 26,
                name: "Idefics3Processor",
            },
        })
    }
}

impl ModelProcessor for Idefics3Processor {
    fn with_options(&self, options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>> {
        let mut out = self.clone();
        out.inner.image_processor = self
            .inner
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
        self.inner.prepare(tokenizer, prompt, media)
    }

    /// Python: `additional_eos_token_ids`: `<end_of_utterance>` ends
    /// generation too.
    fn additional_eos_token_ids(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        tokenizer
            .token_to_id(END_OF_UTTERANCE)
            .into_iter()
            .collect()
    }
}

/// Python: the processor's `end_of_utterance_token`.
pub const END_OF_UTTERANCE: &str = "<end_of_utterance>";

/// The family's processor factory: [`Idefics3Processor::from_pretrained`],
/// with the tile's patch grid of `config` for the memory pre-flight.
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    let mut processor = Idefics3Processor::from_pretrained(model_path)?;
    if let Some(p) = patches_per_side(config) {
        processor.inner.patches_per_side = p;
    }
    Ok(Box::new(processor))
}
