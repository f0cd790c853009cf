//! `mlx_vlm/models/gemma3n/language.py`: the Gemma 3n decoder, its items in
//! Python's order. Each layer predicts the 4 AltUp streams from the active
//! one, runs attention (sliding-window or global, per `layer_types`) and a
//! Laurel block on the active stream, corrects the streams with the result
//! and adds its per-layer input (a per-token embedding plus a projection of
//! the token embedding) to the other streams. The last
//! `num_kv_shared_layers` layers read the keys and values of the last
//! earlier layer of their type from its cache instead of computing their
//! own; the MLPs of some layers keep only the gaussian top-k of their gate
//! activations; the logits are softcapped.
//!
//! Divergences from Python:
//! - AltUp's coefficient layers are cast to float32 (and clipped) on each
//!   call, not overwritten in the module as Python does on its first call:
//!   the same values, without mutating the model (a quantized coefficient
//!   layer is an error; Python quantizes none, their width being 4);
//! - `n_to_process` is not taken: Python replaces it with the hidden
//!   states' length whenever it differs, so it never matters;
//! - Python's `cache.state` is [`cache_state`]: [`Cache::state`]'s keys and
//!   values cut to the cache's offset, as Python's `KVCache` and
//!   `RotatingKVCache` cut them; a quantized cache there is an error
//!   (unreachable: Python's Gemma 3n needs a sliding layer, whose rotating
//!   cache refuses `kv_bits` before any conversion, here and in Python);
//! - bad inputs (no ids and no embeddings, fewer caches than layers keeping
//!   their own KV, a cache of a KV-shared layer still empty) are typed
//!   errors where Python raises from deep inside;
//! - [`Gemma3Model::forward_with_layer_outputs`] (Rust only) also returns
//!   every decoder layer's output, for tests;
//! - the functions Python compiles (`gelu_topk`, `logit_softcap`) are not
//!   compiled (the same arithmetic).
//! - [`LanguageModel::forward`] returns the logits array (Python: a
//!   `LanguageModelOutput`); [`LanguageModel::logits`] (Rust only) is its
//!   output layer and softcap on given hidden states;
//!   [`LanguageModel::sanitize`] is an associated function (Python's
//!   ignores `self`);
//! - the layers keep the few configuration values they read instead of the
//!   whole `config`; [`Gemma3Model::new`] checks the configuration
//!   ([`TextConfig::validate`]) first.
//!
//! Python behaviours kept as they are (see `tests/gemma3n.rs`): without a
//! cache the KV-shared layers compute their own keys and values; with one,
//! their queries take the RoPE offset of the shared cache after the update
//! (the prompt's end, not its start); given per-layer inputs are sliced at
//! the first rotating cache's write index (`_idx`), not its offset.
//!
//! A batched decode step ([`Gemma3Model::decode_batch`], Python's
//! `GenerationBatch` over `BatchKVCache`/`BatchRotatingKVCache`) is
//! Python's: each row's keys and queries rotate at that row's own count
//! (a KV-shared layer's queries at its count after the shared cache's
//! update), and a KV-shared layer reads the batched keys and values,
//! left padding included, under the mask of its kind, which hides the
//! padding.

use std::collections::HashMap;

use mlx_rs::nn::{Embedding, Linear, Param, RMSNorm, RoPE, activations};
use mlx_rs::{Array, Dtype, fast, idx, ops};

use super::config::{FULL_ATTENTION, SLIDING_ATTENTION, TextConfig};
use crate::models::base::{self, AttentionMask};
use crate::models::BatchLayerCache;
use crate::models::cache::{Cache, CachedKv, KvCache, RotatingKvCache};
use crate::models::rope_utils::{initialize_rope, rope_from_cache};
use crate::{Error, Result};

/// The `[batch, len, hidden]` dimensions of `x`, or an error naming `what`.
fn batch_len(x: &Array, what: &str) -> Result<(i32, i32)> {
    match x.shape() {
        [b, l, _] => Ok((*b, *l)),
        shape => Err(Error::InvalidArgument(format!(
            "{what} takes [batch, len, hidden], got shape {shape:?}"
        ))),
    }
}

/// Python: `Gemma3nRMSNorm`: the norm computed in float32,
/// `x * rsqrt(mean(x²) + eps)`, scaled by `weight + scale_shift` when it
/// has a scale, cast back to `x`'s dtype. Used by the multimodal
/// embedders (Python's `gemma3n.py`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nRMSNorm {
    /// Epsilon.
    #[module(skip)]
    pub eps: f32,
    /// Added to the weight.
    #[module(skip)]
    pub scale_shift: f32,
    /// Whether there is a weight.
    #[module(skip)]
    pub with_scale: bool,
    /// `(dim,)`, ones; absent without a scale.
    pub weight: Option<Param>,
}

impl Gemma3nRMSNorm {
    /// Python: `Gemma3nRMSNorm(dim, eps, scale_shift, with_scale)`.
    pub fn new(dim: i32, eps: f32, scale_shift: f32, with_scale: bool) -> Result<Self> {
        let weight = if with_scale {
            Some(Param::new(ops::ones(&[dim], Dtype::Float32)?))
        } else {
            None
        };
        Ok(Gemma3nRMSNorm {
            eps,
            scale_shift,
            with_scale,
            weight,
        })
    }

    /// Python: `Gemma3nRMSNorm._norm`.
    fn norm(&self, x: &Array) -> Result<Array> {
        let mean_square = ops::square(x)?.mean(-1, true)?;
        Ok(ops::multiply(
            x,
            &ops::rsqrt(&ops::add(&mean_square, self.eps)?)?,
        )?)
    }

    /// Python: `Gemma3nRMSNorm.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut output = self.norm(&x.as_type(Dtype::Float32)?)?;
        if let (true, Some(weight)) = (self.with_scale, &self.weight) {
            output = ops::multiply(&output, &ops::add(&**weight, self.scale_shift)?)?;
        }
        Ok(output.as_type(x.dtype())?)
    }
}

/// Python: `RMSNoScale`: `mx.fast.rms_norm` without a weight.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct RMSNoScale {
    /// Epsilon.
    #[module(skip)]
    pub eps: f32,
}

impl RMSNoScale {
    /// Python: `RMSNoScale(eps)`.
    pub fn new(eps: f32) -> Self {
        RMSNoScale { eps }
    }

    /// Python: `RMSNoScale.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::rms_norm(x, None, self.eps)?)
    }
}

/// Python: `Gemma3nLaurelBlock` (Learned Augmented Residual Layer):
/// `x + norm(right(left(x)))`, a low-rank residual.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nLaurelBlock {
    /// Down to `laurel_rank`.
    pub linear_left: Linear,
    /// Back up to `hidden_size`.
    pub linear_right: Linear,
    /// Norm of the low-rank path.
    pub post_laurel_norm: RMSNorm,
}

impl Gemma3nLaurelBlock {
    /// Python: `Gemma3nLaurelBlock(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(Gemma3nLaurelBlock {
            linear_left: Linear::new(config.hidden_size, config.laurel_rank, false)?,
            linear_right: Linear::new(config.laurel_rank, config.hidden_size, false)?,
            post_laurel_norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `Gemma3nLaurelBlock.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let laurel_x = self.linear_right.forward(&self.linear_left.forward(x)?)?;
        let normed_laurel_x = self.post_laurel_norm.forward(&laurel_x)?;
        Ok(ops::add(x, &normed_laurel_x)?)
    }
}

/// Python's `cache.state` of a `KVCache` or `RotatingKVCache`: the keys
/// and values of [`Cache::state`], cut to the cache's offset when the
/// buffer is longer (what the cache's last `update_and_fetch` returned).
pub fn cache_state(cache: &dyn Cache) -> Result<(Array, Array)> {
    let state = cache.state();
    let [keys, values] = &state[..] else {
        return Err(Error::InvalidArgument(format!(
            "a KV-shared Gemma 3n layer found {} arrays in the cache it reads instead of keys \
             and values; the layer that owns the cache must run first in the same call",
            state.len()
        )));
    };
    let offset = cache.offset();
    let cut = |a: &Array| -> Result<Array> {
        match a.shape() {
            [_, _, len, _] if offset < *len => Ok(a.index(idx![.., .., ..offset, ..])?),
            [_, _, _, _] => Ok(a.clone()),
            shape => Err(Error::InvalidArgument(format!(
                "cache keys/values must be [batch, kv_heads, seq, head_dim], got {shape:?}"
            ))),
        }
    };
    Ok((cut(keys)?, cut(values)?))
}

/// Python: `Gemma3nAttention`: per-head query/key norms, a scale-free value
/// norm, attention scale 1, RoPE with the local base on sliding layers and
/// the global base and scaling on the others. A KV-shared layer with a
/// cache reads that cache's keys and values (see [`cache_state`]).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAttention {
    /// Whether this layer attends within the sliding window.
    #[module(skip)]
    pub is_sliding: bool,
    /// Query heads.
    #[module(skip)]
    pub n_heads: i32,
    /// Key/value heads.
    #[module(skip)]
    pub n_kv_heads: i32,
    /// Query heads per key/value head.
    #[module(skip)]
    pub repeats: i32,
    /// Features per head.
    #[module(skip)]
    pub head_dim: i32,
    /// The layer's index.
    #[module(skip)]
    pub layer_idx: i32,
    /// Attention scale (1).
    #[module(skip)]
    pub scale: f32,
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    /// Per-head query norm.
    pub q_norm: RMSNorm,
    /// Per-head key norm.
    pub k_norm: RMSNorm,
    /// Per-head value norm, without a weight.
    pub v_norm: RMSNoScale,
    /// Whether this layer reads another layer's keys and values.
    #[module(skip)]
    pub is_kv_shared_layer: bool,
    /// Rotary embedding (local or global base).
    #[module(skip)]
    pub rope: RoPE,
}

impl Gemma3nAttention {
    /// Python: `Gemma3nAttention(config, layer_idx, is_kv_shared_layer)`.
    pub fn new(config: &TextConfig, layer_idx: i32, is_kv_shared_layer: bool) -> Result<Self> {
        let is_sliding = config.is_sliding(layer_idx as usize);
        let dim = config.hidden_size;
        let (n_heads, n_kv_heads, head_dim) = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        );
        // Python passes traditional=False whatever rope_traditional says.
        let rope = if is_sliding {
            initialize_rope(head_dim, config.rope_local_base_freq, false, None)?
        } else {
            initialize_rope(
                head_dim,
                config.rope_theta,
                false,
                config.rope_scaling.as_ref(),
            )?
        };
        Ok(Gemma3nAttention {
            is_sliding,
            n_heads,
            n_kv_heads,
            repeats: n_heads / n_kv_heads.max(1),
            head_dim,
            layer_idx,
            scale: 1.0,
            q_proj: Linear::new(dim, n_heads * head_dim, false)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            o_proj: Linear::new(n_heads * head_dim, dim, false)?,
            q_norm: RMSNorm::new(head_dim, config.rms_norm_eps)?,
            k_norm: RMSNorm::new(head_dim, config.rms_norm_eps)?,
            v_norm: RMSNoScale::new(config.rms_norm_eps),
            is_kv_shared_layer,
            rope,
        })
    }

    /// `x` rotated from where `cache` holds its tokens (0 without one),
    /// each row from its own count in a batched cache (Python:
    /// `rope(x, offset=cache.offset)`, an array for a batch).
    fn rope_at(&self, x: &Array, cache: Option<&dyn Cache>) -> Result<Array> {
        match cache {
            Some(cache) => rope_from_cache(&self.rope, x, cache),
            None => Ok(self.rope.forward(x, 0)?),
        }
    }

    /// This call's keys and values, RoPE'd from `cache`'s position before
    /// the update, appended to `cache` when there is one (the branch of
    /// Python's `__call__` for a layer computing its own).
    fn own_keys_values(&self, x: &Array, cache: Option<&mut dyn Cache>) -> Result<CachedKv> {
        let (b, l) = batch_len(x, "Gemma3nAttention")?;
        let keys = self
            .k_proj
            .forward(x)?
            .reshape(&[b, l, -1, self.head_dim])?;
        let keys = self.k_norm.forward(&keys)?.transpose([0, 2, 1, 3])?;
        let keys = self.rope_at(&keys, cache.as_deref())?;
        let values = self
            .v_proj
            .forward(x)?
            .reshape(&[b, l, -1, self.head_dim])?;
        let values = self.v_norm.forward(&values)?.transpose([0, 2, 1, 3])?;
        match cache {
            Some(cache) => cache.update_and_fetch_kv(&keys, &values),
            None => Ok(CachedKv::Plain(keys, values)),
        }
    }

    /// Python: `Gemma3nAttention.__call__(x, mask, cache)`; `cache` is the
    /// layer's own, or for a KV-shared layer the one it reads. An array
    /// mask of another width than the keys is cut as Python cuts it
    /// (`mask[:, :key_len]`).
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        let (b, l) = batch_len(x, "Gemma3nAttention")?;
        let queries = self
            .q_proj
            .forward(x)?
            .reshape(&[b, l, -1, self.head_dim])?;
        let queries = self.q_norm.forward(&queries)?.transpose([0, 2, 1, 3])?;

        // The queries take the cache's position: a KV-shared layer's after
        // the update of the layer owning it (Python's quirk, kept), each
        // row's own in a batch.
        let (cached, queries) = match cache {
            Some(cache) if self.is_kv_shared_layer => {
                let (keys, values) = cache_state(&*cache)?;
                let queries = self.rope_at(&queries, Some(&*cache))?;
                (CachedKv::Plain(keys, values), queries)
            }
            cache => {
                let queries = self.rope_at(&queries, cache.as_deref())?;
                (self.own_keys_values(x, cache)?, queries)
            }
        };

        let key_len = base::kv_sequence_length(&cached);
        let cut;
        let mask = match mask {
            AttentionMask::Array(m) if m.shape().last() != Some(&key_len) => {
                cut = AttentionMask::Array(m.index(idx![.., ..key_len])?);
                &cut
            }
            other => other,
        };

        let output =
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, mask, None)?;
        let output = output.transpose([0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok(self.o_proj.forward(&output)?)
    }
}

/// Python: `gelu_topk(inputs, std_multiplier)`: the gaussian top-k of the
/// activations: `gelu_approx(max(0, x - (mean + std * std_multiplier)))`
/// over the last axis.
pub fn gelu_topk(inputs: &Array, std_multiplier: &Array) -> Result<Array> {
    let inputs_mean = inputs.mean(-1, true)?;
    let inputs_std = inputs.std(-1, true, 0)?;
    let cutoff_x = ops::add(
        &inputs_mean,
        &ops::multiply(&inputs_std, &std_multiplier.as_type(inputs_std.dtype())?)?,
    )?;
    let kept = ops::maximum(0, &ops::subtract(inputs, &cutoff_x)?)?;
    Ok(activations::gelu_approx(&kept)?)
}

/// Python: `MLP`: `down(act(gate(x)) * up(x))`, `act` the gaussian top-k
/// GELU on layers with activation sparsity, plain GELU (tanh) otherwise.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
    /// The layer's `activation_sparsity_pattern` entry (0: none).
    #[module(skip)]
    pub activation_sparsity: f64,
    /// `sqrt(2) * erfinv(2 * activation_sparsity - 1)`, float32, on sparse
    /// layers (Python's `_std_multiplier`, not a parameter).
    #[module(skip)]
    pub std_multiplier: Option<Array>,
}

impl MLP {
    /// Python: `MLP(config, layer_idx)`; every layer's width is
    /// `intermediate_size[0]`, as in Python.
    pub fn new(config: &TextConfig, layer_idx: i32) -> Result<Self> {
        let hidden = config.hidden_size;
        let width = config.intermediate_size.first().ok_or_else(|| {
            Error::InvalidArgument("text_config.intermediate_size is an empty list".into())
        })?;
        let activation_sparsity = config
            .activation_sparsity_pattern
            .as_ref()
            .and_then(|p| p.get(layer_idx as usize).copied())
            .unwrap_or(0.0);
        let std_multiplier = if activation_sparsity > 0.0 {
            // Python: math.sqrt(2.0) * mx.erfinv(2 * p - 1), the argument
            // rounded from double to float32 as mx.erfinv(float) does.
            let quantile = ops::erfinv(&Array::scalar::<f32>(
                (2.0 * activation_sparsity - 1.0) as f32,
            ))?;
            Some(ops::multiply(std::f64::consts::SQRT_2, &quantile)?)
        } else {
            None
        };
        Ok(MLP {
            gate_proj: Linear::new(hidden, width, false)?,
            up_proj: Linear::new(hidden, width, false)?,
            down_proj: Linear::new(width, hidden, false)?,
            activation_sparsity,
            std_multiplier,
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gate_proj = self.gate_proj.forward(x)?;
        let activations = match &self.std_multiplier {
            Some(std_multiplier) if self.activation_sparsity > 0.0 => {
                gelu_topk(&gate_proj, std_multiplier)?
            }
            _ => activations::gelu_approx(&gate_proj)?,
        };
        let up_proj = self.up_proj.forward(x)?;
        Ok(self
            .down_proj
            .forward(&ops::multiply(&activations, &up_proj)?)?)
    }
}

/// Python: `Gemma3nAltUp` (Alternating Updates): predicts the
/// `altup_num_inputs` streams from the active one, then corrects them with
/// the layer's output, by coefficients routed from the hidden states.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nAltUp {
    /// Streams (`altup_num_inputs`).
    #[module(skip)]
    pub altup_num_inputs: i32,
    /// The stream the layer computes (`altup_active_idx`).
    #[module(skip)]
    pub altup_active_idx: i32,
    /// Bound of the coefficients, if any (`altup_coef_clip`).
    #[module(skip)]
    pub altup_coef_clip: Option<f32>,
    /// `hidden_size`.
    #[module(skip)]
    pub hidden_size: i32,
    /// Scale of the corrected active stream, `(hidden_size,)`.
    pub correct_output_scale: Param,
    /// Correction coefficients from the router's modalities.
    pub correction_coefs: Linear,
    /// Prediction coefficients (`n * n`) from the router's modalities.
    pub prediction_coefs: Linear,
    /// The router.
    pub modality_router: Linear,
    /// Norm before the router.
    pub router_norm: RMSNorm,
}

impl Gemma3nAltUp {
    /// Python: `Gemma3nAltUp(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let n = config.altup_num_inputs;
        Ok(Gemma3nAltUp {
            altup_num_inputs: n,
            altup_active_idx: config.altup_active_idx,
            altup_coef_clip: config.altup_coef_clip,
            hidden_size: config.hidden_size,
            correct_output_scale: Param::new(ops::zeros(&[config.hidden_size], Dtype::Float32)?),
            correction_coefs: Linear::new(n, n, false)?,
            prediction_coefs: Linear::new(n, n * n, false)?,
            modality_router: Linear::new(config.hidden_size, n, false)?,
            router_norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `Gemma3nAltUp.compute_router_modalities`: `tanh` of the
    /// router over the normed states divided by `hidden_size`, in float32.
    pub fn compute_router_modalities(&self, x: &Array) -> Result<Array> {
        let router_inputs = ops::multiply(
            &self.router_norm.forward(x)?,
            f64::from(self.hidden_size).powf(-1.0),
        )?;
        let routed = self
            .modality_router
            .forward(&router_inputs)?
            .as_type(Dtype::Float32)?;
        Ok(ops::tanh(&routed)?)
    }

    /// `modalities @ W.T` with `layer`'s weight in float32, clipped to
    /// `altup_coef_clip` (what Python's `predict`/`correct` do after
    /// overwriting the weight so).
    fn coefficients(&self, layer: &Linear, modalities: &Array) -> Result<Array> {
        if layer.quantization.is_some() {
            return Err(Error::InvalidArgument(
                "Gemma 3n's AltUp coefficient layers are quantized; Python casts their weight to \
                 float32, so keep them unquantized (their width, altup_num_inputs, is below any \
                 group size)"
                    .into(),
            ));
        }
        let mut weight = layer.weight.as_type(Dtype::Float32)?;
        if let Some(clip) = self.altup_coef_clip {
            weight = ops::clip(&weight, -clip, clip)?;
        }
        Ok(ops::matmul(modalities, &weight.T()?)?)
    }

    /// Python: `Gemma3nAltUp.predict`: `x` `[n, batch, len, hidden]` mixed
    /// across streams by the coefficients routed from the active stream,
    /// plus `x`, in float32, cast back.
    pub fn predict(&self, x: &Array) -> Result<Array> {
        let n = self.altup_num_inputs;
        let modalities = self.compute_router_modalities(&x.index(idx![self.altup_active_idx])?)?;
        let mut shape = modalities.shape()[..modalities.ndim().saturating_sub(1)].to_vec();
        shape.extend([n, n]);
        let all_coefs = self
            .coefficients(&self.prediction_coefs, &modalities)?
            .reshape(&shape)?
            .transpose([0, 1, 3, 2])?;
        let x_up = x.as_type(Dtype::Float32)?;
        let x_permuted = x_up.transpose([1, 2, 3, 0])?;
        let predictions = ops::matmul(&x_permuted, &all_coefs)?.transpose([3, 0, 1, 2])?;
        let predictions = ops::add(&predictions, &x_up)?;
        Ok(predictions.as_type(x.dtype())?)
    }

    /// Python: `Gemma3nAltUp.correct`: each stream of `predictions` plus
    /// the innovation (`activated` minus the active prediction) times its
    /// routed coefficient plus one.
    pub fn correct(&self, predictions: &Array, activated: &Array) -> Result<Array> {
        let modalities = self.compute_router_modalities(activated)?;
        let all_coefs = ops::add(
            &self.coefficients(&self.correction_coefs, &modalities)?,
            1.0,
        )?;
        let active_x = predictions.index(idx![self.altup_active_idx])?;
        let innovation = ops::subtract(activated, &active_x)?;
        let all_coefs = ops::expand_dims(&all_coefs.transpose([2, 0, 1])?, -1)?;
        let corrected = ops::multiply(&ops::expand_dims(&innovation, 0)?, &all_coefs)?;
        let corrected = ops::add(&corrected, predictions)?;
        Ok(corrected.as_type(activated.dtype())?)
    }
}

/// Python: `Gemma3nDecoderLayer`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3nDecoderLayer {
    /// `hidden_size`.
    #[module(skip)]
    pub hidden_size: i32,
    /// The layer's index.
    #[module(skip)]
    pub layer_idx: i32,
    /// The AltUp stream the layer computes.
    #[module(skip)]
    pub altup_active_idx: i32,
    /// Whether the corrected active stream is scaled
    /// (`altup_correct_scale`).
    #[module(skip)]
    pub altup_correct_scale: bool,
    /// Self-attention.
    pub self_attn: Gemma3nAttention,
    /// The MLP.
    pub mlp: MLP,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm of attention's output.
    pub post_attention_layernorm: RMSNorm,
    /// Norm before the MLP.
    pub pre_feedforward_layernorm: RMSNorm,
    /// Norm of the MLP's output.
    pub post_feedforward_layernorm: RMSNorm,
    /// Whether attention is sliding-window.
    #[module(skip)]
    pub is_sliding: bool,
    /// `sliding_window`.
    #[module(skip)]
    pub sliding_window: i32,
    /// `hidden_size_per_layer_input`.
    #[module(skip)]
    pub hidden_size_per_layer_input: i32,
    /// AltUp.
    pub altup: Gemma3nAltUp,
    /// The Laurel block.
    pub laurel: Gemma3nLaurelBlock,
    /// Gate of the per-layer input, from the corrected active stream.
    pub per_layer_input_gate: Linear,
    /// Projection of the gated per-layer input back to `hidden_size`.
    pub per_layer_projection: Linear,
    /// Norm of that projection.
    pub post_per_layer_input_norm: RMSNorm,
}

impl Gemma3nDecoderLayer {
    /// Python: `Gemma3nDecoderLayer(config, layer_idx, is_kv_shared_layer)`.
    pub fn new(config: &TextConfig, layer_idx: i32, is_kv_shared_layer: bool) -> Result<Self> {
        let hidden = config.hidden_size;
        let norm = || RMSNorm::new(hidden, config.rms_norm_eps);
        let self_attn = Gemma3nAttention::new(config, layer_idx, is_kv_shared_layer)?;
        let is_sliding = self_attn.is_sliding;
        Ok(Gemma3nDecoderLayer {
            hidden_size: hidden,
            layer_idx,
            altup_active_idx: config.altup_active_idx,
            altup_correct_scale: config.altup_correct_scale,
            self_attn,
            mlp: MLP::new(config, layer_idx)?,
            input_layernorm: norm()?,
            post_attention_layernorm: norm()?,
            pre_feedforward_layernorm: norm()?,
            post_feedforward_layernorm: norm()?,
            is_sliding,
            sliding_window: config.sliding_window,
            hidden_size_per_layer_input: config.hidden_size_per_layer_input,
            altup: Gemma3nAltUp::new(config)?,
            laurel: Gemma3nLaurelBlock::new(config)?,
            per_layer_input_gate: Linear::new(hidden, config.hidden_size_per_layer_input, false)?,
            per_layer_projection: Linear::new(config.hidden_size_per_layer_input, hidden, false)?,
            post_per_layer_input_norm: norm()?,
        })
    }

    /// Python: `Gemma3nDecoderLayer.__call__(x, mask, cache,
    /// per_layer_input)`: `x` is the AltUp streams `[n, batch, len,
    /// hidden]`, `per_layer_input` this layer's `[batch, len,
    /// hidden_size_per_layer_input]`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        per_layer_input: &Array,
    ) -> Result<Array> {
        let predictions = self.altup.predict(x)?;
        let active_prediction = predictions.index(idx![self.altup_active_idx])?;

        let active_prediction_normed = self.input_layernorm.forward(&active_prediction)?;
        let laurel_output = self.laurel.forward(&active_prediction_normed)?;

        let attn = self
            .self_attn
            .forward(&active_prediction_normed, mask, cache)?;
        let attn = self.post_attention_layernorm.forward(&attn)?;

        let attn_gated = ops::add(&active_prediction, &attn)?;
        let attn_laurel = ops::multiply(&ops::add(&attn_gated, &laurel_output)?, 2f64.powf(-0.5))?;

        let attn_norm = self.pre_feedforward_layernorm.forward(&attn_laurel)?;
        let attn_ffw = self.mlp.forward(&attn_norm)?;
        let attn_ffw_norm = self.post_feedforward_layernorm.forward(&attn_ffw)?;
        let attn_ffw_laurel_gated = ops::add(&attn_laurel, &attn_ffw_norm)?;

        let corrected_predictions = self.altup.correct(&predictions, &attn_ffw_laurel_gated)?;

        let mut first_prediction = corrected_predictions.index(idx![self.altup_active_idx])?;
        if self.altup_correct_scale {
            first_prediction = ops::multiply(&first_prediction, &*self.altup.correct_output_scale)?;
        }
        let first_prediction = self.per_layer_input_gate.forward(&first_prediction)?;
        let first_prediction = activations::gelu_approx(&first_prediction)?;
        let first_prediction = ops::multiply(&first_prediction, per_layer_input)?;
        let first_prediction = self.per_layer_projection.forward(&first_prediction)?;
        let first_prediction = self.post_per_layer_input_norm.forward(&first_prediction)?;

        // Python: corrected_predictions[1:] += first_prediction.
        let rest = ops::add(&corrected_predictions.index(idx![1..])?, &first_prediction)?;
        Ok(ops::concatenate(
            &[corrected_predictions.index(idx![..1])?, rest],
            0,
        )?)
    }
}

/// `x ** exponent` with a weak scalar exponent (Python's `x ** 0.5`).
fn pow(x: &Array, exponent: f64) -> Result<Array> {
    Ok(ops::power(x, exponent)?)
}

/// `sqrt(mean(x ** 2))` over the last axis, kept.
fn magnitude(x: &Array) -> Result<Array> {
    pow(&pow(x, 2.0)?.mean(-1, true)?, 0.5)
}

/// Python's `mx.finfo(dtype).min`, the most negative finite value.
fn finfo_min(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::Float16 => -65504.0,
        Dtype::Bfloat16 => -3.3895313892515355e38,
        Dtype::Float64 => f64::MIN,
        _ => f64::from(f32::MIN),
    }
}

/// `streams[1:]` rescaled to `target`'s magnitude, `streams[0]` kept (the
/// AltUp stacking and unstacking of Python's `Gemma3Model.__call__`). The
/// floor is Python's `mx.finfo(dtype).min`, the most negative value, so it
/// never acts; it is kept for the same graph.
fn rescale_streams(streams: &Array, target: &Array, dtype: Dtype) -> Result<Array> {
    let rest = streams.index(idx![1..])?;
    let mags = magnitude(&rest)?;
    let ratio = ops::divide(target, &ops::maximum(&mags, finfo_min(dtype))?)?;
    let rest = ops::multiply(&rest, &ratio)?;
    Ok(ops::concatenate(&[streams.index(idx![..1])?, rest], 0)?)
}

/// The masks of a call: `given` for every layer, else `full` or
/// `sliding` by the layer's kind.
struct LayerMasks<'a> {
    given: Option<&'a AttentionMask>,
    full: &'a AttentionMask,
    sliding: &'a AttentionMask,
}

/// Python: `Gemma3Model` (the name Python's Gemma 3n file gives its
/// decoder).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3Model {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// The first layer reading another layer's KV.
    #[module(skip)]
    pub first_kv_shared_layer_idx: i32,
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<Gemma3nDecoderLayer>,
    /// Per-layer input embeddings, `num_hidden_layers *
    /// hidden_size_per_layer_input` per token.
    pub embed_tokens_per_layer: Embedding,
    /// Projection of the token embeddings to per-layer inputs.
    pub per_layer_model_projection: Linear,
    /// Norm of that projection.
    pub per_layer_projection_norm: RMSNorm,
    /// Projections making AltUp streams 1.. from the embeddings.
    pub altup_projections: Vec<Linear>,
    /// Projections of AltUp streams 1.. back, after the layers.
    pub altup_unembed_projections: Vec<Linear>,
    /// Final norm.
    pub norm: RMSNorm,
    /// The first sliding-window layer (its cache makes the sliding mask).
    #[module(skip)]
    pub first_sliding_idx: usize,
    /// The first global layer (its cache makes the global mask).
    #[module(skip)]
    pub first_full_idx: usize,
    /// Per layer, the cache it uses: its own, or for a KV-shared layer the
    /// last non-shared layer's of its type.
    #[module(skip)]
    pub layer_idx_to_cache_idx: Vec<usize>,
}

impl Gemma3Model {
    /// Python: `Gemma3Model(config)`. `config` must have passed
    /// [`TextConfig::validate`] (checked again here).
    pub fn new(config: &TextConfig) -> Result<Self> {
        config.validate("config")?;
        let layers_n = config.num_hidden_layers;
        let first_kv_shared_layer_idx = config.first_kv_shared_layer_idx();
        let per_layer_width = layers_n * config.hidden_size_per_layer_input;
        let projections = || -> Result<Vec<Linear>> {
            (1..config.altup_num_inputs)
                .map(|_| Ok(Linear::new(config.hidden_size, config.hidden_size, false)?))
                .collect()
        };
        let types = config.layer_types();
        let first = |kind: &str| types.iter().position(|t| t == kind);
        let concrete = &types[..first_kv_shared_layer_idx as usize];
        let last_concrete = |kind: &str| concrete.iter().rposition(|t| t == kind);
        let (
            Some(first_sliding_idx),
            Some(first_full_idx),
            Some(shared_sliding_idx),
            Some(shared_full_idx),
        ) = (
            first(SLIDING_ATTENTION),
            first(FULL_ATTENTION),
            last_concrete(SLIDING_ATTENTION),
            last_concrete(FULL_ATTENTION),
        )
        else {
            // Invariant: validate() checked both kinds among the concrete layers.
            return Err(Error::InvalidArgument(
                "text_config.layer_types lacks a sliding or full layer".into(),
            ));
        };
        let layer_idx_to_cache_idx = (0..layers_n as usize)
            .map(|i| match i {
                i if i < first_kv_shared_layer_idx as usize => i,
                i if config.is_sliding(i) => shared_sliding_idx,
                _ => shared_full_idx,
            })
            .collect();
        Ok(Gemma3Model {
            config: config.clone(),
            first_kv_shared_layer_idx,
            embed_tokens: Embedding::new(config.vocab_size, config.hidden_size)?,
            layers: (0..layers_n)
                .map(|i| Gemma3nDecoderLayer::new(config, i, i >= first_kv_shared_layer_idx))
                .collect::<Result<Vec<_>>>()?,
            embed_tokens_per_layer: Embedding::new(
                config.vocab_size_per_layer_input,
                per_layer_width,
            )?,
            per_layer_model_projection: Linear::new(config.hidden_size, per_layer_width, false)?,
            per_layer_projection_norm: RMSNorm::new(
                config.hidden_size_per_layer_input,
                config.rms_norm_eps,
            )?,
            altup_projections: projections()?,
            altup_unembed_projections: projections()?,
            norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
            first_sliding_idx,
            first_full_idx,
            layer_idx_to_cache_idx,
        })
    }

    /// Python: `Gemma3Model.__call__(inputs, inputs_embeds, mask, cache,
    /// per_layer_inputs=...)`: the final-normed hidden states. An empty
    /// `cache` is Python's `cache=None`; otherwise it holds at least one
    /// cache per layer keeping its own KV ([`LanguageModel::make_cache`]).
    /// Given `per_layer_inputs` (the whole prompt's, from
    /// [`Gemma3Model::get_per_layer_inputs`]) are sliced to this call's
    /// tokens as Python slices them.
    pub fn forward(
        &self,
        inputs: Option<&Array>,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
        per_layer_inputs: Option<&Array>,
    ) -> Result<Array> {
        self.run(inputs, inputs_embeds, mask, cache, per_layer_inputs, None)
    }

    /// [`Gemma3Model::forward`] that also returns every decoder layer's
    /// output, the AltUp streams `[n, batch, len, hidden]` (Rust only, for
    /// tests).
    pub fn forward_with_layer_outputs(
        &self,
        inputs: Option<&Array>,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
        per_layer_inputs: Option<&Array>,
    ) -> Result<(Array, Vec<Array>)> {
        let mut outputs = Vec::new();
        let h = self.run(
            inputs,
            inputs_embeds,
            mask,
            cache,
            per_layer_inputs,
            Some(&mut outputs),
        )?;
        Ok((h, outputs))
    }

    /// Python's slicing of given per-layer inputs to the `target_len`
    /// tokens of this call: from the first rotating cache's write index
    /// (`_idx`), else the first cache's offset, else 0, at most the last
    /// `target_len` tokens.
    fn slice_per_layer_inputs(
        per_layer_inputs: &Array,
        target_len: i32,
        cache: &[Box<dyn Cache>],
    ) -> Result<Array> {
        let cache_offset = cache
            .iter()
            .find_map(|c| c.idx())
            .unwrap_or_else(|| cache.first().map_or(0, |c| c.offset()));
        let given = per_layer_inputs.shape().get(1).copied().unwrap_or(0);
        let start = cache_offset.min((given - target_len).max(0));
        Ok(per_layer_inputs.index(idx![.., start..start + target_len])?)
    }

    /// The attention mask of the layers of `kind`, from the cache of the
    /// first such layer (Python: `create_attention_mask(h, cache[i],
    /// window_size)`).
    fn layer_mask(
        &self,
        h: &Array,
        cache: &[Box<dyn Cache>],
        first_idx: usize,
        window_size: Option<i32>,
    ) -> Result<AttentionMask> {
        let (_, len) = batch_len(h, "Gemma3Model")?;
        match cache.get(first_idx) {
            Some(c) => c.make_mask(len, window_size, false),
            None => base::create_attention_mask(h, window_size, false),
        }
    }

    /// The token embeddings times `sqrt(hidden_size)`, or the given
    /// embeddings as they are.
    fn embed(&self, inputs: Option<&Array>, inputs_embeds: Option<&Array>) -> Result<Array> {
        match (inputs_embeds, inputs) {
            (Some(embeds), _) => Ok(embeds.clone()),
            (None, Some(ids)) => Ok(ops::multiply(
                &self.embed_tokens.forward(ids)?,
                f64::from(self.config.hidden_size).powf(0.5),
            )?),
            (None, None) => Err(Error::InvalidArgument(
                "Gemma 3n's language model needs token ids or input embeddings".into(),
            )),
        }
    }

    /// This call's per-layer inputs before projection: the given ones
    /// sliced as Python slices them, else those of `inputs`.
    fn this_call_per_layer_inputs(
        &self,
        inputs: Option<&Array>,
        per_layer_inputs: Option<&Array>,
        len: i32,
        cache: &[Box<dyn Cache>],
    ) -> Result<Array> {
        match (per_layer_inputs, inputs) {
            (Some(given), _) => Self::slice_per_layer_inputs(given, len, cache),
            (None, Some(ids)) => self.get_per_layer_inputs(ids),
            (None, None) => Err(Error::InvalidArgument(
                "Gemma 3n's language model needs token ids or per-layer inputs with its input \
                 embeddings"
                    .into(),
            )),
        }
    }

    /// The AltUp streams `[n, batch, len, hidden]` of the embeddings `h0`:
    /// `h0` and its projections, rescaled to `h0`'s magnitude.
    fn expand_streams(&self, h0: &Array) -> Result<Array> {
        let target_magnitude = magnitude(h0)?;
        let mut h_list = vec![h0.clone()];
        for proj in &self.altup_projections {
            h_list.push(proj.forward(h0)?);
        }
        rescale_streams(&ops::stack(&h_list, 0)?, &target_magnitude, h0.dtype())
    }

    /// The AltUp streams back to one: streams 1.. projected back, rescaled
    /// to stream 0's magnitude, averaged.
    fn collapse_streams(&self, h: &Array, dtype: Dtype) -> Result<Array> {
        let first = h.index(idx![0])?;
        let target_magnitude = magnitude(&first)?;
        let mut streams = vec![first];
        for (i, proj) in self.altup_unembed_projections.iter().enumerate() {
            streams.push(proj.forward(&h.index(idx![i as i32 + 1])?)?);
        }
        let h = rescale_streams(&ops::stack(&streams, 0)?, &target_magnitude, dtype)?;
        Ok(h.mean(0, false)?)
    }

    fn run(
        &self,
        inputs: Option<&Array>,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
        per_layer_inputs: Option<&Array>,
        layer_outputs: Option<&mut Vec<Array>>,
    ) -> Result<Array> {
        let h0 = self.embed(inputs, inputs_embeds)?;
        let (_, len) = batch_len(&h0, "Gemma3Model")?;
        let shared_from = self.first_kv_shared_layer_idx as usize;
        if !cache.is_empty() && cache.len() < shared_from {
            return Err(Error::InvalidArgument(format!(
                "Gemma3Model: got {} caches; the {shared_from} layers keeping their own KV need \
                 one each (LanguageModel::make_cache)",
                cache.len()
            )));
        }
        let per_layer_inputs =
            self.this_call_per_layer_inputs(inputs, per_layer_inputs, len, cache)?;
        let per_layer_inputs = self.project_per_layer_inputs(&h0, &per_layer_inputs)?;

        let (full_mask, sliding_window_mask) = match mask {
            Some(_) => (AttentionMask::None, AttentionMask::None),
            None => (
                self.layer_mask(&h0, cache, self.first_full_idx, None)?,
                self.layer_mask(
                    &h0,
                    cache,
                    self.first_sliding_idx,
                    Some(self.config.sliding_window),
                )?,
            ),
        };

        let masks = LayerMasks {
            given: mask,
            full: &full_mask,
            sliding: &sliding_window_mask,
        };
        let mut caches: Vec<&mut dyn Cache> =
            cache.iter_mut().map(|c| &mut **c as &mut dyn Cache).collect();
        self.forward_layers(&h0, &per_layer_inputs, &masks, &mut caches, layer_outputs)
    }

    /// The AltUp streams of `h0` through the layers (each with its slice of
    /// the projected `per_layer_inputs`, its mask of `masks`, and the cache
    /// of `caches` that `layer_idx_to_cache_idx` names: none when `caches`
    /// is empty, Python's `cache=None`), collapsed and final-normed.
    fn forward_layers(
        &self,
        h0: &Array,
        per_layer_inputs: &Array,
        masks: &LayerMasks<'_>,
        caches: &mut [&mut dyn Cache],
        mut layer_outputs: Option<&mut Vec<Array>>,
    ) -> Result<Array> {
        let mut h = self.expand_streams(h0)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let per_layer_input = per_layer_inputs.index(idx![.., .., i as i32, ..])?;
            let local_mask = match masks.given {
                Some(m) => m,
                None if self.config.is_sliding(i) => masks.sliding,
                None => masks.full,
            };
            let layer_cache = self
                .layer_idx_to_cache_idx
                .get(i)
                .and_then(|&c| caches.get_mut(c))
                .map(|c| &mut **c as &mut dyn Cache);
            h = layer.forward(&h, local_mask, layer_cache, &per_layer_input)?;
            if let Some(outputs) = layer_outputs.as_deref_mut() {
                outputs.push(h.clone());
            }
        }
        let h = self.collapse_streams(&h, h0.dtype())?;
        Ok(self.norm.forward(&h)?)
    }

    /// Python: `Gemma3Model.__call__` in `GenerationBatch._step`: one token
    /// a row (`inputs` `[rows, 1]`, their per-layer inputs from the ids)
    /// over one batched cache per layer keeping its own KV
    /// ([`LanguageModel::make_cache`]'s length). Each kind's mask comes
    /// from the batched cache of its first layer and hides each row's
    /// padding; a KV-shared layer reads the batched keys and values of the
    /// layer it shares, padding included, under the mask of its kind,
    /// and rotates its queries at each row's count after that layer's
    /// update.
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        rows: usize,
    ) -> Result<Array> {
        let owners = self.first_kv_shared_layer_idx as usize;
        if inputs.shape() != [rows as i32, 1]
            || cache.len() != owners
            || cache.iter().any(|c| c.batch_size() != rows)
        {
            return Err(Error::InvalidArgument(format!(
                "Gemma 3n decode_batch: needs inputs [{rows}, 1] (one token per request) and \
                 one cache of {rows} rows per layer keeping its own KV ({owners}), got inputs \
                 {:?} and {} caches",
                inputs.shape(),
                cache.len()
            )));
        }
        let mask_of = |first: usize, window: Option<i32>| match cache.get(first) {
            Some(c) => c.as_cache().make_mask(1, window, false),
            // Unreachable: validate() put a layer of each kind before the
            // KV-shared ones.
            None => Err(Error::InvalidArgument(format!(
                "Gemma 3n decode_batch: no cache for layer {first}, the first of its kind"
            ))),
        };
        let full_mask = mask_of(self.first_full_idx, None)?;
        let sliding_mask = mask_of(self.first_sliding_idx, Some(self.config.sliding_window))?;
        let h0 = self.embed(Some(inputs), None)?;
        let per_layer_inputs =
            self.project_per_layer_inputs(&h0, &self.get_per_layer_inputs(inputs)?)?;
        let masks = LayerMasks {
            given: None,
            full: &full_mask,
            sliding: &sliding_mask,
        };
        let mut caches: Vec<&mut dyn Cache> = cache.iter_mut().map(|c| c.as_cache_mut()).collect();
        self.forward_layers(&h0, &per_layer_inputs, &masks, &mut caches, None)
    }

    /// Python: `Gemma3Model.get_per_layer_inputs`: each token's per-layer
    /// embedding (token 0's past `vocab_size_per_layer_input`) times
    /// `sqrt(hidden_size_per_layer_input)`, `[batch, len, layers,
    /// hidden_size_per_layer_input]`.
    pub fn get_per_layer_inputs(&self, input_ids: &Array) -> Result<Array> {
        let per_layer_inputs_mask = ops::less(input_ids, self.config.vocab_size_per_layer_input)?;
        let tokens = ops::r#where(
            &per_layer_inputs_mask,
            input_ids,
            &ops::zeros_like(input_ids, None)?,
        )?;
        let result = ops::multiply(
            &self.embed_tokens_per_layer.forward(&tokens)?,
            f64::from(self.config.hidden_size_per_layer_input).powf(0.5),
        )?;
        let mut shape = input_ids.shape().to_vec();
        shape.extend([
            self.config.num_hidden_layers,
            self.config.hidden_size_per_layer_input,
        ]);
        Ok(result.reshape(&shape)?)
    }

    /// Python: `Gemma3Model.project_per_layer_inputs`: the normed
    /// projection of the embeddings plus the per-layer embeddings, over
    /// `sqrt(2)`.
    pub fn project_per_layer_inputs(
        &self,
        inputs_embeds: &Array,
        per_layer_inputs: &Array,
    ) -> Result<Array> {
        let per_layer_projection = ops::multiply(
            &self.per_layer_model_projection.forward(inputs_embeds)?,
            f64::from(self.config.hidden_size).powf(-0.5),
        )?;
        let shape = inputs_embeds.shape();
        let mut target = shape[..shape.len().saturating_sub(1)].to_vec();
        target.extend([
            self.config.num_hidden_layers,
            self.config.hidden_size_per_layer_input,
        ]);
        let per_layer_projection = self
            .per_layer_projection_norm
            .forward(&per_layer_projection.reshape(&target)?)?;
        Ok(ops::multiply(
            &ops::add(&per_layer_projection, per_layer_inputs)?,
            2f64.powf(-0.5),
        )?)
    }
}

/// Python: `logit_softcap(softcap, x)`: `softcap * tanh(x / softcap)`.
pub fn logit_softcap(softcap: f32, x: &Array) -> Result<Array> {
    let out = ops::tanh(&ops::divide(x, f64::from(softcap))?)?;
    Ok(ops::multiply(&out, f64::from(softcap))?)
}

/// Python: `LanguageModel`: the decoder, the tied output layer, the
/// softcap.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// `model_type`.
    #[module(skip)]
    pub model_type: String,
    /// The decoder.
    pub model: Gemma3Model,
    /// `final_logit_softcapping`.
    #[module(skip)]
    pub final_logit_softcapping: Option<f32>,
}

impl LanguageModel {
    /// Python: `LanguageModel(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(LanguageModel {
            config: config.clone(),
            model_type: config.model_type.clone(),
            model: Gemma3Model::new(config)?,
            final_logit_softcapping: config.final_logit_softcapping,
        })
    }

    /// Logits `[rows, 1, vocab]` of one batched decode step, a row per
    /// request of `states` ([`Gemma3Model::decode_batch`]).
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &[&mut ()],
    ) -> Result<Array> {
        let out = self.model.decode_batch(inputs, cache, states.len())?;
        self.logits(&out)
    }

    /// Logits `[batch, len, vocab]` (Python: `LanguageModel.__call__(inputs,
    /// inputs_embeds, mask, cache, per_layer_inputs=...).logits`); see
    /// [`Gemma3Model::forward`].
    pub fn forward(
        &self,
        inputs: Option<&Array>,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
        per_layer_inputs: Option<&Array>,
    ) -> Result<Array> {
        let out = self
            .model
            .forward(inputs, inputs_embeds, mask, cache, per_layer_inputs)?;
        self.logits(&out)
    }

    /// The tied output layer and the softcap of `LanguageModel.__call__`.
    pub fn logits(&self, hidden: &Array) -> Result<Array> {
        let out = self.model.embed_tokens.as_linear(hidden)?;
        match self.final_logit_softcapping {
            Some(softcap) => logit_softcap(softcap, &out),
            None => Ok(out),
        }
    }

    /// Python: `LanguageModel.sanitize`: keys with `language_model` but
    /// neither `language_model.model` nor `language_model.lm_head` get
    /// every `language_model` replaced by `language_model.model`; of the
    /// others, `self_attn.rotary_emb.inv_freq` is dropped. (Python's model
    /// `sanitize` first strips the `model.` of Hugging Face's
    /// `model.language_model.*`.)
    pub fn sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
        weights
            .into_iter()
            .filter_map(|(k, v)| {
                if !k.contains("language_model.model") && !k.contains("language_model.lm_head") {
                    Some((k.replace("language_model", "language_model.model"), v))
                } else if k.contains("self_attn.rotary_emb.inv_freq") {
                    None
                } else {
                    Some((k, v))
                }
            })
            .collect()
    }

    /// Python: `LanguageModel.layers`.
    pub fn layers(&self) -> &[Gemma3nDecoderLayer] {
        &self.model.layers
    }

    /// Python: `LanguageModel.head_dim`.
    pub fn head_dim(&self) -> i32 {
        self.config.head_dim
    }

    /// Python: `LanguageModel.n_kv_heads`.
    pub fn n_kv_heads(&self) -> i32 {
        self.config.num_key_value_heads
    }

    /// Python: `LanguageModel.make_cache`: one cache per layer keeping its
    /// own KV (the KV-shared layers have none): growing for global layers,
    /// rotating over `sliding_window` tokens (`keep` 0) for the others.
    pub fn make_cache(&self) -> Vec<Box<dyn Cache>> {
        let concrete = self.model.first_kv_shared_layer_idx as usize;
        (0..concrete)
            .map(|i| -> Box<dyn Cache> {
                if self.config.is_sliding(i) {
                    Box::new(RotatingKvCache::new(self.config.sliding_window, 0))
                } else {
                    Box::new(KvCache::new())
                }
            })
            .collect()
    }
}
