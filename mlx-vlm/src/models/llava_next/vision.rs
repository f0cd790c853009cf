//! `mlx_vlm/models/llava_next/vision.py`: the CLIP vision tower. Python's
//! file is LLaVA's without the SigLIP variant: it takes
//! `clip_vision_model` only, which this one keeps by building LLaVA's
//! [`VisionModel`] with that one model type.

pub use crate::models::llava::vision::{
    ClipVisionModel, Encoder, EncoderLayer, VisionEmbeddings, VisionModel,
};

use super::config::VisionConfig;
use crate::Result;

/// Python: `VisionModel(config)` of this family (`clip_vision_model`
/// only, else a typed error).
pub fn vision_model(config: &VisionConfig) -> Result<VisionModel> {
    VisionModel::with_model_types(config, &["clip_vision_model"])
}
