//! Gemma 3 against Python mlx-vlm 0.7.6, language model level (goldens of
//! `tests/fixtures/gemma3/gen_language.py`): a tiny text config whose
//! sliding window (4) is shorter than the 11-token prompt; the prompt's
//! logits without a cache, and with the model's own caches (rotating for
//! sliding layers, growing for global ones) the prefill's last logits and
//! the greedy ids and each decode step's logits, prefilled whole and in
//! chunks of 5. Model level (`gen_model.py`): two images through the SigLIP
//! tower, the pooling projector, the merged embeddings, and the logits with
//! the 4-D mask and as generation prefills. The registered family end to
//! end (goldens of `tests/fixtures/gemma3/gen_goldens.py`: one image, two
//! images with a system prompt, text only, a long text prompt; every prompt
//! longer than the tiny sliding window of 8) in the Hugging Face,
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

use mlx_rs::{Array, idx, ops};
use mlx_vlm::fixtures::tensor_values;
use mlx_vlm::models::gemma3::config::{ModelConfig, TextConfig};
use mlx_vlm::models::gemma3::gemma3::Model;
use mlx_vlm::models::gemma3::language::LanguageModel;
use serde_json::Value;

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

fn argmax_last(logits: &Array) -> u32 {
    let last = logits.index(idx![0, -1]).unwrap();
    ops::argmax(&last, None, false)
        .unwrap()
        .item::<u32>()
        .unwrap()
}

#[test]
fn sliding_window_language_model_matches_python() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("language.json")).unwrap()).unwrap();
    let g: HashMap<String, Array> = mlx_rs::io::load_safetensors(dir.join("language.safetensors"))
        .unwrap()
        .0;
    let config =
        TextConfig::from_map(meta["text_config"].as_object().unwrap(), "language.json").unwrap();
    let mut model = LanguageModel::new(&config).unwrap();
    siglip_weights::load_tiny_weights(&mut model);

    let prompt: Vec<i32> = serde_json::from_value(meta["prompt"].clone()).unwrap();
    let n = prompt.len() as i32;
    let ids = Array::from_vec_shaped(prompt.clone(), &[1, n]).unwrap();
    let logits = model.forward(&ids, None, None, &mut []).unwrap();
    let diff = max_abs_diff(&logits, &g["logits"]);
    assert!(diff <= 1e-4, "prompt logits differ by {diff}");

    for (name, chunk) in [("whole", n), ("chunked", 5)] {
        let mut cache = model.make_cache();
        let mut logits = None;
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let part = ids.index(idx![.., start..end]).unwrap();
            logits = Some(model.forward(&part, None, None, &mut cache).unwrap());
            start = end;
        }
        let logits = logits.unwrap();
        let last = logits.index(idx![0, -1]).unwrap();
        let diff = max_abs_diff(&last, &g[&format!("{name}.last_logits")]);
        assert!(diff <= 1e-4, "{name}: prefill logits differ by {diff}");
        let want: Vec<u32> = serde_json::from_value(meta[format!("{name}.ids")].clone()).unwrap();
        let steps = &g[&format!("{name}.step_logits")];
        let mut token = argmax_last(&logits);
        let mut got = Vec::new();
        for i in 0..want.len() {
            got.push(token);
            let step = Array::from_vec_shaped(vec![token as i32], &[1, 1]).unwrap();
            let logits = model.forward(&step, None, None, &mut cache).unwrap();
            let diff = max_abs_diff(
                &logits.index(idx![0, -1]).unwrap(),
                &steps.index(idx![i as i32]).unwrap(),
            );
            assert!(
                diff <= 1e-4,
                "{name}: decode step {i} logits differ by {diff}"
            );
            token = argmax_last(&logits);
        }
        assert_eq!(got, want, "{name}: greedy ids");
    }
}

#[test]
fn model_with_two_images_matches_python() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    let g: HashMap<String, Array> = mlx_rs::io::load_safetensors(dir.join("model.safetensors"))
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
        tensor_values("pixel_values", &[2, 3, 32, 32]),
        &[2, 3, 32, 32],
    )
    .unwrap();
    let mask = ops::ones(&[1, n], mlx_rs::Dtype::Int32).unwrap();
    let close = |what: &str, got: &Array, want: &Array| {
        let diff = max_abs_diff(got, want);
        assert!(diff <= 1e-4, "{what} differs by {diff}");
    };

    let (hidden, _, _) = model
        .vision_tower
        .forward(&pixel_values.transpose([0, 2, 3, 1]).unwrap(), true)
        .unwrap();
    close("vision", &hidden, &g["vision"]);
    close(
        "features",
        &model.multi_modal_projector.forward(&hidden).unwrap(),
        &g["features"],
    );
    let (embeds, _) = model
        .get_input_embeddings(&input_ids, Some(&pixel_values), Some(&mask))
        .unwrap();
    close("merged embeddings", &embeds, &g["inputs_embeds"]);
    let logits = model
        .forward(&input_ids, Some(&pixel_values), Some(&mask), &mut [])
        .unwrap();
    close("logits (4-D mask)", &logits, &g["logits"]);
    let prefill = model
        .language_model
        .forward(&input_ids, Some(&embeds), None, &mut [])
        .unwrap();
    close(
        "logits (generation prefill)",
        &prefill,
        &g["prefill_logits"],
    );
}

mod end_to_end {
    use mlx_rs::Dtype;
    use mlx_vlm::fixtures::Layout;

    use crate::family_e2e::check_variant;
    use crate::gemma_family::gemma3;

    #[test]
    fn f32_hugging_face_layout() {
        check_variant(&gemma3(), "f32", Dtype::Float32, Layout::HuggingFace, None);
    }

    #[test]
    fn f32_transformers5_layout() {
        check_variant(
            &gemma3(),
            "f32",
            Dtype::Float32,
            Layout::Transformers5,
            None,
        );
    }

    #[test]
    fn f32_mlx_community_layout() {
        check_variant(&gemma3(), "f32", Dtype::Float32, Layout::MlxCommunity, None);
    }

    #[test]
    fn bf16_hugging_face_layout() {
        check_variant(
            &gemma3(),
            "bf16",
            Dtype::Bfloat16,
            Layout::HuggingFace,
            None,
        );
    }

    #[test]
    fn q4_mlx_community() {
        check_variant(
            &gemma3(),
            "q4",
            Dtype::Bfloat16,
            Layout::MlxCommunity,
            Some((64, 4)),
        );
    }

    /// Pan-and-scan (on through `ProcessorOptions::image_processor`, with
    /// every setting given) gives the Python processor's ids, crops
    /// prompt and pixel values (`goldens/pan_and_scan.*`).
    #[test]
    fn pan_and_scan_gives_pythons_ids_and_pixels() {
        use std::path::Path;

        use mlx_vlm::fixtures::{self, CheckpointSpec};
        use mlx_vlm::processor::{ProcessorOptions, PromptMedia};

        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let g: std::collections::HashMap<String, mlx_rs::Array> =
            mlx_rs::io::load_safetensors(dir.join("gemma3/goldens/pan_and_scan.safetensors"))
                .unwrap()
                .0;
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("gemma3/goldens/pan_and_scan.json")).unwrap(),
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::gemma3_tiny(), &spec).unwrap();
        let (_, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        let images: Vec<mlx_vlm::ImageSource> = meta["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                dir.join("qwen2_5_vl/images")
                    .join(i.as_str().unwrap())
                    .into()
            })
            .collect();
        let prompt = processor
            .apply_chat_template("Compare the two images.", None, images.len())
            .unwrap();
        assert_eq!(prompt, meta["prompt"].as_str().unwrap());
        let mut options = ProcessorOptions::default();
        let o = &mut options.image_processor;
        o.do_pan_and_scan = Some(true);
        o.pan_and_scan_min_crop_size = Some(32);
        o.pan_and_scan_max_num_crops = Some(4);
        o.pan_and_scan_min_ratio_to_activate = Some(1.2);
        let media = PromptMedia {
            images: &images,
            videos: &[],
            audio: &[],
        };
        let inputs = processor
            .prepare_inputs_with(&prompt, media, &options)
            .unwrap();
        assert_eq!(
            inputs.input_ids.to_vec_as::<i32>().unwrap(),
            g["input_ids"].to_vec_as::<i32>().unwrap()
        );
        let pixels = inputs
            .media
            .as_ref()
            .and_then(|m| {
                m.downcast_ref::<mlx_vlm::models::gemma3::processing_gemma3::Gemma3Inputs>()
            })
            .unwrap()
            .pixel_values
            .clone();
        let diff = crate::max_abs_diff(&pixels, &g["pixel_values"]);
        assert!(diff <= 1e-6, "pixel values differ by {diff}");
    }

    /// A `<start_of_image>` count that differs from the images is a typed
    /// error (Python: a `ValueError` with the same counts).
    #[test]
    fn image_token_count_mismatch_is_a_typed_error() {
        use mlx_vlm::fixtures::{self, CheckpointSpec};

        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::gemma3_tiny(), &spec).unwrap();
        let (_, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        let image: mlx_vlm::ImageSource = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/qwen2_5_vl/images/gradient_100x75.png")
            .into();
        let err = processor
            .prepare_inputs("<start_of_image><start_of_image>Hi", &[image])
            .expect_err("two image tokens, one image");
        assert!(
            matches!(err, mlx_vlm::Error::ImageTokenMismatch { .. }),
            "{err}"
        );
    }

    /// Prefilled in steps of 5 tokens (the sliding layers' rotating caches
    /// wrap between steps), the one-image and long prompts give Python's
    /// ids for the same steps (`goldens/chunked.json`).
    #[test]
    fn chunked_prefill_gives_pythons_ids() {
        use mlx_vlm::fixtures::{self, CheckpointSpec};
        use mlx_vlm::generate::{GenerateParams, stream_generate};

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("gemma3/goldens/chunked.json")).unwrap(),
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::gemma3_tiny(), &spec).unwrap();
        let (model, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        for (name, case) in golden.as_object().unwrap() {
            let want: Vec<u32> = serde_json::from_value(case["generated_ids"].clone()).unwrap();
            let images: Vec<mlx_vlm::ImageSource> = case["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    dir.join("qwen2_5_vl/images")
                        .join(i.as_str().unwrap())
                        .into()
                })
                .collect();
            let prompt = processor
                .apply_chat_template(case["prompt"].as_str().unwrap(), None, images.len())
                .unwrap();
            let inputs = processor.prepare_inputs(&prompt, &images).unwrap();
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
            assert_eq!(ids, want, "{name}");
        }
    }
}

/// Python's `LanguageModel.sanitize` ties the output layer to the
/// embeddings unless the checkpoint has an unprefixed `lm_head.weight`:
/// a saved `language_model.lm_head.weight` (mlx-community conversions keep
/// one) is replaced, an unprefixed one is kept.
#[test]
fn sanitize_ties_the_output_layer_as_python_does() {
    let embed = Array::from_slice(&[1.0f32, 2.0], &[1, 2]).unwrap();
    let saved = Array::from_slice(&[7.0f32, 8.0], &[1, 2]).unwrap();
    let weights = HashMap::from([
        (
            "language_model.model.embed_tokens.weight".to_string(),
            embed.clone(),
        ),
        ("language_model.lm_head.weight".to_string(), saved.clone()),
    ]);
    let out = LanguageModel::sanitize(weights);
    assert_eq!(
        out["language_model.lm_head.weight"]
            .to_vec::<f32>()
            .unwrap(),
        [1.0, 2.0]
    );

    let weights = HashMap::from([
        (
            "language_model.model.embed_tokens.weight".to_string(),
            embed,
        ),
        ("lm_head.weight".to_string(), saved),
    ]);
    let out = LanguageModel::sanitize(weights);
    assert!(!out.contains_key("language_model.lm_head.weight"));
    assert_eq!(out["lm_head.weight"].to_vec::<f32>().unwrap(), [7.0, 8.0]);
}

/// The RoPE angles a batched decode step builds once for all the layers of
/// a kind (`rope_utils::RopeAngles`, `AttentionAngles`) rotate bit for bit
/// as `fast::rope` at the rows' offsets does, for Gemma 3's local and
/// (linearly scaled) global RoPEs, one and several rows and tokens, all or
/// part of the features, in f32 and bf16; and a dtype the angles were not
/// built for is left to the caller.
#[test]
fn rope_angles_match_fast_rope() {
    use mlx_rs::Dtype;
    use mlx_rs::nn::RoPE;
    use mlx_vlm::models::BatchKvCache;
    use mlx_vlm::models::rope_utils::{AttentionAngles, RopeAngles};

    for (base, scale) in [(10_000.0f32, 1.0f32), (1_000_000.0, 0.125)] {
        for (dims, head_dim) in [(16, 16), (8, 16)] {
            for dtype in [Dtype::Float32, Dtype::Bfloat16] {
                for (offsets, len) in [
                    (vec![0, 5, 1000, 131_071], 1),
                    (vec![7], 1),
                    (vec![3, 40], 3),
                ] {
                    let rope = RoPE::new(dims, false, base, scale);
                    let rows = offsets.len() as i32;
                    let n = rows * 3 * len * head_dim;
                    let x = ops::sin(&ops::arange(0, n, 1, Some(Dtype::Float32)).unwrap())
                        .unwrap()
                        .reshape(&[rows, 3, len, head_dim])
                        .unwrap()
                        .as_type(dtype)
                        .unwrap();
                    let offsets = Array::from_slice(&offsets, &[rows]).unwrap();
                    let want = rope.forward(&x, &offsets).unwrap();
                    let angles = RopeAngles::at(&rope, &offsets, len, dtype)
                        .unwrap()
                        .expect("the CPU takes fast::rope's unfused path");
                    let what = format!("base {base} dims {dims} {dtype:?} rows {rows} len {len}");
                    for angles in [angles.clone(), angles.for_heads(rows, 3, len).unwrap()] {
                        let got = angles.apply(&x).unwrap();
                        assert_eq!(got.dtype(), want.dtype(), "{what}");
                        let equal = ops::array_equal(&got, &want, false).unwrap();
                        assert!(equal.item::<bool>().unwrap(), "{what}");
                    }
                }
            }
        }
    }

    // Built from a batched cache: the queries' and keys' head counts, and
    // nothing for another dtype.
    let rope = RoPE::new(16, false, 10_000.0, 1.0);
    let row = |len: i32| {
        let kv = ops::ones(&[1, 1, len, 16], Dtype::Float32).unwrap();
        (kv.clone(), kv)
    };
    let cache = BatchKvCache::merge(&[row(2), row(5)]).unwrap();
    let angles = AttentionAngles::at(&rope, &cache, [4, 1], 1, Dtype::Float32)
        .unwrap()
        .unwrap();
    let q = ops::ones(&[2, 4, 1, 16], Dtype::Float32).unwrap();
    let k = ops::ones(&[2, 1, 1, 16], Dtype::Float32).unwrap();
    let offsets = Array::from_slice(&[2, 5], &[2]).unwrap();
    let (rq, rk) = angles.apply(&q, &k).unwrap().unwrap();
    for (got, x) in [(rq, &q), (rk, &k)] {
        let want = rope.forward(x, &offsets).unwrap();
        assert!(
            ops::array_equal(&got, &want, false)
                .unwrap()
                .item::<bool>()
                .unwrap()
        );
    }
    let bf16 = |a: &Array| a.as_type(Dtype::Bfloat16).unwrap();
    assert!(angles.apply(&bf16(&q), &bf16(&k)).unwrap().is_none());

    // Built from one request's cache at its offset, for a prefill's tokens
    // and for one token, as `fast::rope` at that offset (Python's
    // `rope(x, offset=cache.offset)`).
    use mlx_vlm::models::cache::{Cache, KvCache};
    for (held, len) in [(0, 6), (9, 5), (14, 1)] {
        let mut cache = KvCache::new();
        if held > 0 {
            let kv = ops::ones(&[1, 1, held, 16], Dtype::Float32).unwrap();
            cache.update_and_fetch(&kv, &kv).unwrap();
        }
        let angles = AttentionAngles::at_offset(&rope, &cache, [4, 1], len, Dtype::Float32)
            .unwrap()
            .unwrap();
        let x = |heads: i32| {
            let n = heads * len * 16;
            ops::sin(&ops::arange(0, n, 1, Some(Dtype::Float32)).unwrap())
                .unwrap()
                .reshape(&[1, heads, len, 16])
                .unwrap()
        };
        let (q, k) = (x(4), x(1));
        let (rq, rk) = angles.apply(&q, &k).unwrap().unwrap();
        for (got, x) in [(rq, &q), (rk, &k)] {
            let want = rope.forward(x, held).unwrap();
            let equal = ops::array_equal(&got, &want, false).unwrap();
            assert!(equal.item::<bool>().unwrap(), "offset {held}, {len} tokens");
        }
    }
}
