//! `mlx/nn/layers/upsample.py`: `Upsample` (nearest, linear and cubic, with
//! `align_corners` and `antialias`).

use crate::ops;
use crate::{Array, Dtype, Error, Result};

/// How [`Upsample`] interpolates (Python's `mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UpsampleMode {
    /// Nearest neighbour (`"nearest"`, the default).
    #[default]
    Nearest,
    /// Linear in each spatial dimension: bilinear, trilinear (`"linear"`).
    Linear,
    /// Cubic in each spatial dimension: bicubic (`"cubic"`).
    Cubic,
}

/// The scale of [`Upsample`]: one for every spatial dimension (Python's
/// float) or one per spatial dimension (Python's tuple).
#[derive(Debug, Clone, PartialEq)]
pub enum ScaleFactor {
    /// The same scale for every spatial dimension.
    Uniform(f64),
    /// One scale per spatial dimension.
    PerAxis(Vec<f64>),
}

impl From<f64> for ScaleFactor {
    fn from(scale: f64) -> Self {
        ScaleFactor::Uniform(scale)
    }
}

impl From<Vec<f64>> for ScaleFactor {
    fn from(scales: Vec<f64>) -> Self {
        ScaleFactor::PerAxis(scales)
    }
}

impl<const N: usize> From<[f64; N]> for ScaleFactor {
    fn from(scales: [f64; N]) -> Self {
        ScaleFactor::PerAxis(scales.to_vec())
    }
}

/// Upsampling of channels-last inputs `(N, *spatial, C)` by a scale per
/// spatial dimension (`nn.Upsample`). Python's defaults: `mode="nearest"`,
/// `align_corners=False`, `antialias=False`.
#[derive(Debug, Clone, crate::Module)]
pub struct Upsample {
    /// The scale of each spatial dimension.
    #[module(skip)]
    pub scale_factor: ScaleFactor,
    /// How to interpolate.
    #[module(skip)]
    pub mode: UpsampleMode,
    /// Whether the corner pixels of input and output line up (linear and
    /// cubic only).
    pub align_corners: bool,
    /// Whether to low-pass filter when downsampling (linear and cubic only).
    pub antialias: bool,
}

impl Upsample {
    /// `nn.Upsample(scale_factor, mode, align_corners, antialias)`.
    ///
    /// Fails, as Python, for `antialias` with [`UpsampleMode::Nearest`] or
    /// with `align_corners`, and (unlike Python) for scales that are not
    /// positive and finite.
    pub fn new(
        scale_factor: impl Into<ScaleFactor>,
        mode: UpsampleMode,
        align_corners: bool,
        antialias: bool,
    ) -> Result<Upsample> {
        let scale_factor = scale_factor.into();
        let scales = match &scale_factor {
            ScaleFactor::Uniform(s) => std::slice::from_ref(s),
            ScaleFactor::PerAxis(v) => v.as_slice(),
        };
        if scales.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::invalid(format!(
                "[Upsample] scale_factor must be positive and finite but got {scales:?}"
            )));
        }
        if antialias && mode == UpsampleMode::Nearest {
            return Err(Error::invalid(
                "[Upsample] Antialiasing is not supported for nearest neighbor upsampling",
            ));
        }
        validate_antialias_align_corners(align_corners, antialias)?;
        Ok(Upsample {
            scale_factor,
            mode,
            align_corners,
            antialias,
        })
    }

    /// `Upsample.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let dims = x.ndim() as i64 - 2;
        if dims <= 0 {
            return Err(Error::invalid(format!(
                "[Upsample] The input should have at least 1 spatial dimension which means it \
                 should be at least 3D but {}D was provided",
                x.ndim()
            )));
        }
        let dims = dims as usize;
        let scales = match &self.scale_factor {
            ScaleFactor::Uniform(s) => vec![*s; dims],
            ScaleFactor::PerAxis(v) => {
                if v.len() != dims {
                    return Err(Error::invalid(format!(
                        "[Upsample] One scale per spatial dimension is required but \
                         scale_factor={v:?} and the number of spatial dimensions were {dims}"
                    )));
                }
                v.clone()
            }
        };
        match self.mode {
            UpsampleMode::Nearest => upsample_nearest(x, &scales),
            UpsampleMode::Linear => upsample_linear(x, &scales, self.align_corners, self.antialias),
            UpsampleMode::Cubic => upsample_cubic(x, &scales, self.align_corners, self.antialias),
        }
    }
}

impl crate::nn::UnaryLayer for Upsample {
    fn forward(&self, x: &Array) -> Result<Array> {
        Upsample::forward(self, x)
    }
}

fn validate_antialias_align_corners(align_corners: bool, antialias: bool) -> Result<()> {
    if antialias && align_corners {
        return Err(Error::invalid(
            "[Upsample] antialias=True with align_corners=True is not supported. Use \
             align_corners=False for antialiased interpolation.",
        ));
    }
    Ok(())
}

fn check_scales(x: &Array, scales: &[f64]) -> Result<()> {
    if x.ndim() < 3 || x.ndim() - 2 != scales.len() {
        return Err(Error::invalid(
            "[Upsample] A scale needs to be provided for each spatial dimension",
        ));
    }
    Ok(())
}

/// `[1, .., -1, .., 1]`: a vector along axis `dim` of `ndims`.
fn along(a: &Array, dim: usize, ndims: usize) -> Result<Array> {
    let mut shape = vec![1; ndims];
    shape[dim] = -1;
    a.reshape(&shape)
}

/// `int(scale * N)`.
fn out_size(n: i32, scale: f64) -> i32 {
    (scale * f64::from(n)) as i32
}

fn arange_f32(m: i32) -> Result<Array> {
    ops::arange(0, m, 1, Some(Dtype::Float32))
}

/// Python's `_scaled_indices`.
fn scaled_indices(
    n: i32,
    scale: f64,
    align_corners: bool,
    dim: usize,
    ndims: usize,
) -> Result<Array> {
    let m = out_size(n, scale);
    let indices = if align_corners {
        let step = f64::from(n - 1) / f64::from((m - 1).max(1));
        ops::multiply(&arange_f32(m)?, step as f32)?
    } else {
        let step = 1.0 / scale;
        let start = (f64::from(m - 1) * step - f64::from(n) + 1.0) / 2.0;
        ops::subtract(ops::multiply(&arange_f32(m)?, step as f32)?, start as f32)?
    };
    along(&indices, dim, ndims)
}

/// Python's `_nearest_indices`.
fn nearest_indices(n: i32, scale: f64, dim: usize, ndims: usize) -> Result<Array> {
    let m = out_size(n, scale);
    let mut indices = arange_f32(m)?;
    let ratio = (f64::from(n) / f64::from(m)) as f32;
    if m > n {
        indices = ops::subtract(ops::multiply(ops::add(&indices, 0.5f32)?, ratio)?, 0.5f32)?;
        indices = ops::round(&indices, 0)?;
    } else {
        indices = ops::multiply(&indices, ratio)?;
    }
    along(&indices.as_type(Dtype::Uint32)?, dim, ndims)
}

/// Per-dimension sample indices (`uint32`) and weights (`(..., 1)`).
type Taps = Vec<(Array, Array)>;

/// Python's `_linear_indices`.
fn linear_indices(
    n: i32,
    scale: f64,
    align_corners: bool,
    dim: usize,
    ndims: usize,
) -> Result<Taps> {
    let indices = scaled_indices(n, scale, align_corners, dim, ndims)?;
    let indices = ops::clip(&indices, 0, n - 1)?;
    let left = ops::floor(&indices)?;
    let right = ops::ceil(&indices)?;
    let weight = ops::expand_dims(&ops::subtract(&indices, &left)?, -1)?;
    Ok(vec![
        (left.as_type(Dtype::Uint32)?, ops::subtract(1, &weight)?),
        (right.as_type(Dtype::Uint32)?, weight),
    ])
}

/// Python's `_cubic_indices` (`a = -0.75`).
fn cubic_indices(
    n: i32,
    scale: f64,
    align_corners: bool,
    dim: usize,
    ndims: usize,
) -> Result<Taps> {
    let indices = scaled_indices(n, scale, align_corners, dim, ndims)?;
    let l1 = ops::floor(&indices)?;
    let r1 = ops::floor(&ops::add(&indices, 1)?)?;
    let l2 = ops::subtract(&l1, 1)?;
    let r2 = ops::add(&r1, 1)?;
    let weight = |grid: &Array, dist: i32| -> Result<Array> {
        let a = -0.75f32;
        let x = ops::abs(&ops::subtract(&indices, grid)?)?;
        let w = if dist == 1 {
            // ((a + 2) x - (a + 3)) x x + 1
            let t = ops::subtract(ops::multiply(&x, a + 2.0)?, a + 3.0)?;
            ops::add(ops::multiply(ops::multiply(t, &x)?, &x)?, 1)?
        } else {
            // (((x - 5) x + 8) x - 4) a
            let t = ops::multiply(ops::subtract(&x, 5)?, &x)?;
            let t = ops::multiply(ops::add(t, 8)?, &x)?;
            ops::multiply(ops::subtract(t, 4)?, a)?
        };
        ops::expand_dims(&w, -1)
    };
    let mut taps = Vec::with_capacity(4);
    for (grid, dist) in [(&l1, 1), (&r1, 1), (&l2, 2), (&r2, 2)] {
        let w = weight(grid, dist)?;
        let idx = ops::clip(grid, 0, n - 1)?.as_type(Dtype::Uint32)?;
        taps.push((idx, w));
    }
    Ok(taps)
}

/// Python's `_triangle_kernel`.
fn triangle_kernel(x: &Array) -> Result<Array> {
    ops::maximum(ops::subtract(1.0f32, x)?, 0.0f32)
}

/// Python's `_cubic_kernel` (`a = -0.5`).
fn cubic_kernel(x: &Array) -> Result<Array> {
    let a = -0.5f32;
    let t = ops::subtract(ops::multiply(x, a + 2.0)?, a + 3.0)?;
    let inner = ops::add(ops::multiply(ops::multiply(t, x)?, x)?, 1)?;
    let t = ops::multiply(ops::subtract(x, 5)?, x)?;
    let t = ops::multiply(ops::add(t, 8)?, x)?;
    let outer = ops::multiply(ops::subtract(t, 4)?, a)?;
    let outer = ops::r#where(ops::less_equal(x, 2.0f32)?, &outer, 0.0f32)?;
    ops::r#where(ops::less_equal(x, 1.0f32)?, &inner, &outer)
}

/// Python's `_aa_indices`.
fn aa_indices(
    n: i32,
    scale: f64,
    align_corners: bool,
    dim: usize,
    ndims: usize,
    kernel: fn(&Array) -> Result<Array>,
    kernel_radius: f64,
) -> Result<Taps> {
    let indices = scaled_indices(n, scale, align_corners, dim, ndims)?;
    let inv_scale = if scale < 1.0 { 1.0 / scale } else { 1.0 };
    let support = kernel_radius * inv_scale;
    let num_taps = support.ceil() as i32 + 1;
    let floor = ops::floor(&indices)?;
    let mut all_idx = Vec::new();
    let mut all_w = Vec::new();
    for k in (-num_taps + 1)..num_taps {
        let idx = ops::add(&floor, k)?;
        let dist = ops::divide(ops::abs(&ops::subtract(&indices, &idx)?)?, inv_scale as f32)?;
        let w = kernel(&dist)?;
        let inside = ops::logical_and(ops::greater_equal(&idx, 0)?, ops::less(&idx, n)?)?;
        all_idx.push(idx);
        all_w.push(ops::r#where(inside, &w, 0.0f32)?);
    }
    let mut w_sum = all_w[0].clone();
    for w in &all_w[1..] {
        w_sum = ops::add(&w_sum, w)?;
    }
    let w_sum = ops::r#where(ops::greater(&w_sum, 0)?, &w_sum, 1.0f32)?;
    all_idx
        .into_iter()
        .zip(all_w)
        .map(|(idx, w)| {
            let w = ops::expand_dims(&ops::divide(&w, &w_sum)?, -1)?;
            let idx = ops::clip(&idx, 0, n - 1)?.as_type(Dtype::Uint32)?;
            Ok((idx, w))
        })
        .collect()
}

fn linear_aa_indices(
    n: i32,
    scale: f64,
    align_corners: bool,
    dim: usize,
    ndims: usize,
) -> Result<Taps> {
    aa_indices(n, scale, align_corners, dim, ndims, triangle_kernel, 1.0)
}

fn cubic_aa_indices(
    n: i32,
    scale: f64,
    align_corners: bool,
    dim: usize,
    ndims: usize,
) -> Result<Taps> {
    aa_indices(n, scale, align_corners, dim, ndims, cubic_kernel, 2.0)
}

type IndicesFn = fn(i32, f64, bool, usize, usize) -> Result<Taps>;

/// `x[:, idx_0, idx_1, ...]` with outer-product indices: one `take` per
/// spatial axis.
fn gather_outer(x: &Array, indices: &[&Array]) -> Result<Array> {
    let mut out = x.clone();
    for (i, idx) in indices.iter().enumerate() {
        out = ops::take(&out, &idx.reshape(&[-1])?, i as i32 + 1)?;
    }
    Ok(out)
}

/// Python's `upsample_nearest`.
fn upsample_nearest(x: &Array, scales: &[f64]) -> Result<Array> {
    check_scales(x, scales)?;
    let dims = scales.len();
    if scales.iter().all(|s| s.trunc() == *s) {
        let mut shape = x.shape().to_vec();
        for d in 0..dims {
            shape.insert(2 + 2 * d, 1);
        }
        let x = x.reshape(&shape)?;
        for (d, s) in scales.iter().enumerate() {
            shape[2 + 2 * d] = *s as i32;
        }
        let x = ops::broadcast_to(&x, &shape)?;
        for d in 0..dims {
            shape[d + 1] *= shape[d + 2];
            shape.remove(d + 2);
        }
        return x.reshape(&shape);
    }
    let n = &x.shape()[1..x.ndim() - 1];
    let indices = n
        .iter()
        .zip(scales)
        .enumerate()
        .map(|(i, (&n, &s))| nearest_indices(n, s, i, dims))
        .collect::<Result<Vec<_>>>()?;
    gather_outer(x, &indices.iter().collect::<Vec<_>>())
}

/// Python's `_interpolate`: every combination of taps, weighted.
fn interpolate(
    x: &Array,
    scales: &[f64],
    indices_fn: IndicesFn,
    align_corners: bool,
) -> Result<Array> {
    check_scales(x, scales)?;
    let dims = scales.len();
    let n = x.shape()[1..x.ndim() - 1].to_vec();
    let taps = n
        .iter()
        .zip(scales)
        .enumerate()
        .map(|(i, (&n, &s))| indices_fn(n, s, align_corners, i, dims))
        .collect::<Result<Vec<_>>>()?;
    // itertools.product order: the last dimension varies fastest.
    let total: usize = taps.iter().map(Vec::len).product();
    let mut out: Option<Array> = None;
    for mut flat in 0..total {
        let mut choice = vec![0; dims];
        for d in (0..dims).rev() {
            choice[d] = flat % taps[d].len();
            flat /= taps[d].len();
        }
        let idx: Vec<&Array> = (0..dims).map(|d| &taps[d][choice[d]].0).collect();
        let mut weight = taps[0][choice[0]].1.clone();
        for d in 1..dims {
            weight = ops::multiply(&weight, &taps[d][choice[d]].1)?;
        }
        let term = ops::multiply(&weight, &gather_outer(x, &idx)?)?;
        out = Some(match out {
            None => term,
            Some(acc) => ops::add(&acc, &term)?,
        });
    }
    out.ok_or_else(|| Error::invalid("[Upsample] no interpolation taps"))
}

/// Python's `_interpolate_separable`: one spatial dimension at a time.
fn interpolate_separable(
    x: &Array,
    scales: &[f64],
    indices_fn: IndicesFn,
    align_corners: bool,
) -> Result<Array> {
    check_scales(x, scales)?;
    let dims = scales.len();
    let n = x.shape()[1..x.ndim() - 1].to_vec();
    let mut out = x.clone();
    for (i, (&n, &s)) in n.iter().zip(scales).enumerate() {
        let mut acc: Option<Array> = None;
        for (idx, weight) in indices_fn(n, s, align_corners, i, dims)? {
            let sample = ops::take(&out, &idx.reshape(&[-1])?, i as i32 + 1)?;
            let term = ops::multiply(&sample, &weight)?;
            acc = Some(match acc {
                None => term,
                Some(a) => ops::add(&a, &term)?,
            });
        }
        out = acc.ok_or_else(|| Error::invalid("[Upsample] no interpolation taps"))?;
    }
    Ok(out)
}

/// Python's `upsample_linear`.
fn upsample_linear(
    x: &Array,
    scales: &[f64],
    align_corners: bool,
    antialias: bool,
) -> Result<Array> {
    validate_antialias_align_corners(align_corners, antialias)?;
    if antialias {
        interpolate_separable(x, scales, linear_aa_indices, align_corners)
    } else {
        interpolate(x, scales, linear_indices, align_corners)
    }
}

/// Python's `upsample_cubic`.
fn upsample_cubic(
    x: &Array,
    scales: &[f64],
    align_corners: bool,
    antialias: bool,
) -> Result<Array> {
    validate_antialias_align_corners(align_corners, antialias)?;
    if antialias {
        interpolate_separable(x, scales, cubic_aa_indices, align_corners)
    } else {
        interpolate(x, scales, cubic_indices, align_corners)
    }
}
