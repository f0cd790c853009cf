//! Idefics3: Python's `mlx_vlm/models/idefics3/`, one Rust file per Python
//! file, in Python's order. SmolVLM ([`crate::models::smolvlm`]) reuses
//! the model, as Python's subclass does.

pub mod config;
#[allow(clippy::module_inception)]
pub mod idefics3;
pub mod language;
pub mod processing_idefics3;
pub mod vision;
pub(crate) mod weights_check;

pub use config::ModelConfig;
pub use idefics3::Model;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "idefics3",
    create,
    check_weights,
    processor: processing_idefics3::load_processor,
    processor_name: "Idefics3Processor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::ListWithImageFirst,
    prompt_rules: PromptRules::DEFAULT,
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    Ok(Box::new(Model::<idefics3::Idefics3>::new(config)?))
}

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    weights_check::check_tensors(&config, file, tensors)
}
