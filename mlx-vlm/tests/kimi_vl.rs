//! Kimi-VL against Python mlx-vlm 0.7.6 (goldens of
//! `tests/fixtures/kimi_vl/gen_goldens.py`): the tiny checkpoint end to end
//! (one square image, two images (wide and tall) with a system prompt, text
//! only, one wide image, one tall image) in the Hugging Face and
//! mlx-community layouts, f32 (free-running greedy ids and text exact),
//! bf16 and 4-bit (teacher-forced ids; the 4-bit experts through
//! `gather_qmm`); the processor's input ids, grids and pixel values of
//! every image case; the stages of the one-image case (vision blocks, the
//! merged tower output, the projector, the merged embeddings, every decoder
//! layer incl. the MoE ones, the multi-head-latent-attention cache contents
//! after the prefill, the last logits); the language model alone on the
//! paths the checkpoint does not take (`gen_language.py`: one query
//! projection, plain RoPE, one expert group, top-1 routing, every group
//! kept); the image processor's downscale and padding paths
//! (`gen_processor.py`); generation with a rotating cache shorter than the
//! prompt and the ids generation stops on (`<|im_assistant|>` included, as
//! Python's processor adds it); and bad input as typed errors (router
//! settings, a config that disagrees with the weights, an image smaller
//! than a merge window, image tokens that do not match the images or
//! features, incomplete per-expert weights).
//!
//! bf16: MLX's CPU `gather_mm` takes only float32, so the bf16 goldens come
//! from Python with `SwitchLinear.__call__` multiplying in float32, as the
//! Rust port does on the CPU (see the generator).

#[path = "common/family_e2e.rs"]
#[allow(dead_code)]
mod family_e2e;
#[path = "common/siglip_weights.rs"]
mod siglip_weights;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use family_e2e::{Family, Stages, max_abs_diff};
use mlx_rs::{Array, Dtype};
use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};
use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::image::ImageSource;
use mlx_vlm::models::kimi_vl::processing_kimi_vl::KimiVLInputs;
use mlx_vlm::models::kimi_vl::{Model, ModelConfig};
use mlx_vlm::models::{PrefillArgs, VlmModel};
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::utils::LoadOptions;
use mlx_vlm::{Error, load};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kimi_vl")
}

fn goldens(variant: &str) -> HashMap<String, Array> {
    mlx_rs::io::load_safetensors(fixture_dir().join(format!("goldens/{variant}.safetensors")))
        .unwrap()
        .0
}

fn media(inputs: &GenerateInputs) -> &KimiVLInputs {
    inputs
        .media
        .as_ref()
        .and_then(|m| m.downcast_ref::<KimiVLInputs>())
        .expect("Kimi-VL inputs")
}

fn kimi(model: &dyn VlmModel) -> &Model {
    model
        .as_any()
        .downcast_ref::<Model>()
        .expect("a Kimi-VL model")
}

/// The tower's merged output as the generator records it: the channels-last
/// pixel values in the tower's dtype, every image's tokens concatenated.
fn vision(model: &dyn VlmModel, inputs: &GenerateInputs) -> Vec<Array> {
    let model = kimi(model);
    let m = media(inputs);
    let dtype = model.vision_tower.patch_embed.proj.weight.dtype();
    let pixels = m
        .pixel_values
        .transpose([0, 2, 3, 1])
        .unwrap()
        .as_type(dtype)
        .unwrap();
    let merged = model.vision_tower.forward(&pixels, &m.grid_hws).unwrap();
    vec![mlx_rs::ops::concatenate(&merged, 0).unwrap()]
}

fn projector(model: &dyn VlmModel, inputs: &GenerateInputs) -> Array {
    kimi(model).image_features(media(inputs)).unwrap()
}

fn pixel_values(inputs: &GenerateInputs) -> Array {
    media(inputs).pixel_values.clone()
}

/// Each vision block's output (on get_input_embeddings' path: float32
/// pixels) and each decoder layer's (the prompt prefilled whole with a
/// fresh cache, as the generator records it).
fn stages(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    embeds: &Array,
    _prefill: &PrefillArgs,
) -> Stages {
    let model = kimi(model);
    let m = media(inputs);
    let pixels = m.pixel_values.transpose([0, 2, 3, 1]).unwrap();
    let tower = &model.vision_tower;
    let (mut h, freqs, mask) = tower.embed(&pixels, &m.grid_hws).unwrap();
    let mut vision_blocks = Vec::new();
    for blk in &tower.blocks {
        h = blk.forward(&h, &freqs, &mask).unwrap();
        vision_blocks.push(h.clone());
    }
    let lm = &model.language_model.model;
    let mut cache = model_cache(model);
    let n = embeds.shape()[1];
    let layer_mask = cache[0].make_mask(n, None, false).unwrap();
    let mut h = embeds.clone();
    let mut layers = Vec::new();
    for (layer, c) in lm.layers.iter().zip(cache.iter_mut()) {
        h = layer.forward(&h, &layer_mask, Some(&mut **c)).unwrap();
        layers.push(h.clone());
    }
    Stages {
        vision_blocks,
        layers,
    }
}

fn model_cache(model: &Model) -> Vec<Box<dyn mlx_vlm::models::Cache>> {
    mlx_vlm::models::FamilyModel::make_cache(model, None)
}

fn family() -> Family {
    Family {
        name: "kimi_vl",
        tiny: fixtures::kimi_vl_tiny(),
        tokenizer_dir: fixtures::kimi_vl_tokenizer_dir,
        position_ids: None,
        vision,
        image_grid: None,
        pixel_values: Some(pixel_values),
        projector: Some(projector),
        stages,
        audio_stages: None,
    }
}

/// The tiny checkpoint written in `layout` and `dtype` into a temporary
/// folder, loaded.
fn load_tiny(
    layout: Layout,
    dtype: Dtype,
) -> (
    tempfile::TempDir,
    Box<dyn VlmModel>,
    mlx_vlm::processor::Processor,
) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype,
        layout,
        tokenizer_dir: Some(fixtures::kimi_vl_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::kimi_vl_tiny(), &spec).unwrap();
    let (model, processor) = load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    (tmp, model, processor)
}

crate::end_to_end_tests!(end_to_end, crate::family());

/// Every image case's grid and pixel values (square, wide, tall, two
/// images) as Python's processor makes them, and its input ids.
#[test]
fn processor_matches_python_for_square_wide_and_tall_images() {
    let g = goldens("f32");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("goldens/f32.json")).unwrap(),
    )
    .unwrap();
    let (_tmp, _model, processor) = load_tiny(Layout::HuggingFace, Dtype::Float32);
    let mut checked = 0;
    for (case, m) in meta["cases"].as_object().unwrap() {
        let images: Vec<ImageSource> = m["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| ImageSource::from(fixture_dir().join("images").join(i.as_str().unwrap())))
            .collect();
        if images.is_empty() {
            continue;
        }
        let prompt = m["formatted_prompt"].as_str().unwrap();
        let inputs = processor
            .prepare_inputs_with(
                prompt,
                PromptMedia {
                    images: &images,
                    ..PromptMedia::default()
                },
                &ProcessorOptions::default(),
            )
            .unwrap();
        let ids = inputs.input_ids.to_vec_as::<i64>().unwrap();
        let want = g[&format!("{case}.input_ids")].to_vec_as::<i64>().unwrap();
        assert_eq!(ids, want, "{case}: input ids");
        let grids: Vec<i64> = media(&inputs)
            .grid_hws
            .iter()
            .flat_map(|&(h, w)| [i64::from(h), i64::from(w)])
            .collect();
        let want = g[&format!("{case}.image_grid_hws")]
            .to_vec_as::<i64>()
            .unwrap();
        assert_eq!(grids, want, "{case}: grids");
        let diff = max_abs_diff(
            &media(&inputs).pixel_values,
            &g[&format!("{case}.pixel_values")],
        );
        eprintln!("{case}: pixel values max |diff| {diff:e}");
        // 1/255 before normalisation is at least 1/255/0.2758 after.
        assert!(diff <= 1e-6, "{case}: pixel values differ by {diff}");
        checked += 1;
    }
    assert_eq!(checked, 4, "image cases checked");
}

/// The multi-head-latent-attention cache after the one-image prefill:
/// every layer's keys (each head's non-rotary key with the shared rotary
/// key) and values, as Python's cache holds them.
#[test]
fn mla_cache_after_prefill_matches_python() {
    let g = goldens("f32");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("goldens/f32.json")).unwrap(),
    )
    .unwrap();
    let (_tmp, model, processor) = load_tiny(Layout::HuggingFace, Dtype::Float32);
    let case = &meta["cases"]["single"];
    let images: Vec<ImageSource> = vec![ImageSource::from(
        fixture_dir()
            .join("images")
            .join(case["images"][0].as_str().unwrap()),
    )];
    let inputs = processor
        .prepare_inputs(case["formatted_prompt"].as_str().unwrap(), &images)
        .unwrap();
    let features = model
        .get_input_embeddings(&inputs.input_ids, inputs.media.as_ref(), None)
        .unwrap();
    let mut cache = model.make_cache(None);
    let mut state = model.new_request_state();
    model
        .language_model(
            &inputs.input_ids,
            Some(&features.inputs_embeds),
            &mut cache,
            Some(&features.prefill),
            &mut state,
        )
        .unwrap();
    assert_eq!(cache.len(), 3);
    for (i, c) in cache.iter().enumerate() {
        // The cache's buffers grow in steps; Python's `state` is the
        // filled part.
        let filled = mlx_rs::idx![.., .., ..c.offset()];
        let state: Vec<Array> = c.state().iter().map(|a| a.index(filled).unwrap()).collect();
        for (name, got) in [("keys", &state[0]), ("values", &state[1])] {
            let want = &g[&format!("single.cache.{i}.{name}")];
            let diff = max_abs_diff(got, want);
            eprintln!("layer {i} cache {name} max |diff| {diff:e}");
            assert!(diff <= 1e-4, "layer {i} cache {name} differs by {diff}");
        }
    }
}

/// Released checkpoints hold each routed expert on its own
/// (`mlp.experts.{e}.{gate,up,down}_proj.weight`): sanitize stacks them
/// into the `switch_mlp` the tiny checkpoint holds, in expert order.
#[test]
fn sanitize_stacks_per_expert_weights() {
    let (_tmp, model, _processor) = load_tiny(Layout::HuggingFace, Dtype::Float32);
    let hf = fixtures::kimi_vl_tiny().hf_weights(Dtype::Float32).unwrap();
    let mut split: HashMap<String, Array> = HashMap::new();
    for (key, value) in &hf {
        if let Some(prefix) = key.strip_suffix(".weight")
            && let Some((layer, proj)) = prefix.split_once(".mlp.switch_mlp.")
        {
            for e in 0..value.shape()[0] {
                split.insert(
                    format!("{layer}.mlp.experts.{e}.{proj}.weight"),
                    value.index(mlx_rs::idx![e]).unwrap(),
                );
            }
        } else {
            split.insert(key.clone(), value.clone());
        }
    }
    assert!(split.len() > hf.len(), "the checkpoint has stacked experts");
    let sanitized = model.sanitize(split).unwrap();
    let stacked = "language_model.model.layers.1.mlp.switch_mlp.down_proj.weight";
    let diff = max_abs_diff(&sanitized[stacked], &hf[stacked]);
    assert_eq!(diff, 0.0, "{stacked} restacked");
    assert!(!sanitized.keys().any(|k| k.contains(".experts.")));

    // One expert missing is a typed error naming it.
    let mut broken = HashMap::new();
    for (key, value) in &hf {
        if let Some(prefix) = key.strip_suffix(".weight")
            && let Some((layer, proj)) = prefix.split_once(".mlp.switch_mlp.")
        {
            for e in 0..value.shape()[0] - 1 {
                broken.insert(
                    format!("{layer}.mlp.experts.{e}.{proj}.weight"),
                    value.index(mlx_rs::idx![e]).unwrap(),
                );
            }
        }
    }
    let err = model.sanitize(broken).unwrap_err();
    assert!(
        matches!(&err, Error::Weights { path, .. } if path.contains("experts.7")),
        "{err}"
    );
}

fn config_with(edit: impl FnOnce(&mut serde_json::Value)) -> mlx_vlm::Result<ModelConfig> {
    let mut config = fixtures::kimi_vl_tiny().config;
    edit(&mut config);
    ModelConfig::from_map(config.as_object().unwrap().clone(), "config.json")
}

/// Router settings that do not fit are typed configuration errors naming
/// the key.
#[test]
fn router_settings_that_do_not_fit_are_typed_errors() {
    assert!(config_with(|_| {}).is_ok());
    let cases: [(&str, serde_json::Value, &str); 5] = [
        ("n_group", 3.into(), "n_group"),
        ("topk_group", 3.into(), "topk_group"),
        ("num_experts_per_tok", 5.into(), "num_experts_per_tok"),
        ("n_group", 8.into(), "at least two"),
        ("topk_method", "greedy".into(), "noaux_tc"),
    ];
    for (key, value, needle) in cases {
        let err = config_with(|c| c["text_config"][key] = value.clone()).unwrap_err();
        assert!(
            matches!(&err, Error::Config { message, .. } if message.contains(needle)),
            "{key} = {value}: {err}"
        );
    }
    let err = config_with(|c| {
        c["text_config"]["num_experts_per_tok"] = serde_json::Value::Null;
    })
    .unwrap_err();
    assert!(err.to_string().contains("num_experts_per_tok"), "{err}");
    let err = config_with(|c| c["vision_config"]["num_heads"] = 3.into()).unwrap_err();
    assert!(err.to_string().contains("num_heads"), "{err}");
}

/// An image smaller than one merge window, and a prompt whose image tokens
/// do not match the images, are typed errors; so are features that do not
/// match the prompt's image tokens.
#[test]
fn bad_images_and_prompts_are_typed_errors() {
    let (_tmp, model, processor) = load_tiny(Layout::HuggingFace, Dtype::Float32);
    let tiny = image::RgbImage::from_pixel(20, 40, image::Rgb([10, 20, 30]));
    let mut png = Vec::new();
    tiny.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let prompt = processor
        .apply_chat_template("Describe this image.", None, 1)
        .unwrap();
    let err = processor
        .prepare_inputs(&prompt, &[ImageSource::Bytes(png)])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Image { message, .. } if message.contains("20x40")),
        "{err}"
    );

    let square = ImageSource::from(fixture_dir().join("images/gradient_90x90.png"));
    let err = processor
        .prepare_inputs(&prompt, &[square.clone(), square.clone()])
        .unwrap_err();
    assert!(matches!(err, Error::ImageTokenMismatch { .. }), "{err}");

    // Features for 9 tokens against a prompt that lost one of them.
    let inputs = processor.prepare_inputs(&prompt, &[square]).unwrap();
    let mut ids = inputs.input_ids.to_vec_as::<i32>().unwrap();
    let pad = ids.iter().position(|&t| t == 481).unwrap();
    ids.remove(pad);
    let n = ids.len() as i32;
    let ids = Array::from_vec_shaped(ids, &[1, n]).unwrap();
    let err = model
        .get_input_embeddings(&ids, inputs.media.as_ref(), None)
        .unwrap_err();
    assert!(
        matches!(&err, Error::ImageTokenMismatch { message } if message.contains("8 image tokens")),
        "{err}"
    );
}

/// The language model on `gen_language.py`'s configs: the prompt's logits
/// without a cache, and with one the prefill's last logits and 4 greedy
/// decode steps (ids exact, logits within 1e-4).
#[test]
fn language_model_paths_match_python() {
    use mlx_vlm::models::kimi_vl::config::TextConfig;
    use mlx_vlm::models::kimi_vl::language::LanguageModel;

    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("language.json")).unwrap(),
    )
    .unwrap();
    let g: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(fixture_dir().join("language.safetensors"))
            .unwrap()
            .0;
    let prompt: Vec<i32> = serde_json::from_value(meta["prompt"].clone()).unwrap();
    let n = prompt.len() as i32;
    let ids = Array::from_vec_shaped(prompt, &[1, n]).unwrap();
    let configs = meta["configs"].as_object().unwrap();
    assert_eq!(configs.len(), 2);
    for (name, c) in configs {
        let text = c["text_config"].as_object().unwrap();
        let config = TextConfig::from_map(text, "language.json").unwrap();
        let mut model = LanguageModel::new(&config).unwrap();
        siglip_weights::load_tiny_weights(&mut model);
        let logits = model.forward(&ids, None, &mut [], None).unwrap();
        let logits = logits.index(mlx_rs::idx![0]).unwrap();
        let diff = max_abs_diff(&logits, &g[&format!("{name}.logits")]);
        eprintln!("{name}: prompt logits max |diff| {diff:e}");
        assert!(diff <= 1e-4, "{name}: prompt logits differ by {diff}");

        let mut cache = mlx_vlm::models::cache::make_prompt_cache(model.layers().len(), None);
        let last = model.forward(&ids, None, &mut cache, None).unwrap();
        let last = last.index(mlx_rs::idx![0, -1]).unwrap();
        let diff = max_abs_diff(&last, &g[&format!("{name}.last_logits")]);
        assert!(diff <= 1e-4, "{name}: prefill logits differ by {diff}");
        let argmax = |a: &Array| {
            mlx_rs::ops::argmax(a, None, false)
                .unwrap()
                .item_as::<i64>()
                .unwrap()
        };
        let mut token = argmax(&last);
        let (mut out, mut steps) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            out.push(token);
            let t = Array::from_slice(&[token as i32], &[1, 1]).unwrap();
            let logits = model.forward(&t, None, &mut cache, None).unwrap();
            let logits = logits.index(mlx_rs::idx![0, -1]).unwrap();
            token = argmax(&logits);
            steps.push(logits);
        }
        let want: Vec<i64> = serde_json::from_value(c["ids"].clone()).unwrap();
        assert_eq!(out, want, "{name}: greedy ids");
        let steps = mlx_rs::ops::stack(&steps, 0).unwrap();
        let diff = max_abs_diff(&steps, &g[&format!("{name}.step_logits")]);
        eprintln!("{name}: decode logits max |diff| {diff:e}");
        assert!(diff <= 1e-4, "{name}: decode logits differ by {diff}");
    }
}

/// The image processor's downscale (over `in_token_limit`, Pillow's
/// bicubic) and padding (`pad_input`) paths give Python's grids and pixel
/// values (`gen_processor.py`).
#[test]
fn image_processor_resize_and_pad_match_python() {
    use mlx_vlm::models::kimi_vl::processing_kimi_vl::KimiVLImageProcessor;

    let g: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(fixture_dir().join("processor.safetensors"))
            .unwrap()
            .0;
    let cases = [
        (
            "resize",
            "gradient_120x90.png",
            KimiVLImageProcessor {
                in_token_limit: 16,
                ..Default::default()
            },
        ),
        (
            "pad",
            "gradient_40x70.png",
            KimiVLImageProcessor {
                pad_input: true,
                ..Default::default()
            },
        ),
    ];
    for (name, file, processor) in cases {
        let source = ImageSource::from(fixture_dir().join("images").join(file));
        let image = mlx_vlm::image::load_image(&source).unwrap();
        let out = processor.preprocess(&[image], &[file.to_string()]).unwrap();
        let grid: Vec<i64> = out
            .grid_hws
            .iter()
            .flat_map(|&(h, w)| [i64::from(h), i64::from(w)])
            .collect();
        let want = g[&format!("{name}.image_grid_hws")]
            .to_vec_as::<i64>()
            .unwrap();
        assert_eq!(grid, want, "{name}: grid");
        let diff = max_abs_diff(&out.pixel_values, &g[&format!("{name}.pixel_values")]);
        eprintln!("{name}: pixel values max |diff| {diff:e}");
        assert!(diff <= 1e-6, "{name}: pixel values differ by {diff}");
    }
}

/// Generation stops on the ids Python's stopping criteria hold after
/// `load` (`goldens/eos.json`): the config's and tokenizer's EOS, then the
/// processor's `additional_eos_token_ids` (`<|im_assistant|>`).
#[test]
fn eos_ids_include_the_processors_additional_ones() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("goldens/eos.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<u32> = serde_json::from_value(golden["eos_token_ids"].clone()).unwrap();
    let (_tmp, _model, processor) = load_tiny(Layout::HuggingFace, Dtype::Float32);
    assert_eq!(processor.eos_token_ids(), want.as_slice());
}

/// A `config.json` whose vocabulary or expert count disagrees with the
/// weights is refused before the model is built, naming the tensor and the
/// key.
#[test]
fn config_that_disagrees_with_the_weights_is_a_typed_error() {
    for (key, value, needle) in [
        ("vocab_size", 500, "text_config.vocab_size 500"),
        ("n_routed_experts", 4, "text_config.n_routed_experts 4"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut tiny = fixtures::kimi_vl_tiny();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::kimi_vl_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &tiny, &spec).unwrap();
        tiny.config["text_config"][key] = value.into();
        std::fs::write(
            tmp.path().join("config.json"),
            serde_json::to_string(&tiny.config).unwrap(),
        )
        .unwrap();
        let err = load(tmp.path().to_str().unwrap(), &LoadOptions::default())
            .err()
            .expect("the mismatched config loads");
        assert!(
            matches!(&err, Error::Weights { message, .. } if message.contains(needle)),
            "{key}: {err}"
        );
    }
}

/// With `max_kv_size` 16 (rotating caches shorter than the 39-token
/// prompt, wrapping in the prefill and at every step) greedy generation
/// gives Python's ids (`goldens/rotating.json`).
#[test]
fn rotating_cache_generation_matches_python() {
    use mlx_vlm::generate::{GenerateParams, stream_generate};

    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("goldens/rotating.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<u32> = serde_json::from_value(golden["generated_ids"].clone()).unwrap();
    let (_tmp, model, processor) = load_tiny(Layout::HuggingFace, Dtype::Float32);
    let image = ImageSource::from(
        fixture_dir()
            .join("images")
            .join(golden["images"][0].as_str().unwrap()),
    );
    let prompt = processor
        .apply_chat_template(golden["prompt"].as_str().unwrap(), None, 1)
        .unwrap();
    let inputs = processor.prepare_inputs(&prompt, &[image]).unwrap();
    let params = GenerateParams {
        max_tokens: want.len(),
        max_kv_size: Some(16),
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
