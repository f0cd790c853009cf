//! `mlx_vlm/models/llava_next/config.py`: the configuration of LLaVA-NeXT
//! checkpoints (`llava-hf/llava-v1.6-*`). The fields are LLaVA's
//! ([`crate::models::llava::config`], whose types this file reuses) with
//! other text defaults (Mistral 7B's: `intermediate_size` 14336,
//! `rms_norm_eps` 1e-5, `vocab_size` 32064, 8 key/value heads, `rope_theta`
//! 1e6) and no `tie_word_embeddings` (the decoder always has its own
//! output layer).
//!
//! Divergences from Python: LLaVA's checks (see its file); a list
//! `vision_feature_layer` is an [`Error::Config`](crate::Error::Config)
//! (Python indexes the hidden states with it and fails with a
//! `TypeError`); `image_grid_pinpoints` is read by the processor from
//! `preprocessor_config.json`, as Python's model ignores it.

use serde_json::{Map, Value};

pub use crate::models::llava::config::{ModelConfig, TextConfig, VisionConfig};

use crate::error::Result;
use crate::models::base::config_error;

/// Python's `TextConfig` defaults that differ from LLaVA's.
const TEXT_DEFAULTS: [(&str, f64); 5] = [
    ("intermediate_size", 14336.0),
    ("rms_norm_eps", 1e-5),
    ("vocab_size", 32064.0),
    ("num_key_value_heads", 8.0),
    ("rope_theta", 1_000_000.0),
];

/// Python: `ModelConfig.from_dict(params)` of this family: LLaVA's parse
/// with this file's text defaults. `file` names `config.json` in errors.
pub fn from_map(mut root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
    let mut text = match root.remove("text_config") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            return Err(config_error(
                file,
                format!("text_config is {other}, expected an object"),
            ));
        }
    };
    for (key, value) in TEXT_DEFAULTS {
        if !text.contains_key(key) {
            let value = if value.fract() == 0.0 && key != "rope_theta" {
                Value::from(value as i64)
            } else {
                Value::from(value)
            };
            text.insert(key.into(), value);
        }
    }
    // Python's dataclass has no such field: `from_dict` drops it.
    text.remove("tie_word_embeddings");
    root.insert("text_config".into(), Value::Object(text));
    if root
        .get("vision_feature_layer")
        .is_some_and(|v| !v.is_i64() && !v.is_u64())
    {
        return Err(config_error(
            file,
            format!(
                "vision_feature_layer is {}; LLaVA-NeXT takes one layer index (usually -2)",
                root["vision_feature_layer"]
            ),
        ));
    }
    ModelConfig::from_map(root, file)
}
