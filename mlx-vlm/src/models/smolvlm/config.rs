//! `mlx_vlm/models/smolvlm/config.py`: SmolVLM's configuration: Idefics3's
//! fields with defaults for every one (SmolVLM2's sizes), resolved as
//! Python's `__post_init__` does, then handed to the Idefics3 model as its
//! [`crate::models::idefics3::ModelConfig`] (the model reads the same
//! fields; `text_config.head_dim` only sets the default head count, as in
//! Python).
//!
//! Divergences from Python: those of Idefics3's config (the size checks).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::config_error;
use crate::models::idefics3::config::{
    ModelConfig as Idefics3Config, RootFields, TextConfig as Idefics3Text,
    VisionConfig as Idefics3Vision,
};

/// Python: `TextConfig`, every field optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    /// `model_type` (`smolvlm`).
    pub model_type: String,
    /// Width of the decoder (4096).
    pub hidden_size: i32,
    /// Width of the MLP (11008).
    pub intermediate_size: i32,
    /// Query heads (`hidden_size / head_dim`, else 32).
    pub num_attention_heads: Option<i32>,
    /// RMS norm epsilon (1e-5).
    pub rms_norm_eps: f32,
    /// Vocabulary size (49152).
    pub vocab_size: i32,
    /// Key/value heads (the query heads).
    pub num_key_value_heads: Option<i32>,
    /// Features per head, for the default head count only.
    pub head_dim: Option<i32>,
    /// RoPE base (1e6).
    pub rope_theta: f32,
    /// Decoder layers (32).
    pub num_hidden_layers: i32,
    /// Traditional RoPE.
    pub rope_traditional: bool,
    /// `max_position_embeddings` (4096).
    pub max_position_embeddings: i32,
    /// `tie_word_embeddings` (false).
    pub tie_word_embeddings: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            model_type: "smolvlm".into(),
            hidden_size: 4096,
            intermediate_size: 11008,
            num_attention_heads: None,
            rms_norm_eps: 1e-5,
            vocab_size: 49152,
            num_key_value_heads: None,
            head_dim: None,
            rope_theta: 1_000_000.0,
            num_hidden_layers: 32,
            rope_traditional: false,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
        }
    }
}

impl TextConfig {
    /// Python's `__post_init__`: the head counts resolved.
    pub fn resolve(&self) -> Idefics3Text {
        let heads = self.num_attention_heads.unwrap_or(match self.head_dim {
            Some(d) if d > 0 => self.hidden_size / d,
            _ => 32,
        });
        Idefics3Text {
            model_type: self.model_type.clone(),
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: heads,
            rms_norm_eps: self.rms_norm_eps,
            vocab_size: self.vocab_size,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(heads),
            rope_theta: self.rope_theta,
            num_hidden_layers: self.num_hidden_layers,
            rope_traditional: self.rope_traditional,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
        }
    }
}

/// Python: `VisionConfig`, every field optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type` (`siglip_vision_model`).
    pub model_type: String,
    /// Width of the tower (1152).
    pub hidden_size: Option<i32>,
    /// Heads (`hidden_size / 64` when a multiple, else 16).
    pub num_attention_heads: Option<i32>,
    /// Side of a patch (14).
    pub patch_size: i32,
    /// Encoder layers (12 up to width 768, else 27).
    pub num_hidden_layers: Option<i32>,
    /// Width of its MLP (3072 at 768, 4304 at 1152, else 4 x width).
    pub intermediate_size: Option<i32>,
    /// Side of a tile (384).
    pub image_size: i32,
    /// Input channels (3).
    pub num_channels: i32,
    /// LayerNorm epsilon (1e-6).
    pub layer_norm_eps: f32,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "siglip_vision_model".into(),
            hidden_size: None,
            num_attention_heads: None,
            patch_size: 14,
            num_hidden_layers: None,
            intermediate_size: None,
            image_size: 384,
            num_channels: 3,
            layer_norm_eps: 1e-6,
        }
    }
}

impl VisionConfig {
    /// Python's `__post_init__`: the sizes resolved.
    pub fn resolve(&self) -> Idefics3Vision {
        let hidden = self.hidden_size.unwrap_or(1152);
        let heads = self
            .num_attention_heads
            .unwrap_or(if hidden % 64 == 0 { hidden / 64 } else { 16 });
        let layers = self
            .num_hidden_layers
            .unwrap_or(if hidden <= 768 { 12 } else { 27 });
        let intermediate = self.intermediate_size.unwrap_or(match hidden {
            768 => 3072,
            1152 => 4304,
            _ => hidden * 4,
        });
        Idefics3Vision {
            model_type: self.model_type.clone(),
            hidden_size: hidden,
            num_attention_heads: heads,
            patch_size: self.patch_size,
            num_hidden_layers: layers,
            intermediate_size: intermediate,
            image_size: self.image_size,
            num_channels: self.num_channels,
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

/// Python: `ModelConfig`: built from the parsed `config.json` object into
/// the Idefics3 model's configuration (`file` names it in errors).
pub fn from_map(root: Map<String, Value>, file: &str) -> Result<Idefics3Config> {
    let part = |key: &str| -> Result<Value> {
        match root.get(key) {
            None | Some(Value::Null) => Ok(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            Some(other) => Err(config_error(
                file,
                format!("{key} must be an object, got {other}"),
            )),
        }
    };
    let text: TextConfig = serde_json::from_value(part("text_config")?)
        .map_err(|e| config_error(file, format!("text_config: {e}")))?;
    let vision: VisionConfig = serde_json::from_value(part("vision_config")?)
        .map_err(|e| config_error(file, format!("vision_config: {e}")))?;
    let fields: RootFields = serde_json::from_value(Value::Object(root))
        .map_err(|e| config_error(file, e.to_string()))?;
    let model_type = fields.model_type.clone().unwrap_or_else(|| "smolvlm".into());
    let config = Idefics3Config::assemble(text.resolve(), vision.resolve(), model_type, fields, 49152);
    config.validate(file)?;
    Ok(config)
}
