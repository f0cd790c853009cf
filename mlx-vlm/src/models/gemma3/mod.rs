//! Gemma 3: Python's `mlx_vlm/models/gemma3/`, one Rust file per Python
//! file, in Python's order.

pub mod config;
#[allow(clippy::module_inception)]
pub mod gemma3;
pub mod language;
pub mod processing_gemma3;
pub mod vision;

pub use config::ModelConfig;
pub use gemma3::Model;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "gemma3",
    create,
    check_weights,
    processor: processing_gemma3::load_processor,
    processor_name: "Gemma3Processor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::StartImageToken,
    prompt_rules: PromptRules::DEFAULT,
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
