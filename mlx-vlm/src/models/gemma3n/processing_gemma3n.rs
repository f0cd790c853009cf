//! `mlx_vlm/models/gemma3n/processing_gemma3n.py`: Gemma 3n's processor,
//! with Python's `prepare_inputs` (`mlx_vlm/utils.py`) for this family.
//! The chat template writes one `<image_soft_token>` per image and one
//! `<audio_soft_token>` per clip; the processor expands each to
//! `\n\n<start_of_image>` + `image_seq_length` image soft tokens +
//! `<end_of_image>\n\n` (audio: `<start_of_audio>`, `audio_seq_length`
//! soft tokens, `<end_of_audio>`). A prompt without media bypasses the
//! processor there and is tokenized with the tokenizer's special tokens.
//!
//! Divergences from Python:
//! - `boa_token`, `eoa_token`, `audio_token`, `boi_token`, `eoi_token` and
//!   `image_token` are read from `tokenizer_config.json` (transformers'
//!   tokenizer attributes of the same names); a missing one is a typed
//!   error naming the key (Python: an `AttributeError`).
//! - A prompt whose image (audio) soft tokens do not number the images
//!   (clips) given is an [`Error::ImageTokenMismatch`] here; Python
//!   expands whatever is there and fails later in the model's merge.
//! - `token_type_ids` are not made: the model does not read them.
//! - Python's empty-text branches (`text=None` with media), batches of
//!   prompts, `batch_decode`, `decode` and `model_input_names` have no
//!   counterpart.
//! - Videos are refused with a typed error (Python's processor takes
//!   none either).

use std::path::Path;

use mlx_rs::Array;
use serde_json::Value;

use crate::audio::load_audio;
use crate::feature_extraction::gemma3n::Gemma3nAudioFeatureExtractor;
use crate::generate::GenerateInputs;
use crate::image::load_image;
use crate::image_processing::siglip::SiglipImageProcessor;
use crate::models::ModelInputs;
use crate::models::gemma3::processing_gemma3::token;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The processor's inputs for the model (Python: the `BatchFeature` keys
/// the model reads).
#[derive(Debug, Clone, Default)]
pub struct Gemma3nInputs {
    /// `[images, 3, height, width]` float32 (Python: `pixel_values`).
    pub pixel_values: Option<Array>,
    /// `[clips, frames, mel bins]` float32 log-mel features (Python:
    /// `input_features`).
    pub input_features: Option<Array>,
    /// `[clips, frames]` booleans, true at real frames (Python:
    /// `input_features_mask`).
    pub input_features_mask: Option<Array>,
}

/// Python: `Gemma3nProcessor`.
#[derive(Debug, Clone)]
pub struct Gemma3nProcessor {
    /// transformers' `Gemma3nAudioFeatureExtractor`.
    pub feature_extractor: Gemma3nAudioFeatureExtractor,
    /// transformers' `SiglipImageProcessorPil` (mlx-vlm asks for
    /// `use_fast=False`).
    pub image_processor: SiglipImageProcessor,
    /// Soft tokens per clip (Python: `audio_seq_length`, default 188).
    pub audio_seq_length: usize,
    /// Python: `boa_token` (`<start_of_audio>`).
    pub boa_token: String,
    /// Python: `audio_token` (`<audio_soft_token>`).
    pub audio_token: String,
    /// Python: `full_audio_sequence`.
    pub full_audio_sequence: String,
    /// Soft tokens per image (Python: `image_seq_length`, default 256).
    pub image_seq_length: usize,
    /// Python: `boi_token` (`<start_of_image>`).
    pub boi_token: String,
    /// Python: `image_token` (`<image_soft_token>`).
    pub image_token: String,
    /// Python: `full_image_sequence`.
    pub full_image_sequence: String,
}

/// The tokenizer's media tokens (Python: the tokenizer attributes
/// `Gemma3nProcessor.__init__` reads).
#[derive(Debug, Clone)]
pub struct MediaTokens {
    /// `boa_token`.
    pub boa: String,
    /// `audio_token`.
    pub audio: String,
    /// `eoa_token`.
    pub eoa: String,
    /// `boi_token`.
    pub boi: String,
    /// `image_token`.
    pub image: String,
    /// `eoi_token`.
    pub eoi: String,
}

impl MediaTokens {
    /// The tokens of `tokenizer_config.json` in `dir`.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let file = dir.join("tokenizer_config.json");
        let config = crate::utils::read_json_if_exists(&file)?.unwrap_or(Value::Null);
        let get = |key: &str, example: &str| {
            token(&config, key, &file, example, "Gemma 3n's processor")
        };
        Ok(MediaTokens {
            boa: get("boa_token", "<start_of_audio>")?,
            audio: get("audio_token", "<audio_soft_token>")?,
            eoa: get("eoa_token", "<end_of_audio>")?,
            boi: get("boi_token", "<start_of_image>")?,
            image: get("image_token", "<image_soft_token>")?,
            eoi: get("eoi_token", "<end_of_image>")?,
        })
    }
}

/// `processor_config.json`'s `key`: a positive integer, or `default`.
fn seq_length(config: &Value, key: &str, default: usize, file: &Path) -> Result<usize> {
    match config.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::Config {
                file: file.display().to_string(),
                message: format!(
                    "{key} is {v}; give a positive integer (config.json's soft tokens per \
                     item, {default} for released Gemma 3n)"
                ),
            }),
    }
}

impl Gemma3nProcessor {
    /// Python: `Gemma3nProcessor.__init__`.
    pub fn new(
        feature_extractor: Gemma3nAudioFeatureExtractor,
        image_processor: SiglipImageProcessor,
        tokens: &MediaTokens,
        audio_seq_length: usize,
        image_seq_length: usize,
    ) -> Self {
        let audio_tokens_expanded = tokens.audio.repeat(audio_seq_length);
        let full_audio_sequence =
            format!("\n\n{}{audio_tokens_expanded}{}\n\n", tokens.boa, tokens.eoa);
        let image_tokens_expanded = tokens.image.repeat(image_seq_length);
        let full_image_sequence =
            format!("\n\n{}{image_tokens_expanded}{}\n\n", tokens.boi, tokens.eoi);
        Gemma3nProcessor {
            feature_extractor,
            image_processor,
            audio_seq_length,
            boa_token: tokens.boa.clone(),
            audio_token: tokens.audio.clone(),
            full_audio_sequence,
            image_seq_length,
            boi_token: tokens.boi.clone(),
            image_token: tokens.image.clone(),
            full_image_sequence,
        }
    }

    /// Python: `Gemma3nProcessor.from_pretrained`: the feature extractor
    /// and image processor of the checkpoint folder (its
    /// `preprocessor_config.json`, with `processor_config.json`'s
    /// `image_processor.size` over it), `processor_config.json`'s
    /// `audio_seq_length` and `image_seq_length`, the tokenizer's tokens.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let feature_extractor = Gemma3nAudioFeatureExtractor::from_pretrained(dir)?;
        let image_processor = SiglipImageProcessor::from_pretrained(dir)?;
        let proc_file = dir.join("processor_config.json");
        let proc_cfg = crate::utils::read_json_if_exists(&proc_file)?.unwrap_or(Value::Null);
        let audio_seq_length = seq_length(&proc_cfg, "audio_seq_length", 188, &proc_file)?;
        let image_seq_length = seq_length(&proc_cfg, "image_seq_length", 256, &proc_file)?;
        let tokens = MediaTokens::from_pretrained(dir)?;
        Ok(Self::new(
            feature_extractor,
            image_processor,
            &tokens,
            audio_seq_length,
            image_seq_length,
        ))
    }

    /// Python: `__call__`'s prompt: with audio, every audio soft token
    /// replaced by [`Gemma3nProcessor::full_audio_sequence`]; with images,
    /// every image soft token by
    /// [`Gemma3nProcessor::full_image_sequence`]. Each placeholder count
    /// must match its media (Rust only).
    pub fn expand_prompt(&self, prompt: &str, num_images: usize, num_audios: usize) -> Result<String> {
        let mut text = prompt.to_string();
        for (token, count, kind) in [
            (&self.image_token, num_images, "image"),
            (&self.audio_token, num_audios, "audio clip"),
        ] {
            let found = prompt.matches(token.as_str()).count();
            if count > 0 && found != count {
                return Err(Error::ImageTokenMismatch {
                    message: format!(
                        "the prompt has {found} {token} but {count} {kind}s were given; put one \
                         {token} per {kind} in the prompt (the chat template does, given the \
                         counts)"
                    ),
                });
            }
        }
        if num_audios > 0 {
            text = text.replace(&self.audio_token, &self.full_audio_sequence);
        }
        if num_images > 0 {
            text = text.replace(&self.image_token, &self.full_image_sequence);
        }
        Ok(text)
    }

    /// Python: `feature_extractor(audio)` on clips loaded by `load_audio`
    /// at the extractor's sampling rate: `input_features` `[clips, frames,
    /// mel bins]` and `input_features_mask` `[clips, frames]`.
    pub fn audio_features(&self, media: &PromptMedia<'_>) -> Result<(Array, Array)> {
        let sr = self.feature_extractor.sampling_rate;
        let clips = media
            .audio
            .iter()
            .map(|source| load_audio(source, sr))
            .collect::<Result<Vec<_>>>()?;
        let batch: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
        let features = self.feature_extractor.extract(&batch)?;
        let dims = |n: usize, what: &str| {
            i32::try_from(n).map_err(|_| {
                Error::InvalidArgument(format!("{n} {what} exceed int32 array dimensions"))
            })
        };
        let (mut values, mut mask) = (Vec::new(), Vec::new());
        let (mut frames, mut bins) = (0, 0);
        for f in &features {
            (frames, bins) = (f.num_frames, f.feature_size);
            values.extend_from_slice(&f.input_features);
            mask.extend_from_slice(&f.input_features_mask);
        }
        let (n, frames, bins) = (
            dims(features.len(), "clips")?,
            dims(frames, "frames")?,
            dims(bins, "mel bins")?,
        );
        Ok((
            Array::from_slice(&values, &[n, frames, bins])?,
            Array::from_slice(&mask, &[n, frames])?,
        ))
    }
}

impl ModelProcessor for Gemma3nProcessor {
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
                "Gemma 3n takes no videos; pass a video's frames as images".into(),
            ));
        }
        // Python's prepare_inputs: no media, no processor.
        if media.images.is_empty() && media.audio.is_empty() {
            return Ok(GenerateInputs::text(input_ids_array(
                &tokenizer.encode(prompt)?,
            )?));
        }
        let mut inputs = Gemma3nInputs::default();
        if !media.audio.is_empty() {
            let (features, mask) = self.audio_features(&media)?;
            inputs.input_features = Some(features);
            inputs.input_features_mask = Some(mask);
        }
        let mut grids = Vec::new();
        if !media.images.is_empty() {
            let images = media
                .images
                .iter()
                .map(load_image)
                .collect::<Result<Vec<_>>>()?;
            let processed = self.image_processor.preprocess(&images)?;
            // The memory pre-flight's grid: the soft tokens of each image.
            let side = (self.image_seq_length as f64).sqrt() as i32;
            grids = vec![[1, side, side]; images.len()];
            inputs.pixel_values = Some(processed.pixel_values);
        }
        let text = self.expand_prompt(prompt, media.images.len(), media.audio.len())?;
        let ids = tokenizer.encode(&text)?;
        Ok(GenerateInputs {
            input_ids: input_ids_array(&ids)?,
            mask: None,
            media: Some(ModelInputs::new(inputs, grids)),
        })
    }
}

/// The family's processor factory: [`Gemma3nProcessor::from_pretrained`].
pub fn load_processor(model_path: &Path, _config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(Gemma3nProcessor::from_pretrained(model_path)?))
}
