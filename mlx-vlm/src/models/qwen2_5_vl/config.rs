//! `mlx_vlm/models/qwen2_5_vl/config.py`: the model's configuration, read
//! from a checkpoint's `config.json`.
//!
//! Real checkpoints differ in where things are: the Hugging Face original
//! keeps the text model's parameters at the root, transformers 5 re-saves
//! them under `text_config`, and newer files spell `rope_scaling.type` as
//! `rope_type`. All of these are accepted; unknown keys are ignored, as
//! Python's `from_dict` ignores them.
//!
//! Divergences from Python (stricter checks, each an [`Error::Config`]
//! naming the file and the key, before any module is built):
//!
//! - Sizes must be positive: `hidden_size`, `num_hidden_layers`,
//!   `intermediate_size`, `num_attention_heads`, `num_key_value_heads`,
//!   `vocab_size`, and the vision tower's `depth`, `hidden_size`,
//!   `intermediate_size`, `out_hidden_size`, `num_heads`, `patch_size`,
//!   `spatial_merge_size`, `temporal_patch_size`, `in_channels`.
//! - An explicit `rope_scaling.mrope_section` must have 3 non-negative
//!   entries summing to `head_dim / 2` (`hidden_size / num_attention_heads /
//!   2`), the rotary frequencies the chunked mRoPE splits between time,
//!   height and width. Python asserts only the length for `rope_type
//!   "mrope"` and otherwise clamps or leaves frequencies on the time axis.
//!   An empty list means Python's default, unchecked, as in Python.
//! - [`ModelConfig::check_weights`] compares the config with the
//!   checkpoint's safetensors headers: the decoder layer count, the vision
//!   depth, the hidden, vocabulary and MLP sizes, the vision widths, and
//!   (an [`Error::Weights`]) integer tensors other than quantized weights.
//!   Python builds the model first and fails (or runs out of memory) later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::utils::TensorInfo;
pub(crate) use crate::models::base::config_error;
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
    /// Width after the patch merger (the language model's hidden size).
    pub out_hidden_size: i32,
    /// Attention heads per vision block.
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
    /// Patches merged per side by the merger.
    pub spatial_merge_size: i32,
    /// `tokens_per_second` (video).
    pub tokens_per_second: i32,
    /// Frames per temporal patch.
    pub temporal_patch_size: i32,
    /// Window size of windowed attention, in pixels.
    pub window_size: i32,
    /// Blocks with full attention; the others attend within windows.
    pub fullatt_block_indexes: Vec<i32>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "qwen2_5_vl".into(),
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
            window_size: 112,
            fullatt_block_indexes: vec![7, 15, 23, 31],
        }
    }
}

/// `rope_scaling` of the text model: multimodal RoPE sections.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RopeScaling {
    /// `"mrope"` or `"default"` (`type`, or `rope_type` in newer files).
    #[serde(rename = "type", alias = "rope_type")]
    pub kind: String,
    /// How the rotary dimensions split between time, height and width.
    pub mrope_section: Vec<i32>,
}

/// `TextConfig`: the language model. The first seven fields are required,
/// as in Python.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    /// `model_type`.
    pub model_type: String,
    /// Width of the decoder layers.
    pub hidden_size: i32,
    /// Number of decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the MLP.
    pub intermediate_size: i32,
    /// Query heads.
    pub num_attention_heads: i32,
    /// `rms_norm_eps`.
    pub rms_norm_eps: f32,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// Key/value heads (Python's `None` means as many as query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<i32>,
    /// `max_position_embeddings` (128000).
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: Option<i32>,
    /// `rope_theta` (1e6).
    #[serde(default = "defaults::rope_theta")]
    pub rope_theta: f32,
    /// `rope_traditional` (false).
    #[serde(default)]
    pub rope_traditional: bool,
    /// `rope_scaling` (none).
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Whether the output layer reuses the embedding table (true).
    #[serde(default = "defaults::yes")]
    pub tie_word_embeddings: bool,
}

impl TextConfig {
    /// Python's `__post_init__`: fills `num_key_value_heads` and checks
    /// `rope_scaling`.
    fn post_init(mut self, file: &str) -> Result<TextConfig> {
        self.num_key_value_heads
            .get_or_insert(self.num_attention_heads);
        if let Some(scaling) = &self.rope_scaling
            && !matches!(scaling.kind.as_str(), "mrope" | "default")
        {
            return Err(config_error(
                file,
                format!(
                    "rope_scaling type must be 'mrope' or 'default', not {:?}",
                    scaling.kind
                ),
            ));
        }
        for (key, value) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("vocab_size", self.vocab_size),
        ] {
            positive(file, key, value)?;
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(config_error(
                file,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}; fix either",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        let half_head_dim = i64::from(self.hidden_size / self.num_attention_heads) / 2;
        if let Some(section) = self
            .rope_scaling
            .as_ref()
            .map(|s| &s.mrope_section)
            .filter(|s| !s.is_empty())
        {
            let sum: i64 = section.iter().map(|&v| i64::from(v)).sum();
            if section.len() != 3 || section.iter().any(|&v| v < 0) || sum != half_head_dim {
                return Err(config_error(
                    file,
                    format!(
                        "rope_scaling.mrope_section {section:?} must be 3 non-negative numbers \
                         (time, height, width) summing to head_dim / 2 = {half_head_dim} \
                         (hidden_size {} / num_attention_heads {} / 2); Qwen2.5-VL uses \
                         [16, 24, 24] with head_dim 128",
                        self.hidden_size, self.num_attention_heads
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// Key/value heads after Python's `__post_init__`.
    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
}

/// `ModelConfig`: the whole checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The language model.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// `model_type` (`qwen2_5_vl`).
    pub model_type: String,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// The `<|image_pad|>` token (151655).
    pub image_token_id: i32,
    /// The `<|video_pad|>` token (151656).
    pub video_token_id: i32,
    /// The `<|vision_start|>` token (151652).
    pub vision_start_token_id: i32,
    /// The `<|vision_end|>` token (151653).
    pub vision_end_token_id: i32,
    /// `vision_token_id` (151654).
    pub vision_token_id: i32,
    /// `vision_feature_select_strategy` ("default").
    pub vision_feature_select_strategy: String,
    /// `vision_feature_layer` (-2).
    pub vision_feature_layer: i32,
    /// `vocab_size` (the text config's when the root has none).
    pub vocab_size: i32,
    /// End-of-sequence tokens (an int or a list in the file).
    pub eos_token_id: Option<Vec<i32>>,
}

/// The root-level fields of `ModelConfig` other than the two sub-configs.
#[derive(Deserialize)]
#[serde(default)]
struct RootFields {
    model_type: Option<String>,
    ignore_index: i32,
    image_token_id: i32,
    video_token_id: i32,
    vision_start_token_id: i32,
    vision_end_token_id: i32,
    vision_token_id: i32,
    vision_feature_select_strategy: String,
    vision_feature_layer: i32,
    vocab_size: Option<i32>,
    eos_token_id: Option<OneOrMany>,
}

impl Default for RootFields {
    fn default() -> Self {
        RootFields {
            model_type: None,
            ignore_index: -100,
            image_token_id: 151655,
            video_token_id: 151656,
            vision_start_token_id: 151652,
            vision_end_token_id: 151653,
            vision_token_id: 151654,
            vision_feature_select_strategy: "default".into(),
            vision_feature_layer: -2,
            vocab_size: None,
            eos_token_id: None,
        }
    }
}

impl ModelConfig {
    /// Reads `config.json` text; `file` names it in errors
    /// (`ModelConfig.from_dict(json.load(f))`).
    pub fn from_json(text: &str, file: &str) -> Result<ModelConfig> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| config_error(file, format!("not valid JSON: {e}")))?;
        let Value::Object(root) = value else {
            return Err(config_error(
                file,
                "expected a JSON object at the top".into(),
            ));
        };
        ModelConfig::from_map(root, file)
    }

    /// Builds the config from the parsed `config.json` object.
    ///
    /// Python's `from_dict` copies every root key except `vision_config`
    /// into the text config; files re-saved by transformers 5 keep them under
    /// `text_config` instead. Both are read, root keys winning as in Python.
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let mut text = match root.get("text_config") {
            Some(Value::Object(nested)) => nested.clone(),
            _ => Map::new(),
        };
        for (key, value) in &root {
            if key != "vision_config" && key != "text_config" {
                text.insert(key.clone(), value.clone());
            }
        }
        let text_config: TextConfig = serde_json::from_value(Value::Object(text))
            .map_err(|e| config_error(file, format!("text config: {e}")))?;
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
        ] {
            positive(file, key, value)?;
        }
        let fields: RootFields = serde_json::from_value(Value::Object(root.clone()))
            .map_err(|e| config_error(file, format!("{e}")))?;
        let model_type = fields.model_type.ok_or_else(|| {
            config_error(file, "missing model_type (expected \"qwen2_5_vl\")".into())
        })?;
        let vocab_size = fields.vocab_size.unwrap_or(text_config.vocab_size);
        Ok(ModelConfig {
            text_config,
            vision_config,
            model_type,
            ignore_index: fields.ignore_index,
            image_token_id: fields.image_token_id,
            video_token_id: fields.video_token_id,
            vision_start_token_id: fields.vision_start_token_id,
            vision_end_token_id: fields.vision_end_token_id,
            vision_token_id: fields.vision_token_id,
            vision_feature_select_strategy: fields.vision_feature_select_strategy,
            vision_feature_layer: fields.vision_feature_layer,
            // transformers 5 keeps it under text_config only.
            vocab_size,
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        })
    }
}

/// Where a checkpoint key belongs, whatever the layout (Hugging Face,
/// transformers 5, MLX): the tower and the key within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tower {
    /// The language model's decoder.
    Text,
    /// The vision tower.
    Vision,
    /// The output layer.
    LmHead,
}

fn tower_key(key: &str) -> Option<(Tower, &str)> {
    const PREFIXES: &[(&str, Tower)] = &[
        ("model.language_model.", Tower::Text),
        ("language_model.model.", Tower::Text),
        ("language_model.lm_head.", Tower::LmHead),
        ("model.visual.", Tower::Vision),
        ("vision_tower.", Tower::Vision),
        ("visual.", Tower::Vision),
        ("lm_head.", Tower::LmHead),
        ("model.", Tower::Text),
    ];
    PREFIXES
        .iter()
        .find_map(|(prefix, tower)| key.strip_prefix(prefix).map(|rest| (*tower, rest)))
}

/// The block count of `tower` in the checkpoint: one more than the largest
/// `N` of `<blocks>.N.` keys, and that key (for the message).
fn block_count<'a>(
    tensors: &'a BTreeMap<String, TensorInfo>,
    tower: Tower,
    blocks: &str,
) -> Option<(u64, &'a str)> {
    tensors
        .keys()
        .filter_map(|key| {
            let (t, rest) = tower_key(key)?;
            let rest = rest.strip_prefix(blocks)?.strip_prefix('.')?;
            let n: u64 = rest.split('.').next()?.parse().ok()?;
            (t == tower).then_some((n + 1, key.as_str()))
        })
        .max_by_key(|(n, _)| *n)
}

impl ModelConfig {
    /// Checks this config against the checkpoint's tensors, read from the
    /// safetensors headers before any module is built (see the top of this
    /// file): the decoder layer count, the vision depth, the sizes the
    /// tensors' shapes show, and that every integer tensor is a quantized
    /// weight. `file` names `config.json` in errors.
    pub fn check_weights(&self, tensors: &BTreeMap<String, TensorInfo>, file: &str) -> Result<()> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let sizes: [SizeCheck<'_>; 9] = [
            ("vocab_size", t.vocab_size, Tower::Text, "embed_tokens.weight", 0),
            ("hidden_size", t.hidden_size, Tower::Text, "embed_tokens.weight", 1),
            ("hidden_size", t.hidden_size, Tower::Text, "layers.0.self_attn.q_proj.weight", 0),
            ("intermediate_size", t.intermediate_size, Tower::Text, "layers.0.mlp.gate_proj.weight", 0),
            ("vocab_size", t.vocab_size, Tower::LmHead, "weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "patch_embed.proj.weight", 0),
            ("vision_config.hidden_size", v.hidden_size, Tower::Vision, "blocks.0.attn.qkv.weight", 1),
            ("vision_config.intermediate_size", v.intermediate_size, Tower::Vision, "blocks.0.mlp.gate_proj.weight", 0),
            ("vision_config.out_hidden_size", v.out_hidden_size, Tower::Vision, "merger.mlp.2.weight", 0),
        ];
        check_tensors(tensors, file, "Qwen2.5-VL", t.num_hidden_layers, v.depth, &sizes)
    }
}

/// One size the weights must show: the config key, its value, the tower,
/// the tensor within the tower and the dimension of its shape.
pub(crate) type SizeCheck<'a> = (&'a str, i32, Tower, &'a str, usize);

/// Checks a Qwen checkpoint's tensors against its config (see the top of
/// this file): every integer tensor is a quantized weight, the decoder has
/// `layers` layers and the vision tower `depth` blocks, and each of
/// `sizes` holds. `model` names the family in messages, `file` the config.
pub(crate) fn check_tensors(
    tensors: &BTreeMap<String, TensorInfo>,
    file: &str,
    model: &str,
    layers: i32,
    depth: i32,
    sizes: &[SizeCheck<'_>],
) -> Result<()> {
    for (key, info) in tensors {
        let integer = !matches!(info.dtype.as_str(), "F16" | "BF16" | "F32" | "F64")
            && !info.dtype.starts_with("F8");
        let quantized_weight = key
            .strip_suffix(".weight")
            .is_some_and(|base| tensors.contains_key(&format!("{base}.scales")));
        if integer && !(quantized_weight && info.dtype == "U32") {
            return Err(Error::Weights {
                path: info.file.display().to_string(),
                message: format!(
                    "{key} has dtype {}, but {model} expects a floating-point weight \
                     (F32, F16 or BF16; U32 only for a quantized .weight with .scales); \
                     the checkpoint is corrupt or mis-converted, convert it again",
                    info.dtype
                ),
            });
        }
    }
    let counts = [
        (
            "num_hidden_layers",
            i64::from(layers),
            block_count(tensors, Tower::Text, "layers"),
            "decoder layers",
        ),
        (
            "vision_config.depth",
            i64::from(depth),
            block_count(tensors, Tower::Vision, "blocks"),
            "vision blocks",
        ),
    ];
    for (name, configured, found, what) in counts {
        let (count, example) = found.unwrap_or((0, "none"));
        if i64::try_from(count).ok() != Some(configured) {
            return Err(config_error(
                file,
                format!(
                    "{name} is {configured}, but the weights hold {count} {what} (highest \
                     key: {example}); set {name} to {count} or use the config.json that \
                     came with these weights"
                ),
            ));
        }
    }
    // (config key, value, tower, tensor within the tower, dimension).
    let quantized = |key: &str| {
        key.strip_suffix(".weight")
            .is_some_and(|b| tensors.contains_key(&format!("{b}.scales")))
    };
    for (name, configured, tower, within, dim) in sizes.iter().copied() {
        for (key, info) in tensors {
            if tower_key(key) != Some((tower, within)) || (dim > 0 && quantized(key)) {
                continue;
            }
            let Some(&found) = info.shape.get(dim) else {
                continue;
            };
            if i64::try_from(found).ok() != Some(i64::from(configured)) {
                return Err(config_error(
                    file,
                    format!(
                        "{name} is {configured}, but {key} in {} has shape {:?} (dimension \
                         {dim} is {found}); set {name} to {found} or use the config.json \
                         that came with these weights",
                        info.file.display(),
                        info.shape
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a size that is not positive, naming `key`.
pub(crate) fn positive(file: &str, key: &str, value: i32) -> Result<()> {
    if value > 0 {
        return Ok(());
    }
    Err(config_error(
        file,
        format!("{key} is {value}; it must be a positive integer"),
    ))
}

/// An [`Error::Config`] of `file`.
/// Python's field defaults that serde needs as functions.
mod defaults {
    pub fn max_position_embeddings() -> Option<i32> {
        Some(128000)
    }
    pub fn rope_theta() -> f32 {
        1_000_000.0
    }
    pub fn yes() -> bool {
        true
    }
}
