//! Qwen-VL prompts built by hand (token ids and pixel values, no
//! processor) and a one-call prefill, for tests that drive the model below
//! `generate`.

#![allow(dead_code)] // Each test binary uses its own part.

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::{Cache, InputEmbeddings, ModelInputs, RequestState, VlmModel};

/// Qwen's `<|image_pad|>`, `<|vision_start|>` and `<|vision_end|>` ids.
pub const IMAGE_TOKEN: i32 = 151_655;
pub const VISION_START: i32 = 151_652;
pub const VISION_END: i32 = 151_653;

/// Pixel values per patch of Qwen2-VL and Qwen2.5-VL (3 channels, 2
/// frames, 14x14) and of Qwen3-VL (16x16 patches).
pub const QWEN2_PATCH: i32 = 1176;
pub const QWEN3_PATCH: i32 = 1536;

/// A prompt of `text` ids, with one `h`x`w`-patch image first when
/// `image` is set (pixel values vary with its third field).
/// `image_tokens` overrides the number of image placeholders (a wrong one
/// fails in the model).
pub fn qwen_inputs(
    text: &[i32],
    image: Option<(i32, i32, f32)>,
    image_tokens: Option<usize>,
) -> GenerateInputs {
    qwen_inputs_with_patch(text, image, image_tokens, QWEN2_PATCH)
}

/// [`qwen_inputs`] with `patch` pixel values per patch.
pub fn qwen_inputs_with_patch(
    text: &[i32],
    image: Option<(i32, i32, f32)>,
    image_tokens: Option<usize>,
    patch: i32,
) -> GenerateInputs {
    let mut ids = Vec::new();
    let mut media = None;
    if let Some((h, w, seed)) = image {
        ids.push(VISION_START);
        let n_tokens = image_tokens.unwrap_or((h * w / 4) as usize);
        ids.extend(std::iter::repeat_n(IMAGE_TOKEN, n_tokens));
        ids.push(VISION_END);
        let n = h * w * patch;
        let ramp = ops::arange(0, n, 1, Some(Dtype::Float32)).unwrap();
        let values = ops::sin(&ops::multiply(&ramp, seed).unwrap()).unwrap();
        let pixel_values = values.reshape(&[h * w, patch]).unwrap();
        let qwen = QwenVlInputs::images(pixel_values, &[[1, h, w]]).unwrap();
        media = Some(ModelInputs::new(qwen, vec![[1, h, w]]));
    }
    ids.extend_from_slice(text);
    let n = ids.len() as i32;
    GenerateInputs {
        input_ids: Array::from_slice(&ids, &[1, n]).unwrap(),
        mask: None,
        media,
    }
}

/// A prompt run through the model in one call.
pub struct Prefilled {
    /// Logits `[1, L, vocab]` of the prompt.
    pub logits: Array,
    /// The caches after it.
    pub cache: Vec<Box<dyn Cache>>,
    /// The request's state after it.
    pub state: RequestState,
    /// The merged embeddings and prefill arguments.
    pub features: InputEmbeddings,
}

/// Embeds `inputs` and prefills them in one language-model call.
pub fn prefill(model: &dyn VlmModel, inputs: &GenerateInputs) -> Prefilled {
    let features = model
        .get_input_embeddings(&inputs.input_ids, inputs.media.as_ref(), None)
        .unwrap();
    let mut cache = model.make_cache(None);
    let mut state = model.new_request_state();
    let logits = model
        .language_model(
            &inputs.input_ids,
            Some(&features.inputs_embeds),
            &mut cache,
            Some(&features.prefill),
            &mut state,
        )
        .unwrap();
    Prefilled {
        logits,
        cache,
        state,
        features,
    }
}
