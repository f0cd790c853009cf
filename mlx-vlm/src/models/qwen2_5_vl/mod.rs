//! Qwen2.5-VL: Python's `mlx_vlm/models/qwen2_5_vl/`, one Rust file per
//! Python file, in Python's order.

pub mod config;
pub mod language;
pub mod processing_qwen2_5_vl;
#[allow(clippy::module_inception)]
pub mod qwen2_5_vl;
pub mod vision;

pub use config::ModelConfig;
pub use qwen2_5_vl::Model;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "qwen2_5_vl",
    create,
    check_weights,
    processor: processing_qwen2_5_vl::load_processor,
    processor_name: "Qwen2_5_VLProcessor",
    media: MediaKinds {
        images: true,
        videos: true,
        audio: false,
    },
    message_format: MessageFormat::ListWithImageFirst,
    prompt_rules: PromptRules::DEFAULT,
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    Ok(Box::new(Model::new(config)?))
}

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<()> {
    ModelConfig::from_map(config.clone(), file)?.check_weights(tensors, file)
}
