//! Kimi-VL: Python's `mlx_vlm/models/kimi_vl/`, one Rust file per Python
//! file, in Python's order.

pub mod config;
#[allow(clippy::module_inception)]
pub mod kimi_vl;
pub mod language;
pub mod processing_kimi_vl;
pub mod vision;

pub use config::ModelConfig;
pub use kimi_vl::Model;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;
use crate::{Error, Result};

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "kimi_vl",
    create,
    check_weights,
    processor: processing_kimi_vl::load_processor,
    processor_name: "KimiVLProcessor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::ListWithImage,
    prompt_rules: PromptRules::DEFAULT,
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    Ok(Box::new(Model::new(config)?))
}

/// The checkpoint's embedding and expert shapes against the configuration,
/// before any module is built: a wrong `vocab_size`, `hidden_size` or
/// expert count is named here instead of failing in the weight update.
fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    let t = &config.text_config;
    let embed = "language_model.model.embed_tokens.weight";
    if let Some(info) = tensors.get(embed)
        && info.shape.first().copied() != Some(u64::try_from(t.vocab_size).unwrap_or(0))
    {
        return Err(Error::Weights {
            path: embed.into(),
            message: format!(
                "{embed} has shape {:?} but {file} says text_config.vocab_size {}; use the \
                 config.json that came with the weights",
                info.shape, t.vocab_size
            ),
        });
    }
    if let Some(experts) = t.n_routed_experts {
        for (key, info) in tensors {
            if key.ends_with("mlp.gate.weight")
                && info.shape.first().copied() != Some(u64::try_from(experts).unwrap_or(0))
            {
                return Err(Error::Weights {
                    path: key.clone(),
                    message: format!(
                        "{key} routes to {:?} experts but {file} says \
                         text_config.n_routed_experts {experts}; use the config.json that came \
                         with the weights",
                        info.shape.first()
                    ),
                });
            }
        }
    }
    Ok(())
}
