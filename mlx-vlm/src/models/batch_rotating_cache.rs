//! The batched sliding-window key/value cache of continuous batching
//! (Python: `BatchRotatingKVCache` of `mlx_vlm/models/cache.py`).
//!
//! Rows are left-padded as in [`super::BatchKvCache`]; once the buffer
//! holds `max_size` columns it becomes a ring written at `idx`, and a
//! row's `left_padding` goes negative as its padding is overwritten.
//!
//! Divergences from Python:
//! - Only decode steps of one token update it (Python's concat path for
//!   several tokens, and `prepare`/`finalize` for right padding, are not
//!   ported): prompts are prefilled per request and join through
//!   [`BatchRotatingKvCache::merge`].
//! - [`Cache::offset`] is Python's `_offset` (columns written); the
//!   per-row counts (Python's array `offset`) are
//!   [`BatchRotatingKvCache::offsets`].

use mlx_rs::{Array, idx, ops};

use super::batch_cache::pad_columns;
use super::cache::{Cache, Mask, RotatingKvCache};
use crate::{Error, Result};

/// One sliding-window layer's cache for a batch of rows (Python:
/// `BatchRotatingKVCache`). Cloning shares the arrays.
#[derive(Debug, Clone)]
pub struct BatchRotatingKvCache {
    /// `[batch, kv_heads, columns, head_dim]`; `None` when empty.
    keys: Option<Array>,
    values: Option<Array>,
    /// Padding columns before each row's first token; negative once
    /// overwritten by the ring.
    left_padding: Vec<i32>,
    /// Tokens each row has seen (Python: `offset`).
    offsets: Vec<i32>,
    /// The window (Python: `max_size`).
    max_size: i32,
    /// Next column to write (Python: `_idx`).
    idx: i32,
    /// Columns written in all (Python: `_offset`).
    written: i32,
    /// Whether the ring has wrapped (Python: `rotated`).
    rotated: bool,
}

/// `[b, h, len, d]` of a cache operand.
fn dims(a: &Array, what: &str) -> Result<[i32; 4]> {
    match a.shape() {
        &[b, h, l, d] => Ok([b, h, l, d]),
        shape => Err(Error::InvalidArgument(format!(
            "BatchRotatingKvCache: {what} must be [batch, kv_heads, seq, head_dim], got shape \
             {shape:?}"
        ))),
    }
}

impl BatchRotatingKvCache {
    /// Growth step in columns (Python: `BatchRotatingKVCache.step`).
    pub const STEP: i32 = 256;

    /// One row per `(keys, values, offset)`: a [`super::cache::RotatingKvCache`]'s
    /// keys and values `[1, kv_heads, len, head_dim]` in temporal order and
    /// the tokens it has seen; the last `min(offset, max_size)` columns of
    /// each are kept, left-padded to the longest (Python: `merge`).
    pub fn merge(rows: &[(Array, Array, i32)], max_size: i32) -> Result<Self> {
        let mut lengths = Vec::with_capacity(rows.len());
        for (k, v, offset) in rows {
            let [b, _, l, _] = dims(k, "keys")?;
            let [bv, _, lv, _] = dims(v, "values")?;
            let length = (*offset).min(max_size);
            if b != 1 || bv != 1 || l != lv || l < length {
                return Err(Error::InvalidArgument(format!(
                    "BatchRotatingKvCache::merge: each row must be one sequence with as many \
                     keys as values and at least min(offset {offset}, window {max_size}) of \
                     them, got keys {:?} and values {:?}",
                    k.shape(),
                    v.shape()
                )));
            }
            lengths.push(length.max(0));
        }
        let max_length = lengths.iter().copied().max().unwrap_or(0);
        let left_padding: Vec<i32> = lengths.iter().map(|l| max_length - l).collect();
        let mut cache = Self {
            keys: None,
            values: None,
            offsets: left_padding.iter().map(|p| -p).collect(),
            left_padding,
            max_size,
            idx: 0,
            written: 0,
            rotated: false,
        };
        if max_length == 0 {
            return Ok(cache);
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for ((k, v, _), (&pad, &length)) in rows.iter().zip(cache.left_padding.iter().zip(&lengths))
        {
            let l = k.shape()[2];
            let last = idx![.., .., (l - length).., ..];
            keys.push(pad_columns(&k.index(last)?, pad, 0)?);
            values.push(pad_columns(&v.index(last)?, pad, 0)?);
        }
        cache.keys = Some(ops::concatenate(&keys, 0)?);
        cache.values = Some(ops::concatenate(&values, 0)?);
        cache.offsets = rows.iter().map(|(_, _, o)| *o).collect();
        cache.idx = max_length;
        cache.written = max_length;
        Ok(cache)
    }

    /// Rows in the batch (Python: `batch_size`).
    pub fn batch_size(&self) -> usize {
        self.left_padding.len()
    }

    /// The window (Python: `max_size`).
    pub fn max_size(&self) -> i32 {
        self.max_size
    }

    /// Padding columns before each row's first token, negative once the
    /// ring overwrote them (Python: `left_padding`).
    pub fn left_padding(&self) -> &[i32] {
        &self.left_padding
    }

    /// Tokens each row has seen (Python: `offset`).
    pub fn offsets(&self) -> Vec<i32> {
        self.offsets.clone()
    }

    /// Python: `_temporal_order`: unrolls a wrapped ring.
    fn temporal_order(&mut self) -> Result<()> {
        if self.rotated {
            if let (Some(k), Some(v)) = (&self.keys, &self.values) {
                let (k, v) = (ops::roll(k, -self.idx, 2)?, ops::roll(v, -self.idx, 2)?);
                self.idx = k.shape()[2];
                self.keys = Some(k);
                self.values = Some(v);
            }
            self.rotated = false;
        }
        Ok(())
    }

    /// Keeps only the rows `keep` (indices into the batch, in the new
    /// order) (Python: `filter`).
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        if let Some(&bad) = keep.iter().find(|&&i| i >= self.batch_size()) {
            return Err(Error::InvalidArgument(format!(
                "BatchRotatingKvCache::filter: row {bad} is out of range for a batch of {}",
                self.batch_size()
            )));
        }
        let rows: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
        let rows = Array::from_slice(&rows, &[rows.len() as i32])?;
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            let (k, v) = (ops::take(k, &rows, 0)?, ops::take(v, &rows, 0)?);
            self.keys = Some(k);
            self.values = Some(v);
        }
        self.left_padding = keep.iter().map(|&i| self.left_padding[i]).collect();
        self.offsets = keep.iter().map(|&i| self.offsets[i]).collect();
        Ok(())
    }

    /// Appends the rows of `other`, aligning both rings (Python: `extend`).
    pub fn extend(&mut self, mut other: BatchRotatingKvCache) -> Result<()> {
        if self.keys.is_none() && other.keys.is_none() {
            self.left_padding.extend(other.left_padding);
            self.offsets.extend(other.offsets);
            return Ok(());
        }
        let Some(first) = self.keys.as_ref().or(other.keys.as_ref()) else {
            return Ok(());
        };
        let [_, heads, _, dk] = dims(first, "keys")?;
        let dtype = first.dtype();
        if self.rotated != other.rotated || self.idx != other.idx {
            self.temporal_order()?;
            other.temporal_order()?;
        }
        let max_idx = self.idx.max(other.idx);
        let width = |c: &Self| c.keys.as_ref().map_or(0, |k| k.shape()[2]);
        let max_width = width(self).max(width(&other));
        let dv = self
            .values
            .as_ref()
            .or(other.values.as_ref())
            .map_or(dk, |v| v.shape()[3]);
        let pad = |c: &Self| -> Result<(Array, Array, Vec<i32>)> {
            let left = max_idx - c.idx;
            let rows = c.batch_size() as i32;
            let (mut k, mut v) = match (&c.keys, &c.values) {
                (Some(k), Some(v)) => (k.clone(), v.clone()),
                _ => (
                    ops::zeros(&[rows, heads, 0, dk], dtype)?,
                    ops::zeros(&[rows, heads, 0, dv], dtype)?,
                ),
            };
            let mut right = max_width - k.shape()[2] - left;
            if right < 0 {
                let end = k.shape()[2] + right;
                k = k.index(idx![.., .., ..end, ..])?;
                v = v.index(idx![.., .., ..end, ..])?;
                right = 0;
            }
            Ok((
                pad_columns(&k, left, right)?,
                pad_columns(&v, left, right)?,
                c.left_padding.iter().map(|p| p + left).collect(),
            ))
        };
        let (k1, v1, p1) = pad(self)?;
        let (k2, v2, p2) = pad(&other)?;
        self.keys = Some(ops::concatenate(&[k1, k2], 0)?);
        self.values = Some(ops::concatenate(&[v1, v2], 0)?);
        self.left_padding = p1.into_iter().chain(p2).collect();
        self.offsets.extend(other.offsets);
        self.idx = max_idx;
        self.written = self.written.max(other.written);
        Ok(())
    }

    /// Row `row`'s window in temporal order, its padding dropped, as a
    /// cache of its own (Python: `extract`): what a finished request keeps
    /// for its next turn.
    pub fn extract(&self, row: usize) -> Result<RotatingKvCache> {
        let (Some(&pad), Some(&offset)) = (self.left_padding.get(row), self.offsets.get(row))
        else {
            return Err(Error::InvalidArgument(format!(
                "BatchRotatingKvCache::extract: row {row} is out of range for a batch of {}",
                self.batch_size()
            )));
        };
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Err(Error::InvalidArgument(
                "BatchRotatingKvCache::extract: the cache is empty".into(),
            ));
        };
        let r = row as i32;
        let (mut k, mut v) = (k.index(idx![r..r + 1])?, v.index(idx![r..r + 1])?);
        let mut end = self.idx;
        if self.rotated {
            k = ops::roll(&k, -self.idx, 2)?;
            v = ops::roll(&v, -self.idx, 2)?;
            end = self.max_size;
        }
        let cols = idx![.., .., pad.max(0)..end, ..];
        // Buffers of its own, as `BatchKvCache::extract` makes them: a slice
        // would keep the whole batch's keys alive.
        let own = |a: &Array| -> Result<Array> { Ok(ops::multiply(&a.index(cols)?, 1.0f32)?) };
        RotatingKvCache::from_window(self.max_size, own(&k)?, own(&v)?, offset)
    }
}

impl Cache for BatchRotatingKvCache {
    fn boxed_clone(&self) -> Box<dyn Cache> {
        Box::new(self.clone())
    }

    /// Columns written (Python: `_offset`); the per-row counts are
    /// [`BatchRotatingKvCache::offsets`].
    fn offset(&self) -> i32 {
        self.written
    }

    /// Python: `_update_in_place` (one token per row).
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let [b, heads, s, dk] = dims(keys, "keys")?;
        let [_, _, _, dv] = dims(values, "values")?;
        if s != 1 || usize::try_from(b).ok() != Some(self.batch_size()) {
            return Err(Error::InvalidArgument(format!(
                "BatchRotatingKvCache: takes one token for each of its {} rows (decode \
                 steps), got keys {:?}",
                self.batch_size(),
                keys.shape()
            )));
        }
        let prev = self.written;
        let width = self.keys.as_ref().map(|k| k.shape()[2]);
        if width.is_none_or(|w| prev >= w && w < self.max_size) {
            let new_size = Self::STEP.min(self.max_size - prev);
            let new_k = ops::zeros(&[b, heads, new_size, dk], keys.dtype())?;
            let new_v = ops::zeros(&[b, heads, new_size, dv], values.dtype())?;
            match (&self.keys, &self.values) {
                (Some(k), Some(v)) => {
                    let (k, v) = (
                        ops::concatenate(&[k, &new_k], 2)?,
                        ops::concatenate(&[v, &new_v], 2)?,
                    );
                    self.keys = Some(k);
                    self.values = Some(v);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
            self.idx = prev;
        }
        let (Some(k), Some(v)) = (self.keys.take(), self.values.take()) else {
            return Err(Error::InvalidArgument(
                "BatchRotatingKvCache: keys without values (a corrupted cache)".into(),
            ));
        };
        let trim_size = k.shape()[2] - self.max_size;
        let (k, v) = if trim_size > 0 {
            self.idx = self.max_size;
            for p in &mut self.left_padding {
                *p -= trim_size;
            }
            (
                k.index(idx![.., .., trim_size.., ..])?,
                v.index(idx![.., .., trim_size.., ..])?,
            )
        } else {
            (k, v)
        };
        if self.idx == self.max_size {
            self.rotated = true;
            self.idx = 0;
        }
        if self.rotated {
            for p in &mut self.left_padding {
                *p -= s;
            }
        }
        let at = self.idx;
        // One slice update (Python's `keys[..., idx:idx + S, :] = keys`):
        // a single operation, where slicing around the column and
        // concatenating took three.
        let write = |buf: &Array, new: &Array| -> Result<Array> {
            let [rows, heads, _, d] = dims(buf, "the buffer")?;
            Ok(ops::slice_update(
                buf,
                new,
                &[0, 0, at, 0],
                &[rows, heads, at + s, d],
                None,
            )?)
        };
        let (k, v) = (write(&k, keys)?, write(&v, values)?);
        self.written += s;
        for o in &mut self.offsets {
            *o += s;
        }
        self.idx += s;
        self.keys = Some(k.clone());
        self.values = Some(v.clone());
        if self.written < self.max_size {
            let end = self.written;
            return Ok((
                k.index(idx![.., .., ..end, ..])?,
                v.index(idx![.., .., ..end, ..])?,
            ));
        }
        Ok((k, v))
    }

    /// Python's `state` keys and values: the buffers, sliced to the
    /// columns written while the ring is not full.
    fn state(&self) -> Vec<Array> {
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Vec::new();
        };
        if self.written < k.shape()[2] {
            let cols = idx![.., .., ..self.written, ..];
            // Slicing a 4-D buffer along its third axis cannot fail.
            if let (Ok(k), Ok(v)) = (k.index(cols), v.index(cols)) {
                return vec![k, v];
            }
        }
        vec![k.clone(), v.clone()]
    }

    fn row_offsets(&self) -> Option<Vec<i32>> {
        Some(self.offsets())
    }

    /// Python: `BatchRotatingKVCache.make_mask` for a decode step of
    /// `n` tokens: `[batch, 1, n, columns]`, false on each row's padding
    /// and outside the window, rolled to the ring's order.
    ///
    /// Python builds it from aranges with a dozen graph operations a step;
    /// every input is a host integer here, so the same booleans are worked
    /// out on the host and handed over as one array (no operation).
    fn make_mask(&self, n: i32, window_size: Option<i32>, _return_array: bool) -> Result<Mask> {
        let window_size = window_size.unwrap_or(self.max_size);
        // Python's `offset` (the query positions start there) and its key
        // positions `rinds = arange(offset + n)`.
        let offset = (self.max_size - 1).min(self.written);
        let columns = offset + n;
        // Only one-token steps are ported, Python's in-place case.
        let in_place = n == 1;
        let trim_size = self.idx - self.max_size + i32::from(!in_place);
        let rotated = in_place && (self.rotated || self.idx >= self.max_size);
        let shift = i32::from(rotated) + trim_size.max(0);
        // Python's `mx.roll(mask, at + 1)` when rotated: column `c` moves
        // to `(c + roll) mod columns`.
        let roll = match (rotated, self.idx >= self.max_size) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => self.idx + 1,
        };
        let (rows, width) = (self.batch_size(), usize::try_from(columns).unwrap_or(0));
        let mut mask = vec![false; rows * usize::try_from(n).unwrap_or(0) * width];
        let mut at = 0;
        for pad in &self.left_padding {
            let start = pad - shift;
            for query in offset..offset + n {
                for key in 0..columns {
                    let keep = query >= key && query < key + window_size && key >= start;
                    // `rem_euclid` of a positive `columns` is in 0..columns.
                    mask[at + (key + roll).rem_euclid(columns) as usize] = keep;
                }
                at += width;
            }
        }
        let shape = [rows as i32, 1, n, columns];
        Ok(Mask::Array(Array::from_slice(&mask, &shape)?))
    }
}
