//! The end-to-end harness's description of a family built on Qwen3-VL's
//! model (Qwen3-VL, Qwen3-VL-MoE): the same inputs, prefill arguments and
//! vision tower, told apart by the decoder's feed-forward block `M`.

use mlx_rs::{Array, ops};
use mlx_vlm::fixtures::TinyModel;
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::base::AttentionMask;
use mlx_vlm::models::qwen3_vl::language::DeepstackPlacement;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::qwen3_vl::qwen3_vl::{Model, PrefillArgs, Qwen3VlVariant};
use mlx_vlm::models::{self, VlmModel};

use crate::family_e2e::{Family, Stages, cu_seqlens, grid_rows};

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

/// `VisionModel.__call__`'s blocks and `Qwen3VLModel.__call__`'s layers
/// one at a time, keeping each output.
fn stages<M: Qwen3VlVariant>(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    inputs_embeds: &Array,
    prefill: &models::PrefillArgs,
) -> Stages {
    let model = model.as_any().downcast_ref::<Model<M>>().unwrap();
    let m = media(inputs);
    let tower = &model.vision_tower;
    let grid = grid_rows(m.image_grid_thw.as_ref().unwrap());
    let patches = tower
        .patch_embed
        .forward(m.pixel_values.as_ref().unwrap())
        .unwrap();
    let pos = tower.fast_pos_embed_interpolate(&grid).unwrap();
    let mut h = ops::add(&patches, &pos).unwrap();
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
    let deepstack = p.deepstack_visual_embeds.as_deref().unwrap_or(&[]);
    let n = deepstack.first().map_or(0, |d| d.shape()[0]);
    let placement =
        DeepstackPlacement::new(inputs_embeds, p.visual_pos_masks.as_ref().unwrap(), n).unwrap();
    let mut h = inputs_embeds.clone();
    let mut outputs = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
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
        if let Some(features) = deepstack.get(i) {
            h = placement.add(&h, features).unwrap();
        }
    }
    Stages {
        vision_blocks,
        layers: outputs,
    }
}

/// The family `name` whose model is `Model<M>`, with its tiny checkpoint.
pub fn family<M: Qwen3VlVariant>(name: &'static str, tiny: TinyModel) -> Family {
    Family {
        name,
        tiny,
        tokenizer_dir: Family::qwen_tokenizer,
        position_ids: Some(position_ids),
        vision: vision::<M>,
        image_grid: Some(image_grid),
        pixel_values: None,
        projector: None,
        audio_stages: None,
        stages: stages::<M>,
    }
}
