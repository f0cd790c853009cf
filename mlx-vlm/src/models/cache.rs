//! Key/value caches of the decoder layers (Python: `mlx_vlm/models/cache.py`).

use mlx_rs::{Array, Index, idx, ops};

use crate::Result;

/// One decoder layer's key/value cache (Python: `_BaseCache`).
///
/// Keys and values are `[batch, kv_heads, seq, head_dim]`.
pub trait Cache: Send {
    /// Tokens seen so far (Python: `cache.offset`).
    fn offset(&self) -> i32;

    /// Appends `keys`/`values` and returns everything attention should see
    /// (Python: `update_and_fetch`).
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)>;

    /// The arrays that hold the cache's state, for `eval` between chunks
    /// (Python: `cache.state`).
    fn state(&self) -> Vec<Array>;

    /// The largest number of tokens kept, if bounded (Python: `max_size`).
    fn max_size(&self) -> Option<i32> {
        None
    }
}

/// A cache that grows in steps of 256 tokens (Python: `KVCache`).
#[derive(Debug, Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    /// Growth step in tokens (Python: `KVCache.step`).
    pub const STEP: i32 = 256;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Cache for KvCache {
    fn offset(&self) -> i32 {
        self.offset
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let prev = self.offset;
        let new_len = keys.shape()[2];
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.keys.is_none() || prev + new_len > capacity {
            let n_steps = (Self::STEP + new_len - 1) / Self::STEP;
            let grow = |old: Option<&Array>, new: &Array| -> Result<Array> {
                let s = new.shape();
                let fresh = ops::zeros(&[s[0], s[1], n_steps * Self::STEP, s[3]], new.dtype())?;
                Ok(match old {
                    Some(old) => {
                        // Drop the unused tail so the buffer stays contiguous in steps.
                        let old = if prev % Self::STEP != 0 {
                            old.index(idx![.., .., ..prev, ..])?
                        } else {
                            old.clone()
                        };
                        ops::concatenate(&[old, fresh], 2)?
                    }
                    None => fresh,
                })
            };
            self.keys = Some(grow(self.keys.as_ref(), keys)?);
            self.values = Some(grow(self.values.as_ref(), values)?);
        }
        self.offset += new_len;
        let window: &[Index] = idx![.., .., prev..self.offset, ..];
        let visible: &[Index] = idx![.., .., ..self.offset, ..];
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            unreachable!("both buffers were allocated above");
        };
        k.index_put(window, keys)?;
        v.index_put(window, values)?;
        Ok((k.index(visible)?, v.index(visible)?))
    }

    fn state(&self) -> Vec<Array> {
        self.keys
            .iter()
            .chain(self.values.iter())
            .cloned()
            .collect()
    }
}
