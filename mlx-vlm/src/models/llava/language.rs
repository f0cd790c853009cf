//! `mlx_vlm/models/llava/language.py`: the Llama decoder of LLaVA (also
//! Qwen2-shaped, with biased query/key/value projections, for
//! `text_config.model_type` `qwen2`).
//!
//! Divergences from Python: an unsupported text `model_type` is a typed
//! error naming the supported ones (Python raises a `ValueError`); a cache
//! list whose length is not the number of layers is a typed error (Python's
//! `zip` would skip layers); the batched decode
//! ([`LanguageModel::decode_batch`]) masks the rows' left padding, which
//! Python's attends to, and builds fewer graph operations for the same
//! values: hidden states `[rows, hidden]` ([`HeadLayout`]), the mask
//! broadcast to the heads and the RoPE angles built once for all the
//! layers ([`DecodeStepShared`]).

use std::collections::HashMap;

use mlx_rs::Array;
use mlx_rs::nn::{Embedding, Linear, RMSNorm, RoPE};

use super::config::TextConfig;
use crate::models::base::{self, AttentionMask};
use crate::models::batch_layer_cache::{BatchLayerCache, decode_step};
use crate::models::cache::{Cache, CachedKv};
use crate::models::mlp::SwiGLUMLP as MLP;
use crate::models::attention::HeadLayout;
use crate::models::rope_utils::{AttentionAngles, DecodeStepShared, rope_at};
use crate::{Error, Result};

/// Python: `Attention`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Attention {
    /// Query heads.
    #[module(skip)]
    pub n_heads: i32,
    /// Key/value heads.
    #[module(skip)]
    pub n_kv_heads: i32,
    /// Query heads per key/value head.
    #[module(skip)]
    pub repeats: i32,
    /// `head_dim ** -0.5`.
    #[module(skip)]
    pub scale: f32,
    /// Query projection (biased for `qwen2`).
    pub q_proj: Linear,
    /// Key projection (biased for `qwen2`).
    pub k_proj: Linear,
    /// Value projection (biased for `qwen2`).
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    /// Rotary embedding (linear `rope_scaling` scales positions by
    /// `1 / factor`).
    #[module(skip)]
    pub rope: RoPE,
}

impl Attention {
    /// Python: `Attention(config)`; `attention_bias` is Python's
    /// `config.model_type == "qwen2"` (LLaVA-NeXT's copy: never).
    pub fn new(config: &TextConfig, attention_bias: bool) -> Result<Self> {
        let dim = config.hidden_size;
        let n_heads = config.num_attention_heads;
        let n_kv_heads = config.kv_heads();
        let head_dim = dim / n_heads;
        Ok(Attention {
            n_heads,
            n_kv_heads,
            repeats: n_heads / n_kv_heads,
            scale: (head_dim as f32).powf(-0.5),
            q_proj: Linear::new(dim, n_heads * head_dim, attention_bias)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, attention_bias)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, attention_bias)?,
            o_proj: Linear::new(n_heads * head_dim, dim, false)?,
            rope: RoPE::new(
                head_dim,
                config.rope_traditional,
                config.rope_theta,
                config.rope_scale(),
            ),
        })
    }

    /// Python: `Attention.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        self.forward_at(x, mask, cache, None)
    }

    /// [`Attention::forward`] over `[batch, len, hidden]` or one token a
    /// row (`[rows, hidden]`, [`HeadLayout`]), rotating the queries and
    /// keys with a decode step's `angles` (built once for every layer)
    /// where they fit, else from the cache.
    pub fn forward_at(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        angles: Option<&AttentionAngles>,
    ) -> Result<Array> {
        let layout = HeadLayout::of(x, "Attention")?;
        let queries = layout.split(&self.q_proj.forward(x)?, self.n_heads)?;
        let keys = layout.split(&self.k_proj.forward(x)?, self.n_kv_heads)?;
        let values = layout.split(&self.v_proj.forward(x)?, self.n_kv_heads)?;
        let (queries, cached) = match cache {
            Some(cache) => {
                let (queries, keys) = rope_at(&self.rope, &queries, &keys, cache, angles)?;
                (queries, cache.update_and_fetch_kv(&keys, &values)?)
            }
            None => (
                self.rope.forward(&queries, 0)?,
                CachedKv::Plain(self.rope.forward(&keys, 0)?, values),
            ),
        };
        let output =
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, mask, None)?;
        Ok(self.o_proj.forward(&layout.merge(&output)?)?)
    }
}

/// Python: `TransformerBlock`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct TransformerBlock {
    /// Heads.
    #[module(skip)]
    pub num_attention_heads: i32,
    /// Width.
    #[module(skip)]
    pub hidden_size: i32,
    /// Self-attention.
    pub self_attn: Attention,
    /// The SwiGLU MLP.
    pub mlp: MLP,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: RMSNorm,
}

impl TransformerBlock {
    /// Python: `TransformerBlock(config)`.
    pub fn new(config: &TextConfig, attention_bias: bool) -> Result<Self> {
        Ok(TransformerBlock {
            num_attention_heads: config.num_attention_heads,
            hidden_size: config.hidden_size,
            self_attn: Attention::new(config, attention_bias)?,
            mlp: MLP::new(config.hidden_size, config.intermediate_size, false)?,
            input_layernorm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
            post_attention_layernorm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `TransformerBlock.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        self.forward_at(x, mask, cache, None)
    }

    /// [`TransformerBlock::forward`] with a decode step's RoPE angles
    /// ([`Attention::forward_at`]).
    pub fn forward_at(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        angles: Option<&AttentionAngles>,
    ) -> Result<Array> {
        let r = self.self_attn.forward_at(
            &self.input_layernorm.forward(x)?,
            mask,
            cache,
            angles,
        )?;
        let h = mlx_rs::ops::add(x, &r)?;
        let r = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok(mlx_rs::ops::add(&h, &r)?)
    }
}

/// Python: `Llama`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Llama {
    /// Vocabulary size.
    #[module(skip)]
    pub vocab_size: i32,
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<TransformerBlock>,
    /// Final norm.
    pub norm: RMSNorm,
}

impl Llama {
    /// Python: `Llama(config)`.
    pub fn new(config: &TextConfig, attention_bias: bool) -> Result<Self> {
        Ok(Llama {
            vocab_size: config.vocab_size,
            embed_tokens: Embedding::new(config.vocab_size, config.hidden_size)?,
            layers: (0..config.num_hidden_layers)
                .map(|_| TransformerBlock::new(config, attention_bias))
                .collect::<Result<Vec<_>>>()?,
            norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `Llama.__call__`: the embeddings (or the merged ones given),
    /// the causal mask of the first cache (Python's
    /// `create_attention_mask(h, cache)` with the list of caches, which has
    /// no `make_mask`: `"causal"`, none for one token), the layers, the
    /// final norm. An empty `cache` is Python's `cache=None`.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let h = match inputs_embeds {
            Some(e) => e.clone(),
            None => self.embed_tokens.forward(inputs)?,
        };
        if !cache.is_empty() && cache.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "Llama: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let mask = match mask {
            Some(m) => m.clone(),
            None => base::create_attention_mask(&h, None, false)?,
        };
        let caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        self.forward_layers(h, &mask, caches)
    }

    /// The layers and the final norm over `h`, with one cache per layer
    /// from `caches` while it lasts: the second half of Python's
    /// `Llama.__call__`, shared by [`Llama::forward`] and the batched
    /// decode.
    pub fn forward_layers<'c>(
        &self,
        h: Array,
        mask: &AttentionMask,
        caches: impl Iterator<Item = &'c mut dyn Cache>,
    ) -> Result<Array> {
        self.forward_layers_at(h, mask, caches, None)
    }

    /// [`Llama::forward_layers`] with a decode step's RoPE angles, shared
    /// by every layer (all rotate alike).
    pub fn forward_layers_at<'c>(
        &self,
        mut h: Array,
        mask: &AttentionMask,
        mut caches: impl Iterator<Item = &'c mut dyn Cache>,
        angles: Option<&AttentionAngles>,
    ) -> Result<Array> {
        for layer in &self.layers {
            h = layer.forward_at(&h, mask, caches.next(), angles)?;
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
    /// `llama`, `qwen2` or `mistral`.
    #[module(skip)]
    pub model_type: String,
    /// The decoder.
    pub model: Llama,
    /// The output layer (absent when tied to the embedding).
    pub lm_head: Option<Linear>,
}

impl LanguageModel {
    /// Python: `LanguageModel(config)`: `llama` or `qwen2` text models,
    /// the output layer tied when `tie_word_embeddings`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Self::with_variant(config, &["llama", "qwen2"], config.tie_word_embeddings)
    }

    /// The decoder for the text `model_types` a family accepts, tied or
    /// not (LLaVA-NeXT's copy of this file: `mistral` or `llama`, never
    /// tied, no biases).
    pub fn with_variant(config: &TextConfig, model_types: &[&str], tied: bool) -> Result<Self> {
        if !model_types.contains(&config.model_type.as_str()) {
            return Err(Error::UnknownModelType {
                model_type: config.model_type.clone(),
                file: "text_config".into(),
                supported: model_types.join(", "),
            });
        }
        let attention_bias = config.model_type == "qwen2";
        Ok(LanguageModel {
            config: config.clone(),
            model_type: config.model_type.clone(),
            model: Llama::new(config, attention_bias)?,
            lm_head: if tied {
                None
            } else {
                Some(Linear::new(config.hidden_size, config.vocab_size, false)?)
            },
        })
    }

    /// Logits (Python: `LanguageModel.__call__`).
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let out = self.model.forward(inputs, inputs_embeds, mask, cache)?;
        self.logits(&out)
    }

    /// Logits `[batch, 1, vocab]` of one decode step of several requests
    /// (Python: `LanguageModel.__call__` on a list of `BatchKVCache`s):
    /// each row's RoPE at its own token count
    /// ([`crate::models::rope_utils::rope_at_cache`]), the mask hiding
    /// each row's left padding.
    ///
    /// Divergence: Python's `Llama` builds its mask from the cache list,
    /// which has no `make_mask` (no mask for one token), so its batched
    /// decode attends to the zero keys of the left padding; masking them
    /// here makes each row compute what its single run does.
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &[&mut ()],
    ) -> Result<Array> {
        let out = decode_step(
            "LLaVA decode_batch",
            inputs,
            cache,
            states.len(),
            &self.model.embed_tokens,
            self.model.layers.len(),
            |h, mask, caches| {
                // The step's constants built once for every layer, and the
                // hidden states kept [rows, hidden] ([`DecodeStepShared`]).
                let rope = self.model.layers.first().map(|l| {
                    let a = &l.self_attn;
                    (&a.rope, [a.n_heads, a.n_kv_heads])
                });
                let step = DecodeStepShared::new(h, mask, caches, rope)?;
                let caches = step.caches.into_iter();
                self.model.forward_layers_at(step.h, &step.mask, caches, step.angles.as_ref())
            },
        )?;
        let rows = states.len() as i32;
        Ok(self.logits(&out)?.reshape(&[rows, 1, -1])?)
    }

    /// The output layer over the normed hidden states.
    fn logits(&self, out: &Array) -> Result<Array> {
        match &self.lm_head {
            Some(head) => Ok(head.forward(out)?),
            None => Ok(self.model.embed_tokens.as_linear(out)?),
        }
    }

    /// Python: `LanguageModel.sanitize`: drops `rotary_emb.inv_freq`.
    pub fn sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
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
        self.config.hidden_size / self.config.num_attention_heads
    }

    /// Python: `LanguageModel.n_kv_heads`.
    pub fn n_kv_heads(&self) -> i32 {
        self.config.kv_heads()
    }
}
