//! LLaVA: Python's `mlx_vlm/models/llava/`, one Rust file per Python file,
//! in Python's order.

pub mod config;
pub mod language;
#[allow(clippy::module_inception)]
pub mod llava;
pub mod processing_llava;
pub mod vision;

pub use config::ModelConfig;
pub use llava::Model;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;
use crate::{Error, Result};

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "llava",
    create,
    check_weights,
    processor: processing_llava::load_processor,
    processor_name: "LlavaProcessor",
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

fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    check_llava_tensors(&config, file, "LLaVA", tensors)
}

/// The sizes of `config` against the embedding, first MLP and patch
/// convolution the checkpoint holds (either layout; shared by LLaVA-NeXT),
/// so a config/weights mismatch names the key before any module is built.
pub(crate) fn check_llava_tensors(
    config: &ModelConfig,
    file: &str,
    family: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let (t, v) = (&config.text_config, &config.vision_config);
    let find = |suffix: &str| tensors.iter().find(|(k, _)| k.ends_with(suffix));
    for (key, want, suffix, axis) in [
        ("text_config.vocab_size", t.vocab_size, "embed_tokens.weight", 0),
        ("text_config.intermediate_size", t.intermediate_size, "layers.0.mlp.gate_proj.weight", 0),
        ("vision_config.hidden_size", v.hidden_size, "embeddings.patch_embedding.weight", 0),
        ("vision_config.intermediate_size", v.intermediate_size, "encoder.layers.0.mlp.fc1.weight", 0),
    ] {
        let Some((name, info)) = find(suffix) else {
            continue;
        };
        if let Some(&got) = info.shape.get(axis)
            && got != u64::try_from(want).unwrap_or(0)
        {
            return Err(Error::Config {
                file: file.to_string(),
                message: format!(
                    "{key} is {want} but the {family} checkpoint's {name} has {got} on axis \
                     {axis} ({:?}); the config.json does not belong to these weights",
                    info.shape
                ),
            });
        }
    }
    Ok(())
}
