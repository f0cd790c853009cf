//! Key/value caches of the decoder layers (Python: `mlx_vlm/models/cache.py`).

use mlx_rs::{Array, Index, idx, ops};

pub use crate::models::base::AttentionMask as Mask;
use crate::{Error, Result};

/// Python: `create_causal_mask`.
///
/// A boolean `[n, offset + n]` mask (true keeps a score) for `n` queries
/// after `offset` cached tokens, limited to the last `window_size` keys when
/// given. `right_padding`/`left_padding` (`[batch]`) give the 4-D batched
/// form `[batch, 1, n, offset + n]`.
pub fn create_causal_mask(
    n: i32,
    offset: i32,
    window_size: Option<i32>,
    right_padding: Option<&Array>,
    left_padding: Option<&Array>,
) -> Result<Array> {
    let rinds = ops::arange(0, offset + n, 1, None)?;
    let linds = if offset != 0 {
        ops::arange(offset, offset + n, 1, None)?
    } else {
        rinds.clone()
    };
    let linds = linds.index(idx![.., mlx_rs::NewAxis])?;
    let rinds = rinds.index(idx![mlx_rs::NewAxis])?;
    let mut mask = ops::greater_equal(&linds, &rinds)?;
    if let Some(window_size) = window_size {
        let inside = ops::less(&linds, &ops::add(&rinds, window_size)?)?;
        mask = ops::logical_and(&mask, &inside)?;
    }
    if let Some(right_padding) = right_padding {
        let limit = ops::subtract(offset + n, right_padding)?;
        let limit = ops::expand_dims(&limit, [1, 2, 3])?;
        mask = ops::logical_and(&mask, &ops::less(&rinds, &limit)?)?;
    }
    if let Some(left_padding) = left_padding {
        let start = ops::expand_dims(left_padding, [1, 2, 3])?;
        mask = ops::logical_and(&mask, &ops::less_equal(&start, &rinds)?)?;
    }
    Ok(mask)
}

/// The key and value buffers a cache holds, for its `state`.
pub(crate) fn buffers(keys: Option<&Array>, values: Option<&Array>) -> Vec<Array> {
    keys.into_iter().chain(values).cloned().collect()
}

/// Python: `make_prompt_cache` for a model without its own `make_cache`:
/// one [`RotatingKvCache`] (`keep = 4`) per layer when `max_kv_size` is
/// given, else one [`KvCache`] per layer.
pub fn make_prompt_cache(num_layers: usize, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
    (0..num_layers)
        .map(|_| -> Box<dyn Cache> {
            match max_kv_size {
                Some(max_size) => Box::new(RotatingKvCache::new(max_size, 4)),
                None => Box::new(KvCache::new()),
            }
        })
        .collect()
}

/// Python: `create_attention_mask` (the cache-offset form in `cache.py`).
pub fn create_attention_mask(
    n: i32,
    offset: i32,
    return_array: bool,
    window_size: Option<i32>,
) -> Result<Mask> {
    if window_size.is_some() {
        Ok(Mask::Array(create_causal_mask(
            n,
            offset,
            window_size,
            None,
            None,
        )?))
    } else if n == 1 {
        Ok(Mask::None)
    } else if return_array {
        Ok(Mask::Array(create_causal_mask(
            n, offset, None, None, None,
        )?))
    } else {
        Ok(Mask::Causal)
    }
}

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

    /// Tokens attention sees after the last update (Python: `size()`).
    fn size(&self) -> i32 {
        self.offset()
    }

    /// The write position of a rotating buffer (Python:
    /// `RotatingKVCache._idx`, which Python's Qwen language models read in
    /// place of `offset` when a cache has it); `None` for other caches.
    fn idx(&self) -> Option<i32> {
        None
    }

    /// The mask for `n` new queries (Python: `make_mask`; `KVCache`'s
    /// form by default).
    fn make_mask(&self, n: i32, window_size: Option<i32>, return_array: bool) -> Result<Mask> {
        create_attention_mask(n, self.offset(), return_array, window_size)
    }

    /// Appends `keys`/`values` and returns what attention reads, plain or
    /// quantized (Python: `update_and_fetch`, whose result the shared
    /// `scaled_dot_product_attention` dispatches on by cache type).
    fn update_and_fetch_kv(&mut self, keys: &Array, values: &Array) -> Result<CachedKv> {
        let (k, v) = self.update_and_fetch(keys, values)?;
        Ok(CachedKv::Plain(k, v))
    }

    /// Python: `to_quantized(group_size, bits)`; `None` where Python's
    /// cache has no such method (`maybe_quantize_kv_cache` leaves it).
    fn to_quantized(&self, _group_size: i32, _bits: i32) -> Option<Result<Box<dyn Cache>>> {
        None
    }

    /// Whether [`Cache::trim`] can drop trailing tokens (Python:
    /// `is_trimmable`; `_BaseCache`'s false by default).
    fn is_trimmable(&self) -> bool {
        false
    }

    /// Drops the last `n` tokens (at most all of them) and returns how many
    /// were dropped (Python: `trim`); the buffers stay, later writes
    /// overwrite them. A cache that cannot trim drops none.
    fn trim(&mut self, _n: i32) -> i32 {
        0
    }

    /// Whether the cache still holds its whole sequence from position 0,
    /// so it can be rolled back to any earlier prefix (Python:
    /// `_cache_fully_retained` of `generate/dispatch.py`; true for the
    /// caches that keep every token).
    fn fully_retained(&self) -> bool {
        true
    }

    /// The keys and values seen so far, `[1, kv_heads, offset, head_dim]`
    /// each, of a plain cache a [`crate::models::batch_cache::BatchKvCache`]
    /// can take in (Python: what `BatchKVCache.merge` reads of a
    /// `KVCache`); `None` for every other cache, and for an empty one.
    fn plain_kv(&self) -> Option<Result<(Array, Array)>> {
        None
    }

    /// The window's keys and values `[1, kv_heads, len, head_dim]` in
    /// temporal order and the tokens seen, of a sliding-window cache a
    /// [`crate::models::BatchRotatingKvCache`] can take in (Python: what
    /// `BatchRotatingKVCache.merge` reads of a `RotatingKVCache`); `None`
    /// for every other cache, and for an empty one.
    fn rotating_kv(&self) -> Option<Result<(Array, Array, i32)>> {
        None
    }

    /// The keys and values `[1, kv_heads, offset, head_dim]` of a bounded
    /// cache that has dropped no token and will not within `tokens_left`
    /// more, with its bound `(max_size, keep)`: until then it holds what
    /// a plain cache would, so a [`crate::models::BatchKvCache`] can take
    /// it in (Rust only: a `max_kv_size` ring pinning `keep` tokens, which
    /// no batched ring can). `None` for every other cache.
    fn unwrapped_kv(&self, _tokens_left: i32) -> Option<Result<(Array, Array, i32, i32)>> {
        None
    }

    /// The quantized keys and values `[1, kv_heads, offset, *]` of a
    /// [`QuantizedKvCache`] with its `(group_size, bits)`, which a
    /// [`crate::models::BatchQuantizedKvCache`] takes in; `None` for every
    /// other cache, and for an empty one.
    fn quantized_kv(&self) -> Option<Result<(QuantizedArrays, QuantizedArrays, i32, i32)>> {
        None
    }

    /// A second cache holding the same tokens (Rust only: a server's
    /// prefix cache hands a copy to a request and keeps its entry). The
    /// arrays are shared, not copied: MLX arrays are immutable, so the
    /// copy's later writes make new arrays and never reach the original.
    fn boxed_clone(&self) -> Box<dyn Cache>;

    /// Each row's tokens so far, where RoPE places its next token, for a
    /// cache whose rows differ (Python: the array `offset` of a
    /// `BatchKVCache`); `None` when every row is at [`Cache::offset`].
    fn row_offsets(&self) -> Option<Vec<i32>> {
        None
    }
}

/// Packed `uint32` data, scales and biases of `mx.quantize` (Python: the
/// `(w, scales, biases)` tuples `QuantizedKVCache` holds).
#[derive(Debug, Clone)]
pub struct QuantizedArrays {
    /// Packed values `[batch, kv_heads, seq, dim * bits / 32]`.
    pub data: Array,
    /// Per-group scales `[batch, kv_heads, seq, dim / group_size]`.
    pub scales: Array,
    /// Per-group biases, shaped as `scales`.
    pub biases: Array,
}

impl QuantizedArrays {
    /// `mx.quantize(x, group_size, bits)` in its affine mode.
    pub(crate) fn quantize(x: &Array, group_size: i32, bits: i32) -> Result<Self> {
        let q = ops::quantize(
            x,
            ops::QuantizeOptions {
                group_size: Some(group_size),
                bits: Some(bits),
                ..Default::default()
            },
        )?;
        let Some(biases) = q.biases else {
            return Err(Error::InvalidArgument(
                "affine mx.quantize returned no biases".into(),
            ));
        };
        Ok(Self {
            data: q.weights,
            scales: q.scales,
            biases,
        })
    }

    /// `f` of each part.
    pub(crate) fn map(&self, f: impl Fn(&Array) -> Result<Array>) -> Result<Self> {
        Ok(Self {
            data: f(&self.data)?,
            scales: f(&self.scales)?,
            biases: f(&self.biases)?,
        })
    }

    fn parts(&self) -> [&Array; 3] {
        [&self.data, &self.scales, &self.biases]
    }
}

/// What attention reads from a cache after an update.
#[derive(Debug, Clone)]
pub enum CachedKv {
    /// Plain keys and values `[batch, kv_heads, seq, head_dim]`.
    Plain(Array, Array),
    /// Quantized keys and values of a [`QuantizedKvCache`].
    Quantized {
        /// Keys.
        keys: QuantizedArrays,
        /// Values.
        values: QuantizedArrays,
        /// Elements per quantization group.
        group_size: i32,
        /// Bits per element.
        bits: i32,
    },
}

/// A cache holding keys and values quantized with `mx.quantize`, growing in
/// steps of 256 tokens (Python: `QuantizedKVCache`).
#[derive(Debug, Clone)]
pub struct QuantizedKvCache {
    keys: Option<QuantizedArrays>,
    values: Option<QuantizedArrays>,
    offset: i32,
    group_size: i32,
    bits: i32,
}

impl QuantizedKvCache {
    /// Growth step in tokens (Python: `QuantizedKVCache.step`).
    pub const STEP: i32 = 256;

    /// An empty cache (Python: `QuantizedKVCache(group_size, bits)`).
    pub fn new(group_size: i32, bits: i32) -> Self {
        Self {
            keys: None,
            values: None,
            offset: 0,
            group_size,
            bits,
        }
    }

    /// Elements per quantization group (Python: `group_size`).
    pub fn group_size(&self) -> i32 {
        self.group_size
    }

    /// Bits per element (Python: `bits`).
    pub fn bits(&self) -> i32 {
        self.bits
    }

    /// A cache holding exactly `keys` and `values` (`[batch, kv_heads,
    /// len, *]` each part, quantized with `group_size` and `bits`); its
    /// offset is `len` (Python: the `QuantizedKVCache` that
    /// `BatchQuantizedKVCache.extract` builds).
    pub fn from_quantized(
        keys: QuantizedArrays,
        values: QuantizedArrays,
        group_size: i32,
        bits: i32,
    ) -> Result<Self> {
        let len = seq_len(&keys.data, "keys")?;
        if seq_len(&values.data, "values")? != len {
            return Err(Error::InvalidArgument(format!(
                "QuantizedKvCache::from_quantized: {len} keys but values of shape {:?}; give \
                 as many of each",
                values.data.shape()
            )));
        }
        Ok(Self {
            keys: Some(keys),
            values: Some(values),
            offset: len,
            group_size,
            bits,
        })
    }

    /// The quantized keys and values up to `offset` (Python: `state`).
    pub fn quantized_state(&self) -> Result<Option<(QuantizedArrays, QuantizedArrays)>> {
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Ok(None);
        };
        let visible =
            |x: &Array| -> Result<Array> { Ok(x.index(idx![.., .., ..self.offset, ..])?) };
        Ok(Some((k.map(visible)?, v.map(visible)?)))
    }
}

impl Cache for QuantizedKvCache {
    fn boxed_clone(&self) -> Box<dyn Cache> {
        Box::new(self.clone())
    }

    fn offset(&self) -> i32 {
        self.offset
    }

    fn is_trimmable(&self) -> bool {
        true
    }

    fn trim(&mut self, n: i32) -> i32 {
        let n = n.min(self.offset).max(0);
        self.offset -= n;
        n
    }

    fn update_and_fetch(&mut self, _keys: &Array, _values: &Array) -> Result<(Array, Array)> {
        Err(plain_read_of_quantized_cache(self.bits))
    }

    fn update_and_fetch_kv(&mut self, keys: &Array, values: &Array) -> Result<CachedKv> {
        let num_steps = seq_len(keys, "keys")?;
        seq_len(values, "values")?;
        let prev = self.offset;
        let capacity = match &self.keys {
            Some(k) => seq_len(&k.data, "buffer")?,
            None => 0,
        };
        if self.keys.is_none() || prev + num_steps > capacity {
            let new_steps = (Self::STEP + num_steps - 1) / Self::STEP * Self::STEP;
            let (kq, vq) = (
                QuantizedArrays::quantize(keys, self.group_size, self.bits)?,
                QuantizedArrays::quantize(values, self.group_size, self.bits)?,
            );
            // Zeros of the packed/scales/biases widths and dtypes.
            let fresh = |x: &Array| -> Result<Array> {
                let s = x.shape();
                Ok(ops::zeros(&[s[0], s[1], new_steps, s[3]], x.dtype())?)
            };
            let grow = |old: Option<&QuantizedArrays>,
                        like: &QuantizedArrays|
             -> Result<QuantizedArrays> {
                match old {
                    Some(old) => old.map(|x| {
                        let x = if prev % Self::STEP != 0 {
                            x.index(idx![.., .., ..prev, ..])?
                        } else {
                            x.clone()
                        };
                        Ok(ops::concatenate(&[x.clone(), fresh(&x)?], 2)?)
                    }),
                    None => like.map(fresh),
                }
            };
            self.keys = Some(grow(self.keys.as_ref(), &kq)?);
            self.values = Some(grow(self.values.as_ref(), &vq)?);
        }
        self.offset += num_steps;
        let keys = QuantizedArrays::quantize(keys, self.group_size, self.bits)?;
        let values = QuantizedArrays::quantize(values, self.group_size, self.bits)?;
        let window: &[Index] = idx![.., .., prev..self.offset, ..];
        let (Some(k), Some(v)) = (self.keys.as_mut(), self.values.as_mut()) else {
            return Err(missing_buffer());
        };
        for (buf, new) in [
            (&mut k.data, &keys.data),
            (&mut k.scales, &keys.scales),
            (&mut k.biases, &keys.biases),
            (&mut v.data, &values.data),
            (&mut v.scales, &values.scales),
            (&mut v.biases, &values.biases),
        ] {
            buf.index_put(window, new)?;
        }
        let Some((keys, values)) = self.quantized_state()? else {
            return Err(missing_buffer());
        };
        Ok(CachedKv::Quantized {
            keys,
            values,
            group_size: self.group_size,
            bits: self.bits,
        })
    }

    fn quantized_kv(&self) -> Option<Result<(QuantizedArrays, QuantizedArrays, i32, i32)>> {
        match self.quantized_state() {
            Ok(Some((k, v))) if self.offset > 0 => Some(Ok((k, v, self.group_size, self.bits))),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Python: `state`: the six arrays up to `offset` (keys' data, scales,
    /// biases, then the values'); empty before the first update.
    fn state(&self) -> Vec<Array> {
        match self.quantized_state() {
            Ok(Some((k, v))) => k.parts().into_iter().chain(v.parts()).cloned().collect(),
            // Slicing a 4-D buffer this cache built itself cannot fail;
            // nothing to evaluate either way.
            _ => Vec::new(),
        }
    }
}

/// A cache that grows in steps of 256 tokens (Python: `KVCache`).
#[derive(Debug, Default, Clone)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    /// Growth step in tokens (Python: `KVCache.step`).
    pub const STEP: i32 = 256;

    /// An empty cache (Python: `KVCache()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding exactly `keys` and `values` `[batch, kv_heads, len,
    /// head_dim]` (Python: the `KVCache` that `BatchKVCache.extract`
    /// builds); its offset is `len`.
    pub fn from_kv(keys: Array, values: Array) -> Result<Self> {
        let len = seq_len(&keys, "keys")?;
        if seq_len(&values, "values")? != len {
            return Err(Error::InvalidArgument(format!(
                "KvCache::from_kv: {len} keys but values of shape {:?}; give as many of each",
                values.shape()
            )));
        }
        Ok(Self {
            keys: Some(keys),
            values: Some(values),
            offset: len,
        })
    }
}

/// The sequence length of a `[batch, heads, seq, dim]` cache operand.
fn seq_len(a: &Array, what: &str) -> Result<i32> {
    match a.shape() {
        [_, _, s, _] => Ok(*s),
        shape => Err(Error::InvalidArgument(format!(
            "cache {what} must be [batch, kv_heads, seq, head_dim], got shape {shape:?}"
        ))),
    }
}

/// `[b, h, len, d]` zeros shaped after `like` (`[b, h, _, d]`).
pub(super) fn zeros_like_heads(like: &Array, len: i32) -> Result<Array> {
    let s = like.shape();
    let (b, h, d) = match s {
        [b, h, _, d] => (*b, *h, *d),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "cache operand must be 4-D, got shape {s:?}"
            )));
        }
    };
    Ok(ops::zeros(&[b, h, len, d], like.dtype())?)
}

fn missing_buffer() -> Error {
    Error::InvalidArgument("cache buffers were not allocated before the write".into())
}

impl Cache for KvCache {
    fn boxed_clone(&self) -> Box<dyn Cache> {
        Box::new(self.clone())
    }

    fn offset(&self) -> i32 {
        self.offset
    }

    fn is_trimmable(&self) -> bool {
        true
    }

    fn trim(&mut self, n: i32) -> i32 {
        let n = n.min(self.offset).max(0);
        self.offset -= n;
        n
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let prev = self.offset;
        let new_len = seq_len(keys, "keys")?;
        seq_len(values, "values")?;
        let capacity = match &self.keys {
            Some(k) => seq_len(k, "buffer")?,
            None => 0,
        };
        if self.keys.is_none() || prev + new_len > capacity {
            let n_steps = (Self::STEP + new_len - 1) / Self::STEP;
            let grow = |old: Option<&Array>, new: &Array| -> Result<Array> {
                let fresh = zeros_like_heads(new, n_steps * Self::STEP)?;
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
            return Err(missing_buffer());
        };
        k.index_put(window, keys)?;
        v.index_put(window, values)?;
        Ok((k.index(visible)?, v.index(visible)?))
    }

    fn state(&self) -> Vec<Array> {
        buffers(self.keys.as_ref(), self.values.as_ref())
    }

    fn plain_kv(&self) -> Option<Result<(Array, Array)>> {
        let (k, v) = (self.keys.as_ref()?, self.values.as_ref()?);
        let visible: &[Index] = idx![.., .., ..self.offset, ..];
        let pair = || -> Result<(Array, Array)> { Ok((k.index(visible)?, v.index(visible)?)) };
        Some(pair())
    }

    fn to_quantized(&self, group_size: i32, bits: i32) -> Option<Result<Box<dyn Cache>>> {
        let build = || -> Result<Box<dyn Cache>> {
            let mut quant = QuantizedKvCache::new(group_size, bits);
            quant.offset = self.offset;
            if let (Some(k), Some(v)) = (&self.keys, &self.values) {
                // Python quantizes the whole buffer, unused tail included.
                quant.keys = Some(QuantizedArrays::quantize(k, group_size, bits)?);
                quant.values = Some(QuantizedArrays::quantize(v, group_size, bits)?);
            }
            Ok(Box::new(quant))
        };
        Some(build())
    }
}

/// A cache holding at most `max_size` tokens: the first `keep` tokens stay,
/// the rest is a ring buffer (Python: `RotatingKVCache`).
#[derive(Debug, Clone)]
pub struct RotatingKvCache {
    keep: i32,
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
    max_size: i32,
    idx: i32,
}

impl RotatingKvCache {
    /// Growth step in tokens (Python: `RotatingKVCache.step`).
    pub const STEP: i32 = 256;

    /// An empty cache (Python: `RotatingKVCache(max_size, keep)`).
    pub fn new(max_size: i32, keep: i32) -> Self {
        Self {
            keep,
            keys: None,
            values: None,
            offset: 0,
            max_size,
            idx: 0,
        }
    }

    /// A cache of `max_size` holding `keys` and `values` `[1, kv_heads,
    /// len, head_dim]` in temporal order after `offset` tokens (Python:
    /// what `BatchRotatingKVCache.extract` builds).
    pub fn from_window(max_size: i32, keys: Array, values: Array, offset: i32) -> Result<Self> {
        let idx = seq_len(&keys, "keys")?;
        Ok(Self {
            keep: 0,
            keys: Some(keys),
            values: Some(values),
            offset,
            max_size,
            idx,
        })
    }

    /// A cache of `max_size` pinning `keep` tokens that holds `keys` and
    /// `values` `[1, kv_heads, len, head_dim]`, every token it has seen,
    /// none dropped yet (the inverse of [`Cache::unwrapped_kv`]); fails
    /// when `len` is over `max_size`.
    pub fn from_unwrapped(max_size: i32, keep: i32, keys: Array, values: Array) -> Result<Self> {
        let len = seq_len(&keys, "keys")?;
        if len > max_size {
            return Err(Error::InvalidArgument(format!(
                "RotatingKvCache::from_unwrapped: {len} tokens do not fit a window of {max_size}"
            )));
        }
        Ok(Self {
            keep,
            keys: Some(keys),
            values: Some(values),
            offset: len,
            max_size,
            idx: len,
        })
    }

    /// Tokens always kept at the start (Python: `keep`).
    pub fn keep(&self) -> i32 {
        self.keep
    }

    /// Python: `RotatingKVCache._trim`.
    fn trim_buffer(&self, trim_size: i32, v: &Array, append: Option<&Array>) -> Result<Array> {
        let mut to_cat = if trim_size > 0 {
            vec![
                v.index(idx![.., .., ..self.keep, ..])?,
                v.index(idx![.., .., (trim_size + self.keep).., ..])?,
            ]
        } else {
            vec![v.clone()]
        };
        if let Some(append) = append {
            to_cat.push(append.clone());
        }
        Ok(ops::concatenate(&to_cat, 2)?)
    }

    /// Python: `RotatingKVCache._temporal_order`: the buffer in temporal
    /// order, its unused end sliced off.
    fn temporal_order(&self, v: &Array) -> Result<Array> {
        let len = seq_len(v, "buffer")?;
        if self.idx == len {
            Ok(v.clone())
        } else if self.idx < self.offset {
            Ok(ops::concatenate(
                &[
                    v.index(idx![.., .., ..self.keep, ..])?,
                    v.index(idx![.., .., self.idx.., ..])?,
                    v.index(idx![.., .., self.keep..self.idx, ..])?,
                ],
                2,
            )?)
        } else {
            Ok(v.index(idx![.., .., ..self.idx, ..])?)
        }
    }

    /// Python: `RotatingKVCache._update_concat` (several tokens at once).
    fn update_concat(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        match (self.keys.take(), self.values.take()) {
            (Some(old_k), Some(old_v)) => {
                // Temporal order first, so the trim drops the oldest tokens.
                let old_k = self.temporal_order(&old_k)?;
                let old_v = self.temporal_order(&old_v)?;
                self.idx = seq_len(&old_k, "buffer")?;
                // Up to max_size + S - 1 tokens, so every new token sees at
                // least max_size of context.
                let trim_size = self.idx - self.max_size + 1;
                self.keys = Some(self.trim_buffer(trim_size, &old_k, Some(keys))?);
                self.values = Some(self.trim_buffer(trim_size, &old_v, Some(values))?);
            }
            _ => {
                self.keys = Some(keys.clone());
                self.values = Some(values.clone());
            }
        }
        self.offset += seq_len(keys, "keys")?;
        let (Some(k), Some(v)) = (&self.keys, &self.values) else {
            return Err(missing_buffer());
        };
        self.idx = seq_len(k, "buffer")?;
        Ok((k.clone(), v.clone()))
    }

    /// Python: `RotatingKVCache._update_in_place` (one token).
    fn update_in_place(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let s = seq_len(keys, "keys")?;
        let prev = self.offset;
        let capacity = match &self.keys {
            Some(k) => Some(seq_len(k, "buffer")?),
            None => None,
        };
        let grow = match capacity {
            None => true,
            Some(c) => prev >= c && c < self.max_size,
        };
        if grow {
            let new_size = Self::STEP.min(self.max_size - prev);
            let new_k = zeros_like_heads(keys, new_size)?;
            let new_v = zeros_like_heads(values, new_size)?;
            match (self.keys.take(), self.values.take()) {
                (Some(k), Some(v)) => {
                    self.keys = Some(ops::concatenate(&[k, new_k], 2)?);
                    self.values = Some(ops::concatenate(&[v, new_v], 2)?);
                }
                _ => {
                    self.keys = Some(new_k);
                    self.values = Some(new_v);
                }
            }
            self.idx = prev;
        }

        let (Some(k), Some(v)) = (self.keys.take(), self.values.take()) else {
            return Err(missing_buffer());
        };
        let trim_size = seq_len(&k, "buffer")? - self.max_size;
        let (mut k, mut v) = if trim_size > 0 {
            self.idx = self.max_size;
            (
                self.trim_buffer(trim_size, &k, None)?,
                self.trim_buffer(trim_size, &v, None)?,
            )
        } else {
            (k, v)
        };

        if self.idx == self.max_size {
            self.idx = self.keep;
        }

        let window: &[Index] = idx![.., .., self.idx..self.idx + s, ..];
        k.index_put(window, keys)?;
        v.index_put(window, values)?;
        self.offset += s;
        self.idx += s;

        let out = if self.offset < self.max_size {
            let visible: &[Index] = idx![.., .., ..self.offset, ..];
            (k.index(visible)?, v.index(visible)?)
        } else {
            (k.clone(), v.clone())
        };
        self.keys = Some(k);
        self.values = Some(v);
        Ok(out)
    }
}

impl Cache for RotatingKvCache {
    fn boxed_clone(&self) -> Box<dyn Cache> {
        Box::new(self.clone())
    }

    fn offset(&self) -> i32 {
        self.offset
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        if seq_len(keys, "keys")? == 1 {
            self.update_in_place(keys, values)
        } else {
            self.update_concat(keys, values)
        }
    }

    fn state(&self) -> Vec<Array> {
        buffers(self.keys.as_ref(), self.values.as_ref())
    }

    fn to_quantized(&self, _group_size: i32, bits: i32) -> Option<Result<Box<dyn Cache>>> {
        // Python raises NotImplementedError("RotatingKVCache Quantization NYI").
        Some(Err(Error::InvalidParameter {
            name: "kv_bits",
            value: bits.to_string(),
            message: "RotatingKVCache Quantization NYI (as in Python): kv_bits cannot be \
                      combined with max_kv_size or a model's sliding-window caches; drop one"
                .into(),
        }))
    }

    fn max_size(&self) -> Option<i32> {
        Some(self.max_size)
    }

    /// `None` with `keep` tokens pinned: Python's batched rotating cache
    /// has no `keep`.
    fn rotating_kv(&self) -> Option<Result<(Array, Array, i32)>> {
        if self.keep != 0 {
            return None;
        }
        let (k, v) = (self.keys.as_ref()?, self.values.as_ref()?);
        Some(
            self.temporal_order(k)
                .and_then(|k| Ok((k, self.temporal_order(v)?, self.offset))),
        )
    }

    /// Only for a ring pinning tokens: one that pins none (a sliding
    /// window) batches as a ring ([`Cache::rotating_kv`]).
    fn unwrapped_kv(&self, tokens_left: i32) -> Option<Result<(Array, Array, i32, i32)>> {
        if self.keep == 0 {
            return None;
        }
        let (k, v) = (self.keys.as_ref()?, self.values.as_ref()?);
        let fits = self.offset.checked_add(tokens_left.max(0))? <= self.max_size;
        if self.idx != self.offset || !fits {
            return None;
        }
        let cols = idx![.., .., ..self.idx, ..];
        Some((|| {
            Ok((k.index(cols)?, v.index(cols)?, self.max_size, self.keep))
        })())
    }

    /// Python: true until the window has been filled.
    fn is_trimmable(&self) -> bool {
        self.offset < self.max_size
    }

    fn trim(&mut self, n: i32) -> i32 {
        let n = n.min(self.offset).max(0);
        self.offset -= n;
        self.idx -= n;
        n
    }

    /// Python: reusable until the window wraps (`offset <= max_size`).
    fn fully_retained(&self) -> bool {
        self.offset <= self.max_size
    }

    fn size(&self) -> i32 {
        self.offset.min(self.max_size)
    }

    fn idx(&self) -> Option<i32> {
        Some(self.idx)
    }

    fn make_mask(&self, n: i32, window_size: Option<i32>, return_array: bool) -> Result<Mask> {
        if n > 1 {
            let window_size = window_size.filter(|&w| w != 0).unwrap_or(self.max_size);
            let offset = (self.max_size - 1).min(self.offset);
            if offset + n > window_size || return_array {
                Ok(Mask::Array(create_causal_mask(
                    n,
                    offset,
                    Some(window_size),
                    None,
                    None,
                )?))
            } else {
                Ok(Mask::Causal)
            }
        } else {
            let Some(window_size) = window_size else {
                return Ok(Mask::None);
            };
            // A window narrower than the buffer needs a mask even for one query.
            if self.offset >= window_size && self.max_size > window_size {
                let idx = if self.idx >= self.max_size {
                    0
                } else {
                    self.idx
                };
                let mask_size = if self.offset < self.max_size {
                    self.offset + 1
                } else {
                    self.max_size
                };
                let mask = ops::greater_equal(
                    &ops::arange(0, mask_size, 1, None)?,
                    mask_size - window_size,
                )?;
                Ok(Mask::Array(ops::roll(&mask, idx + 1, None)?))
            } else {
                Ok(Mask::None)
            }
        }
    }
}

/// What a model's attention can read from [`QuantizedKvCache`]s, for the
/// up-front `kv_bits` check ([`crate::generate::check_kv_quantization`]).
///
/// Rust only: Python finds out when `maybe_quantize_kv_cache` converts the
/// cache (an `mx.quantize` error for a group size that does not divide the
/// head dim) or at the next attention call (a family whose attention reads
/// the keys as arrays), both mid-generation when `quantized_kv_start` lies
/// inside the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvQuantization {
    /// The attention reads quantized caches; their keys and values have
    /// these last-axis widths, which `kv_group_size` must divide.
    HeadDims {
        /// Width of a cached key (`head_dim`; MLA: `qk_nope + qk_rope`).
        keys: i32,
        /// Width of a cached value (`head_dim`; MLA: `v_head_dim`).
        values: i32,
    },
    /// The attention cannot read a quantized cache: why, and what Python
    /// does instead.
    Unsupported(String),
    /// Not stated by the model (the default): nothing is checked up front,
    /// failures come when the cache is converted, as in Python.
    Unchecked,
}

/// The error of a plain read (`update_and_fetch`) of a quantized cache of
/// `bits` bits: the model's attention was ported without Python's quantized
/// path.
pub(crate) fn plain_read_of_quantized_cache(bits: i32) -> Error {
    Error::InvalidParameter {
        name: "kv_bits",
        value: bits.to_string(),
        message: "this model's attention reads plain keys and values and was not ported \
                  with Python's quantized attention path; generate without kv_bits"
            .into(),
    }
}
