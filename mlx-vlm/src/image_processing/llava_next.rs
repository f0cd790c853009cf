//! transformers 5.23's `LlavaNextImageProcessorPil` (what Python mlx-vlm's
//! LLaVA-NeXT processor runs, `use_fast=False`): each image is resized
//! (aspect kept, Pillow filter) into the `image_grid_pinpoints` resolution
//! that keeps most of it ([`select_best_resolution`]), zero-padded to it
//! centred, cut into `crop_size` tiles row by row, and preceded by the
//! whole image resized to `size` (the base image); every tile then goes
//! through CLIP's resize, center crop, rescale and normalise. The images'
//! tile stacks are zero-padded to the largest count.
//!
//! Divergences from transformers: `image_grid_pinpoints` that is missing a
//! list of `[height, width]` pairs of positive integers (each a multiple of
//! the tile side, at most [`MAX_PINPOINT_SIDE`]) is an [`Error::Config`]
//! naming the key (Python fails later, or tiles partially); more tiles than
//! [`super::MAX_OUTPUT_BYTES`] allows are refused before any allocation.

use std::path::Path;

use image::RgbImage;
use mlx_rs::Array;
use serde_json::Value;

use super::clip::ClipImageProcessor;
use super::siglip::read_pretrained;
use super::{ImageInput, ImageProcessorOptions, MAX_OUTPUT_BYTES, config_error, key, read_flag};
use crate::{Error, Result};

/// The largest side of a pinpoint resolution (released: up to 1008).
pub const MAX_PINPOINT_SIDE: u32 = 8192;

/// transformers' `image_grid_pinpoints` default, `[height, width]`.
pub const DEFAULT_PINPOINTS: [[u32; 2]; 5] =
    [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

/// Python: `select_best_resolution(original_size, possible_resolutions)`:
/// the `(height, width)` that keeps the most of the image once it is
/// scaled to fit, the one wasting least on ties; `None` only for an empty
/// list.
pub fn select_best_resolution(
    original_size: (u32, u32),
    possible_resolutions: &[[u32; 2]],
) -> Option<(u32, u32)> {
    let (oh, ow) = (f64::from(original_size.0), f64::from(original_size.1));
    let mut best = None;
    let (mut max_effective, mut min_wasted) = (0i64, i64::MAX);
    for &[height, width] in possible_resolutions {
        let scale = (f64::from(width) / ow).min(f64::from(height) / oh);
        let (dw, dh) = ((ow * scale) as i64, (oh * scale) as i64);
        let effective = (dw * dh).min(i64::from(original_size.0) * i64::from(original_size.1));
        let wasted = i64::from(width) * i64::from(height) - effective;
        if effective > max_effective || (effective == max_effective && wasted < min_wasted) {
            max_effective = effective;
            min_wasted = wasted;
            best = Some((height, width));
        }
    }
    best
}

/// Python: `get_patch_output_size(image, target_resolution)`: the
/// `(height, width)` of the image scaled to fit `target` by its tighter
/// side (the other rounded up, capped at the target).
pub fn get_patch_output_size(original: (u32, u32), target: (u32, u32)) -> (u32, u32) {
    let (oh, ow) = (f64::from(original.0), f64::from(original.1));
    let (th, tw) = target;
    let scale_w = f64::from(tw) / ow;
    let scale_h = f64::from(th) / oh;
    if scale_w < scale_h {
        (((oh * scale_w).ceil() as u32).min(th), tw)
    } else {
        (th, ((ow * scale_h).ceil() as u32).min(tw))
    }
}

/// What the processor returns (Python: the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct LlavaNextProcessed {
    /// `[images, tiles, 3, height, width]` float32, the base image first,
    /// zero tiles after an image's own when another has more.
    pub pixel_values: Array,
    /// `(height, width)` of each original image.
    pub image_sizes: Vec<(u32, u32)>,
    /// Tiles of each image, base included (before padding).
    pub num_patches: Vec<usize>,
}

/// Python: `LlavaNextImageProcessorPil`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaNextImageProcessor {
    /// CLIP's settings and steps, which every tile goes through.
    pub clip: ClipImageProcessor,
    /// Python: `image_grid_pinpoints`, `[height, width]` each.
    pub image_grid_pinpoints: Vec<[u32; 2]>,
    /// Python: `do_pad` (pad the tile stacks to one count).
    pub do_pad: bool,
}

/// `image_grid_pinpoints`, checked: a non-empty list of `[height,
/// width]` positive integer pairs, each a multiple of `tile`.
pub fn read_pinpoints(v: Option<&Value>, tile: u32, file: &str) -> Result<Vec<[u32; 2]>> {
    let Some(v) = v else {
        return Ok(DEFAULT_PINPOINTS.to_vec());
    };
    let bad = |message: String| config_error(file, "image_grid_pinpoints", message);
    let items = v.as_array().ok_or_else(|| {
        bad(format!(
            "expected a list of [height, width] pairs, e.g. [[336, 672], [672, 336]], got {v}"
        ))
    })?;
    if items.is_empty() {
        return Err(bad(
            "is empty: no resolution to tile images into; give at least one [height, width] \
             pair, e.g. [[336, 672], [672, 336], [672, 672]]"
                .into(),
        ));
    }
    let side = |x: &Value| {
        x.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .filter(|&x| x > 0 && x <= MAX_PINPOINT_SIDE)
    };
    items
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([h, w]) => match (side(h), side(w)) {
                (Some(h), Some(w)) if h % tile == 0 && w % tile == 0 => Ok([h, w]),
                (Some(h), Some(w)) => Err(bad(format!(
                    "[{h}, {w}] is not a multiple of the {tile}-pixel tile (crop_size) on both \
                     sides; the tiles would not cover it"
                ))),
                _ => Err(bad(format!(
                    "{pair}: each side must be a positive integer up to {MAX_PINPOINT_SIDE}"
                ))),
            },
            _ => Err(bad(format!("{pair} is not a [height, width] pair"))),
        })
        .collect()
}

impl LlavaNextImageProcessor {
    /// The processor of a `preprocessor_config.json` object; missing keys
    /// take `LlavaNextImageProcessorPil`'s class defaults.
    pub fn from_config(raw: &Value, _processor_config: Option<&Value>) -> Result<Self> {
        let file = "preprocessor_config.json";
        let clip = ClipImageProcessor::from_config(raw, None)?;
        let tile = clip.crop_size.0;
        let image_grid_pinpoints =
            read_pinpoints(key(raw, "image_grid_pinpoints").flatten(), tile, file)?;
        Ok(LlavaNextImageProcessor {
            clip,
            image_grid_pinpoints,
            do_pad: read_flag(raw, "do_pad", true, file)?,
        })
    }

    /// Reads `preprocessor_config.json` of a checkpoint folder.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        read_pretrained(dir, Self::from_config)
    }

    /// A copy with per-call `options` applied.
    pub fn with_options(&self, options: &ImageProcessorOptions) -> Result<Self> {
        Ok(LlavaNextImageProcessor {
            clip: self.clip.with_options(options)?,
            ..self.clone()
        })
    }

    /// The tile side (Python: `crop_size.height`, else `size.height`, else
    /// `size.shortest_edge`).
    pub fn tile_size(&self) -> u32 {
        self.clip.crop_size.0
    }

    /// Python: `get_image_patches`: the base image resized to `size`,
    /// then the tiles of the image fitted and padded into its best
    /// resolution, row by row.
    pub fn get_image_patches(&self, image: &RgbImage) -> Result<Vec<RgbImage>> {
        let (w, h) = image.dimensions();
        let best = select_best_resolution((h, w), &self.image_grid_pinpoints).ok_or_else(|| {
            Error::InvalidArgument(
                "image_grid_pinpoints is empty: no resolution to tile the image into".into(),
            )
        })?;
        let (nh, nw) = get_patch_output_size((h, w), best);
        let resized = crate::image::resize(image, nw, nh, self.clip.settings.resample)?;
        // Python: `_pad_for_patching`, zeros around, the odd pixel after.
        let (th, tw) = best;
        let (top, left) = ((th - nh) / 2, (tw - nw) / 2);
        let mut padded = RgbImage::new(tw, th);
        image::imageops::replace(&mut padded, &resized, i64::from(left), i64::from(top));
        let tile = self.tile_size();
        let mut patches = Vec::new();
        let (ch, cw) = self.clip.size.as_tuple();
        patches.push(crate::image::resize(
            image,
            cw,
            ch,
            self.clip.settings.resample,
        )?);
        for y in (0..th).step_by(tile as usize) {
            for x in (0..tw).step_by(tile as usize) {
                let (pw, ph) = (tile.min(tw - x), tile.min(th - y));
                patches.push(image::imageops::crop_imm(&padded, x, y, pw, ph).to_image());
            }
        }
        Ok(patches)
    }

    /// Python: `LlavaNextImageProcessorPil.preprocess(images, do_pad)`.
    pub fn preprocess<'a, I>(
        &self,
        images: impl IntoIterator<Item = I>,
    ) -> Result<LlavaNextProcessed>
    where
        I: Into<ImageInput<'a>>,
    {
        let s = &self.clip.settings;
        let images: Vec<ImageInput<'a>> = images.into_iter().map(Into::into).collect();
        let mut stacks = Vec::with_capacity(images.len());
        let mut image_sizes = Vec::with_capacity(images.len());
        let tile = u64::from(self.tile_size());
        let max_tiles = self
            .image_grid_pinpoints
            .iter()
            .map(|&[h, w]| u64::from(h) / tile * (u64::from(w) / tile) + 1)
            .max()
            .unwrap_or(1);
        let (oh, ow) = s.size;
        let bytes = (images.len() as u64)
            .saturating_mul(max_tiles)
            .saturating_mul(12 * u64::from(oh) * u64::from(ow));
        if bytes > MAX_OUTPUT_BYTES {
            return Err(Error::LimitExceeded {
                context: "LLaVA-NeXT image processor".into(),
                limit: "pixel values bytes",
                message: format!(
                    "{} images of up to {max_tiles} tiles of {oh}x{ow} take up to {bytes} bytes, \
                     more than {MAX_OUTPUT_BYTES}; pass fewer images",
                    images.len()
                ),
            });
        }
        for (i, image) in images.into_iter().enumerate() {
            let image = s.prepare(image, i)?;
            let (w, h) = image.dimensions();
            image_sizes.push((h, w));
            let tiles = self
                .get_image_patches(&image)?
                .iter()
                .map(|p| self.clip.resize_and_crop(p))
                .collect::<Result<Vec<_>>>()?;
            stacks.push(s.to_pixel_values(&tiles)?);
        }
        let num_patches: Vec<usize> = stacks.iter().map(|a| a.shape()[0] as usize).collect();
        let most = num_patches.iter().copied().max().unwrap_or(0) as i32;
        if !self.do_pad && num_patches.iter().any(|&n| n as i32 != most) {
            return Err(Error::InvalidArgument(format!(
                "images give {num_patches:?} tiles and do_pad is off, so they cannot be stacked; \
                 turn do_pad on or pass one image"
            )));
        }
        let padded = stacks
            .iter()
            .map(|a| {
                let missing = most - a.shape()[0];
                let widths: &[(i32, i32)] = &[(0, missing), (0, 0), (0, 0), (0, 0)];
                Ok(mlx_rs::ops::pad(
                    a,
                    widths,
                    mlx_rs::ops::PadOptions::default(),
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let pixel_values = mlx_rs::ops::stack(&padded, 0)?;
        Ok(LlavaNextProcessed {
            pixel_values,
            image_sizes,
            num_patches,
        })
    }
}
