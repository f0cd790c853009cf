//! The uniform quantized KV cache (`kv_bits`) against Python mlx-vlm
//! 0.7.6: `tests/fixtures/kv_quant/gen_goldens.py` runs `stream_generate`
//! with `kv_bits` 4 and 8 and `quantized_kv_start` 0 and inside the run on
//! the tiny Qwen2.5-VL, reshaped to head_dim 32 (mx.quantize's smallest
//! group), in f32 and bf16; then on every other family's tiny checkpoint
//! (see `family_tests!`): Python's greedy ids exactly, its last-step
//! log-probabilities for the small-vocabulary families in f32, and where
//! Python raises (rotating caches, a group size that does not divide the
//! head dim, Gemma 2's attention) a typed error before generation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype, idx, ops};
use mlx_vlm::fixtures::{self, CheckpointSpec, Layout, TinyModel};
use mlx_vlm::generate::{
    GenerateInputs, GenerateParams, GenerationResponse, StreamGenerate, maybe_quantize_kv_cache,
    stream_generate,
};
use mlx_vlm::models::VlmModel;
use mlx_vlm::processor::Processor;
use mlx_vlm::utils::LoadOptions;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kv_quant")
}

fn goldens() -> (HashMap<String, Array>, Value) {
    let (tensors, _) =
        mlx_rs::io::load_safetensors(fixture_dir().join("goldens.safetensors")).unwrap();
    let meta =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("goldens.json")).unwrap())
            .unwrap();
    (tensors.into_iter().collect(), meta)
}

/// The tiny Qwen2.5-VL with the generator's `config_override`.
fn write(dir: &Path, dtype: Dtype, meta: &Value) {
    let mut config = fixtures::tiny_config();
    for (k, v) in meta["config_override"].as_object().unwrap() {
        config[k] = v.clone();
    }
    let spec = CheckpointSpec {
        dtype,
        layout: Layout::HuggingFace,
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_checkpoint(dir, &config, &spec).unwrap();
}

fn ints(a: &Array) -> Vec<i64> {
    a.to_vec_as::<i64>().unwrap()
}

/// The checkpoint in `dir` loaded, and the generator's prompt prepared.
fn load_with_prompt(dir: &Path, meta: &Value) -> (Box<dyn VlmModel>, Processor, GenerateInputs) {
    let (model, processor) = mlx_vlm::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let prompt = processor
        .apply_chat_template(meta["prompt"].as_str().unwrap(), None, 0)
        .unwrap();
    let inputs = processor.prepare_inputs(&prompt, &[]).unwrap();
    (model, processor, inputs)
}

/// Greedy `stream_generate` with `kv` = (`kv_bits`, `kv_group_size`,
/// `quantized_kv_start`).
fn generate_kv<'a>(
    model: &'a dyn VlmModel,
    processor: &'a Processor,
    inputs: &GenerateInputs,
    max_tokens: usize,
    (bits, group_size, start): (f64, i32, i32),
) -> mlx_vlm::Result<StreamGenerate<'a>> {
    let params = GenerateParams {
        max_tokens,
        kv_bits: Some(bits),
        kv_group_size: group_size,
        quantized_kv_start: start,
        ..Default::default()
    };
    stream_generate(
        model,
        processor.tokenizer(),
        inputs.clone(),
        processor.eos_token_ids(),
        &params,
    )
}

/// The generated ids and the last step's log-probabilities of a stream.
fn collect(
    stream: impl Iterator<Item = mlx_vlm::Result<GenerationResponse>>,
    key: &str,
) -> (Vec<i64>, Option<Array>) {
    let mut ids = Vec::new();
    let mut logprobs = None;
    for r in stream {
        let r = r.unwrap_or_else(|e| panic!("{key}: {e}"));
        logprobs = r.logprobs.or(logprobs);
        if let Some(all) = r.token_ids {
            ids = all.into_iter().map(i64::from).collect();
        }
    }
    (ids, logprobs)
}

fn run_variant(variant: &str, dtype: Dtype) {
    let (g, meta) = goldens();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), dtype, &meta);
    let (model, processor, inputs) = load_with_prompt(tmp.path(), &meta);
    let group_size = meta["kv_group_size"].as_i64().unwrap() as i32;
    let mut checked = 0;
    for bits in [4, 8] {
        let n_prompt = inputs.input_ids.shape()[1];
        for start in [0, n_prompt + 3] {
            let key = format!("{variant}.kv{bits}.start{start}");
            let want = ints(&g[&format!("{key}.token_ids")]);
            let max_tokens = meta["max_tokens"].as_u64().unwrap() as usize;
            let kv = (bits as f64, group_size, start);
            let stream = generate_kv(&*model, &processor, &inputs, max_tokens, kv);
            let (ids, _) = collect(stream.unwrap(), &key);
            assert_eq!(ids, want, "{key}: greedy ids");
            checked += 1;

            if start == 0 {
                // The first conversion: after the prefill chunk of all but
                // the last prompt token, as `generate_step` runs it.
                let features = model
                    .get_input_embeddings(&inputs.input_ids, inputs.media.as_ref(), None)
                    .unwrap();
                let mut cache = model.make_cache(None);
                let mut state = model.new_request_state();
                let n = n_prompt - 1;
                model
                    .language_model(
                        &inputs.input_ids.index(idx![.., ..n]).unwrap(),
                        Some(&features.inputs_embeds.index(idx![.., ..n]).unwrap()),
                        &mut cache,
                        Some(&features.prefill),
                        &mut state,
                    )
                    .unwrap();
                maybe_quantize_kv_cache(&mut cache, start, group_size, Some(bits)).unwrap();
                let got = cache[0].state();
                let parts = [
                    "keys.data",
                    "keys.scales",
                    "keys.biases",
                    "values.data",
                    "values.scales",
                    "values.biases",
                ];
                assert_eq!(got.len(), parts.len(), "{key}: state arrays");
                for (part, got) in parts.iter().zip(&got) {
                    let want = &g[&format!("{key}.layer0.{part}")];
                    assert_eq!(got.shape(), want.shape(), "{key} {part}: shape");
                    assert_eq!(got.dtype(), want.dtype(), "{key} {part}: dtype");
                    if got.dtype() == Dtype::Uint32 {
                        let eq = ops::array_equal(got, want, false).unwrap();
                        assert!(
                            eq.item::<bool>().unwrap(),
                            "{key} {part}: packed data differs"
                        );
                    } else {
                        let d = ops::abs(
                            &(got.as_type(Dtype::Float32).unwrap()
                                - want.as_type(Dtype::Float32).unwrap()),
                        )
                        .unwrap();
                        let d = ops::max(&d, None, false).unwrap().item::<f32>().unwrap();
                        let tol = if dtype == Dtype::Float32 { 1e-5 } else { 1e-2 };
                        assert!(d <= tol, "{key} {part}: max |diff| {d} > {tol}");
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4);

    // Python: `RotatingKVCache.to_quantized` raises NotImplementedError
    // ("RotatingKVCache Quantization NYI") once the offset reaches
    // quantized_kv_start; here a typed error naming kv_bits.
    let params = GenerateParams {
        max_tokens: 2,
        kv_bits: Some(4.0),
        kv_group_size: group_size,
        quantized_kv_start: 0,
        max_kv_size: Some(64),
        ..Default::default()
    };
    // Python fails at the first conversion; here before generating.
    let Err(err) = stream_generate(
        &*model,
        processor.tokenizer(),
        inputs.clone(),
        processor.eos_token_ids(),
        &params,
    ) else {
        panic!("kv_bits with max_kv_size must fail up front (Python fails at the conversion)");
    };
    match err {
        mlx_vlm::Error::InvalidParameter { name, message, .. } => {
            assert_eq!(name, "kv_bits");
            assert!(
                message.contains("RotatingKVCache Quantization NYI"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn f32_ids_and_state_as_python() {
    run_variant("f32", Dtype::Float32);
}

#[test]
fn bf16_ids_and_state_as_python() {
    run_variant("bf16", Dtype::Bfloat16);
}

#[test]
fn bad_kv_params_are_typed_errors() {
    for (bits, group, name) in [
        (3.5, 64, "kv_bits"),
        (7.0, 64, "kv_bits"),
        (4.0, 16, "kv_group_size"),
    ] {
        let params = GenerateParams {
            kv_bits: Some(bits),
            kv_group_size: group,
            ..Default::default()
        };
        match params.validate() {
            Err(mlx_vlm::Error::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
            other => panic!("kv_bits {bits} group {group}: {other:?}"),
        }
    }
}

/// A family's tiny checkpoint description and tokenizer folder.
fn family_tiny(family: &str) -> (TinyModel, PathBuf) {
    let qwen = || fixtures::qwen_tokenizer_dir().unwrap();
    match family {
        "qwen2_vl" => (fixtures::qwen2_vl_tiny(), qwen()),
        "qwen3_vl" => (fixtures::qwen3_vl_tiny(), qwen()),
        "qwen3_vl_moe" => (fixtures::qwen3_vl_moe_tiny(), qwen()),
        "gemma3" | "gemma3_global" => (fixtures::gemma3_tiny(), fixtures::gemma_tokenizer_dir()),
        "gemma3n" => (fixtures::gemma3n_tiny(), fixtures::gemma_tokenizer_dir()),
        "paligemma" | "paligemma2" => (fixtures::paligemma_tiny(), fixtures::gemma_tokenizer_dir()),
        "idefics3" => (fixtures::idefics3_tiny(), fixtures::smollm_tokenizer_dir()),
        "smolvlm" => (fixtures::smolvlm_tiny(), fixtures::smollm_tokenizer_dir()),
        "llava" | "llava_head_dim16" => (fixtures::llava_tiny(), fixtures::llama_tokenizer_dir()),
        "llava_next" => (fixtures::llava_next_tiny(), fixtures::llama_tokenizer_dir()),
        "kimi_vl" => (fixtures::kimi_vl_tiny(), fixtures::kimi_vl_tokenizer_dir()),
        other => panic!("no tiny checkpoint for {other}"),
    }
}

/// The generator's `merge`: nested objects merged, `rope_scaling` and
/// everything else replaced.
fn merge(config: &mut Value, over: &Value) {
    for (k, v) in over.as_object().unwrap() {
        match (config.get_mut(k), v) {
            (Some(c @ Value::Object(_)), Value::Object(_)) if k != "rope_scaling" => merge(c, v),
            _ => config[k] = v.clone(),
        }
    }
}

/// `<family>.<dtype>.kv<bits>.start<start>` -> (bits, start).
fn bits_and_start(key: &str) -> (f64, i32) {
    let parts: Vec<&str> = key.rsplitn(3, '.').collect();
    let start = parts[0].strip_prefix("start").unwrap().parse().unwrap();
    let bits = parts[1].strip_prefix("kv").unwrap().parse().unwrap();
    (bits, start)
}

/// Log-probabilities of the last step within this of Python's (f32; both
/// run the same quantized matmuls on the CPU).
const LOGPROBS_TOL: f32 = 1e-4;

/// Every golden run of `family` (see the generator's `run_family`).
fn run_family(family: &str) {
    let (g, meta) = goldens();
    let (mut tiny, tokenizer_dir) = family_tiny(family);
    merge(&mut tiny.config, &meta["families"][family]);
    let group_size = meta["kv_group_size"].as_i64().unwrap() as i32;
    let max_tokens = meta["max_tokens"].as_u64().unwrap() as usize;
    let mut checked = 0;
    for (variant, dtype) in [("f32", Dtype::Float32), ("bf16", Dtype::Bfloat16)] {
        let prefix = format!("{family}.{variant}.");
        let keys: Vec<&String> = meta
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .collect();
        if keys.is_empty() {
            // Python failed in f32 and the generator skipped bf16.
            assert_eq!(variant, "bf16", "{family}: no f32 goldens");
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            dtype,
            layout: Layout::HuggingFace,
            tokenizer_dir: Some(tokenizer_dir.clone()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &tiny, &spec).unwrap();
        let (model, processor, inputs) = load_with_prompt(tmp.path(), &meta);
        let mut worst = 0f32;
        for key in keys {
            let golden = &meta[key.as_str()];
            assert_eq!(
                inputs.input_ids.size() as u64,
                golden["total_prompt_tokens"].as_u64().unwrap(),
                "{key}: prompt tokens"
            );
            let (bits, start) = bits_and_start(key);
            let kv = (bits, group_size, start);
            let stream = generate_kv(&*model, &processor, &inputs, max_tokens, kv);
            if let Some(python) = golden["error"].as_str() {
                let flag = if python.starts_with("ValueError: [quantize]") {
                    "kv_group_size"
                } else {
                    "kv_bits"
                };
                match stream {
                    Err(mlx_vlm::Error::InvalidParameter { name, message, .. }) => {
                        assert_eq!(name, flag, "{key}: {message}");
                        if python.starts_with("NotImplementedError") {
                            assert!(message.contains("RotatingKVCache Quantization NYI"));
                        }
                    }
                    Err(other) => panic!("{key}: Python raises {python}; got {other:?}"),
                    Ok(_) => panic!("{key}: Python raises {python}; Rust must refuse up front"),
                }
            } else {
                let (ids, logprobs) = collect(stream.unwrap(), key);
                let want: Vec<i64> = serde_json::from_value(golden["generated_ids"].clone())
                    .unwrap_or_else(|e| panic!("{key}: generated_ids: {e}"));
                assert_eq!(ids, want, "{key}: greedy ids");
                if let Some(want) = g.get(&format!("{key}.logprobs")) {
                    let vocab = want.shape()[0];
                    let got = logprobs.unwrap().index(idx![..vocab]).unwrap();
                    let d = ops::abs(&(got.as_type(Dtype::Float32).unwrap() - want)).unwrap();
                    let d = ops::max(&d, None, false).unwrap().item::<f32>().unwrap();
                    assert!(d <= LOGPROBS_TOL, "{key}: logprobs max |diff| {d}");
                    worst = worst.max(d);
                    checked += 1;
                }
            }
            checked += 1;
        }
        eprintln!("{family} {variant}: logprobs max |diff| {worst}");
    }
    assert!(checked > 0, "{family}: nothing checked");
}

/// One test per family of the generator's `family_specs`.
macro_rules! family_tests {
    ($($family:ident),* $(,)?) => {
        $(
            #[test]
            fn $family() {
                run_family(stringify!($family));
            }
        )*
    };
}

family_tests!(
    qwen2_vl,
    qwen3_vl,
    qwen3_vl_moe,
    gemma3,
    gemma3_global,
    gemma3n,
    paligemma,
    paligemma2,
    idefics3,
    smolvlm,
    llava,
    llava_head_dim16,
    llava_next,
    kimi_vl,
);

#[test]
fn every_generated_family_is_tested() {
    let (_, meta) = goldens();
    let mut families: Vec<&str> = meta["families"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    families.sort_unstable();
    let mut tested = [
        "qwen2_vl",
        "qwen3_vl",
        "qwen3_vl_moe",
        "gemma3",
        "gemma3_global",
        "gemma3n",
        "paligemma",
        "paligemma2",
        "idefics3",
        "smolvlm",
        "llava",
        "llava_head_dim16",
        "llava_next",
        "kimi_vl",
    ];
    tested.sort_unstable();
    assert_eq!(families, tested);
}
