//! SmolVLM: Python's `mlx_vlm/models/smolvlm/`, one Rust file per Python
//! file, in Python's order; the language model and vision tower are
//! Idefics3's ([`crate::models::idefics3`]), as Python imports them.

pub mod config;
pub mod processing_smolvlm;
#[allow(clippy::module_inception)]
pub mod smolvlm;

pub use crate::models::idefics3::language::LanguageModel;
pub use crate::models::idefics3::vision::VisionModel;
pub use smolvlm::Model;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::models::idefics3::weights_check;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "smolvlm",
    create,
    check_weights,
    processor: processing_smolvlm::load_processor,
    processor_name: "SmolVLMProcessor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::ListWithImageFirst,
    prompt_rules: PromptRules::DEFAULT,
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = config::from_map(config.clone(), file)?;
    Ok(Box::new(Model::new(config)?))
}

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let config = config::from_map(config.clone(), file)?;
    weights_check::check_tensors(&config, file, tensors)
}
