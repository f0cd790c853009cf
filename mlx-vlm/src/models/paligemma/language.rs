//! `mlx_vlm/models/paligemma/language.py`: the Gemma (and Gemma 2) decoder
//! of PaliGemma.
//!
//! Divergences from Python: an unsupported activation or model type is a
//! typed error at construction (Python raises too); a 2-D/3-D mask is
//! broadcast as Python's Gemma 2 path does, for both paths; Gemma 2 with a
//! quantized KV cache (`kv_bits`) is refused before generation
//! ([`GEMMA2_KV_QUANTIZATION`]) where Python converts the cache and fails
//! at the next attention call with a `TypeError`; the batched decode
//! ([`LanguageModel::decode_batch`]) masks the rows' left padding also with
//! `use_bidirectional_attention`, where Python builds no mask and attends
//! to the padding's zero keys (each row then computes what its single run
//! does).

use mlx_rs::nn::{Embedding, GELU, GeluApprox, Linear, Param, RoPE};
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::TextConfig;
use crate::models::base::{self, AttentionMask};
use crate::models::batch_layer_cache::{BatchLayerCache, decode_step};
use crate::models::cache::{Cache, CachedKv};
use crate::models::rope_utils::rope_at_cache;
use crate::{Error, Result};

/// Python: `_activation_from_config`: the MLP's GELU.
fn activation_from_config(config: &TextConfig) -> Result<GELU> {
    match config.hidden_activation.as_str() {
        "gelu" => Ok(GELU {
            approx: GeluApprox::None,
        }),
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" | "tanh" => Ok(GELU {
            approx: GeluApprox::Precise,
        }),
        other => Err(Error::Config {
            file: "config.json".into(),
            message: format!(
                "text_config.hidden_activation {other:?} is not supported for PaliGemma (gelu, \
                 gelu_pytorch_tanh, gelu_new, gelu_fast, tanh)"
            ),
        }),
    }
}

/// Gemma's RMS norm, scaling by `1 + weight` (Python: `RMSNorm`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct RMSNorm {
    /// The learned offset from one.
    pub weight: Param,
    /// Epsilon.
    #[module(skip)]
    pub eps: f32,
}

impl RMSNorm {
    /// Python: `RMSNorm(dims, eps)`, weight ones as Python initialises it.
    pub fn new(dims: i32, eps: f32) -> Result<Self> {
        Ok(RMSNorm {
            weight: Param::new(ops::ones(&[dims], Dtype::Float32)?),
            eps,
        })
    }

    /// Python: `RMSNorm.__call__`, `mx.fast.rms_norm(x, 1.0 + weight,
    /// eps)`, through [`mlx_rs::nn::rms_norm_one_plus`]: the same values,
    /// with `1 + weight` in `weight`'s dtype as Python's weak scalar keeps
    /// it, and on the CPU fewer graph nodes.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(mlx_rs::nn::rms_norm_one_plus(x, &self.weight, self.eps)?)
    }
}

/// Why Gemma 2's decoder takes no quantized KV cache: its eager attention
/// (scores in float32, soft-capped) multiplies the keys as arrays; Python
/// converts the cache and then fails there (`TypeError` in `mx.repeat` or
/// `astype` on the quantized tuple).
pub const GEMMA2_KV_QUANTIZATION: &str = "Gemma 2's eager attention (soft-capped float32 \
     scores) reads plain keys and values; Python converts the cache and then fails there with a \
     TypeError";

/// Python: `Attention`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Attention {
    /// Query heads.
    #[module(skip)]
    pub n_heads: i32,
    /// Key/value heads.
    #[module(skip)]
    pub n_kv_heads: i32,
    /// `gemma` or `gemma2`.
    #[module(skip)]
    pub model_type: String,
    /// Gemma 2's attention logit soft cap.
    #[module(skip)]
    pub attn_logit_softcapping: Option<f32>,
    /// Query heads per key/value head.
    #[module(skip)]
    pub repeats: i32,
    /// Features per head (`hidden / heads` for `gemma`, as Python).
    #[module(skip)]
    pub head_dim: i32,
    /// The attention scale.
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
    /// Rotary embedding.
    #[module(skip)]
    pub rope: RoPE,
}

impl Attention {
    /// Python: `Attention(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let dim = config.hidden_size;
        let n_heads = config.num_attention_heads;
        let n_kv_heads = config.kv_heads();
        let gemma = config.model_type == "gemma";
        let head_dim = if gemma {
            config.hidden_size / n_heads
        } else {
            config.head_dim
        };
        let scale = if gemma {
            (head_dim as f32).powf(-0.5)
        } else {
            let scalar = config.query_pre_attn_scalar.ok_or_else(|| Error::Config {
                file: "config.json".into(),
                message: "text_config.query_pre_attn_scalar is required for gemma2 (the \
                          attention scale is its inverse square root)"
                    .into(),
            })?;
            1.0 / scalar.sqrt()
        };
        let bias = config.attention_bias;
        Ok(Attention {
            n_heads,
            n_kv_heads,
            model_type: config.model_type.clone(),
            attn_logit_softcapping: config.attn_logit_softcapping,
            repeats: n_heads / n_kv_heads,
            head_dim,
            scale,
            q_proj: Linear::new(dim, n_heads * head_dim, bias)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, bias)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, bias)?,
            o_proj: Linear::new(n_heads * head_dim, dim, bias)?,
            rope: RoPE::new(head_dim, config.rope_traditional, config.rope_theta, 1.0),
        })
    }

    /// Python: `Attention.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: Option<&Array>,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        let shape = x.shape().to_vec();
        let [b, l, _] = shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "Attention takes [batch, len, hidden], got {shape:?}"
            )));
        };
        let heads = |a: Array, n: i32| -> Result<Array> {
            Ok(a.reshape(&[b, l, n, -1])?.transpose([0, 2, 1, 3])?)
        };
        let queries = heads(self.q_proj.forward(x)?, self.n_heads)?;
        let keys = heads(self.k_proj.forward(x)?, self.n_kv_heads)?;
        let values = heads(self.v_proj.forward(x)?, self.n_kv_heads)?;
        let (queries, cached) = match cache {
            Some(cache) => {
                let (queries, keys) = rope_at_cache(&self.rope, &queries, &keys, cache)?;
                (queries, cache.update_and_fetch_kv(&keys, &values)?)
            }
            None => (
                self.rope.forward(&queries, 0)?,
                CachedKv::Plain(self.rope.forward(&keys, 0)?, values),
            ),
        };
        let output = if self.model_type == "gemma" {
            let mask = match mask {
                Some(m) => AttentionMask::Array(m.clone()),
                None => AttentionMask::None,
            };
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, &mask, None)?
        } else {
            let CachedKv::Plain(keys, values) = &cached else {
                // Refused before generation (`Model::kv_quantization`);
                // Python fails here with a TypeError.
                return Err(Error::InvalidParameter {
                    name: "kv_bits",
                    value: String::new(),
                    message: GEMMA2_KV_QUANTIZATION.into(),
                });
            };
            self.eager_attention(&queries, keys, values, mask)?
        };
        let output = output.transpose([0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok(self.o_proj.forward(&output)?)
    }

    /// Gemma 2's path: scores in f32, soft-capped, masked, softmax in f32,
    /// weights cast back to the queries' dtype (HF eager semantics, as
    /// Python computes them).
    fn eager_attention(
        &self,
        queries: &Array,
        keys: &Array,
        values: &Array,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let queries = ops::multiply(queries, Array::scalar::<f32>(self.scale))?;
        let (keys, values) = if self.repeats > 1 {
            (
                ops::repeat(keys, self.repeats, 1)?,
                ops::repeat(values, self.repeats, 1)?,
            )
        } else {
            (keys.clone(), values.clone())
        };
        let mut scores = ops::matmul(
            &queries.as_type(Dtype::Float32)?,
            &keys.as_type(Dtype::Float32)?.swapaxes(-1, -2)?,
        )?;
        if let Some(cap) = self.attn_logit_softcapping {
            let capped = ops::tanh(&ops::divide(&scores, Array::scalar::<f32>(cap))?)?;
            scores = ops::multiply(&capped, Array::scalar::<f32>(cap))?;
        }
        if let Some(mask) = mask {
            let b = queries.shape()[0];
            let mask = match mask.ndim() {
                2 if mask.shape()[0] == b => {
                    mask.index(idx![.., mlx_rs::NewAxis, mlx_rs::NewAxis, ..])?
                }
                2 => mask.index(idx![mlx_rs::NewAxis, mlx_rs::NewAxis, .., ..])?,
                3 => mask.index(idx![.., mlx_rs::NewAxis, .., ..])?,
                _ => mask.clone(),
            };
            let kv_len = keys.shape()[2];
            let mask = mask.index(idx![mlx_rs::Ellipsis, ..kv_len])?;
            let mask = if matches!(
                mask.dtype(),
                Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32
            ) {
                mask.as_type(Dtype::Float32)?
            } else {
                // (1 - mask) * finfo(float32).min
                let keep = mask.as_type(Dtype::Float32)?;
                ops::multiply(
                    &ops::subtract(Array::scalar::<f32>(1.0), &keep)?,
                    Array::scalar::<f32>(f32::MIN),
                )?
            };
            scores = ops::add(&scores, &mask)?;
        }
        let weights = ops::softmax(&scores, -1, true)?.as_type(queries.dtype())?;
        Ok(ops::matmul(&weights, &values)?)
    }
}

/// Python: `MLP`: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// The configured GELU.
    pub activation: GELU,
}

impl MLP {
    /// Python: `MLP(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Ok(MLP {
            gate_proj: Linear::new(h, i, false)?,
            down_proj: Linear::new(i, h, false)?,
            up_proj: Linear::new(h, i, false)?,
            activation: activation_from_config(config)?,
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gate = self.activation.forward(&self.gate_proj.forward(x)?)?;
        let h = ops::multiply(&gate, &self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&h)?)
    }
}

/// Python: `TransformerBlock`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct TransformerBlock {
    /// `gemma` or `gemma2`.
    #[module(skip)]
    pub model_type: String,
    /// Self-attention.
    pub self_attn: Attention,
    /// The MLP.
    pub mlp: MLP,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm after attention (of its output, for Gemma 2).
    pub post_attention_layernorm: RMSNorm,
    /// Gemma 2: norm before the MLP.
    pub pre_feedforward_layernorm: Option<RMSNorm>,
    /// Gemma 2: norm of the MLP's output.
    pub post_feedforward_layernorm: Option<RMSNorm>,
}

impl TransformerBlock {
    /// Python: `TransformerBlock(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let norm = || RMSNorm::new(config.hidden_size, config.rms_norm_eps);
        let gemma2 = config.model_type == "gemma2";
        Ok(TransformerBlock {
            model_type: config.model_type.clone(),
            self_attn: Attention::new(config)?,
            mlp: MLP::new(config)?,
            input_layernorm: norm()?,
            post_attention_layernorm: norm()?,
            pre_feedforward_layernorm: if gemma2 { Some(norm()?) } else { None },
            post_feedforward_layernorm: if gemma2 { Some(norm()?) } else { None },
        })
    }

    /// Python: `TransformerBlock.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: Option<&Array>,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        let r = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, mask, cache)?;
        match (
            &self.pre_feedforward_layernorm,
            &self.post_feedforward_layernorm,
        ) {
            (Some(pre), Some(post)) => {
                let h = ops::add(x, &self.post_attention_layernorm.forward(&r)?)?;
                let r = self.mlp.forward(&pre.forward(&h)?)?;
                Ok(ops::add(&h, &post.forward(&r)?)?)
            }
            _ => {
                let h = ops::add(x, &r)?;
                let r = self
                    .mlp
                    .forward(&self.post_attention_layernorm.forward(&h)?)?;
                Ok(ops::add(&h, &r)?)
            }
        }
    }
}

/// Python: `GemmaModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct GemmaModel {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// Token embeddings (also the output layer).
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<TransformerBlock>,
    /// Final norm.
    pub norm: RMSNorm,
}

impl GemmaModel {
    /// Python: `GemmaModel(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(GemmaModel {
            config: config.clone(),
            embed_tokens: Embedding::new(config.vocab_size, config.hidden_size)?,
            layers: (0..config.num_hidden_layers)
                .map(|_| TransformerBlock::new(config))
                .collect::<Result<Vec<_>>>()?,
            norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `GemmaModel.__call__`: embeddings scaled by
    /// `sqrt(hidden_size)` (in their dtype), the prefix-LM mask as given
    /// (bidirectional) or a causal one, the layers, the final norm. An
    /// empty `cache` is Python's `cache=None`.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let h = match inputs_embeds {
            Some(e) => e.clone(),
            None => self.embed_tokens.forward(inputs)?,
        };
        let h = self.normalize(&h)?;
        if !cache.is_empty() && cache.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "GemmaModel: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let bidirectional = self.config.use_bidirectional_attention.unwrap_or(false);
        let offset = cache.first().map_or(0, |c| c.offset());
        let causal;
        let mask = match mask {
            None if !bidirectional => {
                causal = causal_mask(&h, cache.first().map(|c| &**c))?;
                causal.as_ref()
            }
            Some(_) if !bidirectional && offset > 0 => {
                causal = causal_mask(&h, cache.first().map(|c| &**c))?;
                causal.as_ref()
            }
            other => other,
        };
        let caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        self.forward_layers(h, mask, caches)
    }

    /// The embeddings scaled by `sqrt(hidden_size)` in their dtype (Python:
    /// `h * mx.array(self.config.hidden_size**0.5, h.dtype)`).
    fn normalize(&self, h: &Array) -> Result<Array> {
        let normalizer =
            Array::scalar::<f32>((self.config.hidden_size as f32).sqrt()).as_type(h.dtype())?;
        Ok(ops::multiply(h, &normalizer)?)
    }

    /// The layers and the final norm over `h`, with one cache per layer
    /// from `caches` while it lasts: the second half of Python's
    /// `GemmaModel.__call__`, shared by [`GemmaModel::forward`] and the
    /// batched decode.
    fn forward_layers<'c>(
        &self,
        mut h: Array,
        mask: Option<&Array>,
        mut caches: impl Iterator<Item = &'c mut dyn Cache>,
    ) -> Result<Array> {
        for layer in &self.layers {
            h = layer.forward(&h, mask, caches.next())?;
        }
        self.norm.forward(&h)
    }
}

/// Python's `create_attention_mask(h, cache, return_array=True)` (the
/// cache's `make_mask`, else the base function), as an optional array.
fn causal_mask(h: &Array, cache: Option<&dyn Cache>) -> Result<Option<Array>> {
    let n = h.shape().get(1).copied().unwrap_or(1);
    let mask = match cache {
        Some(c) => c.make_mask(n, None, true)?,
        None => base::create_attention_mask(h, None, true)?,
    };
    Ok(match mask {
        AttentionMask::Array(m) => Some(m),
        AttentionMask::None | AttentionMask::Causal => None,
    })
}

/// Python: `LanguageModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// The decoder.
    pub model: GemmaModel,
}

impl LanguageModel {
    /// Python: `LanguageModel(config)`; only `gemma` and `gemma2` text
    /// models, as Python.
    pub fn new(config: &TextConfig) -> Result<Self> {
        if !matches!(config.model_type.as_str(), "gemma" | "gemma2") {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "text_config".into(),
                supported: "gemma, gemma2".into(),
            });
        }
        Ok(LanguageModel {
            config: config.clone(),
            model: GemmaModel::new(config)?,
        })
    }

    /// Logits (Python: `LanguageModel.__call__`): the tied output layer,
    /// soft-capped for Gemma 2.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let out = self.model.forward(inputs, inputs_embeds, mask, cache)?;
        self.logits(&out)
    }

    /// Logits `[rows, 1, vocab]` of one decode step of several requests
    /// (Python: `LanguageModel.__call__` on a list of `BatchKVCache`s):
    /// each row's RoPE at its own token count
    /// ([`crate::models::rope_utils::rope_at_cache`], Python's array
    /// `cache.offset`), the first cache's mask hiding each row's left
    /// padding (Python's `create_attention_mask(h, cache[0],
    /// return_array=True)`) in both the Gemma and the Gemma 2 attention;
    /// also with bidirectional attention (a divergence, see the module
    /// doc).
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &[&mut ()],
    ) -> Result<Array> {
        let out = decode_step(
            "PaliGemma decode_batch",
            inputs,
            cache,
            states.len(),
            &self.model.embed_tokens,
            self.model.layers.len(),
            |h, mask, caches| {
                let mask = match mask {
                    AttentionMask::Array(m) => Some(m),
                    AttentionMask::None | AttentionMask::Causal => None,
                };
                self.model
                    .forward_layers(self.model.normalize(&h)?, mask, caches)
            },
        )?;
        self.logits(&out)
    }

    /// The tied output layer over the normed hidden states, soft-capped
    /// for Gemma 2.
    fn logits(&self, out: &Array) -> Result<Array> {
        let out = self.model.embed_tokens.as_linear(out)?;
        match (
            self.config.model_type.as_str(),
            self.config.final_logit_softcapping,
        ) {
            ("gemma2", Some(cap)) => {
                let capped = ops::tanh(&ops::divide(&out, Array::scalar::<f32>(cap))?)?;
                Ok(ops::multiply(&capped, Array::scalar::<f32>(cap))?)
            }
            _ => Ok(out),
        }
    }

    /// Python: `LanguageModel.sanitize`: drops `rotary_emb.inv_freq`.
    pub fn sanitize(
        weights: std::collections::HashMap<String, Array>,
    ) -> std::collections::HashMap<String, Array> {
        weights
            .into_iter()
            .filter(|(k, _)| !k.contains("self_attn.rotary_emb.inv_freq"))
            .collect()
    }

    /// Python: `LanguageModel.layers`.
    pub fn layers(&self) -> &[TransformerBlock] {
        &self.model.layers
    }

    /// Python: `LanguageModel.head_dim`.
    pub fn head_dim(&self) -> i32 {
        if self.config.model_type == "gemma" {
            self.config.hidden_size / self.config.num_attention_heads
        } else {
            self.config.head_dim
        }
    }

    /// Python: `LanguageModel.n_kv_heads`.
    pub fn n_kv_heads(&self) -> i32 {
        self.config.kv_heads()
    }
}
