//! The end-to-end harness's descriptions of the Gemma families (PaliGemma,
//! Gemma 3, Gemma 3n): the first two run SigLIP, so their vision stages are
//! shared; Gemma 3n's MobileNetV5 output is checked sampled, and its audio
//! stages too; the decoder stages follow each language model's `__call__`
//! on generation's path (no 4-D mask).

use std::path::PathBuf;

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::fixtures;
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::base::AttentionMask;
use mlx_vlm::models::paligemma::vision::VisionModel;
use mlx_vlm::models::{self, VlmModel, gemma3, gemma3n, paligemma};

use crate::family_e2e::{Family, Stages};

fn gemma_tokenizer() -> PathBuf {
    fixtures::gemma_tokenizer_dir()
}

/// The one-image case's pixel values, whichever Gemma family made them.
fn pixel_values(inputs: &GenerateInputs) -> Array {
    let media = inputs.media.as_ref().expect("media");
    if let Some(p) = media.downcast_ref::<paligemma::processing_paligemma::PaliGemmaInputs>() {
        return p.pixel_values.clone();
    }
    media
        .downcast_ref::<gemma3::processing_gemma3::Gemma3Inputs>()
        .expect("Gemma inputs")
        .pixel_values
        .clone()
}

/// Python: `pixel_values.transpose(0, 2, 3, 1).astype(dtype)`.
fn channels_last(inputs: &GenerateInputs, dtype: Dtype) -> Array {
    pixel_values(inputs)
        .transpose([0, 2, 3, 1])
        .unwrap()
        .as_type(dtype)
        .unwrap()
}

/// SigLIP's encoder layers one at a time, keeping each output.
fn vision_blocks(tower: &VisionModel, pixels: &Array) -> Vec<Array> {
    let mut h = tower.vision_model.embeddings.forward(pixels).unwrap();
    let mut out = Vec::new();
    for layer in &tower.vision_model.encoder.layers {
        h = layer.forward(&h, &AttentionMask::None).unwrap();
        out.push(h.clone());
    }
    out
}

fn paligemma_model(model: &dyn VlmModel) -> &paligemma::Model {
    model.as_any().downcast_ref().expect("a PaliGemma model")
}

fn paligemma_vision(model: &dyn VlmModel, inputs: &GenerateInputs) -> Vec<Array> {
    let model = paligemma_model(model);
    let dtype = model.language_model.model.norm.weight.dtype();
    let (hidden, _, _) = model
        .vision_tower
        .forward(&channels_last(inputs, dtype), true)
        .unwrap();
    vec![hidden]
}

fn paligemma_projector(model: &dyn VlmModel, inputs: &GenerateInputs) -> Array {
    let hidden = paligemma_vision(model, inputs).remove(0);
    let features = ops::expand_dims(&hidden, 0)
        .unwrap()
        .as_type(pixel_values(inputs).dtype())
        .unwrap();
    paligemma_model(model)
        .multi_modal_projector
        .forward(&features)
        .unwrap()
}

/// `GemmaModel.__call__`'s layers without a mask (bidirectional), as
/// generation's prefill runs them.
fn paligemma_stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    inputs_embeds: &Array,
    _prefill: &models::PrefillArgs,
) -> Stages {
    let model = paligemma_model(model);
    let dtype = model.language_model.model.norm.weight.dtype();
    let vision_blocks = vision_blocks(&model.vision_tower, &channels_last(inputs, dtype));
    let hidden = model.language_model.config.hidden_size as f32;
    let normalizer = Array::scalar::<f32>(hidden.sqrt())
        .as_type(inputs_embeds.dtype())
        .unwrap();
    let mut h = ops::multiply(inputs_embeds, &normalizer).unwrap();
    let mut layers = Vec::new();
    for layer in model.language_model.layers() {
        h = layer.forward(&h, None, None).unwrap();
        layers.push(h.clone());
    }
    Stages {
        vision_blocks,
        layers,
    }
}

/// PaliGemma with its tiny checkpoint.
pub fn paligemma() -> Family {
    Family {
        name: "paligemma",
        tiny: fixtures::paligemma_tiny(),
        tokenizer_dir: gemma_tokenizer,
        position_ids: None,
        vision: paligemma_vision,
        image_grid: None,
        pixel_values: Some(pixel_values),
        projector: Some(paligemma_projector),
        audio_stages: None,
        stages: paligemma_stages,
    }
}

fn gemma3_model(model: &dyn VlmModel) -> &gemma3::Model {
    model.as_any().downcast_ref().expect("a Gemma 3 model")
}

fn gemma3_vision(model: &dyn VlmModel, inputs: &GenerateInputs) -> Vec<Array> {
    let model = gemma3_model(model);
    let dtype = model.language_model.model.norm.weight.dtype();
    let (hidden, _, _) = model
        .vision_tower
        .forward(&channels_last(inputs, dtype), true)
        .unwrap();
    vec![hidden]
}

fn gemma3_projector(model: &dyn VlmModel, inputs: &GenerateInputs) -> Array {
    let hidden = gemma3_vision(model, inputs).remove(0);
    gemma3_model(model)
        .multi_modal_projector
        .forward(&hidden)
        .unwrap()
}

/// `Gemma3Model.__call__`'s layers with the prompt cache's global and
/// sliding-window masks, as generation's prefill runs them.
fn gemma3_stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    inputs_embeds: &Array,
    _prefill: &models::PrefillArgs,
) -> Stages {
    let model = gemma3_model(model);
    let dtype = model.language_model.model.norm.weight.dtype();
    let vision_blocks = vision_blocks(&model.vision_tower, &channels_last(inputs, dtype));
    let config = &model.language_model.config;
    // Python: `mx.array(hidden_size**0.5, mx.bfloat16).astype(h.dtype)`.
    let factor = Array::scalar::<f32>((config.hidden_size as f32).sqrt())
        .as_type(Dtype::Bfloat16)
        .unwrap()
        .as_type(inputs_embeds.dtype())
        .unwrap();
    let mut h = ops::multiply(inputs_embeds, &factor).unwrap();
    let mut cache = model.language_model.make_cache();
    let n = h.shape()[1];
    let pattern = config.sliding_window_pattern as usize;
    let global = cache[pattern - 1].make_mask(n, None, false).unwrap();
    let sliding = cache[0]
        .make_mask(n, Some(config.sliding_window), false)
        .unwrap();
    let mut layers = Vec::new();
    for (i, (layer, c)) in model
        .language_model
        .layers()
        .iter()
        .zip(cache.iter_mut())
        .enumerate()
    {
        let mask = if config.is_global_layer(i as i32) {
            &global
        } else {
            &sliding
        };
        h = layer.forward(&h, mask, Some(&mut **c)).unwrap();
        layers.push(h.clone());
    }
    Stages {
        vision_blocks,
        layers,
    }
}

/// Gemma 3 with its tiny checkpoint.
pub fn gemma3() -> Family {
    Family {
        name: "gemma3",
        tiny: fixtures::gemma3_tiny(),
        tokenizer_dir: gemma_tokenizer,
        position_ids: None,
        vision: gemma3_vision,
        image_grid: None,
        pixel_values: Some(pixel_values),
        projector: Some(gemma3_projector),
        audio_stages: None,
        stages: gemma3_stages,
    }
}

fn gemma3n_model(model: &dyn VlmModel) -> &gemma3n::Model {
    model.as_any().downcast_ref().expect("a Gemma 3n model")
}

fn gemma3n_inputs(inputs: &GenerateInputs) -> &gemma3n::processing_gemma3n::Gemma3nInputs {
    inputs
        .media
        .as_ref()
        .expect("media")
        .downcast_ref()
        .expect("Gemma 3n inputs")
}

/// Every `step`-th index below `n`.
fn every(n: i32, step: usize) -> Array {
    let i: Vec<i32> = (0..n).step_by(step).collect();
    Array::from_slice(&i, &[i.len() as i32]).unwrap()
}

/// The MobileNetV5 tower's output, every 128th channel (the generator's
/// `out[..., ::128]`; the whole output is 2 MB).
fn gemma3n_vision(model: &dyn VlmModel, inputs: &GenerateInputs) -> Vec<Array> {
    let pixel_values = gemma3n_inputs(inputs)
        .pixel_values
        .as_ref()
        .expect("pixels");
    let out = gemma3n_model(model)
        .vision_tower
        .forward(pixel_values)
        .unwrap();
    vec![ops::take(&out, &every(out.shape()[3], 128), 3).unwrap()]
}

/// The decoder layers' AltUp streams at the prompt's last 4 positions, on
/// generation's path (the model's own caches and the prompt's per-layer
/// inputs).
fn gemma3n_stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    inputs_embeds: &Array,
    prefill: &models::PrefillArgs,
) -> Stages {
    let model = gemma3n_model(model);
    let prefill: &gemma3n::gemma3n::Gemma3nPrefill = prefill.downcast_ref().unwrap();
    let mut cache = model.make_cache();
    let (_, layers) = model
        .language_model
        .model
        .forward_with_layer_outputs(
            Some(&inputs.input_ids),
            Some(inputs_embeds),
            None,
            &mut cache,
            Some(&prefill.per_layer_inputs),
        )
        .unwrap();
    let len = inputs_embeds.shape()[1];
    let last = Array::from_slice(&(len - 4..len).collect::<Vec<_>>(), &[4]).unwrap();
    Stages {
        vision_blocks: Vec::new(),
        layers: layers
            .iter()
            .map(|l| ops::take(l, &last, 2).unwrap())
            .collect(),
    }
}

/// The audio case's features, their mask, and the encoder's soft tokens
/// and mask (Python: `get_audio_features(input_features,
/// ~input_features_mask)`).
fn gemma3n_audio_stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
) -> Vec<(&'static str, Array)> {
    let media = gemma3n_inputs(inputs);
    let features = media.input_features.clone().expect("features");
    let mask = media.input_features_mask.clone().expect("mask");
    let (audio_features, audio_mask) = gemma3n_model(model)
        .get_audio_features(&features, &ops::logical_not(&mask).unwrap())
        .unwrap();
    let int = |a: &Array| a.as_type(Dtype::Int32).unwrap();
    vec![
        ("input_features", features.clone()),
        ("input_features_mask", int(&mask)),
        ("audio_mask", int(&audio_mask)),
        ("audio_features", audio_features),
    ]
}

/// Gemma 3n with its tiny checkpoint (images and audio).
pub fn gemma3n() -> Family {
    Family {
        name: "gemma3n",
        tiny: fixtures::gemma3n_tiny(),
        tokenizer_dir: gemma_tokenizer,
        position_ids: None,
        vision: gemma3n_vision,
        image_grid: None,
        pixel_values: None,
        projector: None,
        audio_stages: Some(gemma3n_audio_stages),
        stages: gemma3n_stages,
    }
}
