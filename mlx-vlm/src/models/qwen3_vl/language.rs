//! `mlx_vlm/models/qwen3_vl/language.py`: the Qwen3 decoder with
//! interleaved multimodal RoPE, per-head query/key norms and deepstack
//! visual features added to the first layers' hidden states.
//!
//! Python keeps the request's mRoPE state on the `LanguageModel`; here it
//! is the caller's [`RequestState`] (Qwen2.5-VL's type). The position-id
//! logic of `__call__` and the rope index are Qwen2.5-VL's (Python copies
//! them), the rope index with each video grid split into one row per
//! temporal patch, as Python's `get_rope_index` here does.
//!
//! Divergence from Python: `_deepstack_process` adds the features with a
//! gather and `where` instead of `.at[].add` (the same sums: each position
//! gets one feature), and a feature count that does not match the row's
//! visual tokens is an error rather than skipped silently.

use mlx_rs::nn::{Embedding, Linear, Module, RMSNorm};
use mlx_rs::{Array, Dtype, idx, ops};

use super::config::{ModelConfig, TextConfig};
use crate::models::base::{self, AttentionMask};
use crate::models::batch_layer_cache::BatchLayerCache;
use crate::models::cache::{Cache, CachedKv};
use crate::models::mlp::SwiGLUMLP;
pub use crate::models::qwen2_5_vl::language::{LanguageModelArgs, RequestState};
use crate::models::qwen2_5_vl::language::{
    RopeIndexSettings, decode_batch, mask_to_keys, mrope_position_ids, rope_index,
};
use crate::models::rope_utils::{self, MRoPERotaryEmbedding, MRoPEStyle};
use crate::{Error, Result};

/// The interleaved mRoPE embedding (Python: `Qwen3VLRotaryEmbedding`).
pub fn qwen3_vl_rotary_embedding(
    dim: i32,
    max_position_embeddings: i32,
    base: f32,
    mrope_section: Option<&[i32]>,
) -> Result<MRoPERotaryEmbedding> {
    MRoPERotaryEmbedding::new(
        dim,
        max_position_embeddings,
        base,
        rope_utils::get_mrope_section(mrope_section, None),
        1.0,
        true,
        MRoPEStyle::Interleaved,
    )
}

/// Grouped-query attention with per-head RMS norms on queries and keys
/// (Python: `Attention`).
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
    /// `head_dim^-0.5`.
    #[module(skip)]
    pub scale: f32,
    /// Query projection (no bias).
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    /// Norm of each query head.
    pub q_norm: RMSNorm,
    /// Norm of each key head.
    pub k_norm: RMSNorm,
    /// The rotary embedding (no parameters).
    #[module(skip)]
    pub rotary_emb: MRoPERotaryEmbedding,
}

impl Attention {
    /// Python: `Attention(args)`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        let dim = args.hidden_size;
        let (n_heads, n_kv_heads, head_dim) =
            (args.num_attention_heads, args.kv_heads(), args.head_dim);
        let section = args
            .rope_scaling
            .as_ref()
            .map(|s| s.mrope_section.as_slice());
        Ok(Attention {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: (head_dim as f32).powf(-0.5),
            q_proj: Linear::new(dim, n_heads * head_dim, false)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, false)?,
            o_proj: Linear::new(n_heads * head_dim, dim, false)?,
            q_norm: RMSNorm::new(head_dim, args.rms_norm_eps)?,
            k_norm: RMSNorm::new(head_dim, args.rms_norm_eps)?,
            rotary_emb: qwen3_vl_rotary_embedding(
                head_dim,
                args.max_position_embeddings,
                args.rope_theta,
                section,
            )?,
        })
    }

    /// Python: `Attention.__call__`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        position_ids: Option<&Array>,
        position_embeddings: Option<(&Array, &Array)>,
    ) -> Result<Array> {
        let &[b, l, _] = x.shape() else {
            return Err(Error::InvalidArgument(format!(
                "Attention: hidden states must be [batch, seq, hidden], got {:?}",
                x.shape()
            )));
        };
        let heads = |proj: &Linear, n: i32| -> Result<Array> {
            Ok(proj.forward(x)?.reshape(&[b, l, n, self.head_dim])?)
        };
        let queries = self
            .q_norm
            .forward(&heads(&self.q_proj, self.n_heads)?)?
            .transpose([0, 2, 1, 3])?;
        let keys = self
            .k_norm
            .forward(&heads(&self.k_proj, self.n_kv_heads)?)?
            .transpose([0, 2, 1, 3])?;
        let values = heads(&self.v_proj, self.n_kv_heads)?.transpose([0, 2, 1, 3])?;

        let (queries, keys) = match position_embeddings {
            Some((cos, sin)) => rope_utils::apply_multimodal_rotary_pos_emb(
                &queries,
                &keys,
                cos,
                sin,
                None,
                1,
                MRoPEStyle::Interleaved,
                true,
            )?,
            None => {
                let position_ids = match position_ids {
                    Some(p) => p.clone(),
                    None => {
                        let offset = cache.as_ref().map(|c| c.offset()).ok_or_else(|| {
                            Error::InvalidArgument(
                                "Attention: without position_ids a cache is needed to place \
                                 the tokens; pass position_ids or a cache"
                                    .into(),
                            )
                        })?;
                        let p = ops::arange(offset, offset + l, 1, None)?;
                        ops::tile(&ops::expand_dims(&p, 0)?, &[3, 1, 1])?
                    }
                };
                self.rotary_emb
                    .apply_rotary(&queries, &keys, &position_ids, 1, true)?
            }
        };

        let cached = match cache {
            Some(c) => c.update_and_fetch_kv(&keys, &values)?,
            None => CachedKv::Plain(keys, values),
        };
        // Python slices an array mask to the new keys plus the cache's
        // `_idx` before the update: the keys attention reads after it.
        let mask = mask_to_keys(mask, &cached)?;
        let output =
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, &mask, None)?;
        let output = output.transpose([0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok(self.o_proj.forward(&output)?)
    }
}

/// A decoder layer's feed-forward block: Qwen3-VL's SwiGLU MLP, or
/// Qwen3-VL-MoE's dense-or-experts block. Python's MoE `language.py` is a
/// copy of this file with another MLP; here the decoder is generic over it.
pub trait FeedForward: Module + std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The block applied to `x` (`[batch, seq, hidden]`).
    fn forward(&self, x: &Array) -> Result<Array>;
}

impl FeedForward for SwiGLUMLP {
    fn forward(&self, x: &Array) -> Result<Array> {
        SwiGLUMLP::forward(self, x)
    }
}

/// One pre-norm decoder layer (Python: `Qwen3VLDecoderLayer`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen3VLDecoderLayer<M: FeedForward = SwiGLUMLP> {
    /// Width of the layer.
    #[module(skip)]
    pub hidden_size: i32,
    /// Self-attention.
    pub self_attn: Attention,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: RMSNorm,
    /// Feed-forward block.
    pub mlp: M,
}

impl Qwen3VLDecoderLayer {
    /// Python: `Qwen3VLDecoderLayer(args, layer_idx)`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        Self::with_mlp(
            args,
            SwiGLUMLP::new(args.hidden_size, args.intermediate_size, false)?,
        )
    }
}

impl<M: FeedForward> Qwen3VLDecoderLayer<M> {
    /// The layer with the given feed-forward block.
    pub fn with_mlp(args: &TextConfig, mlp: M) -> Result<Self> {
        Ok(Qwen3VLDecoderLayer {
            hidden_size: args.hidden_size,
            self_attn: Attention::new(args)?,
            input_layernorm: RMSNorm::new(args.hidden_size, args.rms_norm_eps)?,
            post_attention_layernorm: RMSNorm::new(args.hidden_size, args.rms_norm_eps)?,
            mlp,
        })
    }

    /// Python: `Qwen3VLDecoderLayer.__call__`.
    pub fn forward(
        &self,
        x: &Array,
        mask: &AttentionMask,
        cache: Option<&mut dyn Cache>,
        position_ids: Option<&Array>,
        position_embeddings: Option<(&Array, &Array)>,
    ) -> Result<Array> {
        let r = self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            mask,
            cache,
            position_ids,
            position_embeddings,
        )?;
        let h = ops::add(x, &r)?;
        let r = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok(ops::add(&h, &r)?)
    }
}

/// Deepstack features for one call: the visual-token mask of the call's
/// tokens and one `[n_visual, hidden]` feature array per deepstack layer.
#[derive(Debug, Clone, Copy)]
pub struct Deepstack<'a> {
    /// `[batch, seq]` booleans: the image and video tokens.
    pub visual_pos_masks: &'a Array,
    /// Features added after the first `len()` layers, in token order.
    pub deepstack_visual_embeds: &'a [Array],
}

/// Embedding, decoder layers and final norm (Python: `Qwen3VLModel`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen3VLModel<M: FeedForward = SwiGLUMLP> {
    /// Vocabulary size.
    #[module(skip)]
    pub vocab_size: i32,
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<Qwen3VLDecoderLayer<M>>,
    /// Final norm, unless `use_final_norm` is false.
    pub norm: Option<RMSNorm>,
}

impl Qwen3VLModel {
    /// Python: `Qwen3VLModel(args)`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        Self::with_mlps(args, |_| {
            SwiGLUMLP::new(args.hidden_size, args.intermediate_size, false)
        })
    }

    /// Adds `visual_embeds` (batch-major, in token order) to the hidden
    /// states at the visual positions (Python: `_deepstack_process`).
    pub fn deepstack_process(
        hidden_states: &Array,
        visual_pos_masks: &Array,
        visual_embeds: &Array,
    ) -> Result<Array> {
        let n_features = visual_embeds.shape().first().copied().unwrap_or(0);
        let placement = DeepstackPlacement::new(hidden_states, visual_pos_masks, n_features)?;
        placement.add(hidden_states, visual_embeds)
    }
}

impl<M: FeedForward> Qwen3VLModel<M> {
    /// The decoder with `mlp(layer_idx)` as each layer's feed-forward block.
    pub fn with_mlps(args: &TextConfig, mut mlp: impl FnMut(i32) -> Result<M>) -> Result<Self> {
        Ok(Qwen3VLModel {
            vocab_size: args.vocab_size,
            embed_tokens: Embedding::new(args.vocab_size, args.hidden_size)?,
            layers: (0..args.num_hidden_layers)
                .map(|i| Qwen3VLDecoderLayer::with_mlp(args, mlp(i)?))
                .collect::<Result<Vec<_>>>()?,
            norm: if args.use_final_norm {
                Some(RMSNorm::new(args.hidden_size, args.rms_norm_eps)?)
            } else {
                None
            },
        })
    }

    /// Hidden states `[batch, seq, hidden]` (Python: `Qwen3VLModel.__call__`,
    /// without its `stop_after_layer` / `apply_final_norm` options). An
    /// empty `cache` is Python's `cache=None`.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        position_ids: Option<&Array>,
        deepstack: Option<Deepstack<'_>>,
    ) -> Result<Array> {
        let h = match inputs_embeds {
            Some(e) => e.clone(),
            None => self.embed_tokens.forward(inputs)?,
        };
        if !cache.is_empty() && cache.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "Qwen3VLModel: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let mask = base::create_attention_mask(&h, None, false)?;
        let placement = match deepstack {
            Some(d) if !d.deepstack_visual_embeds.is_empty() => {
                let n_features = d.deepstack_visual_embeds[0]
                    .shape()
                    .first()
                    .copied()
                    .unwrap_or(0);
                Some((
                    DeepstackPlacement::new(&h, d.visual_pos_masks, n_features)?,
                    d.deepstack_visual_embeds,
                ))
            }
            _ => None,
        };
        let caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        let deepstack = placement.as_ref().map(|(p, e)| (p, *e));
        self.forward_layers(h, &mask, caches, position_ids, deepstack)
    }

    /// The layers (with the deepstack features added after the first
    /// ones) and the final norm over `h`, with one cache per layer from
    /// `caches` while it lasts: the second half of Python's
    /// `Qwen3VLModel.__call__`, shared by [`Qwen3VLModel::forward`] and the
    /// batched decode.
    pub fn forward_layers<'c>(
        &self,
        mut h: Array,
        mask: &AttentionMask,
        mut caches: impl Iterator<Item = &'c mut dyn Cache>,
        position_ids: Option<&Array>,
        deepstack: Option<(&DeepstackPlacement, &[Array])>,
    ) -> Result<Array> {
        let position_embeddings = match (position_ids, self.layers.first()) {
            (Some(p), Some(layer)) => Some(layer.self_attn.rotary_emb.forward(&h, p)?),
            _ => None,
        };
        let pe = position_embeddings.as_ref().map(|(c, s)| (c, s));
        for (layer_idx, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, mask, caches.next(), position_ids, pe)?;
            if let Some((placement, embeds)) = deepstack
                && let Some(embeds) = embeds.get(layer_idx)
            {
                h = placement.add(&h, embeds)?;
            }
        }
        match &self.norm {
            Some(norm) => Ok(norm.forward(&h)?),
            None => Ok(h),
        }
    }
}

/// Where `_deepstack_process` puts each deepstack feature: per batch row,
/// the feature each position takes (or none). Read from the mask once per
/// call and used for every deepstack layer (Python reads the mask back to
/// the host in each layer).
#[derive(Debug)]
pub struct DeepstackPlacement {
    /// Per row: the feature index of each position, and whether it takes
    /// one; `None` for a row without visual tokens.
    rows: Vec<Option<(Array, Array)>>,
}

impl DeepstackPlacement {
    /// Reads `visual_pos_masks` (`[batch, seq]`, `hidden_states`' first two
    /// axes); fails when the rows hold more visual tokens than the
    /// `n_features` features.
    pub fn new(hidden_states: &Array, visual_pos_masks: &Array, n_features: i32) -> Result<Self> {
        let &[batch_size, seq_len, _] = hidden_states.shape() else {
            return Err(Error::InvalidArgument(format!(
                "deepstack: hidden states must be [batch, seq, hidden], got {:?}",
                hidden_states.shape()
            )));
        };
        if visual_pos_masks.shape() != [batch_size, seq_len] {
            return Err(Error::InvalidArgument(format!(
                "deepstack: visual_pos_masks {:?} must be [batch, seq] = [{batch_size}, \
                 {seq_len}]",
                visual_pos_masks.shape()
            )));
        }
        let mask = visual_pos_masks.to_vec_as::<i64>()?;
        let mut rows = Vec::with_capacity(batch_size as usize);
        let mut offset = 0i32;
        for b in 0..batch_size {
            let row_mask = &mask[(b * seq_len) as usize..((b + 1) * seq_len) as usize];
            let n_visual = row_mask.iter().filter(|&&m| m != 0).count() as i32;
            if n_visual == 0 {
                rows.push(None);
                continue;
            }
            if offset + n_visual > n_features {
                return Err(Error::ImageTokenMismatch {
                    message: format!(
                        "deepstack: row {b} has {n_visual} visual tokens but only {} of the {} \
                         deepstack features are left",
                        n_features - offset,
                        n_features
                    ),
                });
            }
            // Position p takes feature offset + (its rank among the row's
            // visual tokens); other positions add zero.
            let mut rank = offset;
            let gather: Vec<i32> = row_mask
                .iter()
                .map(|&m| {
                    if m != 0 {
                        rank += 1;
                        rank - 1
                    } else {
                        offset
                    }
                })
                .collect();
            let gather = Array::from_vec_shaped(gather, &[seq_len])?;
            let keep = Array::from_vec_shaped(
                row_mask.iter().map(|&m| m != 0).collect::<Vec<bool>>(),
                &[seq_len, 1],
            )?;
            rows.push(Some((gather, keep)));
            offset += n_visual;
        }
        Ok(DeepstackPlacement { rows })
    }

    /// `hidden_states` with `visual_embeds` added at the visual positions.
    pub fn add(&self, hidden_states: &Array, visual_embeds: &Array) -> Result<Array> {
        let rows = self
            .rows
            .iter()
            .enumerate()
            .map(|(b, row)| {
                let batch_hidden = hidden_states.index(idx![b as i32])?;
                let Some((gather, keep)) = row else {
                    return Ok(batch_hidden);
                };
                let added = ops::take(visual_embeds, gather, 0)?;
                let added = ops::r#where(keep, &added, &ops::zeros_like(&added, None)?)?;
                Ok(ops::add(&batch_hidden, &added)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ops::stack(&rows, 0)?)
    }
}

/// The text model with its output layer and mRoPE position logic (Python:
/// `LanguageModel`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel<M: FeedForward = SwiGLUMLP> {
    /// The text configuration.
    #[module(skip)]
    pub args: TextConfig,
    /// What the rope index reads of the whole configuration.
    #[module(skip)]
    pub rope: RopeIndexSettings,
    /// `model_type` of the text config.
    #[module(skip)]
    pub model_type: String,
    /// The decoder.
    pub model: Qwen3VLModel<M>,
    /// Output layer, only when `tie_word_embeddings` is false.
    pub lm_head: Option<Linear>,
}

impl LanguageModel {
    /// Python: `LanguageModel(args, config)`.
    pub fn new(args: &TextConfig, config: &ModelConfig) -> Result<Self> {
        Self::with_decoder(args, config, Qwen3VLModel::new(args)?)
    }
}

impl<M: FeedForward> LanguageModel<M> {
    /// The language model around the given decoder.
    pub fn with_decoder(
        args: &TextConfig,
        config: &ModelConfig,
        model: Qwen3VLModel<M>,
    ) -> Result<Self> {
        Ok(LanguageModel {
            args: args.clone(),
            rope: RopeIndexSettings {
                spatial_merge_size: config.vision_config.spatial_merge_size,
                tokens_per_second: config.vision_config.tokens_per_second,
                image_token_id: config.image_token_id,
                video_token_id: config.video_token_id,
                vision_start_token_id: config.vision_start_token_id,
            },
            model_type: args.model_type.clone(),
            model,
            lm_head: if args.tie_word_embeddings {
                None
            } else {
                Some(Linear::new(args.hidden_size, args.vocab_size, false)?)
            },
        })
    }

    /// mRoPE position ids `[3, batch, seq]` and deltas `[batch, 1]` of a
    /// prompt (Python: `LanguageModel.get_rope_index`): Qwen2.5-VL's, with
    /// each video grid `(t, h, w)` split into `t` rows `(1, h, w)`.
    pub fn get_rope_index(
        &self,
        input_ids: &Array,
        image_grid_thw: Option<&Array>,
        video_grid_thw: Option<&Array>,
        attention_mask: Option<&Array>,
    ) -> Result<(Array, Array)> {
        let split = match video_grid_thw {
            None => None,
            Some(grid) => {
                if grid.ndim() != 2 || grid.shape().get(1) != Some(&3) {
                    return Err(Error::InvalidArgument(format!(
                        "get_rope_index: video_grid_thw must be [n, 3], got {:?}",
                        grid.shape()
                    )));
                }
                let mut rows = Vec::new();
                for thw in grid.to_vec_as::<i64>()?.chunks_exact(3) {
                    for _ in 0..thw[0].max(0) {
                        rows.extend([1, thw[1] as i32, thw[2] as i32]);
                    }
                }
                let n = (rows.len() / 3) as i32;
                Some(Array::from_vec_shaped(rows, &[n, 3])?)
            }
        };
        rope_index(
            &self.rope,
            input_ids,
            image_grid_thw,
            split.as_ref(),
            None,
            attention_mask,
        )
    }

    /// Logits `[batch, seq, vocab]` (Python: `LanguageModel.__call__`):
    /// position ids as Qwen2.5-VL's, and the deepstack features of the
    /// prompt cut to this call's window of tokens.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        args: &LanguageModelArgs<'_>,
        deepstack: Option<Deepstack<'_>>,
        state: &mut RequestState,
    ) -> Result<Array> {
        let cache_offset = cache
            .first()
            .map_or(0, |c| c.idx().unwrap_or_else(|| c.offset()));
        let position_ids = mrope_position_ids(inputs, None, cache, args, state, |rope_mask| {
            self.get_rope_index(inputs, args.image_grid_thw, args.video_grid_thw, rope_mask)
        })?;

        // The prompt's mask and features, cut to this call's tokens.
        let window = inputs.shape().last().copied().unwrap_or(0);
        let windowed;
        let deepstack = match deepstack {
            Some(d) if d.visual_pos_masks.shape().last() != Some(&window) => {
                let mask = d.visual_pos_masks.as_type(Dtype::Bool)?.to_vec_as::<i64>()?;
                let len = d.visual_pos_masks.shape().last().copied().unwrap_or(0);
                let columns = mask
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| **m != 0)
                    .map(|(i, _)| (i as i32) % len.max(1));
                let picked: Vec<i32> = columns
                    .enumerate()
                    .filter(|(_, c)| *c >= cache_offset && *c < cache_offset + window)
                    .map(|(k, _)| k as i32)
                    .collect();
                let n = picked.len() as i32;
                let picked = Array::from_vec_shaped(picked, &[n])?;
                let embeds = d
                    .deepstack_visual_embeds
                    .iter()
                    .map(|e| ops::take(e, &picked, 0))
                    .collect::<mlx_rs::Result<Vec<_>>>()?;
                let masks = d.visual_pos_masks.index(idx![
                    ..,
                    cache_offset..cache_offset + window
                ])?;
                windowed = (masks, embeds);
                Some(Deepstack {
                    visual_pos_masks: &windowed.0,
                    deepstack_visual_embeds: &windowed.1,
                })
            }
            other => other,
        };

        let out = self.model.forward(
            inputs,
            inputs_embeds,
            cache,
            position_ids.as_ref(),
            deepstack,
        )?;
        match &self.lm_head {
            Some(lm_head) => Ok(lm_head.forward(&out)?),
            None => Ok(self.model.embed_tokens.as_linear(&out)?),
        }
    }

    /// Logits `[batch, 1, vocab]` of one decode step of several requests
    /// (Python: `LanguageModel.__call__` on a list of `BatchKVCache`s):
    /// row `b`'s token at position `offsets[b] + rope_deltas[b]` on every
    /// mRoPE axis, as in its own decode step
    /// ([`crate::models::qwen2_5_vl::language::decode_batch`]); decode
    /// steps add no deepstack features. As in Python, the mask hides each
    /// row's left padding (Python's `Qwen3VLModel` asks `cache[0]` for
    /// it, unlike Qwen2.5-VL's, which asks the list).
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &mut [&mut RequestState],
    ) -> Result<Array> {
        let (embed, head) = (&self.model.embed_tokens, self.lm_head.as_ref());
        let layers = self.model.layers.len();
        decode_batch(inputs, cache, states, embed, head, layers, |h, m, c, p| {
            self.model.forward_layers(h, m, c, Some(p), None)
        })
    }

    /// The decoder layers (Python: `LanguageModel.layers`).
    pub fn layers(&self) -> &[Qwen3VLDecoderLayer<M>] {
        &self.model.layers
    }

    /// Python: `LanguageModel.head_dim` (`hidden_size / heads`, as Python
    /// computes it, not `args.head_dim`).
    pub fn head_dim(&self) -> i32 {
        self.args.hidden_size / self.args.num_attention_heads.max(1)
    }

    /// Key/value heads (Python: `LanguageModel.n_kv_heads`).
    pub fn n_kv_heads(&self) -> i32 {
        self.args.kv_heads()
    }
}
