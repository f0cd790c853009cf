//! The Qwen3-VL-MoE sparse block, the choice of sparse layers and the
//! weight sanitizing against Python mlx-vlm 0.7.6
//! (`tests/fixtures/qwen3_vl_moe/gen_moe_block.py`), on the tiny test
//! model's text config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_vlm::fixtures::tensor_values;
use mlx_vlm::mlx_rs::Array;
use mlx_vlm::mlx_rs::nn::{ModuleExt, Param, quantize};
use mlx_vlm::mlx_rs::ops::QuantizationMode;
use mlx_vlm::models::qwen3_vl_moe::config::TextConfig;
use mlx_vlm::models::qwen3_vl_moe::language::{
    Qwen3VLMoEMLP, Qwen3VLMoESparseMoeBlock, sanitize as language_sanitize,
};
use mlx_vlm::models::qwen3_vl_moe::qwen3_vl_moe::sanitize;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_vl_moe")
}

fn goldens() -> HashMap<String, Array> {
    mlx_vlm::mlx_rs::io::load_safetensors(dir().join("moe_block.safetensors"))
        .unwrap()
        .0
        .into_iter()
        .collect()
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("moe_block.json")).unwrap()).unwrap()
}

fn tiny_text_config(overrides: &[(&str, Value)]) -> TextConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fixtures/qwen3_vl_moe/config.json");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut text = config["text_config"].as_object().unwrap().clone();
    for (k, v) in overrides {
        text.insert(k.to_string(), v.clone());
    }
    TextConfig::from_map(&text, "config.json").unwrap()
}

fn values(key: &str, shape: &[i32]) -> Array {
    Array::from_vec_shaped(tensor_values(key, shape), shape).unwrap()
}

fn floats(a: &Array) -> Vec<f32> {
    a.to_vec_as::<f32>().unwrap()
}

fn block(args: &TextConfig, quantized: bool) -> Qwen3VLMoESparseMoeBlock {
    let mut m = Qwen3VLMoESparseMoeBlock::new(args).unwrap();
    m.gate.weight = Param::new(values("mlp.gate.weight", m.gate.weight.shape()));
    for (name, lin) in [
        ("gate_proj", &mut m.switch_mlp.gate_proj),
        ("up_proj", &mut m.switch_mlp.up_proj),
        ("down_proj", &mut m.switch_mlp.down_proj),
    ] {
        let shape = lin.weight.shape().to_vec();
        lin.weight = Param::new(values(&format!("mlp.switch_mlp.{name}.weight"), &shape));
    }
    if quantized {
        quantize(
            &mut m,
            Some(32),
            Some(4),
            QuantizationMode::Affine,
            |_, _| true,
        )
        .unwrap();
    }
    m
}

#[test]
fn sparse_block_matches_python() {
    let g = goldens();
    let cases = meta()["cases"].as_object().unwrap().clone();
    let mut worst = 0.0f32;
    let mut n = 0;
    for q in ["f32", "q4"] {
        for norm in [true, false] {
            let args = tiny_text_config(&[("norm_topk_prob", Value::Bool(norm))]);
            let m = block(&args, q == "q4");
            assert_eq!(m.gate.quantization.is_some(), q == "q4");
            for (case, lead) in &cases {
                let mut shape: Vec<i32> = lead
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap() as i32)
                    .collect();
                shape.push(args.hidden_size);
                let x = values(&format!("moe.x.{case}"), &shape);
                let name = format!("block.{q}.{}.{case}", u8::from(norm));
                let want = &g[&name];
                let got = m.forward(&x).unwrap();
                assert_eq!(got.shape(), want.shape(), "{name}");
                let (got, want) = (floats(&got), floats(want));
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    d <= 1e-4 * scale.max(1.0),
                    "{name}: max |rust - python| = {d} (max |python| = {scale})"
                );
                worst = worst.max(d);
                n += 1;
            }
        }
    }
    assert_eq!(n, 12);
    eprintln!("sparse block: max |rust - python| over {n} cases = {worst:e}");
}

#[test]
fn sparse_layers_match_python() {
    for setting in meta()["layers"].as_array().unwrap() {
        let args = tiny_text_config(&[
            ("mlp_only_layers", setting["mlp_only_layers"].clone()),
            (
                "decoder_sparse_step",
                setting["decoder_sparse_step"].clone(),
            ),
            ("num_hidden_layers", Value::from(4)),
        ]);
        let want: Vec<bool> = setting["sparse"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let got: Vec<bool> = (0..4)
            .map(|l| {
                let mlp = Qwen3VLMoEMLP::new(&args, l).unwrap();
                let keys: Vec<String> = mlp.parameters().into_keys().collect();
                let sparse = matches!(mlp, Qwen3VLMoEMLP::Sparse(_));
                // The keys are the inner block's, as Python's.
                assert_eq!(
                    keys.iter().any(|k| k.starts_with("switch_mlp.")),
                    sparse,
                    "{keys:?}"
                );
                sparse
            })
            .collect();
        assert_eq!(got, want, "{setting}");
    }
}

/// The generator's sanitize inputs: its keys and shapes, values by key.
fn sanitize_inputs() -> HashMap<String, Array> {
    let inputs = meta()["sanitize_inputs"].as_object().unwrap().clone();
    inputs
        .iter()
        .map(|(k, s)| {
            let shape: Vec<i32> = s
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as i32)
                .collect();
            (k.clone(), values(k, &shape))
        })
        .collect()
}

#[test]
fn sanitize_matches_python() {
    let g = goldens();
    let weights = sanitize_inputs();
    let got = language_sanitize(sanitize(weights).unwrap(), 2).unwrap();
    let mut want: Vec<&str> = g
        .keys()
        .filter_map(|k| k.strip_prefix("sanitize."))
        .collect();
    want.sort();
    let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, want);
    for (k, v) in &got {
        let w = &g[&format!("sanitize.{k}")];
        assert_eq!(v.shape(), w.shape(), "{k}");
        assert_eq!(floats(v), floats(w), "{k}");
    }
}

/// Experts in transformers' in-memory layout (`save_original_format=False`:
/// `gate_up_proj` and `down_proj` transposed) sanitize to the same
/// tensors as the original layout that Python's goldens use.
#[test]
fn sanitize_takes_transformers_in_memory_expert_layout() {
    let original = sanitize_inputs();
    let transposed: HashMap<String, Array> = original
        .iter()
        .map(|(k, v)| {
            let fused = k.ends_with("experts.gate_up_proj") || k.ends_with("experts.down_proj");
            let v = if fused {
                v.transpose([0, 2, 1]).unwrap()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let want = sanitize(original).unwrap();
    let got = sanitize(transposed).unwrap();
    let mut keys: Vec<&String> = got.keys().collect();
    keys.sort();
    let mut want_keys: Vec<&String> = want.keys().collect();
    want_keys.sort();
    assert_eq!(keys, want_keys);
    for (k, v) in &got {
        assert_eq!(v.shape(), want[k].shape(), "{k}");
        assert_eq!(floats(v), floats(&want[k]), "{k}");
    }
}

#[test]
fn sanitize_refuses_a_bad_gate_up_proj() {
    let key = "model.language_model.layers.0.mlp.experts.gate_up_proj";
    let weights = HashMap::from([(key.to_string(), values(key, &[2, 4, 5]))]);
    let err = sanitize(weights).unwrap_err().to_string();
    assert!(
        err.contains("gate_up_proj") && err.contains("[2, 4, 5]"),
        "{err}"
    );
}

#[test]
fn config_refuses_bad_routing() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fixtures/qwen3_vl_moe/config.json");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (key, value, needle) in [
        ("num_experts_per_tok", 5, "num_experts_per_tok"),
        ("decoder_sparse_step", 0, "decoder_sparse_step"),
    ] {
        let mut text = config["text_config"].as_object().unwrap().clone();
        text.insert(key.into(), Value::from(value));
        let err = TextConfig::from_map(&text, "config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let mut text = config["text_config"].as_object().unwrap().clone();
    text.remove("moe_intermediate_size");
    let err = TextConfig::from_map(&text, "config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("moe_intermediate_size"), "{err}");
}
