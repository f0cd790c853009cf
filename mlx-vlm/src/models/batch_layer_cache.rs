//! One decoder layer's cache in a decode batch: a plain
//! [`BatchKvCache`], a sliding-window [`BatchRotatingKvCache`] or a
//! quantized [`BatchQuantizedKvCache`], chosen by the kind of cache the
//! layer's requests hold (Python: the `BatchKVCache`,
//! `BatchRotatingKVCache` or `BatchQuantizedKVCache` a `GenerationBatch`
//! holds per layer).
//!
//! Rust only: a `max_kv_size` ring pinning its first tokens (Python's
//! `RotatingKVCache(keep=4)`, which no batched ring takes in) joins as a
//! plain batch while it has dropped no token and will not before its
//! request ends ([`BatchLayerCache::Bounded`]), since until then it holds
//! exactly what a plain cache holds; its row is handed back as the ring
//! it was. Python's `BatchGenerator` ignores `max_kv_size` instead.

use mlx_rs::Array;
use mlx_rs::nn::Embedding;

use super::batch_cache::BatchKvCache;
use super::batch_quantized_cache::BatchQuantizedKvCache;
use super::batch_rotating_cache::BatchRotatingKvCache;
use super::cache::{Cache, Mask, RotatingKvCache};
use crate::{Error, Result};

/// A batched cache of either kind.
#[derive(Debug, Clone)]
pub enum BatchLayerCache {
    /// A layer that keeps every token.
    Plain(BatchKvCache),
    /// A sliding-window layer.
    Rotating(BatchRotatingKvCache),
    /// Rings of `max_size` pinning `keep` tokens that have dropped none
    /// and will drop none before their requests end: plain until then.
    Bounded(BatchKvCache, Bound),
    /// Quantized caches (`kv_bits`) of one group size and width.
    Quantized(BatchQuantizedKvCache),
}

/// A [`BatchLayerCache::Bounded`] layer's ring: its window and pinned
/// tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The window (`max_kv_size`).
    pub max_size: i32,
    /// Tokens pinned at the start.
    pub keep: i32,
}

impl BatchLayerCache {
    /// A batch of one row made from a request's cache, which will take
    /// at most `tokens_left` more tokens; `None` for a cache no kind takes
    /// in (a ring pinning tokens that has dropped some or would before
    /// `tokens_left` more, or a family's own kind).
    pub fn join(cache: &dyn Cache, tokens_left: i32) -> Option<Result<Self>> {
        if let Some(kv) = cache.plain_kv() {
            return Some(kv.and_then(|kv| Ok(Self::Plain(BatchKvCache::merge(&[kv])?))));
        }
        if let Some(kv) = cache.quantized_kv() {
            return Some(kv.and_then(|(k, v, group_size, bits)| {
                let row = BatchQuantizedKvCache::merge(&[(k, v)], group_size, bits)?;
                Ok(Self::Quantized(row))
            }));
        }
        if let Some(kv) = cache.unwrapped_kv(tokens_left) {
            return Some(kv.and_then(|(k, v, max_size, keep)| {
                let bound = Bound { max_size, keep };
                Ok(Self::Bounded(BatchKvCache::merge(&[(k, v)])?, bound))
            }));
        }
        let window = cache.max_size()?;
        let row = cache.rotating_kv()?;
        Some(row.and_then(|row| Ok(Self::Rotating(BatchRotatingKvCache::merge(&[row], window)?))))
    }

    /// Whether [`BatchLayerCache::extend`] takes `other`'s rows: the same
    /// kind, for sliding windows the same window, for quantized caches the
    /// same group size and bits.
    pub fn joins(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Plain(_), Self::Plain(_)) => true,
            (Self::Rotating(a), Self::Rotating(b)) => a.max_size() == b.max_size(),
            (Self::Bounded(_, a), Self::Bounded(_, b)) => a == b,
            (Self::Quantized(a), Self::Quantized(b)) => {
                (a.group_size(), a.bits()) == (b.group_size(), b.bits())
            }
            _ => false,
        }
    }

    /// Appends the rows of `other`, a cache of the same kind (Python:
    /// `extend`).
    pub fn extend(&mut self, other: Self) -> Result<()> {
        match (self, other) {
            (Self::Plain(a), Self::Plain(b)) => a.extend(b),
            (Self::Rotating(a), Self::Rotating(b)) if a.max_size() == b.max_size() => a.extend(b),
            (Self::Bounded(a, x), Self::Bounded(b, y)) if *x == y => a.extend(b),
            (Self::Quantized(a), Self::Quantized(b)) => a.extend(b),
            _ => Err(Error::InvalidArgument(
                "a request whose layer caches differ in kind or window from the decode \
                 batch's cannot join it"
                    .into(),
            )),
        }
    }

    /// Keeps only the rows `keep` (Python: `filter`).
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        match self {
            Self::Plain(c) | Self::Bounded(c, _) => c.filter(keep),
            Self::Rotating(c) => c.filter(keep),
            Self::Quantized(c) => c.filter(keep),
        }
    }

    /// Row `row` as a cache of its own (Python: `extract`).
    pub fn extract(&self, row: usize) -> Result<Box<dyn Cache>> {
        self.extract_trimmed(row, 0)
    }

    /// Whether a step's update overwrites what a row held (a ring's
    /// oldest slot), so the row as it was before the step can only be
    /// taken from a copy made before it; the other kinds only append, and
    /// [`BatchLayerCache::extract_trimmed`] cuts the step's tokens off.
    pub fn overwrites(&self) -> bool {
        matches!(self, Self::Rotating(_))
    }

    /// Row `row` as a cache of its own without its last `trim` tokens (a
    /// step it should not have taken); only for a kind that does not
    /// overwrite ([`BatchLayerCache::overwrites`]), the trim is ignored
    /// for a ring.
    pub fn extract_trimmed(&self, row: usize, trim: i32) -> Result<Box<dyn Cache>> {
        Ok(match self {
            Self::Plain(c) => Box::new(c.extract_trimmed(row, trim)?),
            Self::Rotating(c) => Box::new(c.extract(row)?),
            Self::Quantized(c) => Box::new(c.extract_trimmed(row, trim)?),
            Self::Bounded(c, bound) => {
                let row = c.extract_trimmed(row, trim)?;
                let (k, v) = match row.plain_kv() {
                    Some(kv) => kv?,
                    None => {
                        return Err(Error::InvalidArgument(
                            "BatchLayerCache::extract: an empty row of a bounded layer".into(),
                        ));
                    }
                };
                Box::new(RotatingKvCache::from_unwrapped(
                    bound.max_size,
                    bound.keep,
                    k,
                    v,
                )?)
            }
        })
    }

    /// Padding columns before each row's first token.
    pub fn left_padding(&self) -> &[i32] {
        match self {
            Self::Plain(c) | Self::Bounded(c, _) => c.left_padding(),
            Self::Rotating(c) => c.left_padding(),
            Self::Quantized(c) => c.left_padding(),
        }
    }

    /// Each row's token count (its next token's position).
    pub fn offsets(&self) -> Vec<i32> {
        match self {
            Self::Plain(c) | Self::Bounded(c, _) => c.offsets(),
            Self::Rotating(c) => c.offsets(),
            Self::Quantized(c) => c.offsets(),
        }
    }

    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        match self {
            Self::Plain(c) | Self::Bounded(c, _) => c.batch_size(),
            Self::Rotating(c) => c.batch_size(),
            Self::Quantized(c) => c.batch_size(),
        }
    }

    /// The buffers, for evaluation.
    pub fn state(&self) -> Vec<Array> {
        self.as_cache().state()
    }

    /// The cache, for a layer's attention.
    pub fn as_cache(&self) -> &dyn Cache {
        match self {
            Self::Plain(c) | Self::Bounded(c, _) => c,
            Self::Rotating(c) => c,
            Self::Quantized(c) => c,
        }
    }

    /// The cache, for a layer's attention to update.
    pub fn as_cache_mut(&mut self) -> &mut dyn Cache {
        match self {
            Self::Plain(c) | Self::Bounded(c, _) => c,
            Self::Rotating(c) => c,
            Self::Quantized(c) => c,
        }
    }
}

/// One batched decode step of a decoder: checks that `inputs` holds one
/// token per row (`[rows, 1]`) and `cache` one [`BatchLayerCache`] of
/// `rows` rows per decoder layer (`layers`), embeds `inputs` with `embed_tokens`
/// and hands `run` the embeddings, the step's mask (`[rows, 1, 1,
/// columns + 1]`, false on each row's left padding) and the caches, one a
/// layer. Shared by the families' batched decodes; `who` names the caller
/// in the errors.
pub fn decode_step<'c>(
    who: &str,
    inputs: &Array,
    cache: &'c mut [BatchLayerCache],
    rows: usize,
    embed_tokens: &Embedding,
    layers: usize,
    run: impl FnOnce(Array, &Mask, &mut dyn Iterator<Item = &'c mut dyn Cache>) -> Result<Array>,
) -> Result<Array> {
    if inputs.shape() != [rows as i32, 1] || cache.len() != layers {
        return Err(Error::InvalidArgument(format!(
            "{who}: needs inputs [{rows}, 1] (one token per request) and one cache per \
             layer ({layers}), got inputs {:?} and {} caches",
            inputs.shape(),
            cache.len()
        )));
    }
    let Some(first) = cache.first() else {
        return Err(Error::InvalidArgument(format!(
            "{who}: a model without layers"
        )));
    };
    if first.batch_size() != rows {
        return Err(Error::InvalidArgument(format!(
            "{who}: a cache of {} rows for {rows} requests",
            first.batch_size()
        )));
    }
    // Every layer keeps the same kind of cache (plain, quantized, or
    // bounded by the request's `max_kv_size`), so the first layer's mask
    // serves all.
    let mask = first.as_cache().make_mask(1, None, true)?;
    let h = embed_tokens.forward(inputs)?;
    let mut caches = cache.iter_mut().map(BatchLayerCache::as_cache_mut);
    run(h, &mask, &mut caches)
}

/// The two batched-decode methods of a [`crate::models::FamilyModel`]
/// impl whose model decodes batches through its `language_model` field's
/// `decode_batch(inputs, cache, states)`: `batched_decode` true and
/// `decode_batch` forwarding there. `$state` is the family's `State`.
macro_rules! language_model_decodes_batches {
    ($state:ty) => {
        fn batched_decode(&self) -> bool {
            true
        }

        fn decode_batch(
            &self,
            inputs: &mlx_rs::Array,
            cache: &mut [$crate::models::BatchLayerCache],
            states: &mut [&mut $state],
        ) -> $crate::Result<mlx_rs::Array> {
            self.language_model.decode_batch(inputs, cache, states)
        }
    };
}
pub(crate) use language_model_decodes_batches;
