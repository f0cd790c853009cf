//! The end-to-end harness's descriptions of Idefics3 and SmolVLM (one
//! model, two registrations): the vision stages follow
//! `get_input_embeddings` (every tile of the one-image case through the
//! tower with its patch mask, then the connector), the decoder stages the
//! language model on generation's path (causal mask, no 4-D mask).

use mlx_rs::{Array, Dtype};
use mlx_vlm::fixtures;
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::base::{self, AttentionMask};
use mlx_vlm::models::idefics3::idefics3::{Idefics3, Model, Variant};
use mlx_vlm::models::idefics3::processing_idefics3::Idefics3Inputs;
use mlx_vlm::models::smolvlm::smolvlm::SmolVlm;
use mlx_vlm::models::{PrefillArgs, VlmModel};

use crate::family_e2e::{Family, Stages};

fn model<V: Variant>(model: &dyn VlmModel) -> &Model<V> {
    model
        .as_any()
        .downcast_ref()
        .expect("an Idefics3-family model")
}

/// The processor's inputs of a case with images.
pub fn inputs(inputs: &GenerateInputs) -> &Idefics3Inputs {
    inputs
        .media
        .as_ref()
        .expect("media")
        .downcast_ref()
        .expect("Idefics3 inputs")
}

fn pixel_values(i: &GenerateInputs) -> Array {
    inputs(i).pixel_values.clone()
}

/// `[tiles, h, w, 3]` pixels and `[tiles, ph, pw]` patch mask of the
/// one-image case (every tile real), as `get_input_embeddings` makes them.
fn tiles<V: Variant>(m: &Model<V>, i: &GenerateInputs) -> (Array, Array) {
    let x = inputs(i);
    let s = x.pixel_values.shape().to_vec();
    let pixels = x
        .pixel_values
        .reshape(&[s[0] * s[1], s[2], s[3], s[4]])
        .unwrap();
    let mask = x
        .pixel_attention_mask
        .reshape(&[s[0] * s[1], s[3], s[4]])
        .unwrap();
    (
        pixels.transpose([0, 2, 3, 1]).unwrap(),
        m.patch_attention_mask(&mask).unwrap(),
    )
}

fn vision<V: Variant>(model_: &dyn VlmModel, i: &GenerateInputs) -> Vec<Array> {
    let m = model::<V>(model_);
    let (pixels, mask) = tiles(m, i);
    let (pooler, _, _) = m.vision_model.forward(&pixels, Some(&mask), true).unwrap();
    vec![pooler]
}

fn projector<V: Variant>(model_: &dyn VlmModel, i: &GenerateInputs) -> Array {
    let pooler = vision::<V>(model_, i).remove(0);
    model::<V>(model_)
        .connector
        .forward(&pooler.as_type(Dtype::Float32).unwrap())
        .unwrap()
}

fn stages<V: Variant>(
    model_: &dyn VlmModel,
    i: &GenerateInputs,
    embeds: &Array,
    _prefill: &PrefillArgs,
) -> Stages {
    let m = model::<V>(model_);
    let (pixels, mask) = tiles(m, i);
    let tower = &m.vision_model;
    let mut h = tower
        .embeddings
        .forward(&pixels, Some(&mask))
        .unwrap()
        .as_type(tower.embeddings.patch_embedding.weight.dtype())
        .unwrap();
    let mut vision_blocks = Vec::new();
    for layer in &tower.encoder.layers {
        h = layer.forward(&h, &AttentionMask::None).unwrap();
        vision_blocks.push(h.clone());
    }
    let lm = &m.language_model;
    let mut h = embeds.as_type(lm.norm.weight.dtype()).unwrap();
    let mask = base::create_attention_mask(&h, None, false).unwrap();
    let mut layers = Vec::new();
    for layer in &lm.layers {
        h = layer.forward(&h, &mask, None).unwrap();
        layers.push(h.clone());
    }
    Stages {
        vision_blocks,
        layers,
    }
}

fn family<V: Variant>(name: &'static str, tiny: fixtures::TinyModel) -> Family {
    Family {
        name,
        tiny,
        tokenizer_dir: fixtures::smollm_tokenizer_dir,
        position_ids: None,
        vision: vision::<V>,
        image_grid: None,
        pixel_values: Some(pixel_values),
        projector: Some(projector::<V>),
        audio_stages: None,
        stages: stages::<V>,
    }
}

/// The tiny Idefics3.
pub fn idefics3() -> Family {
    family::<Idefics3>("idefics3", fixtures::idefics3_tiny())
}

/// The tiny SmolVLM.
pub fn smolvlm() -> Family {
    family::<SmolVlm>("smolvlm", fixtures::smolvlm_tiny())
}
