//! The parts of Python's `mlx_vlm/models/kernels.py` the models use (so
//! far `bicubic_interpolate`).
//!
//! Divergence from Python: `bicubic_interpolate` is always the pure-MLX
//! path Python takes without Metal (`_bicubic_interpolate_mlx`), the one
//! the CPU reference runs; with Metal Python runs a custom kernel instead,
//! whose results may differ in the last bits.

use mlx_rs::{Array, Dtype, ops};

use crate::{Error, Result};

/// Python: `_cubic_weight(t, a)`: the cubic convolution kernel (`a = -0.75`
/// as PyTorch's plain bicubic, `-0.5` as Pillow's).
pub fn cubic_weight(t: &Array, a: f32) -> Result<Array> {
    let at = ops::abs(t)?;
    let at2 = ops::multiply(&at, &at)?;
    let at3 = ops::multiply(&at2, &at)?;
    let w1 = ops::add(
        &ops::subtract(
            &ops::multiply(a + 2.0, &at3)?,
            &ops::multiply(a + 3.0, &at2)?,
        )?,
        1.0f32,
    )?;
    let w2 = ops::subtract(
        &ops::add(
            &ops::subtract(&ops::multiply(a, &at3)?, &ops::multiply(5.0 * a, &at2)?)?,
            &ops::multiply(8.0 * a, &at)?,
        )?,
        4.0 * a,
    )?;
    let outer = ops::r#where(&ops::less(&at, 2.0f32)?, &w2, &ops::zeros_like(t, None)?)?;
    Ok(ops::r#where(&ops::less_equal(&at, 1.0f32)?, &w1, &outer)?)
}

/// Python's `_weights_1d`: for each output coordinate the input pixels of
/// its taps `[out, taps]` (clamped into range) and their normalised
/// weights (zero outside the image).
fn weights_1d(
    coords: &Array,
    in_size: i32,
    fs: f32,
    support: f32,
    a: f32,
) -> Result<(Array, Array)> {
    let start = ops::add(
        &ops::floor(&ops::subtract(coords, support)?)?.as_type(Dtype::Int32)?,
        1,
    )?;
    let n_taps = (2.0 * support + 1.0) as i32;
    let offsets = ops::arange(0, n_taps, 1, Some(Dtype::Int32))?;
    let pix = ops::add(
        &ops::expand_dims(&start, 1)?,
        &ops::expand_dims(&offsets, 0)?,
    )?;
    let dist = ops::subtract(&ops::expand_dims(coords, 1)?, &pix.as_type(Dtype::Float32)?)?;
    let w = cubic_weight(&ops::divide(&dist, fs)?, a)?;
    let inside = ops::logical_and(&ops::greater_equal(&pix, 0)?, &ops::less(&pix, in_size)?)?;
    let w = ops::multiply(&w, &inside)?;
    let pix = ops::clip(&pix, 0, in_size - 1)?;
    let w = ops::divide(&w, &ops::add(&ops::sum(&w, -1, true)?, 1e-8f32)?)?;
    Ok((pix, w))
}

/// Python: `bicubic_interpolate(x, size=(out_h, out_w), align_corners,
/// antialias)` on `[batch, channels, height, width]`, computed in float32
/// and cast back to `x`'s dtype.
pub fn bicubic_interpolate(
    x: &Array,
    size: (i32, i32),
    align_corners: bool,
    antialias: bool,
) -> Result<Array> {
    let shape = x.shape().to_vec();
    let [b, c, in_h, in_w] = shape[..] else {
        return Err(Error::InvalidArgument(format!(
            "bicubic_interpolate takes [batch, channels, height, width], got {shape:?}"
        )));
    };
    let (out_h, out_w) = size;
    if out_h <= 0 || out_w <= 0 || in_h <= 0 || in_w <= 0 {
        return Err(Error::InvalidArgument(format!(
            "bicubic_interpolate from {in_h}x{in_w} to {out_h}x{out_w}: sizes must be positive"
        )));
    }
    let input_dtype = x.dtype();
    let x = x.as_type(Dtype::Float32)?;
    let scale_h = out_h as f32 / in_h as f32;
    let scale_w = out_w as f32 / in_w as f32;
    let coords = |out: i32, inn: i32| -> Result<Array> {
        let r = ops::arange(0, out, 1, Some(Dtype::Float32))?;
        if align_corners && out_h > 1 && out_w > 1 {
            Ok(ops::divide(
                &ops::multiply(&r, (inn - 1) as f32)?,
                (out - 1) as f32,
            )?)
        } else {
            let r = ops::divide(&ops::add(&r, 0.5f32)?, out as f32)?;
            Ok(ops::subtract(&ops::multiply(&r, inn as f32)?, 0.5f32)?)
        }
    };
    let y_out = coords(out_h, in_h)?;
    let x_out = coords(out_w, in_w)?;
    let fs = |scale: f32| {
        if antialias && scale < 1.0 {
            1.0 / scale
        } else {
            1.0
        }
    };
    let (fs_h, fs_w) = (fs(scale_h), fs(scale_w));
    let a = if antialias { -0.5 } else { -0.75 };
    let (pix_y, wy) = weights_1d(&y_out, in_h, fs_h, 2.0 * fs_h, a)?;
    let (pix_x, wx) = weights_1d(&x_out, in_w, fs_w, 2.0 * fs_w, a)?;
    let th = pix_y.shape()[1];
    let tw = pix_x.shape()[1];
    // Height first: gather rows, contract over the taps.
    let gathered = ops::take(&x, &pix_y.reshape(&[-1])?, 2)?.reshape(&[b, c, out_h, th, in_w])?;
    let wy = wy.reshape(&[1, 1, out_h, th, 1])?;
    let tmp = ops::sum(&ops::multiply(&gathered, &wy)?, 3, false)?;
    // Then width.
    let gathered =
        ops::take(&tmp, &pix_x.reshape(&[-1])?, 3)?.reshape(&[b, c, out_h, out_w, tw])?;
    let wx = wx.reshape(&[1, 1, 1, out_w, tw])?;
    let result = ops::sum(&ops::multiply(&gathered, &wx)?, 4, false)?;
    Ok(if input_dtype != Dtype::Float32 {
        result.as_type(input_dtype)?
    } else {
        result
    })
}
