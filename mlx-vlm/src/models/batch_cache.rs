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
    /// The rows' padding and the columns filled.
    columns: Columns,
}

/// The columns of a left-padded batch (Python: the `left_padding` and
/// `_idx` that `BatchKVCache` and `BatchQuantizedKVCache` each keep): every
/// row's last token in the last filled column, `left_padding[b]` columns
/// of padding before row `b`'s first.
#[derive(Debug, Default, Clone)]
pub(super) struct Columns {
    /// Padding columns before each row's first token.
    left_padding: Vec<i32>,
    /// Columns filled (Python: `_idx`).
    idx: i32,
}

/// What [`Columns::keep`] kept: the rows, and the padding columns they
/// all had, dropped.
pub(super) struct Kept {
    rows: Array,
    drop: i32,
    idx: i32,
}

impl Kept {
    /// A buffer `[batch, heads, capacity, d]` cut to the kept rows without
    /// the dropped columns.
    pub(super) fn apply(&self, a: &Array) -> Result<Array> {
        let a = ops::take(a, &self.rows, 0)?;
        Ok(if self.drop > 0 {
            let cols = ops::arange(self.drop, self.idx, 1, None)?;
            ops::take(&a, &cols, 2)?
        } else {
            a
        })
    }
}

impl Columns {
    /// Rows of `lengths` tokens, right-aligned on the longest.
    pub(super) fn aligned(lengths: &[i32]) -> Self {
        let idx = lengths.iter().copied().max().unwrap_or(0);
        Columns {
            left_padding: lengths.iter().map(|l| idx - l).collect(),
            idx,
        }
    }

    /// Padding columns before each row's first token.
    pub(super) fn left_padding(&self) -> &[i32] {
        &self.left_padding
    }

    /// Columns filled.
    pub(super) fn idx(&self) -> i32 {
        self.idx
    }

    /// Rows.
    pub(super) fn batch_size(&self) -> usize {
        self.left_padding.len()
    }

    /// Tokens each row holds (Python: `offset`, `_idx - left_padding`).
    pub(super) fn offsets(&self) -> Vec<i32> {
        self.left_padding.iter().map(|p| self.idx - p).collect()
    }

    /// `n` more columns filled.
    pub(super) fn advance(&mut self, n: i32) {
        self.idx += n;
    }

    /// Keeps the rows `keep` (in the new order) and drops the padding
    /// columns they all have (Python: `filter`); `who` names the cache in
    /// the error for a row out of range.
    pub(super) fn keep(&mut self, who: &str, keep: &[usize]) -> Result<Kept> {
        if let Some(&bad) = keep.iter().find(|&&i| i >= self.batch_size()) {
            return Err(Error::InvalidArgument(format!(
                "{who}::filter: row {bad} is out of range for a batch of {}",
                self.batch_size()
            )));
        }
        let rows: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
        let rows = Array::from_slice(&rows, &[rows.len() as i32])?;
        self.left_padding = keep.iter().map(|&i| self.left_padding[i]).collect();
        let drop = self.left_padding.iter().copied().min().unwrap_or(0);
        let kept = Kept {
            rows,
            drop,
            idx: self.idx,
        };
        self.idx -= drop;
        for p in &mut self.left_padding {
            *p -= drop;
        }
        if keep.is_empty() {
            self.idx = 0;
        }
        Ok(kept)
    }

    /// Row `row`'s columns without its last `trim` tokens, `start..end`;
    /// `who` names the cache in the error for a row out of range.
    pub(super) fn row_span(&self, who: &str, row: usize, trim: i32) -> Result<(i32, i32)> {
        let Some(&pad) = self.left_padding.get(row) else {
            return Err(Error::InvalidArgument(format!(
                "{who}::extract: row {row} is out of range for a batch of {}",
                self.batch_size()
            )));
        };
        Ok((pad, self.idx - trim.clamp(0, self.idx - pad)))
    }

    /// Appends `other`'s rows, right-aligning both on the longer; returns
    /// the padding columns to put before this batch's buffers and before
    /// `other`'s (Python: `extend`).
    pub(super) fn extend(&mut self, other: &Columns) -> (i32, i32) {
        let idx = self.idx.max(other.idx);
        let (left, right) = (idx - self.idx, idx - other.idx);
        let mut left_padding: Vec<i32> = self.left_padding.iter().map(|p| p + left).collect();
        left_padding.extend(other.left_padding.iter().map(|p| p + right));
        *self = Columns { left_padding, idx };
        (left, right)
    }

    /// Python: `create_causal_mask(N, offset=_idx, left_padding=left_padding)`:
    /// `[batch, 1, n, idx + n]`, false on each row's padding.
    pub(super) fn mask(&self, n: i32, window_size: Option<i32>) -> Result<Mask> {
        let pads = &self.left_padding;
        let left_padding = Array::from_slice(pads, &[pads.len() as i32])?;
        Ok(Mask::Array(create_causal_mask(
            n,
            self.idx,
            window_size,
            None,
            Some(&left_padding),
        )?))
    }
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
        let columns = Columns::aligned(&lengths);
        if columns.idx() == 0 {
            return Ok(Self {
                keys: None,
                values: None,
                columns,
            });
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for ((k, v), &pad) in rows.iter().zip(columns.left_padding()) {
            keys.push(pad_columns(k, pad, 0)?);
            values.push(pad_columns(v, pad, 0)?);
        }
        Ok(Self {
            keys: Some(ops::concatenate(&keys, 0)?),
            values: Some(ops::concatenate(&values, 0)?),
            columns,
        })
    }

    /// Rows in the batch (Python: `batch_size`).
    pub fn batch_size(&self) -> usize {
        self.columns.batch_size()
    }

    /// Padding columns before each row's first token (Python:
    /// `left_padding`).
    pub fn left_padding(&self) -> &[i32] {
        self.columns.left_padding()
    }

    /// Tokens each row holds (Python: `offset`, `_idx - left_padding`).
    pub fn offsets(&self) -> Vec<i32> {
        self.columns.offsets()
    }

    /// Keeps only the rows `keep` (indices into the batch, in the new
    /// order) and drops the padding columns every kept row has (Python:
    /// `filter`).
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        let kept = self.columns.keep("BatchKvCache", keep)?;
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            let (k, v) = (kept.apply(k)?, kept.apply(v)?);
            self.keys = Some(k);
            self.values = Some(v);
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
        let (pad, end) = self.columns.row_span("BatchKvCache", row, trim)?;
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Ok((None, None));
        };
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
        let (Some(k1), Some(v1), Some(k2), Some(v2)) =
            (&self.keys, &self.values, &other.keys, &other.values)
        else {
            return Err(Error::InvalidArgument(
                "BatchKvCache::extend: both caches must hold keys (prefill before joining)".into(),
            ));
        };
        let mut columns = self.columns.clone();
        let (left, right) = columns.extend(&other.columns);
        // The filled columns of each, padded on the left to the longer.
        let aligned =
            |a: &Array, idx: i32, pad: i32| pad_columns(&a.index(idx![.., .., ..idx, ..])?, pad, 0);
        let (i1, i2) = (self.columns.idx(), other.columns.idx());
        let keys = ops::concatenate(&[aligned(k1, i1, left)?, aligned(k2, i2, right)?], 0)?;
        let values = ops::concatenate(&[aligned(v1, i1, left)?, aligned(v2, i2, right)?], 0)?;
        *self = Self {
            keys: Some(keys),
            values: Some(values),
            columns,
        };
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
        self.columns.idx()
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
        let prev = self.columns.idx();
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
        self.columns.advance(l);
        let filled_to = self.columns.idx();
        let window: &[Index] = idx![.., .., prev..filled_to, ..];
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            unreachable!("the buffers were made above when missing");
        };
        k.index_put(window, keys)?;
        v.index_put(window, values)?;
        let filled: &[Index] = idx![.., .., ..filled_to, ..];
        Ok((k.index(filled)?, v.index(filled)?))
    }

    /// The filled columns of the buffers (Python: `state`'s keys and
    /// values, cut to `_idx`).
    fn state(&self) -> Vec<Array> {
        let filled: &[Index] = idx![.., .., ..self.columns.idx(), ..];
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
        self.columns.mask(n, window_size)
    }
}
