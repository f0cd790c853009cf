//! The batched key/value cache of continuous batching (Python:
//! `BatchKVCache` of `mlx_vlm/models/cache.py`).
//!
//! Rows are left-padded: every row's last token sits in the same column,
//! `left_padding[b]` columns of zeros before row `b`'s first token, and
//! [`BatchKvCache::make_mask`] hides them.
//!
//! The buffers grow in steps of 256 columns and a step's keys are written
//! in place (`index_put`, a `slice_update` MLX does in place once the old
//! buffer has no other holder), as Python's `update_and_fetch` does, so a
//! decode step does not copy the cache.
//!
//! Divergences from Python:
//! - Python's `offset` is an array; here [`Cache::offset`] is the column
//!   count (Python's `_idx`, what Python's `make_mask` and `size` use) and
//!   the per-row counts are [`BatchKvCache::offsets`].
//! - No `prepare`/`finalize` (right padding) or `trim`: prompts are
//!   prefilled per request and join through [`BatchKvCache::merge`].

use mlx_rs::{Array, Index, idx, ops};

use super::cache::{Cache, KvCache, Mask, buffers, create_causal_mask, zeros_like_heads};
use crate::{Error, Result};

/// One decoder layer's cache for a batch of rows (Python: `BatchKVCache`).
/// Cloning shares the arrays (and a clone kept across an update makes
/// that update copy the buffer instead of writing it in place).
#[derive(Debug, Default, Clone)]
pub struct BatchKvCache {
    /// `[batch, kv_heads, capacity, head_dim]`, left-padded, the first
    /// `idx` columns filled; `None` when empty.
    keys: Option<Array>,
    values: Option<Array>,
    /// Padding columns before each row's first token.
    left_padding: Vec<i32>,
    /// Columns filled (Python: `_idx`).
    idx: i32,
}

/// Columns a buffer grows by (Python: `BatchKVCache.step`).
const STEP: i32 = 256;

/// `[b, h, len, d]` of a cache operand.
fn dims(a: &Array, what: &str) -> Result<[i32; 4]> {
    match a.shape() {
        &[b, h, l, d] => Ok([b, h, l, d]),
        shape => Err(Error::InvalidArgument(format!(
            "BatchKvCache: {what} must be [batch, kv_heads, seq, head_dim], got shape {shape:?}"
        ))),
    }
}

/// Pads `a` `[b, h, l, d]` with `left` and `right` zero columns.
pub(super) fn pad_columns(a: &Array, left: i32, right: i32) -> Result<Array> {
    if left == 0 && right == 0 {
        return Ok(a.clone());
    }
    let widths = [(0, 0), (0, 0), (left, right), (0, 0)];
    Ok(ops::pad(a, widths, ops::PadOptions::default())?)
}

impl BatchKvCache {
    /// One row per `(keys, values)` pair `[1, kv_heads, len, head_dim]`,
    /// left-padded to the longest (Python: `BatchKVCache.merge` of
    /// `KVCache`s).
    pub fn merge(rows: &[(Array, Array)]) -> Result<Self> {
        let mut lengths = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let [b, _, l, _] = dims(k, "keys")?;
            let [bv, _, lv, _] = dims(v, "values")?;
            if b != 1 || bv != 1 || l != lv {
                return Err(Error::InvalidArgument(format!(
                    "BatchKvCache::merge: each row must be one sequence with as many keys as \
                     values, got keys {:?} and values {:?}",
                    k.shape(),
                    v.shape()
                )));
            }
            lengths.push(l);
        }
        let max_length = lengths.iter().copied().max().unwrap_or(0);
        let left_padding: Vec<i32> = lengths.iter().map(|l| max_length - l).collect();
        if max_length == 0 {
            return Ok(Self {
                keys: None,
                values: None,
                left_padding,
                idx: 0,
            });
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for ((k, v), &pad) in rows.iter().zip(&left_padding) {
            keys.push(pad_columns(k, pad, 0)?);
            values.push(pad_columns(v, pad, 0)?);
        }
        Ok(Self {
            keys: Some(ops::concatenate(&keys, 0)?),
            values: Some(ops::concatenate(&values, 0)?),
            left_padding,
            idx: max_length,
        })
    }

    /// Rows in the batch (Python: `batch_size`).
    pub fn batch_size(&self) -> usize {
        self.left_padding.len()
    }

    /// Padding columns before each row's first token (Python:
    /// `left_padding`).
    pub fn left_padding(&self) -> &[i32] {
        &self.left_padding
    }

    /// Tokens each row holds (Python: `offset`, `_idx - left_padding`).
    pub fn offsets(&self) -> Vec<i32> {
        self.left_padding.iter().map(|p| self.idx - p).collect()
    }

    /// Keeps only the rows `keep` (indices into the batch, in the new
    /// order) and drops the padding columns every kept row has (Python:
    /// `filter`).
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        let rows = kept_rows("BatchKvCache", keep, self.batch_size())?;
        self.left_padding = keep.iter().map(|&i| self.left_padding[i]).collect();
        let min_pad = self.left_padding.iter().copied().min().unwrap_or(0);
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            let (k, v) = (
                select_rows(k, &rows, min_pad, self.idx)?,
                select_rows(v, &rows, min_pad, self.idx)?,
            );
            self.keys = Some(k);
            self.values = Some(v);
        }
        if min_pad > 0 {
            self.idx -= min_pad;
            for p in &mut self.left_padding {
                *p -= min_pad;
            }
        }
        if keep.is_empty() {
            *self = Self::default();
        }
        Ok(())
    }

    /// Row `row`'s tokens as a cache of its own, its padding dropped
    /// (Python: `BatchKVCache.extract`): what a finished request keeps for
    /// its next turn.
    pub fn extract(&self, row: usize) -> Result<KvCache> {
        self.extract_trimmed(row, 0)
    }

    /// [`BatchKvCache::extract`] without the row's last `trim` tokens
    /// (say, the one a pipelined step ran on after the row ended).
    pub fn extract_trimmed(&self, row: usize, trim: i32) -> Result<KvCache> {
        let (k, v) = self.row_kv(row, trim)?;
        match (k, v) {
            (Some(k), Some(v)) => KvCache::from_kv(k, v),
            _ => Ok(KvCache::new()),
        }
    }

    /// Row `row`'s keys and values without their last `trim` tokens, in
    /// buffers of their own; `None` for an empty cache.
    pub(super) fn row_kv(&self, row: usize, trim: i32) -> Result<(Option<Array>, Option<Array>)> {
        let Some(&pad) = self.left_padding.get(row) else {
            return Err(Error::InvalidArgument(format!(
                "BatchKvCache::extract: row {row} is out of range for a batch of {}",
                self.batch_size()
            )));
        };
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Ok((None, None));
        };
        let end = self.idx - trim.clamp(0, self.idx - pad);
        let r = row as i32;
        let rows = idx![r..r + 1, .., pad..end, ..];
        // A buffer of its own (Python: `mx.contiguous`): a slice shares the
        // batch's buffer, and the longest row's slice is contiguous, which
        // `contiguous` would share too, so a kept conversation would hold
        // every row's keys. `x * 1` is exact (signed zeros included) and
        // always writes a new buffer, the input being shared.
        let own = |a: &Array| -> Result<Array> { Ok(ops::multiply(&a.index(rows)?, 1.0f32)?) };
        Ok((Some(own(k)?), Some(own(v)?)))
    }

    /// Appends the rows of `other`, right-aligning both so every row's
    /// last token shares the last column (Python: `extend`).
    pub fn extend(&mut self, other: BatchKvCache) -> Result<()> {
        if other.batch_size() == 0 {
            return Ok(());
        }
        if self.batch_size() == 0 {
            *self = other;
            return Ok(());
        }
        let max_idx = self.idx.max(other.idx);
        let parts = |c: &BatchKvCache| -> Result<Option<(Array, Array, i32)>> {
            match (&c.keys, &c.values) {
                (Some(k), Some(v)) => {
                    let left = max_idx - c.idx;
                    let filled = |a: &Array| a.index(idx![.., .., ..c.idx, ..]);
                    Ok(Some((
                        pad_columns(&filled(k)?, left, 0)?,
                        pad_columns(&filled(v)?, left, 0)?,
                        left,
                    )))
                }
                _ => Ok(None),
            }
        };
        let (Some((k1, v1, l1)), Some((k2, v2, l2))) = (parts(self)?, parts(&other)?) else {
            return Err(Error::InvalidArgument(
                "BatchKvCache::extend: both caches must hold keys (prefill before joining)".into(),
            ));
        };
        self.keys = Some(ops::concatenate(&[k1, k2], 0)?);
        self.values = Some(ops::concatenate(&[v1, v2], 0)?);
        let mut left_padding: Vec<i32> = self.left_padding.iter().map(|p| p + l1).collect();
        left_padding.extend(other.left_padding.iter().map(|p| p + l2));
        self.left_padding = left_padding;
        self.idx = max_idx;
        Ok(())
    }
}

impl Cache for BatchKvCache {
    fn boxed_clone(&self) -> Box<dyn Cache> {
        Box::new(self.clone())
    }

    /// Columns filled (Python: `_idx`); the per-row counts are
    /// [`BatchKvCache::offsets`].
    fn offset(&self) -> i32 {
        self.idx
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let [b, _, l, _] = dims(keys, "keys")?;
        dims(values, "values")?;
        if usize::try_from(b).ok() != Some(self.batch_size()) {
            return Err(Error::InvalidArgument(format!(
                "BatchKvCache: {b} rows of keys for a batch of {}",
                self.batch_size()
            )));
        }
        let prev = self.idx;
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.keys.is_none() || prev + l > capacity {
            // Python: a new step of 256 columns (more for a longer update),
            // the unused tail dropped first.
            let n_steps = (STEP + l - 1) / STEP;
            let grow = |old: Option<&Array>, new: &Array| -> Result<Array> {
                let fresh = zeros_like_heads(new, n_steps * STEP)?;
                Ok(match old {
                    Some(old) => {
                        let old = old.index(idx![.., .., ..prev, ..])?;
                        ops::concatenate(&[old, fresh], 2)?
                    }
                    None => fresh,
                })
            };
            self.keys = Some(grow(self.keys.as_ref(), keys)?);
            self.values = Some(grow(self.values.as_ref(), values)?);
        }
        self.idx += l;
        let window: &[Index] = idx![.., .., prev..self.idx, ..];
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            unreachable!("the buffers were made above when missing");
        };
        k.index_put(window, keys)?;
        v.index_put(window, values)?;
        let filled: &[Index] = idx![.., .., ..self.idx, ..];
        Ok((k.index(filled)?, v.index(filled)?))
    }

    /// The filled columns of the buffers (Python: `state`'s keys and
    /// values, cut to `_idx`).
    fn state(&self) -> Vec<Array> {
        let filled: &[Index] = idx![.., .., ..self.idx, ..];
        let keys = self.keys.as_ref().and_then(|k| k.index(filled).ok());
        let values = self.values.as_ref().and_then(|v| v.index(filled).ok());
        buffers(keys.as_ref(), values.as_ref())
    }

    fn row_offsets(&self) -> Option<Vec<i32>> {
        Some(self.offsets())
    }

    /// Python: `create_causal_mask(N, offset=_idx,
    /// left_padding=left_padding)`: `[batch, 1, n, idx + n]`, false on
    /// each row's padding.
    fn make_mask(&self, n: i32, window_size: Option<i32>, _return_array: bool) -> Result<Mask> {
        left_padded_mask(n, self.idx, window_size, &self.left_padding)
    }
}

/// `keep` (row indices of a batch of `batch_size` rows) as an index array;
/// fails on an index out of range. `who` names the cache in the error.
pub(super) fn kept_rows(who: &str, keep: &[usize], batch_size: usize) -> Result<Array> {
    if let Some(&bad) = keep.iter().find(|&&i| i >= batch_size) {
        return Err(Error::InvalidArgument(format!(
            "{who}::filter: row {bad} is out of range for a batch of {batch_size}"
        )));
    }
    let rows: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
    Ok(Array::from_slice(&rows, &[rows.len() as i32])?)
}

/// The rows `rows` of a left-padded buffer `[batch, heads, idx, d]`
/// without its first `drop` columns (padding every kept row has).
pub(super) fn select_rows(a: &Array, rows: &Array, drop: i32, idx: i32) -> Result<Array> {
    let a = ops::take(a, rows, 0)?;
    Ok(if drop > 0 {
        let cols = ops::arange(drop, idx, 1, None)?;
        ops::take(&a, &cols, 2)?
    } else {
        a
    })
}

/// Python: `create_causal_mask(N, offset=_idx, left_padding=left_padding)`
/// of a left-padded batch: `[batch, 1, n, idx + n]`, false on each row's
/// padding.
pub(super) fn left_padded_mask(
    n: i32,
    idx: i32,
    window_size: Option<i32>,
    left_padding: &[i32],
) -> Result<Mask> {
    let left_padding = Array::from_slice(left_padding, &[left_padding.len() as i32])?;
    Ok(Mask::Array(create_causal_mask(
        n,
        idx,
        window_size,
        None,
        Some(&left_padding),
    )?))
}
