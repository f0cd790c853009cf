//! Logits processors, samplers and the streaming detokenizer against
//! Python mlx-vlm 0.7.6 (tests/fixtures/gen_sampling.py).

use std::collections::HashMap;

use mlx_rs::{Array, Dtype};
use mlx_vlm::generate::PositionedTargetSampler;
use mlx_vlm::sample_utils::{
    LogitsProcessorArgs, SamplerArgs, apply_min_p, apply_top_k, apply_top_p, categorical_sampling,
    make_logits_processors, make_sampler, top_p_sampling,
};
use mlx_vlm::tokenizer_utils::make_streaming_detokenizer;
use serde_json::Value;

fn dir() -> String {
    format!("{}/tests/fixtures/sampling", env!("CARGO_MANIFEST_DIR"))
}

fn tensors() -> HashMap<String, Array> {
    mlx_rs::io::load_safetensors(format!("{}/sampling.safetensors", dir()))
        .unwrap()
        .0
}

fn record(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{name}", dir())).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Same shape and dtype; equal infinities; finite values within the
/// dtype's tolerance (exact for integers).
fn assert_close(name: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let (rtol, atol) = match want.dtype() {
        Dtype::Bfloat16 | Dtype::Float16 => (2e-2, 2e-2),
        Dtype::Float32 => (1e-5, 1e-4),
        _ => (0.0, 0.0),
    };
    let g = got.to_vec_as::<f64>().unwrap();
    let w = want.to_vec_as::<f64>().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if b.is_infinite() || a.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= atol + rtol * b.abs()
        };
        assert!(ok, "{name}[{i}]: {a} != {b}");
    }
}

fn ints(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn to_u32(a: &Array) -> Vec<u32> {
    a.to_vec_as::<u32>().unwrap()
}

#[test]
fn filters_match_python() {
    let t = tensors();
    let lp = &t["logprobs"];
    assert_close("top_k_5", &apply_top_k(lp, 5).unwrap(), &t["top_k_5"]);
    assert_close("top_k_1", &apply_top_k(lp, 1).unwrap(), &t["top_k_1"]);
    assert_close(
        "min_p_0.1",
        &apply_min_p(lp, 0.1, 1).unwrap(),
        &t["min_p_0.1"],
    );
    assert_close(
        "min_p_0.9_keep3",
        &apply_min_p(lp, 0.9, 3).unwrap(),
        &t["min_p_0.9_keep3"],
    );
    assert_close("top_p_0.9", &apply_top_p(lp, 0.9).unwrap(), &t["top_p_0.9"]);
    assert_close("top_p_0.3", &apply_top_p(lp, 0.3).unwrap(), &t["top_p_0.3"]);
    assert_close(
        "top_p_0.9_bf16",
        &apply_top_p(&t["logprobs_bf16"], 0.9).unwrap(),
        &t["top_p_0.9_bf16"],
    );
    let argmax = make_sampler(SamplerArgs::default())(lp).unwrap();
    assert_eq!(to_u32(&argmax), to_u32(&t["argmax"]));
    assert!(
        apply_top_k(lp, 48).is_err(),
        "top_k must be below the vocab size"
    );
    assert!(apply_min_p(lp, 1.5, 1).is_err());
}

#[test]
fn logits_processors_match_python() {
    let t = tensors();
    let bias = |pairs: &[(u32, f64)]| Some(pairs.iter().copied().collect::<HashMap<_, _>>());
    let cases = [
        (
            "logit_bias",
            LogitsProcessorArgs {
                logit_bias: bias(&[(3, 1.5), (40, -2.0), (0, 0.25)]),
                ..Default::default()
            },
        ),
        (
            "repetition",
            LogitsProcessorArgs {
                repetition_penalty: Some(1.3),
                repetition_context_size: 4,
                ..Default::default()
            },
        ),
        (
            "presence",
            LogitsProcessorArgs {
                presence_penalty: Some(0.5),
                presence_context_size: 4,
                ..Default::default()
            },
        ),
        (
            "frequency",
            LogitsProcessorArgs {
                frequency_penalty: Some(0.7),
                frequency_context_size: 5,
                ..Default::default()
            },
        ),
        (
            "all",
            LogitsProcessorArgs {
                logit_bias: bias(&[(17, 3.0)]),
                repetition_penalty: Some(1.2),
                repetition_context_size: 6,
                presence_penalty: Some(0.4),
                presence_context_size: 3,
                frequency_penalty: Some(0.3),
                frequency_context_size: 8,
            },
        ),
    ];
    for (name, args) in cases {
        let processors = make_logits_processors(&args).unwrap();
        for dt in ["f32", "bf16"] {
            let src = if dt == "f32" { "logits" } else { "logits_bf16" };
            let mut out = t[src].clone();
            for p in &processors {
                out = p(&t["tokens"], &out).unwrap();
            }
            let key = format!("proc_{name}_{dt}");
            assert_close(&key, &out, &t[&key]);
        }
    }
    // A penalty of zero adds no processor, as in Python.
    let none = make_logits_processors(&LogitsProcessorArgs {
        repetition_penalty: Some(0.0),
        ..Default::default()
    })
    .unwrap();
    assert!(none.is_empty());
}

#[test]
fn seeded_draws_match_python() {
    let t = tensors();
    let lp = &t["logprobs"];
    let draws = record("sampling.json")["draws"].clone();
    let samplers = [
        (
            "temp0.8",
            SamplerArgs {
                temp: 0.8,
                ..Default::default()
            },
        ),
        (
            "temp0.7_top_p0.9",
            SamplerArgs {
                temp: 0.7,
                top_p: 0.9,
                ..Default::default()
            },
        ),
        (
            "temp1.0_top_k5",
            SamplerArgs {
                temp: 1.0,
                top_k: 5,
                ..Default::default()
            },
        ),
        (
            "temp0.9_min_p0.05",
            SamplerArgs {
                temp: 0.9,
                min_p: 0.05,
                ..Default::default()
            },
        ),
        (
            "temp0.6_all",
            SamplerArgs {
                temp: 0.6,
                top_p: 0.95,
                min_p: 0.02,
                top_k: 12,
                ..Default::default()
            },
        ),
        (
            "temp0.001",
            SamplerArgs {
                temp: 0.001,
                ..Default::default()
            },
        ),
    ];
    for (name, args) in samplers {
        mlx_rs::random::seed(1234).unwrap();
        let sampler = make_sampler(args);
        let got: Vec<Vec<u32>> = (0..6).map(|_| to_u32(&sampler(lp).unwrap())).collect();
        let want: Vec<Vec<u32>> = draws[name].as_array().unwrap().iter().map(ints).collect();
        assert_eq!(got, want, "{name}");
    }

    mlx_rs::random::seed(99).unwrap();
    let got: Vec<Vec<u32>> = (0..4)
        .map(|_| to_u32(&categorical_sampling(lp, 0.5).unwrap()))
        .collect();
    let want: Vec<Vec<u32>> = draws["categorical_sampling_0.5"]
        .as_array()
        .unwrap()
        .iter()
        .map(ints)
        .collect();
    assert_eq!(got, want, "categorical_sampling");

    mlx_rs::random::seed(5).unwrap();
    let logits = &t["logits"];
    let mut got: Vec<Vec<u32>> = (0..4)
        .map(|_| to_u32(&top_p_sampling(logits, 0.8, 0.7, None).unwrap()))
        .collect();
    let key = mlx_rs::random::key(11).unwrap();
    got.push(to_u32(
        &top_p_sampling(logits, 0.8, 0.7, Some(&key)).unwrap(),
    ));
    let want: Vec<Vec<u32>> = draws["top_p_sampling"]
        .as_array()
        .unwrap()
        .iter()
        .map(ints)
        .collect();
    assert_eq!(got, want, "top_p_sampling");
}

#[test]
fn positioned_sampler_matches_python() {
    let t = tensors();
    let row0 = t["logprobs"].index(mlx_rs::idx![..1]).unwrap();
    let positioned = record("sampling.json")["positioned"].clone();
    for (name, case) in positioned.as_object().unwrap() {
        let a = &case["args"];
        let sampler = PositionedTargetSampler::new(
            a["temperature"].as_f64().unwrap(),
            a["top_p"].as_f64().unwrap(),
            a["top_k"].as_i64().unwrap() as i32,
            a["seed"].as_u64().unwrap(),
        );
        let got: Vec<Vec<u32>> = (0..8)
            .map(|p| to_u32(&sampler.sample_target(&row0, &[0], &[p]).unwrap()))
            .collect();
        let want: Vec<Vec<u32>> = case["draws"].as_array().unwrap().iter().map(ints).collect();
        assert_eq!(got, want, "positioned {name}");
    }
}

#[test]
fn bpe_detokenizer_matches_python() {
    let path = mlx_vlm::fixtures::qwen_tokenizer_dir()
        .unwrap()
        .join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&path).unwrap();
    for case in record("detokenizer.json").as_array().unwrap() {
        let mut detok = make_streaming_detokenizer(&tokenizer).unwrap();
        detok.reset();
        let mut segments = Vec::new();
        for id in ints(&case["ids"]) {
            detok.add_token(id, &[]).unwrap();
            segments.push(Value::String(detok.last_segment().unwrap()));
        }
        assert_eq!(Value::Array(segments), case["segments"], "{}", case["text"]);
        detok.finalize().unwrap();
        assert_eq!(
            detok.last_segment().unwrap(),
            case["final"].as_str().unwrap()
        );
        assert_eq!(detok.text().unwrap(), case["full"].as_str().unwrap());
    }
}
