//! Images for all models: Python's `mlx_vlm.utils.load_image` (open, EXIF
//! transpose, `convert("RGB")`) and Pillow's bicubic `Image.resize`, which
//! the image processors call.
//!
//! Both follow Pillow 13.0 to the byte: the decoded RGB values and the resized
//! pixels are what Python gets, JPEG excepted (zune-jpeg and libjpeg-turbo
//! differ by 1-2 levels, and up to about 14 where chroma is subsampled).

use std::io::Cursor;
use std::path::PathBuf;

use base64::Engine;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, metadata::Orientation};

use crate::{Error, Result};

/// Where an image comes from: the inputs Python's
/// `mlx_vlm.utils.load_image` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A file on disk.
    Path(PathBuf),
    /// The encoded file in memory (Python's `BytesIO`).
    Bytes(Vec<u8>),
    /// A `data:image/...;base64,...` URI.
    DataUri(String),
    /// An `http://` or `https://` URL.
    Url(String),
}

impl ImageSource {
    /// Classifies a string as Python's `load_image` does: `data:image/`
    /// prefix, then `http(s)://`, else a path.
    pub fn parse(source: &str) -> Self {
        if source.starts_with("data:image/") {
            ImageSource::DataUri(source.to_owned())
        } else if source.starts_with("http://") || source.starts_with("https://") {
            ImageSource::Url(source.to_owned())
        } else {
            ImageSource::Path(PathBuf::from(source))
        }
    }

    /// How errors name this source: the path, the URL, `<bytes>` or
    /// `<data URI>`.
    pub fn name(&self) -> String {
        match self {
            ImageSource::Path(p) => p.display().to_string(),
            ImageSource::Bytes(_) => "<bytes>".to_owned(),
            ImageSource::DataUri(_) => "<data URI>".to_owned(),
            ImageSource::Url(u) => u.clone(),
        }
    }
}

impl From<&str> for ImageSource {
    fn from(source: &str) -> Self {
        ImageSource::parse(source)
    }
}

impl From<PathBuf> for ImageSource {
    fn from(path: PathBuf) -> Self {
        ImageSource::Path(path)
    }
}

impl From<Vec<u8>> for ImageSource {
    fn from(bytes: Vec<u8>) -> Self {
        ImageSource::Bytes(bytes)
    }
}

fn image_error(source: &ImageSource, message: impl Into<String>) -> Error {
    Error::Image {
        source_name: source.name(),
        message: message.into(),
    }
}

/// Opens an image, applies its EXIF orientation and converts it to 8-bit
/// RGB.
///
/// Python: `mlx_vlm.utils.load_image`. Decodes PNG, JPEG, WebP, GIF (first
/// frame), BMP and TIFF. URLs are not fetched: download the file and pass
/// its path.
pub fn load_image(source: &ImageSource) -> Result<RgbImage> {
    let owned;
    let bytes: &[u8] = match source {
        ImageSource::Path(path) => {
            if !path.exists() {
                return Err(Error::MissingFile {
                    path: path.clone(),
                    hint: "pass the path of an existing image file".to_owned(),
                });
            }
            owned = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            &owned
        }
        ImageSource::Bytes(bytes) => bytes,
        ImageSource::DataUri(uri) => {
            let Some((_, data)) = uri.split_once(',') else {
                return Err(image_error(
                    source,
                    "invalid data URI format - missing comma separator",
                ));
            };
            // Python's b64decode skips characters outside the alphabet, such
            // as the line breaks of wrapped base64.
            let data: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            owned = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| image_error(source, format!("invalid base64 payload: {e}")))?;
            &owned
        }
        ImageSource::Url(_) => {
            return Err(image_error(
                source,
                "URLs are not fetched; download the image and pass its path or bytes",
            ));
        }
    };
    decode(source, bytes)
}

fn decode(source: &ImageSource, bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(image_error(source, "the file is empty (0 bytes)"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(source, e.to_string()))?;
    if reader.format().is_none() {
        return Err(image_error(
            source,
            "unknown image format; supported: PNG, JPEG, WebP, GIF, BMP, TIFF",
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| image_error(source, format!("cannot decode: {e}")))?;
    // Pillow's exif_transpose ignores unreadable EXIF, so a bad tag is no
    // reason to refuse the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded = DynamicImage::from_decoder(decoder)
        .map_err(|e| image_error(source, format!("cannot decode: {e}")))?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(image_error(
            source,
            format!("has zero size {}x{}", decoded.width(), decoded.height()),
        ));
    }
    let mut rgb = DynamicImage::ImageRgb8(convert_rgb(decoded));
    rgb.apply_orientation(orientation);
    Ok(rgb.into_rgb8())
}

/// Pillow's `convert("RGB")` of what Pillow would have opened: alpha is
/// dropped (not composited) and 16-bit samples are cut as Pillow's modes
/// do: 16-bit grayscale (`I;16`) is clipped to 255, while 16-bit RGB(A) and
/// gray+alpha keep their high byte. The image crate would scale instead.
fn convert_rgb(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(gray) => {
            RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
                let v = u8::try_from(gray.get_pixel(x, y).0[0]).unwrap_or(u8::MAX);
                image::Rgb([v, v, v])
            })
        }
        DynamicImage::ImageLumaA16(gray) => {
            RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
                let [v, _] = gray.get_pixel(x, y).0.map(high_byte);
                image::Rgb([v, v, v])
            })
        }
        DynamicImage::ImageRgb16(rgb) => RgbImage::from_fn(rgb.width(), rgb.height(), |x, y| {
            image::Rgb(rgb.get_pixel(x, y).0.map(high_byte))
        }),
        DynamicImage::ImageRgba16(rgba) => {
            RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                let [r, g, b, _] = rgba.get_pixel(x, y).0.map(high_byte);
                image::Rgb([r, g, b])
            })
        }
        other => other.to_rgb8(),
    }
}

fn high_byte(v: u16) -> u8 {
    v.to_be_bytes()[0]
}

// ------------------------------------------------------------- resampling

/// Fixed-point bits of Pillow's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Support of the bicubic kernel, in source pixels at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Keys' cubic with a = -0.5, as Pillow's `bicubic_filter`.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first source index, tap count, and `ksize` fixed-point
/// weights (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i64>,
}

fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    // Pillow passes the box as floats; integral sizes are exact in f32.
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i64; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for (xx, row) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `as` truncates toward zero like C's (int) cast, which Pillow relies on.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let taps = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, w) in k.iter_mut().enumerate() {
            *w = if x < taps {
                bicubic_filter(((x + xmin) as f64 - center + 0.5) * ss)
            } else {
                0.0
            };
            ww += *w;
        }
        for (dst, &w) in row.iter_mut().zip(&k) {
            let w = if ww != 0.0 { w / ww } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 {
                (fixed - 0.5) as i64
            } else {
                (fixed + 0.5) as i64
            };
        }
        bounds.push((xmin, taps));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    if v >= 1 << (PRECISION_BITS + 8) {
        u8::MAX
    } else if v <= 0 {
        0
    } else {
        u8::try_from(v >> PRECISION_BITS).unwrap_or(u8::MAX)
    }
}

/// One output sample: the weighted taps `src(i)` for `i` in the bounds.
fn convolve(coeffs: &Coeffs, out: usize, src: impl Fn(usize) -> u8) -> u8 {
    let (xmin, taps) = coeffs.bounds.get(out).copied().unwrap_or((0, 0));
    let row = coeffs
        .weights
        .get(out * coeffs.ksize..(out + 1) * coeffs.ksize)
        .unwrap_or(&[]);
    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
    for (i, &k) in row.iter().take(taps).enumerate() {
        ss += i64::from(src(xmin + i)) * k;
    }
    clip8(ss)
}

/// Resizes with Pillow's bicubic filter, pixel for pixel as Python gets.
///
/// Python: `PIL.Image.Image.resize((width, height), Image.BICUBIC)`
/// (Pillow's `ImagingResample`): separable Keys cubic (a = -0.5) whose
/// support widens with the downscale factor, 22-bit fixed-point weights,
/// a horizontal then a vertical pass (the other way round when the width
/// does not shrink but the height does, as Pillow 13 does), each rounded to
/// `u8`.
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (in_w, in_h) = image.dimensions();
    if width == 0 || height == 0 || in_w == 0 || in_h == 0 {
        return Err(Error::InvalidArgument(format!(
            "cannot resize a {in_w}x{in_h} image to {width}x{height}: sizes must be positive"
        )));
    }
    if (in_w, in_h) == (width, height) {
        return Ok(image.clone());
    }
    let (in_w, in_h, out_w, out_h) = (
        in_w as usize,
        in_h as usize,
        width as usize,
        height as usize,
    );
    let horiz = precompute_coeffs(in_w, out_w);
    let mut vert = precompute_coeffs(in_h, out_h);
    let mut buf = image.as_raw().clone();
    let mut buf_w = in_w;
    // Pillow 13 runs the vertical pass first when only the height shrinks
    // (fewer rows for the horizontal pass); the order changes the rounding.
    let horizontal_first = !(out_w >= in_w && out_h < in_h);
    if horizontal_first {
        if out_w != in_w {
            // Only the source rows the vertical pass reads are resampled.
            let first = vert.bounds.first().map_or(0, |b| b.0);
            let last = vert.bounds.last().map_or(in_h, |b| b.0 + b.1);
            for b in &mut vert.bounds {
                b.0 = b.0.saturating_sub(first);
            }
            buf = horizontal_pass(&buf, in_w, first, last - first, &horiz);
            buf_w = out_w;
        }
        if out_h != in_h {
            buf = vertical_pass(&buf, buf_w, &vert);
        }
    } else {
        if out_h != in_h {
            buf = vertical_pass(&buf, in_w, &vert);
        }
        if out_w != in_w {
            buf = horizontal_pass(&buf, in_w, 0, out_h, &horiz);
        }
    }
    RgbImage::from_raw(width, height, buf).ok_or_else(|| {
        Error::InvalidArgument(format!("resized buffer does not hold {width}x{height}"))
    })
}

fn sample(buf: &[u8], i: usize) -> u8 {
    buf.get(i).copied().unwrap_or(0)
}

/// Pillow's `ImagingResampleHorizontal_8bpc` over `rows` rows from `first`.
fn horizontal_pass(src: &[u8], in_w: usize, first: usize, rows: usize, coeffs: &Coeffs) -> Vec<u8> {
    let out_w = coeffs.bounds.len();
    let mut out = vec![0u8; rows * out_w * 3];
    for (y, row) in out.chunks_exact_mut(out_w * 3).enumerate() {
        let base = (y + first) * in_w * 3;
        for (xx, px) in row.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = convolve(coeffs, xx, |x| sample(src, base + x * 3 + c));
            }
        }
    }
    out
}

/// Pillow's `ImagingResampleVertical_8bpc`.
fn vertical_pass(src: &[u8], width: usize, coeffs: &Coeffs) -> Vec<u8> {
    let out_h = coeffs.bounds.len();
    let mut out = vec![0u8; out_h * width * 3];
    for (yy, row) in out.chunks_exact_mut(width * 3).enumerate() {
        for (xx, px) in row.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = convolve(coeffs, yy, |y| sample(src, (y * width + xx) * 3 + c));
            }
        }
    }
    out
}
