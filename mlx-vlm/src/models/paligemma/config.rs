//! `mlx_vlm/models/paligemma/config.py`: the configuration of PaliGemma
//! checkpoints.
//!
//! Divergences from Python (stricter checks, each an [`Error::Config`](crate::Error::Config)
//! naming the file and key): sizes must be positive and
//! `vision_config.hidden_size` a multiple of its heads (Python fails later
//! in a reshape); `image_size` must be a multiple of `patch_size`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::{config_error, OneOrMany};

/// Python: `TextConfig` (the Gemma decoder), with Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TextConfig {
    /// `model_type` (`gemma`; `gemma2` gets alternating sliding layers).
    pub model_type: String,
    /// Width of the decoder.
    pub hidden_size: i32,
    /// Decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// Key/value heads (`null`: as many as the query heads).
    pub num_key_value_heads: Option<i32>,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Features per head.
    pub head_dim: i32,
    /// RMS norm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// Traditional (interleaved) RoPE.
    pub rope_traditional: bool,
    /// Soft cap of the attention logits (Gemma 2).
    pub attn_logit_softcapping: Option<f32>,
    /// Soft cap of the output logits (Gemma 2).
    pub final_logit_softcapping: Option<f32>,
    /// The attention scale's denominator (Gemma 2; else `head_dim`).
    pub query_pre_attn_scalar: Option<f32>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: i32,
    /// The MLP's activation (`gelu_pytorch_tanh`).
    pub hidden_activation: String,
    /// Bias on the attention projections.
    pub attention_bias: bool,
    /// Python's `attention_dropout` (unused at inference).
    pub attention_dropout: f32,
    /// The sliding window of `sliding_attention` layers.
    pub sliding_window: i32,
    /// Per layer: `sliding_attention` or `full_attention` (Gemma 2).
    pub layer_types: Option<Vec<String>>,
    /// Image tokens per image (`(image_size / patch_size)²`).
    pub num_image_tokens: Option<i32>,
    /// Prefix-LM attention: the prompt attends both ways (PaliGemma's
    /// default when unset).
    pub use_bidirectional_attention: Option<bool>,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            model_type: "gemma".into(),
            hidden_size: 2048,
            num_hidden_layers: 18,
            intermediate_size: 8192,
            num_attention_heads: 16,
            num_key_value_heads: Some(16),
            vocab_size: 256000,
            head_dim: 256,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_traditional: false,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            query_pre_attn_scalar: None,
            max_position_embeddings: 4096,
            hidden_activation: "gelu_pytorch_tanh".into(),
            attention_bias: false,
            attention_dropout: 0.0,
            sliding_window: 4096,
            layer_types: None,
            num_image_tokens: None,
            use_bidirectional_attention: None,
        }
    }
}

impl TextConfig {
    /// Python's `__post_init__`: unset key/value heads are the query
    /// heads; Gemma 2 alternates sliding and full layers when
    /// `layer_types` is unset.
    fn post_init(mut self) -> Self {
        self.num_key_value_heads
            .get_or_insert(self.num_attention_heads);
        if self.layer_types.is_none() && self.model_type == "gemma2" {
            self.layer_types = Some(
                (0..self.num_hidden_layers)
                    .map(|i| {
                        if (i + 1) % 2 != 0 {
                            "sliding_attention".into()
                        } else {
                            "full_attention".into()
                        }
                    })
                    .collect(),
            );
        }
        self
    }

    /// Key/value heads after `__post_init__`.
    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
}

/// Python: `VisionConfig` (the SigLIP tower), with Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type` (`siglip_vision_model`, the only one the tower takes).
    pub model_type: String,
    /// Encoder layers.
    pub num_hidden_layers: i32,
    /// Width of the tower.
    pub hidden_size: i32,
    /// Width of its MLP.
    pub intermediate_size: i32,
    /// Heads.
    pub num_attention_heads: i32,
    /// Side of a patch, in pixels.
    pub patch_size: i32,
    /// Width of the projected image features (the text model's width).
    pub projection_dim: i32,
    /// Side of the (square) input image.
    pub image_size: i32,
    /// Input channels.
    pub num_channels: i32,
    /// LayerNorm epsilon of the encoder layers.
    pub layer_norm_eps: f32,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "siglip_vision_model".into(),
            num_hidden_layers: 27,
            hidden_size: 1152,
            intermediate_size: 4304,
            num_attention_heads: 16,
            patch_size: 14,
            projection_dim: 2048,
            image_size: 224,
            num_channels: 3,
            layer_norm_eps: 1e-6,
        }
    }
}

/// Python: `ModelConfig`: the whole checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The Gemma decoder.
    pub text_config: TextConfig,
    /// The SigLIP tower.
    pub vision_config: VisionConfig,
    /// `model_type` (`paligemma`).
    pub model_type: String,
    /// `vocab_size` (257152).
    pub vocab_size: i32,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// The `<image>` token (257152).
    pub image_token_index: i32,
    /// The width image features are divided by the square root of
    /// (2048).
    pub hidden_size: i32,
    /// `<pad>` (0).
    pub pad_token_id: i32,
    /// End-of-sequence tokens (an int or a list in the file).
    pub eos_token_id: Option<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RootFields {
    model_type: String,
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
            model_type: "paligemma".into(),
            vocab_size: 257152,
            ignore_index: -100,
            image_token_index: 257152,
            hidden_size: 2048,
            pad_token_id: 0,
            eos_token_id: None,
        }
    }
}

/// The keys of `fields` (a default-serialised config) as a set.
fn field_names(fields: &Value) -> Vec<String> {
    fields
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

impl ModelConfig {
    /// Python: `ModelConfig.from_dict(params)`: root keys that name a
    /// text or vision field fill those sub-configs when they lack them;
    /// `use_bidirectional_attention` defaults to true; `hidden_act` stands
    /// for `hidden_activation`; a root `projection_dim` fills the vision
    /// config's; `num_image_tokens` comes from the vision sizes. `file`
    /// names `config.json` in errors.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let object = |key: &str| match root.get(key) {
            Some(Value::Object(m)) => Ok(m.clone()),
            None | Some(Value::Null) => Ok(Map::new()),
            Some(other) => Err(config_error(
                file,
                format!("{key} is {other}, expected an object"),
            )),
        };
        let mut text = object("text_config")?;
        let mut vision = object("vision_config")?;
        let text_fields =
            field_names(&serde_json::to_value(TextConfig::default()).unwrap_or_default());
        let vision_fields =
            field_names(&serde_json::to_value(VisionConfig::default()).unwrap_or_default());
        for (key, value) in &root {
            if text_fields.contains(key) && !text.contains_key(key) {
                text.insert(key.clone(), value.clone());
            }
            if vision_fields.contains(key) && !vision.contains_key(key) {
                vision.insert(key.clone(), value.clone());
            }
        }
        if matches!(
            text.get("use_bidirectional_attention"),
            None | Some(Value::Null)
        ) {
            text.insert("use_bidirectional_attention".into(), Value::Bool(true));
        }
        if !text.contains_key("hidden_activation")
            && let Some(act) = text.get("hidden_act").cloned()
        {
            text.insert("hidden_activation".into(), act);
        }
        if let Some(dim) = root.get("projection_dim")
            && !vision.contains_key("projection_dim")
        {
            vision.insert("projection_dim".into(), dim.clone());
        }
        let int = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_i64);
        if let (Some(image), Some(patch)) = (int(&vision, "image_size"), int(&vision, "patch_size"))
            && patch > 0
            && !text.contains_key("num_image_tokens")
        {
            text.insert(
                "num_image_tokens".into(),
                Value::from((image / patch).pow(2)),
            );
        }
        let text_config: TextConfig = serde_json::from_value(Value::Object(text))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        let text_config = text_config.post_init();
        let vision_config: VisionConfig = serde_json::from_value(Value::Object(vision))
            .map_err(|e| config_error(file, format!("vision_config: {e}")))?;
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, e.to_string()))?;
        let config = ModelConfig {
            text_config,
            vision_config,
            model_type: fields.model_type,
            vocab_size: fields.vocab_size,
            ignore_index: fields.ignore_index,
            image_token_index: fields.image_token_index,
            hidden_size: fields.hidden_size,
            pad_token_id: fields.pad_token_id,
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        };
        config.check(file)?;
        Ok(config)
    }

    /// The checks listed at the top of this file.
    fn check(&self, file: &str) -> Result<()> {
        let (t, v) = (&self.text_config, &self.vision_config);
        for (key, value) in [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.num_key_value_heads", t.kv_heads()),
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.head_dim", t.head_dim),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.image_size", v.image_size),
            ("vision_config.projection_dim", v.projection_dim),
            ("vision_config.num_channels", v.num_channels),
        ] {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        if v.hidden_size % v.num_attention_heads != 0 {
            return Err(config_error(
                file,
                format!(
                    "vision_config.hidden_size {} is not a multiple of num_attention_heads {}",
                    v.hidden_size, v.num_attention_heads
                ),
            ));
        }
        if v.image_size % v.patch_size != 0 {
            return Err(config_error(
                file,
                format!(
                    "vision_config.image_size {} is not a multiple of patch_size {}",
                    v.image_size, v.patch_size
                ),
            ));
        }
        if t.num_attention_heads % t.kv_heads() != 0 {
            return Err(config_error(
                file,
                format!(
                    "text_config.num_attention_heads {} is not a multiple of \
                     num_key_value_heads {}",
                    t.num_attention_heads,
                    t.kv_heads()
                ),
            ));
        }
        Ok(())
    }
}
