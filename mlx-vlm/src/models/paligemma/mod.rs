//! PaliGemma: Python's `mlx_vlm/models/paligemma/`, one Rust file per
//! Python file, in Python's order.

pub mod config;
pub mod language;
#[allow(clippy::module_inception)]
pub mod paligemma;
pub mod processing_paligemma;
pub mod vision;

pub use config::ModelConfig;
pub use paligemma::Model;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "paligemma",
    create,
    check_weights,
    processor: processing_paligemma::load_processor,
    processor_name: "PaliGemmaProcessor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::PromptWithImageToken,
    prompt_rules: PromptRules {
        single_image_only: true,
        last_message_only: true,
    },
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    Ok(Box::new(Model::new(config)?))
}

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    _tensors: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<()> {
    // The configuration must parse; the tensors are checked by name and
    // shape when the weights are loaded into the model.
    ModelConfig::from_map(config.clone(), file).map(|_| ())
}
