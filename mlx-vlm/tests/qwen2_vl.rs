//! Qwen2-VL against Python mlx-vlm 0.7.6 (goldens of
//! `tests/fixtures/qwen2_vl/gen_goldens.py`): the tiny checkpoint in the
//! Hugging Face, transformers-5 and mlx-community layouts, f32, bf16 and
//! 4-bit.

#[path = "common/family_e2e.rs"]
mod family_e2e;

use family_e2e::{Family, Stages, check_variant, cu_seqlens, grid_rows};
use mlx_rs::{Array, Dtype};
use mlx_vlm::fixtures::{self, Layout};
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::base::AttentionMask;
use mlx_vlm::models::qwen2_5_vl::qwen2_5_vl::PrefillArgs;
use mlx_vlm::models::qwen2_vl::Model;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
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
        name: "qwen2_vl",
        tiny: fixtures::qwen2_vl_tiny(),
        tokenizer_dir: Family::qwen_tokenizer,
        position_ids: Some(|p: &models::PrefillArgs| {
            p.downcast_ref::<PrefillArgs>()
                .and_then(|p| p.position_ids.clone())
                .expect("position ids")
        }),
        vision: |model: &dyn VlmModel, inputs: &GenerateInputs| {
            let model = model
                .as_any()
                .downcast_ref::<Model>()
                .expect("a Qwen2-VL model");
            let m = media(inputs);
            let pv = m.pixel_values.as_ref().expect("pixel values");
            vec![
                model
                    .vision_tower
                    .forward(pv, m.image_grid_thw.as_ref().expect("grid"))
                    .expect("vision tower"),
            ]
        },
        image_grid: Some(|inputs: &GenerateInputs| -> Array {
            media(inputs).image_grid_thw.clone().expect("grid")
        }),
        pixel_values: None,
        projector: None,
        audio_stages: None,
        stages,
    }
}

/// `VisionModel.__call__`'s blocks and the decoder's layers one at a time,
/// keeping each output.
fn stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    inputs_embeds: &Array,
    prefill: &models::PrefillArgs,
) -> Stages {
    let model = model.as_any().downcast_ref::<Model>().unwrap();
    let m = media(inputs);
    let tower = &model.vision_tower;
    let grid = grid_rows(m.image_grid_thw.as_ref().unwrap());
    let mut h = tower
        .patch_embed
        .forward(m.pixel_values.as_ref().unwrap())
        .unwrap();
    let rotary = tower.rot_pos_emb(&grid).unwrap();
    let cu = cu_seqlens(&grid);
    let mut vision_blocks = Vec::new();
    for block in &tower.blocks {
        h = block.forward(&h, &cu, &rotary).unwrap();
        vision_blocks.push(h.clone());
    }

    let p = prefill.downcast_ref::<PrefillArgs>().unwrap();
    let position_ids = p.position_ids.as_ref().unwrap();
    let layers = model.language_model.layers();
    let (cos, sin) = layers[0]
        .self_attn
        .rotary_emb
        .forward(inputs_embeds, position_ids)
        .unwrap();
    let mut h = inputs_embeds.clone();
    let mut outputs = Vec::new();
    for layer in layers {
        h = layer
            .forward(
                &h,
                &AttentionMask::Causal,
                None,
                Some(position_ids),
                Some((&cos, &sin)),
            )
            .unwrap();
        outputs.push(h.clone());
    }
    Stages {
        vision_blocks,
        layers: outputs,
    }
}

#[test]
fn f32_hugging_face_layout() {
    check_variant(&family(), "f32", Dtype::Float32, Layout::HuggingFace, None);
}

#[test]
fn f32_transformers5_and_mlx_community_layouts() {
    for layout in [Layout::Transformers5, Layout::MlxCommunity] {
        check_variant(&family(), "f32", Dtype::Float32, layout, None);
    }
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
