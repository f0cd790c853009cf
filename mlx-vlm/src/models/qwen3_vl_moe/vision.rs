//! `mlx_vlm/models/qwen3_vl_moe/vision.py`: Python's copy of Qwen3-VL's
//! vision tower, differing only in its two GELUs (the mergers use the tanh
//! approximation, the blocks' MLPs the exact form; Qwen3-VL has them the
//! other way round) and the one model type it accepts. The tower is
//! Qwen3-VL's, built with this pair ([`ACTIVATIONS`]).

use mlx_rs::nn::GeluApprox;

use crate::Result;
use crate::models::qwen3_vl::vision::VisionActivations;
pub use crate::models::qwen3_vl::vision::{
    Attention, MLP, PatchEmbed, PatchMerger, Qwen3VLMoEVisionBlock, VisionModel,
    VisionRotaryEmbedding,
};
use crate::models::qwen3_vl::config::VisionConfig;

/// The model types this tower accepts (Python: `VisionModel.__init__`).
pub const MODEL_TYPES: [&str; 1] = ["qwen3_vl_moe"];

/// Python's GELUs here: tanh in `PatchMerger`, exact in `MLP`.
pub const ACTIVATIONS: VisionActivations = VisionActivations {
    merger: GeluApprox::Precise,
    mlp: GeluApprox::None,
};

/// Python: `VisionModel(config)`; fails, as Python, unless the vision
/// config's `model_type` is `qwen3_vl_moe`.
pub fn vision_model(config: &VisionConfig) -> Result<VisionModel> {
    VisionModel::with_variant(config, &MODEL_TYPES, ACTIVATIONS)
}
