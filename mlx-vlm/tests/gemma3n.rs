//! Gemma 3n against Python mlx-vlm 0.7.6, configuration and language model
//! (goldens of `tests/fixtures/gemma3n/gen_language.py`): a tiny text config
//! of 6 layers mixing sliding and global attention, the last 2 sharing the
//! KV of earlier layers, 4 AltUp streams with clipped coefficients, Laurel
//! blocks, per-layer inputs, activation sparsity on 2 layers and a sliding
//! window (4) shorter than the 11-token prompt. Checked: the per-layer
//! inputs and their projection, every decoder layer's output and the logits
//! without a cache; with the model's caches the prefill's last logits, the
//! greedy ids and each decode step's logits, prefilled whole, in chunks, and
//! in chunks from embeddings with given per-layer inputs; bfloat16; 8-bit
//! quantized logits and keys; `sanitize`; the small functions; the
//! configuration: transformers' `Gemma3nConfig()` read as Python reads it
//! (`config.json`), and the typed errors of bad configs and calls.

#[path = "common/family_e2e.rs"]
#[allow(dead_code)]
mod family_e2e;
#[path = "common/gemma_family.rs"]
#[allow(dead_code)]
mod gemma_family;
#[path = "common/siglip_weights.rs"]
mod siglip_weights;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::nn::{ItemMut, ModuleExt};
use mlx_rs::ops::QuantizationMode;
use mlx_rs::{Array, Dtype, idx, ops};
use mlx_vlm::Error;
use mlx_vlm::models::Cache;
use mlx_vlm::models::gemma3n::config::{ModelConfig, TextConfig};
use mlx_vlm::models::gemma3n::language::{Gemma3nRMSNorm, LanguageModel, gelu_topk};
use serde_json::{Value, json};

const F32_TOLERANCE: f32 = 1e-4;
/// bfloat16 keeps 8 significant bits: logits of magnitude ~5 are exact to
/// ~0.03; a reordered reduction may move them by one such step.
const BF16_TOLERANCE: f32 = 0.07;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3n")
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("language.json")).unwrap())
        .unwrap()
}

fn goldens() -> HashMap<String, Array> {
    mlx_rs::io::load_safetensors(fixtures().join("language.safetensors"))
        .unwrap()
        .0
}

fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let a = a.as_type(Dtype::Float32).unwrap();
    let b = b.as_type(Dtype::Float32).unwrap();
    ops::max(
        &ops::abs(&ops::subtract(&a, &b).unwrap()).unwrap(),
        None,
        false,
    )
    .unwrap()
    .item::<f32>()
    .unwrap()
}

fn assert_close(what: &str, got: &Array, want: &Array, tolerance: f32) -> f32 {
    let diff = max_abs_diff(got, want);
    assert!(
        diff <= tolerance,
        "{what} differs by {diff} (> {tolerance})"
    );
    diff
}

fn argmax(logits: &Array) -> u32 {
    ops::argmax(logits, None, false)
        .unwrap()
        .item::<u32>()
        .unwrap()
}

fn text_config(meta: &Value) -> TextConfig {
    TextConfig::from_map(meta["text_config"].as_object().unwrap(), "language.json").unwrap()
}

/// The generator's model: every parameter `tensor_values` of its key, cast
/// to `dtype` as Python's `set_dtype` (every parameter is floating point).
fn model(meta: &Value, dtype: Dtype) -> LanguageModel {
    let mut model = LanguageModel::new(&text_config(meta)).unwrap();
    siglip_weights::load_tiny_weights(&mut model);
    model.apply_to_modules(&mut |_, m| {
        m.items_mut(&mut |_, item| {
            if let ItemMut::Param(p) = item {
                let cast = p.as_type(dtype).unwrap();
                p.set(cast);
            }
        })
    });
    model
}

fn prompt(meta: &Value) -> Array {
    let ids: Vec<i32> = serde_json::from_value(meta["prompt"].clone()).unwrap();
    let n = ids.len() as i32;
    Array::from_vec_shaped(ids, &[1, n]).unwrap()
}

fn token(id: u32) -> Array {
    Array::from_vec_shaped(vec![id as i32], &[1, 1]).unwrap()
}

/// Prefills `ids` in chunks of `chunk` (from the scaled embeddings with the
/// whole prompt's per-layer inputs when `from_embeds`), returning the last
/// logits.
fn prefill(
    model: &LanguageModel,
    ids: &Array,
    chunk: i32,
    from_embeds: bool,
    cache: &mut [Box<dyn Cache>],
) -> Array {
    let n = ids.shape()[1];
    let inner = &model.model;
    let embeds = ops::multiply(
        inner.embed_tokens.forward(ids).unwrap(),
        f64::from(model.config.hidden_size).sqrt(),
    )
    .unwrap();
    let per_layer_inputs = inner.get_per_layer_inputs(ids).unwrap();
    let mut logits = None;
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let part = ids.index(idx![.., start..end]).unwrap();
        logits = Some(if from_embeds {
            let part_embeds = embeds.index(idx![.., start..end]).unwrap();
            model
                .forward(
                    Some(&part),
                    Some(&part_embeds),
                    None,
                    cache,
                    Some(&per_layer_inputs),
                )
                .unwrap()
        } else {
            model.forward(Some(&part), None, None, cache, None).unwrap()
        });
        start = end;
    }
    logits.unwrap().index(idx![0, -1]).unwrap()
}

#[test]
fn per_layer_inputs_and_layer_outputs_match_python() {
    let meta = meta();
    let g = goldens();
    let model = model(&meta, Dtype::Float32);
    let ids = prompt(&meta);
    let inner = &model.model;

    let per_layer_inputs = inner.get_per_layer_inputs(&ids).unwrap();
    assert_close(
        "per-layer inputs",
        &per_layer_inputs,
        &g["per_layer_inputs"],
        F32_TOLERANCE,
    );
    let embeds = ops::multiply(
        inner.embed_tokens.forward(&ids).unwrap(),
        f64::from(model.config.hidden_size).sqrt(),
    )
    .unwrap();
    assert_close(
        "projected per-layer inputs",
        &inner
            .project_per_layer_inputs(&embeds, &per_layer_inputs)
            .unwrap(),
        &g["projected_per_layer_inputs"],
        F32_TOLERANCE,
    );

    let (hidden, layers) = inner
        .forward_with_layer_outputs(Some(&ids), None, None, &mut [], None)
        .unwrap();
    assert_eq!(layers.len(), 6);
    for (i, out) in layers.iter().enumerate() {
        let diff = assert_close(
            &format!("layer {i}"),
            out,
            &g[&format!("layer.{i}")],
            F32_TOLERANCE,
        );
        eprintln!("layer {i}: max |diff| {diff:e}");
    }
    let diff = assert_close(
        "prompt logits",
        &model.logits(&hidden).unwrap(),
        &g["logits"],
        F32_TOLERANCE,
    );
    eprintln!("prompt logits: max |diff| {diff:e}");
    let direct = model
        .forward(Some(&ids), None, None, &mut [], None)
        .unwrap();
    assert_close("forward logits", &direct, &g["logits"], F32_TOLERANCE);
}

#[test]
fn generation_with_shared_kv_caches_matches_python() {
    let meta = meta();
    let g = goldens();
    let model = model(&meta, Dtype::Float32);
    let ids = prompt(&meta);
    let n = ids.shape()[1];
    let chunk = meta["chunk"].as_i64().unwrap() as i32;
    for (name, chunk, from_embeds) in [
        ("whole", n, false),
        ("chunked", chunk, false),
        ("embeds_chunked", chunk, true),
    ] {
        let mut cache = model.make_cache();
        assert_eq!(
            cache.len() as u64,
            meta[format!("{name}.caches")].as_u64().unwrap(),
            "{name}: one cache per layer keeping its own KV"
        );
        let last = prefill(&model, &ids, chunk, from_embeds, &mut cache);
        let diff = assert_close(
            &format!("{name}: prefill logits"),
            &last,
            &g[&format!("{name}.last_logits")],
            F32_TOLERANCE,
        );
        eprintln!("{name}: prefill max |diff| {diff:e}");
        let want: Vec<u32> = serde_json::from_value(meta[format!("{name}.ids")].clone()).unwrap();
        let steps = &g[&format!("{name}.step_logits")];
        let mut next = argmax(&last);
        let mut got = Vec::new();
        let mut worst = 0f32;
        for i in 0..want.len() {
            got.push(next);
            let logits = model
                .forward(Some(&token(next)), None, None, &mut cache, None)
                .unwrap()
                .index(idx![0, -1])
                .unwrap();
            worst = worst.max(assert_close(
                &format!("{name}: decode step {i} logits"),
                &logits,
                &steps.index(idx![i as i32]).unwrap(),
                F32_TOLERANCE,
            ));
            next = argmax(&logits);
        }
        assert_eq!(got, want, "{name}: greedy ids");
        eprintln!("{name}: decode max |diff| {worst:e}");
    }
}

#[test]
fn bfloat16_matches_python() {
    let meta = meta();
    let g = goldens();
    let model = model(&meta, Dtype::Bfloat16);
    let ids = prompt(&meta);
    let logits = model
        .forward(Some(&ids), None, None, &mut [], None)
        .unwrap();
    assert_eq!(logits.dtype(), Dtype::Bfloat16);
    let diff = assert_close(
        "bf16 prompt logits",
        &logits,
        &g["bf16.logits"],
        BF16_TOLERANCE,
    );
    eprintln!("bf16 prompt logits: max |diff| {diff:e}");

    let mut cache = model.make_cache();
    let last = prefill(&model, &ids, ids.shape()[1], false, &mut cache);
    let diff = assert_close(
        "bf16 prefill logits",
        &last,
        &g["bf16.whole.last_logits"],
        BF16_TOLERANCE,
    );
    eprintln!("bf16 prefill: max |diff| {diff:e}");
    // Python's float32 greedy ids, so that a near tie cannot fork the runs.
    let forced: Vec<u32> = serde_json::from_value(meta["whole.ids"].clone()).unwrap();
    let steps = &g["bf16.whole.step_logits"];
    let mut worst = 0f32;
    for (i, id) in forced.into_iter().enumerate() {
        let logits = model
            .forward(Some(&token(id)), None, None, &mut cache, None)
            .unwrap()
            .index(idx![0, -1])
            .unwrap();
        worst = worst.max(assert_close(
            &format!("bf16 decode step {i}"),
            &logits,
            &steps.index(idx![i as i32]).unwrap(),
            BF16_TOLERANCE,
        ));
    }
    eprintln!("bf16 decode: max |diff| {worst:e}");
}

#[test]
fn quantized_model_keys_and_logits_match_python() {
    let meta = meta();
    let g = goldens();
    let mut model = model(&meta, Dtype::Float32);
    let expected_keys: Vec<String> = serde_json::from_value(meta["keys"].clone()).unwrap();
    assert_eq!(
        model.parameters().into_keys().collect::<Vec<_>>(),
        expected_keys
    );
    let group_size = meta["q8"]["group_size"].as_i64().unwrap() as i32;
    let bits = meta["q8"]["bits"].as_i64().unwrap() as i32;
    mlx_rs::nn::quantize(
        &mut model,
        Some(group_size),
        Some(bits),
        QuantizationMode::Affine,
        |_, m| {
            m.parameters()
                .get("weight")
                .is_some_and(|w| w.shape().last().is_some_and(|d| d % group_size == 0))
        },
    )
    .unwrap();
    let expected_keys: Vec<String> = serde_json::from_value(meta["q8.keys"].clone()).unwrap();
    assert_eq!(
        model.parameters().into_keys().collect::<Vec<_>>(),
        expected_keys
    );
    let logits = model
        .forward(Some(&prompt(&meta)), None, None, &mut [], None)
        .unwrap();
    let diff = assert_close("q8 prompt logits", &logits, &g["q8.logits"], F32_TOLERANCE);
    eprintln!("q8 prompt logits: max |diff| {diff:e}");
}

#[test]
fn rms_norm_and_gelu_topk_match_python() {
    let g = goldens();
    let x = &g["rmsnorm.input"];
    let mut shifted = Gemma3nRMSNorm::new(8, 1e-6, 1.0, true).unwrap();
    shifted.weight = Some(mlx_rs::nn::Param::new(g["rmsnorm.weight"].clone()));
    assert_close(
        "Gemma3nRMSNorm (shifted)",
        &shifted.forward(x).unwrap(),
        &g["rmsnorm.shifted"],
        1e-6,
    );
    let no_scale = Gemma3nRMSNorm::new(8, 1e-6, 0.0, false).unwrap();
    assert!(no_scale.parameters().is_empty());
    assert_close(
        "Gemma3nRMSNorm (no scale)",
        &no_scale.forward(x).unwrap(),
        &g["rmsnorm.no_scale"],
        1e-6,
    );
    let std_multiplier = ops::multiply(
        std::f64::consts::SQRT_2,
        ops::erfinv(&Array::scalar::<f32>((2.0 * 0.95f64 - 1.0) as f32)).unwrap(),
    )
    .unwrap();
    assert_close(
        "gelu_topk",
        &gelu_topk(&g["gelu_topk.input"], &std_multiplier).unwrap(),
        &g["gelu_topk"],
        1e-6,
    );
}

#[test]
fn sanitize_matches_python() {
    let meta = meta();
    let input: Vec<String> = serde_json::from_value(meta["sanitize"]["input"].clone()).unwrap();
    let want: Vec<String> = serde_json::from_value(meta["sanitize"]["output"].clone()).unwrap();
    let weights = input
        .into_iter()
        .map(|k| (k, Array::scalar::<f32>(0.0)))
        .collect();
    let mut got: Vec<String> = LanguageModel::sanitize(weights).into_keys().collect();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn hugging_face_text_keys_sanitize_to_the_model_keys() {
    let meta = meta();
    let input: Vec<String> = serde_json::from_value(meta["hf_sanitize"]["input"].clone()).unwrap();
    let want: Vec<String> = serde_json::from_value(meta["hf_sanitize"]["output"].clone()).unwrap();
    let weights = input
        .into_iter()
        .map(|k| (k, Array::scalar::<f32>(0.0)))
        .collect();
    let mut got: Vec<String> = LanguageModel::sanitize(weights).into_keys().collect();
    got.sort();
    assert_eq!(got, want);
    // They name exactly this model's parameters under `language_model.`.
    let model = LanguageModel::new(&text_config(&meta)).unwrap();
    let mut keys: Vec<String> = model
        .parameters()
        .into_keys()
        .map(|k| format!("language_model.{k}"))
        .collect();
    keys.sort();
    assert_eq!(got, keys);
}

/// `text_config` of the goldens with `key` set to `value`.
fn config_with(key: &str, value: Value) -> serde_json::Map<String, Value> {
    let mut text = meta()["text_config"].as_object().unwrap().clone();
    text.insert(key.into(), value);
    text
}

fn config_error(text: serde_json::Map<String, Value>) -> String {
    match TextConfig::from_map(&text, "config.json") {
        Err(Error::Config { file, message }) => {
            assert_eq!(file, "config.json");
            message
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn bad_text_configs_are_typed_errors() {
    let five = vec![json!("sliding_attention"); 5];
    let message = config_error(config_with("layer_types", Value::Array(five)));
    assert!(message.contains("layer_types has 5 entries"), "{message}");
    let message = config_error(config_with(
        "layer_types",
        json!([
            "sliding_attention",
            "full_attention",
            "chunked",
            "sliding_attention",
            "sliding_attention",
            "full_attention"
        ]),
    ));
    assert!(message.contains("layer_types[2]"), "{message}");
    let mut missing = config_with("hidden_size", json!(32));
    missing.remove("layer_types");
    assert!(config_error(missing).contains("layer_types is missing"));
    let message = config_error(config_with("num_kv_shared_layers", json!(7)));
    assert!(message.contains("num_kv_shared_layers is 7"), "{message}");
    // Layers 0 and 1 (the only ones keeping their KV) are both sliding.
    let message = config_error(config_with("num_kv_shared_layers", json!(4)));
    assert!(message.contains("no \"full_attention\""), "{message}");
    let message = config_error(config_with(
        "activation_sparsity_pattern",
        json!([0.95, 0.0]),
    ));
    assert!(
        message.contains("activation_sparsity_pattern has 2 entries"),
        "{message}"
    );
    let message = config_error(config_with(
        "activation_sparsity_pattern",
        json!([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    ));
    assert!(message.contains("[0, 1)"), "{message}");
    let message = config_error(config_with("altup_active_idx", json!(4)));
    assert!(message.contains("altup_active_idx"), "{message}");
    let message = config_error(config_with("hidden_size", json!("wide")));
    assert!(message.contains("text_config"), "{message}");
}

#[test]
fn model_config_reads_python_defaults() {
    let text = config_with("intermediate_size", json!(64));
    let root = json!({"model_type": "gemma3n", "text_config": text, "eos_token_id": 1});
    let config = ModelConfig::from_map(root.as_object().unwrap().clone(), "config.json").unwrap();
    assert_eq!(config.text_config.intermediate_size.first(), Some(64));
    assert_eq!(config.vision_config.model_type, "gemma3n_vision");
    assert_eq!(config.vision_config.vocab_offset, 262_144);
    assert_eq!(config.audio_config.vocab_offset, 262_272);
    assert_eq!(config.audio_config.sscp_conv_kernel_size, [[3, 3], [3, 3]]);
    assert_eq!(config.image_token_id, 262_145);
    assert_eq!(config.audio_token_id, 262_273);
    assert_eq!(config.eos_token_id, Some(vec![1]));
    assert_eq!(config.text_config.final_logit_softcapping, Some(30.0));
    let root = json!({"model_type": "gemma3n"});
    assert!(matches!(
        ModelConfig::from_map(root.as_object().unwrap().clone(), "config.json"),
        Err(Error::Config { .. })
    ));
}

#[test]
fn bad_calls_are_typed_errors() {
    let meta = meta();
    let model = model(&meta, Dtype::Float32);
    let ids = prompt(&meta);
    // Python's make_cache gives one cache per layer keeping its own KV (4).
    let mut short = model.make_cache();
    short.truncate(3);
    match model.forward(Some(&ids), None, None, &mut short, None) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("3 caches"), "{message}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let embeds = ops::zeros(&[1, 2, 32], Dtype::Float32).unwrap();
    assert!(matches!(
        model.forward(None, Some(&embeds), None, &mut [], None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        model.forward(None, None, None, &mut [], None),
        Err(Error::InvalidArgument(_))
    ));
}

/// Whether `got` (Rust, numbers through `f32`) is Python's `want`.
fn same_value(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            (g - w).abs() <= 1e-6 * w.abs().max(1.0)
        }
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| same_value(g, w))
        }
        _ => got == want,
    }
}

/// Every field Python's config has, as Python read it.
fn assert_fields(part: &str, got: Value, want: &Value) {
    for (key, want) in want.as_object().unwrap() {
        let got = &got[key.as_str()];
        assert!(
            same_value(got, want),
            "{part}.{key}: Rust {got}, Python {want}"
        );
    }
}

#[test]
fn transformers_default_config_reads_as_python() {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("config.json")).unwrap())
            .unwrap();
    let config =
        ModelConfig::from_map(fixture["hf"].as_object().unwrap().clone(), "config.json").unwrap();
    let python = &fixture["python"];
    assert_fields(
        "text_config",
        serde_json::to_value(&config.text_config).unwrap(),
        &python["text_config"],
    );
    assert_fields(
        "vision_config",
        serde_json::to_value(&config.vision_config).unwrap(),
        &python["vision_config"],
    );
    assert_fields(
        "audio_config",
        serde_json::to_value(&config.audio_config).unwrap(),
        &python["audio_config"],
    );
    assert_fields(
        "model",
        serde_json::to_value(&config).unwrap(),
        &python["model"],
    );
    // 35 layers, the last 15 sharing KV: one cache per other layer.
    let lm = config.text_config;
    assert_eq!(lm.first_kv_shared_layer_idx(), 20);
}

// The registered family end to end against Python mlx-vlm 0.7.6 (goldens
// of `tests/fixtures/gemma3n/gen_goldens.py`: one image, one audio clip,
// an image and a clip with a system prompt, text only).
crate::end_to_end_tests!(end_to_end, crate::gemma_family::gemma3n());

/// Python's `apply_chat_template(None, {"model_type": "gemma3n"}, prompt,
/// num_images=..., num_audios=..., return_messages=True)` (printed by the
/// Python reference, mlx-vlm 0.7.6): images before the text, audio parts
/// after it, both on the last user message; an assistant message's content
/// is its text.
#[test]
fn chat_messages_place_images_and_audio_as_python() {
    use mlx_vlm::prompt_utils::{ChatTemplateOptions, chat_messages};

    let config = json!({"model_type": "gemma3n"});
    let options = |num_images, num_audios| ChatTemplateOptions {
        num_images,
        num_audios,
        ..ChatTemplateOptions::default()
    };
    let one = chat_messages(&config, &json!("Hi"), &options(1, 2)).unwrap();
    let python: Value = serde_json::from_str(
        r#"[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi", "content": "Hi"}, {"type": "audio"}, {"type": "audio"}]}]"#,
    )
    .unwrap();
    assert_eq!(Value::Array(one), python);

    let conversation = json!([
        {"role": "system", "content": "S"},
        {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"},
        "C"
    ]);
    let many = chat_messages(&config, &conversation, &options(1, 1)).unwrap();
    let python: Value = serde_json::from_str(
        r#"[{"role": "system", "content": [{"type": "text", "text": "S", "content": "S"}]}, {"role": "user", "content": [{"type": "text", "text": "A", "content": "A"}]}, {"role": "assistant", "content": "B"}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "C", "content": "C"}, {"type": "audio"}]}]"#,
    )
    .unwrap();
    assert_eq!(Value::Array(many), python);
}

/// A family without audio refuses audio clips with a typed error naming
/// what it takes (Python would add audio parts its template drops).
#[test]
fn a_family_without_audio_refuses_audio() {
    use mlx_vlm::prompt_utils::{ChatTemplateOptions, chat_messages};

    let options = ChatTemplateOptions {
        num_audios: 1,
        ..ChatTemplateOptions::default()
    };
    let err = chat_messages(&json!({"model_type": "gemma3"}), &json!("Hi"), &options).unwrap_err();
    match err {
        Error::UnsupportedMedia {
            model_type,
            media,
            supported,
        } => {
            assert_eq!((model_type.as_str(), media.as_str()), ("gemma3", "audio"));
            assert_eq!(supported, "text, images");
        }
        other => panic!("expected UnsupportedMedia, got {other:?}"),
    }
}

/// The processor refuses a prompt whose soft tokens do not number the
/// media (Python expands them and fails later in the model's merge).
#[test]
fn soft_token_counts_must_match_the_media() {
    use mlx_vlm::feature_extraction::gemma3n::Gemma3nAudioFeatureExtractor;
    use mlx_vlm::image_processing::siglip::SiglipImageProcessor;
    use mlx_vlm::models::gemma3n::processing_gemma3n::{Gemma3nProcessor, MediaTokens};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fixtures/gemma");
    let tokens = MediaTokens::from_pretrained(&dir).unwrap();
    let processor = Gemma3nProcessor::new(
        Gemma3nAudioFeatureExtractor::new(),
        SiglipImageProcessor::default(),
        &tokens,
        2,
        3,
    );
    let prompt = "<image_soft_token> and <audio_soft_token>";
    let expanded = processor.expand_prompt(prompt, 1, 1).unwrap();
    assert_eq!(
        expanded,
        "\n\n<start_of_image><image_soft_token><image_soft_token><image_soft_token><end_of_image>\n\n and \
         \n\n<start_of_audio><audio_soft_token><audio_soft_token><end_of_audio>\n\n"
    );
    for (images, clips) in [(2, 1), (1, 2)] {
        let err = processor.expand_prompt(prompt, images, clips).unwrap_err();
        assert!(matches!(err, Error::ImageTokenMismatch { .. }), "{err:?}");
    }
}

/// The example's clip is the goldens' clip, byte for byte.
#[test]
fn the_generated_clip_is_the_goldens_clip() {
    let committed = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3n/audio/tone.wav"),
    )
    .unwrap();
    assert_eq!(mlx_vlm::fixtures::tone_wav(), committed);
}

/// Generation prefilled in steps of 5 tokens gives Python's greedy ids for
/// the image, audio and image+audio cases (`goldens/chunked.json`): every
/// chunk reads the whole prompt's per-layer inputs at the rotating cache's
/// write index, as Python's language model slices them.
#[test]
fn chunked_prefill_gives_pythons_ids() {
    use mlx_vlm::audio::AudioSource;
    use mlx_vlm::fixtures::{self, CheckpointSpec};
    use mlx_vlm::generate::{GenerateParams, stream_generate};
    use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
    use mlx_vlm::prompt_utils::ChatTemplateOptions;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("gemma3n/goldens/chunked.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::gemma3n_tiny(), &spec).unwrap();
    let (model, processor) =
        mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
    let names = |key: &str, case: &Value| -> Vec<PathBuf> {
        let folder = if key == "images" {
            dir.join("qwen2_5_vl/images")
        } else {
            dir.join("gemma3n/audio")
        };
        case[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| folder.join(n.as_str().unwrap()))
            .collect()
    };
    for (name, case) in golden.as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(case["generated_ids"].clone()).unwrap();
        let images: Vec<mlx_vlm::ImageSource> =
            names("images", case).into_iter().map(Into::into).collect();
        let audio: Vec<AudioSource> = names("audio", case).into_iter().map(Into::into).collect();
        let template = ChatTemplateOptions {
            num_images: images.len(),
            num_audios: audio.len(),
            ..ChatTemplateOptions::default()
        };
        let prompt = processor
            .apply_chat_template_with(
                case["prompt"].as_str().unwrap(),
                case["system"].as_str(),
                &template,
            )
            .unwrap();
        let media = PromptMedia {
            images: &images,
            audio: &audio,
            ..PromptMedia::default()
        };
        let inputs = processor
            .prepare_inputs_with(&prompt, media, &ProcessorOptions::default())
            .unwrap();
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

/// A `config.json` disagreeing with the weights is refused before any
/// module is built, naming the key, the tensor and the fix, in both
/// layouts (Rust only: Python fails while loading).
#[test]
fn config_disagreeing_with_the_weights_is_named() {
    use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};

    for layout in [Layout::HuggingFace, Layout::MlxCommunity] {
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            layout,
            tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::gemma3n_tiny(), &spec).unwrap();
        let file = tmp.path().join("config.json");
        let original: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for (pointer, value, expected) in [
            (
                "/audio_config/conf_num_hidden_layers",
                json!(3),
                "audio_config.conf_num_hidden_layers is 3, but the Gemma 3n weights hold 2",
            ),
            (
                "/text_config/vocab_size",
                json!(657),
                "text_config.vocab_size is 657, but",
            ),
        ] {
            let mut config = original.clone();
            *config.pointer_mut(pointer).unwrap() = value;
            std::fs::write(&file, serde_json::to_string(&config).unwrap()).unwrap();
            let err = match mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()) {
                Ok(_) => panic!("{layout:?} {pointer}: loaded"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(expected), "{layout:?} {pointer}: {err}");
            assert!(
                err.contains("use the config.json that came with these weights"),
                "{err}"
            );
        }
    }
}

/// A clip giving more soft tokens than `audio_soft_tokens_per_image` is a
/// typed error naming the key and the fix (Python's `broadcast_to` fails
/// on the negative padding length).
#[test]
fn a_clip_longer_than_the_soft_tokens_is_a_typed_error() {
    use mlx_vlm::audio::AudioSource;
    use mlx_vlm::fixtures::{self, CheckpointSpec};
    use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
    use mlx_vlm::prompt_utils::ChatTemplateOptions;

    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::gemma3n_tiny(), &spec).unwrap();
    let (model, processor) =
        mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
    // 3 s at 16 kHz: 8 soft tokens take about 1.3 s.
    let samples: Vec<i16> = (0..48_000)
        .map(|i| ((i * 7919) % 2000 - 1000) as i16)
        .collect();
    let audio = [AudioSource::from(fixtures::pcm16_wav(&samples, 16_000))];
    let template = ChatTemplateOptions {
        num_audios: 1,
        ..ChatTemplateOptions::default()
    };
    let prompt = processor
        .apply_chat_template_with("Hi", None, &template)
        .unwrap();
    let media = PromptMedia {
        audio: &audio,
        ..PromptMedia::default()
    };
    let inputs = processor
        .prepare_inputs_with(&prompt, media, &ProcessorOptions::default())
        .unwrap();
    let err = model
        .get_input_embeddings(&inputs.input_ids, inputs.media.as_ref(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("more than config.json's audio_soft_tokens_per_image (8)"),
        "{err}"
    );
}
