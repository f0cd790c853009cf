//! `mlx_vlm/models/kimi_vl/language.py`: Kimi-VL's DeepSeek-V3 decoder:
//! multi-head latent attention (queries and keys/values through low-rank
//! projections, a rotary part shared by every head's key), YaRN RoPE,
//! mixture-of-experts layers routed by grouped sigmoid scores with a
//! correction bias (`noaux_tc`), shared experts, dense first layers.
//!
//! The cache holds what Python's holds: per layer a plain key/value cache
//! of the full keys `[batch, heads, seq, qk_nope_head_dim +
//! qk_rope_head_dim]` (each head's non-rotary key next to the shared
//! rotary key, broadcast) and values `[batch, heads, seq, v_head_dim]`.
//!
//! Divergences from Python:
//! - `group_expert_select` and `clipped_silu` are not compiled (the same
//!   arithmetic; MLX's compiler may fuse it differently in the last bit).
//! - `n_group` absent is one group (Python compares `None > 1` and fails);
//!   router settings that do not fit are typed errors at load
//!   ([`TextConfig::moe_settings`]).
//! - `LanguageModel.sanitize`: a layer whose per-expert weights are
//!   incomplete is a typed error naming the first missing key (Python: a
//!   `KeyError`).
//! - Pipeline-parallel fields (`start_idx`, `end_idx`) are not ported.

use std::collections::HashMap;

use mlx_rs::fast::RopeOffset;
use mlx_rs::nn::{Embedding, Item, ItemMut, Linear, Module, Param, RMSNorm, RoPE};
use mlx_rs::{Array, Dtype, fast, idx, ops};

use super::config::{MoeSettings, TextConfig};
use crate::models::base::{self, AttentionMask};
use crate::models::batch_layer_cache::{BatchLayerCache, decode_step};
use crate::models::cache::{Cache, CachedKv};
use crate::models::mlp::{DeepseekMLP, deepseek_mlp};
use crate::models::rope_utils::CachePosition;
use crate::models::switch_layers::SwitchGLU;
use crate::{Error, Result};

/// Python: `yarn_find_correction_dim`.
pub fn yarn_find_correction_dim(
    num_rotations: f64,
    dim: f64,
    base: f64,
    max_position_embeddings: f64,
) -> f64 {
    (dim * (max_position_embeddings / (num_rotations * 2.0 * std::f64::consts::PI)).ln())
        / (2.0 * base.ln())
}

/// Python: `yarn_find_correction_range`.
pub fn yarn_find_correction_range(
    low_rot: f64,
    high_rot: f64,
    dim: i32,
    base: f64,
    max_position_embeddings: f64,
) -> (f64, f64) {
    let d = f64::from(dim);
    let low = yarn_find_correction_dim(low_rot, d, base, max_position_embeddings).floor();
    let high = yarn_find_correction_dim(high_rot, d, base, max_position_embeddings).ceil();
    (low.max(0.0), high.min(d - 1.0))
}

/// Python: `yarn_get_mscale`.
pub fn yarn_get_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        return 1.0;
    }
    0.1 * mscale * scale.ln() + 1.0
}

/// Python: `yarn_linear_ramp_mask`.
pub fn yarn_linear_ramp_mask(min_val: f64, mut max_val: f64, dim: i32) -> Result<Array> {
    if min_val == max_val {
        max_val += 0.001; // Prevent singularity
    }
    let linear = ops::divide(
        &ops::subtract(&ops::arange(0, dim, 1, Some(Dtype::Float32))?, min_val as f32)?,
        (max_val - min_val) as f32,
    )?;
    Ok(ops::clip(&linear, 0.0f32, 1.0f32)?)
}

/// Python: `DeepseekV3YarnRotaryEmbedding`: traditional RoPE with YaRN's
/// blended frequencies, the input scaled by `mscale` first.
#[derive(Debug, Clone)]
pub struct DeepseekV3YarnRotaryEmbedding {
    /// Python: `mscale`.
    pub mscale: f32,
    /// Python: `_freqs`, `[dim / 2]`.
    pub freqs: Array,
}

/// The YaRN settings of `rope_scaling` (Python's keyword defaults for the
/// absent ones).
#[derive(Debug, Clone, Copy)]
pub struct YarnSettings {
    /// `factor`.
    pub scaling_factor: f64,
    /// `original_max_position_embeddings` (4096).
    pub original_max_position_embeddings: f64,
    /// `beta_fast` (32).
    pub beta_fast: f64,
    /// `beta_slow` (1).
    pub beta_slow: f64,
    /// `mscale` (1).
    pub mscale: f64,
    /// `mscale_all_dim` (0).
    pub mscale_all_dim: f64,
}

impl DeepseekV3YarnRotaryEmbedding {
    /// Python: `DeepseekV3YarnRotaryEmbedding(dim, base=..., **rope_kwargs)`.
    pub fn new(dim: i32, base: f32, s: &YarnSettings) -> Result<Self> {
        let mscale = yarn_get_mscale(s.scaling_factor, s.mscale)
            / yarn_get_mscale(s.scaling_factor, s.mscale_all_dim);
        let exponents = ops::divide(&ops::arange(0, dim, 2, Some(Dtype::Float32))?, dim as f32)?;
        let freq_extra = ops::power(base, &exponents)?;
        let freq_inter = ops::multiply(s.scaling_factor as f32, &freq_extra)?;
        let (low, high) = yarn_find_correction_range(
            s.beta_fast,
            s.beta_slow,
            dim,
            f64::from(base),
            s.original_max_position_embeddings,
        );
        let freq_mask = ops::subtract(1.0f32, &yarn_linear_ramp_mask(low, high, dim / 2)?)?;
        let numerator = ops::multiply(&freq_inter, &freq_extra)?;
        let denominator = ops::add(
            &ops::multiply(&freq_inter, &freq_mask)?,
            &ops::multiply(&freq_extra, &ops::subtract(1.0f32, &freq_mask)?)?,
        )?;
        Ok(DeepseekV3YarnRotaryEmbedding {
            mscale: mscale as f32,
            freqs: ops::divide(&numerator, &denominator)?,
        })
    }

    /// Python: `DeepseekV3YarnRotaryEmbedding.__call__(x, offset)`; an
    /// array `offset` rotates each row from its own position.
    pub fn forward<'a>(&self, x: &Array, offset: impl Into<RopeOffset<'a>>) -> Result<Array> {
        let x = if self.mscale != 1.0 {
            ops::multiply(self.mscale, x)?
        } else {
            x.clone()
        };
        let dims = x.shape().last().copied().unwrap_or(0);
        Ok(fast::rope(
            &x,
            dims,
            true,
            None,
            1.0,
            offset,
            Some(&self.freqs),
        )?)
    }
}

/// The attention's rotary embedding: YaRN with `rope_scaling`, else
/// traditional `nn.RoPE`.
#[derive(Debug, Clone)]
pub enum Rope {
    /// `DeepseekV3YarnRotaryEmbedding`.
    Yarn(DeepseekV3YarnRotaryEmbedding),
    /// `nn.RoPE(qk_rope_head_dim, base=rope_theta, traditional=True)`.
    Plain(RoPE),
}

impl Rope {
    /// The embedding applied at `offset` (one for every row, or an array
    /// of one a row).
    pub fn forward<'a>(&self, x: &Array, offset: impl Into<RopeOffset<'a>>) -> Result<Array> {
        match self {
            Rope::Yarn(r) => r.forward(x, offset),
            Rope::Plain(r) => Ok(r.forward(x, offset)?),
        }
    }
}

/// Python: `clipped_silu(x, gate)`: `clip(silu(gate), -100, 100) * x`, a
/// SiLU that does not overflow float16.
pub fn clipped_silu(x: &Array, gate: &Array) -> Result<Array> {
    let silu = ops::multiply(gate, &ops::sigmoid(gate)?)?;
    Ok(ops::multiply(&ops::clip(&silu, -100.0f32, 100.0f32)?, x)?)
}

/// Python: `DeepseekV3Attention` (multi-head latent attention).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct DeepseekV3Attention {
    /// Heads.
    #[module(skip)]
    pub num_heads: i32,
    /// Rotary features per head.
    #[module(skip)]
    pub qk_rope_head_dim: i32,
    /// Rank of the compressed keys and values.
    #[module(skip)]
    pub kv_lora_rank: i32,
    /// Value features per head.
    #[module(skip)]
    pub v_head_dim: i32,
    /// Non-rotary query/key features per head.
    #[module(skip)]
    pub qk_nope_head_dim: i32,
    /// `qk_nope_head_dim + qk_rope_head_dim`.
    #[module(skip)]
    pub q_head_dim: i32,
    /// `q_head_dim ** -0.5`, times YaRN's `mscale_all_dim` factor squared.
    #[module(skip)]
    pub scale: f32,
    /// `hidden → heads * q_head_dim`, when `q_lora_rank` is `None`.
    pub q_proj: Option<Linear>,
    /// `hidden → q_lora_rank`, with a rank.
    pub q_a_proj: Option<Linear>,
    /// Norm of the compressed query, with a rank.
    pub q_a_layernorm: Option<RMSNorm>,
    /// `q_lora_rank → heads * q_head_dim`, with a rank.
    pub q_b_proj: Option<Linear>,
    /// `hidden → kv_lora_rank + qk_rope_head_dim`.
    pub kv_a_proj_with_mqa: Linear,
    /// Norm of the compressed keys/values.
    pub kv_a_layernorm: RMSNorm,
    /// `kv_lora_rank → heads * (qk_nope_head_dim + v_head_dim)`.
    pub kv_b_proj: Linear,
    /// `heads * v_head_dim → hidden`.
    pub o_proj: Linear,
    /// The rotary embedding.
    #[module(skip)]
    pub rope: Rope,
}

/// `rope_scaling[key]` as a number, or `default`; `file` names the
/// configuration in errors.
fn scaling_number(
    scaling: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    default: Option<f64>,
) -> Result<f64> {
    match scaling.get(key) {
        Some(v) => v.as_f64().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "text_config.rope_scaling.{key} is {v}; give a number"
            ))
        }),
        None => default.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "text_config.rope_scaling has no {key}; YaRN needs it (e.g. \"{key}\": 32.0)"
            ))
        }),
    }
}

impl DeepseekV3Attention {
    /// Python: `DeepseekV3Attention(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        let num_heads = config.num_attention_heads;
        let q_head_dim = config.qk_nope_head_dim + config.qk_rope_head_dim;
        let mut scale = f64::from(q_head_dim).powf(-0.5);
        let (q_proj, q_a_proj, q_a_layernorm, q_b_proj) = match config.q_lora_rank {
            None => (
                Some(Linear::new(hidden, num_heads * q_head_dim, false)?),
                None,
                None,
                None,
            ),
            Some(rank) => (
                None,
                Some(Linear::new(hidden, rank, config.attention_bias)?),
                Some(RMSNorm::new(rank, 1e-6)?),
                Some(Linear::new(rank, num_heads * q_head_dim, false)?),
            ),
        };
        let rope = match &config.rope_scaling {
            Some(scaling) => {
                let factor = scaling_number(scaling, "factor", None)?;
                let mscale_all_dim = scaling_number(scaling, "mscale_all_dim", Some(0.0))?;
                if mscale_all_dim != 0.0 {
                    let m = yarn_get_mscale(factor, mscale_all_dim);
                    scale = scale * m * m;
                }
                let settings = YarnSettings {
                    scaling_factor: factor,
                    original_max_position_embeddings: scaling_number(
                        scaling,
                        "original_max_position_embeddings",
                        Some(4096.0),
                    )?,
                    beta_fast: scaling_number(scaling, "beta_fast", Some(32.0))?,
                    beta_slow: scaling_number(scaling, "beta_slow", Some(1.0))?,
                    mscale: scaling_number(scaling, "mscale", Some(1.0))?,
                    mscale_all_dim,
                };
                Rope::Yarn(DeepseekV3YarnRotaryEmbedding::new(
                    config.qk_rope_head_dim,
                    config.rope_theta,
                    &settings,
                )?)
            }
            None => Rope::Plain(RoPE::new(
                config.qk_rope_head_dim,
                true,
                config.rope_theta,
                1.0,
            )),
        };
        Ok(DeepseekV3Attention {
            num_heads,
            qk_rope_head_dim: config.qk_rope_head_dim,
            kv_lora_rank: config.kv_lora_rank,
            v_head_dim: config.v_head_dim,
            qk_nope_head_dim: config.qk_nope_head_dim,
            q_head_dim,
            scale: scale as f32,
            q_proj,
            q_a_proj,
            q_a_layernorm,
            q_b_proj,
            kv_a_proj_with_mqa: Linear::new(
                hidden,
                config.kv_lora_rank + config.qk_rope_head_dim,
                config.attention_bias,
            )?,
            kv_a_layernorm: RMSNorm::new(config.kv_lora_rank, 1e-6)?,
            kv_b_proj: Linear::new(
                config.kv_lora_rank,
                num_heads * (config.qk_nope_head_dim + config.v_head_dim),
                false,
            )?,
            o_proj: Linear::new(num_heads * config.v_head_dim, hidden, config.attention_bias)?,
            rope,
        })
    }

    /// Python: `DeepseekV3Attention.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        let shape = x.shape().to_vec();
        let [b, l, _] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "DeepseekV3Attention takes [batch, len, hidden], got {shape:?}"
            )));
        };
        let q = match (&self.q_proj, &self.q_a_proj, &self.q_a_layernorm, &self.q_b_proj) {
            (Some(q_proj), ..) => q_proj.forward(x)?,
            (None, Some(a), Some(norm), Some(b)) => b.forward(&norm.forward(&a.forward(x)?)?)?,
            _ => {
                return Err(Error::InvalidArgument(
                    "DeepseekV3Attention has neither q_proj nor q_a_proj, q_a_layernorm and \
                     q_b_proj; build it with DeepseekV3Attention::new"
                        .into(),
                ));
            }
        };
        let q = q
            .reshape(&[b, l, self.num_heads, self.q_head_dim])?
            .transpose([0, 2, 1, 3])?;
        let q_parts = ops::split(&q, [self.qk_nope_head_dim], -1)?;
        let (q_nope, q_pe) = (&q_parts[0], &q_parts[1]);
        let compressed = self.kv_a_proj_with_mqa.forward(x)?;
        let kv_parts = ops::split(&compressed, [self.kv_lora_rank], -1)?;
        let (compressed_kv, k_pe) = (&kv_parts[0], &kv_parts[1]);
        let k_pe = k_pe
            .reshape(&[b, l, 1, self.qk_rope_head_dim])?
            .transpose([0, 2, 1, 3])?;
        let kv = self
            .kv_b_proj
            .forward(&self.kv_a_layernorm.forward(compressed_kv)?)?;
        let kv = kv
            .reshape(&[b, l, self.num_heads, -1])?
            .transpose([0, 2, 1, 3])?;
        let kv_parts = ops::split(&kv, [self.qk_nope_head_dim], -1)?;
        let (k_nope, values) = (&kv_parts[0], &kv_parts[1]);

        let position = CachePosition::of(cache.as_deref())?;
        let q_pe = self.rope.forward(q_pe, position.offset())?;
        let k_pe = self.rope.forward(&k_pe, position.offset())?;
        let k_pe = ops::broadcast_to(&k_pe, &[b, self.num_heads, l, self.qk_rope_head_dim])?;
        let keys = ops::concatenate(&[k_nope, &k_pe], -1)?;
        let cached = match cache {
            Some(cache) => cache.update_and_fetch_kv(&keys, values)?,
            None => CachedKv::Plain(keys, values.clone()),
        };
        let queries = ops::concatenate(&[q_nope, &q_pe], -1)?;
        let output =
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, mask, None)?;
        let output = output.transpose([0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok(self.o_proj.forward(&output)?)
    }
}

/// Python: `group_expert_select(gates, e_score_correction_bias, top_k,
/// n_group, topk_group, routed_scaling_factor, norm_topk_prob)`: each
/// token's experts `[..., top_k]` and their weights (float32).
pub fn group_expert_select(
    gates: &Array,
    e_score_correction_bias: &Array,
    settings: &MoeSettings,
    routed_scaling_factor: f32,
    norm_topk_prob: bool,
) -> Result<(Array, Array)> {
    let top_k = settings.top_k;
    let n_group = settings.n_group;
    let orig_scores = ops::sigmoid(&gates.as_type(Dtype::Float32)?)?;
    let mut scores = ops::add(&orig_scores, e_score_correction_bias)?;
    let inds = if n_group > 1 {
        scores = ops::unflatten(&scores, -1, &[n_group, -1])?;
        let group_scores = ops::sum(&ops::topk(&scores, 2, Some(-1))?, -1, true)?;
        let k = n_group - settings.topk_group;
        if k > 0 {
            let group_idx = ops::argpartition(&group_scores, k - 1, Some(-2))?
                .index(idx![mlx_rs::Ellipsis, ..k, ..])?;
            scores = ops::put_along_axis(&scores, &group_idx, &Array::scalar(0.0f32), -2)?;
        }
        scores = ops::flatten(&scores, -2, -1)?;
        ops::argpartition(&ops::negative(&scores)?, top_k - 1, Some(-1))?
            .index(idx![mlx_rs::Ellipsis, ..top_k])?
    } else {
        ops::argsort(&scores, Some(-1))?.index(idx![mlx_rs::Ellipsis, -top_k..])?
    };
    let mut scores = ops::take_along_axis(&orig_scores, &inds, -1)?;
    if top_k > 1 && norm_topk_prob {
        let denominator = ops::sum(&scores, -1, true)?;
        scores = ops::divide(&scores, &denominator)?;
    }
    let scores = ops::multiply(&scores, routed_scaling_factor)?;
    Ok((inds, scores))
}

/// Python: `MoEGate`: the router.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MoEGate {
    /// The router's settings.
    #[module(skip)]
    pub settings: MoeSettings,
    /// Python: `routed_scaling_factor`.
    #[module(skip)]
    pub routed_scaling_factor: f32,
    /// Python: `norm_topk_prob`.
    #[module(skip)]
    pub norm_topk_prob: bool,
    /// `[n_routed_experts, hidden]` (a plain parameter: never quantized).
    pub weight: Param,
    /// `[n_routed_experts]`, added to the scores for the choice only.
    pub e_score_correction_bias: Param,
}

impl MoEGate {
    /// Python: `MoEGate(config)`.
    pub fn new(config: &TextConfig, settings: MoeSettings) -> Result<Self> {
        let n = settings.n_routed_experts;
        Ok(MoEGate {
            settings,
            routed_scaling_factor: config.routed_scaling_factor,
            norm_topk_prob: config.norm_topk_prob,
            weight: Param::new(ops::zeros(&[n, config.hidden_size], Dtype::Float32)?),
            e_score_correction_bias: Param::new(ops::zeros(&[n], Dtype::Float32)?),
        })
    }

    /// Python: `MoEGate.__call__(x)`: experts and weights per token.
    pub fn forward(&self, x: &Array) -> Result<(Array, Array)> {
        let gates = ops::matmul(x, &self.weight.transpose([1, 0])?)?;
        group_expert_select(
            &gates,
            &self.e_score_correction_bias,
            &self.settings,
            self.routed_scaling_factor,
            self.norm_topk_prob,
        )
    }
}

/// Python: `DeepseekV3MoE`: routed experts plus the shared ones.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct DeepseekV3MoE {
    /// The routed experts (activation [`clipped_silu`]).
    pub switch_mlp: SwitchGLU,
    /// The router.
    pub gate: MoEGate,
    /// The shared experts, when `n_shared_experts` is set.
    pub shared_experts: Option<DeepseekMLP>,
}

impl DeepseekV3MoE {
    /// Python: `DeepseekV3MoE(config)`.
    pub fn new(config: &TextConfig, settings: MoeSettings) -> Result<Self> {
        Ok(DeepseekV3MoE {
            switch_mlp: SwitchGLU::with_activation(
                config.hidden_size,
                config.moe_intermediate_size,
                settings.n_routed_experts,
                clipped_silu,
                false,
            )?,
            gate: MoEGate::new(config, settings)?,
            shared_experts: config
                .n_shared_experts
                .map(|n| deepseek_mlp(config.hidden_size, config.moe_intermediate_size * n))
                .transpose()?,
        })
    }

    /// Python: `DeepseekV3MoE.__call__(x)`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (inds, scores) = self.gate.forward(x)?;
        let y = self.switch_mlp.forward(x, &inds)?;
        let weighted = ops::multiply(&y, &ops::expand_dims(&scores, -1)?)?;
        let mut y = ops::sum(&weighted, -2, false)?.as_type(y.dtype())?;
        if let Some(shared) = &self.shared_experts {
            y = ops::add(&y, &shared.forward(x)?)?;
        }
        Ok(y)
    }
}

/// A decoder layer's feed-forward block: the mixture of experts or the
/// dense MLP (Python: `DeepseekV3DecoderLayer.mlp`); its keys are the inner
/// block's.
#[derive(Debug, Clone)]
pub enum DecoderMlp {
    /// `DeepseekV3MLP(config)`.
    Dense(Box<DeepseekMLP>),
    /// `DeepseekV3MoE(config)`.
    Moe(Box<DeepseekV3MoE>),
}

impl DecoderMlp {
    /// The block applied to `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            DecoderMlp::Dense(m) => m.forward(x),
            DecoderMlp::Moe(m) => m.forward(x),
        }
    }
}

impl Module for DecoderMlp {
    fn items<'a>(&'a self, f: &mut dyn FnMut(&str, Item<'a>)) {
        match self {
            DecoderMlp::Dense(m) => m.items(f),
            DecoderMlp::Moe(m) => m.items(f),
        }
    }

    fn items_mut(&mut self, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        match self {
            DecoderMlp::Dense(m) => m.items_mut(f),
            DecoderMlp::Moe(m) => m.items_mut(f),
        }
    }
}

/// Python: `DeepseekV3DecoderLayer`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct DeepseekV3DecoderLayer {
    /// Self-attention.
    pub self_attn: DeepseekV3Attention,
    /// The feed-forward block.
    pub mlp: DecoderMlp,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm before the feed-forward block.
    pub post_attention_layernorm: RMSNorm,
}

impl DeepseekV3DecoderLayer {
    /// Python: `DeepseekV3DecoderLayer(config, layer_idx)`.
    pub fn new(config: &TextConfig, layer_idx: i32, moe: Option<MoeSettings>) -> Result<Self> {
        let mlp = match moe {
            Some(settings) if config.is_moe_layer(layer_idx) => {
                DecoderMlp::Moe(Box::new(DeepseekV3MoE::new(config, settings)?))
            }
            _ => DecoderMlp::Dense(Box::new(deepseek_mlp(
                config.hidden_size,
                config.intermediate_size,
            )?)),
        };
        Ok(DeepseekV3DecoderLayer {
            self_attn: DeepseekV3Attention::new(config)?,
            mlp,
            input_layernorm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
            post_attention_layernorm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `DeepseekV3DecoderLayer.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        let r = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, mask, cache)?;
        let h = ops::add(x, &r)?;
        let r = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok(ops::add(&h, &r)?)
    }
}

/// Python: `DeepseekV3Model`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct DeepseekV3Model {
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<DeepseekV3DecoderLayer>,
    /// Final norm.
    pub norm: RMSNorm,
}

impl DeepseekV3Model {
    /// Python: `DeepseekV3Model(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let moe = config.moe_settings("config.json")?;
        Ok(DeepseekV3Model {
            embed_tokens: Embedding::new(config.vocab_size, config.hidden_size)?,
            layers: (0..config.num_hidden_layers)
                .map(|i| DeepseekV3DecoderLayer::new(config, i, moe))
                .collect::<Result<Vec<_>>>()?,
            norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `DeepseekV3Model.__call__(x, inputs_embeds, cache, mask)`:
    /// the causal mask from the first cache unless `mask` is given; an
    /// empty `cache` is Python's `cache=None`.
    pub fn forward(
        &self,
        x: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        mask: Option<&AttentionMask>,
    ) -> Result<Array> {
        let h = match inputs_embeds {
            Some(e) => e.clone(),
            None => self.embed_tokens.forward(x)?,
        };
        if !cache.is_empty() && cache.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "DeepseekV3Model: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let n = h.shape().get(1).copied().unwrap_or(1);
        let own_mask;
        let mask = match mask {
            Some(m) => m,
            None => {
                own_mask = match cache.first() {
                    Some(c) => c.make_mask(n, None, false)?,
                    None => base::create_attention_mask(&h, None, false)?,
                };
                &own_mask
            }
        };
        let caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        self.forward_layers(h, mask, caches)
    }

    /// The layers and the final norm over `h`, with one cache per layer
    /// from `caches` while it lasts: the second half of Python's
    /// `DeepseekV3Model.__call__`, shared by [`DeepseekV3Model::forward`]
    /// and the batched decode.
    pub fn forward_layers<'c>(
        &self,
        mut h: Array,
        mask: &AttentionMask,
        mut caches: impl Iterator<Item = &'c mut dyn Cache>,
    ) -> Result<Array> {
        for layer in &self.layers {
            h = layer.forward(&h, mask, caches.next())?;
        }
        Ok(self.norm.forward(&h)?)
    }
}

/// Python: `LanguageModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// The decoder.
    pub model: DeepseekV3Model,
    /// The output layer.
    pub lm_head: Linear,
}

impl LanguageModel {
    /// Python: `LanguageModel(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(LanguageModel {
            config: config.clone(),
            model: DeepseekV3Model::new(config)?,
            lm_head: Linear::new(config.hidden_size, config.vocab_size, false)?,
        })
    }

    /// Logits (Python: `LanguageModel.__call__(...).logits`).
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        mask: Option<&AttentionMask>,
    ) -> Result<Array> {
        let out = self.model.forward(inputs, inputs_embeds, cache, mask)?;
        Ok(self.lm_head.forward(&out)?)
    }

    /// Logits `[rows, 1, vocab]` of one decode step of several requests
    /// (Python: `LanguageModel.__call__` on a list of `BatchKVCache`s):
    /// each row's (YaRN) RoPE at its own token count
    /// ([`CachePosition`], Python's array `cache.offset`), the mask of the
    /// first cache hiding each row's left padding (Python's
    /// `create_attention_mask(h, cache[0])`, `BatchKVCache.make_mask`); the
    /// experts route each row's token on its own.
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &[&mut ()],
    ) -> Result<Array> {
        let out = decode_step(
            "Kimi-VL decode_batch",
            inputs,
            cache,
            states.len(),
            &self.model.embed_tokens,
            self.model.layers.len(),
            |h, mask, caches| self.model.forward_layers(h, mask, caches),
        )?;
        Ok(self.lm_head.forward(&out)?)
    }

    /// Python: `LanguageModel.sanitize`: `rotary_emb` entries dropped, and
    /// each MoE layer's per-expert `mlp.experts.{e}.{gate,up,down}_proj.
    /// {weight,scales,biases}` stacked into `mlp.switch_mlp.*` (the Hugging
    /// Face layout); a layer with some experts missing is a typed error
    /// naming the first absent key.
    pub fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        let mut weights: HashMap<String, Array> = weights
            .into_iter()
            .filter(|(k, _)| !k.contains("rotary_emb"))
            .collect();
        let experts = self.config.n_routed_experts.unwrap_or(0);
        for l in 0..self.config.num_hidden_layers {
            let prefix = format!("language_model.model.layers.{l}");
            for m in ["gate_proj", "down_proj", "up_proj"] {
                for k in ["weight", "scales", "biases"] {
                    if !weights.contains_key(&format!("{prefix}.mlp.experts.0.{m}.{k}")) {
                        continue;
                    }
                    let mut to_join = Vec::with_capacity(experts.max(0) as usize);
                    for e in 0..experts {
                        let key = format!("{prefix}.mlp.experts.{e}.{m}.{k}");
                        let Some(w) = weights.remove(&key) else {
                            return Err(Error::Weights {
                                path: key.clone(),
                                message: format!(
                                    "{key} is missing; a Kimi-VL checkpoint holds every one of \
                                     text_config.n_routed_experts ({experts}) experts per MoE \
                                     layer"
                                ),
                            });
                        };
                        to_join.push(w);
                    }
                    weights.insert(
                        format!("{prefix}.mlp.switch_mlp.{m}.{k}"),
                        ops::stack(&to_join, 0)?,
                    );
                }
            }
        }
        Ok(weights)
    }

    /// Python: `LanguageModel.layers`.
    pub fn layers(&self) -> &[DeepseekV3DecoderLayer] {
        &self.model.layers
    }
}
