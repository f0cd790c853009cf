//! LLaVA-NeXT: Python's `mlx_vlm/models/llava_next/`, one Rust file per
//! Python file, in Python's order. Where Python's files copy LLaVA's
//! (config, language, vision), these reuse `models/llava/` and keep only
//! the differences.

pub mod config;
pub mod language;
#[allow(clippy::module_inception)]
pub mod llava_next;
pub mod processing_llava_next;
pub mod vision;

pub use config::ModelConfig;
pub use llava_next::Model;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::models::llava::check_llava_tensors;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration (Python lists it in
/// `SINGLE_IMAGE_ONLY_MODELS`).
pub const FAMILY: Family = Family {
    model_type: "llava_next",
    create,
    check_weights,
    processor: processing_llava_next::load_processor,
    processor_name: "LlavaNextProcessor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::ListWithImage,
    prompt_rules: PromptRules {
        single_image_only: true,
        ..PromptRules::DEFAULT
    },
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = config::from_map(config.clone(), file)?;
    Ok(Box::new(Model::new(config)?))
}

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let config = config::from_map(config.clone(), file)?;
    check_llava_tensors(&config, file, "LLaVA-NeXT", tensors)
}
