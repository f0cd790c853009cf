//! `mlx_vlm/models/qwen3_vl_moe/config.py`: the configuration of
//! Qwen3-VL-MoE checkpoints.
//!
//! [`TextConfig`] is Qwen3-VL's text fields plus the mixture of experts.
//! `VisionConfig` and `ModelConfig` are Python copies of Qwen3-VL's
//! (`model_type` default `qwen3_vl_moe` aside): [`ModelConfig`] holds
//! Qwen3-VL's, read from the same file, next to this [`TextConfig`].
//!
//! Divergences from Python (stricter checks, each an [`Error::Config`](crate::Error::Config)
//! naming the file and key): a missing required field is named (Python
//! keeps the plain dict and fails later); `num_experts_per_tok` must lie in
//! `1..=num_experts` when `num_experts > 0`, and `decoder_sparse_step` must
//! be positive (Python fails in `argpartition` or divides by zero); the
//! checks of Qwen3-VL's config (positive sizes, the mRoPE sections, the
//! vision tower's shape) hold too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::qwen2_5_vl::config::{SizeCheck, Tower, check_tensors};
use crate::models::qwen3_vl;
use crate::utils::TensorInfo;
use crate::models::base::config_error;

/// `rope_scaling` of the text model: multimodal RoPE sections.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RopeScaling {
    /// `"mrope"` or `"default"` (`type`, or `rope_type` in newer files).
    #[serde(rename = "type", alias = "rope_type")]
    pub kind: String,
    /// How the rotary dimensions split between time, height and width.
    pub mrope_section: Vec<i32>,
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

/// Python: `TextConfig`. The fields without a default are required, as
/// in Python.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    /// `model_type`.
    pub model_type: String,
    /// Number of decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the decoder layers.
    pub hidden_size: i32,
    /// Width of the dense MLP (layers without experts).
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// Experts per sparse layer (0: every layer dense).
    pub num_experts: i32,
    /// Experts each token is routed to (top-k).
    pub num_experts_per_tok: i32,
    /// Every `decoder_sparse_step`-th layer is sparse.
    pub decoder_sparse_step: i32,
    /// Layers kept dense whatever the step.
    pub mlp_only_layers: Vec<i32>,
    /// Width of one expert's MLP.
    pub moe_intermediate_size: i32,
    /// `rms_norm_eps`.
    pub rms_norm_eps: f32,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Key/value heads (required but nullable; `null` means as many as
    /// query heads).
    pub num_key_value_heads: Option<i32>,
    /// Width of one attention head.
    pub head_dim: i32,
    /// `rope_theta`.
    pub rope_theta: f32,
    /// `max_position_embeddings`.
    pub max_position_embeddings: i32,
    /// Whether the top-k routing weights are renormalised to sum to one
    /// (true).
    #[serde(default = "yes")]
    pub norm_topk_prob: bool,
    /// `rope_scaling` (`{"type": "default", "mrope_section": [24, 20, 20]}`).
    #[serde(default = "default_rope_scaling")]
    pub rope_scaling: Option<RopeScaling>,
    /// Whether the output layer reuses the embedding table (false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// `attention_bias` (false).
    #[serde(default)]
    pub attention_bias: bool,
    /// `hidden_act` ("silu").
    #[serde(default = "silu")]
    pub hidden_act: String,
}

/// The fields of `TextConfig` without a Python default.
pub const TEXT_REQUIRED: &[&str] = &[
    "model_type",
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_experts",
    "num_experts_per_tok",
    "decoder_sparse_step",
    "mlp_only_layers",
    "moe_intermediate_size",
    "rms_norm_eps",
    "vocab_size",
    "num_key_value_heads",
    "head_dim",
    "rope_theta",
    "max_position_embeddings",
];

impl TextConfig {
    /// Reads `text_config` (Python: `TextConfig(**kwargs)` through
    /// `_maybe_deserialize_config(..., require_all_fields=True)`, then
    /// `__post_init__`); `file` names the configuration in errors.
    pub fn from_map(text: &Map<String, Value>, file: &str) -> Result<TextConfig> {
        if let Some(missing) = TEXT_REQUIRED.iter().find(|k| !text.contains_key(**k)) {
            return Err(config_error(
                file,
                format!(
                    "text_config has no {missing}; add it (Qwen3-VL-MoE needs every one of \
                     {TEXT_REQUIRED:?})"
                ),
            ));
        }
        let config: TextConfig = serde_json::from_value(Value::Object(text.clone()))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        config.post_init(file)
    }

    /// Python's `__post_init__`, plus the checks listed at the top.
    fn post_init(mut self, file: &str) -> Result<TextConfig> {
        self.num_key_value_heads
            .get_or_insert(self.num_attention_heads);
        if let Some(scaling) = &self.rope_scaling
            && !matches!(scaling.kind.as_str(), "mrope" | "default")
        {
            return Err(config_error(
                file,
                format!(
                    "text_config.rope_scaling type must be 'mrope' or 'default', not {:?}",
                    scaling.kind
                ),
            ));
        }
        if self.decoder_sparse_step <= 0 {
            return Err(config_error(
                file,
                format!(
                    "text_config.decoder_sparse_step is {}; it must be positive (1 makes \
                     every layer sparse)",
                    self.decoder_sparse_step
                ),
            ));
        }
        if self.num_experts < 0
            || (self.num_experts > 0 && !(1..=self.num_experts).contains(&self.num_experts_per_tok))
        {
            return Err(config_error(
                file,
                format!(
                    "text_config.num_experts_per_tok is {} with num_experts {}; it must lie in \
                     1..=num_experts",
                    self.num_experts_per_tok, self.num_experts
                ),
            ));
        }
        Ok(self)
    }

    /// Key/value heads after Python's `__post_init__`.
    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether decoder layer `layer_idx` has experts (Python: the
    /// condition in `Qwen3VLMoEDecoderLayer.__init__`).
    pub fn is_sparse_layer(&self, layer_idx: i32) -> bool {
        !self.mlp_only_layers.contains(&layer_idx)
            && self.num_experts > 0
            && (layer_idx + 1) % self.decoder_sparse_step == 0
    }
}

/// Python: `ModelConfig` (a copy of Qwen3-VL's whose `text_config` is the
/// [`TextConfig`] with experts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The fields Python's copy shares with Qwen3-VL's `ModelConfig`, read
    /// from the same file (its `text_config` without the experts, which the
    /// attention, rotary embedding and rope index read).
    pub base: qwen3_vl::ModelConfig,
    /// The text configuration with the experts.
    pub text_config: TextConfig,
}

impl ModelConfig {
    /// Builds the config from the parsed `config.json` object; `file` names
    /// it in errors.
    pub fn from_map(mut root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let text_config = match root.get("text_config") {
            Some(Value::Object(t)) => TextConfig::from_map(t, file)?,
            _ => {
                return Err(config_error(
                    file,
                    "no \"text_config\" object; Qwen3-VL-MoE keeps the language model's \
                     parameters there"
                        .into(),
                ));
            }
        };
        // Python's VisionConfig default: `model_type` `qwen3_vl_moe`.
        match root.get_mut("vision_config") {
            Some(Value::Object(vision)) => {
                vision
                    .entry("model_type")
                    .or_insert_with(|| Value::from("qwen3_vl_moe"));
            }
            None | Some(Value::Null) => {
                let mut vision = Map::new();
                vision.insert("model_type".into(), Value::from("qwen3_vl_moe"));
                root.insert("vision_config".into(), Value::Object(vision));
            }
            Some(_) => {}
        }
        let base = qwen3_vl::ModelConfig::from_map(root, file)?;
        Ok(ModelConfig { base, text_config })
    }

    /// Checks this config against the checkpoint's tensors before any
    /// module is built: Qwen3-VL's checks, with the experts' sizes
    /// (`num_experts`, `moe_intermediate_size`) read from the first sparse
    /// layer and `intermediate_size` from the first dense one, in either
    /// layout (Hugging Face's fused experts or mlx-community's
    /// `switch_mlp`). `file` names `config.json` in errors.
    pub fn check_weights(&self, tensors: &BTreeMap<String, TensorInfo>, file: &str) -> Result<()> {
        let t = &self.text_config;
        let v = &self.base.vision_config;
        let layers = 0..t.num_hidden_layers;
        let sparse = layers.clone().find(|&l| t.is_sparse_layer(l));
        let dense = layers.clone().find(|&l| !t.is_sparse_layer(l));
        let dense_gate = dense.map(|l| format!("layers.{l}.mlp.gate_proj.weight"));
        let sparse_keys = sparse.map(|l| {
            (
                format!("layers.{l}.mlp.gate.weight"),
                format!("layers.{l}.mlp.switch_mlp.gate_proj.weight"),
                format!("layers.{l}.mlp.experts.down_proj"),
            )
        });
        let mut sizes: Vec<SizeCheck<'_>> = vec![
            ("text_config.vocab_size", t.vocab_size, Tower::Text, "embed_tokens.weight", 0),
            ("text_config.hidden_size", t.hidden_size, Tower::Text, "embed_tokens.weight", 1),
            ("text_config.hidden_size", t.hidden_size, Tower::Text, "layers.0.self_attn.q_proj.weight", 1),
            ("text_config.vocab_size", t.vocab_size, Tower::LmHead, "weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "patch_embed.proj.weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "blocks.0.attn.qkv.weight", 1),
            ("vision_config.intermediate_size", v.intermediate_size, Tower::Vision, "blocks.0.mlp.linear_fc1.weight", 0),
            ("vision_config.out_hidden_size", v.out_hidden_size, Tower::Vision, "merger.linear_fc2.weight", 0),
        ];
        if let Some(gate) = &dense_gate {
            sizes.push(("text_config.intermediate_size", t.intermediate_size, Tower::Text, gate, 0));
        }
        if let Some((router, switch_gate, hf_down)) = &sparse_keys {
            sizes.extend([
                ("text_config.num_experts", t.num_experts, Tower::Text, router.as_str(), 0),
                ("text_config.num_experts", t.num_experts, Tower::Text, switch_gate.as_str(), 0),
                ("text_config.moe_intermediate_size", t.moe_intermediate_size, Tower::Text, switch_gate.as_str(), 1),
                ("text_config.num_experts", t.num_experts, Tower::Text, hf_down.as_str(), 0),
                ("text_config.moe_intermediate_size", t.moe_intermediate_size, Tower::Text, hf_down.as_str(), 1),
            ]);
        }
        check_tensors(tensors, file, "Qwen3-VL-MoE", t.num_hidden_layers, v.depth, &sizes)
    }
}
