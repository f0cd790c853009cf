//! `mlx_vlm/models/gemma3n/config.py`: the configuration of Gemma 3n
//! checkpoints, its classes in Python's order.
//!
//! Fields, defaults and names are Python's; a missing nested object
//! (`vision_config`, `audio_config`) is its defaults, as the loader makes it
//! in Python. Unknown keys are ignored, as `from_dict` does.
//!
//! Divergences from Python (each an [`Error::Config`](crate::Error::Config) naming the file and
//! the key, where Python fails later, while building the model, with a
//! `TypeError`, `ValueError` or `IndexError`, or not at all):
//! - `text_config.layer_types` is required, one `sliding_attention` or
//!   `full_attention` per layer, both kinds among the layers that keep
//!   their own KV (the first `num_hidden_layers - num_kv_shared_layers`);
//! - `num_kv_shared_layers` is below `num_hidden_layers`;
//! - `activation_sparsity_pattern`, when given, has one value in `[0, 1)`
//!   per layer (Python reads one per layer; 1 would make an infinite
//!   cutoff);
//! - sizes are positive, the query heads a multiple of the key/value heads,
//!   `altup_active_idx` one of the `altup_num_inputs` streams;
//! - `vision_config.block_definition` (Rust only) replaces the vision
//!   tower's hard-coded block list, for small test checkpoints;
//! - `intermediate_size` may be one integer as well as Python's per-layer
//!   list (Python indexes `intermediate_size[0]` and fails on an integer).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::{config_error, OneOrMany};

/// Deserializes the object `value` (the configuration `key` of `file`).
fn from_object<T: for<'de> Deserialize<'de>>(
    value: Option<&Value>,
    file: &str,
    key: &str,
) -> Result<T> {
    let object = match value {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => {
            return Err(config_error(
                file,
                format!("{key} must be an object, got {other}"),
            ));
        }
    };
    serde_json::from_value(object).map_err(|e| config_error(file, format!("{key}: {e}")))
}

/// Python: `AudioConfig`, every field with Python's default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AudioConfig {
    /// Mel features per frame (80).
    pub input_feat_size: i32,
    /// Width of the conformer (1536).
    pub hidden_size: i32,
    /// Frames per attention chunk (12).
    pub conf_attention_chunk_size: i32,
    /// Frames of left context (13).
    pub conf_attention_context_left: i32,
    /// Frames of right context (0).
    pub conf_attention_context_right: i32,
    /// Logit of masked positions (-1e9).
    pub conf_attention_invalid_logits_value: f32,
    /// Attention logit softcap (50).
    pub conf_attention_logit_cap: f32,
    /// Attention heads (8).
    pub conf_num_attention_heads: i32,
    /// Conformer layers (12).
    pub conf_num_hidden_layers: i32,
    /// Depthwise convolution kernel (5).
    pub conf_conv_kernel_size: i32,
    /// Relative positional bias buckets (256).
    pub conf_positional_bias_size: i32,
    /// Time reduction factor (4).
    pub conf_reduction_factor: i32,
    /// Residual weight (0.5).
    pub conf_residual_weight: f32,
    /// Channels of the two subsampling convolutions ((128, 32)).
    pub sscp_conv_channel_size: [i32; 2],
    /// Group norm epsilon of the subsampling (1e-3).
    pub sscp_conv_group_norm_eps: f32,
    /// Kernels of the two subsampling convolutions (((3, 3), (3, 3))).
    pub sscp_conv_kernel_size: [[i32; 2]; 2],
    /// Strides of the two subsampling convolutions (((2, 2), (2, 2))).
    pub sscp_conv_stride_size: [[i32; 2]; 2],
    /// Audio soft-token vocabulary (128).
    pub vocab_size: i32,
    /// Subsampling epsilon (1e-3).
    pub sscp_conv_eps: f32,
    /// RMS norm epsilon (1e-6).
    pub rms_norm_eps: f32,
    /// Gradient clipping bound (1e10).
    pub gradient_clipping: f32,
    /// First audio token id: text plus vision vocabularies (262272).
    pub vocab_offset: i32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            input_feat_size: 80,
            hidden_size: 1536,
            conf_attention_chunk_size: 12,
            conf_attention_context_left: 13,
            conf_attention_context_right: 0,
            conf_attention_invalid_logits_value: -1e9,
            conf_attention_logit_cap: 50.0,
            conf_num_attention_heads: 8,
            conf_num_hidden_layers: 12,
            conf_conv_kernel_size: 5,
            conf_positional_bias_size: 256,
            conf_reduction_factor: 4,
            conf_residual_weight: 0.5,
            sscp_conv_channel_size: [128, 32],
            sscp_conv_group_norm_eps: 1e-3,
            sscp_conv_kernel_size: [[3, 3], [3, 3]],
            sscp_conv_stride_size: [[2, 2], [2, 2]],
            vocab_size: 128,
            sscp_conv_eps: 1e-3,
            rms_norm_eps: 1e-6,
            gradient_clipping: 10_000_000_000.0,
            vocab_offset: 262_144 + 128,
        }
    }
}

/// Python: `VisionConfig` (the MobileNetV5 tower), every field with
/// Python's default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type` (`gemma3n_vision`).
    pub model_type: String,
    /// Layers (12).
    pub num_hidden_layers: i32,
    /// Width of the tower's output (2048).
    pub hidden_size: i32,
    /// Width of its MLP (8192).
    pub intermediate_size: i32,
    /// Heads (16).
    pub num_attention_heads: i32,
    /// Side of a patch (16).
    pub patch_size: i32,
    /// Side of the input image (224).
    pub image_size: i32,
    /// Input channels (3).
    pub num_channels: i32,
    /// RMS norm epsilon (1e-6).
    pub rms_norm_eps: f32,
    /// Vision soft-token vocabulary (128).
    pub vocab_size: i32,
    /// First vision token id: the text vocabulary (262144).
    pub vocab_offset: i32,
    /// Rust only (Python has no such key and ignores it): the tower's
    /// stages in place of `gemma3n_mobilenet_def()`, which Python
    /// hard-codes, so a small test checkpoint can be built from its
    /// config (its Python goldens replace that function by the same list).
    /// `None` (released checkpoints) is the real `mobilenetv5_300m_enc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_definition: Option<Vec<Vec<crate::models::gemma3n::vision::BlockConfig>>>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "gemma3n_vision".into(),
            num_hidden_layers: 12,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_attention_heads: 16,
            patch_size: 16,
            image_size: 224,
            num_channels: 3,
            rms_norm_eps: 1e-6,
            vocab_size: 128,
            vocab_offset: 262_144,
            block_definition: None,
        }
    }
}

/// `intermediate_size`: Python's per-layer list, or one integer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IntermediateSize {
    /// One width for every layer.
    One(i32),
    /// A width per layer (the released checkpoints' form).
    PerLayer(Vec<i32>),
}

impl IntermediateSize {
    /// The width every MLP gets: Python's `intermediate_size[0]`.
    pub fn first(&self) -> Option<i32> {
        match self {
            IntermediateSize::One(n) => Some(*n),
            IntermediateSize::PerLayer(sizes) => sizes.first().copied(),
        }
    }
}

/// Python: `TextConfig`. `model_type`, `hidden_size`, `num_hidden_layers`
/// and `intermediate_size` are required, as in Python; the rest have
/// Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    /// `model_type` (`gemma3n_text`).
    pub model_type: String,
    /// Width of the decoder.
    pub hidden_size: i32,
    /// Decoder layers.
    pub num_hidden_layers: i32,
    /// Width of the MLPs (Python uses the first entry for every layer).
    pub intermediate_size: IntermediateSize,
    /// Query heads (2).
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: i32,
    /// Features per head (256).
    #[serde(default = "defaults::head_dim")]
    pub head_dim: i32,
    /// RMS norm epsilon (1e-6).
    #[serde(default = "defaults::rms_norm_eps")]
    pub rms_norm_eps: f32,
    /// Vocabulary size (262400).
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i32,
    /// Tokens with a per-layer input embedding (262144); the others use
    /// token 0's.
    #[serde(default = "defaults::vocab_size_per_layer_input")]
    pub vocab_size_per_layer_input: i32,
    /// Key/value heads (4).
    #[serde(default = "defaults::num_key_value_heads")]
    pub num_key_value_heads: i32,
    /// Rank of the Laurel blocks (64).
    #[serde(default = "defaults::laurel_rank")]
    pub laurel_rank: i32,
    /// `frac_shared_layers` (0.5; unused by the model, as in Python).
    #[serde(default = "defaults::frac_shared_layers")]
    pub frac_shared_layers: f32,
    /// The AltUp stream the layers compute (0).
    #[serde(default)]
    pub altup_active_idx: i32,
    /// `<pad>` (0).
    #[serde(default)]
    pub pad_token_id: i32,
    /// AltUp streams (4).
    #[serde(default = "defaults::altup_num_inputs")]
    pub altup_num_inputs: i32,
    /// Bound of the AltUp coefficients, if any.
    #[serde(default)]
    pub altup_coef_clip: Option<f32>,
    /// Whether the corrected active stream is scaled by
    /// `correct_output_scale` (true).
    #[serde(default = "defaults::altup_correct_scale")]
    pub altup_correct_scale: bool,
    /// Width of each layer's per-layer input (1024).
    #[serde(default = "defaults::hidden_size_per_layer_input")]
    pub hidden_size_per_layer_input: i32,
    /// RoPE base of the sliding-window layers (1e4).
    #[serde(default = "defaults::rope_local_base_freq")]
    pub rope_local_base_freq: f32,
    /// `rope_traditional` (false; Python's attention ignores it).
    #[serde(default)]
    pub rope_traditional: bool,
    /// RoPE base of the global layers (1e6).
    #[serde(default = "defaults::rope_theta")]
    pub rope_theta: f32,
    /// `query_pre_attn_scalar` (0.0625; unused: the attention scale is 1).
    #[serde(default = "defaults::query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f32,
    /// Keys a sliding-window layer attends to (1024).
    #[serde(default = "defaults::sliding_window")]
    pub sliding_window: i32,
    /// The global layers' RoPE scaling, if any.
    #[serde(default)]
    pub rope_scaling: Option<Map<String, Value>>,
    /// Image tokens per image (256).
    #[serde(default = "defaults::mm_tokens_per_image")]
    pub mm_tokens_per_image: i32,
    /// `sliding_window_pattern` (5; unused: `layer_types` decides).
    #[serde(default = "defaults::sliding_window_pattern")]
    pub sliding_window_pattern: i32,
    /// Per layer, the fraction of MLP gate activations cut by the gaussian
    /// top-k (none: no sparsity).
    #[serde(default)]
    pub activation_sparsity_pattern: Option<Vec<f64>>,
    /// Final logits are `c * tanh(logits / c)` (30; `null`: none).
    #[serde(default = "defaults::final_logit_softcapping")]
    pub final_logit_softcapping: Option<f32>,
    /// `query_rescale_scalar` (1; unused, as in Python).
    #[serde(default = "defaults::query_rescale_scalar")]
    pub query_rescale_scalar: f32,
    /// The last layers that read the KV of an earlier layer of their type
    /// (0).
    #[serde(default)]
    pub num_kv_shared_layers: i32,
    /// `max_position_embeddings` (32768).
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: i32,
    /// `attn_logit_softcapping` (0; unused, as in Python).
    #[serde(default)]
    pub attn_logit_softcapping: f32,
    /// Per layer, `sliding_attention` or `full_attention` (required here;
    /// Python's default `None` fails when the model is built).
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
}

mod defaults {
    pub fn num_attention_heads() -> i32 {
        2
    }
    pub fn head_dim() -> i32 {
        256
    }
    pub fn rms_norm_eps() -> f32 {
        1.0e-6
    }
    pub fn vocab_size() -> i32 {
        262400
    }
    pub fn vocab_size_per_layer_input() -> i32 {
        262144
    }
    pub fn num_key_value_heads() -> i32 {
        4
    }
    pub fn laurel_rank() -> i32 {
        64
    }
    pub fn frac_shared_layers() -> f32 {
        0.5
    }
    pub fn altup_num_inputs() -> i32 {
        4
    }
    pub fn altup_correct_scale() -> bool {
        true
    }
    pub fn hidden_size_per_layer_input() -> i32 {
        1024
    }
    pub fn rope_local_base_freq() -> f32 {
        10_000.0
    }
    pub fn rope_theta() -> f32 {
        1_000_000.0
    }
    pub fn query_pre_attn_scalar() -> f32 {
        0.0625
    }
    pub fn sliding_window() -> i32 {
        1024
    }
    pub fn mm_tokens_per_image() -> i32 {
        256
    }
    pub fn sliding_window_pattern() -> i32 {
        5
    }
    pub fn final_logit_softcapping() -> Option<f32> {
        Some(30.0)
    }
    pub fn query_rescale_scalar() -> f32 {
        1.0
    }
    pub fn max_position_embeddings() -> i32 {
        32768
    }
}

/// `layer_types` value of a sliding-window layer.
pub const SLIDING_ATTENTION: &str = "sliding_attention";
/// `layer_types` value of a global layer.
pub const FULL_ATTENTION: &str = "full_attention";

impl TextConfig {
    /// Reads `text_config` and checks it (see the module's divergences);
    /// `file` names the configuration in errors.
    pub fn from_map(text: &Map<String, Value>, file: &str) -> Result<TextConfig> {
        let config: TextConfig = serde_json::from_value(Value::Object(text.clone()))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        config.validate(file)?;
        Ok(config)
    }

    /// The checks of [`TextConfig::from_map`], for a config built in code.
    pub fn validate(&self, file: &str) -> Result<()> {
        self.check_sizes(file)?;
        self.check_layer_types(file)?;
        self.check_activation_sparsity(file)
    }

    fn check_sizes(&self, file: &str) -> Result<()> {
        let intermediate = self.intermediate_size.first().unwrap_or(0);
        for (key, value) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size[0]", intermediate),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            (
                "vocab_size_per_layer_input",
                self.vocab_size_per_layer_input,
            ),
            ("laurel_rank", self.laurel_rank),
            ("altup_num_inputs", self.altup_num_inputs),
            (
                "hidden_size_per_layer_input",
                self.hidden_size_per_layer_input,
            ),
            ("sliding_window", self.sliding_window),
        ] {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("text_config.{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(config_error(
                file,
                format!(
                    "text_config.num_attention_heads {} is not a multiple of \
                     num_key_value_heads {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        if !(0..self.altup_num_inputs).contains(&self.altup_active_idx) {
            return Err(config_error(
                file,
                format!(
                    "text_config.altup_active_idx is {}; it must name one of the \
                     altup_num_inputs ({}) streams",
                    self.altup_active_idx, self.altup_num_inputs
                ),
            ));
        }
        Ok(())
    }

    fn check_layer_types(&self, file: &str) -> Result<()> {
        let layers = self.num_hidden_layers;
        let Some(types) = &self.layer_types else {
            return Err(config_error(
                file,
                format!(
                    "text_config.layer_types is missing; Gemma 3n needs one \
                     \"{SLIDING_ATTENTION}\" or \"{FULL_ATTENTION}\" per layer ({layers})"
                ),
            ));
        };
        if types.len() != layers as usize {
            return Err(config_error(
                file,
                format!(
                    "text_config.layer_types has {} entries for num_hidden_layers {layers}; \
                     give one per layer",
                    types.len()
                ),
            ));
        }
        if let Some((i, t)) = types
            .iter()
            .enumerate()
            .find(|(_, t)| *t != SLIDING_ATTENTION && *t != FULL_ATTENTION)
        {
            return Err(config_error(
                file,
                format!(
                    "text_config.layer_types[{i}] is \"{t}\"; expected \
                     \"{SLIDING_ATTENTION}\" or \"{FULL_ATTENTION}\""
                ),
            ));
        }
        let shared = self.num_kv_shared_layers;
        if !(0..layers).contains(&shared) {
            return Err(config_error(
                file,
                format!(
                    "text_config.num_kv_shared_layers is {shared}; it must be at least 0 and \
                     below num_hidden_layers ({layers})"
                ),
            ));
        }
        let concrete = &types[..(layers - shared) as usize];
        for kind in [SLIDING_ATTENTION, FULL_ATTENTION] {
            if !concrete.iter().any(|t| t == kind) {
                return Err(config_error(
                    file,
                    format!(
                        "text_config.layer_types has no \"{kind}\" among the first {} layers \
                         (those not sharing KV, num_kv_shared_layers {shared}); Gemma 3n needs \
                         both kinds there",
                        concrete.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_activation_sparsity(&self, file: &str) -> Result<()> {
        let Some(pattern) = &self.activation_sparsity_pattern else {
            return Ok(());
        };
        if pattern.len() != self.num_hidden_layers as usize {
            return Err(config_error(
                file,
                format!(
                    "text_config.activation_sparsity_pattern has {} entries for \
                     num_hidden_layers {}; give one per layer",
                    pattern.len(),
                    self.num_hidden_layers
                ),
            ));
        }
        if let Some((i, p)) = pattern
            .iter()
            .enumerate()
            .find(|(_, p)| !(0.0..1.0).contains(*p))
        {
            return Err(config_error(
                file,
                format!(
                    "text_config.activation_sparsity_pattern[{i}] is {p}; it must be in [0, 1)"
                ),
            ));
        }
        Ok(())
    }

    /// `layer_types`, empty when absent (a config that passed
    /// [`TextConfig::validate`] has them).
    pub fn layer_types(&self) -> &[String] {
        self.layer_types.as_deref().unwrap_or(&[])
    }

    /// Whether layer `i` is a sliding-window layer (Python:
    /// `layer_types[i] == "sliding_attention"`).
    pub fn is_sliding(&self, i: usize) -> bool {
        self.layer_types().get(i).map(String::as_str) == Some(SLIDING_ATTENTION)
    }

    /// The first layer reading another layer's KV (Python:
    /// `first_kv_shared_layer_idx`).
    pub fn first_kv_shared_layer_idx(&self) -> i32 {
        self.num_hidden_layers - self.num_kv_shared_layers
    }
}

/// Python: `ModelConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The language model.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// The audio encoder.
    pub audio_config: AudioConfig,
    /// `model_type` (`gemma3n`).
    pub model_type: String,
    /// `vocab_size` (257152).
    pub vocab_size: i32,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// `image_token_index` (262145).
    pub image_token_index: i32,
    /// `<audio_soft_token>` (262273).
    pub audio_token_id: i32,
    /// `<image_soft_token>` (262145).
    pub image_token_id: i32,
    /// `hidden_size` (2048).
    pub hidden_size: i32,
    /// `<pad>` (0).
    pub pad_token_id: i32,
    /// Soft tokens per image (256).
    pub vision_soft_tokens_per_image: i32,
    /// Soft tokens per audio clip (188).
    pub audio_soft_tokens_per_image: i32,
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
    audio_token_id: i32,
    image_token_id: i32,
    hidden_size: i32,
    pad_token_id: i32,
    vision_soft_tokens_per_image: i32,
    audio_soft_tokens_per_image: i32,
    eos_token_id: Option<OneOrMany>,
}

impl Default for RootFields {
    fn default() -> Self {
        RootFields {
            model_type: None,
            vocab_size: 257152,
            ignore_index: -100,
            image_token_index: 262145,
            audio_token_id: 262273,
            image_token_id: 262145,
            hidden_size: 2048,
            pad_token_id: 0,
            vision_soft_tokens_per_image: 256,
            audio_soft_tokens_per_image: 188,
            eos_token_id: None,
        }
    }
}

impl ModelConfig {
    /// Builds the config from the parsed `config.json` object; `file` names
    /// it in errors. `text_config` is required; a missing `vision_config`
    /// or `audio_config` is its defaults (Python's loader passes `{}`).
    pub fn from_map(root: Map<String, Value>, file: &str) -> Result<ModelConfig> {
        let text_config = match root.get("text_config") {
            Some(Value::Object(m)) => TextConfig::from_map(m, file)?,
            _ => {
                return Err(config_error(
                    file,
                    "no \"text_config\" object; Gemma 3n keeps its language model's \
                     configuration there"
                        .into(),
                ));
            }
        };
        let vision_config = from_object(root.get("vision_config"), file, "vision_config")?;
        let audio_config = from_object(root.get("audio_config"), file, "audio_config")?;
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, e.to_string()))?;
        let model_type = fields.model_type.ok_or_else(|| {
            config_error(file, "missing model_type (expected \"gemma3n\")".into())
        })?;
        Ok(ModelConfig {
            text_config,
            vision_config,
            audio_config,
            model_type,
            vocab_size: fields.vocab_size,
            ignore_index: fields.ignore_index,
            image_token_index: fields.image_token_index,
            audio_token_id: fields.audio_token_id,
            image_token_id: fields.image_token_id,
            hidden_size: fields.hidden_size,
            pad_token_id: fields.pad_token_id,
            vision_soft_tokens_per_image: fields.vision_soft_tokens_per_image,
            audio_soft_tokens_per_image: fields.audio_soft_tokens_per_image,
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        })
    }
}

/// Python: `MultiQueryAttentionBlockConfig` (a MobileNetV5 block), with
/// Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct MultiQueryAttentionBlockConfig {
    /// Heads (8).
    pub num_heads: i32,
    /// Key/value width (16).
    pub kv_dim: i32,
    /// Key/value downsampling stride (1).
    pub kv_strides: i32,
    /// Average-pool the keys/values (false).
    pub mmqa_avg_pool_kv: bool,
    /// Dropout (0).
    pub mmqa_dropout: f32,
    /// Depthwise kernel (3).
    pub mmqa_dw_kernel_size: i32,
    /// Part of the multi-scale fusion (false).
    pub is_multiscale: bool,
}

impl Default for MultiQueryAttentionBlockConfig {
    fn default() -> Self {
        MultiQueryAttentionBlockConfig {
            num_heads: 8,
            kv_dim: 16,
            kv_strides: 1,
            mmqa_avg_pool_kv: false,
            mmqa_dropout: 0.0,
            mmqa_dw_kernel_size: 3,
            is_multiscale: false,
        }
    }
}

/// Python: `UniversalInvertedResidualConfig` (a MobileNetV5 block), with
/// Python's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct UniversalInvertedResidualConfig {
    /// Depthwise kernel before the expansion (0: none).
    pub start_dw_kernel_size: i32,
    /// Depthwise kernel after the expansion (0: none).
    pub mid_dw_kernel_size: i32,
    /// Output channels (32).
    pub filters: i32,
    /// Stride (1).
    pub strides: i32,
    /// Expansion ratio (4).
    pub expand_ratio: f32,
    /// Part of the multi-scale fusion (false).
    pub is_multiscale: bool,
}

impl Default for UniversalInvertedResidualConfig {
    fn default() -> Self {
        UniversalInvertedResidualConfig {
            start_dw_kernel_size: 0,
            mid_dw_kernel_size: 0,
            filters: 32,
            strides: 1,
            expand_ratio: 4.0,
            is_multiscale: false,
        }
    }
}

/// Python: `EdgeResidualConfig` (a MobileNetV5 block), with Python's
/// defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EdgeResidualConfig {
    /// Kernel (3).
    pub kernel_size: i32,
    /// Output channels (32).
    pub filters: i32,
    /// Stride (1).
    pub strides: i32,
    /// Expansion ratio (4).
    pub expand_ratio: f32,
    /// Part of the multi-scale fusion (false).
    pub is_multiscale: bool,
}

impl Default for EdgeResidualConfig {
    fn default() -> Self {
        EdgeResidualConfig {
            kernel_size: 3,
            filters: 32,
            strides: 1,
            expand_ratio: 4.0,
            is_multiscale: false,
        }
    }
}
