//! The Qwen2.5-VL language model against Python mlx-vlm 0.7.6: goldens of
//! tests/fixtures/qwen2_5_vl/gen_goldens.py (intermediates, logits and
//! greedy generations of the tiny checkpoint in f32, bf16, q4, q8) and
//! gen_language.py (parameter keys, `get_rope_index` cases).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use mlx_rs::nn::{ItemMut, ModuleExt, Verify};
use mlx_rs::ops::{self, QuantizationMode};
use mlx_rs::{Array, Dtype, idx};
use mlx_vlm::Error;
use mlx_vlm::fixtures;
use mlx_vlm::models::base::AttentionMask;
use mlx_vlm::models::qwen2_5_vl::config::ModelConfig;
use mlx_vlm::models::qwen2_5_vl::language::LanguageModel;
use mlx_vlm::models::qwen2_5_vl::language::{LanguageModelArgs, RequestState};
use mlx_vlm::models::{Cache, KvCache};
use serde_json::Value;

const GOLDENS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qwen2_5_vl/goldens"
);

type Goldens = HashMap<String, Array>;

fn goldens(name: &str) -> Goldens {
    mlx_rs::io::load_safetensors(format!("{GOLDENS}/{name}.safetensors"))
        .unwrap()
        .0
}

fn g<'a>(goldens: &'a Goldens, key: &str) -> &'a Array {
    goldens
        .get(key)
        .unwrap_or_else(|| panic!("golden {key} missing"))
}

fn config_value(tied: bool) -> Value {
    let mut config = fixtures::tiny_config();
    config["tie_word_embeddings"] = Value::Bool(tied);
    config
}

fn model_config(config: &Value) -> ModelConfig {
    ModelConfig::from_map(config.as_object().unwrap().clone(), "config.json").unwrap()
}

/// The tiny checkpoint's language model in `dtype`, weights loaded strictly.
fn load(config: &Value, dtype: Dtype) -> LanguageModel {
    let cfg = model_config(config);
    let mut lm = LanguageModel::new(&cfg.text_config, &cfg).unwrap();
    // Python's load_weights takes the checkpoint's dtype; the strict update
    // here checks dtypes, so the fresh parameters are cast first.
    lm.apply_to_modules(&mut |_, m| {
        m.items_mut(&mut |_, item| {
            if let ItemMut::Param(p) = item {
                let cast = p.as_type(dtype).unwrap();
                p.set(cast);
            }
        })
    });
    let weights: BTreeMap<String, Array> = fixtures::hf_weights(config, dtype)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("model.") || k == "lm_head.weight")
        .collect();
    lm.update_parameters(&weights, Verify::Strict).unwrap();
    lm
}

/// `mlx_vlm.convert(quantize=True)`: every Linear/Embedding whose weight
/// size is a multiple of 64 (`get_class_predicate`), affine.
fn quantize(lm: &mut LanguageModel, group_size: i32, bits: i32) {
    mlx_rs::nn::quantize(
        lm,
        Some(group_size),
        Some(bits),
        QuantizationMode::Affine,
        |_, m| {
            m.parameters()
                .get("weight")
                .is_some_and(|w| w.size() % 64 == 0)
        },
    )
    .unwrap();
}

/// The model of a golden variant: f32, bf16, or bf16 quantized as the
/// checkpoint of q4/q8 was.
fn variant_model(variant: &str) -> LanguageModel {
    let config = config_value(true);
    match variant {
        "f32" => load(&config, Dtype::Float32),
        "bf16" => load(&config, Dtype::Bfloat16),
        _ => {
            let spec: Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{GOLDENS}/{variant}.quantization.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(spec["mode"], "affine");
            let mut lm = load(&config, Dtype::Bfloat16);
            let int = |k: &str| spec[k].as_i64().unwrap() as i32;
            quantize(&mut lm, int("group_size"), int("bits"));
            lm
        }
    }
}

/// Tolerances `(rtol, atol)` of a variant's activations.
fn tolerance(variant: &str) -> (f32, f32) {
    if variant == "f32" {
        (1e-5, 1e-4)
    } else {
        (2e-2, 2e-2)
    }
}

fn assert_close(name: &str, actual: &Array, expected: &Array, (rtol, atol): (f32, f32)) {
    assert_eq!(actual.shape(), expected.shape(), "{name}: shape");
    assert_eq!(actual.dtype(), expected.dtype(), "{name}: dtype");
    let a = actual.to_vec_as::<f32>().unwrap();
    let e = expected.to_vec_as::<f32>().unwrap();
    let bad: Vec<(usize, f32, f32)> = a
        .iter()
        .zip(&e)
        .enumerate()
        .filter(|(_, (x, y))| {
            // NaN counts as off.
            let within = (*x - *y).abs().partial_cmp(&(atol + rtol * y.abs()));
            !matches!(within, Some(Ordering::Less | Ordering::Equal))
        })
        .map(|(i, (x, y))| (i, *x, *y))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: {} of {} elements off (rtol {rtol}, atol {atol}); first: {:?}",
        bad.len(),
        a.len(),
        &bad[..bad.len().min(5)]
    );
}

fn assert_equal_ints(name: &str, actual: &Array, expected: &Array) {
    assert_eq!(actual.shape(), expected.shape(), "{name}: shape");
    assert_eq!(
        actual.to_vec_as::<i64>().unwrap(),
        expected.to_vec_as::<i64>().unwrap(),
        "{name}"
    );
}

fn new_cache(lm: &LanguageModel) -> Vec<Box<dyn Cache>> {
    lm.layers()
        .iter()
        .map(|_| Box::new(KvCache::new()) as Box<dyn Cache>)
        .collect()
}

fn keys(lm: &LanguageModel) -> Vec<String> {
    lm.parameters().into_keys().collect()
}

#[test]
fn parameter_keys_match_python() {
    let python: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{GOLDENS}/language_keys.json")).unwrap(),
    )
    .unwrap();
    let expected = |k: &str| -> Vec<String> { serde_json::from_value(python[k].clone()).unwrap() };
    let tied = load(&config_value(true), Dtype::Float32);
    assert_eq!(keys(&tied), expected("tied"));
    let untied = load(&config_value(false), Dtype::Float32);
    assert_eq!(keys(&untied), expected("untied"));
    let mut q4 = tied;
    quantize(&mut q4, 64, 4);
    assert_eq!(keys(&q4), expected("tied_q4"));
}

#[test]
fn get_rope_index_matches_python() {
    let lm = load(&config_value(true), Dtype::Float32);
    let f32g = goldens("f32");
    let processor = goldens("processor");
    let (position_ids, deltas) = lm
        .get_rope_index(
            g(&f32g, "single.input_ids"),
            Some(g(&processor, "single.image_grid_thw")),
            None,
            None,
        )
        .unwrap();
    assert_equal_ints(
        "text.position_ids",
        &position_ids,
        g(&f32g, "text.position_ids"),
    );
    assert_equal_ints("text.rope_deltas", &deltas, g(&f32g, "text.rope_deltas"));
    // Python keeps the ids' dtype for positions, int32 for the deltas.
    assert_eq!(position_ids.dtype(), Dtype::Int32);

    let rope = goldens("language_rope");
    for case in ["multi", "padded", "text_masked", "text_plain"] {
        let get = |k: &str| rope.get(&format!("{case}.{k}"));
        let (position_ids, deltas) = lm
            .get_rope_index(
                get("input_ids").unwrap(),
                get("image_grid_thw"),
                None,
                get("mask"),
            )
            .unwrap();
        assert_equal_ints(case, &position_ids, get("position_ids").unwrap());
        assert_equal_ints(case, &deltas, get("rope_deltas").unwrap());
    }
}

/// Videos: absolute-time temporal positions against transformers'
/// `get_rope_index` (`second_per_grid_ts` given), and Python mlx-vlm's
/// index positions without them (fixtures/qwen2_5_vl/gen_video_rope.py).
#[test]
fn video_rope_index_matches_transformers_and_mlx_vlm() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/qwen2_5_vl/video_rope.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 5);
    let ints = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|x| match x.as_array() {
                Some(row) => row.iter().map(|y| y.as_i64().unwrap()).collect(),
                None => vec![x.as_i64().unwrap()],
            })
            .collect()
    };
    let grid = |v: &Value| -> Option<Array> {
        let rows = ints(v);
        (!rows.is_empty()).then(|| {
            let rows: Vec<i32> = rows.iter().map(|&x| x as i32).collect();
            Array::from_slice(&rows, &[rows.len() as i32 / 3, 3]).unwrap()
        })
    };
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let mut config = config_value(true);
        config["vision_config"]["tokens_per_second"] = case["tokens_per_second"].clone();
        let lm = load(&config, Dtype::Float32);
        let ids: Vec<i32> = ints(&case["input_ids"]).iter().map(|&x| x as i32).collect();
        let ids = Array::from_slice(&ids, &[1, ids.len() as i32]).unwrap();
        let (images, videos) = (grid(&case["image_grid_thw"]), grid(&case["video_grid_thw"]));
        let times: Vec<f64> = case["second_per_grid_ts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        for (times, key) in [(Some(times.as_slice()), ""), (None, "mlx_vlm_")] {
            let (position_ids, deltas) = lm
                .get_rope_index_timed(&ids, images.as_ref(), videos.as_ref(), times, None)
                .unwrap();
            assert_eq!(
                position_ids.to_vec_as::<i64>().unwrap(),
                ints(&case[format!("{key}position_ids")]),
                "{name} {key}position ids"
            );
            assert_eq!(
                deltas.to_vec_as::<i64>().unwrap(),
                ints(&case[format!("{key}rope_deltas")]),
                "{name} {key}deltas"
            );
        }
    }
    // A negative or non-finite time is refused, naming the value.
    let lm = load(&config_value(true), Dtype::Float32);
    let ids = Array::from_slice(&[1i32, 2], &[1, 2]).unwrap();
    let video = Array::from_slice(&[2i32, 2, 2], &[1, 3]).unwrap();
    let err = lm
        .get_rope_index_timed(&ids, None, Some(&video), Some(&[-1.0]), None)
        .unwrap_err();
    assert!(err.to_string().contains("second_per_grid_ts -1"), "{err}");
}

#[test]
fn get_rope_index_rejects_grids_that_do_not_fit() {
    let lm = load(&config_value(true), Dtype::Float32);
    let f32g = goldens("f32");
    let ids = g(&f32g, "single.input_ids");
    let too_big = Array::from_slice(&[1i32, 20, 20], &[1, 3]).unwrap();
    let none = Array::from_slice::<i32>(&[], &[0, 3]).unwrap();
    let flat = Array::from_slice(&[1i32, 10, 14], &[3]).unwrap();
    for (grid, what) in [(&too_big, "too big"), (&none, "missing")] {
        match lm.get_rope_index(ids, Some(grid), None, None) {
            Err(Error::ImageTokenMismatch { .. }) => {}
            other => panic!("{what} grid: expected ImageTokenMismatch, got {other:?}"),
        }
    }
    assert!(matches!(
        lm.get_rope_index(ids, Some(&flat), None, None),
        Err(Error::InvalidArgument(_))
    ));
}

/// Every intermediate of `intermediates()` in gen_goldens.py, from the
/// golden `text.inputs_embeds`.
fn check_layers(variant: &str, check_sublayers: bool) {
    let lm = variant_model(variant);
    let gold = goldens(variant);
    let processor = goldens("processor");
    let tol = tolerance(variant);
    let h0 = g(&gold, "text.inputs_embeds");
    let position_ids = g(&gold, "text.position_ids");

    let layers = lm.layers();
    let (cos, sin) = layers[0]
        .self_attn
        .rotary_emb
        .forward(h0, position_ids)
        .unwrap();
    if check_sublayers {
        assert_close("text.rope_cos", &cos, g(&gold, "text.rope_cos"), tol);
        assert_close("text.rope_sin", &sin, g(&gold, "text.rope_sin"), tol);
    }
    let mask = AttentionMask::Causal;
    let mut h = h0.clone();
    for (i, layer) in layers.iter().enumerate() {
        if i == 0 && check_sublayers {
            let a = &layer.self_attn;
            let hn = layer.input_layernorm.forward(&h).unwrap();
            assert_close(
                "input_layernorm",
                &hn,
                g(&gold, "text.layer.0.input_layernorm"),
                tol,
            );
            for (name, proj) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
            ] {
                let key = format!("text.layer.0.{name}");
                assert_close(&key, &proj.forward(&hn).unwrap(), g(&gold, &key), tol);
            }
            let attn = a
                .forward(&hn, &mask, None, Some(position_ids), Some((&cos, &sin)))
                .unwrap();
            assert_close("self_attn", &attn, g(&gold, "text.layer.0.self_attn"), tol);
            let mlp = layer
                .mlp
                .forward(
                    &layer
                        .post_attention_layernorm
                        .forward(&ops::add(&h, &attn).unwrap())
                        .unwrap(),
                )
                .unwrap();
            assert_close("mlp", &mlp, g(&gold, "text.layer.0.mlp"), tol);
        }
        h = layer
            .forward(&h, &mask, None, Some(position_ids), Some((&cos, &sin)))
            .unwrap();
        let key = format!("text.layer.{i}");
        assert_close(&key, &h, g(&gold, &key), tol);
    }
    if check_sublayers {
        let normed = lm.model.norm.forward(&h).unwrap();
        assert_close("text.final_norm", &normed, g(&gold, "text.final_norm"), tol);
    }

    // `model(input_ids, pixel_values, image_grid_thw=grid)`: the language
    // model computes the mRoPE index itself, with no cache.
    let grid = g(&processor, "single.image_grid_thw");
    let args = LanguageModelArgs {
        has_pixel_values: true,
        image_grid_thw: Some(grid),
        ..Default::default()
    };
    let mut state = RequestState::default();
    let logits = lm
        .forward(
            g(&gold, "single.input_ids"),
            Some(h0),
            None,
            &mut [],
            &args,
            &mut state,
        )
        .unwrap();
    let last = logits.index(idx![0, -1]).unwrap();
    let logits_tol = if variant == "f32" { (0.0, 1e-4) } else { tol };
    assert_close("logits.last", &last, g(&gold, "logits.last"), logits_tol);
    if check_sublayers {
        let argmax = logits
            .index(idx![0])
            .unwrap()
            .argmax(Some(-1), false)
            .unwrap();
        assert_equal_ints("logits.argmax_all", &argmax, g(&gold, "logits.argmax_all"));
    }
    assert_equal_ints(
        "state.rope_deltas",
        state.rope_deltas.as_ref().unwrap(),
        g(&gold, "text.rope_deltas"),
    );
}

#[test]
fn layers_match_python_f32() {
    check_layers("f32", true);
}

#[test]
fn layers_match_python_bf16() {
    check_layers("bf16", true);
}

#[test]
fn layers_match_python_q4() {
    check_layers("q4", false);
}

#[test]
fn layers_match_python_q8() {
    check_layers("q8", false);
}

/// Checks one decode step's logits against the golden generation step
/// `step` of `case`: f32 exact argmax and logprobs; otherwise the golden id
/// must be the argmax, or in the top 2 where Python's own margin is small.
fn check_step(variant: &str, gold: &Goldens, case: &str, step: usize, logits: &Array) {
    let ids = g(gold, &format!("{case}.gen.token_ids"))
        .to_vec::<i32>()
        .unwrap();
    let top_ids = g(gold, &format!("{case}.gen.top5.ids"));
    let top_lp = g(gold, &format!("{case}.gen.top5.logprobs"));
    let row = logits.index(idx![0, -1]).unwrap();
    let logprobs = ops::subtract(&row, row.logsumexp(-1, true).unwrap())
        .unwrap()
        .as_type(Dtype::Float32)
        .unwrap();
    let want = ids[step];
    let lp = logprobs.to_vec::<f32>().unwrap();
    let mut order: Vec<usize> = (0..lp.len()).collect();
    order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
    let golden_lp = top_lp
        .index(idx![step as i32])
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let margin = golden_lp[0] - golden_lp[1];
    let top2 = [order[0] as i32, order[1] as i32];
    if variant == "f32" {
        assert_eq!(top2[0], want, "{case} step {step}: argmax");
        let gi = top_ids.index(idx![step as i32]).unwrap();
        let mine = ops::take(&logprobs, &gi, 0).unwrap();
        let expected = top_lp.index(idx![step as i32]).unwrap();
        assert_close(
            &format!("{case} step {step} top5 logprobs"),
            &mine,
            &expected,
            (0.0, 1e-4),
        );
    } else if margin < 0.125 {
        assert!(
            top2.contains(&want),
            "{case} step {step}: {want} not in top 2 {top2:?} (margin {margin})"
        );
    } else {
        assert_eq!(
            top2[0], want,
            "{case} step {step}: argmax (margin {margin})"
        );
    }
}

/// Python's greedy generation, teacher-forced: prefill all but the last
/// prompt token into KV caches with the prompt's position ids and rope
/// deltas, the last token as a step of its own, then each golden token.
fn check_decode(variant: &str) {
    let lm = variant_model(variant);
    let gold = goldens(variant);
    let processor = goldens("processor");

    // Image case: the golden embeddings with the vision features merged in.
    let ids = g(&gold, "single.input_ids");
    let embeds = g(&gold, "text.inputs_embeds");
    let n = ids.shape()[1];
    let args = LanguageModelArgs {
        position_ids: Some(g(&gold, "text.position_ids")),
        rope_deltas: Some(g(&gold, "text.rope_deltas")),
        image_grid_thw: Some(g(&processor, "single.image_grid_thw")),
        ..Default::default()
    };
    let prompt = ids.to_vec::<i32>().unwrap();
    decode(
        variant,
        &lm,
        &gold,
        "single",
        &prompt,
        Some(embeds),
        n,
        &args,
    );

    // Text case: token embeddings, positions from the all-ones mask as
    // Python's get_input_embeddings computes them.
    let ids = g(&gold, "text.input_ids");
    let mask = ops::ones_like(ids, None).unwrap();
    let (position_ids, rope_deltas) = lm.get_rope_index(ids, None, None, Some(&mask)).unwrap();
    let args = LanguageModelArgs {
        position_ids: Some(&position_ids),
        rope_deltas: Some(&rope_deltas),
        ..Default::default()
    };
    let prompt = ids.to_vec::<i32>().unwrap();
    decode(
        variant,
        &lm,
        &gold,
        "text",
        &prompt,
        None,
        ids.shape()[1],
        &args,
    );
}

#[allow(clippy::too_many_arguments)]
fn decode(
    variant: &str,
    lm: &LanguageModel,
    gold: &Goldens,
    case: &str,
    prompt: &[i32],
    embeds: Option<&Array>,
    n: i32,
    args: &LanguageModelArgs<'_>,
) {
    let ids = Array::from_slice(prompt, &[1, n]).unwrap();
    let mut cache = new_cache(lm);
    let mut state = RequestState::default();
    let head = ids.index(idx![.., ..n - 1]).unwrap();
    let head_embeds = embeds.map(|e| e.index(idx![.., ..n - 1]).unwrap());
    lm.forward(
        &head,
        head_embeds.as_ref(),
        None,
        &mut cache,
        args,
        &mut state,
    )
    .unwrap();
    let tail = ids.index(idx![.., n - 1..]).unwrap();
    let tail_embeds = embeds.map(|e| e.index(idx![.., n - 1..]).unwrap());
    let logits = lm
        .forward(
            &tail,
            tail_embeds.as_ref(),
            None,
            &mut cache,
            args,
            &mut state,
        )
        .unwrap();
    check_step(variant, gold, case, 0, &logits);

    let generated = g(gold, &format!("{case}.gen.token_ids"))
        .to_vec::<i32>()
        .unwrap();
    let plain = LanguageModelArgs::default();
    for step in 1..generated.len() {
        let y = Array::from_slice(&[generated[step - 1]], &[1, 1]).unwrap();
        let logits = lm
            .forward(&y, None, None, &mut cache, &plain, &mut state)
            .unwrap();
        check_step(variant, gold, case, step, &logits);
    }
    assert_eq!(cache[0].offset(), n + generated.len() as i32 - 1);
}

#[test]
fn decode_matches_python_generation_f32() {
    check_decode("f32");
}

#[test]
fn decode_matches_python_generation_bf16() {
    check_decode("bf16");
}

#[test]
fn decode_matches_python_generation_q4() {
    check_decode("q4");
}

#[test]
fn decode_matches_python_generation_q8() {
    check_decode("q8");
}

/// Prefill in chunks of 7 (Python's chunked prefill: full-prompt position
/// ids sliced by the cache offset) gives one-shot prefill's last logits.
#[test]
fn chunked_prefill_matches_one_shot() {
    for variant in ["f32", "bf16"] {
        let lm = variant_model(variant);
        let gold = goldens(variant);
        let processor = goldens("processor");
        let ids = g(&gold, "single.input_ids");
        let embeds = g(&gold, "text.inputs_embeds");
        let n = ids.shape()[1];
        let args = LanguageModelArgs {
            position_ids: Some(g(&gold, "text.position_ids")),
            rope_deltas: Some(g(&gold, "text.rope_deltas")),
            image_grid_thw: Some(g(&processor, "single.image_grid_thw")),
            ..Default::default()
        };

        let mut cache = new_cache(&lm);
        let mut state = RequestState::default();
        let one_shot = lm
            .forward(ids, Some(embeds), None, &mut cache, &args, &mut state)
            .unwrap()
            .index(idx![0, -1])
            .unwrap();

        let mut cache = new_cache(&lm);
        let mut state = RequestState::default();
        let mut last = None;
        for start in (0..n).step_by(7) {
            let end = (start + 7).min(n);
            let chunk = ids.index(idx![.., start..end]).unwrap();
            let chunk_embeds = embeds.index(idx![.., start..end]).unwrap();
            let logits = lm
                .forward(
                    &chunk,
                    Some(&chunk_embeds),
                    None,
                    &mut cache,
                    &args,
                    &mut state,
                )
                .unwrap();
            mlx_rs::eval(
                cache
                    .iter()
                    .flat_map(|c| c.state())
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .unwrap();
            last = Some(logits.index(idx![0, -1]).unwrap());
        }
        let tol = if variant == "f32" {
            (0.0, 1e-4)
        } else {
            tolerance(variant)
        };
        assert_close(
            &format!("{variant} chunked"),
            &last.unwrap(),
            &one_shot,
            tol,
        );
        assert_close(
            &format!("{variant} one-shot"),
            &one_shot,
            g(&gold, "logits.last"),
            tol,
        );
    }
}
