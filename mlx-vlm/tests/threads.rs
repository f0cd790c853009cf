//! One loaded model shared by several threads (`VlmModel: Send + Sync`):
//! loaded on one thread, first evaluated on others, four requests at once
//! with their state (caches, mRoPE deltas) outside the model, each giving
//! the ids it gives alone.

use std::sync::Arc;

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::fixtures::{self, CheckpointSpec};
use mlx_vlm::generate::{GenerateInputs, GenerateParams, generate_step};
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::{ModelInputs, VlmModel};
use mlx_vlm::{LoadOptions, utils};

const IMAGE_TOKEN: i32 = 151_655;
const VISION_START: i32 = 151_652;
const VISION_END: i32 = 151_653;

/// A prompt of `text` ids, with one `h`x`w`-patch image first when `image`
/// is set (pixel values vary with `seed`).
fn inputs(text: &[i32], image: Option<(i32, i32, f32)>) -> GenerateInputs {
    let mut ids = Vec::new();
    let mut media = None;
    if let Some((h, w, seed)) = image {
        ids.push(VISION_START);
        ids.extend(std::iter::repeat_n(IMAGE_TOKEN, (h * w / 4) as usize));
        ids.push(VISION_END);
        let n = h * w * 1176;
        let ramp = ops::arange(0, n, 1, Some(Dtype::Float32)).unwrap();
        let values = ops::sin(&ops::multiply(&ramp, seed).unwrap()).unwrap();
        let pixel_values = values.reshape(&[h * w, 1176]).unwrap();
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

fn request(i: usize) -> GenerateInputs {
    let text: Vec<i32> = (0..5 + i as i32).map(|t| 300 + 37 * t + i as i32).collect();
    let image = i
        .is_multiple_of(2)
        .then_some((8, 8 + 4 * i as i32, 0.01 * (i as f32 + 1.0)));
    inputs(&text, image)
}

fn greedy_ids(model: &dyn VlmModel, inputs: GenerateInputs) -> Vec<u32> {
    let params = GenerateParams {
        max_tokens: 12,
        ..Default::default()
    };
    generate_step(model, inputs, &params)
        .unwrap()
        .take(12)
        .map(|step| step.unwrap().0)
        .collect()
}

#[test]
fn one_model_serves_four_threads_with_single_threaded_ids() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype: Dtype::Float32,
        ..Default::default()
    };
    fixtures::write_checkpoint(dir.path(), &fixtures::tiny_config(), &spec).unwrap();

    // Loaded on a thread of its own, which then ends.
    let path = dir.path().to_path_buf();
    let model: Arc<dyn VlmModel> = std::thread::spawn(move || {
        Arc::from(utils::load_model(&path, &LoadOptions::default()).unwrap())
    })
    .join()
    .unwrap();

    // Alone, one after the other, on a fresh thread each.
    let alone: Vec<Vec<u32>> = (0..4)
        .map(|i| {
            let model = Arc::clone(&model);
            std::thread::spawn(move || greedy_ids(&*model, request(i)))
                .join()
                .unwrap()
        })
        .collect();
    assert!(alone.iter().all(|ids| ids.len() == 12), "{alone:?}");
    assert!(
        alone.windows(2).any(|w| w[0] != w[1]),
        "the four requests should differ: {alone:?}"
    );

    // Together, three rounds, all four threads at once on the shared model.
    for round in 0..3 {
        let together: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let model = &*model;
                    scope.spawn(move || greedy_ids(model, request(i)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone, "round {round}");
    }
}
