//! One loaded model shared by several threads (`VlmModel: Send + Sync`):
//! loaded on one thread, first evaluated on others, four requests at once
//! with their state (caches, mRoPE deltas) outside the model, each giving
//! the ids it gives alone.

use std::sync::Arc;

use mlx_rs::Dtype;
use mlx_vlm::fixtures::{self, CheckpointSpec};
use mlx_vlm::generate::{GenerateInputs, GenerateParams, generate_step};
use mlx_vlm::models::VlmModel;
use mlx_vlm::{LoadOptions, utils};

#[path = "common/qwen_prompt.rs"]
mod qwen_prompt;
use qwen_prompt::qwen_inputs;

fn request(i: usize) -> GenerateInputs {
    let text: Vec<i32> = (0..5 + i as i32).map(|t| 300 + 37 * t + i as i32).collect();
    let image = i
        .is_multiple_of(2)
        .then_some((8, 8 + 4 * i as i32, 0.01 * (i as f32 + 1.0)));
    qwen_inputs(&text, image, None)
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
