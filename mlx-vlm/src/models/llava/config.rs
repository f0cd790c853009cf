//! `mlx_vlm/models/llava/config.py`: the configuration of LLaVA
//! checkpoints (`llava-hf/llava-1.5-*`, `mlx-community/llava-*`).
//!
//! Divergences from Python (stricter checks, each an
//! [`Error::Config`](crate::Error::Config) naming the file and key): sizes
//! must be positive, `text_config.hidden_size` a multiple of its heads and
//! the heads of the key/value heads, `vision_config.hidden_size` of its
//! heads, `image_size` of `patch_size` (Python fails later in a reshape);
//! `vision_feature_select_strategy` must be `default` or `full` and every
//! `vision_feature_layer` inside the tower's hidden states (Python fails
//! with an `IndexError` or keeps the CLS token silently for another
//! strategy).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::{OneOrMany, config_error};

/// Python: `TextConfig` (the Llama decoder), with Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TextConfig {
    /// `model_type` (`llama` or `qwen2` for LLaVA; `llama` or `mistral` for
    /// LLaVA-NeXT).
    pub model_type: String,
    /// Width of the decoder.
    pub hidden_size: i32,
    /// Decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// RMS norm epsilon.
    pub rms_norm_eps: f32,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Key/value heads (`null`: as many as the query heads).
    pub num_key_value_heads: Option<i32>,
    /// RoPE base.
    pub rope_theta: f32,
    /// Traditional (interleaved) RoPE.
    pub rope_traditional: bool,
    /// Python: `rope_scaling` (`{"type": "linear", "factor": f}` only).
    pub rope_scaling: Option<Map<String, Value>>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: i32,
    /// The output layer is the embedding (LLaVA only; LLaVA-NeXT's
    /// config has no such field and always has `lm_head`).
    pub tie_word_embeddings: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            model_type: "llama".into(),
            hidden_size: 4096,
            num_hidden_layers: 32,
            intermediate_size: 11008,
            num_attention_heads: 32,
            rms_norm_eps: 1e-6,
            vocab_size: 32000,
            num_key_value_heads: None,
            rope_theta: 10000.0,
            rope_traditional: false,
            rope_scaling: None,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
        }
    }
}

impl TextConfig {
    /// Python: `TextConfig.from_dict` then `__post_init__`: unset key/value
    /// heads are the query heads; a `rope_scaling` must hold `factor` and
    /// `type`, and `type` must be `linear`.
    pub fn from_map(map: &Map<String, Value>, file: &str) -> Result<Self> {
        let mut config: TextConfig = serde_json::from_value(Value::Object(map.clone()))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        config
            .num_key_value_heads
            .get_or_insert(config.num_attention_heads);
        if let Some(scaling) = &config.rope_scaling {
            if !(scaling.contains_key("factor") && scaling.contains_key("type")) {
                return Err(config_error(
                    file,
                    "text_config.rope_scaling must contain keys {'factor', 'type'}".into(),
                ));
            }
            if scaling.get("type").and_then(Value::as_str) != Some("linear") {
                return Err(config_error(
                    file,
                    "text_config.rope_scaling 'type' currently only supports 'linear'".into(),
                ));
            }
            if !scaling.get("factor").and_then(Value::as_f64).is_some_and(|f| f > 0.0) {
                return Err(config_error(
                    file,
                    format!(
                        "text_config.rope_scaling.factor is {:?}; give a positive number",
                        scaling.get("factor")
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// Key/value heads after `__post_init__`.
    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Python's `1 / rope_scaling["factor"]` for linear scaling, else 1.
    pub fn rope_scale(&self) -> f32 {
        self.rope_scaling
            .as_ref()
            .and_then(|s| s.get("factor"))
            .and_then(Value::as_f64)
            .map_or(1.0, |f| (1.0 / f) as f32)
    }
}

/// Python: `VisionConfig` (the CLIP tower), with Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type` (`clip_vision_model`; LLaVA also takes
    /// `siglip_vision_model`).
    pub model_type: String,
    /// Encoder layers.
    pub num_hidden_layers: i32,
    /// Width of the tower.
    pub hidden_size: i32,
    /// Width of its MLP.
    pub intermediate_size: i32,
    /// Heads.
    pub num_attention_heads: i32,
    /// Side of the input image.
    pub image_size: i32,
    /// Side of a patch, in pixels.
    pub patch_size: i32,
    /// Python: `projection_dim` (unused by the tower).
    pub projection_dim: i32,
    /// Python: `vocab_size` (unused by the tower).
    pub vocab_size: i32,
    /// Input channels.
    pub num_channels: i32,
    /// LayerNorm epsilon of the encoder layers.
    pub layer_norm_eps: f32,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "clip_vision_model".into(),
            num_hidden_layers: 24,
            hidden_size: 1024,
            intermediate_size: 4096,
            num_attention_heads: 16,
            image_size: 336,
            patch_size: 14,
            projection_dim: 768,
            vocab_size: 32000,
            num_channels: 3,
            layer_norm_eps: 1e-5,
        }
    }
}

/// Python: `ModelConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The decoder's configuration.
    pub text_config: TextConfig,
    /// The tower's configuration.
    pub vision_config: VisionConfig,
    /// `llava` (or `llava_next`).
    pub model_type: String,
    /// Python: `ignore_index` (training only).
    pub ignore_index: i32,
    /// The id of `<image>`.
    pub image_token_index: i32,
    /// `default` (drop the CLS token) or `full`.
    pub vision_feature_select_strategy: String,
    /// The hidden state(s) of the tower taken as image features (negative:
    /// from the end); several are concatenated along the features.
    pub vision_feature_layer: Vec<i32>,
    /// Whether `vision_feature_layer` was one int (Python's `isinstance(...,
    /// int)` branch) rather than a list.
    pub vision_feature_layer_is_int: bool,
    /// Python: `vocab_size`.
    pub vocab_size: i32,
    /// End-of-sequence ids.
    pub eos_token_id: Option<Vec<i32>>,
}

/// `config.json`'s root fields.
#[derive(Deserialize)]
#[serde(default)]
struct RootFields {
    model_type: String,
    ignore_index: i32,
    image_token_index: i32,
    vision_feature_select_strategy: String,
    vision_feature_layer: OneOrMany,
    vocab_size: i32,
    eos_token_id: Option<OneOrMany>,
}

impl Default for RootFields {
    fn default() -> Self {
        RootFields {
            model_type: "llava".into(),
            ignore_index: -100,
            image_token_index: 32000,
            vision_feature_select_strategy: "default".into(),
            vision_feature_layer: OneOrMany::One(-2),
            vocab_size: 32000,
            eos_token_id: None,
        }
    }
}

impl ModelConfig {
    /// Python: `ModelConfig.from_dict(params)` with `text_config` and
    /// `vision_config` made by their own `from_dict`, as
    /// `update_module_configs` does. `file` names `config.json` in errors.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let object = |key: &str| match root.get(key) {
            Some(Value::Object(m)) => Ok(m.clone()),
            None | Some(Value::Null) => Ok(Map::new()),
            Some(other) => Err(config_error(
                file,
                format!("{key} is {other}, expected an object"),
            )),
        };
        let text_config = TextConfig::from_map(&object("text_config")?, file)?;
        let vision_config: VisionConfig = serde_json::from_value(Value::Object(object(
            "vision_config",
        )?))
        .map_err(|e| config_error(file, format!("vision_config: {e}")))?;
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, e.to_string()))?;
        let vision_feature_layer_is_int = matches!(fields.vision_feature_layer, OneOrMany::One(_));
        let config = ModelConfig {
            text_config,
            vision_config,
            model_type: fields.model_type,
            ignore_index: fields.ignore_index,
            image_token_index: fields.image_token_index,
            vision_feature_select_strategy: fields.vision_feature_select_strategy,
            vision_feature_layer: fields.vision_feature_layer.into_vec(),
            vision_feature_layer_is_int,
            vocab_size: fields.vocab_size,
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        };
        config.check(file)?;
        Ok(config)
    }

    /// The index into the tower's `num_hidden_layers + 1` hidden states of
    /// each `vision_feature_layer` (Python's list indexing).
    pub fn feature_layer_indices(&self) -> Vec<usize> {
        let n = self.vision_config.num_hidden_layers + 1;
        self.vision_feature_layer
            .iter()
            .map(|&l| if l < 0 { l + n } else { l } as usize)
            .collect()
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
        let multiple = |key: &str, a: i32, what: &str, b: i32| {
            if a % b != 0 {
                Err(config_error(
                    file,
                    format!("{key} {a} is not a multiple of {what} {b}"),
                ))
            } else {
                Ok(())
            }
        };
        multiple(
            "text_config.hidden_size",
            t.hidden_size,
            "num_attention_heads",
            t.num_attention_heads,
        )?;
        multiple(
            "text_config.num_attention_heads",
            t.num_attention_heads,
            "num_key_value_heads",
            t.kv_heads(),
        )?;
        multiple(
            "vision_config.hidden_size",
            v.hidden_size,
            "num_attention_heads",
            v.num_attention_heads,
        )?;
        multiple(
            "vision_config.image_size",
            v.image_size,
            "patch_size",
            v.patch_size,
        )?;
        if !matches!(self.vision_feature_select_strategy.as_str(), "default" | "full") {
            return Err(config_error(
                file,
                format!(
                    "vision_feature_select_strategy {:?} is not supported; use \"default\" (drop \
                     the CLS token) or \"full\"",
                    self.vision_feature_select_strategy
                ),
            ));
        }
        let n = v.num_hidden_layers + 1;
        if self.vision_feature_layer.is_empty()
            || self
                .vision_feature_layer
                .iter()
                .any(|&l| l >= n || l < -n)
        {
            return Err(config_error(
                file,
                format!(
                    "vision_feature_layer {:?} is outside the tower's {n} hidden states \
                     (embeddings and {} layers); use an index in -{n}..{n} (usually -2)",
                    self.vision_feature_layer, v.num_hidden_layers
                ),
            ));
        }
        Ok(())
    }
}
