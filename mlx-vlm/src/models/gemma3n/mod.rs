//! Gemma 3n: Python's `mlx_vlm/models/gemma3n/`, one Rust file per Python
//! file: the configuration, the language model (AltUp, Laurel blocks,
//! per-layer inputs, KV sharing, activation sparsity), the vision tower
//! (MobileNetV5), the audio encoder (Conformer), the model joining them
//! and the processor (images and audio in one prompt).

pub mod audio;
pub mod config;
#[allow(clippy::module_inception)]
pub mod gemma3n;
pub mod language;
pub mod processing_gemma3n;
pub mod vision;

pub use config::ModelConfig;
pub use gemma3n::Model;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::models::VlmModel;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::registry::{Family, MediaKinds};
use crate::utils::TensorInfo;
use crate::{Error, Result};

/// The family's registration.
pub const FAMILY: Family = Family {
    model_type: "gemma3n",
    create,
    check_weights,
    processor: processing_gemma3n::load_processor,
    processor_name: "Gemma3nProcessor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: true,
    },
    message_format: MessageFormat::ListWithImageTypeText,
    prompt_rules: PromptRules::DEFAULT,
};

fn create(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    Ok(Box::new(Model::new(config)?))
}

/// The key within a tower of a checkpoint key, in the Hugging Face
/// (`model.<tower>.`) or mlx-community (`<tower>.`) layout; the decoder's
/// `language_model.model.` too.
fn within<'k>(key: &'k str, tower: &str) -> Option<&'k str> {
    let key = key.strip_prefix("model.").unwrap_or(key);
    let rest = key.strip_prefix(tower)?.strip_prefix('.')?;
    Some(rest.strip_prefix("model.").unwrap_or(rest))
}

/// Checks the tensors against `config.json` before any module is built
/// (Rust only, as Gemma 3's check; Python fails while loading): the
/// decoder's and the audio encoder's layer counts, and the widths the
/// token embeddings fix, in either layout, quantized or not.
fn check_weights(
    config: &Map<String, Value>,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let config = ModelConfig::from_map(config.clone(), file)?;
    let (t, a) = (&config.text_config, &config.audio_config);
    let error = |message: String| Error::Config {
        file: file.to_string(),
        message,
    };
    let count = |tower: &str, blocks: &str| -> (i64, String) {
        tensors
            .keys()
            .filter_map(|key| {
                let index = within(key, tower)?.strip_prefix(blocks)?;
                let n: i64 = index.split('.').next()?.parse().ok()?;
                Some((n + 1, key.clone()))
            })
            .max_by_key(|(n, _)| *n)
            .unwrap_or((0, "none".into()))
    };
    for (name, configured, tower, blocks) in [
        ("text_config.num_hidden_layers", t.num_hidden_layers, "language_model", "layers."),
        ("audio_config.conf_num_hidden_layers", a.conf_num_hidden_layers, "audio_tower", "conformer."),
    ] {
        let (found, example) = count(tower, blocks);
        if found != i64::from(configured) {
            return Err(error(format!(
                "{name} is {configured}, but the Gemma 3n weights hold {found} (highest key: \
                 {example}); set {name} to {found} or use the config.json that came with these \
                 weights"
            )));
        }
    }
    let quantized = |key: &str| {
        key.strip_suffix(".weight")
            .is_some_and(|b| tensors.contains_key(&format!("{b}.scales")))
    };
    let sizes = [
        ("text_config.vocab_size", t.vocab_size, "language_model", "embed_tokens.weight", 0),
        ("text_config.hidden_size", t.hidden_size, "language_model", "embed_tokens.weight", 1),
        ("audio_config.vocab_size", a.vocab_size, "embed_audio", "embedding.weight", 0),
        ("vision_config.vocab_size", config.vision_config.vocab_size, "embed_vision", "embedding.weight", 0),
    ];
    for (name, configured, tower, key_within, dim) in sizes {
        for (key, info) in tensors {
            if within(key, tower) != Some(key_within) || (dim > 0 && quantized(key)) {
                continue;
            }
            let Some(&found) = info.shape.get(dim) else {
                continue;
            };
            if i64::try_from(found).ok() != Some(i64::from(configured)) {
                return Err(error(format!(
                    "{name} is {configured}, but {key} in {} has shape {:?} (dimension {dim} is \
                     {found}); set {name} to {found} or use the config.json that came with these \
                     weights",
                    info.file.display(),
                    info.shape
                )));
            }
        }
    }
    Ok(())
}
