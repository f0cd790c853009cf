//! Qwen3-VL-MoE: Python's `mlx_vlm/models/qwen3_vl_moe/`, one Rust file per
//! Python file, in Python's order. Python copies most of Qwen3-VL here; the
//! port shares Qwen3-VL's code (generic over the decoder's feed-forward
//! block and the vision GELUs), its processor included, as Python imports
//! `qwen3_vl.processing_qwen3_vl`.

pub mod config;
pub mod language;
#[allow(clippy::module_inception)]
pub mod qwen3_vl_moe;
pub mod vision;

pub use config::ModelConfig;
pub use qwen3_vl_moe::Model;

use serde_json::{Map, Value};

use crate::Result;
use crate::models::VlmModel;
use crate::models::qwen3_vl::processing_qwen3_vl;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "qwen3_vl_moe",
    create,
    check_weights,
    processor: processing_qwen3_vl::load_processor,
    processor_name: "Qwen3VLProcessor",
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
    Ok(Box::new(qwen3_vl_moe::model(&config)?))
}

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<()> {
    ModelConfig::from_map(config.clone(), file)?.check_weights(tensors, file)
}
