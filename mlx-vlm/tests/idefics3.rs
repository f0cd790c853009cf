//! Idefics3 and SmolVLM end to end against Python mlx-vlm 0.7.6 (goldens
//! of `tests/fixtures/idefics3/gen_goldens.py`, tiny checkpoints of
//! `mlx_vlm::fixtures::{idefics3_tiny, smolvlm_tiny}` with the small
//! SmolLM-style tokenizer): one image split into tiles plus the global
//! view, two images with a system prompt, text only, a wide and a tall
//! image; input ids exact, f32 free-running greedy ids and text exact,
//! bf16 and 4-bit teacher-forced, stage goldens of the one-image case
//! (pixel values, vision blocks, vision and connector outputs, merged
//! embeddings, decoder layers, last logits), in the Hugging Face and
//! mlx-community layouts. Then, against `goldens/edge.*`: the pixel mask,
//! a 1 x 1 image (tiled: Python has no minimum size), `<image>` typed into
//! the prompt (text-only: tokenized as is; next to an image: a typed
//! error, Python's `ValueError`), image tokens not matching the features
//! (a typed error), the stop tokens, splitting off and the other ways
//! settings are read, chunked prefill, and padded or partly masked tiles
//! through the model.

#[path = "common/family_e2e.rs"]
#[allow(dead_code)]
mod family_e2e;
#[path = "common/idefics3_family.rs"]
#[allow(dead_code)]
mod idefics3_family;

crate::end_to_end_tests!(idefics3_end_to_end, crate::idefics3_family::idefics3());

crate::end_to_end_tests!(smolvlm_end_to_end, crate::idefics3_family::smolvlm());

/// Processor and model edge cases against `goldens/edge.*` (and the
/// one-image case's pixel mask), for both families.
mod edge_cases {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use mlx_rs::Array;
    use mlx_vlm::fixtures::{self, CheckpointSpec, TinyModel};
    use mlx_vlm::image::ImageSource;
    use mlx_vlm::models::VlmModel;
    use mlx_vlm::processor::Processor;
    use serde_json::Value;

    use crate::family_e2e::max_abs_diff;
    use crate::idefics3_family::inputs;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn goldens(name: &str, file: &str) -> (HashMap<String, Array>, Value) {
        let dir = fixture(name).join("goldens");
        let g = mlx_rs::io::load_safetensors(dir.join(format!("{file}.safetensors")))
            .unwrap()
            .0;
        let meta = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{file}.json"))).unwrap(),
        )
        .unwrap();
        (g, meta)
    }

    fn load(tiny: &TinyModel) -> (tempfile::TempDir, Box<dyn VlmModel>, Processor) {
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::smollm_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), tiny, &spec).unwrap();
        let (model, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        (tmp, model, processor)
    }

    fn families() -> [(&'static str, TinyModel); 2] {
        [
            ("idefics3", fixtures::idefics3_tiny()),
            ("smolvlm", fixtures::smolvlm_tiny()),
        ]
    }

    fn image(name: &str, file: &str) -> ImageSource {
        fixture(name).join("images").join(file).into()
    }

    fn ints(a: &Array) -> Vec<i64> {
        a.to_vec_as::<i64>().unwrap()
    }

    /// The one-image case's pixel mask is Python's (all ones: every tile
    /// is whole).
    #[test]
    fn pixel_attention_mask_is_pythons() {
        for (name, tiny) in families() {
            let (g, meta) = goldens(name, "f32");
            let (_tmp, _, processor) = load(&tiny);
            let case = &meta["cases"]["single"];
            let file = case["images"][0].as_str().unwrap();
            let prompt = processor
                .apply_chat_template(case["prompt"].as_str().unwrap(), None, 1)
                .unwrap();
            let got = processor
                .prepare_inputs(&prompt, &[image(name, file)])
                .unwrap();
            assert_eq!(
                ints(&inputs(&got).pixel_attention_mask),
                ints(&g["single.pixel_attention_mask"]),
                "{name}"
            );
            assert_eq!(
                inputs(&got).pixel_attention_mask.shape(),
                g["single.pixel_attention_mask"].shape(),
                "{name}"
            );
        }
    }

    /// A 1 x 1 image has no minimum size in Python: it is upsampled to
    /// size.longest_edge and tiled (Idefics3: 4 x 4 tiles and the global
    /// view); the same ids, pixels and mask here.
    #[test]
    fn one_pixel_image_is_tiled_as_python_does() {
        for (name, tiny) in families() {
            let (g, meta) = goldens(name, "edge");
            let (_tmp, _, processor) = load(&tiny);
            let prompt = processor
                .apply_chat_template(meta["tiny"]["prompt"].as_str().unwrap(), None, 1)
                .unwrap();
            assert_eq!(prompt, meta["tiny"]["formatted_prompt"].as_str().unwrap());
            let got = processor
                .prepare_inputs(&prompt, &[image(name, "pixel_1x1.png")])
                .unwrap();
            assert_eq!(ints(&got.input_ids), ints(&g["tiny.input_ids"]), "{name}");
            let diff = max_abs_diff(&inputs(&got).pixel_values, &g["tiny.pixel_values"]);
            assert!(diff <= 1e-6, "{name}: pixel values differ by {diff}");
            assert_eq!(
                ints(&inputs(&got).pixel_attention_mask),
                ints(&g["tiny.pixel_attention_mask"]),
                "{name}"
            );
        }
    }

    /// `<image>` typed into a text-only prompt: Python tokenizes it as the
    /// image token and merges nothing (no pixel values); the same here.
    #[test]
    fn typed_image_token_without_images_is_text() {
        for (name, tiny) in families() {
            let (g, meta) = goldens(name, "edge");
            let (_tmp, model, processor) = load(&tiny);
            let prompt = processor
                .apply_chat_template(meta["typed"]["prompt"].as_str().unwrap(), None, 0)
                .unwrap();
            assert_eq!(prompt, meta["typed"]["formatted_prompt"].as_str().unwrap());
            let got = processor.prepare_inputs(&prompt, &[]).unwrap();
            assert_eq!(ints(&got.input_ids), ints(&g["typed.input_ids"]), "{name}");
            assert!(got.media.is_none());
            model
                .get_input_embeddings(&got.input_ids, None, None)
                .unwrap();
        }
    }

    /// `<image>` typed next to an image: Python raises a `ValueError`
    /// (2 image tokens, 1 image); here an `ImageTokenMismatch`.
    #[test]
    fn typed_image_token_next_to_an_image_is_a_typed_error() {
        for (name, tiny) in families() {
            let (_, meta) = goldens(name, "edge");
            let case = &meta["typed_with_image"];
            let python = case["python_error"].as_str().unwrap();
            assert!(
                python.contains("Found 2") || python.contains("[2]"),
                "{python}"
            );
            let (_tmp, _, processor) = load(&tiny);
            let prompt = processor
                .apply_chat_template(case["prompt"].as_str().unwrap(), None, 1)
                .unwrap();
            let err = processor
                .prepare_inputs(&prompt, &[image(name, "pixel_1x1.png")])
                .expect_err("two <image>, one image");
            assert!(
                matches!(err, mlx_vlm::Error::ImageTokenMismatch { .. }),
                "{name}: {err}"
            );
            assert!(
                err.to_string().contains("[2]") || err.to_string().contains("found 2"),
                "{err}"
            );
        }
    }

    /// Image tokens that do not match the features (one dropped from the
    /// prompt) are an `ImageTokenMismatch` naming both counts (Python: a
    /// `ValueError` with the same counts).
    #[test]
    fn image_tokens_not_matching_features_is_a_typed_error() {
        for (name, tiny) in families() {
            let (_tmp, model, processor) = load(&tiny);
            let prompt = processor.apply_chat_template("Hi", None, 1).unwrap();
            let got = processor
                .prepare_inputs(&prompt, &[image(name, "pixel_1x1.png")])
                .unwrap();
            let mut ids: Vec<i32> = got.input_ids.to_vec_as().unwrap();
            let image_token = 4;
            let at = ids.iter().position(|&t| t == image_token).unwrap();
            let tokens = ids.iter().filter(|&&t| t == image_token).count();
            ids.remove(at);
            let n = ids.len() as i32;
            let ids = Array::from_slice(&ids, &[1, n]).unwrap();
            let err = model
                .get_input_embeddings(&ids, got.media.as_ref(), None)
                .expect_err("one image token short");
            assert!(
                matches!(err, mlx_vlm::Error::ImageTokenMismatch { .. }),
                "{name}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("tokens: {}", tokens - 1))
                    && message.contains(&format!("features {tokens}")),
                "{name}: {message}"
            );
        }
    }

    /// With neither the tokenizer's EOS nor the generation config naming
    /// `<end_of_utterance>`, Idefics3's processor still stops on it
    /// (Python's `additional_eos_token_ids`), SmolVLM's does not: the stop
    /// tokens are Python's.
    #[test]
    fn stop_tokens_are_pythons() {
        for (name, tiny) in families() {
            let (_, meta) = goldens(name, "edge");
            let tmp = tempfile::tempdir().unwrap();
            let spec = CheckpointSpec {
                tokenizer_dir: Some(fixtures::smollm_tokenizer_dir()),
                ..Default::default()
            };
            fixtures::write_tiny_checkpoint(tmp.path(), &tiny, &spec).unwrap();
            std::fs::write(
                tmp.path().join("generation_config.json"),
                r#"{"eos_token_id": [2]}"#,
            )
            .unwrap();
            let file = tmp.path().join("tokenizer_config.json");
            let mut tok: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            tok["eos_token"] = "<|im_end|>".into();
            std::fs::write(&file, tok.to_string()).unwrap();
            let (_, processor) =
                mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
            let mut got = processor.eos_token_ids().to_vec();
            got.sort_unstable();
            let want: Vec<u32> = serde_json::from_value(meta["stop_tokens"].clone()).unwrap();
            assert_eq!(got, want, "{name}");
        }
    }

    /// Image splitting off in `preprocessor_config.json` (one tile); an
    /// `image_processor` object in `processor_config.json` (which
    /// transformers 5 takes whole in place of `preprocessor_config.json`);
    /// a named `global_image_token` in the tokenizer's
    /// `extra_special_tokens` (SmolVLM's processor uses it, Idefics3's has
    /// its tokens fixed): Python's ids and pixels.
    #[test]
    fn processor_settings_are_read_as_python_reads_them() {
        for (name, tiny) in families() {
            let (g, meta) = goldens(name, "edge");
            for variant in ["unsplit", "override", "named"] {
                let case = &meta[variant];
                let tmp = tempfile::tempdir().unwrap();
                let spec = CheckpointSpec {
                    tokenizer_dir: Some(fixtures::smollm_tokenizer_dir()),
                    ..Default::default()
                };
                fixtures::write_tiny_checkpoint(tmp.path(), &tiny, &spec).unwrap();
                let file = tmp.path().join(case["edit"].as_str().unwrap());
                let mut cfg: Value =
                    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                for (key, value) in case["setting"].as_object().unwrap() {
                    cfg[key] = value.clone();
                }
                std::fs::write(&file, cfg.to_string()).unwrap();
                let (_, processor) =
                    mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
                let prompt = processor
                    .apply_chat_template(case["prompt"].as_str().unwrap(), None, 1)
                    .unwrap();
                let image_file = case["images"][0].as_str().unwrap();
                let got = processor
                    .prepare_inputs(&prompt, &[image(name, image_file)])
                    .unwrap();
                let what = format!("{name} {variant}");
                assert_eq!(
                    ints(&got.input_ids),
                    ints(&g[&format!("{variant}.input_ids")]),
                    "{what}"
                );
                let diff = max_abs_diff(
                    &inputs(&got).pixel_values,
                    &g[&format!("{variant}.pixel_values")],
                );
                assert!(diff <= 1e-6, "{what}: pixel values differ by {diff}");
            }
        }
    }

    /// Prefilled in steps of 7 tokens (the tiles' tokens split across
    /// steps, each step's causal mask offset by the cache), the one-image
    /// prompt gives Python's greedy ids for the same steps.
    #[test]
    fn chunked_prefill_gives_pythons_ids() {
        use mlx_vlm::generate::{GenerateParams, stream_generate};

        for (name, tiny) in families() {
            let (_, meta) = goldens(name, "edge");
            let case = &meta["chunked"];
            let want: Vec<u32> = serde_json::from_value(case["generated_ids"].clone()).unwrap();
            let (_tmp, model, processor) = load(&tiny);
            let prompt = processor
                .apply_chat_template(case["prompt"].as_str().unwrap(), None, 1)
                .unwrap();
            let file = case["images"][0].as_str().unwrap();
            let inputs = processor
                .prepare_inputs(&prompt, &[image(name, file)])
                .unwrap();
            let params = GenerateParams {
                max_tokens: want.len(),
                prefill_step_size: Some(case["prefill_step_size"].as_i64().unwrap() as i32),
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

    /// Padding the processor never makes for one prompt, through the
    /// model: a tile whose pixel mask keeps only its top-left 8 x 12 pixels
    /// (positions bucketed from a 2 x 3 patch grid, the others' position
    /// embeddings zeroed) and an all-zero tile (dropped as padding): the
    /// merged embeddings are Python's.
    #[test]
    fn padded_and_masked_tiles_merge_as_python_does() {
        use mlx_vlm::models::ModelInputs;
        use mlx_vlm::models::idefics3::processing_idefics3::Idefics3Inputs;

        for (name, tiny) in families() {
            let (g, _) = goldens(name, "edge");
            let (_tmp, model, _) = load(&tiny);
            let t = tiny.config["vision_config"]["image_size"].as_i64().unwrap() as i32;
            let shape = [1, 3, 3, t, t];
            let mut pixels = fixtures::tensor_values("pixel_values", &shape);
            let plane = (3 * t * t) as usize;
            pixels[2 * plane..].fill(0.0);
            let mut mask = vec![0i32; (3 * t * t) as usize];
            let side = t as usize;
            mask[..side * side].fill(1);
            for y in 0..8 {
                let row = side * side + y * side;
                mask[row..row + 12].fill(1);
            }
            let inputs = Idefics3Inputs {
                pixel_values: Array::from_slice(&pixels, &shape).unwrap(),
                pixel_attention_mask: Array::from_slice(&mask, &[1, 3, t, t]).unwrap(),
            };
            let media = ModelInputs::new(inputs, Vec::new());
            let got = model
                .get_input_embeddings(&g["padded.input_ids"], Some(&media), None)
                .unwrap();
            let diff = max_abs_diff(&got.inputs_embeds, &g["padded.inputs_embeds"]);
            eprintln!("{name}: padded tiles' merged embeddings max |diff| {diff:e}");
            assert!(diff <= 1e-5, "{name}: merged embeddings differ by {diff}");
        }
    }
}

/// SmolVLM-Instruct's SigLIP tiles (384 pixels in patches of 14: 27 whole
/// patches a side, floored as Python's convolution and mask arithmetic
/// floor them) with pixel shuffle by 3 are accepted: 81 tokens a tile;
/// by 2 (27 is odd) they are a typed error naming the settings.
#[test]
fn tiles_with_a_partial_patch_are_floored_as_python_does() {
    use mlx_vlm::models::idefics3::config::ModelConfig;

    let config = |scale_factor: i32| {
        let mut root = mlx_vlm::fixtures::smolvlm_tiny().config;
        root["scale_factor"] = serde_json::json!(scale_factor);
        root["vision_config"]["image_size"] = serde_json::json!(384);
        root["vision_config"]["patch_size"] = serde_json::json!(14);
        let serde_json::Value::Object(map) = root else {
            unreachable!("the tiny config is an object")
        };
        ModelConfig::from_map(map, "config.json")
    };
    assert_eq!(config(3).unwrap().image_seq_len(), 81);
    let message = config(2).unwrap_err().to_string();
    assert!(
        message.contains("image_size 384") && message.contains("scale_factor 2"),
        "{message}"
    );
}
