//! Qwen3-VL against Python mlx-vlm 0.7.6: the shared Qwen image and video
//! processors (`processing`), and the tiny checkpoint end to end (goldens of
//! `tests/fixtures/qwen3_vl/gen_goldens.py`) in the Hugging Face and
//! mlx-community layouts (the Hugging Face layout is transformers 5's), f32,
//! bf16 and 4-bit.
//!
//! The end-to-end images are multiples of 32 pixels, so the processor does
//! not resize them: this crate's port of Pillow's bicubic resize picks the
//! order of its two passes by a rule that Pillow 13 does not always follow
//! when both sides shrink (a 196x140 image resized to 192x128 differs in
//! 232 pixels by one level), a known gap of `image::resize_bicubic` that
//! Qwen3-VL's factor 32 exposed.

#[path = "common/family_e2e.rs"]
mod family_e2e;
#[path = "qwen3_vl/processing.rs"]
mod processing;

use family_e2e::{Family, check_variant};
use mlx_rs::{Array, Dtype};
use mlx_vlm::fixtures::{self, Layout};
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::qwen3_vl::Model;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::qwen3_vl::qwen3_vl::PrefillArgs;
use mlx_vlm::models::{self, VlmModel};

fn media(inputs: &GenerateInputs) -> &QwenVlInputs {
    inputs
        .media
        .as_ref()
        .and_then(|m| m.downcast_ref::<QwenVlInputs>())
        .expect("Qwen inputs")
}

fn family() -> Family {
    Family {
        name: "qwen3_vl",
        tiny: fixtures::qwen3_vl_tiny(),
        position_ids: |p: &models::PrefillArgs| {
            p.downcast_ref::<PrefillArgs>()
                .and_then(|p| p.position_ids.clone())
                .expect("position ids")
        },
        vision: |model: &dyn VlmModel, inputs: &GenerateInputs| {
            let model = model
                .as_any()
                .downcast_ref::<Model>()
                .expect("a Qwen3-VL model");
            let m = media(inputs);
            let pv = m.pixel_values.as_ref().expect("pixel values");
            let (features, deepstack) = model
                .vision_tower
                .forward(pv, m.image_grid_thw.as_ref().expect("grid"))
                .expect("vision tower");
            std::iter::once(features).chain(deepstack).collect()
        },
        image_grid: |inputs: &GenerateInputs| -> Array {
            media(inputs).image_grid_thw.clone().expect("grid")
        },
    }
}

#[test]
fn f32_hugging_face_layout() {
    check_variant(&family(), "f32", Dtype::Float32, Layout::HuggingFace, None);
}

#[test]
fn f32_mlx_community_layout() {
    check_variant(&family(), "f32", Dtype::Float32, Layout::MlxCommunity, None);
}

#[test]
fn bf16_hugging_face_layout() {
    check_variant(
        &family(),
        "bf16",
        Dtype::Bfloat16,
        Layout::HuggingFace,
        None,
    );
}

#[test]
fn q4_mlx_community() {
    check_variant(
        &family(),
        "q4",
        Dtype::Bfloat16,
        Layout::MlxCommunity,
        Some((64, 4)),
    );
}
