//! `mlx_vlm/models/idefics3/config.py`: the configuration of Idefics3
//! checkpoints (a SigLIP-style tower, a pixel-shuffle connector, a Llama
//! decoder).
//!
//! The fields Python requires are required here too; the rest have
//! Python's defaults. SmolVLM's `config.py` has other defaults but the same
//! fields, and builds this model ([`crate::models::smolvlm::config`]).
//!
//! Divergences from Python (stricter checks, each an
//! [`Error::Config`](crate::Error::Config) naming the key): sizes must be
//! positive, the heads must divide the widths, the query heads must be a
//! multiple of the key/value heads, the whole patches per side of a tile
//! (`vision_config.image_size / patch_size`, floored as Python floors it)
//! a multiple of `scale_factor` (Python fails later in a reshape).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::{OneOrMany, config_error};

/// Python: `TextConfig`. `model_type`, `hidden_size`, `intermediate_size`,
/// `num_attention_heads`, `rms_norm_eps`, `vocab_size` and
/// `num_key_value_heads` are required, as in Python (the last may be
/// `null`: the query heads).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextConfig {
    /// `model_type` (`llama`).
    pub model_type: String,
    /// Width of the decoder.
    pub hidden_size: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// RMS norm epsilon.
    pub rms_norm_eps: f32,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Key/value heads.
    pub num_key_value_heads: i32,
    /// RoPE base (1e6).
    pub rope_theta: f32,
    /// Decoder layers (32).
    pub num_hidden_layers: i32,
    /// Traditional (interleaved) RoPE.
    pub rope_traditional: bool,
    /// `max_position_embeddings` (4096).
    pub max_position_embeddings: i32,
    /// `tie_word_embeddings` (false; Python keeps the output layer either
    /// way).
    pub tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct RawText {
    model_type: String,
    hidden_size: i32,
    intermediate_size: i32,
    num_attention_heads: i32,
    rms_norm_eps: f32,
    vocab_size: i32,
    num_key_value_heads: Option<i32>,
    #[serde(default = "defaults::rope_theta")]
    rope_theta: f32,
    #[serde(default = "defaults::num_hidden_layers")]
    num_hidden_layers: i32,
    #[serde(default)]
    rope_traditional: bool,
    #[serde(default = "defaults::max_position_embeddings")]
    max_position_embeddings: i32,
    #[serde(default)]
    tie_word_embeddings: bool,
}

mod defaults {
    pub fn rope_theta() -> f32 {
        1_000_000.0
    }
    pub fn num_hidden_layers() -> i32 {
        32
    }
    pub fn max_position_embeddings() -> i32 {
        4096
    }
    pub fn vision_num_hidden_layers() -> i32 {
        12
    }
    pub fn vision_intermediate_size() -> i32 {
        3072
    }
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

/// Python: `VisionConfig`. `model_type`, `hidden_size`,
/// `num_attention_heads` and `patch_size` are required, as in Python.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VisionConfig {
    /// `model_type` (`idefics3`, `idefics3_vision`, `smolvlm_vision` or
    /// `siglip_vision_model`).
    pub model_type: String,
    /// Width of the tower.
    pub hidden_size: i32,
    /// Heads.
    pub num_attention_heads: i32,
    /// Side of a patch.
    pub patch_size: i32,
    /// Encoder layers (12).
    #[serde(default = "defaults::vision_num_hidden_layers")]
    pub num_hidden_layers: i32,
    /// Width of its MLP (3072).
    #[serde(default = "defaults::vision_intermediate_size")]
    pub intermediate_size: i32,
    /// Side of a tile (224).
    #[serde(default = "defaults::image_size")]
    pub image_size: i32,
    /// Input channels (3).
    #[serde(default = "defaults::num_channels")]
    pub num_channels: i32,
    /// LayerNorm epsilon (1e-6).
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f32,
}

impl VisionConfig {
    /// The shared SigLIP encoder's configuration of these fields.
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
    /// `model_type` (`idefics3`, or `smolvlm` for SmolVLM's config).
    pub model_type: String,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// `vocab_size` (128259).
    pub vocab_size: i32,
    /// The connector's pixel shuffle factor (2).
    pub scale_factor: i32,
    /// `image_token_id` (49153).
    pub image_token_id: i32,
    /// The `<image>` token (Python: `image_token_index`, defaulting to
    /// `image_token_id`).
    pub image_token_index: i32,
    /// End-of-sequence tokens (an int or a list in the file).
    pub eos_token_id: Option<Vec<i32>>,
}

/// The top-level fields, with their defaults (Idefics3's or SmolVLM's).
#[derive(Deserialize)]
pub(crate) struct RootFields {
    pub model_type: Option<String>,
    pub ignore_index: Option<i32>,
    pub vocab_size: Option<i32>,
    pub scale_factor: Option<i32>,
    pub image_token_id: Option<i32>,
    pub image_token_index: Option<i32>,
    pub eos_token_id: Option<OneOrMany>,
}

impl TextConfig {
    /// Reads `text_config`; `file` names the configuration in errors.
    pub fn from_map(text: &Map<String, Value>, file: &str) -> Result<TextConfig> {
        let raw: RawText = serde_json::from_value(Value::Object(text.clone()))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        Ok(TextConfig {
            model_type: raw.model_type,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_attention_heads: raw.num_attention_heads,
            rms_norm_eps: raw.rms_norm_eps,
            vocab_size: raw.vocab_size,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            rope_theta: raw.rope_theta,
            num_hidden_layers: raw.num_hidden_layers,
            rope_traditional: raw.rope_traditional,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
        })
    }

    /// Features per head (Python: `hidden_size // num_attention_heads`; a
    /// `head_dim` in the file is ignored, as in Python).
    pub fn head_dim(&self) -> i32 {
        self.hidden_size / self.num_attention_heads.max(1)
    }
}

impl ModelConfig {
    /// Builds the config from the parsed `config.json` object; `file` names
    /// it in errors.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let text_config = TextConfig::from_map(&object(&root, "text_config", file)?, file)?;
        let vision_config: VisionConfig =
            serde_json::from_value(Value::Object(object(&root, "vision_config", file)?))
                .map_err(|e| config_error(file, format!("vision_config: {e}")))?;
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, e.to_string()))?;
        let model_type = fields.model_type.clone().ok_or_else(|| {
            config_error(file, "missing model_type (expected \"idefics3\")".into())
        })?;
        let config = ModelConfig::assemble(text_config, vision_config, model_type, fields, 128259);
        config.validate(file)?;
        Ok(config)
    }

    /// The config of parsed parts, with `vocab_size` defaulting to
    /// `default_vocab` (Idefics3's 128259, SmolVLM's 49152).
    pub(crate) fn assemble(
        text_config: TextConfig,
        vision_config: VisionConfig,
        model_type: String,
        fields: RootFields,
        default_vocab: i32,
    ) -> ModelConfig {
        let image_token_id = fields.image_token_id.unwrap_or(49153);
        ModelConfig {
            text_config,
            vision_config,
            model_type,
            ignore_index: fields.ignore_index.unwrap_or(-100),
            vocab_size: fields.vocab_size.unwrap_or(default_vocab),
            scale_factor: fields.scale_factor.unwrap_or(2),
            image_token_id,
            image_token_index: fields.image_token_index.unwrap_or(image_token_id),
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        }
    }

    /// Checks the sizes listed at the top of this file.
    pub(crate) fn validate(&self, file: &str) -> Result<()> {
        let (t, v) = (&self.text_config, &self.vision_config);
        for (key, value) in [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.num_key_value_heads", t.num_key_value_heads),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.vocab_size", t.vocab_size),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.image_size", v.image_size),
            ("vision_config.num_channels", v.num_channels),
            ("scale_factor", self.scale_factor),
        ] {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        if t.hidden_size % t.num_attention_heads != 0
            || t.num_attention_heads % t.num_key_value_heads != 0
        {
            return Err(config_error(
                file,
                format!(
                    "text_config: hidden_size {} must be a multiple of num_attention_heads {}, \
                     and those a multiple of num_key_value_heads {}",
                    t.hidden_size, t.num_attention_heads, t.num_key_value_heads
                ),
            ));
        }
        // Whole patches per side, floored as the patch convolution and
        // Python's mask arithmetic floor them (SmolVLM's SigLIP has 384
        // pixels in patches of 14: 27 a side, the last 6 pixels unused).
        let per_side = v.image_size / v.patch_size;
        if v.hidden_size % v.num_attention_heads != 0
            || per_side < 1
            || per_side % self.scale_factor != 0
        {
            return Err(config_error(
                file,
                format!(
                    "vision_config (hidden_size {}, heads {}, image_size {}, patch_size {}) and \
                     scale_factor {} do not fit: the hidden size must be a multiple of the \
                     heads, and the whole patches per side (image_size / patch_size, floored) \
                     at least one and a multiple of scale_factor",
                    v.hidden_size, v.num_attention_heads, v.image_size, v.patch_size,
                    self.scale_factor
                ),
            ));
        }
        Ok(())
    }

    /// Image tokens per tile: `(image_size / patch_size)² / scale_factor²`.
    pub fn image_seq_len(&self) -> i32 {
        let v = &self.vision_config;
        let per_side = v.image_size / v.patch_size.max(1);
        per_side * per_side / (self.scale_factor * self.scale_factor).max(1)
    }
}

/// The object `key` of `root`, or an error naming it.
pub(crate) fn object(root: &Map<String, Value>, key: &str, file: &str) -> Result<Map<String, Value>> {
    match root.get(key) {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(config_error(
            file,
            format!("no \"{key}\" object; Idefics3 and SmolVLM keep their {key} there"),
        )),
    }
}
