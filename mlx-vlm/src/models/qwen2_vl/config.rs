//! `mlx_vlm/models/qwen2_vl/config.py`: the model's configuration.
//!
//! Python's text config and root fields are Qwen2.5-VL's with other
//! defaults (`num_key_value_heads` 8, `max_position_embeddings` 40960,
//! untied embeddings); they are read by Qwen2.5-VL's parser
//! ([`crate::models::qwen2_5_vl::config`]) after those defaults are filled
//! in, and the language model is Qwen2.5-VL's (Python copies its
//! `language.py`). The vision config is Qwen2-VL's own.
//!
//! Divergences from Python: as Qwen2.5-VL's config (sizes must be positive,
//! `mrope_section` must sum to `head_dim / 2`, [`ModelConfig::check_weights`]
//! compares the config with the safetensors headers before any module is
//! built), and the vision sizes `depth`, `embed_dim`, `hidden_size`,
//! `num_heads`, `patch_size`, `spatial_merge_size`, `temporal_patch_size`,
//! `in_channels` must be positive, `embed_dim` a multiple of `num_heads`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::qwen2_5_vl::config::{
    self as qwen2_5_vl_config, SizeCheck, TextConfig, Tower, check_tensors, config_error, positive,
};
use crate::utils::TensorInfo;

/// `VisionConfig`: the vision tower, with Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type`.
    pub model_type: String,
    /// Number of vision blocks.
    pub depth: i32,
    /// Width of the vision blocks.
    pub embed_dim: i32,
    /// Width after the patch merger (the language model's hidden size).
    pub hidden_size: i32,
    /// Attention heads per vision block.
    pub num_heads: i32,
    /// `image_size`.
    pub image_size: i32,
    /// Pixels per patch side.
    pub patch_size: i32,
    /// `vocab_size`.
    pub vocab_size: i32,
    /// Width of the vision MLP over `embed_dim`.
    pub mlp_ratio: f32,
    /// Image channels.
    pub in_channels: i32,
    /// `layer_norm_eps`.
    pub layer_norm_eps: f32,
    /// `spatial_patch_size`.
    pub spatial_patch_size: i32,
    /// Patches merged per side by the merger.
    pub spatial_merge_size: i32,
    /// Frames per temporal patch.
    pub temporal_patch_size: i32,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "qwen2_vl".into(),
            depth: 32,
            embed_dim: 1280,
            hidden_size: 1536,
            num_heads: 16,
            image_size: 384,
            patch_size: 14,
            vocab_size: 32000,
            mlp_ratio: 4.0,
            in_channels: 3,
            layer_norm_eps: 1e-6,
            spatial_patch_size: 14,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
        }
    }
}

/// `ModelConfig`: the whole checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The language model.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// `model_type` (`qwen2_vl`).
    pub model_type: String,
    /// What Qwen2.5-VL's language model reads (token ids, the merge size
    /// of the rope index), the root fields being the same.
    pub language: qwen2_5_vl_config::ModelConfig,
}

impl ModelConfig {
    /// Builds the config from the parsed `config.json` object; `file` names
    /// it in errors. Root keys and `text_config` are read as Qwen2.5-VL
    /// reads them, with Qwen2-VL's text defaults.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let vision_config: VisionConfig = match root.get("vision_config") {
            None | Some(Value::Null) => VisionConfig::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| config_error(file, format!("vision_config: {e}")))?,
        };
        let v = &vision_config;
        for (key, value) in [
            ("vision_config.depth", v.depth),
            ("vision_config.embed_dim", v.embed_dim),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
            ("vision_config.in_channels", v.in_channels),
        ] {
            positive(file, key, value)?;
        }
        if v.embed_dim % v.num_heads != 0 {
            return Err(config_error(
                file,
                format!(
                    "vision_config.embed_dim {} is not a multiple of vision_config.num_heads {}; \
                     fix either",
                    v.embed_dim, v.num_heads
                ),
            ));
        }
        // Python's TextConfig defaults where Qwen2-VL's differ from 2.5's.
        let mut language_root = root;
        let text_defaults = [
            ("num_key_value_heads", Value::from(8)),
            ("max_position_embeddings", Value::from(40960)),
            ("tie_word_embeddings", Value::from(false)),
        ];
        let in_text = |map: &Map<String, Value>, key: &str| {
            map.contains_key(key)
                || map
                    .get("text_config")
                    .and_then(Value::as_object)
                    .is_some_and(|t| t.contains_key(key))
        };
        for (key, value) in text_defaults {
            if !in_text(&language_root, key) {
                language_root.insert(key.into(), value);
            }
        }
        // The rope index reads the merge size from the vision config.
        let merge = serde_json::json!({
            "model_type": "qwen2_5_vl",
            "spatial_merge_size": v.spatial_merge_size,
        });
        language_root.insert("vision_config".into(), merge);
        let language = qwen2_5_vl_config::ModelConfig::from_map(language_root, file)?;
        Ok(ModelConfig {
            text_config: language.text_config.clone(),
            vision_config,
            model_type: language.model_type.clone(),
            language,
        })
    }

    /// Checks this config against the checkpoint's tensors before any
    /// module is built, as Qwen2.5-VL's does, with Qwen2-VL's vision
    /// tensors; `file` names `config.json` in errors.
    pub fn check_weights(&self, tensors: &BTreeMap<String, TensorInfo>, file: &str) -> Result<()> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let mlp_hidden = (v.embed_dim as f32 * v.mlp_ratio) as i32;
        let sizes: [SizeCheck<'_>; 9] = [
            ("vocab_size", t.vocab_size, Tower::Text, "embed_tokens.weight", 0),
            ("hidden_size", t.hidden_size, Tower::Text, "embed_tokens.weight", 1),
            ("hidden_size", t.hidden_size, Tower::Text, "layers.0.self_attn.q_proj.weight", 0),
            ("intermediate_size", t.intermediate_size, Tower::Text, "layers.0.mlp.gate_proj.weight", 0),
            ("vocab_size", t.vocab_size, Tower::LmHead, "weight", 0),
            ("vision_config.embed_dim", v.embed_dim, Tower::Vision, "patch_embed.proj.weight", 0),
            ("vision_config.embed_dim", v.embed_dim, Tower::Vision, "blocks.0.attn.qkv.weight", 1),
            ("vision_config.embed_dim * mlp_ratio", mlp_hidden, Tower::Vision, "blocks.0.mlp.fc1.weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "merger.mlp.2.weight", 0),
        ];
        check_tensors(tensors, file, "Qwen2-VL", t.num_hidden_layers, v.depth, &sizes)
    }
}
