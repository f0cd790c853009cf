//! One decoder layer's cache in a decode batch: a plain
//! [`BatchKvCache`] or a sliding-window [`BatchRotatingKvCache`], chosen
//! by the kind of cache the layer's requests prefilled (Python: the
//! `BatchKVCache`/`BatchRotatingKVCache` a `GenerationBatch` holds per
//! layer).

use mlx_rs::Array;

use super::batch_cache::BatchKvCache;
use super::batch_rotating_cache::BatchRotatingKvCache;
use super::cache::Cache;
use crate::{Error, Result};

/// A batched cache of either kind.
#[derive(Debug, Clone)]
pub enum BatchLayerCache {
    /// A layer that keeps every token.
    Plain(BatchKvCache),
    /// A sliding-window layer.
    Rotating(BatchRotatingKvCache),
}

impl BatchLayerCache {
    /// A batch of one row made from a request's cache; `None` for a cache
    /// neither kind takes in (quantized, or with pinned `keep` tokens).
    pub fn join(cache: &dyn Cache) -> Option<Result<Self>> {
        if let Some(kv) = cache.plain_kv() {
            return Some(kv.and_then(|kv| Ok(Self::Plain(BatchKvCache::merge(&[kv])?))));
        }
        let window = cache.max_size()?;
        let row = cache.rotating_kv()?;
        Some(row.and_then(|row| Ok(Self::Rotating(BatchRotatingKvCache::merge(&[row], window)?))))
    }

    /// Appends the rows of `other`, a cache of the same kind (Python:
    /// `extend`).
    pub fn extend(&mut self, other: Self) -> Result<()> {
        match (self, other) {
            (Self::Plain(a), Self::Plain(b)) => a.extend(b),
            (Self::Rotating(a), Self::Rotating(b)) if a.max_size() == b.max_size() => a.extend(b),
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
            Self::Plain(c) => c.filter(keep),
            Self::Rotating(c) => c.filter(keep),
        }
    }

    /// Row `row` as a cache of its own (Python: `extract`).
    pub fn extract(&self, row: usize) -> Result<Box<dyn Cache>> {
        Ok(match self {
            Self::Plain(c) => Box::new(c.extract(row)?),
            Self::Rotating(c) => Box::new(c.extract(row)?),
        })
    }

    /// Padding columns before each row's first token.
    pub fn left_padding(&self) -> &[i32] {
        match self {
            Self::Plain(c) => c.left_padding(),
            Self::Rotating(c) => c.left_padding(),
        }
    }

    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        match self {
            Self::Plain(c) => c.batch_size(),
            Self::Rotating(c) => c.batch_size(),
        }
    }

    /// The buffers, for evaluation.
    pub fn state(&self) -> Vec<Array> {
        self.as_cache().state()
    }

    /// The cache, for a layer's attention.
    pub fn as_cache(&self) -> &dyn Cache {
        match self {
            Self::Plain(c) => c,
            Self::Rotating(c) => c,
        }
    }

    /// The cache, for a layer's attention to update.
    pub fn as_cache_mut(&mut self) -> &mut dyn Cache {
        match self {
            Self::Plain(c) => c,
            Self::Rotating(c) => c,
        }
    }
}

/// The two batched-decode methods of a [`crate::models::FamilyModel`]
/// impl (its `State` `()`) whose model decodes batches of plain and
/// sliding-window caches through its `language_model` field's
/// `decode_batch(inputs, cache, rows)`: `batched_decode` true and
/// `decode_batch_layers` forwarding there.
macro_rules! language_model_decodes_layer_batches {
    () => {
        fn batched_decode(&self) -> bool {
            true
        }

        /// Sliding layers batch through rotating caches, global ones
        /// through plain caches.
        fn decode_batch_layers(
            &self,
            inputs: &mlx_rs::Array,
            cache: &mut [$crate::models::BatchLayerCache],
            states: &mut [&mut ()],
        ) -> $crate::Result<mlx_rs::Array> {
            self.language_model
                .decode_batch(inputs, cache, states.len())
        }
    };
}
pub(crate) use language_model_decodes_layer_batches;

/// Runs `decode` (a family's decode over plain caches only) on `cache`'s
/// plain caches, handed back afterwards; fails, leaving `cache` as it
/// was, when a layer is sliding-window (a family that decodes those
/// overrides [`crate::models::FamilyModel::decode_batch_layers`]).
pub(crate) fn with_plain_caches(
    cache: &mut [BatchLayerCache],
    decode: impl FnOnce(&mut [BatchKvCache]) -> Result<Array>,
) -> Result<Array> {
    if cache
        .iter()
        .any(|c| matches!(c, BatchLayerCache::Rotating(_)))
    {
        return Err(Error::InvalidArgument(
            "this family's batched decode takes plain caches only, not sliding-window ones".into(),
        ));
    }
    let mut plain: Vec<BatchKvCache> = cache
        .iter_mut()
        .map(|c| match c {
            BatchLayerCache::Plain(p) => std::mem::take(p),
            BatchLayerCache::Rotating(_) => BatchKvCache::default(),
        })
        .collect();
    let out = decode(&mut plain);
    for (c, p) in cache.iter_mut().zip(plain) {
        *c = BatchLayerCache::Plain(p);
    }
    out
}
