//! A cache of projected vision features (Python:
//! `mlx_vlm/vision_cache.py`, `VisionFeatureCache`): the output of a
//! family's vision tower and projector (or merger), in the language
//! model's space, kept for the next request with the same media so a
//! second turn about one image skips the tower.
//!
//! Families opt in through
//! [`crate::models::FamilyModel::get_input_embeddings_cached`]; the batch
//! generator owns one cache ([`crate::batch::BatchOptions::vision_cache_size`]),
//! `mlx-vlm serve` sizes it with `--vision-cache-size`.
//!
//! Divergences from Python:
//! - The key is a SHA-256 of the media tensors the tower reads (dtype,
//!   shape and bytes of the pixel values and grids, [`VisionKey::of`]),
//!   not the image's path or URL: the same picture sent as a path, a URL
//!   or a data URI shares one entry, and a file changed on disk under the
//!   same path is not served stale features.
//! - A key covers all of a prompt's images together, as Python's
//!   composite key of an image list does: a prompt adding an image to a
//!   cached one misses.
//! - A size of 0 is refused ([`VisionCacheError::ZeroCapacity`]); Python
//!   takes it and then fails on its first `put` (popping from an empty
//!   dict).
//! - Hits and misses are counted ([`VisionCacheStats`]).

use std::collections::VecDeque;

use mlx_rs::{Array, Dtype};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Python's default `max_size` (and the server's `--vision-cache-size`).
pub const DEFAULT_VISION_CACHE_SIZE: usize = 20;

/// Why a [`VisionFeatureCache`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisionCacheError {
    /// The cache was asked to hold no entry.
    #[error(
        "a vision feature cache must hold at least one entry; to cache nothing, use no cache \
         (vision_cache_size None, or --vision-cache-size 0 for the server)"
    )]
    ZeroCapacity,
}

/// The content key of a prompt's media: a SHA-256 over every tensor the
/// vision tower reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VisionKey([u8; 32]);

impl VisionKey {
    /// The key of `tensors` (pixel values, grids, anything that changes
    /// the features), in order: each one's presence, dtype, shape and
    /// bytes, after `namespace` (the model type: another family's tower
    /// gives other features, even several arrays where this one gives
    /// one). Evaluates the tensors and copies each out once to hash it.
    pub fn of(namespace: &str, tensors: &[Option<&Array>]) -> Result<Self> {
        let mut hasher = Sha256::new();
        hasher.update((namespace.len() as u64).to_le_bytes());
        hasher.update(namespace.as_bytes());
        for tensor in tensors {
            let Some(tensor) = tensor else {
                hasher.update([0u8]);
                continue;
            };
            hasher.update([1u8]);
            // The dtype's name and the shape separate tensors of the same
            // bytes (an f32 and an i32 of equal bits, a transposed grid).
            hasher.update(format!("{:?}", tensor.dtype()).as_bytes());
            hasher.update((tensor.ndim() as u64).to_le_bytes());
            for &d in tensor.shape() {
                hasher.update(i64::from(d).to_le_bytes());
            }
            // Viewed as bytes, every dtype (bf16, bool, ...) reads alike.
            let bytes = tensor.view(Dtype::Uint8)?.to_vec::<u8>()?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(VisionKey(hasher.finalize().into()))
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Counters of a [`VisionFeatureCache`], for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VisionCacheStats {
    /// Lookups that found their features.
    pub hits: u64,
    /// Lookups that did not (the tower ran).
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// A bounded LRU of projected vision features by [`VisionKey`] (Python:
/// `VisionFeatureCache`). A value is every array a family's tower gives
/// for the media: one for most families, more for Qwen3-VL (the merged
/// features and one per deepstack layer), stored and returned together.
///
/// The features belong to the model that made them: use one cache per
/// loaded model. `Send`: it lives on the generation thread.
#[derive(Debug)]
pub struct VisionFeatureCache {
    max_entries: usize,
    /// Least recently used first. A linear scan: caches hold tens of
    /// entries and a lookup is dwarfed by hashing the pixels.
    entries: VecDeque<(VisionKey, Vec<Array>)>,
    hits: u64,
    misses: u64,
}

impl VisionFeatureCache {
    /// An empty cache of at most `max_entries` entries (Python:
    /// `VisionFeatureCache(max_size)`); 0 is refused.
    pub fn new(max_entries: usize) -> std::result::Result<Self, VisionCacheError> {
        if max_entries == 0 {
            return Err(VisionCacheError::ZeroCapacity);
        }
        Ok(Self {
            max_entries,
            entries: VecDeque::new(),
            hits: 0,
            misses: 0,
        })
    }

    /// The most entries it keeps.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is held (no counter moves, no reordering).
    pub fn contains(&self, key: &VisionKey) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// The features of `key`, now the most recently used, counting a hit
    /// or a miss (Python: `get`).
    pub fn get(&mut self, key: &VisionKey) -> Option<Vec<Array>> {
        let Some(i) = self.entries.iter().position(|(k, _)| k == key) else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        let entry = self.entries.remove(i)?;
        let features = entry.1.clone();
        self.entries.push_back(entry);
        Some(features)
    }

    /// Stores `features` under `key` as the most recently used, evicting
    /// the least recently used entry when full (Python: `put`). The
    /// features are evaluated first, so the entry holds their values and
    /// not the graph (and pixels) that made them.
    pub fn put(&mut self, key: VisionKey, features: Vec<Array>) -> Result<()> {
        mlx_rs::transforms::eval(features.iter())?;
        if let Some(i) = self.entries.iter().position(|(k, _)| *k == key) {
            self.entries.remove(i);
        } else if self.entries.len() >= self.max_entries {
            self.entries.pop_front();
        }
        self.entries.push_back((key, features));
        Ok(())
    }

    /// The features of `key`, or `encode`'s, stored (Python: the
    /// `get`-else-encode-and-`put` of a family's `get_input_embeddings`).
    pub fn get_or_encode(
        &mut self,
        key: VisionKey,
        encode: impl FnOnce() -> Result<Vec<Array>>,
    ) -> Result<Vec<Array>> {
        if let Some(features) = self.get(&key) {
            return Ok(features);
        }
        let features = encode()?;
        self.put(key, features.clone())?;
        Ok(features)
    }

    /// Drops every entry (Python: `clear`); the counters stay.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Hits, misses and entries so far.
    pub fn stats(&self) -> VisionCacheStats {
        VisionCacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.entries.len(),
        }
    }
}

/// `encode`'s features of the media `tensors` (keyed under `namespace`,
/// see [`VisionKey::of`]), through `cache` when there is one; without one
/// nothing is hashed.
pub fn cached_features(
    cache: Option<&mut VisionFeatureCache>,
    namespace: &str,
    tensors: &[Option<&Array>],
    encode: impl FnOnce() -> Result<Vec<Array>>,
) -> Result<Vec<Array>> {
    match cache {
        None => encode(),
        Some(cache) => cache.get_or_encode(VisionKey::of(namespace, tensors)?, encode),
    }
}

/// [`cached_features`] for a tower giving one array (every family but
/// Qwen3-VL): `encode`'s features of the media `tensors`, through `cache`
/// when there is one. Fails when the cache holds another count of arrays
/// under the key (a cache shared between models).
pub fn cached_feature(
    cache: Option<&mut VisionFeatureCache>,
    namespace: &str,
    tensors: &[Option<&Array>],
    encode: impl FnOnce() -> Result<Array>,
) -> Result<Array> {
    let features = cached_features(cache, namespace, tensors, || Ok(vec![encode()?]))?;
    <[Array; 1]>::try_from(features)
        .map(|[features]| features)
        .map_err(|f| {
            Error::InvalidArgument(format!(
                "the vision feature cache held {} arrays for a {namespace} image, which has \
                 one; use one cache per model",
                f.len()
            ))
        })
}
