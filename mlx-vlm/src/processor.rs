//! The processor `load` returns next to the model: tokenizer, chat
//! template and image processor in one (Python: the `processor` of
//! `mlx_vlm.load`, with `utils.load_processor` and `utils.prepare_inputs`).

use std::path::{Path, PathBuf};

use mlx_rs::Array;
use serde_json::{Value, json};

use crate::generate::GenerateInputs;
use crate::image::{ImageSource, load_image};
use crate::models::VlmModel;
use crate::models::qwen2_5_vl::processing_qwen2_5_vl::Qwen2_5VlProcessor;
use crate::prompt_utils::{ChatTemplateOptions, apply_chat_template};
use crate::tokenizer::Tokenizer;
use crate::utils::{self, LoadOptions};
use crate::{Error, Result};

/// Everything between a prompt with images and the model's inputs.
#[derive(Debug)]
pub struct Processor {
    tokenizer: Tokenizer,
    image_processor: Qwen2_5VlProcessor,
    config: Value,
    eos_token_ids: Vec<u32>,
    model_path: PathBuf,
}

impl Processor {
    /// Python: `load_processor(model_path)`, with the image processor's
    /// `min_pixels` / `max_pixels` overridden when given.
    pub fn load(model_path: &Path, tokenizer: Tokenizer, options: &LoadOptions) -> Result<Self> {
        let image_processor = Qwen2_5VlProcessor::from_pretrained(model_path)?
            .try_with_pixels(options.min_pixels, options.max_pixels)?;
        let config = utils::load_config(model_path)?;
        let eos_token_ids = tokenizer.eos_token_ids();
        Ok(Processor {
            tokenizer,
            image_processor,
            config,
            eos_token_ids,
            model_path: model_path.to_path_buf(),
        })
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
    /// and the tokenizer's EOS.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// Resizes later images to at most `max_pixels` pixels, as
    /// [`LoadOptions::max_pixels`] does at load (for example the size that
    /// [`crate::Error::OutOfMemory`] says would fit).
    ///
    /// Fails, changing nothing, when `max_pixels` is below one merged patch
    /// or above the decoded-pixel limit.
    pub fn set_max_pixels(&mut self, max_pixels: u64) -> Result<()> {
        self.image_processor = self
            .image_processor
            .clone()
            .try_with_pixels(None, Some(max_pixels))?;
        Ok(())
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

    /// Loads and preprocesses `images`, expands the prompt's image tokens
    /// to their grids and tokenizes it (Python: `prepare_inputs`).
    pub fn prepare_inputs(&self, prompt: &str, images: &[ImageSource]) -> Result<GenerateInputs> {
        let (pixel_values, grids) = if images.is_empty() {
            (None, Vec::new())
        } else {
            let images = images.iter().map(load_image).collect::<Result<Vec<_>>>()?;
            let (pixel_values, grids) = self.image_processor.preprocess(&images)?;
            (Some(pixel_values), grids)
        };
        // Also rejects image pads without images, which would otherwise
        // reach the model as plain tokens.
        let text = self.image_processor.expand_image_tokens(prompt, &grids)?;
        let ids = self.tokenizer.encode(&text)?;
        let ids: Vec<i32> = ids
            .into_iter()
            .map(|id| {
                i32::try_from(id)
                    .map_err(|_| Error::InvalidArgument(format!("token id {id} exceeds int32")))
            })
            .collect::<Result<_>>()?;
        let input_ids = Array::from_slice(&ids, &[1, ids.len() as i32])?;
        let image_grid_thw = if grids.is_empty() {
            None
        } else {
            let flat: Vec<i32> = grids.iter().flatten().copied().collect();
            Some(Array::from_slice(&flat, &[grids.len() as i32, 3])?)
        };
        Ok(GenerateInputs {
            input_ids,
            pixel_values,
            image_grid_thw,
            mask: None,
        })
    }
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
