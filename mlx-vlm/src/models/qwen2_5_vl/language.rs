//! `mlx_vlm/models/qwen2_5_vl/language.py`: the Qwen2 decoder with
//! multimodal RoPE.
//!
//! Python keeps the request's mRoPE state (`_rope_deltas`,
//! `_position_ids`) on the `LanguageModel`; here it lives in a
//! [`RequestState`] the caller owns, so the model stays immutable while it
//! generates.

use std::ops::Deref;

use mlx_rs::nn::{Embedding, Linear, RMSNorm};
use mlx_rs::{Array, Dtype, Index, idx, ops};

use super::config::{ModelConfig, TextConfig};
use crate::models::base::{self, AttentionMask};
use crate::models::batch_layer_cache::{BatchLayerCache, decode_step};
use crate::models::cache::{Cache, CachedKv};
use crate::models::mlp::SwiGLUMLP;
use crate::models::rope_utils::{self, MRoPERotaryEmbedding, MRoPEStyle};
use crate::{Error, Result};

/// Per-request mRoPE state the caller owns (the family's
/// [`crate::models::FamilyModel::State`]).
///
/// Python keeps these on the `LanguageModel` object; here the caller owns
/// them, one per request, so a loaded model can serve several requests at
/// once.
#[derive(Debug, Clone, Default)]
pub struct RequestState {
    /// Python: `LanguageModel._position_ids`.
    pub position_ids: Option<Array>,
    /// Python: `LanguageModel._rope_deltas`.
    pub rope_deltas: Option<Array>,
}

/// The keyword arguments Python passes to `language_model(...)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LanguageModelArgs<'a> {
    /// Attention mask `[batch, seq]` of the prompt, if padded.
    pub mask: Option<&'a Array>,
    /// Full-prompt position ids from `get_input_embeddings`.
    pub position_ids: Option<&'a Array>,
    /// Full-prompt rope deltas from `get_input_embeddings`.
    pub rope_deltas: Option<&'a Array>,
    /// Whether pixel values accompany this call (Python resets the mRoPE
    /// state when they do).
    pub has_pixel_values: bool,
    /// `[images, 3]` grids of the prompt's images.
    pub image_grid_thw: Option<&'a Array>,
    /// `[videos, 3]` grids of the prompt's videos.
    pub video_grid_thw: Option<&'a Array>,
    /// Seconds per temporal patch of each video, for absolute-time
    /// positions ([`LanguageModel::get_rope_index_timed`]).
    pub second_per_grid_ts: Option<&'a [f64]>,
}

/// The mRoPE embedding of the decoder layers, "chunked" layout (Python:
/// `Qwen2RotaryEmbedding`, a subclass of `MRoPERotaryEmbedding`).
#[derive(Debug, Clone)]
pub struct Qwen2RotaryEmbedding(MRoPERotaryEmbedding);

impl Qwen2RotaryEmbedding {
    /// Python: `Qwen2RotaryEmbedding.__init__`; `mrope_section` is
    /// `rope_scaling["mrope_section"]`, or Python's default when absent.
    pub fn new(
        dim: i32,
        max_position_embeddings: i32,
        base: f32,
        mrope_section: Option<&[i32]>,
    ) -> Result<Self> {
        let section = rope_utils::get_mrope_section(mrope_section, None);
        Ok(Qwen2RotaryEmbedding(MRoPERotaryEmbedding::new(
            dim,
            max_position_embeddings,
            base,
            section,
            1.0,
            true,
            MRoPEStyle::Chunked,
        )?))
    }
}

impl Deref for Qwen2RotaryEmbedding {
    type Target = MRoPERotaryEmbedding;

    fn deref(&self) -> &MRoPERotaryEmbedding {
        &self.0
    }
}

/// Rotates `q` and `k` by precomputed `cos`/`sin` in the chunked layout
/// (Python: `apply_multimodal_rotary_pos_emb` of this file, keeping its
/// `unqueeze_dim` spelling).
pub fn apply_multimodal_rotary_pos_emb(
    q: &Array,
    k: &Array,
    cos: &Array,
    sin: &Array,
    unqueeze_dim: i32,
) -> Result<(Array, Array)> {
    rope_utils::apply_multimodal_rotary_pos_emb(
        q,
        k,
        cos,
        sin,
        None,
        unqueeze_dim,
        MRoPEStyle::Chunked,
        true,
    )
}

/// Grouped-query self-attention with mRoPE (Python: `Attention`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Attention {
    /// Query heads.
    #[module(skip)]
    pub n_heads: i32,
    /// Key/value heads.
    #[module(skip)]
    pub n_kv_heads: i32,
    /// `hidden_size / n_heads`.
    #[module(skip)]
    pub head_dim: i32,
    /// `head_dim^-0.5`.
    #[module(skip)]
    pub scale: f32,
    /// `hidden → n_heads * head_dim`, with bias.
    pub q_proj: Linear,
    /// `hidden → n_kv_heads * head_dim`, with bias.
    pub k_proj: Linear,
    /// `hidden → n_kv_heads * head_dim`, with bias.
    pub v_proj: Linear,
    /// `n_heads * head_dim → hidden`, no bias.
    pub o_proj: Linear,
    /// The rotary embedding (no parameters).
    #[module(skip)]
    pub rotary_emb: Qwen2RotaryEmbedding,
}

impl Attention {
    /// Python: `Attention.__init__`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        let dim = args.hidden_size;
        let n_heads = args.num_attention_heads;
        let n_kv_heads = args.kv_heads();
        if n_heads <= 0 || n_kv_heads <= 0 || dim % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::Config {
                file: "config.json".into(),
                message: format!(
                    "hidden_size {dim} must split evenly into num_attention_heads {n_heads}, \
                     which must be a multiple of num_key_value_heads {n_kv_heads}"
                ),
            });
        }
        let head_dim = dim / n_heads;
        let section = args
            .rope_scaling
            .as_ref()
            .map(|s| s.mrope_section.as_slice());
        Ok(Attention {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: (head_dim as f32).powf(-0.5),
            q_proj: Linear::new(dim, n_heads * head_dim, true)?,
            k_proj: Linear::new(dim, n_kv_heads * head_dim, true)?,
            v_proj: Linear::new(dim, n_kv_heads * head_dim, true)?,
            o_proj: Linear::new(n_heads * head_dim, dim, false)?,
            rotary_emb: Qwen2RotaryEmbedding::new(
                head_dim,
                args.max_position_embeddings.unwrap_or(2048),
                args.rope_theta,
                section,
            )?,
        })
    }

    /// Attention output `[batch, seq, hidden]` of `x` (Python:
    /// `Attention.__call__`).
    ///
    /// Without `position_ids`, positions continue from the cache's offset
    /// on every axis; Python then requires a cache, and so does this.
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
            Ok(proj
                .forward(x)?
                .reshape(&[b, l, n, self.head_dim])?
                .transpose([0, 2, 1, 3])?)
        };
        let queries = heads(&self.q_proj, self.n_heads)?;
        let keys = heads(&self.k_proj, self.n_kv_heads)?;
        let values = heads(&self.v_proj, self.n_kv_heads)?;

        // Python also tracks `kv_seq_len`, which nothing reads.
        let (queries, keys) = match position_embeddings {
            Some((cos, sin)) => apply_multimodal_rotary_pos_emb(&queries, &keys, cos, sin, 1)?,
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
                        ops::tile(&ops::expand_dims(&p, 0)?, &[3, b, 1])?
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
        let mask = mask_to_keys(mask, &cached)?;

        let output =
            base::scaled_dot_product_attention_cached(&queries, &cached, self.scale, &mask, None)?;
        let output = output.transpose([0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok(self.o_proj.forward(&output)?)
    }
}

/// `mask` with an array mask cut to the keys attention reads, `cached`:
/// the batched decode's padding mask `[batch, 1, 1, cached + 1]` keeps
/// its width (Python's Qwen2.5-VL slices to the new keys' length before
/// the cache update, Qwen3-VL's to the new keys plus the cache's `_idx`;
/// no single-request call passes an array mask). Shared by the Qwen
/// families' attention.
pub fn mask_to_keys(mask: &AttentionMask, cached: &CachedKv) -> Result<AttentionMask> {
    let key_len = match cached {
        CachedKv::Plain(k, _) => k.shape().get(2).copied().unwrap_or(0),
        CachedKv::Quantized { keys, .. } => keys.data.shape().get(2).copied().unwrap_or(0),
    };
    Ok(match mask {
        AttentionMask::Array(m) => AttentionMask::Array(m.index(idx![Index::Ellipsis, ..key_len])?),
        other => other.clone(),
    })
}

/// One pre-norm decoder layer (Python: `Qwen2VLDecoderLayer`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen2VLDecoderLayer {
    /// Query heads.
    #[module(skip)]
    pub num_attention_heads: i32,
    /// Width of the layer.
    #[module(skip)]
    pub hidden_size: i32,
    /// Self-attention.
    pub self_attn: Attention,
    /// Feed-forward block.
    pub mlp: SwiGLUMLP,
    /// Norm before attention.
    pub input_layernorm: RMSNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: RMSNorm,
}

impl Qwen2VLDecoderLayer {
    /// Python: `Qwen2VLDecoderLayer.__init__`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        Ok(Qwen2VLDecoderLayer {
            num_attention_heads: args.num_attention_heads,
            hidden_size: args.hidden_size,
            self_attn: Attention::new(args)?,
            mlp: SwiGLUMLP::new(args.hidden_size, args.intermediate_size, false)?,
            input_layernorm: RMSNorm::new(args.hidden_size, args.rms_norm_eps)?,
            post_attention_layernorm: RMSNorm::new(args.hidden_size, args.rms_norm_eps)?,
        })
    }

    /// Python: `Qwen2VLDecoderLayer.__call__`.
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

/// Embedding, decoder layers and final norm (Python: `Qwen2Model`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen2Model {
    /// Vocabulary size.
    #[module(skip)]
    pub vocab_size: i32,
    /// Number of decoder layers.
    #[module(skip)]
    pub num_hidden_layers: i32,
    /// Token embeddings (also the output layer when tied).
    pub embed_tokens: Embedding,
    /// The decoder layers.
    pub layers: Vec<Qwen2VLDecoderLayer>,
    /// Final norm.
    pub norm: RMSNorm,
}

impl Qwen2Model {
    /// Python: `Qwen2Model.__init__`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        if args.vocab_size <= 0 {
            return Err(Error::Config {
                file: "config.json".into(),
                message: format!("vocab_size must be positive, got {}", args.vocab_size),
            });
        }
        let layers = (0..args.num_hidden_layers)
            .map(|_| Qwen2VLDecoderLayer::new(args))
            .collect::<Result<Vec<_>>>()?;
        Ok(Qwen2Model {
            vocab_size: args.vocab_size,
            num_hidden_layers: args.num_hidden_layers,
            embed_tokens: Embedding::new(args.vocab_size, args.hidden_size)?,
            layers,
            norm: RMSNorm::new(args.hidden_size, args.rms_norm_eps)?,
        })
    }

    /// Normed hidden states `[batch, seq, hidden]` (Python:
    /// `Qwen2Model.__call__`). An empty `cache` is Python's `cache=None`;
    /// otherwise it holds one cache per layer.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<AttentionMask>,
        cache: &mut [Box<dyn Cache>],
        position_ids: Option<&Array>,
    ) -> Result<Array> {
        let h = match inputs_embeds {
            Some(e) => e.clone(),
            None => self.embed_tokens.forward(inputs)?,
        };
        if !cache.is_empty() && cache.len() != self.layers.len() {
            // Python's zip would silently skip the layers without a cache.
            return Err(Error::InvalidArgument(format!(
                "Qwen2Model: got {} caches for {} layers; make one cache per layer",
                cache.len(),
                self.layers.len()
            )));
        }
        let mask = match mask {
            Some(m) => m,
            None => base::create_attention_mask(&h, None, false)?,
        };
        let caches = cache.iter_mut().map(|c| &mut **c as &mut dyn Cache);
        self.forward_layers(h, &mask, caches, position_ids)
    }

    /// The layers and the final norm over `h` (the second half of Python's
    /// `Qwen2Model.__call__`), with one cache per layer from `caches` while
    /// it lasts: shared by [`Qwen2Model::forward`] and the batched decode.
    pub fn forward_layers<'c>(
        &self,
        mut h: Array,
        mask: &AttentionMask,
        mut caches: impl Iterator<Item = &'c mut dyn Cache>,
        position_ids: Option<&Array>,
    ) -> Result<Array> {
        let position_embeddings = match (position_ids, self.layers.first()) {
            (Some(p), Some(layer)) => Some(layer.self_attn.rotary_emb.forward(&h, p)?),
            _ => None,
        };
        let pe = position_embeddings.as_ref().map(|(c, s)| (c, s));
        for layer in &self.layers {
            h = layer.forward(&h, mask, caches.next(), position_ids, pe)?;
        }
        Ok(self.norm.forward(&h)?)
    }
}

/// The text model with its output layer and mRoPE position logic (Python:
/// `LanguageModel`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct LanguageModel {
    /// The text configuration.
    #[module(skip)]
    pub args: TextConfig,
    /// The whole checkpoint's configuration (token ids, merge size).
    #[module(skip)]
    pub config: ModelConfig,
    /// `model_type` of the text config.
    #[module(skip)]
    pub model_type: String,
    /// The decoder.
    pub model: Qwen2Model,
    /// Output layer, only when `tie_word_embeddings` is false.
    pub lm_head: Option<Linear>,
}

/// One prompt row's compact mRoPE positions (three axes over the kept
/// tokens), built as in Python's `get_rope_index` loop.
struct RowPositions {
    axes: [Vec<i64>; 3],
    /// `llm_pos_ids_list[-1].max()` of Python.
    last_max: Option<i64>,
}

impl RowPositions {
    fn next_start(&self) -> i64 {
        self.last_max.map_or(0, |m| m + 1)
    }

    fn push_text(&mut self, text_len: i64, st_idx: i64) {
        for axis in &mut self.axes {
            axis.extend((0..text_len).map(|i| i + st_idx));
        }
        if text_len > 0 {
            self.last_max = Some(st_idx + text_len - 1);
        }
    }

    /// `time_interval` spaces the temporal positions (transformers'
    /// `second_per_grid_t * tokens_per_second`, truncated like its
    /// `.long()`); `None` gives one step per temporal patch.
    fn push_vision(
        &mut self,
        (t, h, w): (i64, i64, i64),
        start: i64,
        time_interval: Option<f64>,
    ) {
        let temporal = |ti: i64| match time_interval {
            Some(interval) => (ti as f64 * interval) as i64,
            None => ti,
        };
        for ti in 0..t {
            for hi in 0..h {
                for wi in 0..w {
                    for (axis, v) in self.axes.iter_mut().zip([temporal(ti), hi, wi]) {
                        axis.push(v + start);
                    }
                }
            }
        }
        self.last_max = Some(temporal(t - 1).max(h - 1).max(w - 1) + start);
    }
}

/// Reads a `[n, 3]` grid array into rows.
fn grid_rows(grid: Option<&Array>, name: &str) -> Result<Vec<(i64, i64, i64)>> {
    let Some(grid) = grid else {
        return Ok(Vec::new());
    };
    if grid.ndim() != 2 || grid.shape().get(1) != Some(&3) {
        return Err(Error::InvalidArgument(format!(
            "get_rope_index: {name} must be [n, 3] (t, h, w per item), got {:?}",
            grid.shape()
        )));
    }
    let values = grid.to_vec_as::<i64>()?;
    Ok(values
        .chunks_exact(3)
        .filter_map(|c| match *c {
            [t, h, w] => Some((t, h, w)),
            _ => None,
        })
        .collect())
}

impl LanguageModel {
    /// Python: `LanguageModel.__init__`.
    pub fn new(args: &TextConfig, config: &ModelConfig) -> Result<Self> {
        Ok(LanguageModel {
            args: args.clone(),
            config: config.clone(),
            model_type: args.model_type.clone(),
            model: Qwen2Model::new(args)?,
            lm_head: if args.tie_word_embeddings {
                None
            } else {
                Some(Linear::new(args.hidden_size, args.vocab_size, false)?)
            },
        })
    }

    /// mRoPE position ids and per-row deltas of a prompt (Python:
    /// `LanguageModel.get_rope_index`).
    ///
    /// With image or video grids: position ids `[3, batch, seq]` in
    /// `input_ids`' dtype, deltas `[batch, 1]` int32; each image takes
    /// `t × (h / merge) × (w / merge)` positions laid out on a grid, text
    /// continues after the largest. Without grids: `[batch, seq]` positions
    /// (from the mask's cumulative sum when given, int64) and deltas.
    /// Padded tokens (mask 0) get position 1, as in Python.
    pub fn get_rope_index(
        &self,
        input_ids: &Array,
        image_grid_thw: Option<&Array>,
        video_grid_thw: Option<&Array>,
        attention_mask: Option<&Array>,
    ) -> Result<(Array, Array)> {
        self.get_rope_index_timed(
            input_ids,
            image_grid_thw,
            video_grid_thw,
            None,
            attention_mask,
        )
    }

    /// [`Self::get_rope_index`] with each video's seconds per temporal
    /// patch (Rust only, beyond Python mlx-vlm 0.7.6): the video's
    /// temporal positions become `floor(i * second_per_grid_t *
    /// tokens_per_second)`, the absolute time Qwen2.5-VL was trained with
    /// (transformers' `get_rope_index`); `None` gives Python mlx-vlm's
    /// `i`. `second_per_grid_t` stays a float here, as in transformers 5
    /// (4.x truncates it to an integer first); text after a video starts
    /// after the largest position, as in transformers 4.x and mlx-vlm
    /// (transformers 5 restarts it `max(h, w) / merge` past the video's
    /// start).
    pub fn get_rope_index_timed(
        &self,
        input_ids: &Array,
        image_grid_thw: Option<&Array>,
        video_grid_thw: Option<&Array>,
        second_per_grid_ts: Option<&[f64]>,
        attention_mask: Option<&Array>,
    ) -> Result<(Array, Array)> {
        let settings = RopeIndexSettings {
            spatial_merge_size: self.config.vision_config.spatial_merge_size,
            tokens_per_second: self.config.vision_config.tokens_per_second,
            image_token_id: self.config.image_token_id,
            video_token_id: self.config.video_token_id,
            vision_start_token_id: self.config.vision_start_token_id,
        };
        rope_index(
            &settings,
            input_ids,
            image_grid_thw,
            video_grid_thw,
            second_per_grid_ts,
            attention_mask,
        )
    }

    /// Logits `[batch, seq, vocab]` (Python: `LanguageModel.__call__`).
    ///
    /// `mask` is Python's `mask` (`args.mask` is the same argument spelled as
    /// a keyword; `mask` wins): as in Python it only feeds the mRoPE index,
    /// never attention, which is causal. An empty `cache` is Python's
    /// `cache=None`. `state` carries the request's mRoPE state between calls.
    pub fn forward(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        mask: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        args: &LanguageModelArgs<'_>,
        state: &mut RequestState,
    ) -> Result<Array> {
        let position_ids = mrope_position_ids(inputs, mask, cache, args, state, |rope_mask| {
            self.get_rope_index_timed(
                inputs,
                args.image_grid_thw,
                args.video_grid_thw,
                args.second_per_grid_ts,
                rope_mask,
            )
        })?;
        let out = self
            .model
            .forward(inputs, inputs_embeds, None, cache, position_ids.as_ref())?;
        match &self.lm_head {
            Some(lm_head) => Ok(lm_head.forward(&out)?),
            None => Ok(self.model.embed_tokens.as_linear(&out)?),
        }
    }

    /// Logits `[batch, 1, vocab]` of one decode step of several requests
    /// (Python: `LanguageModel.__call__` on a list of `BatchKVCache`s with
    /// each row's `rope_deltas`): row `b`'s token sits at position
    /// `offsets[b] + rope_deltas[b]` on every mRoPE axis, as in its own
    /// decode step.
    ///
    /// Divergence: Python's `Qwen2Model` builds its mask from the cache
    /// list, which has no `make_mask`, so its batched decode attends to
    /// the zero keys of the left padding; here the padding is masked
    /// ([`crate::models::BatchKvCache::make_mask`]), so each row computes what its single
    /// run does.
    pub fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &mut [&mut RequestState],
    ) -> Result<Array> {
        let (embed, head) = (&self.model.embed_tokens, self.lm_head.as_ref());
        let layers = self.model.layers.len();
        decode_batch(inputs, cache, states, embed, head, layers, |h, m, c, p| {
            self.model.forward_layers(h, m, c, Some(p))
        })
    }

    /// The decoder layers (Python: `LanguageModel.layers`).
    pub fn layers(&self) -> &[Qwen2VLDecoderLayer] {
        &self.model.layers
    }

    /// Features per attention head (Python: `LanguageModel.head_dim`).
    pub fn head_dim(&self) -> i32 {
        self.args.hidden_size / self.args.num_attention_heads.max(1)
    }

    /// Key/value heads (Python: `LanguageModel.n_kv_heads`).
    pub fn n_kv_heads(&self) -> i32 {
        self.args.kv_heads()
    }
}

/// What the Qwen rope index reads of a checkpoint's configuration.
#[derive(Debug, Clone, Copy)]
pub struct RopeIndexSettings {
    /// Patches merged per side (`vision_config.spatial_merge_size`).
    pub spatial_merge_size: i32,
    /// `vision_config.tokens_per_second`, for absolute-time video positions.
    pub tokens_per_second: i32,
    /// `<|image_pad|>`.
    pub image_token_id: i32,
    /// `<|video_pad|>`.
    pub video_token_id: i32,
    /// `<|vision_start|>`.
    pub vision_start_token_id: i32,
}

/// [`LanguageModel::get_rope_index_timed`] for any Qwen family's settings
/// (Python copies `get_rope_index` into each family's `language.py`).
pub fn rope_index(
    settings: &RopeIndexSettings,
    input_ids: &Array,
    image_grid_thw: Option<&Array>,
    video_grid_thw: Option<&Array>,
    second_per_grid_ts: Option<&[f64]>,
    attention_mask: Option<&Array>,
) -> Result<(Array, Array)> {
    let tokens_per_second = f64::from(settings.tokens_per_second);
    if let Some(times) = second_per_grid_ts
        && let Some(bad) = times.iter().find(|t| !(t.is_finite() && **t >= 0.0))
    {
        return Err(Error::InvalidArgument(format!(
            "get_rope_index: second_per_grid_ts {bad} must be a finite number >= 0 (the \
             seconds each temporal patch of a video spans)"
        )));
    }
    let &[batch_size, seq_length] = input_ids.shape() else {
        return Err(Error::InvalidArgument(format!(
            "get_rope_index: input_ids must be [batch, seq], got {:?}",
            input_ids.shape()
        )));
    };
    if let Some(m) = attention_mask
        && m.shape() != input_ids.shape()
    {
        return Err(Error::InvalidArgument(format!(
            "get_rope_index: attention_mask {:?} must have input_ids' shape {:?}",
            m.shape(),
            input_ids.shape()
        )));
    }
    if image_grid_thw.is_none() && video_grid_thw.is_none() {
        return match attention_mask {
            Some(mask) => {
                let position_ids = ops::subtract(
                    &ops::cumsum(
                        &mask.as_type(Dtype::Int64)?,
                        Some(-1),
                        ops::AccumulateOptions::default(),
                    )?,
                    1,
                )?;
                let position_ids = ops::r#where(
                    &ops::equal(mask, 0)?,
                    &ops::ones_like(&position_ids, None)?,
                    &position_ids,
                )?;
                let max_position_ids = position_ids.max(-1, true)?;
                let deltas = ops::subtract(&ops::add(&max_position_ids, 1)?, seq_length)?;
                Ok((position_ids, deltas))
            }
            None => {
                let position_ids = ops::arange(0, seq_length, 1, None)?.reshape(&[1, -1])?;
                let position_ids = ops::broadcast_to(&position_ids, &[batch_size, seq_length])?;
                let deltas = ops::zeros(&[batch_size, 1], input_ids.dtype())?;
                Ok((position_ids, deltas))
            }
        };
    }

    let spatial_merge_size = i64::from(settings.spatial_merge_size);
    if spatial_merge_size <= 0 {
        return Err(Error::Config {
            file: "config.json".into(),
            message: format!(
                "vision_config.spatial_merge_size must be positive, got {spatial_merge_size}"
            ),
        });
    }
    let image_token_id = i64::from(settings.image_token_id);
    let video_token_id = i64::from(settings.video_token_id);
    let vision_start_token_id = i64::from(settings.vision_start_token_id);
    let images = grid_rows(image_grid_thw, "image_grid_thw")?;
    let videos = grid_rows(video_grid_thw, "video_grid_thw")?;

    let ids = input_ids.to_vec_as::<i64>()?;
    let mask = match attention_mask {
        Some(m) => m.to_vec_as::<i64>()?,
        None => vec![1; ids.len()],
    };
    let (b, l) = (batch_size as usize, seq_length as usize);
    let mut position_ids = vec![1i64; 3 * b * l];
    let mut mrope_position_deltas = Vec::with_capacity(b);
    let (mut image_index, mut video_index) = (0usize, 0usize);
    let mismatch = |message: String| Error::ImageTokenMismatch { message };

    for (i, (row, row_mask)) in ids.chunks(l.max(1)).zip(mask.chunks(l.max(1))).enumerate() {
        let input_tokens: Vec<i64> = row
            .iter()
            .zip(row_mask)
            .filter(|(_, keep)| **keep == 1)
            .map(|(t, _)| *t)
            .collect();
        let vision_tokens: Vec<i64> = input_tokens
            .windows(2)
            .filter(|w| w[0] == vision_start_token_id)
            .map(|w| w[1])
            .collect();
        let image_nums = vision_tokens
            .iter()
            .filter(|&&t| t == image_token_id)
            .count();
        let video_nums = vision_tokens
            .iter()
            .filter(|&&t| t == video_token_id)
            .count();
        let n = input_tokens.len();
        let find = |token: i64, st: usize, what: &str| -> Result<usize> {
            input_tokens
                .iter()
                .skip(st)
                .position(|&t| t == token)
                .map(|p| p + st)
                .ok_or_else(|| {
                    mismatch(format!(
                        "get_rope_index: row {i} announces more {what}s after \
                         <|vision_start|> than it has {what} tokens (token {token}) \
                         from position {st}; check the prompt's vision placeholders"
                    ))
                })
        };

        let mut pos = RowPositions {
            axes: [Vec::new(), Vec::new(), Vec::new()],
            last_max: None,
        };
        let mut st = 0usize;
        let (mut remain_images, mut remain_videos) = (image_nums, video_nums);
        for _ in 0..image_nums + video_nums {
            let ed_image = if remain_images > 0 && input_tokens.contains(&image_token_id) {
                find(image_token_id, st, "image")?
            } else {
                n + 1
            };
            let ed_video = if remain_videos > 0 && input_tokens.contains(&video_token_id) {
                find(video_token_id, st, "video")?
            } else {
                n + 1
            };
            let ((t, h, w), ed, time_interval) = if ed_image < ed_video {
                let grid = images.get(image_index).copied().ok_or_else(|| {
                    mismatch(format!(
                        "get_rope_index: the prompt has more images than the {} rows of \
                         image_grid_thw; pass one grid per image",
                        images.len()
                    ))
                })?;
                image_index += 1;
                remain_images -= 1;
                (grid, ed_image, None)
            } else {
                let grid = videos.get(video_index).copied().ok_or_else(|| {
                    mismatch(format!(
                        "get_rope_index: the prompt has more videos than the {} rows of \
                         video_grid_thw; pass one grid per video",
                        videos.len()
                    ))
                })?;
                let interval = match second_per_grid_ts {
                    None => None,
                    Some(times) => Some(
                        times.get(video_index).copied().ok_or_else(|| {
                            mismatch(format!(
                                "get_rope_index: {} second_per_grid_ts for more videos; \
                                 give one per video",
                                times.len()
                            ))
                        })? * tokens_per_second,
                    ),
                };
                video_index += 1;
                remain_videos -= 1;
                (grid, ed_video, interval)
            };
            let (llm_grid_t, llm_grid_h, llm_grid_w) = (
                t,
                h.div_euclid(spatial_merge_size),
                w.div_euclid(spatial_merge_size),
            );
            if llm_grid_t <= 0 || llm_grid_h <= 0 || llm_grid_w <= 0 {
                return Err(mismatch(format!(
                    "get_rope_index: grid {t}x{h}x{w} leaves no tokens after merging \
                     {spatial_merge_size}x{spatial_merge_size} patches; check the grids"
                )));
            }
            let text_len = (ed - st) as i64;
            let st_idx = pos.next_start();
            pos.push_text(text_len, st_idx);
            pos.push_vision(
                (llm_grid_t, llm_grid_h, llm_grid_w),
                text_len + st_idx,
                time_interval,
            );
            let vision_len = llm_grid_t * llm_grid_h * llm_grid_w;
            st = ed + usize::try_from(vision_len).unwrap_or(0);
            if st > n {
                // Python would truncate silently; the features would not fit either.
                return Err(mismatch(format!(
                    "get_rope_index: row {i}: a grid of {t}x{h}x{w} needs {vision_len} \
                     tokens from position {ed}, but the row has {n}; the grid does not \
                     match the prompt's image tokens"
                )));
            }
        }
        if st < n {
            let st_idx = pos.next_start();
            pos.push_text((n - st) as i64, st_idx);
        }
        let Some(compact_max_position) = pos.axes.iter().flatten().copied().max() else {
            mrope_position_deltas.push(0i32);
            continue;
        };

        let kept_cols = row_mask
            .iter()
            .enumerate()
            .filter(|(_, keep)| **keep == 1)
            .map(|(col, _)| col);
        for (compact_idx, col) in kept_cols.enumerate() {
            for (dim, axis) in pos.axes.iter().enumerate() {
                if let (Some(&v), Some(slot)) = (
                    axis.get(compact_idx),
                    position_ids.get_mut((dim * b + i) * l + col),
                ) {
                    *slot = v;
                }
            }
        }
        mrope_position_deltas.push((compact_max_position + 1 - n as i64) as i32);
    }

    let position_ids = Array::from_vec_shaped(position_ids, &[3, batch_size, seq_length])?
        .as_type(input_ids.dtype())?;
    let deltas = Array::from_vec_shaped(mrope_position_deltas, &[batch_size, 1])?;
    Ok((position_ids, deltas))
}

/// One batched decode step of a Qwen language model (Python:
/// `LanguageModel.__call__` on a list of `BatchKVCache`s, the
/// `cache_offsets` branch of its position ids): row `b`'s token at its
/// cache's offset (its tokens so far) plus its request's rope delta on
/// every mRoPE axis, as in its own decode step; `layers` decoder layers run
/// by `run` (over the embeddings, with the mask hiding each row's left
/// padding, one cache a layer and the position ids `[3, rows, 1]`), then
/// `lm_head`, or the tied `embed_tokens`. Shared by the Qwen families.
pub fn decode_batch<'c>(
    inputs: &Array,
    cache: &'c mut [BatchLayerCache],
    states: &[&mut RequestState],
    embed_tokens: &Embedding,
    lm_head: Option<&Linear>,
    layers: usize,
    run: impl FnOnce(
        Array,
        &AttentionMask,
        &mut dyn Iterator<Item = &'c mut dyn Cache>,
        &Array,
    ) -> Result<Array>,
) -> Result<Array> {
    let position_ids = batch_position_ids(cache, states)?;
    let rows = states.len();
    let out = decode_step(
        "Qwen decode_batch",
        inputs,
        cache,
        rows,
        embed_tokens,
        layers,
        |h, mask, caches| run(h, mask, caches, &position_ids),
    )?;
    match lm_head {
        Some(lm_head) => Ok(lm_head.forward(&out)?),
        None => Ok(embed_tokens.as_linear(&out)?),
    }
}

/// Row `b`'s position `offsets[b] + rope_deltas[b]` on every mRoPE axis;
/// fails unless the cache has one row per state.
fn batch_position_ids(cache: &[BatchLayerCache], states: &[&mut RequestState]) -> Result<Array> {
    let offsets = cache.first().map(BatchLayerCache::offsets).unwrap_or_default();
    if offsets.len() != states.len() {
        return Err(Error::InvalidArgument(format!(
            "batched decode: a cache of {} rows for {} requests",
            offsets.len(),
            states.len()
        )));
    }
    let rows = offsets.len() as i32;
    // Lazily, with no read back: one evaluation with the forward.
    let mut deltas = Vec::with_capacity(offsets.len());
    for state in states {
        deltas.push(match &state.rope_deltas {
            Some(d) => d.as_type(Dtype::Int32)?.reshape(&[1])?,
            None => Array::from_slice(&[0i32], &[1])?,
        });
    }
    let offsets = Array::from_slice(&offsets, &[rows])?;
    let positions = ops::add(&offsets, &ops::concatenate(&deltas, 0)?)?;
    let position_ids = positions.reshape(&[1, rows, 1])?;
    Ok(ops::broadcast_to(&position_ids, &[3, rows, 1])?)
}

/// The mRoPE position ids of one language-model call (Python: the first
/// half of `LanguageModel.__call__`, the same in every Qwen family): the
/// prefill's full-prompt ids sliced to this chunk, else the rope index of
/// the prompt (`get_rope_index`, given the mask when it covers `inputs`)
/// on the first call, else the cache offset plus the request's rope deltas.
pub fn mrope_position_ids(
    inputs: &Array,
    mask: Option<&Array>,
    cache: &[Box<dyn Cache>],
    args: &LanguageModelArgs<'_>,
    state: &mut RequestState,
    get_rope_index: impl FnOnce(Option<&Array>) -> Result<(Array, Array)>,
) -> Result<Option<Array>> {
    let mask = mask.or(args.mask);
    let mut position_ids = args.position_ids.cloned();
    // A new image or video starts a new mRoPE layout.
    if args.has_pixel_values {
        state.rope_deltas = None;
        state.position_ids = None;
    }
    if let Some(rope_deltas) = args.rope_deltas {
        state.rope_deltas = Some(rope_deltas.clone());
    }

    // Plain caches only: Python's per-row offsets of batched caches do
    // not arise. Like Python, a cache's `_idx` (the rotating cache's
    // write position) wins over its offset.
    let cache_offset = cache
        .first()
        .map_or(0, |c| c.idx().unwrap_or_else(|| c.offset()));
    let seq_length = inputs.shape().last().copied().unwrap_or(0);

    if let Some(p) = &position_ids
        && p.shape().last().copied().unwrap_or(0) > seq_length
    {
        position_ids = Some(p.index(idx![
            Index::Ellipsis,
            cache_offset..cache_offset + seq_length
        ])?);
    }

    // A mask of another length belongs to the whole prompt, not this chunk.
    let rope_mask = mask.filter(|m| m.shape().last() == inputs.shape().last());

    if position_ids.is_none() && rope_mask.is_none_or(|m| m.ndim() == 2) {
        if (!cache.is_empty() && cache_offset == 0)
            || state.rope_deltas.is_none()
            || cache.is_empty()
        {
            if let Some(saved) = &state.position_ids {
                let window = cache_offset..cache_offset + seq_length;
                position_ids = Some(if saved.ndim() == 3 {
                    saved.index(idx![.., .., window])?
                } else {
                    saved.index(idx![.., window])?
                });
            } else {
                let (p, rope_deltas) = get_rope_index(rope_mask)?;
                state.rope_deltas = Some(rope_deltas);
                state.position_ids = Some(p.clone());
                position_ids = Some(p);
            }
        } else {
            let &[batch_size, seq_length] = inputs.shape() else {
                return Err(Error::InvalidArgument(format!(
                    "LanguageModel: inputs must be [batch, seq] token ids, got {:?}",
                    inputs.shape()
                )));
            };
            let rope_deltas_src = args.rope_deltas.or(state.rope_deltas.as_ref());
            let mut delta = match rope_deltas_src {
                Some(d) => ops::add(d, cache_offset)?,
                None => Array::from(cache_offset),
            };
            if delta.ndim() == 0 {
                delta = ops::expand_dims(&delta, 0)?;
            }
            delta = if delta.shape().first().copied().unwrap_or(0) < batch_size {
                ops::tile(&delta, &[batch_size, 1])?
            } else {
                delta.index(idx![..batch_size])?
            };
            let p = ops::arange(0, seq_length, 1, None)?.reshape(&[1, -1])?;
            let p = ops::broadcast_to(&p, &[batch_size, seq_length])?;
            let mut p = ops::add(&p, &delta)?;
            if args.rope_deltas.is_some()
                || state.position_ids.as_ref().is_some_and(|s| s.ndim() == 3)
            {
                p = ops::broadcast_to(&ops::expand_dims(&p, 0)?, &[3, batch_size, seq_length])?;
            }
            position_ids = Some(p);
        }
    }
    Ok(position_ids)
}
