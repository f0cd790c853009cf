//! `mlx_vlm/models/smolvlm/processing_smolvlm.py`: SmolVLM's processor.
//! Python's file copies Idefics3's prompt expansion
//! ([`get_image_prompt_string`](crate::models::idefics3::processing_idefics3::get_image_prompt_string)),
//! shared here; it differs from Idefics3's in where it reads things:
//! the image tokens are the tokenizer's `fake_image_token`, `image_token`
//! and `global_image_token` attributes (here: those keys of
//! `tokenizer_config.json` or of its `extra_special_tokens` object, as
//! transformers 5 sets them, else the defaults), and
//! `processor_config.json`'s `image_processor.size` overrides the image
//! processor's (`ip_overrides`).
//!
//! Divergences from Python: Idefics3's processor's
//! ([`crate::models::idefics3::processing_idefics3`]); videos are not
//! taken here (Python treats a video's frames as images when no images
//! are given; the generic code does so before calling the processor).

use std::path::Path;

use serde_json::Value;

use crate::Result;
use crate::generate::GenerateInputs;
use crate::image_processing::idefics3::Idefics3ImageProcessor;
use crate::models::idefics3::processing_idefics3::{
    ImageTokens, TiledImageProcessor, patches_per_side, read_image_seq_len,
};
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia};
use crate::tokenizer::Tokenizer;

/// Python: `SmolVLMProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmolVLMProcessor {
    /// The image processor, tokens and tile size.
    pub inner: TiledImageProcessor,
}

impl SmolVLMProcessor {
    /// Python: `SmolVLMProcessor.from_pretrained`.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let tok_file = dir.join("tokenizer_config.json");
        let tok_cfg = crate::utils::read_json_if_exists(&tok_file)?.unwrap_or(Value::Null);
        let defaults = ImageTokens::default();
        // transformers 5 makes both top-level keys and the keys of an
        // `extra_special_tokens` object tokenizer attributes.
        let named = |key: &str, default: String| {
            tok_cfg
                .get(key)
                .or_else(|| tok_cfg.get("extra_special_tokens")?.get(key))
                .and_then(Value::as_str)
                .map_or(default, str::to_string)
        };
        let tokens = ImageTokens {
            fake_image_token: named("fake_image_token", defaults.fake_image_token),
            image_token: named("image_token", defaults.image_token),
            global_image_token: named("global_image_token", defaults.global_image_token),
        };
        Ok(SmolVLMProcessor {
            inner: TiledImageProcessor {
                image_processor: Idefics3ImageProcessor::from_pretrained(dir, true)?,
                image_seq_len: read_image_seq_len(dir)?,
                tokens,
                // SmolVLM2's 16-pixel patches of 512-pixel tiles until the
                // factory reads the model's (`config.json`).
                patches_per_side: 32,
                name: "SmolVLMProcessor",
            },
        })
    }
}

impl ModelProcessor for SmolVLMProcessor {
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
}

/// The family's processor factory: [`SmolVLMProcessor::from_pretrained`],
/// with the tile's patch grid of `config` for the memory pre-flight.
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    let mut processor = SmolVLMProcessor::from_pretrained(model_path)?;
    if let Some(p) = patches_per_side(config) {
        processor.inner.patches_per_side = p;
    }
    Ok(Box::new(processor))
}
