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
    tensors: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<()> {
    use crate::models::paligemma::weights_check::{
        Tower::{Text, Vision},
        check_gemma_tensors,
    };

    let config = ModelConfig::from_map(config.clone(), file)?;
    let (t, v) = (&config.text_config, &config.vision_config);
    let sizes = [
        ("text_config.vocab_size", t.vocab_size, Text, "embed_tokens.weight", 0),
        ("text_config.hidden_size", t.hidden_size, Text, "embed_tokens.weight", 1),
        ("text_config.intermediate_size", t.intermediate_size, Text, "layers.0.mlp.gate_proj.weight", 0),
        ("vision_config.hidden_size", v.hidden_size, Vision, "embeddings.patch_embedding.weight", 0),
        ("vision_config.intermediate_size", v.intermediate_size, Vision, "encoder.layers.0.mlp.fc1.weight", 0),
    ];
    check_gemma_tensors(
        tensors,
        file,
        "Gemma 3",
        t.num_hidden_layers,
        v.num_hidden_layers,
        &sizes,
    )
}
