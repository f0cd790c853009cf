//! transformers 5.23's `CLIPImageProcessorPil` (what Python mlx-vlm's
//! LLaVA processor runs: `AutoImageProcessor.from_pretrained(path,
//! use_fast=False)`): shortest-edge resize with the configured Pillow
//! filter (bicubic by default), center crop, rescale, normalise with
//! OpenAI CLIP's mean and std by default. LLaVA-NeXT's processor
//! ([`super::llava_next`]) builds on it.
//!
//! Divergences from transformers (besides the module's): `size` may be
//! `{"shortest_edge": S}`, `{"height": H, "width": W}` or an integer (the
//! shortest edge, as `default_to_square=False` reads it);
//! `shortest_edge` with `longest_edge` and `max_height`/`max_width` are
//! refused with an [`Error::Config`] naming `size`. With `do_center_crop`
//! off, images that come out of different sizes cannot be stacked and are
//! an [`Error::InvalidArgument`] (Python returns a list).

use std::path::Path;

use image::RgbImage;
use serde_json::{Value, json};

use super::siglip::{read_pretrained, with_processor_overrides};
use super::{
    BaseSettings, ClassDefaults, ImageInput, ImageProcessorOptions, MAX_PIXELS, MAX_SIDE,
    ProcessedImages, config_error, key, read_flag,
};
use crate::image::{Filter, resize};
use crate::{Error, Result};

/// transformers' `OPENAI_CLIP_MEAN`.
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];

/// transformers' `OPENAI_CLIP_STD`.
pub const OPENAI_CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How images are resized (transformers' `SizeDict` as the PIL backend's
/// `resize` reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeSize {
    /// `{"shortest_edge": S}`: the shorter side to `S`, the longer to
    /// `int(S * long / short)`.
    ShortestEdge(u32),
    /// `{"height": H, "width": W}`.
    Fixed {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
}

impl ResizeSize {
    /// Python: `get_resize_output_image_size(image, size,
    /// default_to_square=False)` (shortest edge) or the fixed size, as
    /// `(height, width)`.
    pub fn output_size(self, height: u32, width: u32) -> (u32, u32) {
        match self {
            ResizeSize::Fixed { height, width } => (height, width),
            ResizeSize::ShortestEdge(size) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let new_long = (u64::from(size) * u64::from(long) / u64::from(short.max(1))) as u32;
                if width <= height {
                    (new_long, size)
                } else {
                    (size, new_long)
                }
            }
        }
    }

    /// `(height, width)` of a square or fixed size: transformers'
    /// `(size.height, size.width)` else `(shortest_edge, shortest_edge)`.
    pub fn as_tuple(self) -> (u32, u32) {
        match self {
            ResizeSize::Fixed { height, width } => (height, width),
            ResizeSize::ShortestEdge(s) => (s, s),
        }
    }
}

/// Python: `CLIPImageProcessorPil` (and the settings LLaVA-NeXT's adds
/// to).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipImageProcessor {
    /// The shared settings; `settings.size` is the output size
    /// (`crop_size`), which the byte limit and the pixel values use.
    pub settings: BaseSettings,
    /// Python: `size`.
    pub size: ResizeSize,
    /// Python: `do_center_crop`.
    pub do_center_crop: bool,
    /// Python: `crop_size` `(height, width)`.
    pub crop_size: (u32, u32),
}

const DEFAULTS: ClassDefaults = ClassDefaults {
    resample: Filter::Bicubic,
    size: (224, 224),
    default_to_square: true,
};

/// One side of a size, positive and below [`MAX_SIDE`].
fn side(v: Option<&Value>, what: &str, file: &str) -> Result<u32> {
    v.and_then(Value::as_u64)
        .and_then(|x| u32::try_from(x).ok())
        .filter(|&x| x > 0 && x <= MAX_SIDE)
        .ok_or_else(|| {
            config_error(
                file,
                what,
                format!("must be a positive integer up to {MAX_SIDE}, got {v:?}"),
            )
        })
}

/// Python: `size` as a `SizeDict` (an integer is the shortest edge).
fn read_resize_size(v: &Value, file: &str) -> Result<ResizeSize> {
    match v {
        Value::Number(_) => Ok(ResizeSize::ShortestEdge(side(Some(v), "size", file)?)),
        Value::Object(map) => {
            let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
            keys.sort_unstable();
            match keys[..] {
                ["shortest_edge"] => Ok(ResizeSize::ShortestEdge(side(
                    map.get("shortest_edge"),
                    "size.shortest_edge",
                    file,
                )?)),
                ["height", "width"] => Ok(ResizeSize::Fixed {
                    height: side(map.get("height"), "size.height", file)?,
                    width: side(map.get("width"), "size.width", file)?,
                }),
                _ => Err(config_error(
                    file,
                    "size",
                    format!(
                        "{v}: use {{\"shortest_edge\": S}} or {{\"height\": H, \"width\": W}} \
                         (longest_edge and max_height/max_width are not supported here)"
                    ),
                )),
            }
        }
        other => Err(config_error(
            file,
            "size",
            format!("expected {{\"shortest_edge\": S}}, got {other}"),
        )),
    }
}

/// Python: `crop_size` (an integer is a square).
fn read_crop_size(v: &Value, file: &str) -> Result<(u32, u32)> {
    match v {
        Value::Number(_) => {
            let s = side(Some(v), "crop_size", file)?;
            Ok((s, s))
        }
        Value::Object(map) => Ok((
            side(map.get("height"), "crop_size.height", file)?,
            side(map.get("width"), "crop_size.width", file)?,
        )),
        other => Err(config_error(
            file,
            "crop_size",
            format!("expected {{\"height\": H, \"width\": W}}, got {other}"),
        )),
    }
}

/// Python: `center_crop(image, (height, width))` (numpy): the centred
/// window, `top = (H - h) // 2`; an image smaller than the crop is first
/// centred on zeros (`ceil` of half the difference before it).
pub fn center_crop(image: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (ow, oh) = image.dimensions();
    let (oh, ow, ch, cw) = (
        i64::from(oh),
        i64::from(ow),
        i64::from(height),
        i64::from(width),
    );
    let mut top = (oh - ch).div_euclid(2);
    let mut left = (ow - cw).div_euclid(2);
    let (new_h, new_w) = (ch.max(oh), cw.max(ow));
    let top_pad = (new_h - oh + 1) / 2;
    let left_pad = (new_w - ow + 1) / 2;
    // The padded canvas (the image itself when it is large enough).
    let inside = top >= 0 && top + ch <= oh && left >= 0 && left + cw <= ow;
    let (canvas_h, canvas_w) = if inside { (oh, ow) } else { (new_h, new_w) };
    if !inside {
        top += top_pad;
        left += left_pad;
    }
    let (y0, y1) = (top.max(0), (top + ch).min(canvas_h));
    let (x0, x1) = (left.max(0), (left + cw).min(canvas_w));
    let (py, px) = if inside { (0, 0) } else { (top_pad, left_pad) };
    let out_w = (x1 - x0).max(0) as u32;
    let out_h = (y1 - y0).max(0) as u32;
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let (cy, cx) = (y0 + i64::from(y) - py, x0 + i64::from(x) - px);
        if cy >= 0 && cy < oh && cx >= 0 && cx < ow {
            *image.get_pixel(cx as u32, cy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

impl Default for ClipImageProcessor {
    fn default() -> Self {
        ClipImageProcessor {
            settings: BaseSettings {
                do_resize: true,
                size: (224, 224),
                resample: Filter::Bicubic,
                do_rescale: true,
                rescale_factor: 1.0 / 255.0,
                do_normalize: true,
                image_mean: OPENAI_CLIP_MEAN,
                image_std: OPENAI_CLIP_STD,
                do_convert_rgb: true,
            },
            size: ResizeSize::ShortestEdge(224),
            do_center_crop: true,
            crop_size: (224, 224),
        }
    }
}

impl ClipImageProcessor {
    /// The processor of a `preprocessor_config.json` object (with
    /// `processor_config.json`'s `image_processor.size`, as mlx-vlm's
    /// LLaVA processor passes it, taking precedence); missing keys take
    /// `CLIPImageProcessorPil`'s class defaults.
    pub fn from_config(raw: &Value, processor_config: Option<&Value>) -> Result<Self> {
        let file = "preprocessor_config.json";
        let raw = with_processor_overrides(raw, processor_config);
        if !raw.is_object() && !raw.is_null() {
            return Err(config_error(
                file,
                "<root>",
                format!("expected an object, got {raw}"),
            ));
        }
        let do_resize = read_flag(&raw, "do_resize", true, file)?;
        let do_center_crop = read_flag(&raw, "do_center_crop", true, file)?;
        let size = match key(&raw, "size") {
            None => ResizeSize::ShortestEdge(224),
            Some(None) if do_resize => {
                return Err(config_error(
                    file,
                    "size",
                    "is null but do_resize is true; give a value or turn do_resize off",
                ));
            }
            Some(None) => ResizeSize::ShortestEdge(224),
            Some(Some(v)) => read_resize_size(v, file)?,
        };
        let crop_size = match key(&raw, "crop_size") {
            None | Some(None) => (224, 224),
            Some(Some(v)) => read_crop_size(v, file)?,
        };
        // The shared settings, read with CLIP's mean and std as defaults and
        // the crop size as the output size.
        let mut shared = raw.as_object().cloned().unwrap_or_default();
        for (name, default) in [
            ("image_mean", OPENAI_CLIP_MEAN),
            ("image_std", OPENAI_CLIP_STD),
        ] {
            if !shared.contains_key(name) {
                shared.insert(name.to_owned(), json!(default));
            }
        }
        let output = if do_center_crop {
            crop_size
        } else {
            size.as_tuple()
        };
        shared.insert(
            "size".to_owned(),
            json!({"height": output.0, "width": output.1}),
        );
        let settings = BaseSettings::read(&Value::Object(shared), &DEFAULTS, file)?;
        Ok(ClipImageProcessor {
            settings,
            size,
            do_center_crop,
            crop_size,
        })
    }

    /// Reads `preprocessor_config.json` (and `processor_config.json`) of
    /// a checkpoint folder.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        read_pretrained(dir, Self::from_config)
    }

    /// A copy with per-call `options` applied (`size` sets both the resize
    /// and the crop to that fixed size).
    pub fn with_options(&self, options: &ImageProcessorOptions) -> Result<Self> {
        let mut out = self.clone();
        out.settings = self.settings.with_options(options)?;
        if let Some((height, width)) = options.size {
            out.size = ResizeSize::Fixed { height, width };
            out.crop_size = (height, width);
        }
        Ok(out)
    }

    /// Python: the PIL backend's `resize` with this processor's `size`
    /// and filter (a copy at the same size, as Pillow).
    pub fn resize(&self, image: &RgbImage, size: ResizeSize) -> Result<RgbImage> {
        let (w, h) = image.dimensions();
        let (nh, nw) = size.output_size(h, w);
        if nh == 0 || nw == 0 || u64::from(nh) * u64::from(nw) > MAX_PIXELS {
            return Err(Error::InvalidArgument(format!(
                "a {w}x{h} image resized to {size:?} would be {nw}x{nh}; the limit is \
                 {MAX_PIXELS} pixels and each side must be at least one"
            )));
        }
        resize(image, nw, nh, self.settings.resample)
    }

    /// One image through resize and center crop, as 8-bit RGB (Python: the
    /// loop of `PilBackend._preprocess` before rescaling).
    pub fn resize_and_crop(&self, image: &RgbImage) -> Result<RgbImage> {
        let mut image = if self.settings.do_resize {
            self.resize(image, self.size)?
        } else {
            image.clone()
        };
        if self.do_center_crop {
            image = center_crop(&image, self.crop_size.0, self.crop_size.1);
        }
        Ok(image)
    }

    /// Python: `CLIPImageProcessorPil.preprocess(images)`: pixel values
    /// `[N, 3, crop_height, crop_width]` float32.
    pub fn preprocess<'a, I>(&self, images: impl IntoIterator<Item = I>) -> Result<ProcessedImages>
    where
        I: Into<ImageInput<'a>>,
    {
        let s = &self.settings;
        let images: Vec<ImageInput<'a>> = images.into_iter().map(Into::into).collect();
        s.check_output(images.len(), "CLIP image processor")?;
        let mut out = Vec::with_capacity(images.len());
        for (i, image) in images.into_iter().enumerate() {
            out.push(self.resize_and_crop(&s.prepare(image, i)?)?);
        }
        Ok(ProcessedImages {
            pixel_values: s.to_pixel_values(&out)?,
            num_crops: vec![0; out.len()],
        })
    }
}
