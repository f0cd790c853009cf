//! The batched quantized key/value cache of continuous batching (Python:
//! `BatchQuantizedKVCache` of `mlx_vlm/models/cache.py`): a
//! [`super::BatchKvCache`] whose keys and values are held as `mx.quantize`
//! gives them (packed data, scales and biases).
//!
//! Rows are left-padded as in [`super::BatchKvCache`]; the padding columns
//! are zeros in all three parts (they dequantize to zeros) and the mask
//! hides them.
//!
//! Divergences from Python:
//! - Rows join already quantized, from a request's [`QuantizedKvCache`]
//!   ([`BatchQuantizedKvCache::merge`]): a request quantizes its caches
//!   when its own `quantized_kv_start` says so, exactly as its single run
//!   does, and only then joins a quantized batch. Python's
//!   `BatchGenerator` instead builds quantized batch caches for every
//!   layer (but the last of a stack deeper than two) from the first
//!   prompt token on, ignoring `quantized_kv_start`, so its batched
//!   answers differ from its own single runs.
//! - No `prepare`/`finalize` (right padding), no APC dequantization.
//!
//! The buffers grow in steps of 256 columns written in place, as
//! [`super::BatchKvCache`]'s and Python's.

use mlx_rs::{Array, Index, idx, ops};

use super::batch_cache::{Columns, pad_columns};
use super::cache::{
    Cache, CachedKv, Mask, QuantizedArrays, QuantizedKvCache, plain_read_of_quantized_cache,
};
use crate::{Error, Result};

/// Columns a buffer grows by (Python: `BatchQuantizedKVCache.step`).
const STEP: i32 = 256;

/// One decoder layer's quantized cache for a batch of rows (Python:
/// `BatchQuantizedKVCache`). Cloning shares the arrays.
#[derive(Debug, Clone)]
pub struct BatchQuantizedKvCache {
    /// `[batch, kv_heads, capacity, *]` each part, left-padded, the first
    /// `idx` columns filled; `None` when empty.
    keys: Option<QuantizedArrays>,
    values: Option<QuantizedArrays>,
    /// The rows' padding and the columns filled.
    columns: Columns,
    group_size: i32,
    bits: i32,
}

/// The column count of a part `[1, heads, len, *]` of a row to merge.
fn row_len(parts: &QuantizedArrays, what: &str) -> Result<i32> {
    let mut len = None;
    for part in [&parts.data, &parts.scales, &parts.biases] {
        match (part.shape(), len) {
            (&[1, _, l, _], None) => len = Some(l),
            (&[1, _, l, _], Some(n)) if l == n => {}
            (shape, _) => {
                return Err(Error::InvalidArgument(format!(
                    "BatchQuantizedKvCache::merge: each row's quantized {what} must be one \
                     sequence [1, kv_heads, len, *] in all three parts, got a part of shape \
                     {shape:?}"
                )));
            }
        }
    }
    Ok(len.unwrap_or(0))
}

impl BatchQuantizedKvCache {
    /// One row per request's quantized `(keys, values)` (the state of its
    /// [`QuantizedKvCache`], `[1, kv_heads, len, *]`), left-padded to the
    /// longest; all quantized with `group_size` and `bits`.
    pub fn merge(
        rows: &[(QuantizedArrays, QuantizedArrays)],
        group_size: i32,
        bits: i32,
    ) -> Result<Self> {
        let mut lengths = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let len = row_len(k, "keys")?;
            if row_len(v, "values")? != len {
                return Err(Error::InvalidArgument(format!(
                    "BatchQuantizedKvCache::merge: a row holds {len} keys but values of shape \
                     {:?}; give as many of each",
                    v.data.shape()
                )));
            }
            lengths.push(len);
        }
        let mut cache = Self {
            keys: None,
            values: None,
            columns: Columns::aligned(&lengths),
            group_size,
            bits,
        };
        if cache.columns.idx() == 0 {
            return Ok(cache);
        }
        let stack = |side: fn(&(QuantizedArrays, QuantizedArrays)) -> &QuantizedArrays| {
            let mut padded = Vec::with_capacity(rows.len());
            for (row, &pad) in rows.iter().zip(cache.columns.left_padding()) {
                padded.push(side(row).map(|a| pad_columns(a, pad, 0))?);
            }
            concatenate_rows(&padded)
        };
        cache.keys = Some(stack(|r| &r.0)?);
        cache.values = Some(stack(|r| &r.1)?);
        Ok(cache)
    }

    /// Elements per quantization group.
    pub fn group_size(&self) -> i32 {
        self.group_size
    }

    /// Bits per element.
    pub fn bits(&self) -> i32 {
        self.bits
    }

    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        self.columns.batch_size()
    }

    /// Padding columns before each row's first token (Python:
    /// `left_padding`).
    pub fn left_padding(&self) -> &[i32] {
        self.columns.left_padding()
    }

    /// Tokens each row holds (Python: `offset`).
    pub fn offsets(&self) -> Vec<i32> {
        self.columns.offsets()
    }

    /// Keeps only the rows `keep` (in the new order) and drops the padding
    /// columns every kept row has (Python: `filter`).
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        let kept = self.columns.keep("BatchQuantizedKvCache", keep)?;
        let select = |q: &QuantizedArrays| q.map(|a| kept.apply(a));
        if let (Some(k), Some(v)) = (&self.keys, &self.values) {
            let (k, v) = (select(k)?, select(v)?);
            self.keys = Some(k);
            self.values = Some(v);
        }
        if keep.is_empty() {
            self.keys = None;
            self.values = None;
        }
        Ok(())
    }

    /// Row `row`'s tokens as a [`QuantizedKvCache`] of its own, its padding
    /// dropped (Python: `extract`).
    pub fn extract(&self, row: usize) -> Result<QuantizedKvCache> {
        self.extract_trimmed(row, 0)
    }

    /// [`BatchQuantizedKvCache::extract`] without the row's last `trim`
    /// tokens (say, the one a pipelined step ran on after the row ended).
    pub fn extract_trimmed(&self, row: usize, trim: i32) -> Result<QuantizedKvCache> {
        let (pad, end) = self.columns.row_span("BatchQuantizedKvCache", row, trim)?;
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Ok(QuantizedKvCache::new(self.group_size, self.bits));
        };
        let r = row as i32;
        let cut: &[Index] = idx![r..r + 1, .., pad..end, ..];
        // A buffer of its own (Python: `mx.contiguous`), for the reason
        // `BatchKvCache::extract` gives: times a one of the part's own
        // dtype (the packed data is `uint32`), which is exact.
        let own = |a: &Array| -> Result<Array> {
            let one = ops::ones(&[], a.dtype())?;
            Ok(ops::multiply(&a.index(cut)?, &one)?)
        };
        QuantizedKvCache::from_quantized(k.map(own)?, v.map(own)?, self.group_size, self.bits)
    }

    /// Appends the rows of `other` (quantized alike), right-aligning both
    /// so every row's last token shares the last column (Python:
    /// `extend`).
    pub fn extend(&mut self, other: BatchQuantizedKvCache) -> Result<()> {
        if (other.group_size, other.bits) != (self.group_size, self.bits) {
            return Err(Error::InvalidArgument(format!(
                "BatchQuantizedKvCache::extend: rows quantized with group size {} and {} bits \
                 cannot join a batch quantized with group size {} and {} bits",
                other.group_size, other.bits, self.group_size, self.bits
            )));
        }
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
                "BatchQuantizedKvCache::extend: both caches must hold keys (prefill before \
                 joining)"
                    .into(),
            ));
        };
        let mut columns = self.columns.clone();
        let (left, right) = columns.extend(&other.columns);
        // The filled columns of each, padded on the left to the longer.
        let aligned = |q: &QuantizedArrays, idx: i32, pad: i32| {
            q.map(|a| pad_columns(&a.index(idx![.., .., ..idx, ..])?, pad, 0))
        };
        let (i1, i2) = (self.columns.idx(), other.columns.idx());
        let keys = concatenate_rows(&[aligned(k1, i1, left)?, aligned(k2, i2, right)?])?;
        let values = concatenate_rows(&[aligned(v1, i1, left)?, aligned(v2, i2, right)?])?;
        self.keys = Some(keys);
        self.values = Some(values);
        self.columns = columns;
        Ok(())
    }
}

/// The parts of `rows` stacked along the batch axis.
fn concatenate_rows(rows: &[QuantizedArrays]) -> Result<QuantizedArrays> {
    concatenate(rows, 0)
}

/// Each part of `parts` concatenated along `axis`.
fn concatenate(parts: &[QuantizedArrays], axis: i32) -> Result<QuantizedArrays> {
    let join = |part: fn(&QuantizedArrays) -> &Array| -> Result<Array> {
        let arrays: Vec<&Array> = parts.iter().map(part).collect();
        Ok(ops::concatenate(&arrays, axis)?)
    };
    Ok(QuantizedArrays {
        data: join(|q| &q.data)?,
        scales: join(|q| &q.scales)?,
        biases: join(|q| &q.biases)?,
    })
}

impl Cache for BatchQuantizedKvCache {
    fn boxed_clone(&self) -> Box<dyn Cache> {
        Box::new(self.clone())
    }

    /// Columns filled (Python: `_idx`); the per-row counts are
    /// [`BatchQuantizedKvCache::offsets`].
    fn offset(&self) -> i32 {
        self.columns.idx()
    }

    fn update_and_fetch(&mut self, _keys: &Array, _values: &Array) -> Result<(Array, Array)> {
        Err(plain_read_of_quantized_cache(self.bits))
    }

    /// Python: `update_and_fetch`: quantizes the new keys and values and
    /// appends them.
    fn update_and_fetch_kv(&mut self, keys: &Array, values: &Array) -> Result<CachedKv> {
        let (rows, steps) = match keys.shape() {
            &[b, _, l, _] => (b, l),
            shape => {
                return Err(Error::InvalidArgument(format!(
                    "BatchQuantizedKvCache: keys must be [batch, kv_heads, seq, head_dim], got \
                     shape {shape:?}"
                )));
            }
        };
        if usize::try_from(rows).ok() != Some(self.batch_size()) || values.ndim() != 4 {
            return Err(Error::InvalidArgument(format!(
                "BatchQuantizedKvCache: keys of shape {:?} and values of shape {:?} for a batch \
                 of {} rows",
                keys.shape(),
                values.shape(),
                self.batch_size()
            )));
        }
        let new_keys = QuantizedArrays::quantize(keys, self.group_size, self.bits)?;
        let new_values = QuantizedArrays::quantize(values, self.group_size, self.bits)?;
        let prev = self.columns.idx();
        let capacity = self.keys.as_ref().map_or(0, |k| k.data.shape()[2]);
        if self.keys.is_none() || prev + steps > capacity {
            // Python: a new step of 256 columns (more for a longer update),
            // the unused tail dropped first.
            let columns = (STEP + steps - 1) / STEP * STEP;
            let grow = |old: Option<&QuantizedArrays>, like: &QuantizedArrays| {
                let fresh = like.map(|a| {
                    let s = a.shape();
                    Ok(ops::zeros(&[s[0], s[1], columns, s[3]], a.dtype())?)
                })?;
                match old {
                    Some(old) => {
                        let old = old.map(|a| Ok(a.index(idx![.., .., ..prev, ..])?))?;
                        concatenate(&[old, fresh], 2)
                    }
                    None => Ok(fresh),
                }
            };
            self.keys = Some(grow(self.keys.as_ref(), &new_keys)?);
            self.values = Some(grow(self.values.as_ref(), &new_values)?);
        }
        self.columns.advance(steps);
        let idx = self.columns.idx();
        let window: &[Index] = idx![.., .., prev..idx, ..];
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            unreachable!("the buffers were made above when missing");
        };
        for (buf, new) in [
            (&mut k.data, &new_keys.data),
            (&mut k.scales, &new_keys.scales),
            (&mut k.biases, &new_keys.biases),
            (&mut v.data, &new_values.data),
            (&mut v.scales, &new_values.scales),
            (&mut v.biases, &new_values.biases),
        ] {
            buf.index_put(window, new)?;
        }
        let filled = |q: &QuantizedArrays| q.map(|a| Ok(a.index(idx![.., .., ..idx, ..])?));
        Ok(CachedKv::Quantized {
            keys: filled(k)?,
            values: filled(v)?,
            group_size: self.group_size,
            bits: self.bits,
        })
    }

    /// The six arrays cut to the filled columns (keys' data, scales,
    /// biases, then the values').
    fn state(&self) -> Vec<Array> {
        let filled: &[Index] = idx![.., .., ..self.columns.idx(), ..];
        self.keys
            .iter()
            .chain(&self.values)
            .flat_map(|q| [&q.data, &q.scales, &q.biases])
            .filter_map(|a| a.index(filled).ok())
            .collect()
    }

    fn row_offsets(&self) -> Option<Vec<i32>> {
        Some(self.offsets())
    }

    /// `[batch, 1, n, idx + n]`, false on each row's padding (as
    /// [`super::BatchKvCache`]'s).
    fn make_mask(&self, n: i32, window_size: Option<i32>, _return_array: bool) -> Result<Mask> {
        self.columns.mask(n, window_size)
    }
}
