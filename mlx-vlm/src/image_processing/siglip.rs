//! transformers 5.23's `SiglipImageProcessorPil`
//! (`transformers/models/siglip/image_processing_pil_siglip.py`): the image
//! processor Python mlx-vlm 0.7.6 runs for PaliGemma (`image_processor_type:
//! SiglipImageProcessor`) and Gemma 3n (`SiglipImageProcessorFast`; mlx-vlm
//! asks for `use_fast=False`, which selects the PIL class). Convert to RGB,
//! resize to a fixed size with the configured Pillow filter (PaliGemma:
//! BICUBIC 224; Gemma 3n: BILINEAR 768, `do_normalize` false), rescale,
//! normalise.
//!
//! Class defaults (used where the file lacks a key): `resample` BICUBIC,
//! `size` 224 x 224, `default_to_square` false, `image_mean` / `image_std`
//! 0.5, `rescale_factor` 1/255, every `do_*` true.
//!
//! Divergences from transformers / Python: those of the module
//! ([`crate::image_processing`]); nothing specific to SigLIP. mlx-vlm's
//! processors also take `size` from `processor_config.json`'s
//! `image_processor` object (`ip_overrides`), which
//! [`SiglipImageProcessor::from_pretrained`] does too.

use std::path::Path;

use serde_json::Value;

use super::{BaseSettings, ClassDefaults, ImageInput, ImageProcessorOptions, ProcessedImages};
use crate::image::Filter;
use crate::{Error, Result};

/// transformers' `SiglipImageProcessorPil`.
#[derive(Debug, Clone, PartialEq)]
pub struct SiglipImageProcessor {
    /// The resolved settings.
    pub settings: BaseSettings,
}

const DEFAULTS: ClassDefaults = ClassDefaults {
    resample: Filter::Bicubic,
    size: (224, 224),
    default_to_square: false,
};

impl Default for SiglipImageProcessor {
    /// The class defaults (Python: `SiglipImageProcessorPil()`).
    fn default() -> Self {
        SiglipImageProcessor {
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
        }
    }
}

/// `raw` overlaid with `processor_config.json`'s `image_processor.size`,
/// as mlx-vlm's processors pass it (`ip_overrides`).
pub(crate) fn with_processor_overrides(raw: &Value, processor_config: Option<&Value>) -> Value {
    let mut merged = raw.clone();
    if let (Value::Object(map), Some(size)) = (
        &mut merged,
        processor_config
            .and_then(|c| c.get("image_processor"))
            .and_then(|ip| ip.get("size")),
    ) {
        map.insert("size".to_owned(), size.clone());
    }
    merged
}

/// Reads `preprocessor_config.json` and `processor_config.json` of `dir`
/// and names `dir`'s file in errors.
pub(crate) fn read_pretrained<T>(
    dir: &Path,
    parse: impl FnOnce(&Value, Option<&Value>) -> Result<T>,
) -> Result<T> {
    let raw = crate::utils::read_json_if_exists(&dir.join("preprocessor_config.json"))?
        .unwrap_or(Value::Null);
    let proc_cfg = crate::utils::read_json_if_exists(&dir.join("processor_config.json"))?;
    parse(&raw, proc_cfg.as_ref()).map_err(|e| match e {
        Error::Config { file, message } => Error::Config {
            file: dir.join(file).display().to_string(),
            message,
        },
        e => e,
    })
}

impl SiglipImageProcessor {
    /// The processor of a parsed `preprocessor_config.json` (`raw`), with
    /// `processor_config.json`'s `image_processor.size` over it when given.
    pub fn from_config(raw: &Value, processor_config: Option<&Value>) -> Result<Self> {
        let raw = with_processor_overrides(raw, processor_config);
        Ok(SiglipImageProcessor {
            settings: BaseSettings::read(&raw, &DEFAULTS, "preprocessor_config.json")?,
        })
    }

    /// The processor of the checkpoint folder `dir` (each file optional, as
    /// in Python); errors name the file in `dir`.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        read_pretrained(dir, Self::from_config)
    }

    /// A copy with `options` applied (Python: keyword arguments of
    /// `__call__`); the pan-and-scan options do not apply and are ignored,
    /// as `_split_image_processor_kwargs` leaves them out.
    pub fn with_options(&self, options: &ImageProcessorOptions) -> Result<Self> {
        Ok(SiglipImageProcessor {
            settings: self.settings.with_options(options)?,
        })
    }

    /// Preprocesses `images` into `[N, 3, height, width]` float32 pixel
    /// values (Python: `SiglipImageProcessorPil.__call__(images)`).
    pub fn preprocess<'a, I>(&self, images: impl IntoIterator<Item = I>) -> Result<ProcessedImages>
    where
        I: Into<ImageInput<'a>>,
    {
        let s = &self.settings;
        s.validate().map_err(|(name, message)| {
            Error::InvalidArgument(format!("image processor setting {name}: {message}"))
        })?;
        let images: Vec<ImageInput<'a>> = images.into_iter().map(Into::into).collect();
        s.check_output(images.len(), "SigLIP image processor")?;
        let mut resized = Vec::with_capacity(images.len());
        for (i, image) in images.iter().enumerate() {
            let rgb = s.prepare(*image, i)?;
            resized.push(s.resize(&rgb)?);
        }
        Ok(ProcessedImages {
            pixel_values: s.to_pixel_values(&resized)?,
            num_crops: vec![0; images.len()],
        })
    }
}
