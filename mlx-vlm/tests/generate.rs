//! The generation engine on a mock model against Python mlx-vlm 0.7.6's
//! `stream_generate` on the same mock (tests/fixtures/gen_sampling.py):
//! the chunked-prefill call pattern, tokens, text deltas, log-probabilities,
//! EOS stop, max_tokens and stats.

use std::collections::HashMap;
use std::sync::Mutex;

use mlx_rs::nn::{Item, ItemMut, Module};
use mlx_rs::{Array, Dtype, idx, ops};
use mlx_vlm::Result;
use mlx_vlm::generate::{GenerateInputs, GenerateParams, generate, generate_step, stream_generate};
use mlx_vlm::models::cache::{Cache, make_prompt_cache};
use mlx_vlm::models::{FamilyModel, ModelInputs, VlmModel};
use mlx_vlm::processor::ModelProcessor;
use mlx_vlm::prompt_utils::MessageFormat;
use mlx_vlm::registry::{Family, MediaKinds};
use serde_json::{Value, json};

const VOCAB: i32 = 600;
const HIDDEN: i32 = 4;

/// Logits depend on the last input token and its position only, as the
/// Python mock's.
#[derive(Default)]
struct MockModel {
    calls: Mutex<Vec<Value>>,
    embed_calls: Mutex<usize>,
}

impl Module for MockModel {
    fn items<'a>(&'a self, _f: &mut dyn FnMut(&str, Item<'a>)) {}
    fn items_mut(&mut self, _f: &mut dyn FnMut(&str, ItemMut<'_>)) {}
}

/// The mock's processor inputs: Python's test passes `image_grid_thw`.
#[derive(Debug)]
struct MockInputs {
    image_grid_thw: Array,
}

/// What the mock's `get_input_embeddings` hands the prefill calls.
#[derive(Debug)]
struct MockPrefill {
    position_ids: Array,
    rope_deltas: Array,
    image_grid_thw: Option<Array>,
}

fn no_model(_: &serde_json::Map<String, Value>, _: &str) -> Result<Box<dyn VlmModel>> {
    Err(mlx_vlm::Error::InvalidArgument(
        "the mock is built by hand".into(),
    ))
}

fn no_check(
    _: &serde_json::Map<String, Value>,
    _: &str,
    _: &std::collections::BTreeMap<String, mlx_vlm::utils::TensorInfo>,
) -> Result<()> {
    Ok(())
}

fn no_processor(_: &std::path::Path, _: &Value) -> Result<Box<dyn ModelProcessor>> {
    Err(mlx_vlm::Error::InvalidArgument(
        "the mock has no processor".into(),
    ))
}

/// A toy family against the boundary: nothing generic knows it.
const MOCK_FAMILY: Family = Family {
    model_type: "mock",
    create: no_model,
    check_weights: no_check,
    processor: no_processor,
    processor_name: "MockProcessor",
    media: MediaKinds {
        images: true,
        videos: false,
        audio: false,
    },
    message_format: MessageFormat::ListWithImageFirst,
    prompt_rules: mlx_vlm::prompt_utils::PromptRules::DEFAULT,
};

impl FamilyModel for MockModel {
    type Inputs = MockInputs;
    type Prefill = MockPrefill;
    type State = ();

    const FAMILY: &'static Family = &MOCK_FAMILY;

    fn estimate_memory(
        &self,
        _request: &mlx_vlm::preflight::MemoryRequest,
    ) -> Result<mlx_vlm::preflight::MemoryEstimate> {
        Ok(Default::default())
    }

    fn model_type(&self) -> &str {
        "mock"
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&MockInputs>,
        _mask: Option<&Array>,
    ) -> Result<(Array, MockPrefill)> {
        *self.embed_calls.lock().unwrap() += 1;
        let n = input_ids.dim(1)?;
        let positions = ops::arange(0, n, 1, None)?.reshape(&[1, 1, n])?;
        Ok((
            ops::zeros(&[1, n, HIDDEN], Dtype::Float32)?,
            MockPrefill {
                position_ids: ops::broadcast_to(&positions, &[3, 1, n])?,
                rope_deltas: ops::zeros(&[1, 1], Dtype::Int32)?,
                image_grid_thw: inputs.map(|i| i.image_grid_thw.clone()),
            },
        ))
    }

    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        prefill: Option<&MockPrefill>,
        _state: &mut (),
    ) -> Result<Array> {
        let offset = cache[0].offset();
        let n = inputs.dim(1)?;
        self.calls.lock().unwrap().push(json!({
            "inputs_len": n,
            "embeds_len": inputs_embeds.map(|e| e.dim(1).unwrap()),
            "offset": offset,
            "position_ids": prefill.map(|p| &p.position_ids).is_some(),
            "rope_deltas": prefill.map(|p| &p.rope_deltas).is_some(),
            "image_grid_thw": prefill.and_then(|p| p.image_grid_thw.as_ref()).is_some(),
        }));
        let z = ops::zeros(&[1, 1, n, 1], Dtype::Float32)?;
        cache[0].update_and_fetch(&z, &z)?;
        let last = inputs.index(idx![.., -1..])?.as_type(Dtype::Int32)?;
        let pos = offset + n - 1;
        let target = ops::remainder(&ops::add(&ops::multiply(&last, 37)?, pos * 11 + 5)?, VOCAB)?;
        let v = ops::arange(0, VOCAB, 1, None)?.reshape(&[1, 1, VOCAB])?;
        let dist = ops::abs(&ops::subtract(
            &v,
            &target.index(idx![.., .., mlx_rs::NewAxis])?,
        )?)?;
        let logits = ops::multiply(&ops::negative(&dist.as_type(Dtype::Float32)?)?, 0.75)?;
        let wave = ops::multiply(
            &ops::sin(&ops::multiply(&v.as_type(Dtype::Float32)?, 0.37)?)?,
            0.5,
        )?;
        let logits = ops::add(&logits, &wave)?;
        Ok(ops::broadcast_to(&logits, &[1, n, VOCAB])?)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        make_prompt_cache(1, max_kv_size)
    }

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        Ok(weights)
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        Vec::new()
    }
}

fn dir() -> String {
    format!("{}/tests/fixtures/sampling", env!("CARGO_MANIFEST_DIR"))
}

fn record() -> Value {
    let text = std::fs::read_to_string(format!("{}/generate.json", dir())).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn params_of(args: &Value) -> GenerateParams {
    let f = |k: &str| args.get(k).and_then(Value::as_f64);
    let i = |k: &str| args.get(k).and_then(Value::as_i64);
    let mut p = GenerateParams {
        max_tokens: i("max_tokens").unwrap() as usize,
        prefill_step_size: i("prefill_step_size").map(|v| v as i32),
        ..Default::default()
    };
    if let Some(v) = f("temperature") {
        p.temperature = v;
    }
    if let Some(v) = f("top_p") {
        p.top_p = v;
    }
    if let Some(v) = i("top_k") {
        p.top_k = v as i32;
    }
    if let Some(v) = f("min_p") {
        p.min_p = v;
    }
    p.seed = args.get("seed").and_then(Value::as_u64);
    p.logits_processors.repetition_penalty = f("repetition_penalty");
    p.logits_processors.presence_penalty = f("presence_penalty");
    p.logits_processors.frequency_penalty = f("frequency_penalty");
    if let Some(v) = i("repetition_context_size") {
        p.logits_processors.repetition_context_size = v as i32;
    }
    if let Some(v) = i("presence_context_size") {
        p.logits_processors.presence_context_size = v as i32;
    }
    if let Some(v) = i("frequency_context_size") {
        p.logits_processors.frequency_context_size = v as i32;
    }
    p.logits_processors.logit_bias = args.get("logit_bias").map(|b| {
        b.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.as_f64().unwrap()))
            .collect()
    });
    p
}

fn assert_close(name: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let g = got.to_vec_as::<f64>().unwrap();
    let w = want.to_vec_as::<f64>().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 + 1e-5 * b.abs(),
            "{name}[{i}]: {a} != {b}"
        );
    }
}

fn inputs(case: &Value) -> GenerateInputs {
    let prompt: Vec<i32> = case["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i32)
        .collect();
    let n = prompt.len() as i32;
    GenerateInputs {
        input_ids: Array::from_slice(&prompt, &[1, n]).unwrap(),
        mask: None,
        media: Some(ModelInputs::new(
            MockInputs {
                image_grid_thw: Array::from_slice(&[1i32, 2, 2], &[1, 3]).unwrap(),
            },
            vec![[1, 2, 2]],
        )),
    }
}

#[test]
fn stream_generate_matches_python_on_a_mock_model() {
    let tok_dir = mlx_vlm::fixtures::qwen_tokenizer_dir().unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(tok_dir.join("tokenizer.json")).unwrap();
    let (logprobs, _) =
        mlx_rs::io::load_safetensors(format!("{}/generate.safetensors", dir())).unwrap();
    let record = record();
    for (name, case) in record.as_object().unwrap() {
        if name == "eos_resolution" {
            continue;
        }
        let args = &case["args"];
        let params = params_of(args);
        if let Some(seed) = args.get("global_seed").and_then(Value::as_u64) {
            mlx_rs::random::seed(seed).unwrap();
        }
        let eos: Vec<u32> = case
            .get("eos")
            .map(|e| {
                e.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .unwrap_or_default();
        let model = MockModel::default();
        let responses: Vec<_> = stream_generate(&model, &tokenizer, inputs(case), &eos, &params)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();

        let calls = Value::Array(model.calls.lock().unwrap().clone());
        assert_eq!(calls, case["calls"], "{name}: language_model calls");
        assert_eq!(
            *model.embed_calls.lock().unwrap(),
            case["embed_calls"].as_u64().unwrap() as usize
        );

        let field = |f: &dyn Fn(&mlx_vlm::generate::GenerationResponse) -> Value| -> Value {
            Value::Array(responses.iter().map(f).collect())
        };
        assert_eq!(field(&|r| json!(r.token)), case["tokens"], "{name}: tokens");
        assert_eq!(field(&|r| json!(r.text)), case["texts"], "{name}: texts");
        assert_eq!(
            field(&|r| json!(r.generation_tokens)),
            case["generation_tokens"],
            "{name}: generation_tokens"
        );
        assert_eq!(
            field(&|r| json!(r.prompt_tokens)),
            case["prompt_tokens"],
            "{name}: prompt_tokens"
        );
        assert_eq!(
            field(&|r| json!(r.finish_reason)),
            case["finish_reasons"],
            "{name}: finish_reasons"
        );
        let last = responses.last().unwrap();
        assert_eq!(
            json!(last.token_ids),
            case["token_ids"],
            "{name}: token_ids"
        );

        for (i, r) in responses.iter().enumerate() {
            let key = format!("{name}.{i}.logprobs");
            match logprobs.get(&key) {
                Some(want) => assert_close(&key, r.logprobs.as_ref().unwrap(), want),
                None => assert!(r.logprobs.is_none(), "{key}: Python has none"),
            }
            assert_eq!(r.total_tokens, r.prompt_tokens + r.generation_tokens);
            assert!(
                r.prompt_tps.is_finite() && r.prompt_tps > 0.0,
                "{name}: prompt_tps"
            );
            assert!(r.generation_tps.is_finite(), "{name}: generation_tps");
            assert_eq!(
                r.generation_tps > 0.0,
                r.generation_tokens > 0,
                "{name}: generation_tps"
            );
            assert!(r.peak_memory >= 0.0, "{name}: peak_memory");
        }

        // `generate` joins the same deltas and keeps the last stats.
        if args.get("temperature").is_none() {
            let model = MockModel::default();
            let result = generate(&model, &tokenizer, inputs(case), &eos, &params).unwrap();
            let text: String = responses.iter().map(|r| r.text.as_str()).collect();
            assert_eq!(result.text, text, "{name}: generate text");
            assert_eq!(result.token_ids, last.token_ids);
            assert_eq!(result.finish_reason, last.finish_reason);
            assert_eq!(result.generation_tokens, last.generation_tokens);
        }
    }
}

#[test]
fn eos_ids_resolve_like_python() {
    let tok_dir = mlx_vlm::fixtures::qwen_tokenizer_dir().unwrap();
    let case = &record()["eos_resolution"];
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in case["files"].as_object().unwrap() {
        std::fs::write(dir.path().join(name), value.to_string()).unwrap();
    }
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tok_dir.join(name), dir.path().join(name)).unwrap();
    }
    let tokenizer = mlx_vlm::tokenizer::Tokenizer::from_dir(dir.path()).unwrap();
    let ids = tokenizer.eos_token_ids();
    assert_eq!(json!(ids), case["eos_token_ids"]);
}

#[test]
fn bad_params_fail_before_any_work() {
    let tok_dir = mlx_vlm::fixtures::qwen_tokenizer_dir().unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(tok_dir.join("tokenizer.json")).unwrap();
    let case = json!({"prompt": [1, 2, 3, 4, 5]});
    let bad = [
        (
            GenerateParams {
                temperature: f64::NAN,
                ..Default::default()
            },
            "temperature must be a finite number >= 0 (0 samples greedily), got nan",
        ),
        (
            GenerateParams {
                top_p: 2.0,
                ..Default::default()
            },
            "top_p must be in (0, 1] (1 turns nucleus sampling off), got 2.0",
        ),
        (
            GenerateParams {
                max_kv_size: Some(0),
                ..Default::default()
            },
            "max_kv_size must be >= 1 (tokens the rotating KV cache keeps), got 0; \
             leave it unset (None) for an unbounded cache",
        ),
        (
            GenerateParams {
                prefill_step_size: Some(-2),
                ..Default::default()
            },
            "prefill_step_size must be >= 1 (prompt tokens per prefill chunk), got -2; \
             leave it unset (None) to prefill at once",
        ),
    ];
    for (params, want) in bad {
        let model = MockModel::default();
        let err = stream_generate(&model, &tokenizer, inputs(&case), &[], &params)
            .err()
            .expect("stream_generate accepted bad params");
        assert_eq!(err.to_string(), want);
        let err = generate(&model, &tokenizer, inputs(&case), &[], &params).unwrap_err();
        assert_eq!(err.to_string(), want);
        let err = generate_step(&model, inputs(&case), &params)
            .err()
            .expect("generate_step accepted bad params");
        assert_eq!(err.to_string(), want);
        assert!(model.calls.lock().unwrap().is_empty(), "{want}: model ran");
        assert_eq!(*model.embed_calls.lock().unwrap(), 0, "{want}: model ran");
    }
}

/// A byte-level tokenizer of `n` ids, `t0` to `t{n-1}`: the mock model's
/// 600-wide output reaches past it, as a real model's padded embedding does.
fn small_tokenizer(n: u32) -> tokenizers::Tokenizer {
    let vocab: serde_json::Map<String, Value> =
        (0..n).map(|i| (format!("t{i}"), json!(i))).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": true,
            "use_regex": true,
        },
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"},
    })
    .to_string()
    .parse()
    .unwrap()
}

#[test]
fn ids_the_tokenizer_lacks_do_not_end_generation() {
    let tokenizer = small_tokenizer(300);
    let case = json!({"prompt": [1, 2, 3]});
    let params = GenerateParams {
        max_tokens: 24,
        prefill_step_size: Some(2),
        ..Default::default()
    };
    let model = MockModel::default();
    let responses: Vec<_> = stream_generate(&model, &tokenizer, inputs(&case), &[], &params)
        .unwrap()
        .collect::<Result<_>>()
        .unwrap();
    let last = responses.last().unwrap();
    assert_eq!(last.finish_reason.as_deref(), Some("length"));
    let ids = last.token_ids.clone().unwrap();
    assert_eq!(ids.len(), 24);
    assert!(
        ids.iter().any(|&id| id >= 300) && ids.iter().any(|&id| id < 300),
        "the mock must sample ids on both sides of the tokenizer's end: {ids:?}"
    );
    // Each unknown id decodes to nothing, as `Tokenizer::decode` drops it.
    let text: String = responses.iter().map(|r| r.text.as_str()).collect();
    let known: String = ids
        .iter()
        .filter(|&&id| id < 300)
        .map(|id| format!("t{id}"))
        .collect();
    assert_eq!(text, known);
    assert_eq!(text, tokenizer.decode(&ids, false).unwrap());

    let model = MockModel::default();
    let result = generate(&model, &tokenizer, inputs(&case), &[], &params).unwrap();
    assert_eq!(result.text, text);
    assert_eq!(result.token_ids, Some(ids));
}

/// Values cross the boundary type-erased: another family's inputs, prefill
/// arguments or request state given to a model are a typed error naming
/// the mix-up, never a panic.
#[test]
fn another_familys_values_are_refused() {
    let qwen =
        mlx_vlm::registry::create_model(&mlx_vlm::fixtures::tiny_config(), "config.json").unwrap();
    let ids = Array::from_slice(&[1i32, 2, 3], &[1, 3]).unwrap();
    let mock_inputs = ModelInputs::new(
        MockInputs {
            image_grid_thw: Array::from_slice(&[1i32, 2, 2], &[1, 3]).unwrap(),
        },
        vec![[1, 2, 2]],
    );
    let err = qwen
        .get_input_embeddings(&ids, Some(&mock_inputs), None)
        .unwrap_err();
    assert!(
        err.to_string().contains("another model family") && err.to_string().contains("MockInputs"),
        "{err}"
    );

    let mock = MockModel::default();
    let features = VlmModel::get_input_embeddings(&mock, &ids, None, None).unwrap();
    let mut qwen_state = qwen.new_request_state();
    let mut cache = qwen.make_cache(None);
    let err = qwen
        .language_model(
            &ids,
            None,
            &mut cache,
            Some(&features.prefill),
            &mut qwen_state,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("prefill arguments of another model family"),
        "{err}"
    );

    let mut mock_state = mock.new_request_state();
    let err = qwen
        .language_model(&ids, None, &mut cache, None, &mut mock_state)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("request state of another model family"),
        "{err}"
    );
    assert_eq!(qwen.family().model_type, "qwen2_5_vl");
    assert_eq!(VlmModel::family(&mock).model_type, "mock");
}
