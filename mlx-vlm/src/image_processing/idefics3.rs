//! transformers 5.23's `Idefics3ImageProcessorPil`
//! (`transformers/models/idefics3/image_processing_pil_idefics3.py`) and
//! its copy `SmolVLMImageProcessorPil` (the same code): the image
//! processor Python mlx-vlm 0.7.6 runs for Idefics3 and SmolVLM
//! (`use_fast=False`). Convert to RGB; resize so the longest edge is
//! `size.longest_edge` (LANCZOS, the short edge rounded up to even);
//! with `do_image_splitting`, resize up to whole tiles of
//! `max_image_size.longest_edge`, cut them row by row and append the
//! whole image resized to one tile (the global view), else resize to one
//! tile; rescale, normalise; pad every tile of a prompt to the largest
//! (here they are all one tile) with a pixel mask. Each resize works on
//! the 8-bit result of the previous one, as Pillow does.
//!
//! Class defaults: `resample` LANCZOS, `size` `{"longest_edge": 1456}`,
//! `max_image_size` `{"longest_edge": 364}`, `image_mean` / `image_std`
//! 0.5, `rescale_factor` 1/255, every `do_*` true.
//!
//! Divergences from transformers / Python, besides the module's
//! ([`crate::image_processing`]):
//!
//! - No minimum size: Python upsamples any image (even 1 x 1) to
//!   `size.longest_edge` and so does this; only a zero-size image is an
//!   [`Error::Image`].
//! - `size` and `max_image_size` must be positive and at most
//!   [`super::MAX_SIDE`], and the tiles of one call fit in
//!   [`super::MAX_OUTPUT_BYTES`] (checked before anything is allocated).
//! - With `do_pad` off, Python returns nested lists (which mlx-vlm's
//!   model cannot take); here the tiles, all one size, are stacked anyway
//!   with a mask of ones.
//! - [`ImageProcessorOptions::size`] (a `(height, width)`) is refused:
//!   these processors take `longest_edge` sizes.

use std::path::Path;

use image::RgbImage;
use mlx_rs::Array;
use serde_json::Value;

use super::siglip::{read_pretrained, with_processor_overrides};
use super::{
    BaseSettings, ClassDefaults, ImageInput, ImageProcessorOptions, MAX_OUTPUT_BYTES, MAX_SIDE,
    config_error, key, read_flag,
};
use crate::image::{Filter, resize};
use crate::{Error, Result};

/// Python: `MAX_IMAGE_SIZE`, the cap of the longest edge after the first
/// resize.
pub const MAX_IMAGE_SIZE: u32 = 4096;

const DEFAULTS: ClassDefaults = ClassDefaults {
    resample: Filter::Lanczos,
    // Unused: `size` is read here (a `longest_edge`), not by BaseSettings.
    size: (1, 1),
    default_to_square: true,
};

/// A `size` setting: transformers' `SizeDict` with `longest_edge`, or a
/// fixed `height` and `width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Python: `{"longest_edge": n}`.
    LongestEdge(u32),
    /// Python: `{"height": h, "width": w}`.
    Exact(u32, u32),
}

/// transformers' `Idefics3ImageProcessorPil` (and `SmolVLMImageProcessorPil`).
#[derive(Debug, Clone, PartialEq)]
pub struct Idefics3ImageProcessor {
    /// Resampling, rescaling, normalising and RGB conversion (its `size`
    /// is unused: see [`Idefics3ImageProcessor::size`]).
    pub settings: BaseSettings,
    /// The first resize's target (`size`).
    pub size: Size,
    /// Side of a tile (`max_image_size.longest_edge`).
    pub max_image_size: u32,
    /// `do_image_splitting`.
    pub do_image_splitting: bool,
    /// `do_pad`.
    pub do_pad: bool,
}

/// What the processor returns (Python: the `BatchFeature` with
/// `return_row_col_info`), for the images of one prompt.
#[derive(Debug, Clone)]
pub struct Idefics3Images {
    /// `[1, tiles, 3, tile, tile]` float32: each image's tiles row by row,
    /// then its global view (or the image alone when not split).
    pub pixel_values: Array,
    /// `[1, tiles, tile, tile]` int32, 1 where a pixel is real.
    pub pixel_attention_mask: Array,
    /// Rows of tiles per image (0: not split).
    pub rows: Vec<usize>,
    /// Columns of tiles per image (0: not split).
    pub cols: Vec<usize>,
}

/// Python: `_resize_output_size_rescale_to_max_len(height, width,
/// min_len=1, max_len)`.
pub fn rescale_to_max_len(height: u32, width: u32, max_len: u32) -> (u32, u32) {
    let (mut h, mut w) = (i64::from(height), i64::from(width));
    let aspect_ratio = w as f64 / h as f64;
    let max_len = i64::from(max_len);
    if w >= h {
        w = max_len;
        h = (w as f64 / aspect_ratio) as i64;
        if h % 2 != 0 {
            h += 1;
        }
    } else {
        h = max_len;
        w = (h as f64 * aspect_ratio) as i64;
        if w % 2 != 0 {
            w += 1;
        }
    }
    (clamp_side(h), clamp_side(w))
}

/// Python: `_resize_output_size_scale_below_upper_bound(height, width,
/// max_len)`.
pub fn scale_below_upper_bound(height: u32, width: u32, max_len: u32) -> (u32, u32) {
    let (mut h, mut w) = (i64::from(height), i64::from(width));
    let aspect_ratio = w as f64 / h as f64;
    let max_len = i64::from(max_len);
    if w >= h && w > max_len {
        w = max_len;
        h = (w as f64 / aspect_ratio) as i64;
    } else if h > w && h > max_len {
        h = max_len;
        w = (h as f64 * aspect_ratio) as i64;
    }
    (clamp_side(h), clamp_side(w))
}

/// At least 1 (Python's `max(side, 1)`), at most `u32::MAX`.
fn clamp_side(side: i64) -> u32 {
    u32::try_from(side.max(1)).unwrap_or(u32::MAX)
}

/// Python: `resize_for_vision_encoder`'s size: both sides up to whole
/// tiles of `tile`, keeping the aspect ratio for the shorter one first.
pub fn vision_encoder_size(height: u32, width: u32, tile: u32) -> (u32, u32) {
    let t = f64::from(tile);
    let up = |v: f64| ((v / t).ceil() * t) as i64;
    let (h, w) = (f64::from(height), f64::from(width));
    let aspect_ratio = w / h;
    let (h, w) = if width >= height {
        let w = up(w);
        let h = (w as f64 / aspect_ratio) as i64;
        (up(h as f64), w)
    } else {
        let h = up(h);
        let w = (h as f64 * aspect_ratio) as i64;
        (h, up(w as f64))
    };
    (clamp_side(h), clamp_side(w))
}

/// A `{"longest_edge": n}` or `{"height": h, "width": w}` setting.
fn read_size(raw: &Value, name: &str, default: Size, file: &str) -> Result<Size> {
    let Some(Some(v)) = key(raw, name) else {
        return Ok(default);
    };
    let side = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .filter(|&x| x > 0 && x <= MAX_SIDE)
    };
    if let Some(n) = side("longest_edge") {
        return Ok(Size::LongestEdge(n));
    }
    if let (Some(h), Some(w)) = (side("height"), side("width")) {
        return Ok(Size::Exact(h, w));
    }
    Err(config_error(
        file,
        name,
        format!(
            "{v}: expected {{\"longest_edge\": N}} or {{\"height\": H, \"width\": W}} with \
             sides from 1 to {MAX_SIDE}"
        ),
    ))
}

impl Idefics3ImageProcessor {
    /// The processor of a parsed `preprocessor_config.json` (`raw`), with
    /// `processor_config.json`'s `image_processor.size` over it when given
    /// (SmolVLM's `ip_overrides`; Idefics3 passes `None`).
    pub fn from_config(raw: &Value, processor_config: Option<&Value>) -> Result<Self> {
        Self::parse(raw, processor_config, "preprocessor_config.json")
    }

    /// [`Idefics3ImageProcessor::from_config`] of settings read from `file`.
    fn parse(raw: &Value, processor_config: Option<&Value>, file: &str) -> Result<Self> {
        let raw = with_processor_overrides(raw, processor_config);
        let mut base = raw.clone();
        if let Value::Object(map) = &mut base {
            map.remove("size");
        }
        let settings = BaseSettings::read(&base, &DEFAULTS, file)?;
        let size = read_size(&raw, "size", Size::LongestEdge(4 * 364), file)?;
        let max_image_size = match read_size(&raw, "max_image_size", Size::LongestEdge(364), file)?
        {
            Size::LongestEdge(n) => n,
            Size::Exact(..) => {
                return Err(config_error(
                    file,
                    "max_image_size",
                    "expected {\"longest_edge\": N} (the side of a tile)",
                ));
            }
        };
        Ok(Idefics3ImageProcessor {
            settings,
            size,
            max_image_size,
            do_image_splitting: read_flag(&raw, "do_image_splitting", true, file)?,
            do_pad: read_flag(&raw, "do_pad", true, file)?,
        })
    }

    /// The processor of the checkpoint folder `dir`: its settings are
    /// `processor_config.json`'s `image_processor` object when there is one
    /// (transformers 5's `get_image_processor_dict` prefers the nested
    /// config, whole), else `preprocessor_config.json`'s; `overrides` says
    /// whether `processor_config.json`'s `image_processor.size` is applied
    /// over them (SmolVLM's `ip_overrides`) or not (Idefics3). Errors name
    /// the file in `dir`.
    pub fn from_pretrained(dir: &Path, overrides: bool) -> Result<Self> {
        read_pretrained(dir, |raw, proc_cfg| {
            let overrides = if overrides { proc_cfg } else { None };
            match proc_cfg.and_then(|c| c.get("image_processor")) {
                Some(nested @ Value::Object(_)) => {
                    Self::parse(nested, overrides, "processor_config.json")
                }
                _ => Self::parse(raw, overrides, "preprocessor_config.json"),
            }
        })
    }

    /// A copy with `options` applied (Python: keyword arguments of
    /// `__call__`); the pan-and-scan options do not apply and are ignored.
    pub fn with_options(&self, options: &ImageProcessorOptions) -> Result<Self> {
        if let Some(size) = options.size {
            return Err(Error::InvalidParameter {
                name: "size",
                value: format!("{size:?}"),
                message: "ImageProcessorOptions::size: Idefics3 and SmolVLM resize to a \
                          longest edge (preprocessor_config.json's size.longest_edge); leave \
                          size unset"
                    .into(),
            });
        }
        let mut out = self.clone();
        out.settings = self.settings.with_options(options)?;
        Ok(out)
    }

    /// Resizes `image` with the configured filter to `(height, width)`.
    fn resize_to(&self, image: &RgbImage, (h, w): (u32, u32)) -> Result<RgbImage> {
        resize(image, w, h, self.settings.resample)
    }

    /// Python: `split_images`: the tiles row by row and the global view,
    /// with the rows and columns (0 and 0 when the image is one tile).
    fn split_image(&self, image: RgbImage) -> Result<(Vec<RgbImage>, usize, usize)> {
        let (width, height) = image.dimensions();
        let m = self.max_image_size;
        if height <= m && width <= m {
            return Ok((vec![image], 0, 0));
        }
        let rows = (height - m) / m + 1;
        let cols = (width - m) / m + 1;
        let mut frames = Vec::with_capacity((rows * cols + 1) as usize);
        for r in 0..rows {
            for c in 0..cols {
                // Numpy slicing clips at the edge; the sides are whole tiles.
                let (x, y) = (c * m, r * m);
                let cw = m.min(width - x);
                let ch = m.min(height - y);
                frames.push(image::imageops::crop_imm(&image, x, y, cw, ch).to_image());
            }
        }
        frames.push(self.resize_to(&image, (m, m))?);
        Ok((frames, rows as usize, cols as usize))
    }

    /// The tiles of one image of `width` x `height`, without resizing:
    /// (tiles, rows, cols), for the size check.
    fn plan(&self, width: u32, height: u32) -> (u64, u32, u32) {
        let (mut h, mut w) = (height, width);
        if self.settings.do_resize {
            (h, w) = match self.size {
                Size::LongestEdge(n) => {
                    let (h, w) = rescale_to_max_len(h, w, n);
                    scale_below_upper_bound(h, w, MAX_IMAGE_SIZE)
                }
                Size::Exact(h, w) => (h, w),
            };
        }
        if !self.do_image_splitting {
            return (1, 0, 0);
        }
        let (h, w) = vision_encoder_size(h, w, self.max_image_size);
        let m = self.max_image_size;
        if h <= m && w <= m {
            return (1, 0, 0);
        }
        let (rows, cols) = ((h - m) / m + 1, (w - m) / m + 1);
        (u64::from(rows) * u64::from(cols) + 1, rows, cols)
    }

    /// Preprocesses the images of one prompt (Python: `__call__([images],
    /// return_row_col_info=True)`).
    pub fn preprocess<'a, I>(&self, images: impl IntoIterator<Item = I>) -> Result<Idefics3Images>
    where
        I: Into<ImageInput<'a>>,
    {
        let s = &self.settings;
        s.validate().map_err(|(name, message)| {
            Error::InvalidArgument(format!("image processor setting {name}: {message}"))
        })?;
        let images: Vec<ImageInput<'a>> = images.into_iter().map(Into::into).collect();
        let m = u64::from(self.max_image_size);
        let mut tiles = 0u64;
        for (i, image) in images.iter().enumerate() {
            let (w, h) = image.dimensions();
            if w == 0 || h == 0 {
                return Err(Error::Image {
                    source_name: format!("<image {i}>"),
                    message: format!("has zero size {w}x{h}"),
                });
            }
            tiles = tiles.saturating_add(self.plan(w, h).0);
        }
        let bytes = tiles.saturating_mul(3 * 4 + 4).saturating_mul(m * m);
        if bytes > MAX_OUTPUT_BYTES {
            return Err(Error::LimitExceeded {
                context: "Idefics3 image processor".to_owned(),
                limit: "pixel values bytes",
                message: format!(
                    "{tiles} tiles of {m}x{m} take {bytes} bytes of pixel values and mask, more \
                     than the limit of {MAX_OUTPUT_BYTES}; pass fewer or smaller images, or \
                     lower size.longest_edge"
                ),
            });
        }
        let mut frames = Vec::new();
        let (mut rows, mut cols) = (Vec::new(), Vec::new());
        for (i, image) in images.iter().enumerate() {
            let mut rgb = s.prepare(*image, i)?;
            if s.do_resize {
                let (w, h) = rgb.dimensions();
                let target = match self.size {
                    Size::LongestEdge(n) => {
                        let (h, w) = rescale_to_max_len(h, w, n);
                        scale_below_upper_bound(h, w, MAX_IMAGE_SIZE)
                    }
                    Size::Exact(h, w) => (h, w),
                };
                rgb = self.resize_to(&rgb, target)?;
            }
            if self.do_image_splitting {
                let (w, h) = rgb.dimensions();
                let target = vision_encoder_size(h, w, self.max_image_size);
                rgb = self.resize_to(&rgb, target)?;
                let (split, r, c) = self.split_image(rgb)?;
                frames.extend(split);
                rows.push(r);
                cols.push(c);
            } else {
                let side = self.max_image_size;
                frames.push(self.resize_to(&rgb, (side, side))?);
                rows.push(0);
                cols.push(0);
            }
        }
        self.stack(&frames, rows, cols)
    }

    /// Rescales, normalises and pads `frames` to the largest (Python:
    /// `_preprocess`'s last steps, one prompt).
    fn stack(
        &self,
        frames: &[RgbImage],
        rows: Vec<usize>,
        cols: Vec<usize>,
    ) -> Result<Idefics3Images> {
        let max_h = frames.iter().map(|f| f.height()).max().unwrap_or(0);
        let max_w = frames.iter().map(|f| f.width()).max().unwrap_or(0);
        let n = frames.len();
        let (hh, ww) = (max_h as usize, max_w as usize);
        let plane = hh * ww;
        let mut pixels = vec![0f32; n * 3 * plane];
        let mut mask = vec![0i32; n * plane];
        for (k, frame) in frames.iter().enumerate() {
            let values = self.settings.to_pixel_values(std::slice::from_ref(frame))?;
            let values: Vec<f32> = values.to_vec()?;
            let (fw, fh) = (frame.width() as usize, frame.height() as usize);
            for c in 0..3 {
                for y in 0..fh {
                    let src = &values[(c * fh + y) * fw..(c * fh + y + 1) * fw];
                    let dst = (k * 3 + c) * plane + y * ww;
                    pixels[dst..dst + fw].copy_from_slice(src);
                }
            }
            for y in 0..fh {
                let row = k * plane + y * ww;
                mask[row..row + fw].fill(1);
            }
        }
        let dim = |v: usize| {
            i32::try_from(v).map_err(|_| {
                Error::InvalidArgument(format!("pixel values dimension {v} exceeds int32"))
            })
        };
        let (n, h, w) = (dim(n)?, dim(hh)?, dim(ww)?);
        Ok(Idefics3Images {
            pixel_values: Array::from_slice(&pixels, &[1, n, 3, h, w])?,
            pixel_attention_mask: Array::from_slice(&mask, &[1, n, h, w])?,
            rows,
            cols,
        })
    }
}
