//! `mlx_vlm/models/kimi_vl/processing_kimi_vl.py`: Kimi-VL's image
//! processor (each image scaled down under `in_token_limit` patches,
//! centre-cropped to whole merge windows, normalised with CLIP's mean and
//! std, cut into `patch_size` patches at native resolution) and processor
//! (each `<|media_pad|>` expanded to the image's token count), with
//! Python's `prepare_inputs` (`mlx_vlm/utils.py`) for this family: a
//! text-only prompt bypasses the processor and is tokenized alone.
//!
//! The transformers compatibility shims of the Python file
//! (`_validate_images_text_input_order`, `_ensure_gpt2_bytes_to_unicode`),
//! `batch_decode`, `decode`, `apply_chat_template` (the generic renderer
//! does it) and `model_input_names` are not ported; nor is the padding of
//! several prompts (one prompt at a time here).
//!
//! Divergences from Python:
//! - An image smaller than one merge window (`merge_kernel_size *
//!   patch_size` pixels) on a side is a typed [`Error::Image`] naming its
//!   size (Python crops it to nothing and fails in a reshape).
//! - A `<|media_pad|>` count that differs from the images given is an
//!   [`Error::ImageTokenMismatch`] (Python fails indexing the grids, or
//!   leaves images unused).
//! - `in_token_limit` is read from `preprocessor_config.json` when present
//!   (Python reads it from `vision_config`, which never has it, so it is
//!   4096 there; the released file says 4096 as well).

use std::path::Path;

use image::RgbImage;
use mlx_rs::Array;
use serde_json::Value;

use crate::generate::GenerateInputs;
use crate::image::{Filter, ImageSource, load_image, resize};
use crate::models::ModelInputs;
use crate::processor::{ModelProcessor, ProcessorOptions, PromptMedia, input_ids_array};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// CLIP's mean (Python: `OPENAI_DATASET_MEAN`).
#[allow(clippy::excessive_precision)]
pub const OPENAI_DATASET_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's std (Python: `OPENAI_DATASET_STD`).
// Python's literals, rounded to f32 as `mx.array(..., dtype=mx.float32)`
// rounds them.
#[allow(clippy::excessive_precision)]
pub const OPENAI_DATASET_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Largest patch grid side the tower's position embedding takes (Python:
/// the "Exceed pos emb" check).
const MAX_GRID_SIDE: u32 = 512;

/// The processor's inputs for the model (Python: `pixel_values`,
/// `image_grid_hws` and `image_token_id` of the `BatchFeature`).
#[derive(Debug, Clone)]
pub struct KimiVLInputs {
    /// `[patches, channels, patch_size, patch_size]` float32, every
    /// image's patches in row order, one image after another.
    pub pixel_values: Array,
    /// Each image's patch grid `(height, width)`.
    pub grid_hws: Vec<(i32, i32)>,
    /// `<|media_pad|>`'s id in the tokenizer.
    pub image_token_id: Option<i32>,
}

/// Python: `KimiVLImageProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct KimiVLImageProcessor {
    /// Side of a patch in pixels (14).
    pub patch_size: u32,
    /// Pad to whole merge windows instead of cropping (false).
    pub pad_input: bool,
    /// Normalisation mean.
    pub image_mean: [f32; 3],
    /// Normalisation std.
    pub image_std: [f32; 3],
    /// Patches above which the image is scaled down (4096).
    pub in_token_limit: u64,
    /// Patches merged into one token, `[height, width]` (`[2, 2]`).
    pub merge_kernel_size: [u32; 2],
}

impl Default for KimiVLImageProcessor {
    fn default() -> Self {
        KimiVLImageProcessor {
            patch_size: 14,
            pad_input: false,
            image_mean: OPENAI_DATASET_MEAN,
            image_std: OPENAI_DATASET_STD,
            in_token_limit: 4096,
            merge_kernel_size: [2, 2],
        }
    }
}

/// The pixel values and patch grids of a batch of images.
#[derive(Debug, Clone)]
pub struct ProcessedImages {
    /// `[patches, 3, p, p]` float32.
    pub pixel_values: Array,
    /// Each image's `(height, width)` in patches.
    pub grid_hws: Vec<(i32, i32)>,
}

impl KimiVLImageProcessor {
    /// Python: `rescale(image, merge_kernel_size)`: scaled down (Pillow's
    /// bicubic) when it has more than `in_token_limit` patches, then padded
    /// (bottom and right, black) or centre-cropped to whole merge windows.
    /// `name` names the image in errors.
    pub fn rescale(&self, image: &RgbImage, name: &str) -> Result<RgbImage> {
        let p = self.patch_size;
        let (w, h) = image.dimensions();
        let mut image = image.clone();
        let patches = u64::from(w / p) * u64::from(h / p);
        if patches > self.in_token_limit {
            let scale = (self.in_token_limit as f64 / patches as f64).sqrt();
            let (nw, nh) = ((f64::from(w) * scale) as u32, (f64::from(h) * scale) as u32);
            image = resize(&image, nw, nh, Filter::Bicubic)?;
        }
        let (w, h) = image.dimensions();
        let size_h = self.merge_kernel_size[0] * p;
        let size_w = self.merge_kernel_size[1] * p;
        if self.pad_input {
            let pad_h = (size_h - h % size_h) % size_h;
            let pad_w = (size_w - w % size_w) % size_w;
            if pad_h > 0 || pad_w > 0 {
                let mut padded = RgbImage::new(w + pad_w, h + pad_h);
                image::imageops::replace(&mut padded, &image, 0, 0);
                image = padded;
            }
        } else {
            let (nw, nh) = (w - w % size_w, h - h % size_h);
            if nw == 0 || nh == 0 {
                return Err(Error::Image {
                    source_name: name.to_string(),
                    message: format!(
                        "the image is {w}x{h} pixels; Kimi-VL needs at least {size_w}x{size_h} \
                         (one {}x{} window of {p}-pixel patches) on each side",
                        self.merge_kernel_size[1], self.merge_kernel_size[0]
                    ),
                });
            }
            let (left, top) = ((w - nw) / 2, (h - nh) / 2);
            image = image::imageops::crop_imm(&image, left, top, nw, nh).to_image();
        }
        let (w, h) = image.dimensions();
        if w / p >= MAX_GRID_SIDE || h / p >= MAX_GRID_SIDE {
            return Err(Error::Image {
                source_name: name.to_string(),
                message: format!(
                    "Exceed pos emb: {w}x{h} pixels give {}x{} patches, the tower takes fewer \
                     than {MAX_GRID_SIDE} per side; lower in_token_limit",
                    w / p,
                    h / p
                ),
            });
        }
        Ok(image)
    }

    /// Python: `to_mlx`, `normalize` and `patchify` of one rescaled image:
    /// its patches `[n, 3, p, p]` (as f32 values, row-major) and grid.
    pub fn patchify(&self, image: &RgbImage) -> (Vec<f32>, (i32, i32)) {
        let p = self.patch_size as usize;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (gh, gw) = (h / p, w / p);
        let mut out = Vec::with_capacity(gh * gw * 3 * p * p);
        let raw = image.as_raw();
        for by in 0..gh {
            for bx in 0..gw {
                for c in 0..3 {
                    for y in 0..p {
                        for x in 0..p {
                            let v = raw[((by * p + y) * w + bx * p + x) * 3 + c];
                            // Python: `/ 255.0` then `(x - mean) / std`, in f32.
                            let v = f32::from(v) / 255.0;
                            out.push((v - self.image_mean[c]) / self.image_std[c]);
                        }
                    }
                }
            }
        }
        (out, (gh as i32, gw as i32))
    }

    /// Python: `preprocess(images)`: every image's patches, concatenated,
    /// and the grids. `names` name the images in errors.
    pub fn preprocess(&self, images: &[RgbImage], names: &[String]) -> Result<ProcessedImages> {
        let p = self.patch_size as i32;
        let mut values = Vec::new();
        let mut grid_hws = Vec::with_capacity(images.len());
        for (i, image) in images.iter().enumerate() {
            let name = names.get(i).map_or("<image>", String::as_str);
            let rescaled = self.rescale(image, name)?;
            let (patches, grid) = self.patchify(&rescaled);
            values.extend(patches);
            grid_hws.push(grid);
        }
        let n: i32 = grid_hws.iter().map(|(h, w)| h * w).sum();
        Ok(ProcessedImages {
            pixel_values: Array::from_vec_shaped(values, &[n, 3, p, p])?,
            grid_hws,
        })
    }

    /// The settings of `preprocessor_config.json` in `dir` (Python's
    /// defaults for the keys it lacks), the patch size and merge kernel of
    /// `config.json`'s `vision_config` winning as in Python's
    /// `from_pretrained`.
    pub fn from_pretrained(dir: &Path, config: &Value) -> Result<Self> {
        let file = dir.join("preprocessor_config.json");
        let pre = crate::utils::read_json_if_exists(&file)?.unwrap_or(Value::Null);
        let bad = |key: &str, v: &Value, want: &str| Error::Config {
            file: file.display().to_string(),
            message: format!("{key} is {v}; give {want}"),
        };
        let mut out = KimiVLImageProcessor::default();
        let positive = |key: &str, v: &Value| -> Result<u64> {
            v.as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(key, v, "a positive integer"))
        };
        let triple = |key: &str, v: &Value| -> Result<[f32; 3]> {
            let list: Option<Vec<f32>> = v
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64().map(|x| x as f32)).collect());
            match list.as_deref() {
                Some(&[a, b, c]) => Ok([a, b, c]),
                _ => Err(bad(key, v, "three numbers")),
            }
        };
        let kernel = |key: &str, v: &Value| -> Result<[u32; 2]> {
            let list: Option<Vec<u32>> = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                    .filter(|&x| x > 0)
                    .collect()
            });
            match list.as_deref() {
                Some(&[h, w]) => Ok([h, w]),
                _ => Err(bad(key, v, "two positive ints")),
            }
        };
        if let Some(v) = pre.get("patch_size") {
            out.patch_size = u32::try_from(positive("patch_size", v)?)
                .map_err(|_| bad("patch_size", v, "a smaller patch size"))?;
        }
        if let Some(v) = pre.get("in_token_limit") {
            out.in_token_limit = positive("in_token_limit", v)?;
        }
        if let Some(v) = pre.get("pad_input") {
            out.pad_input = v.as_bool().ok_or_else(|| bad("pad_input", v, "true or false"))?;
        }
        if let Some(v) = pre.get("image_mean") {
            out.image_mean = triple("image_mean", v)?;
        }
        if let Some(v) = pre.get("image_std") {
            out.image_std = triple("image_std", v)?;
        }
        if let Some(v) = pre.get("merge_kernel_size") {
            out.merge_kernel_size = kernel("merge_kernel_size", v)?;
        }
        if let Some(vision) = config.get("vision_config") {
            if let Some(v) = vision.get("patch_size") {
                out.patch_size = u32::try_from(positive("vision_config.patch_size", v)?)
                    .map_err(|_| bad("vision_config.patch_size", v, "a smaller patch size"))?;
            }
            if let Some(v) = vision.get("merge_kernel_size") {
                out.merge_kernel_size = kernel("vision_config.merge_kernel_size", v)?;
            }
        }
        if out.image_std.contains(&0.0) {
            return Err(bad("image_std", &pre["image_std"], "non-zero stds"));
        }
        Ok(out)
    }
}

/// Python: `KimiVLProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct KimiVLProcessor {
    /// The image processor.
    pub image_processor: KimiVLImageProcessor,
    /// Python: `image_token` (`<|media_pad|>`).
    pub image_token: String,
}

impl KimiVLProcessor {
    /// Python: `__call__`'s prompt: the `index`-th `<|media_pad|>` replaced
    /// by `grid_hws[index]`'s token count of them (`h * w / (kh * kw)`).
    pub fn expand_prompt(&self, prompt: &str, grid_hws: &[(i32, i32)]) -> Result<String> {
        let found = prompt.matches(&self.image_token).count();
        if found != grid_hws.len() {
            return Err(Error::ImageTokenMismatch {
                message: format!(
                    "the prompt has {found} {} tokens but {} images were given; put one per \
                     image (the chat template's <|media_start|>image<|media_content|>{}\
                     <|media_end|>)",
                    self.image_token,
                    grid_hws.len(),
                    self.image_token
                ),
            });
        }
        let [kh, kw] = self.image_processor.merge_kernel_size;
        let merge_length = (kh * kw) as i32;
        let mut out = String::with_capacity(prompt.len());
        let mut pieces = prompt.split(self.image_token.as_str());
        if let Some(first) = pieces.next() {
            out.push_str(first);
        }
        for (piece, &(h, w)) in pieces.zip(grid_hws) {
            let n = usize::try_from(h * w / merge_length).unwrap_or(0);
            out.push_str(&self.image_token.repeat(n));
            out.push_str(piece);
        }
        Ok(out)
    }
}

impl ModelProcessor for KimiVLProcessor {
    /// Python: `additional_eos_token_ids`: `<|im_assistant|>` (a model
    /// that starts the next assistant turn is done), when the tokenizer
    /// has it.
    fn additional_eos_token_ids(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        tokenizer.token_to_id("<|im_assistant|>").into_iter().collect()
    }

    /// Kimi-VL's processor has no size options (`min_pixels`,
    /// `max_pixels` and the transformers image-processor overrides are
    /// ignored, as other families that do not read them do).
    fn with_options(&self, _options: &ProcessorOptions) -> Result<Box<dyn ModelProcessor>> {
        Ok(Box::new(self.clone()))
    }

    fn prepare_inputs(
        &self,
        tokenizer: &Tokenizer,
        prompt: &str,
        media: PromptMedia<'_>,
    ) -> Result<GenerateInputs> {
        if !media.videos.is_empty() {
            return Err(Error::InvalidArgument(
                "Kimi-VL takes no videos here; pass a video's frames as images".into(),
            ));
        }
        // Python's prepare_inputs: no media, no processor.
        if media.images.is_empty() {
            return Ok(GenerateInputs::text(input_ids_array(
                &tokenizer.encode(prompt)?,
            )?));
        }
        let images = media
            .images
            .iter()
            .map(load_image)
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = media.images.iter().map(ImageSource::name).collect();
        let processed = self.image_processor.preprocess(&images, &names)?;
        let text = self.expand_prompt(prompt, &processed.grid_hws)?;
        let ids = tokenizer.encode(&text)?;
        let patch_grids = processed.grid_hws.iter().map(|&(h, w)| [1, h, w]).collect();
        Ok(GenerateInputs {
            input_ids: input_ids_array(&ids)?,
            mask: None,
            media: Some(ModelInputs::new(
                KimiVLInputs {
                    pixel_values: processed.pixel_values,
                    grid_hws: processed.grid_hws,
                    image_token_id: tokenizer
                        .token_to_id(&self.image_token)
                        .and_then(|id| i32::try_from(id).ok()),
                },
                patch_grids,
            )),
        })
    }
}

/// The family's processor factory (Python: `KimiVLProcessor.from_pretrained`).
pub fn load_processor(model_path: &Path, config: &Value) -> Result<Box<dyn ModelProcessor>> {
    Ok(Box::new(KimiVLProcessor {
        image_processor: KimiVLImageProcessor::from_pretrained(model_path, config)?,
        image_token: "<|media_pad|>".into(),
    }))
}
