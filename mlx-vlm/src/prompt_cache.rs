//! Reusing a conversation's KV cache across turns (Python:
//! `PromptCacheState` of `mlx_vlm/generate/common.py`, the prompt-cache
//! helpers `_cache_fully_retained` and `_prefix_cache_trim_amount` of
//! `generate/dispatch.py`, and the media-token rule of `mlx_vlm/apc.py`:
//! `multimodal_token_ids_from_config`, `media_safe_prefix_min`,
//! `prefix_leaves_text_only_suffix`), plus a bounded LRU of such states
//! for the server ([`PrefixCache`], Rust only).
//!
//! [`crate::generate::stream_generate_with_prompt_cache`] takes a
//! [`PromptCacheState`]: the next turn prefills only the tokens after the
//! longest prefix it shares with the cached ones, then stores the whole
//! conversation.
//!
//! Divergences from Python:
//! - The state also keeps the request state ([`RequestState`]: Qwen's
//!   mRoPE deltas) with the cache. The reused suffix is prefilled without
//!   the suffix's prefill arguments, so a Qwen model places it from the
//!   cache offset and the kept rope deltas; Python instead primes the
//!   positions from the whole prompt (`_prime_cached_prefix_rope_state`).
//!   Both give the suffix's full-prompt positions, because the suffix is
//!   text only (after every media token) and text positions there are the
//!   offset plus the deltas.
//! - The media token ids come from `config.json` (Python reads the parsed
//!   model config, whose defaults may fill a missing key) and include
//!   `audio_token_id`/`audio_token_index`: Python would reuse a prefix
//!   whose suffix holds audio tokens and then feed the suffix the whole
//!   prompt's audio features; here that is a cold prefill.
//! - A request with media but no known media token ids is a cold prefill
//!   (the suffix cannot be shown to be text only).
//! - Python keeps the same cache objects in the state while it trims and
//!   extends them, so a generation that stops early leaves the state's ids
//!   stale; here the cache moves into the generation and comes back only
//!   when it finishes, else the next turn is a cold prefill.

use serde_json::Value;

use crate::models::{Cache, RequestState};

mod prefix_cache;

pub use prefix_cache::PrefixCache;

/// Holds the KV cache and token history across conversation turns
/// (Python: `PromptCacheState`), with the request state that goes with the
/// cache (see the module's divergences).
#[derive(Default)]
pub struct PromptCacheState {
    /// The per-layer caches after the last turn (Python: `cache`).
    pub cache: Option<Vec<Box<dyn Cache>>>,
    /// Every token the cache holds: the last prompt and its generated ids
    /// (Python: `token_ids`).
    pub token_ids: Option<Vec<u32>>,
    /// The model's per-request state after the last turn (Rust only).
    pub request_state: Option<RequestState>,
    /// Token ids of media placeholders (Python computes them from the
    /// model's config in `stream_generate`;
    /// [`multimodal_token_ids_from_config`]).
    pub multimodal_token_ids: Vec<u32>,
}

/// Cloning shares the cache arrays ([`Cache::boxed_clone`]): the copy's
/// later writes never reach the original.
impl Clone for PromptCacheState {
    fn clone(&self) -> Self {
        Self {
            cache: self
                .cache
                .as_ref()
                .map(|c| c.iter().map(|c| c.boxed_clone()).collect()),
            token_ids: self.token_ids.clone(),
            request_state: self.request_state.clone(),
            multimodal_token_ids: self.multimodal_token_ids.clone(),
        }
    }
}

impl std::fmt::Debug for PromptCacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptCacheState")
            .field("token_ids", &self.token_ids.as_ref().map(Vec::len))
            .field("layers", &self.cache.as_ref().map(Vec::len))
            .field("multimodal_token_ids", &self.multimodal_token_ids)
            .finish()
    }
}

/// What [`PromptCacheState::take_reusable`] hands the generation: the
/// trimmed cache and request state, and how many prompt tokens they hold.
pub struct CachedPrefix {
    /// Tokens of the prompt the cache already holds (Python:
    /// `reused_prefix_len`).
    pub prefix_len: usize,
    /// The caches, trimmed to `prefix_len` tokens.
    pub cache: Vec<Box<dyn Cache>>,
    /// The request state of the turn that filled them.
    pub request_state: RequestState,
}

impl PromptCacheState {
    /// An empty state for a model whose media placeholders are
    /// `multimodal_token_ids` (see [`multimodal_token_ids_from_config`]).
    pub fn new(multimodal_token_ids: Vec<u32>) -> Self {
        Self {
            multimodal_token_ids,
            ..Default::default()
        }
    }

    /// The number of leading tokens of `new_ids` that match the cached ids
    /// (Python: `find_prefix_length`).
    pub fn find_prefix_length(&self, new_ids: &[u32]) -> usize {
        self.token_ids.as_deref().map_or(0, |cached| {
            cached
                .iter()
                .zip(new_ids)
                .take_while(|(a, b)| a == b)
                .count()
        })
    }

    /// Stores the full token sequence and its cache (Python: `update`).
    pub fn update(
        &mut self,
        token_ids: Vec<u32>,
        cache: Vec<Box<dyn Cache>>,
        request_state: RequestState,
    ) {
        self.token_ids = Some(token_ids);
        self.cache = Some(cache);
        self.request_state = Some(request_state);
    }

    /// Forgets the cached conversation (Python: a fresh
    /// `PromptCacheState()`), keeping the media token ids.
    pub fn clear(&mut self) {
        self.cache = None;
        self.token_ids = None;
        self.request_state = None;
    }

    /// The bytes the cached keys and values take (Rust only, for
    /// [`PrefixCache`]'s byte bound).
    pub fn nbytes(&self) -> usize {
        self.cache.as_deref().map_or(0, cache_nbytes)
    }

    /// The reuse decision of Python's `stream_generate` for a prompt of
    /// `full_input_ids` (`has_media`: the request carries media inputs).
    ///
    /// Reuses when `0 < prefix_len < len(full_input_ids)`, the caches can
    /// be trimmed back to the shared prefix
    /// ([`prefix_cache_trim_amount`]) and the suffix is text only
    /// ([`prefix_leaves_text_only_suffix`]); then trims the caches and
    /// hands them over. Otherwise returns `None` (a cold prefill). Either
    /// way the state is left empty: the caller stores the new conversation
    /// with [`PromptCacheState::update`] when it finishes.
    pub fn take_reusable(
        &mut self,
        full_input_ids: &[u32],
        has_media: bool,
    ) -> Option<CachedPrefix> {
        let prefix_len = self.find_prefix_length(full_input_ids);
        self.token_ids = None;
        let mut cache = self.cache.take()?;
        let request_state = self.request_state.take()?;
        let n_drop = prefix_cache_trim_amount(&cache, prefix_len)?;
        let text_only_suffix = if self.multimodal_token_ids.is_empty() {
            // No known placeholders: only a request without media is safe.
            !has_media
        } else {
            prefix_leaves_text_only_suffix(full_input_ids, prefix_len, &self.multimodal_token_ids)
        };
        if !(0 < prefix_len && prefix_len < full_input_ids.len() && text_only_suffix) {
            return None;
        }
        if n_drop > 0 {
            for c in cache.iter_mut() {
                c.trim(n_drop);
            }
        }
        Some(CachedPrefix {
            prefix_len,
            cache,
            request_state,
        })
    }
}

/// The bytes of every array a cache list holds.
pub fn cache_nbytes(cache: &[Box<dyn Cache>]) -> usize {
    cache
        .iter()
        .flat_map(|c| c.state())
        .map(|a| a.nbytes())
        .sum()
}

/// Trailing tokens to drop so `cache` keeps only its first `prefix_len`
/// (Python: `_prefix_cache_trim_amount`): 0 when the whole cache is
/// reusable, `None` when a cache already evicted part of the prefix (a
/// wrapped rotating window) or cannot be trimmed, and the caller must
/// prefill cold instead.
pub fn prefix_cache_trim_amount(cache: &[Box<dyn Cache>], prefix_len: usize) -> Option<i32> {
    let cached_len = cache.iter().map(|c| c.offset()).max().unwrap_or(0).max(0);
    let prefix_len = i32::try_from(prefix_len).unwrap_or(i32::MAX);
    let n_drop = (cached_len - prefix_len).max(0);
    if n_drop > 0 && !cache.iter().all(|c| c.is_trimmable() && c.fully_retained()) {
        return None;
    }
    Some(n_drop)
}

/// The token ids that stand for media in a prompt (Python:
/// `multimodal_token_ids_from_config`): `image_token_id`,
/// `image_token_index`, `video_token_id` and `video_token_index` of
/// `config.json`, plus (Rust only) `audio_token_id` and
/// `audio_token_index`; sorted, without repeats.
pub fn multimodal_token_ids_from_config(config: &Value) -> Vec<u32> {
    let mut ids: Vec<u32> = [
        "image_token_id",
        "image_token_index",
        "video_token_id",
        "video_token_index",
        "audio_token_id",
        "audio_token_index",
    ]
    .iter()
    .filter_map(|key| config.get(*key).and_then(Value::as_u64))
    .filter_map(|id| u32::try_from(id).ok())
    .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The shortest prefix that leaves a text-only suffix: the end of the last
/// media token (Python: `media_safe_prefix_min`).
pub fn media_safe_prefix_min(token_ids: &[u32], media_token_ids: &[u32]) -> usize {
    token_ids
        .iter()
        .rposition(|id| media_token_ids.contains(id))
        .map_or(0, |last| last + 1)
}

/// Whether the tokens after `prefix_len` hold no media token (Python:
/// `prefix_leaves_text_only_suffix`).
pub fn prefix_leaves_text_only_suffix(
    token_ids: &[u32],
    prefix_len: usize,
    media_token_ids: &[u32],
) -> bool {
    prefix_len >= media_safe_prefix_min(token_ids, media_token_ids)
}
