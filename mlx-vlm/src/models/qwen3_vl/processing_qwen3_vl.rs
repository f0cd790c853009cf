//! The Qwen image processor shared by the Qwen2-VL, Qwen2.5-VL and
//! Qwen3-VL families: Python's
//! `mlx_vlm/models/qwen3_vl/processing_qwen3_vl.py`, which the other
//! families' processors import (Python: `Qwen2_5_VLProcessor.from_pretrained`
//! builds this numpy `Qwen3VLImageProcessor`, with patch size 14 by
//! default, not transformers' torch processor).
//!
//! Divergences from Python (stricter settings checks; Python accepts these
//! and fails later, loops, or allocates without bound):
//!
//! - `preprocessor_config.json` / `processor_config.json` settings are
//!   checked when read ([`Qwen3VlImageProcessor::validate`]): `max_pixels`
//!   below one merged patch (`(patch_size * merge_size)^2` pixels, which
//!   `smart_resize` would exceed anyway), `min_pixels > max_pixels`, pixel
//!   budgets above [`MAX_PIXELS_SETTING`], non-finite or zero
//!   `rescale_factor` / `image_std`, non-finite `image_mean`, and
//!   `patch_size * merge_size` above [`MAX_PATCH_FACTOR`] are
//!   [`Error::Config`]s naming the file and the key.
//! - Overrides ([`Qwen3VlImageProcessor::try_with_pixels`], Python's
//!   `min_pixels` / `max_pixels` keyword arguments) are checked the same way
//!   ([`Error::InvalidParameter`] naming the option). An override of one
//!   bound that contradicts the file's other bound moves that bound along
//!   (`--max-pixels 3000` with the file's `min_pixels: 3136` gives
//!   `min_pixels = 3000`), where Python would keep both and grow small
//!   images past `max_pixels`.
//! - [`Qwen3VlImageProcessor::preprocess`] and `resolved_size` re-check the
//!   settings, so a processor built field by field (or through the
//!   infallible [`Qwen3VlImageProcessor::with_pixels`]) cannot resize beyond
//!   the limits either.

use std::path::Path;

use image::RgbImage;
use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::image::{load_image, resize_bicubic};
use crate::models::ModelInputs;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, Video, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The largest height/width ratio `smart_resize` accepts.
const MAX_RATIO: f64 = 200.0;

/// The largest `min_pixels` / `max_pixels` accepted: the pixel limit of
/// decoded images ([`crate::image::MAX_DECODED_PIXELS`], Pillow's
/// decompression-bomb limit). Real checkpoints use at most 12,845,056
/// (3584 x 3584).
pub const MAX_PIXELS_SETTING: u64 = crate::image::MAX_DECODED_PIXELS;

/// The largest `patch_size * merge_size` accepted (real checkpoints: 28 or
/// 32). Above it, one merged patch alone is a very large image.
pub const MAX_PATCH_FACTOR: u32 = 1024;

/// Target `(height, width)`: multiples of `factor`, close to the original
/// aspect ratio, with `min_pixels <= height * width <= max_pixels`.
///
/// Python: `_smart_resize_image` (HF's qwen2_vl `smart_resize`), with its
/// round-half-to-even `round`.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32)> {
    if height == 0 || width == 0 || factor == 0 {
        return Err(Error::InvalidArgument(format!(
            "smart_resize: height {height}, width {width} and factor {factor} must be positive"
        )));
    }
    let (h, w, f) = (f64::from(height), f64::from(width), f64::from(factor));
    let ratio = h.max(w) / h.min(w);
    if ratio > MAX_RATIO {
        return Err(Error::InvalidArgument(format!(
            "absolute aspect ratio must be smaller than 200, got {ratio} \
             ({width}x{height}); crop or pad the image first"
        )));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    let pixels = f64::from(height) * f64::from(width);
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (pixels / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / pixels).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    let fits = |v: f64| v >= 1.0 && v <= f64::from(u32::MAX);
    if !fits(h_bar) || !fits(w_bar) {
        return Err(Error::InvalidArgument(format!(
            "smart_resize: {width}x{height} with min_pixels {min_pixels} and max_pixels \
             {max_pixels} gives {w_bar}x{h_bar}; raise min_pixels to at least {}",
            u64::from(factor) * u64::from(factor)
        )));
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// Numpy port of the Qwen2/3-VL image processor: resize, rescale,
/// normalize and patchify.
///
/// Python: `Qwen3VLImageProcessor` (`mlx_vlm.models.qwen3_vl`), the image
/// processor of Python's `Qwen2_5_VLProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3VlImageProcessor {
    /// Side of a square patch in pixels.
    pub patch_size: u32,
    /// Frames per temporal patch; a still image is repeated this many times.
    pub temporal_patch_size: u32,
    /// Patches merged per side by the vision tower's merger.
    pub merge_size: u32,
    /// Fewest pixels after resizing.
    pub min_pixels: u64,
    /// Most pixels after resizing.
    pub max_pixels: u64,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Scale of 8-bit values, 1/255 by default.
    pub rescale_factor: f64,
    /// Whether to subtract `image_mean` and divide by `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB).
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation (RGB).
    pub image_std: [f64; 3],
    /// Whether to convert to RGB (images here are RGB already).
    pub do_convert_rgb: bool,
}

impl Default for Qwen3VlImageProcessor {
    /// Python: `Qwen3VLImageProcessor.__init__` defaults.
    fn default() -> Self {
        Qwen3VlImageProcessor {
            patch_size: 16,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 56 * 56,
            max_pixels: 14 * 14 * 4 * 1280,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            do_convert_rgb: true,
        }
    }
}

fn config_error(file: &str, key: &str, message: &str) -> Error {
    Error::Config {
        file: file.to_owned(),
        message: format!("{key}: {message}"),
    }
}

fn get_u32(raw: &Value, key: &str, file: &str) -> Result<Option<u32>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v > 0)
            .map(Some)
            .ok_or_else(|| {
                config_error(file, key, &format!("expected a positive integer, got {v}"))
            }),
    }
}

fn get_u64(raw: &Value, key: &str, file: &str) -> Result<Option<u64>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            config_error(
                file,
                key,
                &format!("expected a non-negative integer, got {v}"),
            )
        }),
    }
}

fn get_bool(raw: &Value, key: &str, file: &str) -> Result<Option<bool>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| config_error(file, key, &format!("expected true or false, got {v}"))),
    }
}

/// A per-channel list; a single value applies to all three channels, as
/// numpy broadcasting does in Python.
fn get_channels(raw: &Value, key: &str, file: &str) -> Result<Option<[f64; 3]>> {
    let v = match raw.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let values: Option<Vec<f64>> = match v {
        Value::Array(items) => items.iter().map(Value::as_f64).collect(),
        other => other.as_f64().map(|x| vec![x]),
    };
    match values.as_deref() {
        Some(&[a, b, c]) => Ok(Some([a, b, c])),
        Some(&[a]) => Ok(Some([a; 3])),
        // Python's `image_mean or [0.5] * 3` treats an empty list as unset.
        Some(&[]) => Ok(None),
        _ => Err(config_error(
            file,
            key,
            &format!("expected 3 numbers (one per RGB channel), got {v}"),
        )),
    }
}

impl Qwen3VlImageProcessor {
    /// Reads the settings of a checkpoint's `preprocessor_config.json`
    /// (`raw`), overlaid with the `image_processor` object of its
    /// `processor_config.json` when given.
    ///
    /// Python: `_qwen_vl_image_kwargs` then `Qwen3VLImageProcessor(**kwargs)`.
    /// `min_pixels` / `max_pixels` win over `size.shortest_edge` /
    /// `size.longest_edge`.
    pub fn from_config(
        raw: &Value,
        processor_config: Option<&Value>,
        default_patch_size: u32,
    ) -> Result<Self> {
        const FILE: &str = "preprocessor_config.json";
        let mut merged = match raw {
            Value::Object(map) => map.clone(),
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(config_error(
                    FILE,
                    "<root>",
                    &format!("expected an object, got {other}"),
                ));
            }
        };
        if let Some(Value::Object(extra)) = processor_config.and_then(|c| c.get("image_processor"))
        {
            merged.extend(extra.clone());
        }
        let raw = Value::Object(merged);
        let base = Qwen3VlImageProcessor {
            patch_size: default_patch_size,
            ..Self::default()
        };
        Self::read_settings(&raw, base, FILE)
    }

    /// `base` with the settings `raw` (a parsed file named `file` in
    /// errors) gives, checked ([`Self::validate`]). The keys Python's
    /// `_qwen_vl_image_kwargs` and `_qwen_vl_video_kwargs` share.
    fn read_settings(raw: &Value, base: Self, file: &str) -> Result<Self> {
        let size_file = format!("{file} size");
        let mut out = base;
        out.patch_size = get_u32(raw, "patch_size", file)?.unwrap_or(out.patch_size);
        out.temporal_patch_size =
            get_u32(raw, "temporal_patch_size", file)?.unwrap_or(out.temporal_patch_size);
        out.merge_size = get_u32(raw, "merge_size", file)?.unwrap_or(out.merge_size);
        out.image_mean = get_channels(raw, "image_mean", file)?.unwrap_or(out.image_mean);
        out.image_std = get_channels(raw, "image_std", file)?.unwrap_or(out.image_std);
        if let Some(v) = raw.get("rescale_factor").filter(|v| !v.is_null()) {
            out.rescale_factor = v.as_f64().ok_or_else(|| {
                config_error(
                    file,
                    "rescale_factor",
                    &format!("expected a number, got {v}"),
                )
            })?;
        }
        out.do_rescale = get_bool(raw, "do_rescale", file)?.unwrap_or(out.do_rescale);
        out.do_normalize = get_bool(raw, "do_normalize", file)?.unwrap_or(out.do_normalize);
        out.do_convert_rgb = get_bool(raw, "do_convert_rgb", file)?.unwrap_or(out.do_convert_rgb);
        if let Some(size) = raw.get("size").filter(|s| s.is_object()) {
            if let Some(v) = get_u64(size, "shortest_edge", &size_file)? {
                out.min_pixels = v;
            }
            if let Some(v) = get_u64(size, "longest_edge", &size_file)? {
                out.max_pixels = v;
            }
        }
        out.min_pixels = get_u64(raw, "min_pixels", file)?.unwrap_or(out.min_pixels);
        out.max_pixels = get_u64(raw, "max_pixels", file)?.unwrap_or(out.max_pixels);
        out.validate()
            .map_err(|(key, message)| config_error(file, key, &message))?;
        Ok(out)
    }

    /// The image processor of the checkpoint folder `dir`: its
    /// `preprocessor_config.json` overlaid with `processor_config.json`'s
    /// `image_processor` (each optional, as in Python), `default_patch_size`
    /// where neither names one (Python: `_qwen_vl_image_kwargs`). Errors
    /// name the file in `dir`.
    pub fn from_pretrained(dir: &Path, default_patch_size: u32) -> Result<Self> {
        let raw = crate::utils::read_json_if_exists(&dir.join("preprocessor_config.json"))?
            .unwrap_or(Value::Null);
        let proc_cfg = crate::utils::read_json_if_exists(&dir.join("processor_config.json"))?;
        Self::from_config(&raw, proc_cfg.as_ref(), default_patch_size).map_err(|e| match e {
            Error::Config { file, message } => Error::Config {
                file: dir.join(file).display().to_string(),
                message,
            },
            e => e,
        })
    }

    /// Overrides the pixel budget of resized images, unchecked; bad values
    /// surface at [`Self::preprocess`]. Prefer [`Self::try_with_pixels`].
    ///
    /// Python: the `min_pixels` / `max_pixels` keyword arguments of
    /// the Qwen processors' `__call__` (`_pop_image_processor_kwargs`). Unlike Python, an override of one
    /// bound that contradicts the other bound moves the other bound along
    /// (see the top of this file).
    pub fn with_pixels(mut self, min_pixels: Option<u64>, max_pixels: Option<u64>) -> Self {
        let p = &mut self;
        if let Some(v) = min_pixels {
            p.min_pixels = v;
            if max_pixels.is_none() && p.max_pixels < v {
                p.max_pixels = v;
            }
        }
        if let Some(v) = max_pixels {
            p.max_pixels = v;
            if min_pixels.is_none() && p.min_pixels > v {
                p.min_pixels = v;
            }
        }
        self
    }

    /// [`Self::with_pixels`], checked: a bad override (below one merged
    /// patch, `min_pixels > max_pixels`, above [`MAX_PIXELS_SETTING`]) is an
    /// [`Error::InvalidParameter`] naming the option.
    pub fn try_with_pixels(self, min_pixels: Option<u64>, max_pixels: Option<u64>) -> Result<Self> {
        let out = self.with_pixels(min_pixels, max_pixels);
        match out.validate() {
            Ok(()) => Ok(out),
            Err((key, message)) => {
                let (name, value) = match key {
                    "min_pixels" => ("min_pixels", min_pixels),
                    _ => ("max_pixels", max_pixels),
                };
                Err(Error::InvalidParameter {
                    name,
                    value: value.map_or_else(|| "(from the config)".to_owned(), |v| v.to_string()),
                    message: format!(
                        "--{} / LoadOptions::{name}: {message}",
                        name.replace('_', "-")
                    ),
                })
            }
        }
    }

    /// Checks the settings against the limits listed at the top of this
    /// file: on failure, the key at fault and what is wrong with it and how
    /// to fix it.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let factor = u64::from(self.patch_size) * u64::from(self.merge_size);
        if self.patch_size == 0 || self.merge_size == 0 || self.temporal_patch_size == 0 {
            return Err((
                "patch_size",
                format!(
                    "patch_size {}, merge_size {} and temporal_patch_size {} must be positive",
                    self.patch_size, self.merge_size, self.temporal_patch_size
                ),
            ));
        }
        if factor > u64::from(MAX_PATCH_FACTOR) || self.temporal_patch_size > MAX_PATCH_FACTOR {
            return Err((
                "patch_size",
                format!(
                    "patch_size {} * merge_size {} = {factor} (temporal_patch_size {}) is \
                     absurd; the limit is {MAX_PATCH_FACTOR} (Qwen2.5-VL uses 14 * 2 and 2)",
                    self.patch_size, self.merge_size, self.temporal_patch_size
                ),
            ));
        }
        let one_patch = factor * factor;
        if self.max_pixels < one_patch {
            return Err((
                "max_pixels",
                format!(
                    "max_pixels {} is below one merged patch ({factor}x{factor} = {one_patch} \
                     pixels); set it to at least {one_patch}",
                    self.max_pixels
                ),
            ));
        }
        for (key, value) in [
            ("min_pixels", self.min_pixels),
            ("max_pixels", self.max_pixels),
        ] {
            if value > MAX_PIXELS_SETTING {
                return Err((
                    key,
                    format!(
                        "{key} {value} is absurd: above the limit of {MAX_PIXELS_SETTING} pixels \
                         (Pillow's decompression-bomb limit); Qwen2.5-VL uses at most 12845056"
                    ),
                ));
            }
        }
        if self.min_pixels > self.max_pixels {
            return Err((
                "min_pixels",
                format!(
                    "min_pixels {} is greater than max_pixels {}; make min_pixels <= max_pixels",
                    self.min_pixels, self.max_pixels
                ),
            ));
        }
        if !self.rescale_factor.is_finite() || self.rescale_factor == 0.0 {
            return Err((
                "rescale_factor",
                format!(
                    "rescale_factor {} must be a finite non-zero number (usually 1/255)",
                    self.rescale_factor
                ),
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
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err((
                "image_mean",
                format!("image_mean {:?} must be finite", self.image_mean),
            ));
        }
        Ok(())
    }

    /// The post-resize `(height, width)` of one image.
    ///
    /// Python: `Qwen3VLImageProcessor._resolved_size` (without the
    /// `resized_height` / `resized_width` overrides).
    pub fn resolved_size(&self, height: u32, width: u32) -> Result<(u32, u32)> {
        self.validate().map_err(|(key, message)| {
            Error::InvalidArgument(format!(
                "image processor setting {key}: {message} (in preprocessor_config.json or \
                 the --min-pixels / --max-pixels options)"
            ))
        })?;
        let factor = self
            .patch_size
            .checked_mul(self.merge_size)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "patch_size {} * merge_size {} overflows",
                    self.patch_size, self.merge_size
                ))
            })?;
        if self.temporal_patch_size == 0 {
            return Err(Error::InvalidArgument(
                "temporal_patch_size must be positive".to_owned(),
            ));
        }
        smart_resize(height, width, factor, self.min_pixels, self.max_pixels)
    }

    /// Patches of one image, rows in merge-block order, and its grid.
    ///
    /// Python: `Qwen3VLImageProcessor._process_one`.
    fn process_one(&self, image: &RgbImage) -> Result<(Vec<f32>, [i32; 3])> {
        let (width, height) = image.dimensions();
        let (rh, rw) = self.resolved_size(height, width)?;
        let resized = resize_bicubic(image, rw, rh)?;

        // Python computes in float32: x * f32(rescale), then (x - mean) / std.
        let rescale = self.rescale_factor as f32;
        let mean = self.image_mean.map(|m| m as f32);
        let std = self.image_std.map(|s| s as f32);
        let value = |x: u32, y: u32, c: usize| -> f32 {
            let raw = resized.get_pixel(x, y).0.get(c).copied().unwrap_or(0);
            let mut v = f32::from(raw);
            if self.do_rescale {
                v *= rescale;
            }
            if self.do_normalize {
                v = (v - mean.get(c).copied().unwrap_or(0.0)) / std.get(c).copied().unwrap_or(1.0);
            }
            v
        };

        let (ps, tps, ms) = (self.patch_size, self.temporal_patch_size, self.merge_size);
        let (grid_h, grid_w) = (rh / ps, rw / ps);
        let channels = 3usize;
        // The patches hold each resized pixel temporal_patch_size times.
        let mut out =
            Vec::with_capacity((rh as usize * rw as usize * channels).saturating_mul(tps as usize));
        // Row order (block_h, block_w, merge_h, merge_w); column order
        // (channel, frame, y, x): Python's transpose (0,1,4,7,5,8,3,2,6,9).
        for bh in 0..grid_h / ms {
            for bw in 0..grid_w / ms {
                for mh in 0..ms {
                    for mw in 0..ms {
                        let (y0, x0) = ((bh * ms + mh) * ps, (bw * ms + mw) * ps);
                        for c in 0..channels {
                            for _ in 0..tps {
                                for py in 0..ps {
                                    for px in 0..ps {
                                        out.push(value(x0 + px, y0 + py, c));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let grid = [1, grid_h as i32, grid_w as i32];
        Ok((out, grid))
    }

    /// `pixel_values` `[sum of t*h*w, 3 * temporal_patch_size * patch_size^2]`
    /// (float32, all images concatenated) and each image's `[t, h, w]` grid.
    ///
    /// Python: `Qwen3VLImageProcessor.__call__` / `preprocess`.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<(Array, Vec<[i32; 3]>)> {
        if images.is_empty() {
            return Err(Error::InvalidArgument(
                "preprocess: no images given; pass at least one".to_owned(),
            ));
        }
        let mut data = Vec::new();
        let mut grids = Vec::with_capacity(images.len());
        for (i, image) in images.iter().enumerate() {
            let (patches, grid) = self.process_one(image).map_err(|e| Error::Image {
                source_name: format!("#{i} ({}x{})", image.width(), image.height()),
                message: e.to_string(),
            })?;
            data.extend(patches);
            grids.push(grid);
        }
        // Every image passed `resolved_size`, so the sizes are positive.
        let cols = 3u32
            .saturating_mul(self.temporal_patch_size)
            .saturating_mul(self.patch_size)
            .saturating_mul(self.patch_size)
            .max(1);
        let rows = data.len() / cols as usize;
        let shape = [
            i32::try_from(rows)
                .map_err(|_| Error::InvalidArgument(format!("{rows} patches overflow i32")))?,
            i32::try_from(cols).unwrap_or(i32::MAX),
        ];
        Ok((Array::from_slice(&data, &shape)?, grids))
    }

    /// Language-model tokens an image of this size becomes.
    ///
    /// Python: `Qwen3VLImageProcessor.num_image_tokens`.
    pub fn num_image_tokens(&self, height: u32, width: u32) -> Result<usize> {
        let (rh, rw) = self.resolved_size(height, width)?;
        let (gh, gw) = (rh / self.patch_size, rw / self.patch_size);
        let merge_length = (u64::from(self.merge_size) * u64::from(self.merge_size)).max(1);
        Ok((u64::from(gh) * u64::from(gw) / merge_length) as usize)
    }
}

/// Target `(height, width)` of a video's frames: multiples of `factor`,
/// with `min_pixels <= t * height * width <= max_pixels` over the frames
/// rounded up to whole temporal patches.
///
/// Python: `_smart_resize_video` (HF's `smart_resize` for videos), with
/// its round-half-to-even `round`.
pub fn smart_resize_video(
    num_frames: u32,
    height: u32,
    width: u32,
    temporal_factor: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32)> {
    if height < factor || width < factor || factor == 0 || temporal_factor == 0 {
        return Err(Error::InvalidArgument(format!(
            "height:{height} or width:{width} must be larger than factor:{factor}"
        )));
    }
    let (h, w, f) = (f64::from(height), f64::from(width), f64::from(factor));
    let ratio = h.max(w) / h.min(w);
    if ratio > MAX_RATIO {
        return Err(Error::InvalidArgument(format!(
            "absolute aspect ratio must be smaller than 200, got {ratio} ({width}x{height})"
        )));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    let t_bar = f64::from(num_frames.div_ceil(temporal_factor) * temporal_factor);
    let volume = f64::from(num_frames) * h * w;
    if t_bar * h_bar * w_bar > max_pixels as f64 {
        let beta = (volume / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if t_bar * h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / volume).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    let fits = |v: f64| v >= 1.0 && v <= f64::from(MAX_VIDEO_SIDE);
    if !fits(h_bar) || !fits(w_bar) {
        return Err(Error::InvalidArgument(format!(
            "smart_resize_video: {num_frames} frames of {width}x{height} with min_pixels \
             {min_pixels} and max_pixels {max_pixels} give {w_bar}x{h_bar}; lower min_pixels"
        )));
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// The largest side a video frame is resized to (Rust only: bounds the
/// allocation a `min_pixels` setting could ask for).
const MAX_VIDEO_SIDE: u32 = 1 << 15;

/// Numpy port of the Qwen3-VL video processor: resize every frame, rescale,
/// normalize, pad to whole temporal patches with the last frame, and
/// patchify.
///
/// Python: `Qwen3VLVideoProcessor` (its settings are those of the image
/// processor, with video defaults, plus the frame sampling).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3VlVideoProcessor {
    /// Patch, merge, pixel-budget and normalisation settings.
    pub settings: Qwen3VlImageProcessor,
    /// Frames per second to sample (Python: `fps`, 2.0).
    pub fps: f64,
    /// Fewest frames to sample (Python: `min_frames`, 4).
    pub min_frames: u32,
    /// Most frames to sample (Python: `max_frames`, 768).
    pub max_frames: u32,
}

impl Default for Qwen3VlVideoProcessor {
    /// Python: `Qwen3VLVideoProcessor.__init__` defaults.
    fn default() -> Self {
        Self {
            settings: Qwen3VlImageProcessor {
                min_pixels: 128 * 32 * 32,
                max_pixels: 32 * 32 * 768,
                ..Qwen3VlImageProcessor::default()
            },
            fps: 2.0,
            min_frames: 4,
            max_frames: 768,
        }
    }
}

impl Qwen3VlVideoProcessor {
    /// The video processor of the checkpoint folder `dir`: its
    /// `video_preprocessor_config.json`, else (older checkpoints such as
    /// Qwen2-VL) its `preprocessor_config.json`, `default_patch_size`
    /// where the file names none (Python: `_qwen_vl_video_kwargs`).
    pub fn from_pretrained(dir: &Path, default_patch_size: u32) -> Result<Self> {
        let mut name = "video_preprocessor_config.json";
        let mut raw = crate::utils::read_json_if_exists(&dir.join(name))?;
        if raw.is_none() {
            name = "preprocessor_config.json";
            raw = crate::utils::read_json_if_exists(&dir.join(name))?;
        }
        let file = dir.join(name).display().to_string();
        Self::from_config(&raw.unwrap_or(Value::Null), default_patch_size, &file)
    }

    /// The video processor of a parsed video configuration (`file` names
    /// it in errors).
    pub fn from_config(raw: &Value, default_patch_size: u32, file: &str) -> Result<Self> {
        let raw = match raw {
            Value::Null => Value::Object(serde_json::Map::new()),
            Value::Object(_) => raw.clone(),
            other => {
                return Err(config_error(
                    file,
                    "<root>",
                    &format!("expected an object, got {other}"),
                ));
            }
        };
        let defaults = Self::default();
        let base = Qwen3VlImageProcessor {
            patch_size: default_patch_size,
            ..defaults.settings
        };
        let settings = Qwen3VlImageProcessor::read_settings(&raw, base, file)?;
        let fps = match raw.get("fps").filter(|v| !v.is_null()) {
            None => defaults.fps,
            Some(v) => v
                .as_f64()
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| {
                    config_error(file, "fps", &format!("expected a positive number, got {v}"))
                })?,
        };
        let min_frames = get_u32(&raw, "min_frames", file)?.unwrap_or(defaults.min_frames);
        let max_frames = get_u32(&raw, "max_frames", file)?.unwrap_or(defaults.max_frames);
        Ok(Self {
            settings,
            fps,
            min_frames,
            max_frames,
        })
    }

    /// Patches of one video's frames (`[t*h*w, 3 * tps * ps²]` rows, in
    /// merge-block order within each temporal patch) and its grid.
    ///
    /// Python: `Qwen3VLVideoProcessor._process_one`. Frames of other sizes
    /// than the first are an error (Python's `np.stack` fails on them too).
    fn process_one(&self, frames: &[RgbImage]) -> Result<(Vec<f32>, [i32; 3])> {
        let first = frames.first().ok_or_else(|| {
            Error::InvalidArgument("a video with no frames; give at least one frame".to_owned())
        })?;
        let (width, height) = first.dimensions();
        if let Some((i, other)) = frames
            .iter()
            .enumerate()
            .find(|(_, f)| f.dimensions() != (width, height))
        {
            return Err(Error::InvalidArgument(format!(
                "video frame {i} is {}x{}, frame 0 is {width}x{height}; a video's frames must \
                 share one size",
                other.width(),
                other.height()
            )));
        }
        let p = &self.settings;
        p.validate().map_err(|(key, message)| {
            Error::InvalidArgument(format!("video processor setting {key}: {message}"))
        })?;
        let (ps, tps, ms) = (p.patch_size, p.temporal_patch_size, p.merge_size);
        let n_frames = u32::try_from(frames.len())
            .map_err(|_| Error::InvalidArgument(format!("{} frames", frames.len())))?;
        let (rh, rw) = smart_resize_video(
            n_frames,
            height,
            width,
            tps,
            ps * ms,
            p.min_pixels,
            p.max_pixels,
        )?;
        let resized = frames
            .iter()
            .map(|f| resize_bicubic(f, rw, rh))
            .collect::<Result<Vec<_>>>()?;
        let rescale = p.rescale_factor as f32;
        let mean = p.image_mean.map(|m| m as f32);
        let std = p.image_std.map(|s| s as f32);
        let value = |frame: &RgbImage, x: u32, y: u32, c: usize| -> f32 {
            let raw = frame.get_pixel(x, y).0.get(c).copied().unwrap_or(0);
            let mut v = f32::from(raw);
            if p.do_rescale {
                v *= rescale;
            }
            if p.do_normalize {
                v = (v - mean.get(c).copied().unwrap_or(0.0)) / std.get(c).copied().unwrap_or(1.0);
            }
            v
        };
        // The last frame fills the final temporal patch.
        let grid_t = n_frames.div_ceil(tps);
        let frame_at = |t: u32| &resized[(t as usize).min(resized.len() - 1)];
        let (grid_h, grid_w) = (rh / ps, rw / ps);
        let mut out =
            Vec::with_capacity((grid_t as usize * tps as usize) * (rh as usize * rw as usize * 3));
        // Rows (t, block_h, block_w, merge_h, merge_w); columns (channel,
        // frame, y, x): Python's transpose (0,1,4,7,5,8,3,2,6,9).
        for gt in 0..grid_t {
            for bh in 0..grid_h / ms {
                for bw in 0..grid_w / ms {
                    for mh in 0..ms {
                        for mw in 0..ms {
                            let (y0, x0) = ((bh * ms + mh) * ps, (bw * ms + mw) * ps);
                            for c in 0..3 {
                                for dt in 0..tps {
                                    let frame = frame_at(gt * tps + dt);
                                    for py in 0..ps {
                                        for px in 0..ps {
                                            out.push(value(frame, x0 + px, y0 + py, c));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok((out, [grid_t as i32, grid_h as i32, grid_w as i32]))
    }

    /// `pixel_values_videos` `[sum of t*h*w, 3 * tps * ps²]` (float32, all
    /// videos concatenated) and each video's `[t, h, w]` grid.
    ///
    /// Python: `Qwen3VLVideoProcessor.__call__`.
    pub fn preprocess(&self, videos: &[Vec<RgbImage>]) -> Result<(Array, Vec<[i32; 3]>)> {
        if videos.is_empty() {
            return Err(Error::InvalidArgument(
                "preprocess: no videos given; pass at least one".to_owned(),
            ));
        }
        let mut data = Vec::new();
        let mut grids = Vec::with_capacity(videos.len());
        for (i, frames) in videos.iter().enumerate() {
            let (patches, grid) = self.process_one(frames).map_err(|e| Error::Image {
                source_name: format!("video #{i}"),
                message: e.to_string(),
            })?;
            data.extend(patches);
            grids.push(grid);
        }
        let p = &self.settings;
        let cols = 3 * p.temporal_patch_size * p.patch_size * p.patch_size;
        let rows = data.len() / cols.max(1) as usize;
        let shape = [
            i32::try_from(rows)
                .map_err(|_| Error::InvalidArgument(format!("{rows} patches overflow i32")))?,
            i32::try_from(cols).unwrap_or(i32::MAX),
        ];
        Ok((Array::from_slice(&data, &shape)?, grids))
    }
}

/// Seconds of each temporal patch group of a video: the mean of the times
/// of its first and last frame, a frame's time being its source index over
/// the source fps when `metadata` (`(frame indices, source fps)`) is
/// given, else its position at `fps`.
///
/// Python: `_video_group_timestamps`.
pub fn video_group_timestamps(
    grid_t: usize,
    temporal_patch_size: usize,
    fps: f64,
    metadata: Option<(&[usize], f64)>,
) -> Result<Vec<f64>> {
    let tps = temporal_patch_size.max(1);
    let frame_times: Vec<f64> = match metadata {
        None => (0..grid_t * tps).map(|i| i as f64 / fps).collect(),
        Some((indices, source_fps)) => {
            if !(source_fps.is_finite() && source_fps > 0.0) {
                return Err(Error::InvalidArgument(
                    "Video metadata fps must be positive and finite.".to_owned(),
                ));
            }
            let mut indices = indices.to_vec();
            if let Some(&last) = indices.last() {
                let pad = (tps - indices.len() % tps) % tps;
                indices.extend(std::iter::repeat_n(last, pad));
            }
            if indices.len() != grid_t * tps {
                return Err(Error::InvalidArgument(
                    "Video frame indices must match the decoded frame count.".to_owned(),
                ));
            }
            indices.iter().map(|&i| i as f64 / source_fps).collect()
        }
    };
    Ok(frame_times
        .chunks(tps)
        .map(|group| (group[0] + group[group.len() - 1]) / 2.0)
        .collect())
}

/// One `<t.t seconds>` marker and vision block of `frame_seqlen` video
/// tokens per temporal group (Python: `_timestamped_video_placeholder`,
/// with the final `<|placeholder|>` replacement done at once).
pub fn timestamped_video_placeholder(
    timestamps: &[f64],
    frame_seqlen: usize,
    video_token: &str,
    vision_start_token: &str,
    vision_end_token: &str,
) -> String {
    timestamps
        .iter()
        .map(|seconds| {
            format!(
                "<{} seconds>{vision_start_token}{}{vision_end_token}",
                py_format_1f(*seconds),
                video_token.repeat(frame_seqlen)
            )
        })
        .collect()
}

/// Python's `f"{x:.1f}"`: round half to even on the exact binary value,
/// which Rust's `{:.1}` also does.
fn py_format_1f(x: f64) -> String {
    format!("{x:.1}")
}

/// The media inputs the Qwen processors make for their models (Python:
/// the `BatchFeature` entries of `Qwen3VLProcessor.__call__` and
/// `Qwen2_5_VLProcessor.__call__` beside `input_ids`).
#[derive(Debug, Clone, Default)]
pub struct QwenVlInputs {
    /// Python: `pixel_values`, the images' patches `[patches, C*T*P*P]`.
    pub pixel_values: Option<Array>,
    /// Python: `image_grid_thw`, `[images, 3]` int32.
    pub image_grid_thw: Option<Array>,
    /// Python: `pixel_values_videos`, the videos' patches.
    pub pixel_values_videos: Option<Array>,
    /// Python: `video_grid_thw`, `[videos, 3]` int32.
    pub video_grid_thw: Option<Array>,
    /// Seconds each video's temporal patch spans (transformers:
    /// `second_per_grid_ts`, `temporal_patch_size / fps`); Qwen2.5-VL's
    /// absolute-time positions use them. Python mlx-vlm 0.7.6 makes none.
    pub second_per_grid_ts: Option<Vec<f64>>,
}

impl QwenVlInputs {
    /// Inputs of images preprocessed into `pixel_values` with `grids`.
    pub fn images(pixel_values: Array, grids: &[[i32; 3]]) -> Result<Self> {
        Ok(Self {
            pixel_values: Some(pixel_values),
            image_grid_thw: Some(grid_array(grids)?),
            ..Self::default()
        })
    }
}

/// `grids` as the `[n, 3]` int32 array the models take.
pub fn grid_array(grids: &[[i32; 3]]) -> Result<Array> {
    let flat: Vec<i32> = grids.iter().flatten().copied().collect();
    let n = i32::try_from(grids.len())
        .map_err(|_| Error::InvalidArgument(format!("{} grids exceed int32", grids.len())))?;
    Ok(Array::from_slice(&flat, &[n, 3])?)
}

/// Python: `_drop_surplus_image_tokens`: removes the first `count` image
/// placeholders of `text`, each with its `vision_start`/`vision_end`
/// wrapper when it has one.
pub fn drop_surplus_image_tokens(
    text: &str,
    image_token: &str,
    vision_start_token: &str,
    vision_end_token: &str,
    count: usize,
) -> String {
    let mut text = text.to_owned();
    if count == 0 || image_token.is_empty() || !text.contains(image_token) {
        return text;
    }
    let wrapped = format!("{vision_start_token}{image_token}{vision_end_token}");
    for _ in 0..count {
        let Some(token_index) = text.find(image_token) else {
            break;
        };
        if let Some(wrapped_index) = token_index.checked_sub(vision_start_token.len())
            && text[wrapped_index..].starts_with(&wrapped)
        {
            text.replace_range(wrapped_index..wrapped_index + wrapped.len(), "");
            continue;
        }
        text.replace_range(token_index..token_index + image_token.len(), "");
    }
    text
}

/// Expands the first `grids.len()` `image_token`s of `text` to
/// `t*h*w / merge_size²` copies each (Python: the placeholder loops of the
/// Qwen processors' `__call__`).
///
/// Fails with [`Error::ImageTokenMismatch`] when `text` has fewer
/// placeholders than grids, or placeholders but no grids (Python passes
/// those through as plain tokens, which the model then reads as text:
/// stricter here).
pub fn expand_image_tokens(
    text: &str,
    image_token: &str,
    grids: &[[i32; 3]],
    merge_size: u32,
) -> Result<String> {
    if image_token.is_empty() {
        return Err(Error::InvalidArgument(
            "expand_image_tokens: the image token is empty".to_owned(),
        ));
    }
    let found = text.matches(image_token).count();
    if found < grids.len() || (grids.is_empty() && found > 0) {
        return Err(Error::ImageTokenMismatch {
            message: format!(
                "the prompt has {found} {image_token} placeholder(s) but {} image(s) were \
                 given; put one {image_token} (inside <|vision_start|>...<|vision_end|>) in the \
                 prompt per image, e.g. through the chat template's image entries",
                grids.len()
            ),
        });
    }
    let merge_length = i64::from(merge_size).pow(2).max(1);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    for grid in grids {
        let Some(at) = rest.find(image_token) else {
            break;
        };
        let count = grid
            .iter()
            .try_fold(1i64, |acc, &v| acc.checked_mul(i64::from(v)))
            .filter(|n| *n >= 0)
            .and_then(|n| usize::try_from(n / merge_length).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "expand_image_tokens: grid {grid:?} is negative or too large"
                ))
            })?;
        out.push_str(&rest[..at]);
        out.push_str(&image_token.repeat(count));
        rest = &rest[at + image_token.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Qwen3-VL's processor: images to `pixel_values` and the prompt's image
/// placeholders expanded to one token per merged patch; surplus
/// placeholders are dropped, as in Python.
///
/// Python: `Qwen3VLProcessor` (image part; videos are not ported yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3VlProcessor {
    /// The image processor (patch size 16 unless the checkpoint says).
    pub image_processor: Qwen3VlImageProcessor,
    /// The video processor (patch size 16 unless the checkpoint says).
    pub video_processor: Qwen3VlVideoProcessor,
    /// Python: `video_token`.
    pub video_token: String,
    /// Python: `image_token`.
    pub image_token: String,
    /// Python: `vision_start_token`.
    pub vision_start_token: String,
    /// Python: `vision_end_token`.
    pub vision_end_token: String,
}

impl Qwen3VlProcessor {
    /// Python: `Qwen3VLProcessor.__init__` with the default tokens and
    /// video processor.
    pub fn new(image_processor: Qwen3VlImageProcessor) -> Self {
        Self {
            image_processor,
            video_processor: Qwen3VlVideoProcessor::default(),
            video_token: "<|video_pad|>".to_owned(),
            image_token: "<|image_pad|>".to_owned(),
            vision_start_token: "<|vision_start|>".to_owned(),
            vision_end_token: "<|vision_end|>".to_owned(),
        }
    }

    /// The processor of the checkpoint folder `dir` with `default_patch_size`
    /// where its `preprocessor_config.json` / `processor_config.json` (each
    /// optional) name none (Python: `_qwen_vl_image_kwargs`).
    pub fn from_pretrained(dir: &Path, default_patch_size: u32) -> Result<Self> {
        Ok(Self {
            video_processor: Qwen3VlVideoProcessor::from_pretrained(dir, default_patch_size)?,
            ..Self::new(Qwen3VlImageProcessor::from_pretrained(
                dir,
                default_patch_size,
            )?)
        })
    }

    /// The prompt with each video placeholder expanded (Python: the video
    /// part of `Qwen3VLProcessor.__call__`): a placeholder wrapped in
    /// `vision_start`/`vision_end` becomes one `<t.t seconds>` block per
    /// temporal patch group, timed from the video's frame indices; a bare
    /// one becomes `t*h*w / merge_size²` tokens. Placeholders and videos
    /// differing in number is an [`Error::ImageTokenMismatch`] (Python
    /// fails with an index error on surplus placeholders and misaligns the
    /// features on surplus videos).
    pub fn expand_video_tokens(
        &self,
        text: &str,
        grids: &[[i32; 3]],
        videos: &[Video],
    ) -> Result<String> {
        let token = self.video_token.as_str();
        let found = text.matches(token).count();
        if found != grids.len() || grids.len() != videos.len() {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {found} {token} placeholder(s) for {} video(s); put one \
                     <|vision_start|>{token}<|vision_end|> in the prompt per video, e.g. \
                     through the chat template's video entries",
                    grids.len()
                ),
            });
        }
        let merge_length = u64::from(self.video_processor.settings.merge_size)
            .pow(2)
            .max(1);
        let tps = self.video_processor.settings.temporal_patch_size as usize;
        let wrapped = format!(
            "{}{token}{}",
            self.vision_start_token, self.vision_end_token
        );
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        for (grid, video) in grids.iter().zip(videos) {
            let Some(at) = rest.find(token) else {
                break;
            };
            let [t, h, w] = grid.map(|d| u64::try_from(d).unwrap_or(0));
            let frame_seqlen = usize::try_from(h * w / merge_length).unwrap_or(usize::MAX);
            let start = at.checked_sub(self.vision_start_token.len());
            match start.filter(|&s| rest[s..].starts_with(&wrapped)) {
                Some(s) => {
                    let timestamps = video_group_timestamps(
                        t as usize,
                        tps,
                        video.sampled_fps(),
                        Some((&video.frames_indices, video.fps)),
                    )?;
                    out.push_str(&rest[..s]);
                    out.push_str(&timestamped_video_placeholder(
                        &timestamps,
                        frame_seqlen,
                        token,
                        &self.vision_start_token,
                        &self.vision_end_token,
                    ));
                    rest = &rest[s + wrapped.len()..];
                }
                None => {
                    out.push_str(&rest[..at]);
                    out.push_str(&token.repeat(t as usize * frame_seqlen));
                    rest = &rest[at + token.len()..];
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The prompt with its image placeholders expanded for `grids` (Python:
    /// the image part of `Qwen3VLProcessor.__call__` for one text).
    pub fn expand_image_tokens(&self, text: &str, grids: &[[i32; 3]]) -> Result<String> {
        let found = text.matches(self.image_token.as_str()).count();
        let text = if grids.is_empty() {
            text.to_owned()
        } else {
            drop_surplus_image_tokens(
                text,
                &self.image_token,
                &self.vision_start_token,
                &self.vision_end_token,
                found.saturating_sub(grids.len()),
            )
        };
        expand_image_tokens(
            &text,
            &self.image_token,
            grids,
            self.image_processor.merge_size,
        )
    }
}

impl ModelProcessor for Qwen3VlProcessor {
    fn with_options(&self, options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>> {
        Ok(Box::new(Self {
            image_processor: self
                .image_processor
                .clone()
                .try_with_pixels(options.min_pixels, options.max_pixels)?,
            ..self.clone()
        }))
    }

    /// Python: `Qwen3VLProcessor.__call__` then the tokenizer.
    fn prepare_inputs(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs> {
        prepare_qwen_inputs(
            tokenizer,
            prompt,
            media,
            &self.image_processor,
            &self.video_processor,
            false,
            |text, grids| {
                let text = self.expand_image_tokens(text, grids.images)?;
                self.expand_video_tokens(&text, grids.videos, media.videos)
            },
        )
    }
}

/// The grids of a prompt's media, for its placeholder expansion.
#[derive(Debug, Clone, Copy)]
pub struct MediaGrids<'a> {
    /// `[t, h, w]` of each image.
    pub images: &'a [[i32; 3]],
    /// `[t, h, w]` of each video.
    pub videos: &'a [[i32; 3]],
}

/// Loads and preprocesses the images and videos of `media`, expands the
/// prompt with `expand` and tokenizes it: the steps every Qwen processor
/// shares (Python: the processors' `__call__`). With
/// `second_per_grid_ts`, each video's seconds per temporal patch
/// (`temporal_patch_size / sampled fps`, as transformers' processor
/// computes them) go with the inputs.
pub fn prepare_qwen_inputs(
    tokenizer: &Tokenizer,
    prompt: &str,
    media: PromptMedia<'_>,
    image_processor: &Qwen3VlImageProcessor,
    video_processor: &Qwen3VlVideoProcessor,
    second_per_grid_ts: bool,
    expand: impl FnOnce(&str, MediaGrids<'_>) -> Result<String>,
) -> Result<GenerateInputs> {
    let mut inputs = QwenVlInputs::default();
    let mut image_grids = Vec::new();
    if !media.images.is_empty() {
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let (pixel_values, grids) = image_processor.preprocess(&images)?;
        inputs.pixel_values = Some(pixel_values);
        inputs.image_grid_thw = Some(grid_array(&grids)?);
        image_grids = grids;
    }
    let mut video_grids = Vec::new();
    if !media.videos.is_empty() {
        let frames: Vec<Vec<RgbImage>> = media.videos.iter().map(|v| v.frames.clone()).collect();
        let (pixel_values, grids) = video_processor.preprocess(&frames)?;
        inputs.pixel_values_videos = Some(pixel_values);
        inputs.video_grid_thw = Some(grid_array(&grids)?);
        if second_per_grid_ts {
            let tps = f64::from(video_processor.settings.temporal_patch_size);
            inputs.second_per_grid_ts =
                Some(media.videos.iter().map(|v| tps / v.sampled_fps()).collect());
        }
        video_grids = grids;
    }
    let text = expand(
        prompt,
        MediaGrids {
            images: &image_grids,
            videos: &video_grids,
        },
    )?;
    let input_ids = input_ids_array(&tokenizer.encode(&text)?)?;
    let has_media = !image_grids.is_empty() || !video_grids.is_empty();
    let mut patch_grids = image_grids;
    patch_grids.extend(video_grids);
    Ok(GenerateInputs {
        input_ids,
        mask: None,
        media: has_media.then(|| ModelInputs::new(inputs, patch_grids)),
    })
}

/// Expands each `video_token` of `text` to `t*h*w / merge_size²` copies for
/// its video's grid (Python: the video loop of `Qwen2_5_VLProcessor` and
/// `Qwen2VLProcessor`). Fails with [`Error::ImageTokenMismatch`] when the
/// placeholders and the videos differ in number.
pub fn expand_video_tokens(
    text: &str,
    video_token: &str,
    grids: &[[i32; 3]],
    merge_size: u32,
) -> Result<String> {
    let found = text.matches(video_token).count();
    if found != grids.len() {
        return Err(Error::ImageTokenMismatch {
            message: format!(
                "the prompt has {found} {video_token} placeholder(s) but {} video(s) were \
                 given; put one {video_token} (inside <|vision_start|>...<|vision_end|>) in the \
                 prompt per video, e.g. through the chat template's video entries",
                grids.len()
            ),
        });
    }
    if grids.is_empty() {
        return Ok(text.to_owned());
    }
    expand_image_tokens(text, video_token, grids, merge_size)
}

/// The Qwen3-VL family's processor factory (Python:
/// `Qwen3VLProcessor.from_pretrained`, patch size 16 by default).
pub fn load_processor(model_path: &Path, _config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(Qwen3VlProcessor::from_pretrained(model_path, 16)?))
}
