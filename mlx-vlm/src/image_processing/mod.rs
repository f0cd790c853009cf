//! Image processors of transformers that Python mlx-vlm delegates to.
//!
//! Python mlx-vlm 0.7.6's PaliGemma, Gemma 3, Gemma 3n, LLaVA and
//! LLaVA-NeXT processors (`mlx_vlm/models/{paligemma,gemma3,gemma3n,llava,
//! llava_next}/processing_*.py`) build their
//! image processor with `AutoImageProcessor.from_pretrained(path,
//! use_fast=False)`. In transformers 5.23 that is the PIL backend
//! (`PilBackend`: Pillow resizing, numpy arithmetic), whatever the
//! checkpoint's `image_processor_type` says:
//!
//! | family | `image_processor_type` in the released checkpoint | class transformers 5.23 runs | here |
//! |---|---|---|---|
//! | PaliGemma | `SiglipImageProcessor` | `SiglipImageProcessorPil` | [`siglip::SiglipImageProcessor`] |
//! | Gemma 3 | `Gemma3ImageProcessor` | `Gemma3ImageProcessorPil` | [`gemma3::Gemma3ImageProcessor`] |
//! | Gemma 3n | `SiglipImageProcessorFast` | `SiglipImageProcessorPil` | [`siglip::SiglipImageProcessor`] |
//! | Idefics3 | `Idefics3ImageProcessor` | `Idefics3ImageProcessorPil` | [`idefics3::Idefics3ImageProcessor`] |
//! | SmolVLM | `SmolVLMImageProcessor` | `SmolVLMImageProcessorPil` (the same code) | [`idefics3::Idefics3ImageProcessor`] |
//! | LLaVA | `CLIPImageProcessor` | `CLIPImageProcessorPil` | [`clip::ClipImageProcessor`] |
//! | LLaVA-NeXT | `LlavaNextImageProcessor` | `LlavaNextImageProcessorPil` | [`llava_next::LlavaNextImageProcessor`] |
//!
//! Each file mirrors one transformers processor; this one holds what they
//! share (transformers' `PilBackend`): settings read from
//! `preprocessor_config.json` ([`BaseSettings`]), per-call overrides
//! ([`ImageProcessorOptions`]), `do_convert_rgb` ([`convert_to_rgb`]),
//! resizing with the configured Pillow filter
//! ([`crate::image::resize`]), rescaling and normalising into the
//! `[N, 3, H, W]` float32 pixel values transformers returns.
//!
//! Settings follow transformers 5.23: a key missing from the file takes the
//! class default; a key present as `null` is Python's `None` (for the
//! `do_*` flags: off; released PaliGemma, Gemma 3 and Gemma 3n configs have
//! `"do_convert_rgb": null`, so transformers converts nothing there, and
//! mlx-vlm's `load_image` has already made every image RGB).
//!
//! Divergences from transformers 5.23 / Python mlx-vlm 0.7.6 (every file of
//! this module lists its own too):
//!
//! - SigLIP and Gemma 3 (CLIP and LLaVA-NeXT read `shortest_edge`, see
//!   [`clip`]): only images of one output size are batched: `size` must be
//!   `{"height", "width"}`, a `[height, width]` list or an integer the class
//!   reads as a square (Gemma 3; SigLIP only with `default_to_square`).
//!   Aspect-preserving sizes (`shortest_edge`, `longest_edge`,
//!   `max_height`) are refused with an [`Error::Config`] naming `size`;
//!   Python would return a list of differently sized arrays.
//! - Limits Python lacks: `size` above [`MAX_SIDE`] per side or
//!   [`MAX_PIXELS`] per image, and a batch whose pixel values would exceed
//!   [`MAX_OUTPUT_BYTES`], are refused before anything is allocated
//!   ([`Error::Config`] / [`Error::LimitExceeded`]); zero-size images are
//!   an [`Error::Image`] (Pillow fails on them with a less direct message).
//! - `rescale_factor`, `image_mean` and `image_std` must be finite and
//!   `image_std` non-zero (Python divides by zero into inf/NaN).
//! - With `do_convert_rgb` off, only RGB images are accepted: an RGBA,
//!   grey or grey+alpha image is an [`Error::Image`] naming `do_convert_rgb`
//!   (Python keeps 4, 1 or 2 channels, which then fail in `normalize`, or
//!   come out as non-RGB pixel values when `do_normalize` is off).
//! - With neither `do_rescale` nor `do_normalize`, Python returns uint8
//!   values; here they are float32 (the same numbers).
//! - `do_convert_rgb` of 16-bit and float images converts them to 8 bits
//!   with the image crate's scaling (Pillow has no such RGB modes; files
//!   read with [`crate::image::load_image`] are 8-bit RGB already).
//! - With `do_resize` off, images of different sizes cannot be stacked and
//!   are an [`Error::InvalidArgument`] (Python returns a list).

pub mod clip;
pub mod gemma3;
pub mod idefics3;
pub mod llava_next;
pub mod siglip;

use image::{DynamicImage, RgbImage};
use mlx_rs::Array;
use serde_json::Value;

use crate::image::{Filter, resize};
use crate::{Error, Result};

/// The largest `size.height` / `size.width` accepted (released checkpoints:
/// 224 to 896).
pub const MAX_SIDE: u32 = 16_384;

/// The most pixels one resized image may have (4096 x 4096).
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// The most bytes the pixel values of one call may take (4 GiB).
pub const MAX_OUTPUT_BYTES: u64 = 4 << 30;

/// An image given to a processor: 8-bit RGB as [`crate::image::load_image`]
/// returns it, or any decoded image (RGBA, grey, ...) that `do_convert_rgb`
/// converts as transformers does.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    /// An 8-bit RGB image.
    Rgb(&'a RgbImage),
    /// Any decoded image.
    Dynamic(&'a DynamicImage),
}

impl<'a> From<&'a RgbImage> for ImageInput<'a> {
    fn from(image: &'a RgbImage) -> Self {
        ImageInput::Rgb(image)
    }
}

impl<'a> From<&'a DynamicImage> for ImageInput<'a> {
    fn from(image: &'a DynamicImage) -> Self {
        ImageInput::Dynamic(image)
    }
}

impl ImageInput<'_> {
    fn dimensions(&self) -> (u32, u32) {
        match self {
            ImageInput::Rgb(i) => i.dimensions(),
            ImageInput::Dynamic(i) => (i.width(), i.height()),
        }
    }
}

/// What a processor returns (Python: the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct ProcessedImages {
    /// `[N, 3, height, width]` float32, channels first (Python:
    /// `pixel_values` stacked): each image, followed by its pan-and-scan
    /// crops where there are any.
    pub pixel_values: Array,
    /// Pan-and-scan crops per input image, in order (Python: `num_crops`;
    /// all zero for SigLIP and when pan-and-scan is off).
    pub num_crops: Vec<usize>,
}

/// Overrides of a processor's settings for one call (Python: the keyword
/// arguments of the image processor's `__call__`). `None` keeps the
/// processor's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageProcessorOptions {
    /// `do_resize`.
    pub do_resize: Option<bool>,
    /// `size` as `(height, width)`.
    pub size: Option<(u32, u32)>,
    /// `resample`: Pillow's filter.
    pub resample: Option<Filter>,
    /// `do_rescale`.
    pub do_rescale: Option<bool>,
    /// `rescale_factor`.
    pub rescale_factor: Option<f64>,
    /// `do_normalize`.
    pub do_normalize: Option<bool>,
    /// `image_mean`, one value per RGB channel.
    pub image_mean: Option<[f64; 3]>,
    /// `image_std`, one value per RGB channel.
    pub image_std: Option<[f64; 3]>,
    /// `do_convert_rgb`.
    pub do_convert_rgb: Option<bool>,
    /// `do_pan_and_scan` (Gemma 3 only).
    pub do_pan_and_scan: Option<bool>,
    /// `pan_and_scan_min_crop_size` (Gemma 3 only).
    pub pan_and_scan_min_crop_size: Option<u32>,
    /// `pan_and_scan_max_num_crops` (Gemma 3 only).
    pub pan_and_scan_max_num_crops: Option<u32>,
    /// `pan_and_scan_min_ratio_to_activate` (Gemma 3 only).
    pub pan_and_scan_min_ratio_to_activate: Option<f64>,
}

/// The settings every `PilBackend` processor has (Python: the attributes
/// `_set_attributes` resolves), after reading and checking.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseSettings {
    /// Whether to resize to `size`.
    pub do_resize: bool,
    /// Output `(height, width)`.
    pub size: (u32, u32),
    /// Pillow filter of the resize.
    pub resample: Filter,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Scale of the 8-bit values, 1/255 by default.
    pub rescale_factor: f64,
    /// Whether to subtract `image_mean` and divide by `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB).
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation (RGB).
    pub image_std: [f64; 3],
    /// Whether to convert to RGB, compositing alpha onto white.
    pub do_convert_rgb: bool,
}

/// Class defaults of one transformers processor.
pub(crate) struct ClassDefaults {
    pub resample: Filter,
    pub size: (u32, u32),
    pub default_to_square: bool,
}

pub(crate) fn config_error(file: &str, key: &str, message: impl std::fmt::Display) -> Error {
    Error::Config {
        file: file.to_owned(),
        message: format!("{key}: {message}"),
    }
}

/// A key of the file: `None` when absent (class default), `Some(None)` when
/// `null` (Python's `None`), else the value.
pub(crate) fn key<'a>(raw: &'a Value, name: &str) -> Option<Option<&'a Value>> {
    raw.get(name)
        .map(|v| if v.is_null() { None } else { Some(v) })
}

/// A `do_*` flag: absent gives `default`, `null` gives false (Python's
/// `None` is falsy).
pub(crate) fn read_flag(raw: &Value, name: &str, default: bool, file: &str) -> Result<bool> {
    match key(raw, name) {
        None => Ok(default),
        Some(None) => Ok(false),
        Some(Some(v)) => v
            .as_bool()
            .ok_or_else(|| config_error(file, name, format!("expected true or false, got {v}"))),
    }
}

/// A positive integer setting, `None` when absent or `null`.
pub(crate) fn read_positive(raw: &Value, name: &str, file: &str) -> Result<Option<u32>> {
    match key(raw, name) {
        None | Some(None) => Ok(None),
        Some(Some(v)) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v > 0)
            .map(Some)
            .ok_or_else(|| {
                config_error(file, name, format!("expected a positive integer, got {v}"))
            }),
    }
}

/// A finite number setting, `None` when absent or `null`.
pub(crate) fn read_number(raw: &Value, name: &str, file: &str) -> Result<Option<f64>> {
    match key(raw, name) {
        None | Some(None) => Ok(None),
        Some(Some(v)) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| config_error(file, name, format!("expected a finite number, got {v}"))),
    }
}

/// A per-channel list; one number applies to all three channels, as
/// transformers' `normalize` does with a float.
fn read_channels(v: &Value, name: &str, file: &str) -> Result<[f64; 3]> {
    let values: Option<Vec<f64>> = match v {
        Value::Array(items) => items.iter().map(Value::as_f64).collect(),
        other => other.as_f64().map(|x| vec![x]),
    };
    match values.as_deref() {
        Some(&[a, b, c]) => Ok([a, b, c]),
        Some(&[a]) if !v.is_array() => Ok([a; 3]),
        _ => Err(config_error(
            file,
            name,
            format!("expected 3 numbers (one per RGB channel) or one number, got {v}"),
        )),
    }
}

/// `size` as `(height, width)` (transformers' `get_size_dict`).
fn read_size(v: &Value, default_to_square: bool, file: &str) -> Result<(u32, u32)> {
    let side = |v: Option<&Value>, what: &str| -> Result<u32> {
        v.and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| {
                config_error(
                    file,
                    "size",
                    format!("{what} must be a non-negative integer, got {v:?}"),
                )
            })
    };
    match v {
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            if sorted == ["height", "width"] {
                Ok((
                    side(map.get("height"), "size.height")?,
                    side(map.get("width"), "size.width")?,
                ))
            } else {
                Err(config_error(
                    file,
                    "size",
                    format!(
                        "{v}: only a fixed {{\"height\": H, \"width\": W}} size is supported by \
                         this processor (aspect-preserving sizes such as shortest_edge give \
                         images of different sizes); set size to {{\"height\": H, \"width\": W}}"
                    ),
                ))
            }
        }
        Value::Array(items) if items.len() == 2 => Ok((
            side(items.first(), "size[0] (height)")?,
            side(items.get(1), "size[1] (width)")?,
        )),
        Value::Number(_) if default_to_square => {
            let s = side(Some(v), "size")?;
            Ok((s, s))
        }
        Value::Number(_) => Err(config_error(
            file,
            "size",
            format!(
                "{v}: an integer size with default_to_square false means shortest_edge, \
                 which this processor does not support; set size to {{\"height\": {v}, \
                 \"width\": {v}}}"
            ),
        )),
        other => Err(config_error(
            file,
            "size",
            format!("expected {{\"height\": H, \"width\": W}}, got {other}"),
        )),
    }
}

impl BaseSettings {
    /// Reads the settings of a parsed `preprocessor_config.json` (`raw`,
    /// named `file` in errors) over the class defaults, then checks them.
    pub(crate) fn read(raw: &Value, defaults: &ClassDefaults, file: &str) -> Result<Self> {
        if !raw.is_object() && !raw.is_null() {
            return Err(config_error(
                file,
                "<root>",
                format!("expected an object, got {raw}"),
            ));
        }
        let do_resize = read_flag(raw, "do_resize", true, file)?;
        let do_rescale = read_flag(raw, "do_rescale", true, file)?;
        let do_normalize = read_flag(raw, "do_normalize", true, file)?;
        let do_convert_rgb = read_flag(raw, "do_convert_rgb", true, file)?;
        let default_to_square = match key(raw, "default_to_square") {
            None | Some(None) => defaults.default_to_square,
            Some(Some(v)) => v.as_bool().ok_or_else(|| {
                config_error(
                    file,
                    "default_to_square",
                    format!("expected true or false, got {v}"),
                )
            })?,
        };
        // A `null` setting a step needs is what transformers'
        // `validate_preprocess_arguments` refuses.
        let missing = |name: &str, step: &str| {
            config_error(
                file,
                name,
                format!("is null but {step} is true; give a value or turn {step} off"),
            )
        };
        let size = match key(raw, "size") {
            None => defaults.size,
            Some(None) if do_resize => return Err(missing("size", "do_resize")),
            Some(None) => defaults.size,
            Some(Some(v)) => read_size(v, default_to_square, file)?,
        };
        let resample = match key(raw, "resample") {
            None => defaults.resample,
            Some(None) if do_resize => return Err(missing("resample", "do_resize")),
            Some(None) => defaults.resample,
            Some(Some(v)) => v.as_i64().and_then(Filter::from_pil).ok_or_else(|| {
                config_error(
                    file,
                    "resample",
                    format!(
                        "{v} is not a Pillow filter; use 0 (NEAREST), 1 (LANCZOS), \
                         2 (BILINEAR), 3 (BICUBIC), 4 (BOX) or 5 (HAMMING)"
                    ),
                )
            })?,
        };
        let rescale_factor = match key(raw, "rescale_factor") {
            Some(None) if do_rescale => return Err(missing("rescale_factor", "do_rescale")),
            _ => read_number(raw, "rescale_factor", file)?.unwrap_or(1.0 / 255.0),
        };
        let channels = |name: &str| -> Result<[f64; 3]> {
            match key(raw, name) {
                None => Ok([0.5; 3]),
                Some(None) if do_normalize => Err(missing(name, "do_normalize")),
                Some(None) => Ok([0.5; 3]),
                Some(Some(v)) => read_channels(v, name, file),
            }
        };
        let out = BaseSettings {
            do_resize,
            size,
            resample,
            do_rescale,
            rescale_factor,
            do_normalize,
            image_mean: channels("image_mean")?,
            image_std: channels("image_std")?,
            do_convert_rgb,
        };
        out.validate()
            .map_err(|(name, message)| config_error(file, name, message))?;
        Ok(out)
    }

    /// A copy with the overrides of `options` applied and checked; a bad
    /// value is an [`Error::InvalidParameter`] naming the option.
    pub fn with_options(&self, options: &ImageProcessorOptions) -> Result<Self> {
        let mut out = self.clone();
        let o = options;
        out.do_resize = o.do_resize.unwrap_or(out.do_resize);
        out.size = o.size.unwrap_or(out.size);
        out.resample = o.resample.unwrap_or(out.resample);
        out.do_rescale = o.do_rescale.unwrap_or(out.do_rescale);
        out.rescale_factor = o.rescale_factor.unwrap_or(out.rescale_factor);
        out.do_normalize = o.do_normalize.unwrap_or(out.do_normalize);
        out.image_mean = o.image_mean.unwrap_or(out.image_mean);
        out.image_std = o.image_std.unwrap_or(out.image_std);
        out.do_convert_rgb = o.do_convert_rgb.unwrap_or(out.do_convert_rgb);
        out.validate().map_err(|(name, message)| {
            let value = match name {
                "size" => format!("{:?}", out.size),
                "rescale_factor" => out.rescale_factor.to_string(),
                "image_mean" => format!("{:?}", out.image_mean),
                _ => format!("{:?}", out.image_std),
            };
            Error::InvalidParameter {
                name,
                value,
                message: format!("ImageProcessorOptions::{name}: {message}"),
            }
        })?;
        Ok(out)
    }

    /// Checks the limits listed at the top of this file: on failure, the
    /// setting at fault and what is wrong with it and how to fix it.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let (h, w) = self.size;
        if self.do_resize {
            if h == 0 || w == 0 {
                return Err((
                    "size",
                    format!("height {h} and width {w} must be positive (released: 224 to 896)"),
                ));
            }
            if h > MAX_SIDE || w > MAX_SIDE || u64::from(h) * u64::from(w) > MAX_PIXELS {
                return Err((
                    "size",
                    format!(
                        "height {h} x width {w} is absurd: the limits are {MAX_SIDE} per side and \
                         {MAX_PIXELS} pixels (released checkpoints use 224 to 896)"
                    ),
                ));
            }
        }
        if !self.rescale_factor.is_finite() {
            return Err((
                "rescale_factor",
                format!(
                    "rescale_factor {} must be finite (usually 1/255)",
                    self.rescale_factor
                ),
            ));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err((
                "image_mean",
                format!("image_mean {:?} must be finite", self.image_mean),
            ));
        }
        if self.image_std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            return Err((
                "image_std",
                format!(
                    "image_std {:?} must be finite and non-zero (it divides the pixels)",
                    self.image_std
                ),
            ));
        }
        Ok(())
    }

    /// The RGB image of one input (Python: `PilBackend.process_image`).
    pub(crate) fn prepare(&self, image: ImageInput<'_>, index: usize) -> Result<RgbImage> {
        let (w, h) = image.dimensions();
        if w == 0 || h == 0 {
            return Err(image_error(index, format!("has zero size {w}x{h}")));
        }
        match image {
            ImageInput::Rgb(rgb) => Ok(rgb.clone()),
            ImageInput::Dynamic(DynamicImage::ImageRgb8(rgb)) => Ok(rgb.clone()),
            ImageInput::Dynamic(other) if self.do_convert_rgb => Ok(convert_to_rgb(other)),
            ImageInput::Dynamic(other) => Err(image_error(
                index,
                format!(
                    "is {:?}, not RGB, and do_convert_rgb is off; convert it to RGB first or \
                     set do_convert_rgb to true",
                    other.color()
                ),
            )),
        }
    }

    /// Resizes (when `do_resize`) one RGB image or crop.
    pub(crate) fn resize(&self, image: &RgbImage) -> Result<RgbImage> {
        if !self.do_resize {
            return Ok(image.clone());
        }
        let (h, w) = self.size;
        resize(image, w, h, self.resample)
    }

    /// Checks that `count` outputs of the configured size fit in
    /// [`MAX_OUTPUT_BYTES`], before anything is allocated.
    pub(crate) fn check_output(&self, count: usize, context: &str) -> Result<()> {
        let (h, w) = self.size;
        let bytes = (count as u64)
            .saturating_mul(3 * 4)
            .saturating_mul(u64::from(h))
            .saturating_mul(u64::from(w));
        if self.do_resize && bytes > MAX_OUTPUT_BYTES {
            return Err(Error::LimitExceeded {
                context: context.to_owned(),
                limit: "pixel values bytes",
                message: format!(
                    "{count} images of {h}x{w} take {bytes} bytes of pixel values, more than the \
                     limit of {MAX_OUTPUT_BYTES}; pass fewer images or lower size / \
                     pan_and_scan_max_num_crops"
                ),
            });
        }
        Ok(())
    }

    /// Rescales and normalises resized images into `[N, 3, H, W]` float32
    /// (Python: `rescale` in f64 then cast to f32, `normalize` in f32).
    pub(crate) fn to_pixel_values(&self, images: &[RgbImage]) -> Result<Array> {
        let Some(first) = images.first() else {
            return Err(Error::InvalidArgument(
                "no images to preprocess; pass at least one image".to_owned(),
            ));
        };
        let (w, h) = first.dimensions();
        if let Some((i, other)) = images
            .iter()
            .enumerate()
            .find(|(_, im)| im.dimensions() != (w, h))
        {
            return Err(Error::InvalidArgument(format!(
                "image {i} is {}x{} after preprocessing but image 0 is {w}x{h}: with do_resize \
                 off every image must have the same size; turn do_resize on or resize them first",
                other.width(),
                other.height()
            )));
        }
        let plane = w as usize * h as usize;
        let mean = self.image_mean.map(|m| m as f32);
        let std = self.image_std.map(|s| s as f32);
        let mut out = vec![0f32; images.len() * 3 * plane];
        for (image, dst) in images.iter().zip(out.chunks_exact_mut(3 * plane)) {
            for (p, px) in image.as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    let raw = px.get(c).copied().unwrap_or(0);
                    let mut v = if self.do_rescale {
                        (f64::from(raw) * self.rescale_factor) as f32
                    } else {
                        f32::from(raw)
                    };
                    if self.do_normalize {
                        v = (v - mean.get(c).copied().unwrap_or(0.0))
                            / std.get(c).copied().unwrap_or(1.0);
                    }
                    if let Some(slot) = dst.get_mut(c * plane + p) {
                        *slot = v;
                    }
                }
            }
        }
        let dim = |v: usize| {
            i32::try_from(v).map_err(|_| {
                Error::InvalidArgument(format!("pixel values dimension {v} exceeds int32"))
            })
        };
        Ok(Array::from_slice(
            &out,
            &[dim(images.len())?, 3, dim(h as usize)?, dim(w as usize)?],
        )?)
    }
}

fn image_error(index: usize, message: String) -> Error {
    Error::Image {
        source_name: format!("<image {index}>"),
        message,
    }
}

/// Pillow's `alpha_composite` of one pixel over an opaque white
/// background, returning the RGB channels (Pillow's `ImagingAlphaComposite`
/// integer arithmetic, 7 extra bits of precision).
fn composite_on_white(r: u8, g: u8, b: u8, a: u8) -> [u8; 3] {
    if a == 0 {
        return [255; 3];
    }
    const BITS: u32 = 7;
    let shift_div255 = |v: u32| ((v >> 8) + v) >> 8;
    let sa = u32::from(a);
    let blend = 255 * (255 - sa);
    let outa255 = sa * 255 + blend;
    let coef1 = sa * 255 * 255 * (1 << BITS) / outa255;
    let coef2 = 255 * (1 << BITS) - coef1;
    [r, g, b].map(|v| {
        let tmp = u32::from(v) * coef1 + 255 * coef2;
        u8::try_from(shift_div255(tmp + (0x80 << BITS)) >> BITS).unwrap_or(u8::MAX)
    })
}

/// transformers' `convert_to_rgb` of a PIL image: grey is replicated,
/// images with alpha are composited onto white (`Image.alpha_composite`
/// over an opaque white `RGBA` image), RGB is kept.
pub fn convert_to_rgb(image: &DynamicImage) -> RgbImage {
    let rgba = |im: &image::RgbaImage| {
        RgbImage::from_fn(im.width(), im.height(), |x, y| {
            let [r, g, b, a] = im.get_pixel(x, y).0;
            image::Rgb(composite_on_white(r, g, b, a))
        })
    };
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb.clone(),
        DynamicImage::ImageLuma8(gray) => RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
            let v = gray.get_pixel(x, y).0[0];
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA8(gray) => {
            RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
                let [v, a] = gray.get_pixel(x, y).0;
                image::Rgb(composite_on_white(v, v, v, a))
            })
        }
        DynamicImage::ImageRgba8(im) => rgba(im),
        other if other.color().has_alpha() => rgba(&other.to_rgba8()),
        other => other.to_rgb8(),
    }
}
