//! `mlx_vlm/models/qwen2_vl/processing_qwen2_vl.py`: Qwen2-VL's processor.
//!
//! Python's `Qwen2VLProcessor` is `Qwen2_5_VLProcessor` without the
//! `mm_token_type_ids` option (which this port has in neither): the same
//! shared Qwen image and video processors (patch size 14) and the same
//! `<|image_pad|>` / `<|video_pad|>` expansion. It wraps Qwen2.5-VL's.
//!
//! Divergence from Python: none in what it returns; videos never carry
//! `second_per_grid_ts`, since Qwen2-VL's positions have no absolute time
//! (transformers' Qwen2-VL `get_rope_index` takes none), and
//! `ProcessorOptions::absolute_video_time` is refused rather than ignored.

use std::path::Path;

use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::models::qwen2_5_vl::processing_qwen2_5_vl::Qwen2_5VlProcessor;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Python: `Qwen2VLProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlProcessor(pub Qwen2_5VlProcessor);

impl Qwen2VlProcessor {
    /// Python: `Qwen2VLProcessor.from_pretrained`: the image and video
    /// settings of the checkpoint folder, patch size 14 by default.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let mut inner = Qwen2_5VlProcessor::from_pretrained(dir)?;
        inner.absolute_video_time = false;
        Ok(Qwen2VlProcessor(inner))
    }
}

impl ModelProcessor for Qwen2VlProcessor {
    fn with_options(&self, options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>> {
        if options.absolute_video_time == Some(true) {
            return Err(Error::InvalidArgument(
                "Qwen2-VL has no absolute-time video positions (its rope index takes no \
                 second_per_grid_ts); leave absolute_video_time unset"
                    .into(),
            ));
        }
        let inner = self
            .0
            .clone()
            .try_with_pixels(options.min_pixels, options.max_pixels)?;
        Ok(Box::new(Qwen2VlProcessor(inner)))
    }

    fn prepare_inputs(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs> {
        self.0.prepare_inputs(tokenizer, prompt, media)
    }
}

/// The family's processor factory: [`Qwen2VlProcessor::from_pretrained`].
pub fn load_processor(model_path: &Path, _config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(Qwen2VlProcessor::from_pretrained(model_path)?))
}
