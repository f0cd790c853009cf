//! `mlx_vlm/models/qwen3_vl/config.py`: the model's configuration.
//!
//! As in Python, the text model's parameters are read from `text_config`
//! only (Qwen3-VL checkpoints nest them there) and the vision tower's from
//! `vision_config`; unknown keys are ignored. `rope_scaling.rope_type` is
//! accepted for `type`, as Python normalises it.
//!
//! Divergences from Python (stricter checks, each an [`crate::Error::Config`]
//! naming the file and key, before any module is built): sizes must be
//! positive; `rope_scaling.mrope_section` must have 3 non-negative entries
//! whose sum is at most `head_dim / 2`; every `deepstack_visual_indexes`
//! entry must name a vision block; `num_position_embeddings` must be a
//! perfect square (Python takes `int(sqrt(n))` and would index past the
//! table otherwise); [`ModelConfig::check_weights`] compares the config
//! with the safetensors headers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::qwen2_5_vl::config::{SizeCheck, Tower, check_tensors, config_error, positive};
use crate::utils::TensorInfo;
use crate::models::base::OneOrMany;

/// `VisionConfig`: the vision tower, with Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type`.
    pub model_type: String,
    /// Number of vision blocks.
    pub depth: i32,
    /// Width of the vision blocks.
    pub hidden_size: i32,
    /// Width of the vision MLP.
    pub intermediate_size: i32,
    /// Width after the merger (the language model's hidden size).
    pub out_hidden_size: i32,
    /// Attention heads per block.
    pub num_heads: i32,
    /// `image_size`.
    pub image_size: i32,
    /// Pixels per patch side.
    pub patch_size: i32,
    /// `vocab_size`.
    pub vocab_size: i32,
    /// `mlp_ratio`.
    pub mlp_ratio: f32,
    /// Image channels.
    pub in_channels: i32,
    /// `layer_norm_eps`.
    pub layer_norm_eps: f32,
    /// `spatial_patch_size`.
    pub spatial_patch_size: i32,
    /// Patches merged per side.
    pub spatial_merge_size: i32,
    /// `tokens_per_second`.
    pub tokens_per_second: i32,
    /// Frames per temporal patch.
    pub temporal_patch_size: i32,
    /// Rows of the learned position table (a square grid).
    pub num_position_embeddings: i32,
    /// `window_size` (unused by Qwen3-VL's tower, kept as Python).
    pub window_size: i32,
    /// `fullatt_block_indexes` (unused by Qwen3-VL's tower, kept as Python).
    pub fullatt_block_indexes: Vec<i32>,
    /// Blocks whose output feeds a deepstack merger.
    pub deepstack_visual_indexes: Vec<i32>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "qwen3_vl".into(),
            depth: 32,
            hidden_size: 1280,
            intermediate_size: 3420,
            out_hidden_size: 1536,
            num_heads: 16,
            image_size: 384,
            patch_size: 14,
            vocab_size: 32000,
            mlp_ratio: 4.0,
            in_channels: 3,
            layer_norm_eps: 1e-6,
            spatial_patch_size: 14,
            spatial_merge_size: 2,
            tokens_per_second: 2,
            temporal_patch_size: 2,
            num_position_embeddings: 2304,
            window_size: 112,
            fullatt_block_indexes: vec![7, 15, 23, 31],
            deepstack_visual_indexes: Vec::new(),
        }
    }
}

/// `rope_scaling` of the text model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RopeScaling {
    /// `"mrope"` or `"default"` (`type`, or `rope_type`).
    #[serde(rename = "type", alias = "rope_type")]
    pub kind: String,
    /// How the rotary frequencies split between time, height and width.
    pub mrope_section: Vec<i32>,
}

/// `TextConfig`: the language model. The fields without a default are
/// required, as in Python.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    /// `model_type`.
    pub model_type: String,
    /// Number of decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the decoder layers.
    pub hidden_size: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// `rms_norm_eps`.
    pub rms_norm_eps: f32,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Key/value heads (`null` means as many as query heads).
    pub num_key_value_heads: Option<i32>,
    /// Features per head.
    pub head_dim: i32,
    /// RoPE base.
    pub rope_theta: f32,
    /// `max_position_embeddings`.
    pub max_position_embeddings: i32,
    /// `norm_topk_prob` (MoE only).
    #[serde(default = "yes")]
    pub norm_topk_prob: bool,
    /// `rope_scaling` (Python's default: `default`, `[24, 20, 20]`).
    #[serde(default = "default_rope_scaling")]
    pub rope_scaling: Option<RopeScaling>,
    /// Whether the output layer reuses the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// `hidden_act` (`silu`).
    #[serde(default = "silu")]
    pub hidden_act: String,
    /// Whether the decoder ends with a norm.
    #[serde(default = "yes")]
    pub use_final_norm: bool,
}

fn yes() -> bool {
    true
}

fn silu() -> String {
    "silu".into()
}

fn default_rope_scaling() -> Option<RopeScaling> {
    Some(RopeScaling {
        kind: "default".into(),
        mrope_section: vec![24, 20, 20],
    })
}

impl TextConfig {
    /// Key/value heads after Python's `__post_init__`.
    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    fn post_init(mut self, file: &str) -> Result<TextConfig> {
        self.num_key_value_heads
            .get_or_insert(self.num_attention_heads);
        if let Some(scaling) = &self.rope_scaling {
            if !matches!(scaling.kind.as_str(), "mrope" | "default") {
                return Err(config_error(
                    file,
                    format!(
                        "text_config.rope_scaling type must be 'mrope' or 'default', not {:?}",
                        scaling.kind
                    ),
                ));
            }
            let section = &scaling.mrope_section;
            let sum: i64 = section.iter().map(|&v| i64::from(v)).sum();
            if section.len() != 3
                || section.iter().any(|&v| v < 0)
                || sum > i64::from(self.head_dim / 2)
            {
                return Err(config_error(
                    file,
                    format!(
                        "text_config.rope_scaling.mrope_section {section:?} must be 3 \
                         non-negative numbers (time, height, width) summing to at most \
                         head_dim / 2 = {}; Qwen3-VL uses [24, 20, 20] with head_dim 128",
                        self.head_dim / 2
                    ),
                ));
            }
        }
        for (key, value) in [
            ("text_config.hidden_size", self.hidden_size),
            ("text_config.num_hidden_layers", self.num_hidden_layers),
            ("text_config.intermediate_size", self.intermediate_size),
            ("text_config.num_attention_heads", self.num_attention_heads),
            ("text_config.num_key_value_heads", self.kv_heads()),
            ("text_config.vocab_size", self.vocab_size),
            ("text_config.head_dim", self.head_dim),
        ] {
            positive(file, key, value)?;
        }
        if self.num_attention_heads % self.kv_heads() != 0 || self.head_dim % 2 != 0 {
            return Err(config_error(
                file,
                format!(
                    "text_config.num_attention_heads {} must be a multiple of \
                     num_key_value_heads {}, and head_dim {} even",
                    self.num_attention_heads,
                    self.kv_heads(),
                    self.head_dim
                ),
            ));
        }
        Ok(self)
    }
}

/// `ModelConfig`: the whole checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The language model.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// `model_type` (`qwen3_vl`).
    pub model_type: String,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// `<|image_pad|>` (151655); `image_token_index` when given.
    pub image_token_id: i32,
    /// `<|video_pad|>` (151656); `video_token_index` when given.
    pub video_token_id: i32,
    /// `<|vision_start|>` (151652).
    pub vision_start_token_id: i32,
    /// `<|vision_end|>` (151653).
    pub vision_end_token_id: i32,
    /// `vocab_size` (32000, Python's default).
    pub vocab_size: i32,
    /// End-of-sequence tokens (an int or a list in the file).
    pub eos_token_id: Option<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RootFields {
    model_type: Option<String>,
    ignore_index: i32,
    image_token_id: i32,
    video_token_id: i32,
    image_token_index: Option<i32>,
    video_token_index: Option<i32>,
    vision_start_token_id: i32,
    vision_end_token_id: i32,
    vocab_size: i32,
    eos_token_id: Option<OneOrMany>,
}

impl Default for RootFields {
    fn default() -> Self {
        RootFields {
            model_type: None,
            ignore_index: -100,
            image_token_id: 151655,
            video_token_id: 151656,
            image_token_index: None,
            video_token_index: None,
            vision_start_token_id: 151652,
            vision_end_token_id: 151653,
            vocab_size: 32000,
            eos_token_id: None,
        }
    }
}

impl ModelConfig {
    /// Builds the config from the parsed `config.json` object; `file` names
    /// it in errors.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let text = match root.get("text_config") {
            Some(Value::Object(t)) => Value::Object(t.clone()),
            _ => {
                return Err(config_error(
                    file,
                    "no \"text_config\" object; Qwen3-VL keeps the language model's \
                     parameters there"
                        .into(),
                ));
            }
        };
        let text_config: TextConfig = serde_json::from_value(text)
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        let text_config = text_config.post_init(file)?;
        let vision_config: VisionConfig = match root.get("vision_config") {
            None | Some(Value::Null) => VisionConfig::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| config_error(file, format!("vision_config: {e}")))?,
        };
        let v = &vision_config;
        for (key, value) in [
            ("vision_config.depth", v.depth),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.out_hidden_size", v.out_hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
            ("vision_config.in_channels", v.in_channels),
            ("vision_config.num_position_embeddings", v.num_position_embeddings),
        ] {
            positive(file, key, value)?;
        }
        let side = (f64::from(v.num_position_embeddings)).sqrt() as i32;
        if side * side != v.num_position_embeddings {
            return Err(config_error(
                file,
                format!(
                    "vision_config.num_position_embeddings {} is not a perfect square (the \
                     position table is a square grid)",
                    v.num_position_embeddings
                ),
            ));
        }
        if let Some(bad) = v
            .deepstack_visual_indexes
            .iter()
            .find(|&&i| i < 0 || i >= v.depth)
        {
            return Err(config_error(
                file,
                format!(
                    "vision_config.deepstack_visual_indexes has {bad}, but the tower has {} \
                     blocks",
                    v.depth
                ),
            ));
        }
        if v.hidden_size % v.num_heads != 0 {
            return Err(config_error(
                file,
                format!(
                    "vision_config.hidden_size {} is not a multiple of num_heads {}",
                    v.hidden_size, v.num_heads
                ),
            ));
        }
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, format!("{e}")))?;
        let model_type = fields.model_type.ok_or_else(|| {
            config_error(file, "missing model_type (expected \"qwen3_vl\")".into())
        })?;
        Ok(ModelConfig {
            text_config,
            vision_config,
            model_type,
            ignore_index: fields.ignore_index,
            image_token_id: fields.image_token_index.unwrap_or(fields.image_token_id),
            video_token_id: fields.video_token_index.unwrap_or(fields.video_token_id),
            vision_start_token_id: fields.vision_start_token_id,
            vision_end_token_id: fields.vision_end_token_id,
            vocab_size: fields.vocab_size,
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        })
    }

    /// Checks this config against the checkpoint's tensors before any
    /// module is built (Qwen2.5-VL's checks with Qwen3-VL's tensors);
    /// `file` names `config.json` in errors.
    pub fn check_weights(&self, tensors: &BTreeMap<String, TensorInfo>, file: &str) -> Result<()> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let sizes: [SizeCheck<'_>; 9] = [
            ("text_config.vocab_size", t.vocab_size, Tower::Text, "embed_tokens.weight", 0),
            ("text_config.hidden_size", t.hidden_size, Tower::Text, "embed_tokens.weight", 1),
            ("text_config.hidden_size", t.hidden_size, Tower::Text, "layers.0.self_attn.q_proj.weight", 1),
            ("text_config.intermediate_size", t.intermediate_size, Tower::Text, "layers.0.mlp.gate_proj.weight", 0),
            ("text_config.vocab_size", t.vocab_size, Tower::LmHead, "weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "patch_embed.proj.weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "blocks.0.attn.qkv.weight", 1),
            ("vision_config.intermediate_size", v.intermediate_size, Tower::Vision, "blocks.0.mlp.linear_fc1.weight", 0),
            ("vision_config.out_hidden_size", v.out_hidden_size, Tower::Vision, "merger.linear_fc2.weight", 0),
        ];
        check_tensors(tensors, file, "Qwen3-VL", t.num_hidden_layers, v.depth, &sizes)
    }
}

