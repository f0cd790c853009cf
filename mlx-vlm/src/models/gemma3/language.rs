//! `mlx_vlm/models/gemma3/language.py`: the Gemma 3 decoder: sliding-window
//! layers (local RoPE base, a rotating cache) interleaved with global ones
//! (global RoPE base and scaling, a growing cache), per-head query/key
//! norms, pre/post norms around attention and MLP, float16 residual
//! clipping.
//!
//! Python's `RMSNorm` here is PaliGemma's (`1 + weight`), shared.
//!
//! Divergences from Python: a config with fewer layers than
//! `sliding_window_pattern` works (Python indexes the cache list out of
//! range); `clip_residual` is not compiled (the same arithmetic). A batched
//! decode step ([`Gemma3Model::decode_batch`], Rust's own path) builds
//! fewer graph operations for the same values: its hidden states are
//! `[rows, hidden]` ([`HeadLayout`]), each kind of layer's mask is
//! broadcast to the heads once, and its RoPE angles are built once a kind
//! ([`AttentionAngles`]) where Python rebuilds them in every layer. One
//! request's forward (a prefill, a single run's decode step) builds its
//! angles once a kind too ([`AttentionAngles::at_offset`]) and keeps its
//! hidden states `[len, hidden]` ([`HeadLayout::one_request`]).

use mlx_rs::nn::{Embedding, Linear, RoPE, activations};
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::TextConfig;
use crate::models::base::{self, AttentionMask};
use crate::models::cache::{Cache, CachedKv, KvCache, RotatingKvCache};
pub use crate::models::paligemma::language::RMSNorm;
use crate::models::BatchLayerCache;
use crate::models::attention::HeadLayout;
use crate::models::rope_utils::{AttentionAngles, initialize_rope, rope_at};
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
    /// Features per head.
    #[module(skip)]
    pub head_dim: i32,
    /// `query_pre_attn_scalar ** -0.5`.
    #[module(skip)]
    pub scale: f32,
    /// Whether this layer attends within the sliding window.
    #[module(skip)]
    pub is_sliding: bool,
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
    /// Rotary embedding (local or global base).
    #[module(skip)]
    pub rope: RoPE,
}

impl Attention {
    /// Python: `Attention(config, layer_idx)`.
    pub fn new(config: &TextConfig, layer_idx: i32) -> Result<Self> {
        let dim = config.hidden_size;
        let (n_heads, n_kv_heads, head_dim) = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        );
        let is_sliding = (layer_idx + 1) % config.sliding_window_pattern != 0;
        let rope = initialize_rope(
            head_dim,
            if is_sliding {
                config.rope_local_base_freq
            } else {
                config.rope_global_base_freq
            },
            config.rope_traditional,
            if is_sliding {
                None
            } else {
                config.rope_scaling.as_ref()
            },
        )?;
        Ok(Attention {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: config.query_pre_attn_scalar.powf(-0.5),
            is_sliding,
            q_proj: Linear::new(dim, n_heads * head_dim, false)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            o_proj: Linear::new(n_heads * head_dim, dim, false)?,
            q_norm: RMSNorm::new(head_dim, config.rms_norm_eps)?,
            k_norm: RMSNorm::new(head_dim, config.rms_norm_eps)?,
            rope,
        })
    }

    /// Python: `Attention.__call__(x, mask, cache)`; an array mask wider
    /// than the keys keeps its last columns (the sliding window).
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        self.forward_at(x, None, mask, cache, None)
    }

    /// [`Attention::forward`], rotating the queries and keys with
    /// `angles` (built once for every layer of this layer's kind) where
    /// they fit, else from the cache; `layout` says how `x` is laid out
    /// when it is not what its shape says ([`HeadLayout::of`]).
    pub fn forward_at(
        &self,
        x: &Array,
        layout: Option<HeadLayout>,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        angles: Option<&AttentionAngles>,
    ) -> Result<Array> {
        // `[rows, hidden]` is one token a row (a batched decode step)
        // unless the caller says it is one request's tokens.
        let layout = match layout {
            Some(layout) => layout,
            None => HeadLayout::of(x, "Attention")?,
        };
        let heads = |a: Array, n: i32| layout.split(&a, n);
        let queries = self
            .q_norm
            .forward(&heads(self.q_proj.forward(x)?, self.n_heads)?)?;
        let keys = self
            .k_norm
            .forward(&heads(self.k_proj.forward(x)?, self.n_kv_heads)?)?;
        let values = heads(self.v_proj.forward(x)?, self.n_kv_heads)?;
        let (queries, cached) = match cache {
            Some(cache) => {
                let (queries, keys) = rope_at(&self.rope, &queries, &keys, cache, angles)?;
                let cached = cache.update_and_fetch_kv(&keys, &values)?;
                (queries, cached)
            }
            None => (
                self.rope.forward(&queries, 0)?,
                CachedKv::Plain(self.rope.forward(&keys, 0)?, values),
            ),
        };
        let key_len = base::kv_sequence_length(&cached);
        let sliced;
        let mask = match mask {
            AttentionMask::Array(m) if m.shape().last() != Some(&key_len) => {
                let width = m.shape().last().copied().unwrap_or(0);
                sliced = AttentionMask::Array(m.index(idx![mlx_rs::Ellipsis, width - key_len..])?);
                &sliced
            }
            other => other,
        };
        let output =
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, mask, None)?;
        Ok(self.o_proj.forward(&layout.merge(&output)?)?)
    }
}

/// Python: `MLP`: `down(gelu_approx(gate(x)) * up(x))`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct MLP {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
}

impl MLP {
    /// Python: `MLP(dim, hidden_dim)`.
    pub fn new(dim: i32, hidden_dim: i32) -> Result<Self> {
        Ok(MLP {
            gate_proj: Linear::new(dim, hidden_dim, false)?,
            down_proj: Linear::new(hidden_dim, dim, false)?,
            up_proj: Linear::new(dim, hidden_dim, false)?,
        })
    }

    /// Python: `MLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gate = activations::gelu_approx(&self.gate_proj.forward(x)?)?;
        let h = ops::multiply(&gate, &self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&h)?)
    }
}

/// Python: `clip_residual(x, y)`: `x + y`, computed in float32 and clipped
/// to float16's range when `x` is float16; `y` absent: `x` clipped so.
pub fn clip_residual(x: &Array, y: Option<&Array>) -> Result<Array> {
    let bound = 65504.0f32;
    if x.dtype() != Dtype::Float16 {
        return match y {
            Some(y) => Ok(ops::add(x, y)?),
            None => Ok(x.clone()),
        };
    }
    let sum = match y {
        Some(y) => ops::add(&x.as_type(Dtype::Float32)?, &y.as_type(Dtype::Float32)?)?,
        None => x.as_type(Dtype::Float32)?,
    };
    Ok(ops::clip(&sum, -bound, bound)?.as_type(Dtype::Float16)?)
}

/// Python: `TransformerBlock`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct TransformerBlock {
    /// Self-attention.
    pub self_attn: Attention,
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
}

impl TransformerBlock {
    /// Python: `TransformerBlock(config, layer_idx)`.
    pub fn new(config: &TextConfig, layer_idx: i32) -> Result<Self> {
        let norm = || RMSNorm::new(config.hidden_size, config.rms_norm_eps);
        Ok(TransformerBlock {
            self_attn: Attention::new(config, layer_idx)?,
            mlp: MLP::new(config.hidden_size, config.intermediate_size)?,
            input_layernorm: norm()?,
            post_attention_layernorm: norm()?,
            pre_feedforward_layernorm: norm()?,
            post_feedforward_layernorm: norm()?,
        })
    }

    /// Python: `TransformerBlock.__call__(x, mask, cache)`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
    ) -> Result<Array> {
        self.forward_at(x, None, mask, cache, None)
    }

    /// [`TransformerBlock::forward`] with shared RoPE angles and a layout
    /// ([`Attention::forward_at`]).
    pub fn forward_at(
        &self,
        x: &Array,
        layout: Option<HeadLayout>,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        angles: Option<&AttentionAngles>,
    ) -> Result<Array> {
        let x = clip_residual(x, None)?;
        let r = self.self_attn.forward_at(
            &self.input_layernorm.forward(&x)?,
            layout,
            mask,
            cache,
            angles,
        )?;
        let h = self.post_attention_layernorm.forward(&r)?;
        let h = clip_residual(&x, Some(&h))?;
        let r = self
            .mlp
            .forward(&self.pre_feedforward_layernorm.forward(&h)?)?;
        let out = self.post_feedforward_layernorm.forward(&r)?;
        clip_residual(&h, Some(&out))
    }
}

/// Python: `Gemma3Model`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Gemma3Model {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// Whether given input embeddings are scaled too (Python's
    /// `scale_inputs_embeds`, true).
    #[module(skip)]
    pub scale_inputs_embeds: bool,
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<TransformerBlock>,
    /// Final norm.
    pub norm: RMSNorm,
}

impl Gemma3Model {
    /// Python: `Gemma3Model(config, scale_inputs_embeds=True)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(Gemma3Model {
            config: config.clone(),
            scale_inputs_embeds: true,
            embed_tokens: Embedding::new(config.vocab_size, config.hidden_size)?,
            layers: (0..config.num_hidden_layers)
                .map(|i| TransformerBlock::new(config, i))
                .collect::<Result<Vec<_>>>()?,
            norm: RMSNorm::new(config.hidden_size, config.rms_norm_eps)?,
        })
    }

    /// Python: `Gemma3Model.__call__`: embeddings scaled by
    /// `sqrt(hidden_size)` rounded to bfloat16 (as Python builds the
    /// factor), the global and sliding-window masks from the layers'
    /// caches unless `mask` is given, the layers, the final norm. An empty
    /// `cache` is Python's `cache=None`.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&AttentionMask>,
        cache: &mut [Box<dyn Cache>],
    ) -> Result<Array> {
        let h = self.embed(inputs, inputs_embeds)?;
        if !cache.is_empty() && cache.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "Gemma3Model: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let pattern = self.config.sliding_window_pattern;
        let window = self.config.sliding_window;
        let n = h.shape().get(1).copied().unwrap_or(1);
        let mask_from =
            |c: Option<&Box<dyn Cache>>, window: Option<i32>| -> Result<AttentionMask> {
                match c {
                    Some(c) => c.make_mask(n, window, false),
                    None => base::create_attention_mask(&h, window, false),
                }
            };
        let (global_mask, sliding_mask) = match mask {
            Some(_) => (AttentionMask::None, AttentionMask::None),
            None => (
                mask_from(cache.get((pattern - 1) as usize), None)?,
                if pattern > 1 {
                    mask_from(cache.first(), Some(window))?
                } else {
                    AttentionMask::None
                },
            ),
        };
        // Each kind's RoPE angles once, from its first layer's cache (every
        // layer of a kind rotates at the same offset), where the batch is
        // one request.
        let angles = |i: Option<usize>| -> Result<Option<AttentionAngles>> {
            let (Some(i), [1, len, ..]) = (i, h.shape()) else {
                return Ok(None);
            };
            let (Some(layer_cache), Some(layer)) = (cache.get(i), self.layers.get(i)) else {
                return Ok(None);
            };
            let attention = &layer.self_attn;
            let heads = [attention.n_heads, attention.n_kv_heads];
            AttentionAngles::at_offset(&attention.rope, &**layer_cache, heads, *len, h.dtype())
        };
        let global = LayerKind {
            mask: global_mask,
            angles: angles(self.first_layer(true))?,
        };
        let sliding = LayerKind {
            mask: sliding_mask,
            angles: angles(self.first_layer(false))?,
        };
        let mut caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        // One request's tokens go through the layers as a `[len, hidden]`
        // matrix ([`HeadLayout::one_request`]: the same values, fewer
        // graph operations), and come back `[1, len, hidden]`.
        if let [1, len, _] = *h.shape() {
            let flat = h.reshape(&[len, -1])?;
            let layout = Some(HeadLayout::one_request(len));
            let out = self.forward_layers(flat, layout, mask, [&global, &sliding], &mut caches)?;
            return Ok(out.reshape(&[1, len, -1])?);
        }
        self.forward_layers(h, None, mask, [&global, &sliding], &mut caches)
    }

    /// The first global (or sliding-window) layer, whose cache stands for
    /// every layer of its kind.
    fn first_layer(&self, global: bool) -> Option<usize> {
        (0..self.layers.len()).find(|&i| self.config.is_global_layer(i as i32) == global)
    }

    /// The embeddings of `inputs`, or `inputs_embeds`, scaled by
    /// `sqrt(hidden_size)` (in bfloat16, as Python) when they are the
    /// tokens' or `scale_inputs_embeds` says so.
    fn embed(&self, inputs: &Array, inputs_embeds: Option<&Array>) -> Result<Array> {
        let embedded_tokens = inputs_embeds.is_none();
        let mut h = match inputs_embeds {
            Some(e) => e.clone(),
            None => self.embed_tokens.forward(inputs)?,
        };
        if embedded_tokens || self.scale_inputs_embeds {
            let factor = Array::scalar::<f32>((self.config.hidden_size as f32).sqrt())
                .as_type(Dtype::Bfloat16)?
                .as_type(h.dtype())?;
            h = ops::multiply(&h, &factor)?;
        }
        Ok(h)
    }

    /// The layers over `h` (laid out as `layout` says, else as its shape
    /// says; `mask` for every layer when given, else the global or the
    /// sliding kind's mask by layer), one cache a layer from `caches`
    /// while it lasts, and the final norm.
    fn forward_layers(
        &self,
        mut h: Array,
        layout: Option<HeadLayout>,
        mask: Option<&AttentionMask>,
        [global, sliding]: [&LayerKind; 2],
        caches: &mut dyn Iterator<Item = &mut dyn Cache>,
    ) -> Result<Array> {
        for (i, layer) in self.layers.iter().enumerate() {
            let kind = if self.config.is_global_layer(i as i32) {
                global
            } else {
                sliding
            };
            let local_mask = mask.unwrap_or(&kind.mask);
            h = layer.forward_at(&h, layout, local_mask, caches.next(), kind.angles.as_ref())?;
        }
        self.norm.forward(&h)
    }

    /// Python: `GenerationBatch._step`'s language-model call for Gemma 3:
    /// one token a row (`inputs` `[rows, 1]`) over one batched cache a
    /// layer, each layer's mask from a cache of its kind (the global
    /// layers' plain, the sliding layers' rotating one), hiding each row's
    /// padding. The final hidden states are `[rows, hidden]`.
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        rows: usize,
    ) -> Result<Array> {
        let layers = self.layers.len();
        if inputs.shape() != [rows as i32, 1]
            || cache.len() != layers
            || cache.iter().any(|c| c.batch_size() != rows)
        {
            return Err(Error::InvalidArgument(format!(
                "Gemma 3 decode_batch: needs inputs [{rows}, 1] (one token per request) and \
                 one cache of {rows} rows per layer ({layers}), got inputs {:?} and {} caches",
                inputs.shape(),
                cache.len()
            )));
        }
        // The hidden states stay `[rows, hidden]`, one token a row: the
        // projections then multiply matrices, where a `[rows, 1, hidden]`
        // input adds a flatten and an unflatten to each (the same values).
        let h = self.embed(&inputs.reshape(&[rows as i32])?, None)?;
        // Built once a step for each kind from its first layer: every layer
        // of a kind has the same window and RoPE, and its cache holds as
        // many tokens a row.
        let kind_of = |global: bool| -> Result<LayerKind> {
            let Some(i) = self.first_layer(global) else {
                return Ok(LayerKind::masked(AttentionMask::None));
            };
            let window = (!global).then_some(self.config.sliding_window);
            let layer_cache = cache[i].as_cache();
            let attention = &self.layers[i].self_attn;
            let heads = [attention.n_heads, attention.n_kv_heads];
            let mask = layer_cache.make_mask(1, window, true)?;
            Ok(LayerKind {
                mask: mask.for_heads(attention.n_heads)?,
                angles: AttentionAngles::at(&attention.rope, layer_cache, heads, 1, h.dtype())?,
            })
        };
        let (global, sliding) = (kind_of(true)?, kind_of(false)?);
        let mut caches = cache.iter_mut().map(|c| c.as_cache_mut());
        self.forward_layers(h, None, None, [&global, &sliding], &mut caches)
    }
}

/// What the layers of one kind (global or sliding-window) share in a
/// forward: the mask, and in a batched decode step the RoPE angles
/// ([`AttentionAngles`]; `None` elsewhere, each layer rotating from its
/// cache).
struct LayerKind {
    /// The kind's attention mask.
    mask: AttentionMask,
    /// The kind's queries' and keys' RoPE angles at this step.
    angles: Option<AttentionAngles>,
}

impl LayerKind {
    /// A kind with `mask` and no shared angles.
    fn masked(mask: AttentionMask) -> Self {
        LayerKind { mask, angles: None }
    }
}

/// Python: `LanguageModel`.
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel {
    /// The text configuration.
    #[module(skip)]
    pub config: TextConfig,
    /// The decoder.
    pub model: Gemma3Model,
    /// The output layer.
    pub lm_head: Linear,
}

impl LanguageModel {
    /// Python: `LanguageModel(config)`.
    pub fn new(config: &TextConfig) -> Result<Self> {
        Ok(LanguageModel {
            config: config.clone(),
            model: Gemma3Model::new(config)?,
            lm_head: Linear::new(config.hidden_size, config.vocab_size, false)?,
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
        let rows = states.len() as i32;
        Ok(self.lm_head.forward(&out)?.reshape(&[rows, 1, -1])?)
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
        Ok(self.lm_head.forward(&out)?)
    }

    /// Python: `LanguageModel.sanitize`: the output layer's weight tied to
    /// the embeddings unless the checkpoint has an unprefixed
    /// `lm_head.weight`; `rotary_emb.inv_freq` dropped.
    ///
    /// As in Python, a `language_model.lm_head.weight` the checkpoint holds
    /// (mlx-community conversions save the tied copy) is replaced by the
    /// embedding, so the two share one array: keeping the copy cost the
    /// 4B-shaped 4-bit benchmark 0.34 GB and a longer load (BENCHMARKS.md).
    /// Gemma 3 always ties its output layer to the embeddings.
    pub fn sanitize(
        mut weights: std::collections::HashMap<String, Array>,
    ) -> std::collections::HashMap<String, Array> {
        if !weights.contains_key("lm_head.weight")
            && let Some(embed) = weights
                .get("language_model.model.embed_tokens.weight")
                .cloned()
        {
            weights.insert("language_model.lm_head.weight".into(), embed);
        }
        weights
            .into_iter()
            .filter(|(k, _)| !k.contains("self_attn.rotary_emb.inv_freq"))
            .collect()
    }

    /// Python: `LanguageModel.layers`.
    pub fn layers(&self) -> &[TransformerBlock] {
        &self.model.layers
    }

    /// Python: `LanguageModel.make_cache`: a growing cache for the global
    /// layers, a rotating one of `sliding_window` tokens for the others.
    pub fn make_cache(&self) -> Vec<Box<dyn Cache>> {
        (0..self.config.num_hidden_layers)
            .map(|i| -> Box<dyn Cache> {
                if self.config.is_global_layer(i) {
                    Box::new(KvCache::new())
                } else {
                    Box::new(RotatingKvCache::new(self.config.sliding_window, 0))
                }
            })
            .collect()
    }
}
