//! Images for all models: Python's `mlx_vlm.utils.load_image` (open, EXIF
//! transpose, `convert("RGB")`) and Pillow's `Image.resize` (every filter:
//! [`resize`], [`resize_bicubic`]), which the image processors call.
//!
//! Both follow Pillow 13.0 to the byte: the decoded RGB values and the resized
//! pixels are what Python gets, JPEG excepted (zune-jpeg and libjpeg-turbo
//! differ by 1-2 levels, and up to about 14 where chroma is subsampled).
//!
//! Input limits (bad input is an [`Error`], never a crash, a hang or an
//! unbounded allocation):
//!
//! - Decompression bombs: as Pillow's `Image.open`, an image declaring more
//!   than [`MAX_DECODED_PIXELS`] (2 x `PIL.Image.MAX_IMAGE_PIXELS`) pixels is
//!   refused from its header, before any pixel is decoded, with an
//!   [`Error::LimitExceeded`] naming the size and the limit.
//! - The decoder's allocation is capped at [`MAX_DECODE_ALLOC`] bytes
//!   (through the image crate's `Limits`).
//!
//! Divergences from Python (stricter, or missing):
//!
//! - Pillow warns (`DecompressionBombWarning`) between `MAX_IMAGE_PIXELS` and
//!   twice that; this module has no warning channel and accepts that band
//!   silently.
//! - The allocation cap has no Pillow counterpart: an image within the pixel
//!   limit whose decoded buffer (at the decoder's own sample depth) would
//!   exceed [`MAX_DECODE_ALLOC`] is refused (only possible for >8-byte
//!   pixels, which no supported format produces at the pixel limit).
//! - A JPEG whose data ends before its end-of-image marker is refused as
//!   Pillow refuses it (`OSError: image file is truncated`); zune-jpeg on its
//!   own would fill the missing rows with gray. A JPEG missing only its
//!   end-of-image marker is refused too (Pillow's libjpeg reads it as
//!   "premature end of JPEG file").

use std::io::Cursor;
use std::path::PathBuf;

use base64::Engine;
use image::{
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage, metadata::Orientation,
};

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

/// Pillow's `PIL.Image.MAX_IMAGE_PIXELS` (`1024 * 1024 * 1024 // 4 // 3`):
/// above it Pillow warns of a possible decompression bomb.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// The most pixels [`load_image`] decodes: twice [`MAX_IMAGE_PIXELS`], above
/// which Pillow raises `DecompressionBombError`.
pub const MAX_DECODED_PIXELS: u64 = 2 * MAX_IMAGE_PIXELS;

/// The most bytes the decoder may allocate: [`MAX_DECODED_PIXELS`] at 8 bytes
/// a pixel (16-bit RGBA, the widest layout the supported formats decode to),
/// about 1.33 GiB.
pub const MAX_DECODE_ALLOC: u64 = MAX_DECODED_PIXELS * 8;

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
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_error(source, e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(image_error(
            source,
            "unknown image format; supported: PNG, JPEG, WebP, GIF, BMP, TIFF",
        ));
    };
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(|m| image_error(source, m))?;
    }
    let mut limits = Limits::default();
    // No side may exceed the pixel limit on its own (a 1-pixel-high image is
    // the widest allowed); the product is checked below.
    let side = u32::try_from(MAX_DECODED_PIXELS).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => pixel_limit_error(source, None, &e.to_string()),
        e => image_error(source, format!("cannot decode: {e}")),
    })?;
    // From the header only: nothing is decoded yet.
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width.max(1)) * u64::from(height.max(1));
    if pixels > MAX_DECODED_PIXELS {
        return Err(pixel_limit_error(source, Some((width, height)), ""));
    }
    let total_bytes = decoder.total_bytes();
    if total_bytes > MAX_DECODE_ALLOC {
        return Err(Error::LimitExceeded {
            context: format!("image {}", source.name()),
            limit: "decoder allocation",
            message: format!(
                "{width}x{height} decodes to {total_bytes} bytes, more than the limit of \
                 {MAX_DECODE_ALLOC} bytes; downscale the image or convert it to 8-bit"
            ),
        });
    }
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

/// Pillow's `DecompressionBombError`, as an [`Error::LimitExceeded`].
fn pixel_limit_error(source: &ImageSource, size: Option<(u32, u32)>, detail: &str) -> Error {
    let found = match size {
        Some((w, h)) => format!(
            "image size {w}x{h} ({} pixels)",
            u64::from(w.max(1)) * u64::from(h.max(1))
        ),
        None => format!("image dimensions ({detail})"),
    };
    Error::LimitExceeded {
        context: format!("image {}", source.name()),
        limit: "image pixels",
        message: format!(
            "{found} exceeds the limit of {MAX_DECODED_PIXELS} pixels (Pillow's \
             DecompressionBombError: could be a decompression bomb); downscale the image \
             below the limit"
        ),
    }
}

/// Refuses a JPEG whose data ends before its end-of-image marker (`FFD9`),
/// as Pillow does (`OSError: image file is truncated`).
///
/// Walks the marker segments by their lengths (so an EXIF thumbnail's own
/// markers are skipped) and the entropy-coded data of each scan (stuffed
/// `FF00` and restart markers included). Bytes that are not where a marker
/// should be are skipped as libjpeg skips them; other damage is left to the
/// decoder.
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let truncated = |at: usize, inside: &str| {
        format!(
            "image file is truncated: the JPEG data ends at byte {at} inside {inside}, \
             without the end-of-image marker; the file is incomplete, download or copy it again"
        )
    };
    let len = bytes.len();
    let mut i = 2; // after SOI
    loop {
        // Find the next marker: 0xFF, any fill bytes, then the marker code.
        while bytes.get(i).is_some_and(|&b| b != 0xFF) {
            i += 1;
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err(truncated(len, "the marker segments"));
        };
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Standalone markers: SOI, restarts, TEM.
            0xD8 | 0xD0..=0xD7 | 0x01 => {}
            _ => {
                let segment = match bytes.get(i..i + 2) {
                    Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                    _ => return Err(truncated(len, &format!("marker FF{marker:02X}"))),
                };
                i += segment;
                if i > len {
                    return Err(truncated(len, &format!("marker segment FF{marker:02X}")));
                }
                if marker == 0xDA {
                    // Entropy-coded data up to the next marker that is not a
                    // stuffed byte (FF00) or a restart (FFD0-FFD7).
                    loop {
                        while bytes.get(i).is_some_and(|&b| b != 0xFF) {
                            i += 1;
                        }
                        let mut j = i;
                        while bytes.get(j) == Some(&0xFF) {
                            j += 1;
                        }
                        match bytes.get(j) {
                            None => return Err(truncated(len, "the scan data")),
                            Some(0x00 | 0xD0..=0xD7) => i = j + 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
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

/// Pillow's resampling filters (`PIL.Image.Resampling`), which the
/// `resample` setting of an image processor names by integer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `NEAREST` (0): nearest neighbour, Pillow's affine scaling.
    Nearest,
    /// `LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
    /// `BILINEAR` (2): triangle, support 1.
    Bilinear,
    /// `BICUBIC` (3): Keys' cubic with a = -0.5, support 2.
    Bicubic,
    /// `BOX` (4): box, support 0.5.
    Box,
    /// `HAMMING` (5): Hamming-windowed sinc, support 1.
    Hamming,
}

impl Filter {
    /// The filter of Pillow's integer code (`PIL.Image.Resampling`), or
    /// `None` for a code Pillow does not know.
    pub fn from_pil(code: i64) -> Option<Self> {
        Some(match code {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    /// Pillow's integer code of the filter.
    pub fn pil_code(self) -> i64 {
        match self {
            Filter::Nearest => 0,
            Filter::Lanczos => 1,
            Filter::Bilinear => 2,
            Filter::Bicubic => 3,
            Filter::Box => 4,
            Filter::Hamming => 5,
        }
    }

    /// Support in source pixels at scale 1 (Pillow's `struct filter`).
    fn support(self) -> f64 {
        match self {
            Filter::Box | Filter::Nearest => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The kernel, as Pillow's `box_filter`, `bilinear_filter`, ...
    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box | Filter::Nearest => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Filter::Bicubic => bicubic_filter(x),
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc_filter(x) * sinc_filter(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc_filter(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

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

fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    // Pillow passes the box as floats; integral sizes are exact in f32.
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
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
                filter.eval(((x + xmin) as f64 - center + 0.5) * ss)
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
/// a horizontal then a vertical pass (the other way round when the height
/// shrinks by more than twice as many pixels as the width, as Pillow 13
/// does), each rounded to `u8`.
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    resize(image, width, height, Filter::Bicubic)
}

/// Resizes with one of Pillow's filters, pixel for pixel as Python gets.
///
/// Python: `PIL.Image.Image.resize((width, height), filter)` of an `RGB`
/// image (Pillow's `ImagingResample`). The convolution filters run as
/// [`resize_bicubic`] describes, with the filter's own kernel and support;
/// [`Filter::Nearest`] is Pillow's affine nearest-neighbour scaling (source
/// pixel `floor((x + 0.5) * in / out)`, accumulated in `f64` as Pillow
/// does). A resize to the image's own size returns a copy, as Pillow does.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage> {
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
    if filter == Filter::Nearest {
        return resize_nearest(image, in_w, in_h, out_w, out_h);
    }
    let horiz = precompute_coeffs(in_w, out_w, filter);
    let mut vert = precompute_coeffs(in_h, out_h, filter);
    let mut buf = image.as_raw().clone();
    let mut buf_w = in_w;
    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first
    // when the height shrinks by more than twice as many pixels as the
    // width (fewer rows for the horizontal pass); the order changes the
    // rounding. Checked against Pillow 13.0.0 on 400 random sizes.
    let (dh, dw) = (in_h as i64 - out_h as i64, in_w as i64 - out_w as i64);
    let horizontal_first = !(dh > 0 && dh > 2 * dw);
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

/// Pillow's `ImagingScaleAffine` (what `resize` with `NEAREST` runs): the
/// source coordinate starts at half a step and accumulates the step in
/// `f64`, truncated to an index.
fn resize_nearest(
    image: &RgbImage,
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
) -> Result<RgbImage> {
    // Pillow computes the steps from a float box: integral sizes are exact.
    let positions = |in_size: usize, out_size: usize| -> Vec<usize> {
        let step = in_size as f64 / out_size as f64;
        let mut at = step * 0.5;
        (0..out_size)
            .map(|_| {
                let i = (at as usize).min(in_size.saturating_sub(1));
                at += step;
                i
            })
            .collect()
    };
    let xs = positions(in_w, out_w);
    let ys = positions(in_h, out_h);
    let src = image.as_raw();
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    for &y in &ys {
        for &x in &xs {
            let at = (y * in_w + x) * 3;
            out.extend_from_slice(src.get(at..at + 3).unwrap_or(&[0, 0, 0]));
        }
    }
    let (w, h) = (
        u32::try_from(out_w).unwrap_or(u32::MAX),
        u32::try_from(out_h).unwrap_or(u32::MAX),
    );
    RgbImage::from_raw(w, h, out)
        .ok_or_else(|| Error::InvalidArgument(format!("resized buffer does not hold {w}x{h}")))
}
