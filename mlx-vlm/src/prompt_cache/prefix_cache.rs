//! A bounded least-recently-used store of [`PromptCacheState`]s for a
//! server with many conversations (Rust only: Python's server reuses one
//! `PromptCacheState` per request, or its block-hashed APC manager, not
//! ported).
//!
//! A request takes the entry sharing the longest token prefix with its
//! prompt ([`PrefixCache::take_longest_prefix`], or
//! [`PrefixCache::checkout`], which leaves an entry the prompt only partly
//! shares in place and hands out a copy), generates with it (trimming and
//! extending the cache), and puts the finished conversation back
//! ([`PrefixCache::insert`]).

use super::PromptCacheState;
use crate::{Error, Result};

/// One stored conversation.
struct Entry {
    state: PromptCacheState,
    bytes: usize,
    last_used: u64,
}

/// Several [`PromptCacheState`]s keyed by their token ids, bounded in
/// entries and optionally in bytes, evicting the least recently used.
pub struct PrefixCache {
    entries: Vec<Entry>,
    max_entries: usize,
    max_bytes: Option<usize>,
    clock: u64,
}

impl std::fmt::Debug for PrefixCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCache")
            .field("entries", &self.entries.len())
            .field("bytes", &self.nbytes())
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl PrefixCache {
    /// A cache of at most `max_entries` conversations and, if given,
    /// `max_bytes` bytes of keys and values. Fails on `max_entries` 0 or
    /// `max_bytes` 0 (leave the cache out to turn prefix reuse off).
    pub fn new(max_entries: usize, max_bytes: Option<usize>) -> Result<Self> {
        if max_entries == 0 {
            return Err(Error::InvalidParameter {
                name: "max_entries",
                value: "0".into(),
                message: "a prefix cache needs room for at least 1 conversation; \
                          leave the cache out to turn prefix reuse off"
                    .into(),
            });
        }
        if max_bytes == Some(0) {
            return Err(Error::InvalidParameter {
                name: "max_bytes",
                value: "0".into(),
                message: "a prefix cache bound of 0 bytes holds nothing; give a positive \
                          size, or none for a bound in entries only"
                    .into(),
            });
        }
        Ok(Self {
            entries: Vec::new(),
            max_entries,
            max_bytes,
            clock: 0,
        })
    }

    /// Stored conversations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values stored.
    pub fn nbytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// The token ids of every entry, most recently used first (for tests
    /// and diagnostics).
    pub fn keys(&self) -> Vec<&[u32]> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        entries
            .iter()
            .filter_map(|e| e.state.token_ids.as_deref())
            .collect()
    }

    /// The index and shared length of the entry with the longest prefix in
    /// common with `token_ids` (the most recently used among equals), if
    /// any shares a token.
    fn best(&self, token_ids: &[u32]) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.state.find_prefix_length(token_ids), e.last_used))
            .filter(|&(_, len, _)| len > 0)
            .max_by_key(|&(_, len, used)| (len, used))
            .map(|(i, len, _)| (i, len))
    }

    /// The longest prefix an entry shares with `token_ids`, without taking
    /// it (0 when none does).
    pub fn longest_prefix(&self, token_ids: &[u32]) -> usize {
        self.best(token_ids).map_or(0, |(_, len)| len)
    }

    /// Removes and returns the entry sharing the longest prefix with
    /// `token_ids`, with the shared length; `None` when no entry shares a
    /// token. Give the state to the generation, then
    /// [`PrefixCache::insert`] it back when the turn is done.
    pub fn take_longest_prefix(&mut self, token_ids: &[u32]) -> Option<(PromptCacheState, usize)> {
        let (i, len) = self.best(token_ids)?;
        Some((self.entries.swap_remove(i).state, len))
    }

    /// The state a prompt of `token_ids` should continue, with the length
    /// it shares (`None` when no entry shares a token): an entry the prompt
    /// starts with whole is taken out (the request extends that
    /// conversation and [`PrefixCache::insert`]s it back longer); an entry
    /// the prompt shares only a beginning of (another conversation with
    /// the same system prompt, say) stays, marked used, and the request
    /// gets a copy ([`PromptCacheState`]'s `Clone` shares the arrays), so
    /// one conversation never costs another its cache.
    pub fn checkout(&mut self, token_ids: &[u32]) -> Option<(PromptCacheState, usize)> {
        let (i, len) = self.best(token_ids)?;
        let whole = self.entries[i].state.token_ids.as_ref().map(Vec::len) == Some(len);
        if whole {
            return Some((self.entries.swap_remove(i).state, len));
        }
        self.clock += 1;
        let entry = &mut self.entries[i];
        entry.last_used = self.clock;
        Some((entry.state.clone(), len))
    }

    /// Stores `state` as the most recently used entry, replacing one with
    /// the same token ids, then evicts the least recently used until both
    /// bounds hold. A state without a cache, or larger than the byte bound
    /// on its own, is not stored.
    pub fn insert(&mut self, state: PromptCacheState) {
        let (Some(ids), Some(_)) = (&state.token_ids, &state.cache) else {
            return;
        };
        let bytes = state.nbytes();
        if self.max_bytes.is_some_and(|max| bytes > max) {
            return;
        }
        self.entries
            .retain(|e| e.state.token_ids.as_deref() != Some(ids.as_slice()));
        self.clock += 1;
        self.entries.push(Entry {
            state,
            bytes,
            last_used: self.clock,
        });
        while self.entries.len() > self.max_entries
            || self.max_bytes.is_some_and(|max| self.nbytes() > max)
        {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
