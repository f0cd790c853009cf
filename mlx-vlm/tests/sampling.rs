//! Logits processors, samplers and the streaming detokenizer against
//! Python mlx-vlm 0.7.6 (tests/fixtures/gen_sampling.py).

use std::collections::HashMap;

use mlx_rs::{Array, Dtype};
use mlx_vlm::generate::GenerateParams;
use mlx_vlm::generate::PositionedTargetSampler;
use mlx_vlm::sample_utils::{
    LogitsProcessorArgs, SamplerArgs, apply_min_p, apply_top_k, apply_top_p, categorical_sampling,
    make_logits_processors, make_sampler, top_p_sampling,
};
use mlx_vlm::tokenizer_utils::{
    BPEStreamingDetokenizer, DetokenizerFactory, NaiveStreamingDetokenizer,
    SPMStreamingDetokenizer, StreamingDetokenizer, make_streaming_detokenizer,
};
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

/// `params` with `edit` applied.
fn with(edit: impl FnOnce(&mut GenerateParams)) -> GenerateParams {
    let mut params = GenerateParams::default();
    edit(&mut params);
    params
}

#[test]
fn generate_params_are_validated_with_exact_messages() {
    let nan = f64::NAN;
    let cases: Vec<(GenerateParams, &str, &str)> = vec![
        (
            with(|p| p.temperature = nan),
            "temperature",
            "temperature must be a finite number >= 0 (0 samples greedily), got nan",
        ),
        (
            with(|p| p.temperature = -1.0),
            "temperature",
            "temperature must be a finite number >= 0 (0 samples greedily), got -1.0",
        ),
        (
            with(|p| p.temperature = f64::INFINITY),
            "temperature",
            "temperature must be a finite number >= 0 (0 samples greedily), got inf",
        ),
        (
            with(|p| p.top_p = 2.0),
            "top_p",
            "top_p must be in (0, 1] (1 turns nucleus sampling off), got 2.0",
        ),
        (
            with(|p| p.top_p = 0.0),
            "top_p",
            "top_p must be in (0, 1] (1 turns nucleus sampling off), got 0.0",
        ),
        (
            with(|p| p.top_p = nan),
            "top_p",
            "top_p must be in (0, 1] (1 turns nucleus sampling off), got nan",
        ),
        (
            with(|p| p.top_k = -5),
            "top_k",
            "top_k must be >= 0 (0 turns top-k sampling off), got -5",
        ),
        (
            with(|p| p.min_p = 1.5),
            "min_p",
            "`min_p` has to be a float in the [0, 1] interval, but is 1.5",
        ),
        (
            with(|p| p.min_p = nan),
            "min_p",
            "`min_p` has to be a float in the [0, 1] interval, but is nan",
        ),
        (
            with(|p| p.logits_processors.repetition_penalty = Some(-1.0)),
            "repetition_penalty",
            "repetition_penalty: penalty must be a non-negative float, got -1.0",
        ),
        (
            with(|p| p.logits_processors.repetition_penalty = Some(nan)),
            "repetition_penalty",
            "repetition_penalty must be a finite number >= 0 (1 leaves the logits unchanged, \
             0 turns it off), got nan",
        ),
        (
            with(|p| p.logits_processors.presence_penalty = Some(f64::NEG_INFINITY)),
            "presence_penalty",
            "presence_penalty must be a finite number (0 turns it off), got -inf",
        ),
        (
            with(|p| p.logits_processors.frequency_penalty = Some(nan)),
            "frequency_penalty",
            "frequency_penalty must be a finite number (0 turns it off), got nan",
        ),
        (
            with(|p| p.logits_processors.repetition_context_size = 0),
            "repetition_context_size",
            "repetition_context_size must be >= 1 (the number of recent tokens the penalty \
             looks at), got 0",
        ),
        (
            with(|p| p.logits_processors.presence_context_size = -3),
            "presence_context_size",
            "presence_context_size must be >= 1 (the number of recent tokens the penalty \
             looks at), got -3",
        ),
        (
            with(|p| p.logits_processors.frequency_context_size = 0),
            "frequency_context_size",
            "frequency_context_size must be >= 1 (the number of recent tokens the penalty \
             looks at), got 0",
        ),
        (
            with(|p| {
                p.logits_processors.logit_bias = Some(HashMap::from([(9, nan), (7, 1.0), (8, nan)]))
            }),
            "logit_bias",
            "logit_bias[8] must be a finite number, got nan",
        ),
        (
            with(|p| p.prefill_step_size = Some(0)),
            "prefill_step_size",
            "prefill_step_size must be >= 1 (prompt tokens per prefill chunk), got 0; \
             leave it unset (None) to prefill at once",
        ),
        (
            with(|p| p.max_kv_size = Some(0)),
            "max_kv_size",
            "max_kv_size must be >= 1 (tokens the rotating KV cache keeps), got 0; \
             leave it unset (None) for an unbounded cache",
        ),
    ];
    for (params, want_name, want_message) in cases {
        let err = params.validate().unwrap_err();
        assert_eq!(err.to_string(), want_message);
        match err {
            mlx_vlm::Error::InvalidParameter { name, .. } => assert_eq!(name, want_name),
            other => panic!("{want_name}: not InvalidParameter: {other:?}"),
        }
    }

    // The edges of each range, and Python's "off" values, are valid.
    let valid = [
        GenerateParams::default(),
        with(|p| {
            p.temperature = 0.0;
            p.top_p = 1.0;
            p.top_k = 0;
            p.min_p = 0.0;
            p.max_tokens = 0;
            p.prefill_step_size = None;
            p.max_kv_size = None;
        }),
        with(|p| {
            p.temperature = 1e-6;
            p.top_p = 1e-9;
            p.top_k = 1;
            p.min_p = 1.0;
            p.prefill_step_size = Some(1);
            p.max_kv_size = Some(1);
            p.logits_processors = LogitsProcessorArgs {
                logit_bias: Some(HashMap::from([(3, -100.0)])),
                repetition_penalty: Some(0.0),
                repetition_context_size: 1,
                presence_penalty: Some(-0.5),
                presence_context_size: 1,
                frequency_penalty: Some(0.5),
                frequency_context_size: 1,
            };
        }),
    ];
    for params in valid {
        params.validate().unwrap();
    }
}

/// A tokenizer with an SPM decoder (Python's `_is_spm_decoder`): `▁hi`,
/// `▁there`, `!` and the byte tokens of "é".
fn spm_tokenizer() -> tokenizers::Tokenizer {
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "WordLevel",
            "vocab": {"<unk>": 0, "▁hi": 1, "▁there": 2, "!": 3, "<0xC3>": 4, "<0xA9>": 5},
            "unk_token": "<unk>",
        },
    });
    json.to_string().parse().unwrap()
}

/// Streams `ids` through `detok`: the segments, then the final text.
fn stream(detok: &mut dyn StreamingDetokenizer, ids: &[u32]) -> (String, String) {
    detok.reset();
    let mut streamed = String::new();
    for &id in ids {
        detok.add_token(id, &[]).unwrap();
        streamed.push_str(&detok.last_segment().unwrap());
    }
    detok.finalize().unwrap();
    streamed.push_str(&detok.last_segment().unwrap());
    (streamed, detok.text().unwrap())
}

#[test]
fn ids_the_tokenizer_lacks_decode_to_nothing() {
    // Qwen2.5-VL's output layer has 151,936 rows, its tokenizer 151,665 ids:
    // 151,700 and 151,935 lie in the gap, u32::MAX far beyond it.
    let path = mlx_vlm::fixtures::qwen_tokenizer_dir()
        .unwrap()
        .join("tokenizer.json");
    let qwen = tokenizers::Tokenizer::from_file(&path).unwrap();
    assert!(qwen.id_to_token(151_700).is_none());
    let words = qwen.encode("Hello world, café", false).unwrap();
    let words = words.get_ids();
    let mut ids = vec![151_700];
    for (i, &id) in words.iter().enumerate() {
        ids.push(id);
        if i % 2 == 0 {
            ids.push(151_935);
        }
    }
    ids.push(u32::MAX);
    // `Tokenizer::decode` drops the ids it lacks: the detokenizers agree.
    let want = qwen.decode(&ids, false).unwrap();
    assert_eq!(want, "Hello world, café");
    let mut bpe = BPEStreamingDetokenizer::new(&qwen, false);
    assert_eq!(stream(&mut bpe, &ids), (want.clone(), want.clone()));
    let mut chosen = make_streaming_detokenizer(&qwen).unwrap();
    assert_eq!(stream(&mut *chosen, &ids), (want.clone(), want.clone()));
    let mut naive = NaiveStreamingDetokenizer::new(&qwen);
    assert_eq!(stream(&mut naive, &ids), (want.clone(), want));

    // SPM: an unknown id between two byte tokens does not split the
    // character they make.
    let spm = spm_tokenizer();
    let ids = [1, 99, 2, 4, 7, 5, 3, 1_000_000];
    let want = spm.decode(&ids, false).unwrap();
    assert_eq!(want, "hi thereé!");
    let mut detok = SPMStreamingDetokenizer::new(&spm, true);
    assert_eq!(stream(&mut detok, &ids), (want.clone(), want));
}

#[test]
fn server_token_streamer_matches_python() {
    // tests/fixtures/gen_server_streamer.py: Python's `_ServerTokenStreamer`.
    let path = mlx_vlm::fixtures::qwen_tokenizer_dir()
        .unwrap()
        .join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&path).unwrap();
    let factory = DetokenizerFactory::new(&tokenizer).unwrap();
    for case in record("server_streamer.json").as_array().unwrap() {
        let mut streamer = factory.server_streamer();
        let advance: Vec<Value> = ints(&case["ids"])
            .into_iter()
            .map(|id| Value::String(streamer.advance(id).unwrap()))
            .collect();
        assert_eq!(Value::Array(advance), case["advance"], "{}", case["ids"]);
        assert_eq!(
            streamer.finalize().unwrap(),
            case["finalize"].as_str().unwrap(),
            "{}",
            case["ids"]
        );
    }
}
