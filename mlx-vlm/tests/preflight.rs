//! The memory pre-flight: estimates against MLX's measured peak, and the
//! verdicts (too large, the `max_pixels` that fits, MLX's element limit).
//!
//! One test function, because MLX's peak counter is per process and tests
//! of one binary run in parallel threads.

use mlx_rs::{Array, Dtype, memory, ops, transforms};
use mlx_vlm::Error;
use mlx_vlm::fixtures;
use mlx_vlm::generate::{GenerateInputs, GenerateParams, generate_step};
use mlx_vlm::models::qwen2_5_vl::Model;
use mlx_vlm::models::qwen2_5_vl::config::ModelConfig;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::{ModelInputs, VlmModel};
use mlx_vlm::preflight::{self, MAX_ARRAY_ELEMENTS, MemoryBudget, MemoryRequest};

const IMAGE_TOKEN: i32 = 151_655;
const VISION_START: i32 = 151_652;
const VISION_END: i32 = 151_653;

fn tiny_model() -> Model {
    let config =
        ModelConfig::from_json(&fixtures::tiny_config().to_string(), "config.json").unwrap();
    let model = Model::new(config).unwrap();
    let params: Vec<Array> = mlx_rs::nn::ModuleExt::parameters(&model)
        .into_values()
        .collect();
    transforms::eval(&params).unwrap();
    model
}

/// The inputs of one `h`x`w`-patch image (t = 1) inside a short prompt.
fn image_inputs(h: i32, w: i32) -> GenerateInputs {
    let mut ids = vec![VISION_START];
    ids.extend(std::iter::repeat_n(IMAGE_TOKEN, (h * w / 4) as usize));
    ids.extend([VISION_END, 100, 200, 300]);
    let n = ids.len() as i32;
    let pixels = ops::multiply(ops::ones(&[h * w, 1176], Dtype::Float32).unwrap(), 0.1).unwrap();
    let media = QwenVlInputs::images(pixels, &[[1, h, w]]).unwrap();
    GenerateInputs {
        input_ids: Array::from_slice(&ids, &[1, n]).unwrap(),
        mask: None,
        media: Some(ModelInputs::new(media, vec![[1, h, w]])),
    }
}

fn params(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ..Default::default()
    }
}

/// Bytes MLX held at once while generating `max_tokens` for `inputs`,
/// beyond what it held before.
fn measured_peak(model: &Model, inputs: GenerateInputs, max_tokens: usize) -> u64 {
    memory::clear_cache().unwrap();
    let before = memory::get_active_memory().unwrap() as u64;
    memory::reset_peak_memory().unwrap();
    let tokens = generate_step(model, inputs, &params(max_tokens))
        .unwrap()
        .take(max_tokens)
        .collect::<mlx_vlm::Result<Vec<_>>>()
        .unwrap();
    assert_eq!(tokens.len(), max_tokens);
    memory::get_peak_memory().unwrap() as u64 - before
}

#[test]
fn preflight() {
    let model = tiny_model();
    let unlimited = MemoryBudget {
        limit_bytes: u64::MAX,
        limit_source: "test",
        in_use_bytes: 0,
        max_buffer_bytes: None,
    };

    // Estimates within 2x of the measured peak: a 448x448 image, an
    // 896x896 one (where the attention matrix dominates) and a long
    // text-only prompt (where the KV cache and prefill scores do).
    let mut report = Vec::new();
    for (h, w) in [(32, 32), (64, 64)] {
        let inputs = image_inputs(h, w);
        let request = MemoryRequest::new(&inputs, &params(4)).unwrap();
        let estimate = preflight::check_with_budget(&model, &request, &unlimited).unwrap();
        let measured = measured_peak(&model, inputs, 4);
        report.push((format!("{h}x{w} patches"), estimate.peak_bytes(), measured));
    }
    let ids: Vec<i32> = (0..3000).map(|i| 100 + i % 5000).collect();
    let text = GenerateInputs::text(Array::from_slice(&ids, &[1, 3000]).unwrap());
    let request = MemoryRequest::new(&text, &params(8)).unwrap();
    let estimate = preflight::check_with_budget(&model, &request, &unlimited).unwrap();
    let measured = measured_peak(&model, text, 8);
    report.push(("3000-token prompt".into(), estimate.peak_bytes(), measured));
    for (case, estimate, measured) in &report {
        println!("{case}: estimate {estimate} B, measured peak {measured} B");
        let ratio = *estimate as f64 / *measured as f64;
        assert!(
            (0.5..=2.0).contains(&ratio),
            "{case}: estimate {estimate} B against measured {measured} B (ratio {ratio:.2}); \
             all: {report:?}"
        );
    }

    // Too large for a budget: a typed error naming the estimate, with the
    // largest max_pixels that fits, and that size does fit.
    let inputs = image_inputs(64, 64);
    let request = MemoryRequest::new(&inputs, &params(4)).unwrap();
    let needed = model.estimate_memory(&request).unwrap().peak_bytes();
    let tight = MemoryBudget {
        limit_bytes: needed / 4,
        limit_source: "a test limit",
        in_use_bytes: 0,
        max_buffer_bytes: None,
    };
    let err = preflight::check_with_budget(&model, &request, &tight).unwrap_err();
    let Error::OutOfMemory {
        fit_max_pixels: Some(pixels),
        needed_bytes,
        available_bytes,
        ref message,
    } = err
    else {
        panic!("expected OutOfMemory with a fitting max_pixels, got {err:?}");
    };
    assert_eq!(needed_bytes, needed);
    assert_eq!(available_bytes, needed / 4);
    assert!(message.contains("a test limit"), "{message}");
    assert!(
        message.contains(&format!("--max-pixels {pixels}")),
        "{message}"
    );
    assert!(pixels < 64 * 64 * 196, "{pixels}");
    let side = ((pixels / 196) as f64).sqrt().floor() as i32 / 2 * 2;
    let smaller = MemoryRequest {
        image_grids: vec![[1, side, side]],
        ..request.clone()
    };
    preflight::check_with_budget(&model, &smaller, &tight).unwrap();

    // A phone photo at the checkpoint's default max_pixels (12,845,056):
    // 4032x3024 resizes to 4032x3024 (already multiples of 28), 62,208
    // patches, whose full-attention matrix exceeds MLX's 32-bit indexing
    // whatever the memory: refused, with a size that fits.
    let photo = MemoryRequest {
        prompt_tokens: 62_208 / 4 + 10,
        image_grids: vec![[1, 216, 288]],
        max_tokens: 256,
        max_kv_size: None,
        prefill_step_size: Some(2048),
    };
    let estimate = model.estimate_memory(&photo).unwrap();
    assert!(estimate.largest_array_elements > MAX_ARRAY_ELEMENTS);
    let err = preflight::check_with_budget(&model, &photo, &unlimited).unwrap_err();
    let Error::OutOfMemory {
        fit_max_pixels: Some(pixels),
        ref message,
        ..
    } = err
    else {
        panic!("expected OutOfMemory with a fitting max_pixels, got {err:?}");
    };
    assert!(message.contains("elements"), "{message}");
    // Two heads of L² scores: L = 32,767 patches at most.
    let patches = pixels / 196;
    assert!(2 * patches * patches <= MAX_ARRAY_ELEMENTS, "{pixels}");
    assert!(2 * (patches + 1000).pow(2) > MAX_ARRAY_ELEMENTS, "{pixels}");

    // The budget of this process is real and positive.
    let budget = MemoryBudget::current().unwrap();
    assert!(budget.available_bytes() > 0, "{budget:?}");
}
