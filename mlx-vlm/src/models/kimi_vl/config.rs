//! `mlx_vlm/models/kimi_vl/config.py`: the configuration of Kimi-VL
//! checkpoints (a MoonViT tower and a DeepSeek-V3 decoder).
//!
//! As in Python, the vision tower reads `depth`, `embed_dim` and
//! `num_heads` (a Hugging Face `vision_config`'s `num_hidden_layers` and
//! `num_attention_heads` are ignored there, the defaults being those of the
//! released model); every field has Python's default.
//!
//! Divergences from Python (stricter checks, each an
//! [`Error::Config`](crate::Error::Config) naming the key and the fix,
//! where Python fails later in a reshape, a `topk` or an `argpartition`):
//! sizes must be positive; the routed experts must split evenly into
//! `n_group` groups of at least two (Python's group score sums each
//! group's top two); `topk_group` must be at most `n_group` and
//! `num_experts_per_tok` at most the experts the chosen groups hold;
//! `topk_method` must be `noaux_tc` (Python asserts it); the vision heads
//! must divide `embed_dim` into heads whose size is a multiple of 4 (the
//! 2-D RoPE); `merge_kernel_size` must be two positive ints.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::models::base::{OneOrMany, config_error};

/// Python: `TextConfig` (`deepseek_v3`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TextConfig {
    /// `model_type` (`deepseek_v3`).
    pub model_type: String,
    /// Vocabulary size (102400).
    pub vocab_size: i32,
    /// Width of the decoder (4096).
    pub hidden_size: i32,
    /// Width of the dense MLPs (11008).
    pub intermediate_size: i32,
    /// Width of each routed expert (1407).
    pub moe_intermediate_size: i32,
    /// Decoder layers (30).
    pub num_hidden_layers: i32,
    /// Attention heads (32).
    pub num_attention_heads: i32,
    /// Key/value heads (32; the attention does not use it).
    pub num_key_value_heads: Option<i32>,
    /// Shared experts: their MLP is `moe_intermediate_size` times this wide.
    pub n_shared_experts: Option<i32>,
    /// Routed experts; `None` makes every layer dense.
    pub n_routed_experts: Option<i32>,
    /// Factor on the chosen experts' weights (1.0).
    pub routed_scaling_factor: f32,
    /// Rank of the compressed keys and values (512).
    pub kv_lora_rank: i32,
    /// Rank of the compressed queries (1536); `None`: one query projection.
    pub q_lora_rank: Option<i32>,
    /// Rotary features per head (64).
    pub qk_rope_head_dim: i32,
    /// Value features per head (128).
    pub v_head_dim: i32,
    /// Non-rotary query/key features per head (128).
    pub qk_nope_head_dim: i32,
    /// The router's method (`noaux_tc`, the only one Python supports).
    pub topk_method: String,
    /// The router's score function (`sigmoid`; Python applies a sigmoid
    /// whatever it says).
    pub scoring_func: String,
    /// Whether the chosen experts' weights are renormalised (true).
    pub norm_topk_prob: bool,
    /// Expert groups (`None`: one).
    pub n_group: Option<i32>,
    /// Groups a token's experts are chosen from.
    pub topk_group: Option<i32>,
    /// Experts per token.
    pub num_experts_per_tok: Option<i32>,
    /// Every `moe_layer_freq`-th layer is a mixture of experts (1).
    pub moe_layer_freq: i32,
    /// The first layers that stay dense (0).
    pub first_k_dense_replace: i32,
    /// `max_position_embeddings` (2048).
    pub max_position_embeddings: i32,
    /// RMS norm epsilon (1e-6).
    pub rms_norm_eps: f32,
    /// RoPE base (10000).
    pub rope_theta: f32,
    /// YaRN scaling (`factor`, `original_max_position_embeddings`,
    /// `beta_fast`, `beta_slow`, `mscale`, `mscale_all_dim`), or none.
    pub rope_scaling: Option<Map<String, Value>>,
    /// Biases on the attention projections (false).
    pub attention_bias: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            model_type: "deepseek_v3".into(),
            vocab_size: 102400,
            hidden_size: 4096,
            intermediate_size: 11008,
            moe_intermediate_size: 1407,
            num_hidden_layers: 30,
            num_attention_heads: 32,
            num_key_value_heads: Some(32),
            n_shared_experts: None,
            n_routed_experts: None,
            routed_scaling_factor: 1.0,
            kv_lora_rank: 512,
            q_lora_rank: Some(1536),
            qk_rope_head_dim: 64,
            v_head_dim: 128,
            qk_nope_head_dim: 128,
            topk_method: "noaux_tc".into(),
            scoring_func: "sigmoid".into(),
            norm_topk_prob: true,
            n_group: None,
            topk_group: None,
            num_experts_per_tok: None,
            moe_layer_freq: 1,
            first_k_dense_replace: 0,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_scaling: None,
            attention_bias: false,
        }
    }
}

/// The router settings of a configuration with routed experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeSettings {
    /// Routed experts.
    pub n_routed_experts: i32,
    /// Experts per token.
    pub top_k: i32,
    /// Expert groups (1 when the config has none).
    pub n_group: i32,
    /// Groups kept per token (`n_group` when the config has none).
    pub topk_group: i32,
}

impl TextConfig {
    /// Reads `text_config`; `file` names the configuration in errors.
    pub fn from_map(text: &Map<String, Value>, file: &str) -> Result<TextConfig> {
        let mut config: TextConfig = serde_json::from_value(Value::Object(text.clone()))
            .map_err(|e| config_error(file, format!("text_config: {e}")))?;
        // Python's __post_init__.
        if config.num_key_value_heads.is_none() {
            config.num_key_value_heads = Some(config.num_attention_heads);
        }
        let mut sizes = vec![
            ("vocab_size", config.vocab_size),
            ("hidden_size", config.hidden_size),
            ("intermediate_size", config.intermediate_size),
            ("num_hidden_layers", config.num_hidden_layers),
            ("num_attention_heads", config.num_attention_heads),
            ("kv_lora_rank", config.kv_lora_rank),
            ("qk_rope_head_dim", config.qk_rope_head_dim),
            ("v_head_dim", config.v_head_dim),
            ("qk_nope_head_dim", config.qk_nope_head_dim),
            ("moe_layer_freq", config.moe_layer_freq),
        ];
        if let Some(r) = config.q_lora_rank {
            sizes.push(("q_lora_rank", r));
        }
        for (key, value) in sizes {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("text_config.{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        if config.qk_rope_head_dim % 2 != 0 {
            return Err(config_error(
                file,
                format!(
                    "text_config.qk_rope_head_dim is {}; RoPE rotates pairs of features, give \
                     an even number",
                    config.qk_rope_head_dim
                ),
            ));
        }
        if config.topk_method != "noaux_tc" {
            return Err(config_error(
                file,
                format!(
                    "text_config.topk_method is {:?}; Kimi-VL supports only \"noaux_tc\"",
                    config.topk_method
                ),
            ));
        }
        if config.n_routed_experts.is_some() {
            config.moe_settings(file)?;
        }
        Ok(config)
    }

    /// The router settings, checked: experts that split evenly into groups
    /// of at least two, at most `n_group` groups kept, and at most as many
    /// experts per token as the kept groups hold. `None` without routed
    /// experts.
    pub fn moe_settings(&self, file: &str) -> Result<Option<MoeSettings>> {
        let Some(n) = self.n_routed_experts else {
            return Ok(None);
        };
        let err = |message: String| config_error(file, format!("text_config: {message}"));
        let top_k = self.num_experts_per_tok.ok_or_else(|| {
            err("n_routed_experts is set but num_experts_per_tok is not; give the experts each \
                 token uses"
                .into())
        })?;
        if self.moe_intermediate_size <= 0 {
            return Err(err(format!(
                "moe_intermediate_size is {}; it must be a positive integer",
                self.moe_intermediate_size
            )));
        }
        if n <= 0 || top_k <= 0 {
            return Err(err(format!(
                "n_routed_experts {n} and num_experts_per_tok {top_k} must be positive"
            )));
        }
        let n_group = self.n_group.unwrap_or(1);
        let topk_group = self.topk_group.unwrap_or(n_group);
        if n_group <= 0 || n % n_group != 0 {
            return Err(err(format!(
                "n_routed_experts {n} does not split into n_group {n_group} equal groups; give \
                 an n_group that divides it"
            )));
        }
        if n_group > 1 && n / n_group < 2 {
            return Err(err(format!(
                "n_group {n_group} leaves {} expert(s) per group; the router scores a group by \
                 its best two, give groups of at least two",
                n / n_group
            )));
        }
        if topk_group <= 0 || topk_group > n_group {
            return Err(err(format!(
                "topk_group {topk_group} is not between 1 and n_group {n_group}"
            )));
        }
        let available = if n_group > 1 {
            n / n_group * topk_group
        } else {
            n
        };
        if top_k > available {
            return Err(err(format!(
                "num_experts_per_tok {top_k} exceeds the {available} experts the router may \
                 choose from (n_routed_experts {n}, n_group {n_group}, topk_group {topk_group})"
            )));
        }
        Ok(Some(MoeSettings {
            n_routed_experts: n,
            top_k,
            n_group,
            topk_group,
        }))
    }

    /// Whether decoder layer `layer_idx` is a mixture of experts (Python:
    /// the condition in `DeepseekV3DecoderLayer.__init__`).
    pub fn is_moe_layer(&self, layer_idx: i32) -> bool {
        self.n_routed_experts.is_some()
            && layer_idx >= self.first_k_dense_replace
            && layer_idx % self.moe_layer_freq == 0
    }
}

/// Python: `VisionConfig` (`moonvit`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    /// `model_type` (`moonvit`; Python also accepts `qwen2_vl`).
    pub model_type: String,
    /// Encoder blocks (27).
    pub depth: i32,
    /// Width of the blocks (1152).
    pub embed_dim: i32,
    /// Width of the final norm and the merged features (1152).
    pub hidden_size: i32,
    /// Heads (16).
    pub num_heads: i32,
    /// Side of a patch in pixels (14).
    pub patch_size: i32,
    /// Input channels (3).
    pub num_channels: i32,
    /// Width of the blocks' MLP (4304).
    pub intermediate_size: i32,
    /// Side of the learned position-embedding grid (64; Python uses it for
    /// both sides).
    pub init_pos_emb_height: i32,
    /// Unused by Python (64).
    pub init_pos_emb_width: i32,
    /// `spatial_merge_size` (2), the merge kernel when none is given.
    pub spatial_merge_size: i32,
    /// Patches merged into one token, `[height, width]`.
    pub merge_kernel_size: Option<Vec<i32>>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "moonvit".into(),
            depth: 27,
            embed_dim: 1152,
            hidden_size: 1152,
            num_heads: 16,
            patch_size: 14,
            num_channels: 3,
            intermediate_size: 4304,
            init_pos_emb_height: 64,
            init_pos_emb_width: 64,
            spatial_merge_size: 2,
            merge_kernel_size: None,
        }
    }
}

impl VisionConfig {
    /// The merge kernel `[height, width]` (Python's `__post_init__`:
    /// `spatial_merge_size` on both sides when none is given).
    pub fn merge_kernel(&self) -> [i32; 2] {
        match self.merge_kernel_size.as_deref() {
            Some([h, w]) => [*h, *w],
            _ => [self.spatial_merge_size; 2],
        }
    }

    fn check(&self, file: &str) -> Result<()> {
        if !["moonvit", "qwen2_vl"].contains(&self.model_type.as_str()) {
            return Err(config_error(
                file,
                format!(
                    "vision_config.model_type is {:?}; Kimi-VL's tower is \"moonvit\"",
                    self.model_type
                ),
            ));
        }
        for (key, value) in [
            ("depth", self.depth),
            ("embed_dim", self.embed_dim),
            ("hidden_size", self.hidden_size),
            ("num_heads", self.num_heads),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("intermediate_size", self.intermediate_size),
            ("init_pos_emb_height", self.init_pos_emb_height),
            ("spatial_merge_size", self.spatial_merge_size),
        ] {
            if value <= 0 {
                return Err(config_error(
                    file,
                    format!("vision_config.{key} is {value}; it must be a positive integer"),
                ));
            }
        }
        if let Some(k) = &self.merge_kernel_size
            && (k.len() != 2 || k.iter().any(|&v| v <= 0))
        {
            return Err(config_error(
                file,
                format!("vision_config.merge_kernel_size is {k:?}; give two positive ints"),
            ));
        }
        let head_dim = self.embed_dim / self.num_heads;
        if self.embed_dim % self.num_heads != 0 || head_dim % 4 != 0 {
            return Err(config_error(
                file,
                format!(
                    "vision_config.embed_dim {} and num_heads {} give heads of {} features; the \
                     2-D RoPE needs whole heads of a multiple of 4",
                    self.embed_dim,
                    self.num_heads,
                    f64::from(self.embed_dim) / f64::from(self.num_heads)
                ),
            ));
        }
        if self.hidden_size != self.embed_dim {
            return Err(config_error(
                file,
                format!(
                    "vision_config.hidden_size {} differs from embed_dim {}; the final norm \
                     takes the blocks' output",
                    self.hidden_size, self.embed_dim
                ),
            ));
        }
        Ok(())
    }
}

/// Python: `ModelConfig`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    /// The language model.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// `model_type` (`kimi_vl`).
    pub model_type: String,
    /// `ignore_index` (-100).
    pub ignore_index: i32,
    /// `vocab_size` (128259).
    pub vocab_size: i32,
    /// `scale_factor` (2).
    pub scale_factor: i32,
    /// `<|media_pad|>` (163606).
    pub media_placeholder_token_id: i32,
    /// The image token (`media_placeholder_token_id` when not given).
    pub image_token_index: i32,
    /// End-of-sequence tokens (an int or a list in the file).
    pub eos_token_id: Option<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RootFields {
    model_type: Option<String>,
    ignore_index: i32,
    vocab_size: i32,
    scale_factor: i32,
    media_placeholder_token_id: i32,
    image_token_index: Option<i32>,
    eos_token_id: Option<OneOrMany>,
}

impl Default for RootFields {
    fn default() -> Self {
        RootFields {
            model_type: None,
            ignore_index: -100,
            vocab_size: 128259,
            scale_factor: 2,
            media_placeholder_token_id: 163606,
            image_token_index: None,
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
                format!("no \"{key}\" object; Kimi-VL keeps its {key} there"),
            )),
        };
        let text_config = TextConfig::from_map(&object("text_config")?, file)?;
        let vision_config: VisionConfig =
            serde_json::from_value(Value::Object(object("vision_config")?))
                .map_err(|e| config_error(file, format!("vision_config: {e}")))?;
        vision_config.check(file)?;
        let fields: RootFields = serde_json::from_value(Value::Object(root))
            .map_err(|e| config_error(file, e.to_string()))?;
        let model_type = fields.model_type.ok_or_else(|| {
            config_error(file, "missing model_type (expected \"kimi_vl\")".into())
        })?;
        Ok(ModelConfig {
            text_config,
            vision_config,
            model_type,
            ignore_index: fields.ignore_index,
            vocab_size: fields.vocab_size,
            scale_factor: fields.scale_factor,
            media_placeholder_token_id: fields.media_placeholder_token_id,
            image_token_index: fields
                .image_token_index
                .unwrap_or(fields.media_placeholder_token_id),
            eos_token_id: fields.eos_token_id.map(OneOrMany::into_vec),
        })
    }
}
