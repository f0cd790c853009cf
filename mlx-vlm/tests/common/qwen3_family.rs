//! The end-to-end harness's description of a family built on Qwen3-VL's
//! model (Qwen3-VL, Qwen3-VL-MoE): the same inputs, prefill arguments and
//! vision tower, told apart by the decoder's feed-forward block `M`.

use mlx_rs::Array;
use mlx_vlm::fixtures::TinyModel;
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::qwen3_vl::qwen3_vl::{Model, PrefillArgs, Qwen3VlVariant};
use mlx_vlm::models::{self, VlmModel};

use crate::family_e2e::Family;

fn media(inputs: &GenerateInputs) -> &QwenVlInputs {
    inputs
        .media
        .as_ref()
        .and_then(|m| m.downcast_ref::<QwenVlInputs>())
        .expect("Qwen inputs")
}

fn position_ids(p: &models::PrefillArgs) -> Array {
    p.downcast_ref::<PrefillArgs>()
        .and_then(|p| p.position_ids.clone())
        .expect("position ids")
}

fn vision<M: Qwen3VlVariant>(model: &dyn VlmModel, inputs: &GenerateInputs) -> Vec<Array> {
    let model = model
        .as_any()
        .downcast_ref::<Model<M>>()
        .expect("a model of this family");
    let m = media(inputs);
    let pv = m.pixel_values.as_ref().expect("pixel values");
    let (features, deepstack) = model
        .vision_tower
        .forward(pv, m.image_grid_thw.as_ref().expect("grid"))
        .expect("vision tower");
    std::iter::once(features).chain(deepstack).collect()
}

fn image_grid(inputs: &GenerateInputs) -> Array {
    media(inputs).image_grid_thw.clone().expect("grid")
}

/// The family `name` whose model is `Model<M>`, with its tiny checkpoint.
pub fn family<M: Qwen3VlVariant>(name: &'static str, tiny: TinyModel) -> Family {
    Family {
        name,
        tiny,
        position_ids,
        vision: vision::<M>,
        image_grid,
    }
}
