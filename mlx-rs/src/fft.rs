//! Fast Fourier transforms: mlx-c's `fft.h`, as Python's `mlx.core.fft`.
//!
//! Every function runs on the thread's current stream. The 1-D transforms
//! take [`FftOptions`] (`n`, `axis`, `norm`), the 2-D and n-D ones
//! [`FftnOptions`] (`s`, `axes`, `norm`), each with Python's defaults.
//! Complex results are [`Complex64`](crate::Dtype::Complex64).
//!
//! ```
//! use mlx_rs::{Array, fft};
//!
//! let x = Array::from_slice(&[1.0f32, 0.0, -1.0, 0.0], &[4])?;
//! let spectrum = fft::rfft(&x, fft::FftOptions::default())?;
//! assert_eq!(spectrum.shape(), [3]);
//! let back = fft::irfft(&spectrum, fft::FftOptions::default().n(4))?;
//! assert_eq!(back.shape(), [4]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::ffi::c_int;

use mlx_sys as sys;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ops::Axes;
use crate::stream::Stream;

/// The scaling of a transform: Python's `norm="backward"`, `"ortho"` or
/// `"forward"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FftNorm {
    /// No scaling forward, `1/n` on the inverse (`"backward"`, the default).
    #[default]
    Backward,
    /// `1/sqrt(n)` both ways (`"ortho"`).
    Ortho,
    /// `1/n` forward, no scaling on the inverse (`"forward"`).
    Forward,
}

impl FftNorm {
    fn to_raw(self) -> sys::mlx_fft_norm {
        match self {
            FftNorm::Backward => sys::mlx_fft_norm_::MLX_FFT_NORM_BACKWARD,
            FftNorm::Ortho => sys::mlx_fft_norm_::MLX_FFT_NORM_ORTHO,
            FftNorm::Forward => sys::mlx_fft_norm_::MLX_FFT_NORM_FORWARD,
        }
    }
}

/// Options of the 1-D transforms ([`fft`], [`ifft`], [`rfft`], [`irfft`]),
/// with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FftOptions {
    /// The size of the transformed axis; the input is truncated or padded
    /// with zeros to it (`None`: the input's size, or `2 * (size - 1)` for
    /// [`irfft`]).
    pub n: Option<i32>,
    /// The axis to transform (`-1`).
    pub axis: i32,
    /// The scaling ([`FftNorm::Backward`]).
    pub norm: FftNorm,
}

impl Default for FftOptions {
    fn default() -> Self {
        FftOptions {
            n: None,
            axis: -1,
            norm: FftNorm::Backward,
        }
    }
}

impl FftOptions {
    /// These options with `n` set.
    pub fn n(mut self, n: i32) -> Self {
        self.n = Some(n);
        self
    }

    /// These options with `axis` set.
    pub fn axis(mut self, axis: i32) -> Self {
        self.axis = axis;
        self
    }

    /// These options with `norm` set.
    pub fn norm(mut self, norm: FftNorm) -> Self {
        self.norm = norm;
        self
    }
}

/// Options of the 2-D and n-D transforms ([`fft2`], [`fftn`], [`rfft2`],
/// ...), with Python's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FftnOptions {
    /// The sizes of the transformed axes; the input is truncated or padded
    /// with zeros to them (`None`: the input's sizes, with the last one
    /// `2 * (size - 1)` for the inverse real transforms). Needs `axes`.
    pub s: Option<Vec<i32>>,
    /// The axes to transform (`None`: every axis for the n-D transforms,
    /// `[-2, -1]` for the 2-D ones).
    pub axes: Option<Vec<i32>>,
    /// The scaling ([`FftNorm::Backward`]).
    pub norm: FftNorm,
}

impl FftnOptions {
    /// These options with the sizes `s` set.
    pub fn s(mut self, s: impl Into<Vec<i32>>) -> Self {
        self.s = Some(s.into());
        self
    }

    /// These options with `axes` set.
    pub fn axes(mut self, axes: impl Into<Vec<i32>>) -> Self {
        self.axes = Some(axes.into());
        self
    }

    /// These options with `norm` set.
    pub fn norm(mut self, norm: FftNorm) -> Self {
        self.norm = norm;
        self
    }
}

/// How a transform's default sizes follow from its input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The output size of each axis is the input's.
    Same,
    /// The inverse real transforms: the last axis has `2 * (size - 1)`.
    InverseReal,
}

type OneDim = unsafe extern "C" fn(
    *mut sys::mlx_array,
    sys::mlx_array,
    c_int,
    c_int,
    sys::mlx_fft_norm,
    sys::mlx_stream,
) -> c_int;

type ManyDim = unsafe extern "C" fn(
    *mut sys::mlx_array,
    sys::mlx_array,
    *const c_int,
    usize,
    *const c_int,
    usize,
    sys::mlx_fft_norm,
    sys::mlx_stream,
) -> c_int;

/// The size of `axis` of `a`, naming the transform if it is out of range.
fn axis_size(a: &Array, axis: i32, name: &str) -> Result<i32> {
    a.dim(axis).map_err(|_| {
        Error::invalid(format!(
            "[{name}] axis {axis} is out of range for an array of {} dimensions",
            a.ndim()
        ))
    })
}

/// The output size an inverse real transform gets from `size` input bins.
fn inverse_real_size(size: i32) -> i32 {
    2 * (size - 1)
}

fn one_dim(a: &Array, options: FftOptions, kind: Kind, name: &str, c: OneDim) -> Result<Array> {
    let n = match options.n {
        Some(n) => n,
        None => {
            let size = axis_size(a, options.axis, name)?;
            match kind {
                Kind::Same => size,
                Kind::InverseReal => inverse_real_size(size),
            }
        }
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; `c` is an mlx-c transform that writes a new
    // array into `res`.
    Array::try_from_op(|res| unsafe {
        c(
            res,
            a.as_raw(),
            n,
            options.axis,
            options.norm.to_raw(),
            s.as_raw(),
        )
    })
}

fn many_dim(
    a: &Array,
    options: FftnOptions,
    default_axes: Option<[i32; 2]>,
    kind: Kind,
    name: &str,
    c: ManyDim,
) -> Result<Array> {
    let axes: Vec<i32> = match (options.axes, default_axes) {
        (Some(axes), _) => axes,
        (None, _) if options.s.is_some() && default_axes.is_none() => {
            return Err(Error::invalid(format!(
                "[{name}] `axes` should not be `None` if `s` is not `None`."
            )));
        }
        (None, Some(default)) => default.to_vec(),
        (None, None) => (0..a.ndim() as i32).collect(),
    };
    let sizes = match options.s {
        Some(sizes) => sizes,
        None => {
            let mut sizes = axes
                .iter()
                .map(|&axis| axis_size(a, axis, name))
                .collect::<Result<Vec<i32>>>()?;
            if let (Kind::InverseReal, Some(last)) = (kind, sizes.last_mut()) {
                *last = inverse_real_size(*last);
            }
            sizes
        }
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; both slices outlive the call, which copies
    // them; `c` is an mlx-c transform that writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        c(
            res,
            a.as_raw(),
            sizes.as_ptr(),
            sizes.len(),
            axes.as_ptr(),
            axes.len(),
            options.norm.to_raw(),
            s.as_raw(),
        )
    })
}

/// The 1-D discrete Fourier transform (`mx.fft.fft`).
pub fn fft(a: &Array, options: FftOptions) -> Result<Array> {
    one_dim(a, options, Kind::Same, "fft", sys::mlx_fft_fft)
}

/// The 1-D inverse discrete Fourier transform (`mx.fft.ifft`).
pub fn ifft(a: &Array, options: FftOptions) -> Result<Array> {
    one_dim(a, options, Kind::Same, "ifft", sys::mlx_fft_ifft)
}

/// The 1-D transform of a real input, keeping the `n // 2 + 1`
/// non-negative frequencies (`mx.fft.rfft`).
pub fn rfft(a: &Array, options: FftOptions) -> Result<Array> {
    one_dim(a, options, Kind::Same, "rfft", sys::mlx_fft_rfft)
}

/// The inverse of [`rfft`], a real array of size `n` along the axis
/// (`mx.fft.irfft`).
pub fn irfft(a: &Array, options: FftOptions) -> Result<Array> {
    one_dim(a, options, Kind::InverseReal, "irfft", sys::mlx_fft_irfft)
}

/// The 2-D discrete Fourier transform (`mx.fft.fft2`).
///
/// `axes: None` means Python's default `[-2, -1]`; for Python's explicit
/// `axes=None` (every axis) use [`fftn`].
pub fn fft2(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(
        a,
        options,
        Some([-2, -1]),
        Kind::Same,
        "fft2",
        sys::mlx_fft_fft2,
    )
}

/// The 2-D inverse discrete Fourier transform (`mx.fft.ifft2`).
///
/// `axes: None` means Python's default `[-2, -1]`.
pub fn ifft2(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(
        a,
        options,
        Some([-2, -1]),
        Kind::Same,
        "ifft2",
        sys::mlx_fft_ifft2,
    )
}

/// The 2-D transform of a real input (`mx.fft.rfft2`); the last axis keeps
/// `s[-1] // 2 + 1` frequencies.
///
/// `axes: None` means Python's default `[-2, -1]`.
pub fn rfft2(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(
        a,
        options,
        Some([-2, -1]),
        Kind::Same,
        "rfft2",
        sys::mlx_fft_rfft2,
    )
}

/// The inverse of [`rfft2`], a real array (`mx.fft.irfft2`).
///
/// `axes: None` means Python's default `[-2, -1]`.
pub fn irfft2(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(
        a,
        options,
        Some([-2, -1]),
        Kind::InverseReal,
        "irfft2",
        sys::mlx_fft_irfft2,
    )
}

/// The n-D discrete Fourier transform (`mx.fft.fftn`).
pub fn fftn(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(a, options, None, Kind::Same, "fftn", sys::mlx_fft_fftn)
}

/// The n-D inverse discrete Fourier transform (`mx.fft.ifftn`).
pub fn ifftn(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(a, options, None, Kind::Same, "ifftn", sys::mlx_fft_ifftn)
}

/// The n-D transform of a real input (`mx.fft.rfftn`); the last axis keeps
/// `s[-1] // 2 + 1` frequencies.
pub fn rfftn(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(a, options, None, Kind::Same, "rfftn", sys::mlx_fft_rfftn)
}

/// The inverse of [`rfftn`], a real array (`mx.fft.irfftn`).
pub fn irfftn(a: &Array, options: FftnOptions) -> Result<Array> {
    many_dim(
        a,
        options,
        None,
        Kind::InverseReal,
        "irfftn",
        sys::mlx_fft_irfftn,
    )
}

/// The sample frequencies of an [`fft`] of size `n` with sample spacing `d`
/// (`mx.fft.fftfreq`; Python's default `d` is `1.0`).
pub fn fftfreq(n: i32, d: f64) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid stream; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_fft_fftfreq(res, n, d, s.as_raw()) })
}

/// The sample frequencies of an [`rfft`] of size `n` with sample spacing
/// `d` (`mx.fft.rfftfreq`; Python's default `d` is `1.0`).
pub fn rfftfreq(n: i32, d: f64) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid stream; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_fft_rfftfreq(res, n, d, s.as_raw()) })
}

type Shift = unsafe extern "C" fn(
    *mut sys::mlx_array,
    sys::mlx_array,
    *const c_int,
    usize,
    sys::mlx_stream,
) -> c_int;

fn shift(a: &Array, axes: Axes, c: Shift) -> Result<Array> {
    let axes: Vec<i32> = match axes {
        Axes::All => (0..a.ndim() as i32).collect(),
        Axes::One(axis) => vec![axis],
        Axes::Many(axes) => axes,
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; `axes` outlives the call, which copies it; `c`
    // writes a new array into `res`.
    Array::try_from_op(|res| unsafe { c(res, a.as_raw(), axes.as_ptr(), axes.len(), s.as_raw()) })
}

/// Moves the zero frequency to the centre of `axes` ([`Axes::All`]:
/// every axis, Python's `None`) (`mx.fft.fftshift`).
pub fn fftshift(a: &Array, axes: impl Into<Axes>) -> Result<Array> {
    shift(a, axes.into(), sys::mlx_fft_fftshift)
}

/// The inverse of [`fftshift`] (`mx.fft.ifftshift`).
pub fn ifftshift(a: &Array, axes: impl Into<Axes>) -> Result<Array> {
    shift(a, axes.into(), sys::mlx_fft_ifftshift)
}
