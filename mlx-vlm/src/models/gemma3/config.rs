//! `mlx_vlm/models/gemma3/config.py`: the configuration of Gemma 3
//! checkpoints.
//!
//! Partial port: [`TextConfig`] (the language model). `VisionConfig` and
//! `ModelConfig` come with the vision tower and the model.
//!
//! Divergences from Python (stricter checks, each an [`Error::Config`]
//! naming the key): sizes must be positive, `sliding_window_pattern` and
//! `sliding_window` too, and the query heads a multiple of the key/value
//! heads (Python fails later in a reshape or a modulo by zero).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

fn config_error(file: &str, message: String) -> Error {
    Error::Config {
        file: file.to_string(),
        message,
    }
}

/// Python: `TextConfig`. `model_type`, `hidden_size`, `num_hidden_layers`
/// and `intermediate_size` are required, as in Python; the rest have
/// Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    /// `model_type` (`gemma3_text`).
    pub model_type: String,
    /// Width of the decoder.
    pub hidden_size: i32,
    /// Decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Query heads (8).
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: i32,
    /// Features per head (256).
    #[serde(default = "defaults::head_dim")]
    pub head_dim: i32,
    /// RMS norm epsilon (1e-6).
    #[serde(default = "defaults::rms_norm_eps")]
    pub rms_norm_eps: f32,
    /// Vocabulary size (262208).
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i32,
    /// Key/value heads (4).
    #[serde(default = "defaults::num_key_value_heads")]
    pub num_key_value_heads: i32,
    /// RoPE base of the global layers (1e6).
    #[serde(default = "defaults::rope_global_base_freq")]
    pub rope_global_base_freq: f32,
    /// RoPE base of the sliding-window layers (1e4).
    #[serde(default = "defaults::rope_local_base_freq")]
    pub rope_local_base_freq: f32,
    /// Traditional (interleaved) RoPE.
    #[serde(default)]
    pub rope_traditional: bool,
    /// The attention scale is `query_pre_attn_scalar ** -0.5` (256).
    #[serde(default = "defaults::query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f32,
    /// Keys a sliding-window layer attends to (1024).
    #[serde(default = "defaults::sliding_window")]
    pub sliding_window: i32,
    /// The global layers' RoPE scaling (`{"rope_type": "linear",
    /// "factor": 8.0}` in the larger models).
    #[serde(default)]
    pub rope_scaling: Option<Map<String, Value>>,
    /// Image tokens per image (256).
    #[serde(default = "defaults::mm_tokens_per_image")]
    pub mm_tokens_per_image: i32,
    /// Every `sliding_window_pattern`-th layer is global (6).
    #[serde(default = "defaults::sliding_window_pattern")]
    pub sliding_window_pattern: i32,
    /// `max_position_embeddings` (4096).
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: i32,
}

mod defaults {
    pub fn num_attention_heads() -> i32 {
        8
    }
    pub fn head_dim() -> i32 {
        256
    }
    pub fn rms_norm_eps() -> f32 {
        1.0e-6
    }
    pub fn vocab_size() -> i32 {
        262208
    }
    pub fn num_key_value_heads() -> i32 {
        4
    }
    pub fn rope_global_base_freq() -> f32 {
        1_000_000.0
    }
    pub fn rope_local_base_freq() -> f32 {
        10_000.0
    }
    pub fn query_pre_attn_scalar() -> f32 {
        256.0
    }
    pub fn sliding_window() -> i32 {
        1024
    }
    pub fn mm_tokens_per_image() -> i32 {
        256
    }
    pub fn sliding_window_pattern() -> i32 {
        6
    }
    pub fn max_position_embeddings() -> i32 {
        4096
    }
}

impl TextConfig {
    /// Reads `text_config`; `file` names the configuration in errors.
    pub fn from_map(text: &Map<String, Value>, file: &str) -> Result<TextConfig> {
        let config: TextConfig = serde_json::from_value(Value::Object(text.clone()))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        for (key, value) in [
            ("text_config.hidden_size", config.hidden_size),
            ("text_config.num_hidden_layers", config.num_hidden_layers),
            ("text_config.intermediate_size", config.intermediate_size),
            (
                "text_config.num_attention_heads",
                config.num_attention_heads,
            ),
            (
                "text_config.num_key_value_heads",
                config.num_key_value_heads,
            ),
            ("text_config.head_dim", config.head_dim),
            ("text_config.vocab_size", config.vocab_size),
            ("text_config.sliding_window", config.sliding_window),
            (
                "text_config.sliding_window_pattern",
                config.sliding_window_pattern,
            ),
        ] {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        if config.num_attention_heads % config.num_key_value_heads != 0 {
            return Err(config_error(
                file,
                format!(
                    "text_config.num_attention_heads {} is not a multiple of \
                     num_key_value_heads {}",
                    config.num_attention_heads, config.num_key_value_heads
                ),
            ));
        }
        Ok(config)
    }

    /// Whether decoder layer `i` attends globally (Python: `i %
    /// sliding_window_pattern == sliding_window_pattern - 1`).
    pub fn is_global_layer(&self, i: i32) -> bool {
        i % self.sliding_window_pattern == self.sliding_window_pattern - 1
    }
}
