//! `mlx_vlm/models/gemma3/vision.py`: Python's copy of PaliGemma's SigLIP
//! tower, differing in three points: it accepts the `gemma3` and
//! `gemma3_vision` model types, its encoder returns every image's state
//! (PaliGemma's the first image's), and its sanitize keeps
//! `position_ids` keys. The tower is PaliGemma's, built so
//! ([`vision_model`]).

use std::collections::HashMap;

use mlx_rs::Array;

use super::config::VisionConfig;
use crate::Result;
use crate::models::base::check_array_shape;
pub use crate::models::paligemma::vision::{
    Encoder, EncoderLayer, SigLipVisionModel, VisionEmbeddings, VisionModel,
};

/// The model types this tower accepts (Python's list).
pub const MODEL_TYPES: [&str; 3] = ["siglip_vision_model", "gemma3", "gemma3_vision"];

/// Python: `VisionModel(config)`.
pub fn vision_model(config: &VisionConfig) -> Result<VisionModel> {
    VisionModel::with_variant(&config.siglip(), &MODEL_TYPES, false)
}

/// Python: `VisionModel.sanitize` here: a PyTorch patch-convolution weight
/// made channels-last; every other key kept.
pub fn sanitize(weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
    weights
        .into_iter()
        .map(|(key, value)| {
            if key.contains("patch_embedding.weight") && !check_array_shape(&value) {
                Ok((key, value.transpose([0, 2, 3, 1])?))
            } else {
                Ok((key, value))
            }
        })
        .collect()
}
