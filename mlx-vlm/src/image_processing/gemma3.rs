//! transformers 5.23's `Gemma3ImageProcessorPil`
//! (`transformers/models/gemma3/image_processing_pil_gemma3.py`): the image
//! processor Python mlx-vlm 0.7.6 runs for Gemma 3 (`image_processor_type:
//! Gemma3ImageProcessor`, loaded with `use_fast=False`). Convert to RGB,
//! optionally pan-and-scan (crops of wide or tall images, each image
//! followed by its crops), resize everything to a fixed size (released:
//! BILINEAR 896), rescale, normalise; `num_crops` counts each image's crops.
//!
//! Class defaults (used where the file lacks a key): `resample` BILINEAR,
//! `size` 224 x 224, `default_to_square` true, `image_mean` / `image_std`
//! 0.5, `rescale_factor` 1/255, `do_*` true except `do_pan_and_scan`
//! (None: off), pan-and-scan parameters None.
//!
//! Divergences from transformers / Python, besides the module's
//! ([`crate::image_processing`]):
//!
//! - A pan-and-scan parameter that is unset or `null` (as in every released
//!   Gemma 3 config) takes the default of transformers' own
//!   `Gemma3Processor` ([`DEFAULT_MIN_CROP_SIZE`],
//!   [`DEFAULT_MAX_NUM_CROPS`], [`DEFAULT_MIN_RATIO_TO_ACTIVATE`]). Python
//!   mlx-vlm's `Gemma3Processor` passes no defaults, so there
//!   `do_pan_and_scan=True` on a released config fails with a `TypeError`
//!   (comparing with `None`); given explicitly, the values are Python's.
//! - `pan_and_scan_min_crop_size` must be positive (Python divides by it),
//!   `pan_and_scan_max_num_crops` between 1 and [`MAX_NUM_CROPS`] (0 divides
//!   by zero in Python; more is an absurd batch), and
//!   `pan_and_scan_min_ratio_to_activate` finite: [`Error::Config`] /
//!   [`Error::InvalidParameter`] naming the key.
//! - A crop that would start past the image's edge (possible only with a
//!   tiny `pan_and_scan_min_crop_size`, e.g. a 9 x 2 image with crops of at
//!   least 2 pixels) is an [`Error::Image`]; Python slices an empty crop and
//!   fails in Pillow.
//! - [`Gemma3ImageProcessor::with_options`] takes every setting, as
//!   transformers' image processor does; mlx-vlm's `Gemma3Processor`
//!   forwards only `do_convert_rgb` and the pan-and-scan keys to it (the
//!   caller decides which to set).

use std::path::Path;

use image::RgbImage;
use serde_json::Value;

use super::siglip::{read_pretrained, with_processor_overrides};
use super::{
    BaseSettings, ClassDefaults, ImageInput, ImageProcessorOptions, ProcessedImages, config_error,
    read_flag, read_number, read_positive,
};
use crate::image::Filter;
use crate::{Error, Result};

/// `pan_and_scan_min_crop_size` of transformers' `Gemma3Processor`.
pub const DEFAULT_MIN_CROP_SIZE: u32 = 256;
/// `pan_and_scan_max_num_crops` of transformers' `Gemma3Processor`.
pub const DEFAULT_MAX_NUM_CROPS: u32 = 4;
/// `pan_and_scan_min_ratio_to_activate` of transformers' `Gemma3Processor`.
pub const DEFAULT_MIN_RATIO_TO_ACTIVATE: f64 = 1.2;
/// The largest `pan_and_scan_max_num_crops` accepted.
pub const MAX_NUM_CROPS: u32 = 64;

const DEFAULTS: ClassDefaults = ClassDefaults {
    resample: Filter::Bilinear,
    size: (224, 224),
    default_to_square: true,
};

/// Pan-and-scan settings (Python: the `pan_and_scan_*` attributes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PanAndScan {
    /// Whether to crop (`do_pan_and_scan`).
    pub enabled: bool,
    /// Smallest crop side (`pan_and_scan_min_crop_size`).
    pub min_crop_size: u32,
    /// Most crops per image (`pan_and_scan_max_num_crops`).
    pub max_num_crops: u32,
    /// Aspect ratio from which crops are made
    /// (`pan_and_scan_min_ratio_to_activate`).
    pub min_ratio_to_activate: f64,
}

impl Default for PanAndScan {
    fn default() -> Self {
        PanAndScan {
            enabled: false,
            min_crop_size: DEFAULT_MIN_CROP_SIZE,
            max_num_crops: DEFAULT_MAX_NUM_CROPS,
            min_ratio_to_activate: DEFAULT_MIN_RATIO_TO_ACTIVATE,
        }
    }
}

impl PanAndScan {
    /// Checks the limits listed at the top of this file.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.min_crop_size == 0 {
            return Err((
                "pan_and_scan_min_crop_size",
                "must be positive (Gemma 3 uses 256)".to_owned(),
            ));
        }
        if self.max_num_crops == 0 || self.max_num_crops > MAX_NUM_CROPS {
            return Err((
                "pan_and_scan_max_num_crops",
                format!(
                    "{} is out of range: use 1 to {MAX_NUM_CROPS} (Gemma 3 uses 4)",
                    self.max_num_crops
                ),
            ));
        }
        if !self.min_ratio_to_activate.is_finite() {
            return Err((
                "pan_and_scan_min_ratio_to_activate",
                format!(
                    "{} must be finite (Gemma 3 uses 1.2)",
                    self.min_ratio_to_activate
                ),
            ));
        }
        Ok(())
    }

    /// The crops of a `width` x `height` image as `(x, y, crop_width,
    /// crop_height)`, clipped to the image as numpy slicing clips them;
    /// empty when pan-and-scan does not apply.
    ///
    /// Python: `Gemma3ImageProcessorPil.pan_and_scan`.
    pub fn crops(&self, width: u32, height: u32) -> Vec<(u32, u32, u32, u32)> {
        let (w, h) = (f64::from(width), f64::from(height));
        let min_crop = f64::from(self.min_crop_size);
        let max_crops = i64::from(self.max_num_crops);
        let (num_w, num_h) = if width >= height {
            if w / h < self.min_ratio_to_activate {
                return Vec::new();
            }
            let n = ((w / h + 0.5).floor() as i64).min((w / min_crop).floor() as i64);
            (n.max(2).min(max_crops), 1)
        } else {
            if h / w < self.min_ratio_to_activate {
                return Vec::new();
            }
            let n = ((h / w + 0.5).floor() as i64).min((h / min_crop).floor() as i64);
            (1, n.max(2).min(max_crops))
        };
        // num_w, num_h >= 1 (max_num_crops >= 1, checked).
        let crop_w = (w / num_w.max(1) as f64).ceil() as u64;
        let crop_h = (h / num_h.max(1) as f64).ceil() as u64;
        if crop_w.min(crop_h) < u64::from(self.min_crop_size) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0..num_h as u64 {
            for j in 0..num_w as u64 {
                let (x, y) = (crop_w * j, crop_h * i);
                let cw = (x + crop_w).min(u64::from(width)).saturating_sub(x);
                let ch = (y + crop_h).min(u64::from(height)).saturating_sub(y);
                let fit = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
                out.push((fit(x), fit(y), fit(cw), fit(ch)));
            }
        }
        out
    }
}

/// transformers' `Gemma3ImageProcessorPil`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3ImageProcessor {
    /// Settings shared with the other processors.
    pub settings: BaseSettings,
    /// Pan-and-scan settings.
    pub pan_and_scan: PanAndScan,
}

impl Default for Gemma3ImageProcessor {
    /// The class defaults (Python: `Gemma3ImageProcessorPil()`), with
    /// transformers' `Gemma3Processor` pan-and-scan defaults.
    fn default() -> Self {
        Gemma3ImageProcessor {
            settings: BaseSettings {
                do_resize: true,
                size: DEFAULTS.size,
                resample: DEFAULTS.resample,
                do_rescale: true,
                rescale_factor: 1.0 / 255.0,
                do_normalize: true,
                image_mean: [0.5; 3],
                image_std: [0.5; 3],
                do_convert_rgb: true,
            },
            pan_and_scan: PanAndScan::default(),
        }
    }
}

impl Gemma3ImageProcessor {
    /// The processor of a parsed `preprocessor_config.json` (`raw`), with
    /// `processor_config.json`'s `image_processor.size` over it when given.
    pub fn from_config(raw: &Value, processor_config: Option<&Value>) -> Result<Self> {
        const FILE: &str = "preprocessor_config.json";
        let raw = with_processor_overrides(raw, processor_config);
        let settings = BaseSettings::read(&raw, &DEFAULTS, FILE)?;
        let pan_and_scan = PanAndScan {
            enabled: read_flag(&raw, "do_pan_and_scan", false, FILE)?,
            min_crop_size: read_positive(&raw, "pan_and_scan_min_crop_size", FILE)?
                .unwrap_or(DEFAULT_MIN_CROP_SIZE),
            max_num_crops: read_positive(&raw, "pan_and_scan_max_num_crops", FILE)?
                .unwrap_or(DEFAULT_MAX_NUM_CROPS),
            min_ratio_to_activate: read_number(&raw, "pan_and_scan_min_ratio_to_activate", FILE)?
                .unwrap_or(DEFAULT_MIN_RATIO_TO_ACTIVATE),
        };
        pan_and_scan
            .validate()
            .map_err(|(name, message)| config_error(FILE, name, message))?;
        Ok(Gemma3ImageProcessor {
            settings,
            pan_and_scan,
        })
    }

    /// The processor of the checkpoint folder `dir` (each file optional, as
    /// in Python); errors name the file in `dir`.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        read_pretrained(dir, Self::from_config)
    }

    /// A copy with `options` applied (Python: the keyword arguments
    /// mlx-vlm's `Gemma3Processor.__call__` hands the image processor);
    /// a bad value is an [`Error::InvalidParameter`] naming the option.
    pub fn with_options(&self, options: &ImageProcessorOptions) -> Result<Self> {
        let settings = self.settings.with_options(options)?;
        let o = options;
        let p = self.pan_and_scan;
        let pan_and_scan = PanAndScan {
            enabled: o.do_pan_and_scan.unwrap_or(p.enabled),
            min_crop_size: o.pan_and_scan_min_crop_size.unwrap_or(p.min_crop_size),
            max_num_crops: o.pan_and_scan_max_num_crops.unwrap_or(p.max_num_crops),
            min_ratio_to_activate: o
                .pan_and_scan_min_ratio_to_activate
                .unwrap_or(p.min_ratio_to_activate),
        };
        pan_and_scan.validate().map_err(|(name, message)| {
            let value = match name {
                "pan_and_scan_min_crop_size" => pan_and_scan.min_crop_size.to_string(),
                "pan_and_scan_max_num_crops" => pan_and_scan.max_num_crops.to_string(),
                _ => pan_and_scan.min_ratio_to_activate.to_string(),
            };
            Error::InvalidParameter {
                name,
                value,
                message: format!("ImageProcessorOptions::{name}: {message}"),
            }
        })?;
        Ok(Gemma3ImageProcessor {
            settings,
            pan_and_scan,
        })
    }

    /// Preprocesses `images` into `[N, 3, height, width]` float32 pixel
    /// values, each image followed by its pan-and-scan crops, and the crop
    /// count of each image (Python: `Gemma3ImageProcessorPil.__call__`).
    pub fn preprocess<'a, I>(&self, images: impl IntoIterator<Item = I>) -> Result<ProcessedImages>
    where
        I: Into<ImageInput<'a>>,
    {
        let s = &self.settings;
        let checked = s.validate().and_then(|()| self.pan_and_scan.validate());
        checked.map_err(|(name, message)| {
            Error::InvalidArgument(format!("image processor setting {name}: {message}"))
        })?;
        let images: Vec<ImageInput<'a>> = images.into_iter().map(Into::into).collect();
        // Crop geometry first, from the sizes alone, so the output size is
        // checked before any pixel is converted or resized.
        let plans: Vec<Vec<(u32, u32, u32, u32)>> = images
            .iter()
            .map(|im| {
                let (w, h) = im.dimensions();
                if self.pan_and_scan.enabled && w > 0 && h > 0 {
                    self.pan_and_scan.crops(w, h)
                } else {
                    Vec::new()
                }
            })
            .collect();
        let total = images.len() + plans.iter().map(Vec::len).sum::<usize>();
        s.check_output(total, "Gemma 3 image processor")?;
        let mut resized = Vec::with_capacity(total);
        let mut num_crops = Vec::with_capacity(images.len());
        for (i, (image, crops)) in images.iter().zip(&plans).enumerate() {
            let rgb = s.prepare(*image, i)?;
            resized.push(s.resize(&rgb)?);
            for &(x, y, cw, ch) in crops {
                if cw == 0 || ch == 0 {
                    return Err(Error::Image {
                        source_name: format!("<image {i}>"),
                        message: format!(
                            "pan-and-scan crop at ({x}, {y}) of the {}x{} image is empty \
                             (pan_and_scan_min_crop_size {} is too small for this image); \
                             raise pan_and_scan_min_crop_size",
                            rgb.width(),
                            rgb.height(),
                            self.pan_and_scan.min_crop_size
                        ),
                    });
                }
                let crop: RgbImage = image::imageops::crop_imm(&rgb, x, y, cw, ch).to_image();
                resized.push(s.resize(&crop)?);
            }
            num_crops.push(crops.len());
        }
        Ok(ProcessedImages {
            pixel_values: s.to_pixel_values(&resized)?,
            num_crops,
        })
    }
}
