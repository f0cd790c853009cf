//! The processor `load` returns next to the model: tokenizer, chat
//! template and the family's media processor in one (Python: the
//! `processor` of `mlx_vlm.load`, with `utils.load_processor` and
//! `utils.prepare_inputs`).
//!
//! Each family brings its own [`ModelProcessor`] (Python: its
//! `processing_*.py` class and the transformers processors it wraps),
//! built by the factory of its registration; this file knows no family.

use std::fmt;
use std::path::{Path, PathBuf};

use image::RgbImage;
use mlx_rs::Array;
use serde_json::{Value, json};

use crate::audio::AudioSource;
use crate::generate::GenerateInputs;
use crate::image::ImageSource;
use crate::models::VlmModel;
use crate::prompt_utils::{ChatTemplateOptions, apply_chat_template};
use crate::registry::{self, Family};
use crate::tokenizer::Tokenizer;
use crate::utils::{self, LoadOptions};
use crate::{Error, Result};

/// Overrides of a processor's checkpoint settings, at load
/// ([`LoadOptions`]) or per call ([`Processor::prepare_inputs_with`])
/// (Python: the processor keyword arguments). `None` keeps the
/// checkpoint's value, else the family's Python default.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessorOptions {
    /// Fewest pixels an image is resized to (`min_pixels`).
    pub min_pixels: Option<u64>,
    /// Most pixels an image is resized to (`max_pixels`).
    pub max_pixels: Option<u64>,
    /// Whether video positions keep absolute time where a family can
    /// (Qwen2.5-VL: `second_per_grid_ts`, as the model was trained; on by
    /// default). `Some(false)` gives Python mlx-vlm 0.7.6's positions.
    pub absolute_video_time: Option<bool>,
    /// Overrides of the image processors ported from transformers
    /// ([`crate::image_processing`], used by PaliGemma, Gemma 3 and
    /// Gemma 3n), such as Gemma 3's `do_pan_and_scan` (Python: the image
    /// keyword arguments of those processors' `__call__`). Families whose
    /// processor does not read them ignore them.
    pub image_processor: crate::image_processing::ImageProcessorOptions,
}

impl ProcessorOptions {
    /// Options bounding the image size, for example the size that
    /// [`crate::Error::OutOfMemory`] says would fit.
    pub fn pixels(min_pixels: Option<u64>, max_pixels: Option<u64>) -> Self {
        Self {
            min_pixels,
            max_pixels,
            ..Self::default()
        }
    }
}

/// The media of one prompt, in prompt order per kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct PromptMedia<'a> {
    /// The images.
    pub images: &'a [ImageSource],
    /// The videos, decoded and sampled.
    pub videos: &'a [Video],
    /// The audio clips, for families that take audio
    /// ([`crate::registry::MediaKinds::audio`]); others refuse them with
    /// [`Error::UnsupportedMedia`].
    pub audio: &'a [AudioSource],
}

/// A decoded video: its sampled frames and where they came from (Python:
/// the frames and `VideoMetadata` that `load_video` returns).
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// The sampled frames, in order, all of one size.
    pub frames: Vec<RgbImage>,
    /// Frames in the source (Python: `total_num_frames`).
    pub total_num_frames: usize,
    /// The source's frame rate (Python: `fps`).
    pub fps: f64,
    /// The source index of each sampled frame (Python: `frames_indices`).
    pub frames_indices: Vec<usize>,
}

impl Video {
    /// Frames already chosen by the caller, taken as sampled at `fps`
    /// (Python: the metadata `prepare_inputs` makes for decoded frames).
    pub fn from_frames(frames: Vec<RgbImage>, fps: f64) -> Self {
        let n = frames.len();
        Self {
            frames,
            total_num_frames: n,
            fps,
            frames_indices: (0..n).collect(),
        }
    }

    /// The frame rate the sampling achieved (Python: `sampled_fps`).
    pub fn sampled_fps(&self) -> f64 {
        self.frames_indices.len() as f64 / (self.total_num_frames as f64).max(1e-6) * self.fps
    }
}

/// Prepares one family's model inputs from text and media (Python: the
/// family's processor `__call__`): loads and preprocesses the media,
/// expands the prompt's media tokens to their feature counts, tokenizes,
/// and wraps the family's typed inputs in [`crate::models::ModelInputs`].
pub trait ModelProcessor: fmt::Debug + Send + Sync {
    /// A copy of the processor with `options` applied to its settings;
    /// fails, naming the option, on a value the family cannot use.
    fn with_options(&self, options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>>;

    /// The model inputs of `prompt` (already templated) with `media`.
    fn prepare_inputs(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs>;

    /// Token ids that end generation besides the tokenizer's and the
    /// configs' (Python: the processor's `additional_eos_token_ids`, which
    /// `load_processor` adds to the stopping criteria); none by default.
    fn additional_eos_token_ids(&self, _tokenizer: &Tokenizer) -> Vec<u32> {
        Vec::new()
    }
}

/// Builds a family's processor from the checkpoint folder and its parsed
/// `config.json` (Python: `AutoProcessor.from_pretrained` with the
/// family's processor class).
pub type ProcessorFactory = fn(&Path, &Value) -> Result<Box<dyn ModelProcessor>>;

/// Everything between a prompt with media and the model's inputs.
#[derive(Debug)]
pub struct Processor {
    tokenizer: Tokenizer,
    family: &'static Family,
    processor: Box<dyn ModelProcessor>,
    config: Value,
    eos_token_ids: Vec<u32>,
    model_path: PathBuf,
}

impl Processor {
    /// Python: `load_processor(model_path)`, with the settings of
    /// `options` (`min_pixels`, `max_pixels`) applied.
    pub fn load(model_path: &Path, tokenizer: Tokenizer, options: &LoadOptions) -> Result<Self> {
        let config = utils::load_config(model_path)?;
        let config_file = model_path.join("config.json").display().to_string();
        let family = registry::registered(&config, &config_file)?;
        let processor = (family.processor)(model_path, &config)?.with_options(
            &ProcessorOptions::pixels(options.min_pixels, options.max_pixels),
        )?;
        let mut eos_token_ids = tokenizer.eos_token_ids();
        for id in processor.additional_eos_token_ids(&tokenizer) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
        Ok(Processor {
            tokenizer,
            family,
            processor,
            config,
            eos_token_ids,
            model_path: model_path.to_path_buf(),
        })
    }

    /// The registration of the checkpoint's model family.
    pub fn family(&self) -> &'static Family {
        self.family
    }

    /// The parsed `config.json` of the checkpoint.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// The folder the checkpoint was loaded from.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The Hugging Face tokenizer, for decoding.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        self.tokenizer.inner()
    }

    /// The tokenizer with its special tokens and chat template.
    pub fn chat_tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Ids that end generation: `generation_config.json`'s, `config.json`'s
    /// and the tokenizer's EOS, then the family processor's additional ones
    /// ([`ModelProcessor::additional_eos_token_ids`]).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// Applies `options` to every later call, as [`LoadOptions`] does at
    /// load (for example the `max_pixels` that
    /// [`crate::Error::OutOfMemory`] says would fit).
    ///
    /// Fails, changing nothing, on a value the family cannot use (for
    /// Qwen: `max_pixels` below one merged patch or above the
    /// decoded-pixel limit).
    pub fn set_options(&mut self, options: &ProcessorOptions) -> Result<()> {
        self.processor = self.processor.with_options(options)?;
        Ok(())
    }

    /// Resizes later images to at most `max_pixels` pixels
    /// ([`Processor::set_options`] with only `max_pixels`).
    pub fn set_max_pixels(&mut self, max_pixels: u64) -> Result<()> {
        self.set_options(&ProcessorOptions::pixels(None, Some(max_pixels)))
    }

    /// The prompt string for one user message with `num_images` images and
    /// an optional system message, as Python's CLI builds it
    /// (`apply_chat_template(processor, config, prompt, num_images=N)`).
    pub fn apply_chat_template(
        &self,
        prompt: &str,
        system: Option<&str>,
        num_images: usize,
    ) -> Result<String> {
        let prompt = match system {
            Some(system) => json!([{"role": "system", "content": system}, prompt]),
            None => Value::String(prompt.to_string()),
        };
        let options = ChatTemplateOptions {
            num_images,
            ..Default::default()
        };
        apply_chat_template(&self.tokenizer, &self.config, &prompt, &options)
    }

    /// [`Processor::apply_chat_template`] with videos (Python: the CLI's
    /// `video` and `fps` template keywords): `videos` names them, for
    /// families with native video (see [`Family::media`]); others take
    /// their frames as images ([`crate::video::frames_as_images`]).
    pub fn apply_chat_template_with_videos(
        &self,
        prompt: &str,
        system: Option<&str>,
        num_images: usize,
        videos: &[String],
        fps: Option<f64>,
    ) -> Result<String> {
        let prompt = match system {
            Some(system) => json!([{"role": "system", "content": system}, prompt]),
            None => Value::String(prompt.to_string()),
        };
        let options = ChatTemplateOptions {
            num_images,
            videos: videos.to_vec(),
            fps,
            ..Default::default()
        };
        apply_chat_template(&self.tokenizer, &self.config, &prompt, &options)
    }

    /// [`Processor::apply_chat_template`] with every option of Python's
    /// `apply_chat_template` (`num_images`, `num_audios`, videos, template
    /// variables). Fails with [`Error::UnsupportedMedia`] on audio for a
    /// family without audio.
    pub fn apply_chat_template_with(
        &self,
        prompt: &str,
        system: Option<&str>,
        options: &ChatTemplateOptions,
    ) -> Result<String> {
        let prompt = match system {
            Some(system) => json!([{"role": "system", "content": system}, prompt]),
            None => Value::String(prompt.to_string()),
        };
        apply_chat_template(&self.tokenizer, &self.config, &prompt, options)
    }

    /// Loads and preprocesses `images`, expands the prompt's image tokens
    /// and tokenizes it (Python: `prepare_inputs`).
    pub fn prepare_inputs(&self, prompt: &str, images: &[ImageSource]) -> Result<GenerateInputs> {
        self.processor.prepare_inputs(
            &self.tokenizer,
            prompt,
            PromptMedia {
                images,
                ..Default::default()
            },
        )
    }

    /// [`Processor::prepare_inputs`] with `options` overriding the
    /// processor's settings for this call only.
    pub fn prepare_inputs_with(
        &self,
        prompt: &str,
        media: PromptMedia<'_>,
        options: &ProcessorOptions,
    ) -> Result<GenerateInputs> {
        if !media.audio.is_empty() && !self.family.media.audio {
            return Err(Error::UnsupportedMedia {
                model_type: self.family.model_type.to_string(),
                media: "audio".into(),
                supported: self.family.media.to_string(),
            });
        }
        if *options == ProcessorOptions::default() {
            return self
                .processor
                .prepare_inputs(&self.tokenizer, prompt, media);
        }
        self.processor
            .with_options(options)?
            .prepare_inputs(&self.tokenizer, prompt, media)
    }
}

/// `ids` as the `[1, L]` int32 array the models take, or an error naming
/// an id beyond int32.
pub fn input_ids_array(ids: &[u32]) -> Result<Array> {
    let ids: Vec<i32> = ids
        .iter()
        .map(|&id| {
            i32::try_from(id)
                .map_err(|_| Error::InvalidArgument(format!("token id {id} exceeds int32")))
        })
        .collect::<Result<_>>()?;
    let len = i32::try_from(ids.len()).map_err(|_| {
        Error::InvalidArgument(format!("a prompt of {} tokens exceeds int32", ids.len()))
    })?;
    Ok(Array::from_slice(&ids, &[1, len])?)
}

/// Loads a model and its processor from a local folder or a Hugging Face
/// repo id (Python: `mlx_vlm.load`).
pub fn load(
    path_or_hf_repo: &str,
    options: &LoadOptions,
) -> Result<(Box<dyn VlmModel>, Processor)> {
    let (model, tokenizer, model_path) = utils::load(path_or_hf_repo, options)?;
    let processor = Processor::load(&model_path, tokenizer, options)?;
    Ok((model, processor))
}
