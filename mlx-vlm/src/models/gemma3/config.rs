//! `mlx_vlm/models/gemma3/config.py`: the configuration of Gemma 3
//! checkpoints.
//!
//! `VisionConfig` keeps PaliGemma's tower fields (the tower is shared);
//! the fields Python requires are required here too.
//!
//! Divergences from Python (stricter checks, each an [`Error::Config`](crate::Error::Config)
//! naming the key): sizes must be positive, `sliding_window_pattern` and
//! `sliding_window` too, and the query heads a multiple of the key/value
//! heads (Python fails later in a reshape or a modulo by zero).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::{config_error, OneOrMany};

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

/// Python: `VisionConfig` (the SigLIP tower). `model_type`,
/// `num_hidden_layers`, `hidden_size`, `intermediate_size`,
/// `num_attention_heads` and `patch_size` are required, as in Python.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VisionConfig {
    /// `model_type` (`siglip_vision_model`, `gemma3` or `gemma3_vision`).
    pub model_type: String,
    /// Encoder layers.
    pub num_hidden_layers: i32,
    /// Width of the tower.
    pub hidden_size: i32,
    /// Width of its MLP.
    pub intermediate_size: i32,
    /// Heads.
    pub num_attention_heads: i32,
    /// Side of a patch.
    pub patch_size: i32,
    /// Side of the input image (224).
    #[serde(default = "vision_defaults::image_size")]
    pub image_size: i32,
    /// Input channels (3).
    #[serde(default = "vision_defaults::num_channels")]
    pub num_channels: i32,
    /// LayerNorm epsilon (1e-6).
    #[serde(default = "vision_defaults::layer_norm_eps")]
    pub layer_norm_eps: f32,
}

mod vision_defaults {
    pub fn image_size() -> i32 {
        224
    }
    pub fn num_channels() -> i32 {
        3
    }
    pub fn layer_norm_eps() -> f32 {
        1e-6
    }
}

impl VisionConfig {
    /// The shared SigLIP tower's configuration of these fields.
    pub fn siglip(&self) -> crate::models::paligemma::config::VisionConfig {
        crate::models::paligemma::config::VisionConfig {
            model_type: self.model_type.clone(),
            num_hidden_layers: self.num_hidden_layers,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            patch_size: self.patch_size,
            image_size: self.image_size,
            num_channels: self.num_channels,
            layer_norm_eps: self.layer_norm_eps,
            ..Default::default()
        }
    }
}

/// Python: `ModelConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The language model.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// `model_type` (`gemma3`).
    pub model_type: String,
    /// `vocab_size` (257152).
    pub vocab_size: i32,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// `<image_soft_token>` (262144).
    pub image_token_index: i32,
    /// Image features are divided by its square root (2048: released
    /// configs lack it at the top level, so Python uses the default).
    pub hidden_size: i32,
    /// `<pad>` (0).
    pub pad_token_id: i32,
    /// End-of-sequence tokens (an int or a list in the file).
    pub eos_token_id: Option<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RootFields {
    model_type: Option<String>,
    vocab_size: i32,
    ignore_index: i32,
    image_token_index: i32,
    hidden_size: i32,
    pad_token_id: i32,
    eos_token_id: Option<OneOrMany>,
}

impl Default for RootFields {
    fn default() -> Self {
        RootFields {
            model_type: None,
            vocab_size: 257152,
            ignore_index: -100,
            image_token_index: 262144,
            hidden_size: 2048,
            pad_token_id: 0,
            eos_token_id: None,
        }
    }
}

impl ModelConfig {
    /// Builds the config from the parsed `config.json` object; `file` names
    /// it in errors.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let object = |key: &str| match root.get(key) {
            Some(Value::Object(m)) => Ok(m.clone()),
            _ => Err(config_error(
                file,
                format!("no \"{key}\" object; Gemma 3 keeps its {key} there"),
            )),
        };
        let text_config = TextConfig::from_map(&object("text_config")?, file)?;
        let vision_config: VisionConfig =
            serde_json::from_value(Value::Object(object("vision_config")?))
                .map_err(|e| config_error(file, format!("vision_config: {e}")))?;
        let v = &vision_config;
        for (key, value) in [
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.image_size", v.image_size),
            ("vision_config.num_channels", v.num_channels),
        ] {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        let patches = v.image_size / v.patch_size;
        let side = (f64::from(text_config.mm_tokens_per_image)).sqrt() as i32;
        if v.hidden_size % v.num_attention_heads != 0
            || v.image_size % v.patch_size != 0
            || side <= 0
            || side * side != text_config.mm_tokens_per_image
            || patches % side != 0
        {
            return Err(config_error(
                file,
                format!(
                    "vision_config (hidden_size {}, heads {}, image_size {}, patch_size {}) and \
                     text_config.mm_tokens_per_image {} do not fit: the hidden size must be a \
                     multiple of the heads, the image a whole number of patches, and the \
                     patches per side a multiple of sqrt(mm_tokens_per_image)",
                    v.hidden_size,
                    v.num_attention_heads,
                    v.image_size,
                    v.patch_size,
                    text_config.mm_tokens_per_image
                ),
            ));
        }
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, e.to_string()))?;
        let model_type = fields
            .model_type
            .ok_or_else(|| config_error(file, "missing model_type (expected \"gemma3\")".into()))?;
        Ok(ModelConfig {
            text_config,
            vision_config,
            model_type,
            vocab_size: fields.vocab_size,
            ignore_index: fields.ignore_index,
            image_token_index: fields.image_token_index,
            hidden_size: fields.hidden_size,
            pad_token_id: fields.pad_token_id,
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        })
    }
}
