//! `mlx_vlm/models/idefics3/language.py`: the Llama decoder of Idefics3
//! and SmolVLM (pre-norm attention with RoPE and grouped key/value heads,
//! a SwiGLU MLP), its embeddings and output layer held directly by
//! [`LanguageModel`] (Python has no inner `model`).
//!
//! As in Python, the head width is `hidden_size / num_attention_heads`
//! (a `head_dim` in the file is ignored) and RoPE has no scaling (a
//! `rope_scaling` in the file is ignored).
//!
//! Divergences from Python: a cache list whose length is not the layer
//! count is a typed error (Python's `zip` would skip layers); the batched
//! decode ([`LanguageModel::decode_batch`]) masks the rows' left padding,
//! which Python's attends to, and builds fewer graph operations for the
//! same values: hidden states `[rows, hidden]` ([`HeadLayout`]), the mask
//! broadcast to the heads and the RoPE angles built once for all the
//! layers ([`DecodeStepShared`]).

use mlx_rs::nn::{Embedding, Linear, RMSNorm, RoPE};
use mlx_rs::{Array, ops};

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
    /// `head_dim ** -0.5`.
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
        let (n_heads, n_kv_heads) = (config.num_attention_heads, config.num_key_value_heads);
        let head_dim = config.head_dim();
        Ok(Attention {
            n_heads,
            n_kv_heads,
            scale: (head_dim as f32).powf(-0.5),
            q_proj: Linear::new(dim, n_heads * head_dim, false)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            o_proj: Linear::new(n_heads * head_dim, dim, false)?,
            rope: RoPE::new(head_dim, config.rope_traditional, config.rope_theta, 1.0),
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
    /// row (`[rows, hidden]`, [`HeadLayout`]), rotating with a decode
    /// step's `angles` where given ([`rope_at`]).
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
    /// Self-attention.
    pub self_attn: Attention,
    /// The SwiGLU MLP (Python: `SwiGLUMLP as MLP`).
    pub mlp: MLP,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: RMSNorm,
}

impl TransformerBlock {
    /// Python: `TransformerBlock(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        let norm = || RMSNorm::new(config.hidden_size, config.rms_norm_eps);
        Ok(TransformerBlock {
            self_attn: Attention::new(config)?,
            mlp: MLP::new(config.hidden_size, config.intermediate_size, false)?,
            input_layernorm: norm()?,
            post_attention_layernorm: norm()?,
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
        let x_normed = self.input_layernorm.forward(x)?;
        let r = self.self_attn.forward_at(&x_normed, mask, cache, angles)?;
        let h = ops::add(x, &r)?;
        let r = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok(ops::add(&h, &r)?)
    }
}

/// Python: `LanguageModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<TransformerBlock>,
    /// Final norm.
    pub norm: RMSNorm,
    /// The output layer.
    pub lm_head: Linear,
}

impl LanguageModel {
    /// Python: `LanguageModel(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(LanguageModel {
            config: config.clone(),
            embed_tokens: Embedding::new(config.vocab_size, config.hidden_size)?,
            layers: (0..config.num_hidden_layers)
                .map(|_| TransformerBlock::new(config))
                .collect::<Result<Vec<_>>>()?,
            norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
            lm_head: Linear::new(config.hidden_size, config.vocab_size, false)?,
        })
    }

    /// Logits (Python: `LanguageModel.__call__`): given embeddings are cast
    /// to the norm's dtype; without a `mask`, Python's
    /// `create_attention_mask(h, cache)` (one token: none, else causal). An
    /// empty `cache` is Python's `cache=None`.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let h = match inputs_embeds {
            None => self.embed_tokens.forward(inputs)?,
            Some(e) => e.as_type(self.norm.weight.dtype())?,
        };
        if !cache.is_empty() && cache.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "Idefics3 LanguageModel: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let own_mask;
        let mask = match mask {
            Some(m) => m,
            None => {
                own_mask = base::create_attention_mask(&h, None, false)?;
                &own_mask
            }
        };
        let caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        self.forward_layers(h, mask, caches)
    }

    /// The layers, the final norm and the output layer over `h`, with one
    /// cache per layer from `caches` while it lasts: the rest of Python's
    /// `LanguageModel.__call__`, shared by [`LanguageModel::forward`] and
    /// [`LanguageModel::decode_batch`].
    pub fn forward_layers<'c>(
        &self,
        h: Array,
        mask: &AttentionMask,
        caches: impl Iterator<Item = &'c mut dyn Cache>,
    ) -> Result<Array> {
        self.forward_layers_at(h, mask, caches, None)
    }

    /// [`LanguageModel::forward_layers`] with a decode step's RoPE angles,
    /// shared by every layer (all rotate alike).
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
        Ok(self.lm_head.forward(&self.norm.forward(&h)?)?)
    }

    /// Logits `[batch, 1, vocab]` of one decode step of several requests
    /// (Python: `LanguageModel.__call__` on a list of `BatchKVCache`s):
    /// each row's RoPE at its own token count
    /// ([`crate::models::rope_utils::rope_at_cache`]), the mask hiding
    /// each row's left padding.
    ///
    /// Divergence: Python builds its mask from the cache list, which has
    /// no `make_mask` (no mask for one token), so its batched decode
    /// attends to the zero keys of the left padding; masking them here
    /// makes each row compute what its single run does.
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &[&mut ()],
    ) -> Result<Array> {
        let rows = states.len() as i32;
        let logits = decode_step(
            "Idefics3 decode_batch",
            inputs,
            cache,
            states.len(),
            &self.embed_tokens,
            self.layers.len(),
            |h, mask, caches| {
                // The step's constants built once for every layer, and the
                // hidden states kept [rows, hidden] ([`DecodeStepShared`]).
                let rope = self.layers.first().map(|l| {
                    let a = &l.self_attn;
                    (&a.rope, [a.n_heads, a.n_kv_heads])
                });
                let step = DecodeStepShared::new(h, mask, caches, rope)?;
                let caches = step.caches.into_iter();
                self.forward_layers_at(step.h, &step.mask, caches, step.angles.as_ref())
            },
        )?;
        Ok(logits.reshape(&[rows, 1, -1])?)
    }

    /// Python: `LanguageModel.sanitize`: precomputed rotary frequencies
    /// dropped.
    pub fn sanitize(
        weights: std::collections::HashMap<String, Array>,
    ) -> std::collections::HashMap<String, Array> {
        weights
            .into_iter()
            .filter(|(k, _)| !k.contains("self_attn.rotary_emb.inv_freq"))
            .collect()
    }

    /// Python: `LanguageModel.head_dim`.
    pub fn head_dim(&self) -> i32 {
        self.config.head_dim()
    }

    /// Python: `LanguageModel.n_kv_heads`.
    pub fn n_kv_heads(&self) -> i32 {
        self.config.num_key_value_heads
    }
}
