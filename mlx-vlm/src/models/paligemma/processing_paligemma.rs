//! `mlx_vlm/models/paligemma/processing_paligemma.py`: PaliGemma's
//! processor, with Python's `prepare_inputs` (`mlx_vlm/utils.py`) for this
//! family: a text-only prompt bypasses the processor there and is
//! tokenized as it is.
//!
//! Divergences from Python:
//! - More than one image is a typed error naming the fix; Python fails in
//!   its image/text batch check (prompt without `<image>`) or hands the
//!   model images it cannot use (prompt with `<image>`s). The chat-template
//!   side refuses several images as Python does
//!   ([`crate::prompt_utils::PromptRules::single_image_only`]).
//! - A prompt whose `<image>` count differs from the images given is a
//!   typed error; Python expands the tokens anyway and the model fails on
//!   the count.
//! - `is_url`, `is_image_or_image_url`, `_is_str_or_image` and
//!   `_split_image_processor_kwargs` have no counterpart: images arrive as
//!   `ImageSource`s and image-processor options as
//!   [`ProcessorOptions::image_processor`].
//! - The `<loc>`/`<seg>` tokens (`EXTRA_TOKENS`) are added to a copy of the
//!   tokenizer kept by the processor, which encodes the prompts; decoding
//!   uses the checkpoint's tokenizer, which holds them in every released
//!   PaliGemma (ids 256000-257151).
//! - `suffix`, `labels` and `token_type_ids` (training only) are not made.
//! - `batch_decode`, `decode` and `model_input_names` are the tokenizer's
//!   and the model's business here.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use mlx_rs::Array;
use serde_json::Value;
use tokenizers::AddedToken;

use crate::generate::GenerateInputs;
use crate::image::load_image;
use crate::image_processing::siglip::SiglipImageProcessor;
use crate::models::ModelInputs;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Python: `IMAGE_TOKEN`.
pub const IMAGE_TOKEN: &str = "<image>";

/// Python: `EXTRA_TOKENS`: `<loc0000>`..`<loc1023>` then
/// `<seg000>`..`<seg127>`.
pub fn extra_tokens() -> Vec<String> {
    (0..1024)
        .map(|i| format!("<loc{i:04}>"))
        .chain((0..128).map(|i| format!("<seg{i:03}>")))
        .collect()
}

/// Python: `build_string_from_input`: the image tokens of every image,
/// then `<bos>`, the prompt and a newline.
pub fn build_string_from_input(
    prompt: &str,
    bos_token: &str,
    image_seq_len: usize,
    image_token: &str,
    num_images: usize,
) -> String {
    format!(
        "{}{bos_token}{prompt}\n",
        image_token.repeat(image_seq_len * num_images)
    )
}

/// The processor's inputs for the model (Python: the `pixel_values` of
/// the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct PaliGemmaInputs {
    /// `[1, 3, height, width]` float32.
    pub pixel_values: Array,
}

/// Python: `PaliGemmaProcessor`.
#[derive(Debug, Clone)]
pub struct PaliGemmaProcessor {
    /// transformers' `SiglipImageProcessorPil` (mlx-vlm asks for the slow
    /// class).
    pub image_processor: SiglipImageProcessor,
    /// Image tokens per image (Python: `image_processor.image_seq_length`,
    /// from `preprocessor_config.json`).
    pub image_seq_length: usize,
    /// Patches per image side, for the memory pre-flight.
    patches_per_side: i32,
    /// The tokenizer with `EXTRA_TOKENS` added, made from the first one
    /// given (Python adds them to the shared tokenizer at load).
    extended: Arc<OnceLock<tokenizers::Tokenizer>>,
}

impl PaliGemmaProcessor {
    /// Python: `PaliGemmaProcessor.from_pretrained`: the image processor
    /// of the checkpoint folder and its `image_seq_length`.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let image_processor = SiglipImageProcessor::from_pretrained(dir)?;
        let file = dir.join("preprocessor_config.json");
        let raw = crate::utils::read_json_if_exists(&file)?.unwrap_or(Value::Null);
        let image_seq_length = raw
            .get("image_seq_length")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::Config {
                file: file.display().to_string(),
                message: "Image processor is missing an `image_seq_length` attribute: add \
                          \"image_seq_length\" (a positive integer, (image_size / patch_size)^2, \
                          256 for 224-pixel PaliGemma)"
                    .into(),
            })?;
        let patches_per_side = (image_seq_length as f64).sqrt() as i32;
        Ok(PaliGemmaProcessor {
            image_processor,
            image_seq_length,
            patches_per_side,
            extended: Arc::new(OnceLock::new()),
        })
    }

    /// The tokenizer with `EXTRA_TOKENS` added as plain tokens (Python:
    /// `tokenizer.add_tokens(EXTRA_TOKENS)`; tokens it has already keep
    /// their ids).
    fn tokenizer<'t>(&'t self, tokenizer: &Tokenizer) -> &'t tokenizers::Tokenizer {
        self.extended.get_or_init(|| {
            let mut inner = tokenizer.inner().clone();
            let tokens: Vec<AddedToken> = extra_tokens()
                .into_iter()
                .map(|t| AddedToken::from(t, false))
                .collect();
            inner.add_tokens(&tokens);
            inner
        })
    }

    /// The ids of `text` without BOS or EOS (Python sets
    /// `add_bos_token = add_eos_token = False`).
    fn encode(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
        self.tokenizer(tokenizer)
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer {
                context: "PaliGemma prompt".into(),
                message: e.to_string(),
            })
    }

    /// Python: `PaliGemmaProcessor.__call__`'s prompt: without `<image>`,
    /// [`build_string_from_input`]; with it, each `<image>` repeated
    /// `image_seq_length` times, `<bos>` after the last one, a newline at
    /// the end.
    pub fn input_string(&self, prompt: &str, bos_token: &str, num_images: usize) -> Result<String> {
        let found = prompt.matches(IMAGE_TOKEN).count();
        if found == 0 {
            return Ok(build_string_from_input(
                prompt,
                bos_token,
                self.image_seq_length,
                IMAGE_TOKEN,
                num_images,
            ));
        }
        if found != num_images {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the PaliGemma prompt has {found} <image> tokens for {num_images} images; \
                     put one <image> per image at the start of the prompt, or none"
                ),
            });
        }
        let expanded = prompt.replace(IMAGE_TOKEN, &IMAGE_TOKEN.repeat(self.image_seq_length));
        let bos_index = expanded
            .rfind(IMAGE_TOKEN)
            .map_or(0, |i| i + IMAGE_TOKEN.len());
        Ok(format!(
            "{}{bos_token}{}\n",
            &expanded[..bos_index],
            &expanded[bos_index..]
        ))
    }
}

impl ModelProcessor for PaliGemmaProcessor {
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
                "PaliGemma takes no videos; pass a video's frames as images".into(),
            ));
        }
        // Python's prepare_inputs: no media, no processor.
        if media.images.is_empty() {
            let ids = self.encode(tokenizer, prompt)?;
            return Ok(GenerateInputs::text(input_ids_array(&ids)?));
        }
        if media.images.len() > 1 {
            return Err(Error::InvalidArgument(format!(
                "PaliGemma takes one image per prompt, got {}; pass a single image",
                media.images.len()
            )));
        }
        let bos = tokenizer.bos_token().ok_or_else(|| Error::Config {
            file: "tokenizer_config.json".into(),
            message: "PaliGemma's prompt needs the tokenizer's bos_token; add \"bos_token\": \
                      \"<bos>\""
                .into(),
        })?;
        let text = self.input_string(prompt, bos, media.images.len())?;
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let processed = self.image_processor.preprocess(&images)?;
        let ids = self.encode(tokenizer, &text)?;
        let p = self.patches_per_side;
        Ok(GenerateInputs {
            input_ids: input_ids_array(&ids)?,
            mask: None,
            media: Some(ModelInputs::new(
                PaliGemmaInputs {
                    pixel_values: processed.pixel_values,
                },
                vec![[1, p, p]; images.len()],
            )),
        })
    }
}

/// `config.json`'s SigLIP patches per image side (`image_size /
/// patch_size` of `vision_config`), if it gives both.
pub(crate) fn siglip_patches_per_side(config: &Value) -> Option<i32> {
    let vision = config.get("vision_config")?;
    let size = |key: &str| vision.get(key).and_then(Value::as_i64);
    let (image, patch) = (size("image_size")?, size("patch_size")?);
    i32::try_from(image / patch.max(1)).ok()
}

/// The family's processor factory: [`PaliGemmaProcessor::from_pretrained`],
/// with the vision tower's patch grid of `config` for the memory
/// pre-flight.
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    let mut processor = PaliGemmaProcessor::from_pretrained(model_path)?;
    if let Some(p) = siglip_patches_per_side(config) {
        processor.patches_per_side = p;
    }
    Ok(Box::new(processor))
}
