//! The end-to-end harness's descriptions of LLaVA and LLaVA-NeXT: the
//! vision stages run the CLIP tower's layers one at a time on the pixel
//! values as the model gets them (float32, the first image's tiles for
//! LLaVA-NeXT), the decoder stages each layer on the merged embeddings
//! with the causal mask, as generation's prefill runs them.

use mlx_rs::Array;
use mlx_vlm::fixtures;
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::base::{self, AttentionMask};
use mlx_vlm::models::llava::config::ModelConfig;
use mlx_vlm::models::llava::language::LanguageModel;
use mlx_vlm::models::llava::llava::{LlavaMultiModalProjector, select_image_features};
use mlx_vlm::models::llava::vision::VisionModel;
use mlx_vlm::models::{self, VlmModel, llava, llava_next};

use crate::family_e2e::{Family, Stages};

/// The parts of either model the stages read.
struct Parts<'a> {
    config: &'a ModelConfig,
    vision_tower: &'a VisionModel,
    projector: &'a LlavaMultiModalProjector,
    language_model: &'a LanguageModel,
}

fn parts(model: &dyn VlmModel) -> Parts<'_> {
    if let Some(m) = model.as_any().downcast_ref::<llava::Model>() {
        return Parts {
            config: &m.config,
            vision_tower: &m.vision_tower,
            projector: &m.multi_modal_projector,
            language_model: &m.language_model,
        };
    }
    let m: &llava_next::Model = model.as_any().downcast_ref().expect("a LLaVA model");
    Parts {
        config: &m.config,
        vision_tower: &m.vision_tower,
        projector: &m.multi_modal_projector,
        language_model: &m.language_model,
    }
}

/// The pixel values as the processor made them (golden
/// `single.pixel_values`).
fn pixel_values(inputs: &GenerateInputs) -> Array {
    let media = inputs.media.as_ref().expect("media");
    if let Some(p) = media.downcast_ref::<llava::processing_llava::LlavaInputs>() {
        return p.pixel_values.clone();
    }
    media
        .downcast_ref::<llava_next::processing_llava_next::LlavaNextInputs>()
        .expect("LLaVA inputs")
        .pixel_values
        .clone()
}

/// What the tower runs on: channels-last, LLaVA-NeXT's first image's
/// tiles.
fn tower_input(inputs: &GenerateInputs) -> Array {
    let p = pixel_values(inputs);
    let p = if p.ndim() == 5 {
        p.index(mlx_rs::idx![0]).unwrap()
    } else {
        p
    };
    p.transpose([0, 2, 3, 1]).unwrap()
}

fn vision(model: &dyn VlmModel, inputs: &GenerateInputs) -> Vec<Array> {
    let m = parts(model);
    let (_, _, states) = m.vision_tower.forward(&tower_input(inputs), true).unwrap();
    vec![select_image_features(m.config, &states.unwrap()).unwrap()]
}

fn projector(model: &dyn VlmModel, inputs: &GenerateInputs) -> Array {
    let selected = vision(model, inputs).remove(0);
    parts(model).projector.forward(&selected).unwrap()
}

fn stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    inputs_embeds: &Array,
    _prefill: &models::PrefillArgs,
) -> Stages {
    let m = parts(model);
    let tower = &m.vision_tower.vision_model;
    let mut h = tower.embeddings.forward(&tower_input(inputs)).unwrap();
    if let Some(norm) = &tower.pre_layrnorm {
        h = norm.forward(&h).unwrap();
    }
    let mut vision_blocks = Vec::new();
    for layer in &tower.encoder.layers {
        h = layer.forward(&h, &AttentionMask::None).unwrap();
        vision_blocks.push(h.clone());
    }
    let mut h = inputs_embeds.clone();
    let mask = base::create_attention_mask(&h, None, false).unwrap();
    let mut cache = models::cache::make_prompt_cache(m.language_model.layers().len(), None);
    let mut layers = Vec::new();
    for (layer, c) in m.language_model.layers().iter().zip(cache.iter_mut()) {
        h = layer.forward(&h, &mask, Some(&mut **c)).unwrap();
        layers.push(h.clone());
    }
    Stages {
        vision_blocks,
        layers,
    }
}

fn llama_tokenizer() -> std::path::PathBuf {
    fixtures::llama_tokenizer_dir()
}

/// LLaVA with its tiny checkpoint.
pub fn llava() -> Family {
    Family {
        name: "llava",
        tiny: fixtures::llava_tiny(),
        tokenizer_dir: llama_tokenizer,
        position_ids: None,
        vision,
        image_grid: None,
        pixel_values: Some(pixel_values),
        projector: Some(projector),
        audio_stages: None,
        stages,
    }
}

/// LLaVA-NeXT with its tiny checkpoint.
pub fn llava_next() -> Family {
    Family {
        name: "llava_next",
        tiny: fixtures::llava_next_tiny(),
        ..llava()
    }
}
