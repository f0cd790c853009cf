//! The uniform quantized KV cache (`kv_bits`) against Python mlx-vlm
//! 0.7.6: `tests/fixtures/kv_quant/gen_goldens.py` runs `stream_generate`
//! with `kv_bits` 4 and 8 and `quantized_kv_start` 0 and inside the run on
//! the tiny Qwen2.5-VL, reshaped to head_dim 32 (mx.quantize's smallest
//! group), in f32 and bf16.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype, idx, ops};
use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};
use mlx_vlm::generate::{GenerateParams, maybe_quantize_kv_cache, stream_generate};
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

fn run_variant(variant: &str, dtype: Dtype) {
    let (g, meta) = goldens();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), dtype, &meta);
    let (model, processor) =
        mlx_vlm::load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let prompt = processor
        .apply_chat_template(meta["prompt"].as_str().unwrap(), None, 0)
        .unwrap();
    let inputs = processor.prepare_inputs(&prompt, &[]).unwrap();
    let group_size = meta["kv_group_size"].as_i64().unwrap() as i32;
    let mut checked = 0;
    for bits in [4, 8] {
        let n_prompt = inputs.input_ids.shape()[1];
        for start in [0, n_prompt + 3] {
            let key = format!("{variant}.kv{bits}.start{start}");
            let want = ints(&g[&format!("{key}.token_ids")]);
            let params = GenerateParams {
                max_tokens: meta["max_tokens"].as_u64().unwrap() as usize,
                kv_bits: Some(bits as f64),
                kv_group_size: group_size,
                quantized_kv_start: start,
                ..Default::default()
            };
            let mut ids = Vec::new();
            for r in stream_generate(
                &*model,
                processor.tokenizer(),
                inputs.clone(),
                processor.eos_token_ids(),
                &params,
            )
            .unwrap()
            {
                if let Some(all) = r.unwrap().token_ids {
                    ids = all.into_iter().map(i64::from).collect();
                }
            }
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
    let err = stream_generate(
        &*model,
        processor.tokenizer(),
        inputs.clone(),
        processor.eos_token_ids(),
        &params,
    )
    .unwrap()
    .find_map(|r| r.err())
    .expect("kv_bits with max_kv_size must fail as in Python");
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
