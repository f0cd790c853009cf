//! PaliGemma against Python mlx-vlm 0.7.6, model level (goldens of
//! `tests/fixtures/paligemma/gen_model.py`): on a tiny config with
//! deterministic weights, fixed ids and pixel values, the SigLIP tower, the
//! projected features, the merged embeddings, the prefix-LM mask and the
//! prompt logits; and the registered family end to end (goldens of
//! `tests/fixtures/paligemma/gen_goldens.py`) in the Hugging Face,
//! transformers-5 and mlx-community layouts, f32, bf16 and 4-bit.

#[path = "common/family_e2e.rs"]
#[allow(dead_code)]
mod family_e2e;
#[path = "common/gemma_family.rs"]
#[allow(dead_code)]
mod gemma_family;
#[path = "common/siglip_weights.rs"]
mod siglip_weights;

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::{Array, ops};
use mlx_vlm::fixtures::tensor_values;
use mlx_vlm::models::paligemma::config::ModelConfig;
use mlx_vlm::models::paligemma::paligemma::Model;
use serde_json::Value;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paligemma")
}

fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape());
    ops::max(
        &ops::abs(&ops::subtract(a, b).unwrap()).unwrap(),
        None,
        false,
    )
    .unwrap()
    .item::<f32>()
    .unwrap()
}

#[test]
fn gemma_model_matches_python() {
    check_model("model");
}

/// PaliGemma 2's decoder: Gemma 2's soft caps, pre/post norms and eager
/// attention path.
#[test]
fn gemma2_model_matches_python() {
    check_model("model_gemma2");
}

fn check_model(name: &str) {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap())
            .unwrap();
    let g: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(dir().join(format!("{name}.safetensors")))
            .unwrap()
            .0;
    let config =
        ModelConfig::from_map(meta["config"].as_object().unwrap().clone(), "model.json").unwrap();
    let mut model = Model::new(config).unwrap();
    siglip_weights::load_tiny_weights(&mut model);

    let ids: Vec<i32> = serde_json::from_value(meta["input_ids"].clone()).unwrap();
    let n = ids.len() as i32;
    let input_ids = Array::from_vec_shaped(ids, &[1, n]).unwrap();
    let pixel_values = Array::from_vec_shaped(
        tensor_values("pixel_values", &[1, 3, 32, 32]),
        &[1, 3, 32, 32],
    )
    .unwrap();
    let mask = ops::ones(&[1, n], mlx_rs::Dtype::Int32).unwrap();
    let tol = 1e-4;

    let (hidden, _, _) = model
        .vision_tower
        .forward(&pixel_values.transpose([0, 2, 3, 1]).unwrap(), true)
        .unwrap();
    let diff = max_abs_diff(&hidden, &g["vision"]);
    assert!(diff <= tol, "vision differs by {diff}");
    let (embeds, mask_4d) = model
        .get_input_embeddings(&input_ids, Some(&pixel_values), Some(&mask))
        .unwrap();
    let diff = max_abs_diff(&embeds, &g["inputs_embeds"]);
    assert!(diff <= tol, "merged embeddings differ by {diff}");
    let mask_4d = mask_4d.unwrap();
    assert_eq!(
        mask_4d
            .as_type(mlx_rs::Dtype::Int32)
            .unwrap()
            .to_vec_as::<i64>()
            .unwrap(),
        g["mask_4d"].to_vec_as::<i64>().unwrap()
    );
    let logits = model
        .forward(&input_ids, Some(&pixel_values), Some(&mask), &mut [])
        .unwrap();
    let diff = max_abs_diff(&logits, &g["logits"]);
    assert!(diff <= tol, "logits differ by {diff}");
}

mod end_to_end {
    use mlx_rs::Dtype;
    use mlx_vlm::fixtures::Layout;

    use crate::family_e2e::check_variant;
    use crate::gemma_family::paligemma;

    #[test]
    fn f32_hugging_face_layout() {
        check_variant(
            &paligemma(),
            "f32",
            Dtype::Float32,
            Layout::HuggingFace,
            None,
        );
    }

    #[test]
    fn f32_transformers5_layout() {
        check_variant(
            &paligemma(),
            "f32",
            Dtype::Float32,
            Layout::Transformers5,
            None,
        );
    }

    #[test]
    fn f32_mlx_community_layout() {
        check_variant(
            &paligemma(),
            "f32",
            Dtype::Float32,
            Layout::MlxCommunity,
            None,
        );
    }

    #[test]
    fn bf16_hugging_face_layout() {
        check_variant(
            &paligemma(),
            "bf16",
            Dtype::Bfloat16,
            Layout::HuggingFace,
            None,
        );
    }

    #[test]
    fn q4_mlx_community() {
        check_variant(
            &paligemma(),
            "q4",
            Dtype::Bfloat16,
            Layout::MlxCommunity,
            Some((64, 4)),
        );
    }

    /// The chat template refuses two images with Python's message, and the
    /// processor a prompt whose `<image>` count differs from the images,
    /// as typed errors.
    #[test]
    fn image_count_errors_are_typed() {
        use mlx_vlm::fixtures::{self, CheckpointSpec};

        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::paligemma_tiny(), &spec).unwrap();
        let (_, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        let err = processor
            .apply_chat_template("caption en", None, 2)
            .expect_err("two images");
        assert!(
            err.to_string()
                .contains("Model paligemma does not support multi-image chat"),
            "{err}"
        );
        let image: mlx_vlm::ImageSource = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/qwen2_5_vl/images/gradient_100x75.png")
            .into();
        let err = processor
            .prepare_inputs("<image><image>caption en", &[image])
            .expect_err("two image tokens, one image");
        assert!(
            matches!(err, mlx_vlm::Error::ImageTokenMismatch { .. }),
            "{err}"
        );
    }

    /// A prefill step shorter than the prompt still prefills PaliGemma in
    /// one pass (Python's `chunked_prefill_policy`: the bidirectional
    /// prompt cannot be split), so the ids stay Python's.
    #[test]
    fn a_small_prefill_step_keeps_pythons_ids() {
        use mlx_vlm::fixtures::{self, CheckpointSpec};
        use mlx_vlm::generate::{GenerateParams, stream_generate};

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paligemma");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("goldens/f32.json")).unwrap())
                .unwrap();
        let case = &meta["cases"]["single"];
        let want: Vec<u32> = serde_json::from_value(case["generated_ids"].clone()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::paligemma_tiny(), &spec).unwrap();
        let (model, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        let image = mlx_vlm::ImageSource::from(
            dir.join("../qwen2_5_vl/images")
                .join(case["images"][0].as_str().unwrap()),
        );
        let prompt = processor
            .apply_chat_template(case["prompt"].as_str().unwrap(), None, 1)
            .unwrap();
        let inputs = processor.prepare_inputs(&prompt, &[image]).unwrap();
        let params = GenerateParams {
            max_tokens: want.len(),
            prefill_step_size: Some(5),
            ..Default::default()
        };
        let mut ids = Vec::new();
        for r in stream_generate(
            &*model,
            processor.tokenizer(),
            inputs,
            processor.eos_token_ids(),
            &params,
        )
        .unwrap()
        {
            if let Some(all) = r.unwrap().token_ids {
                ids = all;
            }
        }
        assert_eq!(ids, want);
    }

    /// A config.json that disagrees with the weights (layer counts, widths)
    /// is a typed error naming the key and the fix, before any module is
    /// built, for both Gemma families.
    #[test]
    fn a_config_that_disagrees_with_the_weights_is_a_typed_error() {
        use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};

        for (tiny, layout) in [
            (fixtures::paligemma_tiny(), Layout::HuggingFace),
            (fixtures::gemma3_tiny(), Layout::Transformers5),
        ] {
            for (section, key, value, named) in [
                (
                    "text_config",
                    "num_hidden_layers",
                    3,
                    "text_config.num_hidden_layers",
                ),
                (
                    "vision_config",
                    "num_hidden_layers",
                    5,
                    "vision_config.num_hidden_layers",
                ),
                (
                    "vision_config",
                    "intermediate_size",
                    96,
                    "vision_config.intermediate_size",
                ),
            ] {
                let tmp = tempfile::tempdir().unwrap();
                let spec = CheckpointSpec {
                    layout,
                    tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
                    ..Default::default()
                };
                fixtures::write_tiny_checkpoint(tmp.path(), &tiny, &spec).unwrap();
                let path = tmp.path().join("config.json");
                let mut config: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                config[section][key] = value.into();
                std::fs::write(&path, config.to_string()).unwrap();
                let err = mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default())
                    .err()
                    .expect("a config that disagrees with the weights");
                assert!(
                    matches!(&err, mlx_vlm::Error::Config { message, .. } if message.contains(named)),
                    "{named}: {err}"
                );
            }
        }
    }

    /// transformers 5's keys, also with the doubled `.model` some 5.x
    /// versions wrote, map back to the original layout.
    #[test]
    fn transformers5_keys_map_back() {
        use mlx_vlm::models::paligemma::paligemma::normalize_transformers5_layout;

        let x = || mlx_rs::Array::from_slice(&[0f32], &[1]).unwrap();
        let weights = [
            "model.language_model.model.layers.0.mlp.up_proj.weight",
            "model.language_model.norm.weight",
            "model.vision_tower.vision_model.post_layernorm.weight",
            "model.multi_modal_projector.linear.weight",
            "lm_head.weight",
        ]
        .into_iter()
        .map(|k| (k.to_string(), x()))
        .collect::<std::collections::HashMap<_, _>>();
        for (keep_lm_head, lm_head) in
            [(false, None), (true, Some("language_model.lm_head.weight"))]
        {
            let mut keys: Vec<String> =
                normalize_transformers5_layout(weights.clone(), keep_lm_head)
                    .into_keys()
                    .collect();
            keys.sort();
            let mut want = vec![
                "language_model.model.layers.0.mlp.up_proj.weight",
                "language_model.model.norm.weight",
                "multi_modal_projector.linear.weight",
                "vision_tower.vision_model.post_layernorm.weight",
            ];
            want.extend(lm_head);
            want.sort();
            assert_eq!(keys, want);
        }
    }
}

/// Gemma's `RMSNorm` keeps a bf16 model bf16, as Python's `1.0 +
/// self.weight` (a weak scalar) does: an f32 `1` made the norm's output,
/// and every activation after it, f32 (each bf16 weight then promoted to
/// an f32 copy in its product: 2.6x Python's peak memory on a 13-token
/// text prompt of a Gemma-3-4B-shaped bf16 checkpoint, 1.75x with an
/// image; BENCHMARKS.md, "Gemma 3").
#[test]
fn gemma_rms_norm_keeps_the_weight_dtype() {
    use mlx_rs::{Dtype, fast};
    use mlx_vlm::models::paligemma::language::RMSNorm;
    let mut norm = RMSNorm::new(8, 1e-6).unwrap();
    let w: Vec<f32> = (0..8).map(|i| 0.1 * i as f32 - 0.3).collect();
    let w = Array::from_slice(&w, &[8])
        .unwrap()
        .as_type(Dtype::Bfloat16)
        .unwrap();
    norm.weight.set(w.clone());
    let x: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Array::from_slice(&x, &[2, 8])
        .unwrap()
        .as_type(Dtype::Bfloat16)
        .unwrap();
    let y = norm.forward(&x).unwrap();
    assert_eq!(y.dtype(), Dtype::Bfloat16);
    // Python: mx.fast.rms_norm(x, 1.0 + w, eps), the sum in bf16.
    let one = Array::from_slice(&[1.0f32], &[1])
        .unwrap()
        .as_type(Dtype::Bfloat16)
        .unwrap();
    let expected = fast::rms_norm(&x, Some(&ops::add(&w, &one).unwrap()), 1e-6).unwrap();
    let f32 = |a: &Array| a.as_type(Dtype::Float32).unwrap();
    assert_eq!(max_abs_diff(&f32(&y), &f32(&expected)), 0.0);
}
