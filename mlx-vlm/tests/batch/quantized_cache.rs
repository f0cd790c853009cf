//! `kv_bits` in continuous batching.
//!
//! - `BatchQuantizedKvCache` against Python mlx-vlm 0.7.6's
//!   `BatchQuantizedKVCache` (goldens of
//!   tests/fixtures/batch/gen_batch_quantized_cache.py): rows of 5, 2 and
//!   3 tokens joined, decode steps (their masks and fetched quantized keys
//!   and values), a filter, an extend and an extraction, compared whole.
//! - `kv_bits` requests on the tiny Qwen2.5-VL (head_dim 32, as
//!   tests/kv_quant.rs reshapes it for `mx.quantize`): quantized from their first
//!   token, or crossing their `quantized_kv_start` while they decode in
//!   the batch, each gives its own `generate` run's ids; a batched step
//!   over quantized caches gives each row's single-step logits; a
//!   conversation continues from its batched turns' quantized caches.

use std::collections::HashMap;
use std::sync::Arc;

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::batch::{BatchGenerator, BatchRequest};
use mlx_vlm::fixtures::{self, CheckpointSpec};
use mlx_vlm::generate::GenerateParams;
use mlx_vlm::models::cache::{CachedKv, Mask, QuantizedArrays, QuantizedKvCache};
use mlx_vlm::models::{BatchQuantizedKvCache, Cache, VlmModel};

use super::exact::assert_exact;
use super::qwen_prompt::{IMAGE_TOKEN, qwen_inputs};
use super::{
    QWEN_PADDING, assert_batched_step_after, assert_conversation_with, assert_single_run,
    assert_staggered_batches, drive, load, qwen_request, qwen_tokenizer, run_turn, small_chunks,
};
use mlx_vlm::prompt_cache::PromptCacheState;

const GROUP: i32 = 32;
const BITS: i32 = 4;

/// Keys `[b, 2, n, 32]`, as the golden script builds them.
fn keys(b: i32, n: i32, base: f64) -> Array {
    let k = ops::arange(0, b * 2 * n * 32, 1, Some(Dtype::Float32))
        .unwrap()
        .reshape(&[b, 2, n, 32])
        .unwrap();
    ops::sin(&ops::add(ops::multiply(&k, 0.37f32).unwrap(), base).unwrap()).unwrap()
}

/// Row `r`'s prompt of `n` tokens through a request's `QuantizedKvCache`,
/// as a batch of one.
fn quantized_row(r: i32, n: i32) -> BatchQuantizedKvCache {
    let k = keys(1, n, 10.0 * f64::from(r + 1));
    let mut cache = QuantizedKvCache::new(GROUP, BITS);
    cache
        .update_and_fetch_kv(&k, &ops::multiply(&k, -2.0f32).unwrap())
        .unwrap();
    let (k, v, group, bits) = cache.quantized_kv().unwrap().unwrap();
    BatchQuantizedKvCache::merge(&[(k, v)], group, bits).unwrap()
}

fn assert_parts(goldens: &HashMap<String, Array>, name: &str, got: &QuantizedArrays) {
    for (part, array) in [
        ("data", &got.data),
        ("scales", &got.scales),
        ("biases", &got.biases),
    ] {
        let name = format!("{name}.{part}");
        assert_exact(&name, array, &goldens[&name]);
    }
}

fn assert_rows(goldens: &HashMap<String, Array>, stage: &str, cache: &BatchQuantizedKvCache) {
    let offsets = cache.offsets();
    let offsets = Array::from_slice(&offsets, &[offsets.len() as i32]).unwrap();
    let name = format!("{stage}.offset");
    assert_exact(&name, &offsets, &goldens[&name]);
}

fn assert_stage(goldens: &HashMap<String, Array>, stage: &str, cache: &BatchQuantizedKvCache) {
    let state = cache.state();
    let parts = |at: usize| QuantizedArrays {
        data: state[at].clone(),
        scales: state[at + 1].clone(),
        biases: state[at + 2].clone(),
    };
    assert_parts(goldens, &format!("{stage}.keys"), &parts(0));
    assert_parts(goldens, &format!("{stage}.values"), &parts(3));
    assert_rows(goldens, stage, cache);
    let pads = cache.left_padding();
    let pads = Array::from_slice(pads, &[pads.len() as i32]).unwrap();
    let name = format!("{stage}.left_padding");
    assert_exact(&name, &pads, &goldens[&name]);
}

/// One decode token per row: the mask first, then the update.
fn step(goldens: &HashMap<String, Array>, s: i32, cache: &mut BatchQuantizedKvCache) {
    let stage = format!("step{s}");
    match cache.make_mask(1, None, true).unwrap() {
        Mask::Array(mask) => {
            let name = format!("{stage}.mask");
            assert_exact(&name, &mask, &goldens[&name]);
        }
        other => panic!("expected an array mask, got {other:?}"),
    }
    let k = keys(cache.batch_size() as i32, 1, 50.0 + f64::from(s));
    let fetched = cache
        .update_and_fetch_kv(&k, &ops::multiply(&k, -2.0f32).unwrap())
        .unwrap();
    let CachedKv::Quantized {
        keys,
        values,
        group_size,
        bits,
    } = fetched
    else {
        panic!("a quantized cache fetched plain keys");
    };
    assert_eq!((group_size, bits), (GROUP, BITS));
    assert_parts(goldens, &format!("{stage}.fetched_keys"), &keys);
    assert_parts(goldens, &format!("{stage}.fetched_values"), &values);
    assert_rows(goldens, &stage, cache);
}

#[test]
fn batch_quantized_kv_cache_matches_pythons_steps_filter_extend_and_extract() {
    let path = format!(
        "{}/tests/fixtures/batch/batch_quantized_cache.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let (goldens, _) = mlx_rs::io::load_safetensors(path).unwrap();
    let mut batch = quantized_row(0, 5);
    batch.extend(quantized_row(1, 2)).unwrap();
    batch.extend(quantized_row(2, 3)).unwrap();
    assert_stage(&goldens, "merge", &batch);
    for s in 0..3 {
        step(&goldens, s, &mut batch);
    }
    batch.filter(&[2, 0]).unwrap();
    assert_stage(&goldens, "filter", &batch);
    batch.extend(quantized_row(3, 1)).unwrap();
    assert_stage(&goldens, "extend", &batch);
    for s in 3..5 {
        step(&goldens, s, &mut batch);
    }
    let extracted = batch.extract(1).unwrap();
    let (k, v) = extracted.quantized_state().unwrap().unwrap();
    assert_parts(&goldens, "extract.keys", &k);
    assert_parts(&goldens, "extract.values", &v);
    let offset = Array::from_slice(&[extracted.offset()], &[1]).unwrap();
    assert_exact("extract.offset", &offset, &goldens["extract.offset"]);
    assert!(batch.filter(&[3]).is_err(), "row 3 of a batch of three");
    assert!(batch.extract(3).is_err(), "row 3 of a batch of three");
    let other = BatchQuantizedKvCache::merge(&[], GROUP, 8).unwrap();
    assert!(batch.extend(other).is_err(), "rows of another width");
}

/// The tiny Qwen2.5-VL in f32 with head_dim 32 (2 heads, 1 KV head), as
/// tests/kv_quant.rs configures it: the smallest width `mx.quantize`
/// groups.
fn qwen() -> (tempfile::TempDir, Arc<dyn VlmModel>) {
    let mut config = fixtures::tiny_config();
    config["num_attention_heads"] = 2.into();
    config["num_key_value_heads"] = 1.into();
    config["rope_scaling"]["mrope_section"] = serde_json::json!([4, 6, 6]);
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype: Dtype::Float32,
        ..Default::default()
    };
    fixtures::write_checkpoint(dir.path(), &config, &spec).unwrap();
    let model = load(dir.path());
    (dir, model)
}

/// [`qwen_request`] with 4-bit KV caches quantized from token `start`.
fn kv_bits_request(i: usize, start: i32) -> BatchRequest {
    let mut request = qwen_request(i);
    request.params.kv_bits = Some(4.0);
    request.params.kv_group_size = GROUP;
    request.params.quantized_kv_start = start;
    request
}

/// Every request quantized from its first token: the decode batch is one
/// of quantized caches.
#[test]
fn kv_bits_requests_decode_in_quantized_batches() {
    let (_dir, model) = qwen();
    let request = |i| kv_bits_request(i, 0);
    assert_staggered_batches(model, &qwen_tokenizer(), request, small_chunks(4));
}

/// Requests crossing `quantized_kv_start` (24 tokens) at different steps:
/// some prompts are past it, the others reach it while they decode with
/// plain caches; each leaves its plain batch for a quantized one at the
/// step its own run quantizes, and gives that run's ids.
#[test]
fn kv_bits_requests_move_to_a_quantized_batch_at_their_start() {
    let (_dir, model) = qwen();
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(8);
    let request = |i: usize| {
        let mut r = kv_bits_request(i, 24);
        r.params.max_tokens = 14 + i;
        r
    };
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![
        vec![(0, request(0)), (1, request(1)), (2, request(2))],
        vec![],
        vec![(3, request(3))],
        vec![],
        vec![(4, request(4)), (5, request(5))],
    ];
    let mut two_kinds = false;
    let (outcomes, _) = drive(&mut batcher, arrivals, |_, batcher, _| {
        two_kinds |= batcher.batch_sizes().len() > 1;
    });
    assert!(two_kinds, "plain and quantized rows never decoded together");
    assert!(batcher.largest_batch() > 1, "{}", batcher.largest_batch());
    for i in 0..6 {
        assert_single_run(&*model, &tokenizer, &outcomes, i, request(i), &options);
    }
}

/// A batched step over quantized caches: each row's logits equal its
/// single step's.
#[test]
fn a_batched_quantized_step_gives_each_rows_single_step_logits() {
    let (_dir, model) = qwen();
    let prompts: Vec<_> = [0, 3, 2].map(|i| qwen_request(i).inputs).into();
    let quantize = |cache: &mut [Box<dyn Cache>]| {
        for layer in cache.iter_mut() {
            *layer = layer.to_quantized(GROUP, BITS).unwrap().unwrap();
        }
    };
    assert_batched_step_after(&*model, &prompts, &QWEN_PADDING, 0.0, quantize);
}

/// A conversation's turn hands back the caches its single run would keep:
/// quantized when its last step reached `quantized_kv_start`, plain when
/// the start is one token further (the last sampled token is never fed).
#[test]
fn a_batched_turn_hands_back_its_caches_quantized_from_its_last_step() {
    let (_dir, model) = qwen();
    let text: Vec<i32> = (0..9).map(|t| 400 + 11 * t).collect();
    let inputs = qwen_inputs(&text, None, None);
    // The prompt, then six decode steps for seven tokens.
    let last_step = inputs.input_ids.dim(1).unwrap() + 6;
    for (start, quantized) in [(last_step, true), (last_step + 1, false)] {
        let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), small_chunks(8));
        let mut request = kv_bits_request(0, start);
        request.inputs = inputs.clone();
        request.params.max_tokens = 7;
        let state = PromptCacheState::new(vec![IMAGE_TOKEN as u32]);
        let turn = run_turn(
            &mut batcher,
            request,
            state,
            vec![kv_bits_request(1, start)],
        );
        assert_eq!(turn.tokens.len(), 7);
        assert!(batcher.largest_batch() > 1, "{}", batcher.largest_batch());
        let cache = turn.kept.and_then(|k| k.cache).expect("the turn's caches");
        for layer in &cache {
            assert_eq!(layer.offset(), last_step, "start {start}");
            assert_eq!(layer.quantized_kv().is_some(), quantized, "start {start}");
        }
    }
}

/// Three turns of a conversation whose caches are quantized from token
/// [`START`]: the first turn crosses it while decoding in the batch, and
/// every turn gives its cold single run's ids.
#[test]
fn a_conversation_continues_from_the_quantized_caches_of_its_batched_turns() {
    const START: i32 = 14;
    let (_dir, model) = qwen();
    let params = GenerateParams {
        kv_bits: Some(4.0),
        kv_group_size: GROUP,
        quantized_kv_start: START,
        ..GenerateParams::default()
    };
    let kept = assert_conversation_with(
        &model,
        &qwen_tokenizer(),
        small_chunks(8),
        |text| qwen_inputs(text, None, None),
        vec![IMAGE_TOKEN as u32],
        || vec![kv_bits_request(1, START), kv_bits_request(2, START)],
        params,
    );
    let cache = kept.cache.expect("the last turn's caches");
    assert!(
        cache.iter().all(|c| c.quantized_kv().is_some()),
        "the kept caches are quantized"
    );
}
