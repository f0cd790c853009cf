//! Continuous batching (`mlx_vlm::batch::BatchGenerator`) on the tiny
//! Qwen2.5-VL and Qwen2-VL checkpoints (batched decode; `max_kv_size`
//! rings batched until they would wrap, else decoded per request):
//! requests arriving between steps, prompts of different lengths with and without images,
//! different `max_tokens`, stop ids, cancellation, a failing request among
//! good ones and `max_num_seqs` admission, each request's ids equal to its
//! own `generate` run (f32 and bf16); a batched step's logits against each
//! row's single step; conversations continued from the caches a finished
//! turn hands back (batched rows cut out of the batch, and per-request
//! caches), each turn equal to its cold run; and `BatchKvCache` against
//! Python mlx-vlm 0.7.6's `BatchKVCache`
//! (tests/fixtures/batch/gen_batch_cache.py); `kv_bits` requests in
//! plain and quantized batches (batch/quantized_cache.rs). At the end, the other
//! batched families (Qwen3-VL, Qwen3-VL-MoE, LLaVA, LLaVA-NeXT, Idefics3,
//! SmolVLM, Gemma 3, Gemma 3n, PaliGemma with Gemma and Gemma 2,
//! Kimi-VL): a batched step's logits against each row's single step, bit
//! for bit in f32 (the sliding-window families' short rows within 1e-5),
//! and staggered requests against their own runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mlx_rs::{Array, Dtype, idx, ops};
use mlx_vlm::batch::{BatchEvent, BatchGenerator, BatchOptions, BatchRequest, FinishReason};
use mlx_vlm::fixtures::{self, CheckpointSpec};
use mlx_vlm::generate::{GenerateInputs, GenerateParams, generate};
use mlx_vlm::models::cache::Mask;
use mlx_vlm::models::{BatchKvCache, BatchLayerCache, Cache, VlmModel};
use mlx_vlm::prompt_cache::PromptCacheState;
use mlx_vlm::{Error, LoadOptions, utils};

#[path = "common/exact.rs"]
mod exact;
use exact::assert_exact;

#[path = "common/qwen_prompt.rs"]
mod qwen_prompt;
use qwen_prompt::{QWEN2_PATCH, QWEN3_PATCH, prefill, qwen_inputs, qwen_inputs_with_patch};

#[path = "batch/vision_cache.rs"]
mod vision_cache;

#[path = "batch/rotating_cache.rs"]
mod rotating_cache;

#[path = "batch/quantized_cache.rs"]
mod quantized_cache;

/// Loads a tiny checkpoint written in `dir`.
fn load(dir: &Path) -> Arc<dyn VlmModel> {
    Arc::from(utils::load_model(dir, &LoadOptions::default()).unwrap())
}

/// A family's tiny model in f32.
fn tiny(family: fixtures::TinyModel) -> (tempfile::TempDir, Arc<dyn VlmModel>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype: Dtype::Float32,
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(dir.path(), &family, &spec).unwrap();
    let model = load(dir.path());
    (dir, model)
}

/// The tiny Qwen2.5-VL model in `dtype`.
fn qwen(dtype: Dtype) -> (tempfile::TempDir, Arc<dyn VlmModel>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype,
        ..Default::default()
    };
    fixtures::write_checkpoint(dir.path(), &fixtures::tiny_config(), &spec).unwrap();
    let model = load(dir.path());
    (dir, model)
}

fn qwen_tokenizer() -> tokenizers::Tokenizer {
    let dir = fixtures::qwen_tokenizer_dir().unwrap();
    tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap()
}

/// Request `i` of the Qwen tests: `5 + 3i` text tokens, an image on even
/// `i`, `max_tokens` varying with `i`.
fn qwen_request(i: usize) -> BatchRequest {
    qwen_request_with(i, QWEN2_PATCH)
}

/// [`qwen_request`] with `patch` pixel values per image patch.
fn qwen_request_with(i: usize, patch: i32) -> BatchRequest {
    let text: Vec<i32> = (0..5 + 3 * i as i32)
        .map(|t| 300 + 37 * t + i as i32)
        .collect();
    let image = i
        .is_multiple_of(2)
        .then_some((8, 8 + 4 * (i as i32 % 3), 0.01 * (i as f32 + 1.0)));
    BatchRequest {
        inputs: qwen_inputs_with_patch(&text, image, None, patch),
        params: GenerateParams {
            max_tokens: 6 + 2 * i,
            ..Default::default()
        },
    }
}

/// What a request ended with in the batch.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    tokens: Vec<u32>,
    reason: Option<FinishReason>,
    generation_tokens: usize,
    error: Option<String>,
}

/// Runs `batcher` until idle, inserting `arrivals[k]` before step `k`;
/// returns each request's outcome by arrival index, and the most requests
/// active after any step.
fn drive(
    batcher: &mut BatchGenerator,
    mut arrivals: Vec<Vec<(usize, BatchRequest)>>,
    mut on_step: impl FnMut(usize, &mut BatchGenerator, &HashMap<u64, usize>),
) -> (HashMap<usize, Outcome>, usize) {
    let mut index_of: HashMap<u64, usize> = HashMap::new();
    let mut outcomes: HashMap<usize, Outcome> = HashMap::new();
    let mut most_active = 0;
    arrivals.reverse();
    let mut step = 0;
    while !arrivals.is_empty() || !batcher.is_idle() {
        if let Some(now) = arrivals.pop() {
            for (index, request) in now {
                let id = batcher.insert(request).unwrap();
                index_of.insert(id, index);
            }
        }
        on_step(step, batcher, &index_of);
        for event in batcher.next() {
            let id = match &event {
                BatchEvent::Token { id, .. }
                | BatchEvent::Finished { id, .. }
                | BatchEvent::Failed { id, .. } => *id,
            };
            let outcome = outcomes.entry(index_of[&id]).or_insert(Outcome {
                tokens: Vec::new(),
                reason: None,
                generation_tokens: 0,
                error: None,
            });
            assert!(
                outcome.reason.is_none() && outcome.error.is_none(),
                "an event after the end: {event:?}"
            );
            match event {
                BatchEvent::Token { token, .. } => outcome.tokens.push(token),
                BatchEvent::Finished {
                    reason,
                    generation_tokens,
                    ..
                } => {
                    outcome.reason = Some(reason);
                    outcome.generation_tokens = generation_tokens;
                }
                BatchEvent::Failed { error, .. } => outcome.error = Some(error.to_string()),
            }
        }
        most_active = most_active.max(batcher.num_active());
        step += 1;
        assert!(step < 10_000, "the generator never became idle");
    }
    (outcomes, most_active)
}

/// The ids of a request's own `generate` run and its finish reason.
fn single_run(
    model: &dyn VlmModel,
    tokenizer: &tokenizers::Tokenizer,
    request: BatchRequest,
    options: &BatchOptions,
) -> (Vec<u32>, FinishReason) {
    let params = GenerateParams {
        prefill_step_size: options.prefill_step_size,
        max_kv_size: options.max_kv_size,
        ..request.params
    };
    let result = generate(model, tokenizer, request.inputs, &[], &params).unwrap();
    let reason = match result.finish_reason.as_deref() {
        Some("stop") => FinishReason::Stop,
        _ => FinishReason::Length,
    };
    (result.token_ids.unwrap_or_default(), reason)
}

/// Asserts that request `index` of the batch gave its single run's ids.
fn assert_single_run(
    model: &dyn VlmModel,
    tokenizer: &tokenizers::Tokenizer,
    outcomes: &HashMap<usize, Outcome>,
    index: usize,
    request: BatchRequest,
    options: &BatchOptions,
) {
    let (ids, reason) = single_run(model, tokenizer, request, options);
    let got = &outcomes[&index];
    assert_eq!(got.error, None, "request {index}");
    assert_eq!(got.tokens, ids, "request {index}: batch ids vs its own run");
    assert_eq!(got.reason, Some(reason), "request {index}");
    assert_eq!(got.generation_tokens, ids.len(), "request {index}");
}

fn small_chunks(max_num_seqs: usize) -> BatchOptions {
    BatchOptions {
        max_num_seqs,
        // Prompts of 6 to 40 tokens take one to ten chunks.
        prefill_step_size: Some(4),
        ..Default::default()
    }
}

#[test]
fn staggered_requests_give_their_single_run_ids() {
    let (_dir, model) = qwen(Dtype::Float32);
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(3);
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    // Two at once, then one each few steps, while the first ones decode.
    let arrivals = vec![
        vec![(0, qwen_request(0)), (1, qwen_request(1))],
        vec![],
        vec![(2, qwen_request(2))],
        vec![],
        vec![],
        vec![(3, qwen_request(3)), (4, qwen_request(4))],
        vec![],
        vec![(5, qwen_request(5))],
    ];
    let (outcomes, most_active) = drive(&mut batcher, arrivals, |_, batcher, _| {
        assert!(batcher.num_active() <= 3, "max_num_seqs 3 exceeded");
    });
    assert_eq!(most_active, 3, "admission should fill max_num_seqs");
    assert_eq!(outcomes.len(), 6);
    for i in 0..6 {
        assert_single_run(&*model, &tokenizer, &outcomes, i, qwen_request(i), &options);
        assert_eq!(outcomes[&i].tokens.len(), 6 + 2 * i, "request {i}");
    }
    // Qwen2.5-VL decodes in batches: forwards ran several rows at once.
    assert!(batcher.largest_batch() >= 2, "{}", batcher.largest_batch());
    let distinct: std::collections::HashSet<_> = outcomes.values().map(|o| &o.tokens).collect();
    assert!(
        distinct.len() > 3,
        "the requests should differ: {outcomes:?}"
    );
}

/// Six requests at once, text and images of different sizes, a
/// repetition penalty and a seeded sampler among them.
fn mixed_requests() -> Vec<BatchRequest> {
    let mut requests: Vec<BatchRequest> = (0..4).map(qwen_request).collect();
    let mut penalised = qwen_request(5);
    penalised.params.logits_processors.repetition_penalty = Some(1.3);
    requests.push(penalised);
    let mut sampled = qwen_request(3);
    sampled.params.temperature = 0.8;
    sampled.params.top_p = 0.9;
    sampled.params.seed = Some(7);
    requests.push(sampled);
    // Long enough that all six are decoding once the longest prompt is in.
    for (i, r) in requests.iter_mut().enumerate() {
        r.params.max_tokens = 16 + i;
    }
    requests
}

/// All of `mixed_requests` decode in one batch and give their own runs'
/// ids in `dtype`.
fn one_batch_gives_single_run_ids(dtype: Dtype) {
    let (_dir, model) = qwen(dtype);
    assert_one_batch(model);
}

/// `mixed_requests` on `model` decode in one batch, each with its own
/// run's ids.
fn assert_one_batch(model: Arc<dyn VlmModel>) {
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(8);
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![mixed_requests().into_iter().enumerate().collect()];
    let (outcomes, _) = drive(&mut batcher, arrivals, |_, _, _| {});
    assert_eq!(
        batcher.largest_batch(),
        6,
        "every request decoded in the batch"
    );
    for (i, request) in mixed_requests().into_iter().enumerate() {
        assert_single_run(&*model, &tokenizer, &outcomes, i, request, &options);
    }
}

#[test]
fn one_batch_of_six_gives_single_run_ids_in_f32() {
    one_batch_gives_single_run_ids(Dtype::Float32);
}

#[test]
fn one_batch_of_six_gives_single_run_ids_in_bf16() {
    one_batch_gives_single_run_ids(Dtype::Bfloat16);
}

#[test]
fn qwen2_vl_decodes_in_batches_too() {
    let (_dir, model) = tiny(fixtures::qwen2_vl_tiny());
    assert_one_batch(model);
}

#[test]
fn max_num_seqs_queues_the_rest_in_order() {
    let (_dir, model) = qwen(Dtype::Float32);
    let options = small_chunks(2);
    let mut batcher = BatchGenerator::new(model, Vec::new(), options);
    let ids: Vec<u64> = (0..4)
        .map(|i| batcher.insert(qwen_request(i)).unwrap())
        .collect();
    assert_eq!((batcher.num_active(), batcher.num_queued()), (0, 4));
    let mut first_token_step = HashMap::new();
    let mut finished_step = HashMap::new();
    let mut step = 0;
    while !batcher.is_idle() {
        for event in batcher.next() {
            match event {
                BatchEvent::Token { id, .. } => {
                    first_token_step.entry(id).or_insert(step);
                }
                BatchEvent::Finished { id, .. } => {
                    finished_step.insert(id, step);
                }
                BatchEvent::Failed { error, .. } => panic!("{error}"),
            }
        }
        assert!(batcher.num_active() <= 2);
        if step == 0 {
            assert_eq!((batcher.num_active(), batcher.num_queued()), (2, 2));
        }
        step += 1;
    }
    // FIFO: the third starts once one of the first two finished, the
    // fourth once two of the first three did.
    let firsts: Vec<usize> = ids.iter().map(|id| first_token_step[id]).collect();
    let mut ends: Vec<usize> = ids[..3].iter().map(|id| finished_step[id]).collect();
    assert!(
        firsts[0] < ends[0] && firsts[1] < ends[1],
        "{firsts:?} {ends:?}"
    );
    assert!(firsts[2] > ends[0].min(ends[1]), "{firsts:?} {ends:?}");
    ends.sort();
    assert!(firsts[3] > ends[1], "{firsts:?} {ends:?}");
}

#[test]
fn stop_ids_and_zero_max_tokens_end_as_in_generate() {
    let (_dir, model) = qwen(Dtype::Float32);
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(4);
    // Stop on the third token of request 1's own run.
    let (ids, _) = single_run(&*model, &tokenizer, qwen_request(1), &options);
    let stopping = || {
        let mut r = qwen_request(1);
        r.params.eos_tokens = vec![ids[2]];
        r
    };
    let zero = || {
        let mut r = qwen_request(0);
        r.params.max_tokens = 0;
        r
    };
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![vec![(0, stopping()), (1, zero()), (2, qwen_request(2))]];
    let (outcomes, _) = drive(&mut batcher, arrivals, |_, _, _| {});
    assert_single_run(&*model, &tokenizer, &outcomes, 0, stopping(), &options);
    assert_eq!(outcomes[&0].reason, Some(FinishReason::Stop));
    let first_stop = ids.iter().position(|&t| t == ids[2]).unwrap_or(2);
    assert_eq!(outcomes[&0].tokens.len(), first_stop + 1);
    assert_single_run(&*model, &tokenizer, &outcomes, 1, zero(), &options);
    assert_eq!(outcomes[&1].tokens, Vec::<u32>::new());
    assert_single_run(&*model, &tokenizer, &outcomes, 2, qwen_request(2), &options);
}

#[test]
fn cancelled_requests_end_and_the_others_go_on() {
    let (_dir, model) = qwen(Dtype::Float32);
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(2);
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![(0..4).map(|i| (i, qwen_request(i))).collect()];
    // After step 6: cancel request 1 (running) and 3 (still queued).
    let (outcomes, _) = drive(&mut batcher, arrivals, |step, batcher, index_of| {
        if step == 6 {
            assert_eq!(batcher.num_queued(), 2);
            for (&id, &index) in index_of {
                if index == 1 || index == 3 {
                    batcher.cancel(id);
                }
            }
            batcher.cancel(999);
            assert_eq!(batcher.num_queued(), 1);
        }
    });
    for i in [1, 3] {
        assert_eq!(outcomes[&i].reason, Some(FinishReason::Cancelled), "{i}");
    }
    assert!(!outcomes[&1].tokens.is_empty(), "request 1 was decoding");
    assert!(outcomes[&3].tokens.is_empty(), "request 3 never ran");
    let (ids1, _) = single_run(&*model, &tokenizer, qwen_request(1), &options);
    assert!(ids1.starts_with(&outcomes[&1].tokens));
    for i in [0, 2] {
        assert_single_run(&*model, &tokenizer, &outcomes, i, qwen_request(i), &options);
    }
}

#[test]
fn a_failing_request_is_dropped_and_the_others_go_on() {
    let (_dir, model) = qwen(Dtype::Float32);
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(4);
    // 16 patches make 4 image tokens; the prompt holds 3.
    let bad = BatchRequest {
        inputs: qwen_inputs(&[300, 301], Some((4, 4, 0.5)), Some(3)),
        params: GenerateParams::default(),
    };
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![
        vec![(0, qwen_request(0))],
        vec![(1, bad), (2, qwen_request(1))],
    ];
    let (outcomes, _) = drive(&mut batcher, arrivals, |_, _, _| {});
    let error = outcomes[&1].error.as_deref().unwrap_or("no error");
    assert!(error.contains("image"), "{error}");
    assert_eq!(outcomes[&1].reason, None);
    assert_single_run(&*model, &tokenizer, &outcomes, 0, qwen_request(0), &options);
    assert_single_run(&*model, &tokenizer, &outcomes, 2, qwen_request(1), &options);
}

#[test]
fn the_generator_can_move_to_a_generation_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<BatchGenerator>();
    assert_send::<BatchEvent>();
}

#[test]
fn bad_requests_fail_at_insert() {
    let (_dir, model) = qwen(Dtype::Float32);
    let mut batcher = BatchGenerator::new(model, Vec::new(), BatchOptions::default());
    let mut hot = qwen_request(1);
    hot.params.temperature = -1.0;
    match batcher.insert(hot) {
        Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "temperature"),
        other => panic!("expected an InvalidParameter error, got {other:?}"),
    }
    let mut empty = qwen_request(1);
    empty.inputs.input_ids = Array::from_slice::<i32>(&[], &[1, 0]).unwrap();
    let message = batcher.insert(empty).unwrap_err().to_string();
    assert!(message.contains("[1, 0]"), "{message}");
    let mut two = qwen_request(1);
    two.inputs.input_ids = Array::from_slice(&[1, 2, 3, 4], &[2, 2]).unwrap();
    assert!(batcher.insert(two).is_err());
    // Options are validated with the request.
    let mut batcher = BatchGenerator::new(
        test_model(),
        Vec::new(),
        BatchOptions {
            prefill_step_size: Some(0),
            ..Default::default()
        },
    );
    match batcher.insert(qwen_request(1)) {
        Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, "prefill_step_size"),
        other => panic!("expected an InvalidParameter error, got {other:?}"),
    }
    assert!(batcher.is_idle());
}

/// A model for tests that never run it.
fn test_model() -> Arc<dyn VlmModel> {
    Arc::from(mlx_vlm::registry::create_model(&fixtures::tiny_config(), "config.json").unwrap())
}

/// Every ported family decodes in batches; requests whose caches no
/// batched cache takes in (`max_kv_size` rings pinning their first 4
/// tokens that wrap before their request ends) decode one by one, here
/// with rings that wrap, each giving its single run's ids.
#[test]
fn requests_whose_caches_cannot_batch_run_per_request() {
    let (_dir, model) = qwen(Dtype::Float32);
    let tokenizer = qwen_tokenizer();
    let options = BatchOptions {
        max_kv_size: Some(10),
        ..small_chunks(8)
    };
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![
        vec![(0, qwen_request(0))],
        vec![],
        vec![(1, qwen_request(1)), (2, qwen_request(2))],
    ];
    let (outcomes, most_active) = drive(&mut batcher, arrivals, |_, _, _| {});
    assert_eq!(most_active, 3);
    assert_eq!(
        batcher.largest_batch(),
        0,
        "no request joined a decode batch"
    );
    for i in 0..3 {
        assert_single_run(&*model, &tokenizer, &outcomes, i, qwen_request(i), &options);
    }
}

/// `max_kv_size` rings that will not wrap before their requests end
/// decode in the batch (as plain rows), each giving its single run's ids
/// with the same `max_kv_size`.
#[test]
fn requests_whose_rings_will_not_wrap_decode_in_batches() {
    let (_dir, model) = qwen(Dtype::Float32);
    let options = BatchOptions {
        max_kv_size: Some(128),
        ..small_chunks(4)
    };
    assert_staggered_batches(model, &qwen_tokenizer(), qwen_request, options);
}

#[test]
fn a_batched_step_gives_each_rows_single_step_logits() {
    let (_dir, model) = qwen(Dtype::Float32);
    let prompts: Vec<_> = [0, 3, 2].map(|i| qwen_request(i).inputs).into();
    assert_batched_step(&*model, &prompts, &QWEN_PADDING, 1e-5);
}

/// Row `r`'s prompt keys and values, as `gen_batch_cache.py` builds them.
fn cache_row(r: i32, n: i32) -> (Array, Array) {
    let k = ops::arange(0, 2 * n * 3, 1, Some(Dtype::Float32))
        .unwrap()
        .reshape(&[1, 2, n, 3])
        .unwrap();
    let k = ops::add(&k, 1000.0 * f64::from(r + 1)).unwrap();
    let v = ops::negative(&k).unwrap();
    // Through a KvCache, as Python's rows are.
    let mut cache = mlx_vlm::models::KvCache::new();
    cache.update_and_fetch(&k, &v).unwrap();
    cache.plain_kv().unwrap().unwrap()
}

/// The cache's state against the goldens of `stage`.
fn assert_stage(goldens: &HashMap<String, Array>, stage: &str, cache: &BatchKvCache) {
    let state = cache.state();
    assert_exact(
        &format!("{stage}.keys"),
        &state[0],
        &goldens[&format!("{stage}.keys")],
    );
    assert_exact(
        &format!("{stage}.values"),
        &state[1],
        &goldens[&format!("{stage}.values")],
    );
    let offsets = cache.offsets();
    let offsets = Array::from_slice(&offsets, &[offsets.len() as i32]).unwrap();
    assert_exact(
        &format!("{stage}.offset"),
        &offsets,
        &goldens[&format!("{stage}.offset")],
    );
    let pads = cache.left_padding();
    let pads = Array::from_slice(pads, &[pads.len() as i32]).unwrap();
    let name = format!("{stage}.left_padding");
    assert_exact(&name, &pads, &goldens[&name]);
}

#[test]
fn batch_kv_cache_matches_pythons_merge_update_mask_filter_and_extend() {
    let path = format!(
        "{}/tests/fixtures/batch/batch_cache.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let (goldens, _) = mlx_rs::io::load_safetensors(path).unwrap();
    let mut batch =
        BatchKvCache::merge(&[cache_row(0, 5), cache_row(1, 2), cache_row(2, 7)]).unwrap();
    assert_stage(&goldens, "merge", &batch);

    let k = ops::arange(0, 3 * 2 * 3, 1, Some(Dtype::Float32))
        .unwrap()
        .reshape(&[3, 2, 1, 3])
        .unwrap();
    let k = ops::add(&k, 5000.0).unwrap();
    let (keys, values) = batch
        .update_and_fetch(&k, &ops::negative(&k).unwrap())
        .unwrap();
    assert_exact("update.keys", &keys, &goldens["update.keys"]);
    assert_exact("update.values", &values, &goldens["update.values"]);
    assert_stage(&goldens, "update", &batch);
    match batch.make_mask(1, None, false).unwrap() {
        Mask::Array(mask) => assert_exact("update.mask", &mask, &goldens["update.mask"]),
        other => panic!("expected an array mask, got {other:?}"),
    }

    batch.filter(&[2, 0]).unwrap();
    assert_stage(&goldens, "filter", &batch);
    batch
        .extend(BatchKvCache::merge(&[cache_row(3, 4)]).unwrap())
        .unwrap();
    assert_stage(&goldens, "extend", &batch);
    batch.filter(&[1]).unwrap();
    assert_stage(&goldens, "filter_one", &batch);
    assert!(batch.filter(&[3]).is_err(), "row 3 of a batch of one");
}

/// What one turn of a conversation gave: its ids, the prompt tokens its
/// cache held, and the conversation it handed back.
struct Turn {
    tokens: Vec<u32>,
    cached_tokens: usize,
    kept: Option<PromptCacheState>,
}

/// Runs `request` continuing `state`, with `company` inserted beside it,
/// until the generator is idle.
fn run_turn(
    batcher: &mut BatchGenerator,
    request: BatchRequest,
    state: PromptCacheState,
    company: Vec<BatchRequest>,
) -> Turn {
    let id = batcher.insert_with_prompt_cache(request, state).unwrap();
    for other in company {
        batcher.insert(other).unwrap();
    }
    let mut turn = Turn {
        tokens: Vec::new(),
        cached_tokens: usize::MAX,
        kept: None,
    };
    let mut steps = 0;
    while !batcher.is_idle() {
        for event in batcher.next() {
            match event {
                BatchEvent::Token { id: t, token, .. } if t == id => turn.tokens.push(token),
                BatchEvent::Finished {
                    id: t,
                    reason,
                    cached_tokens,
                    prompt_cache,
                    ..
                } if t == id => {
                    assert_ne!(reason, FinishReason::Cancelled);
                    turn.cached_tokens = cached_tokens;
                    turn.kept = prompt_cache;
                }
                BatchEvent::Failed { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        steps += 1;
        assert!(steps < 10_000, "the generator never became idle");
    }
    turn
}

/// Three turns of one conversation on `model` under `options`, each
/// prompt the last one, its answer and a new question (`inputs` makes a
/// prompt of text ids): every turn after the first takes the last one's
/// cache, prefilling only the rest, and gives the ids of its cold single
/// run.
fn assert_conversation(
    model: &Arc<dyn VlmModel>,
    tokenizer: &tokenizers::Tokenizer,
    options: BatchOptions,
    inputs: impl Fn(&[i32]) -> GenerateInputs,
    media_token_ids: Vec<u32>,
    company: impl Fn() -> Vec<BatchRequest>,
) {
    let params = GenerateParams::default();
    assert_conversation_with(
        model,
        tokenizer,
        options,
        inputs,
        media_token_ids,
        company,
        params,
    );
}

/// [`assert_conversation`] with each turn's `params` (but `max_tokens`,
/// 7); returns the conversation the last turn handed back.
fn assert_conversation_with(
    model: &Arc<dyn VlmModel>,
    tokenizer: &tokenizers::Tokenizer,
    options: BatchOptions,
    inputs: impl Fn(&[i32]) -> GenerateInputs,
    media_token_ids: Vec<u32>,
    company: impl Fn() -> Vec<BatchRequest>,
    params: GenerateParams,
) -> PromptCacheState {
    let mut batcher = BatchGenerator::new(Arc::clone(model), Vec::new(), options.clone());
    let request = |text: &[i32]| BatchRequest {
        inputs: inputs(text),
        params: GenerateParams {
            max_tokens: 7,
            ..params.clone()
        },
    };
    let mut text: Vec<i32> = (0..9).map(|t| 400 + 11 * t).collect();
    let mut state = PromptCacheState::new(media_token_ids);
    let mut held = 0;
    for turn in 0..3 {
        let got = run_turn(&mut batcher, request(&text), state, company());
        let (cold, _) = single_run(&**model, tokenizer, request(&text), &options);
        assert_eq!(got.tokens, cold, "turn {turn}: ids vs the cold single run");
        assert_eq!(got.cached_tokens, held, "turn {turn}: prompt tokens reused");
        // The caches hold the prompt and every generated id but the last
        // (never fed back).
        let mut ids = inputs(&text).input_ids.to_vec_as::<u32>().unwrap();
        ids.extend(&got.tokens);
        ids.pop();
        let kept = got
            .kept
            .expect("a finished turn hands its conversation back");
        assert_eq!(kept.token_ids.as_deref(), Some(&ids[..]), "turn {turn}");
        let offsets: Vec<i32> = kept.cache.iter().flatten().map(|c| c.offset()).collect();
        assert_eq!(
            offsets.iter().max(),
            Some(&(ids.len() as i32)),
            "turn {turn}"
        );
        held = ids.len();
        text.extend(got.tokens.iter().map(|&t| t as i32));
        text.extend([520 + turn, 521, 522]);
        state = kept;
    }
    state
}

#[test]
fn a_conversation_continues_from_the_cache_its_batched_turn_handed_back() {
    let (_dir, model) = qwen(Dtype::Float32);
    let image = Some((8, 8, 0.02));
    assert_conversation(
        &model,
        &qwen_tokenizer(),
        small_chunks(8),
        |text| qwen_inputs(text, image, None),
        vec![qwen_prompt::IMAGE_TOKEN as u32],
        || vec![qwen_request(1), qwen_request(2)],
    );
}

#[test]
fn a_conversation_continues_from_the_rings_of_its_batched_turns() {
    // `max_kv_size` rings that will not wrap decode in the batch as plain
    // rows and come back as rings of the same bound.
    let (_dir, model) = qwen(Dtype::Float32);
    let options = BatchOptions {
        max_kv_size: Some(512),
        ..small_chunks(8)
    };
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let text: Vec<i32> = (0..9).map(|t| 400 + 11 * t).collect();
    let request = BatchRequest {
        inputs: qwen_inputs(&text, None, None),
        params: GenerateParams {
            max_tokens: 7,
            ..Default::default()
        },
    };
    let turn = run_turn(
        &mut batcher,
        request,
        PromptCacheState::new(Vec::new()),
        vec![qwen_request(1), qwen_request(2)],
    );
    assert!(batcher.largest_batch() > 1, "{}", batcher.largest_batch());
    let kept = turn.kept.expect("the conversation is handed back");
    for cache in kept.cache.iter().flatten() {
        assert_eq!(cache.max_size(), Some(512));
        assert_eq!(cache.offset(), 9 + 7 - 1);
    }
    assert_conversation(
        &model,
        &qwen_tokenizer(),
        options,
        |text| qwen_inputs(text, None, None),
        Vec::new(),
        || vec![qwen_request(1), qwen_request(2)],
    );
}

#[test]
fn a_conversation_continues_from_the_sliding_window_caches_of_its_batched_turns() {
    let (_dir, model) = tiny(fixtures::gemma3_tiny());
    let tokenizer =
        tokenizers::Tokenizer::from_file(fixtures::gemma_tokenizer_dir().join("tokenizer.json"))
            .unwrap();
    let text_inputs = |text: &[i32]| {
        let n = text.len() as i32;
        GenerateInputs::text(Array::from_slice(text, &[1, n]).unwrap())
    };
    assert_conversation(
        &model,
        &tokenizer,
        small_chunks(8),
        text_inputs,
        Vec::new(),
        Vec::new,
    );
    // A request inserted without a conversation hands none back.
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), small_chunks(2));
    batcher
        .insert(BatchRequest {
            inputs: text_inputs(&[400, 411, 422]),
            params: GenerateParams {
                max_tokens: 3,
                ..Default::default()
            },
        })
        .unwrap();
    let mut handed_back = Vec::new();
    while !batcher.is_idle() {
        for event in batcher.next() {
            if let BatchEvent::Finished { prompt_cache, .. } = event {
                handed_back.push(prompt_cache.is_some());
            }
        }
    }
    assert_eq!(handed_back, vec![false]);
}

/// One batched decode step of `prompts` (each prefilled in one call,
/// its greedy token next) against each row's own step: the batch's
/// rows are left-padded by `padding`, and each row's logits are within
/// `tolerance` of its single step's.
fn assert_batched_step(
    model: &dyn VlmModel,
    prompts: &[GenerateInputs],
    padding: &[i32],
    tolerance: f32,
) {
    assert_batched_step_after(model, prompts, padding, tolerance, |_| {});
}

/// [`assert_batched_step`] with `convert` applied to each prompt's caches
/// after its prefill (say, quantizing them).
fn assert_batched_step_after(
    model: &dyn VlmModel,
    prompts: &[GenerateInputs],
    padding: &[i32],
    tolerance: f32,
    convert: impl Fn(&mut [Box<dyn Cache>]),
) {
    let mut caches = Vec::new();
    let mut states = Vec::new();
    let mut last = Vec::new();
    for inputs in prompts {
        let qwen_prompt::Prefilled {
            logits,
            cache,
            state,
            ..
        } = prefill(model, inputs);
        let y = ops::argmax(&logits.index(idx![.., -1, ..]).unwrap(), Some(-1), false).unwrap();
        last.push(y.reshape(&[1, 1]).unwrap());
        let mut cache = cache;
        convert(&mut cache);
        caches.push(cache);
        states.push(state);
    }
    // The batch, from the caches as they are now.
    let layers = caches[0].len();
    let mut batch: Vec<BatchLayerCache> = (0..layers)
        .map(|l| {
            let mut rows = caches
                .iter()
                .map(|c| BatchLayerCache::join(&*c[l], 1).unwrap().unwrap());
            let mut batch = rows.next().unwrap();
            for row in rows {
                batch.extend(row).unwrap();
            }
            batch
        })
        .collect();
    // The padding of the layers that keep every token.
    let plain = batch
        .iter()
        .find(|c| matches!(c, BatchLayerCache::Plain(_) | BatchLayerCache::Quantized(_)));
    assert_eq!(plain.unwrap().left_padding(), padding);
    let inputs = ops::concatenate(&last, 0).unwrap();
    let batched = {
        let mut refs: Vec<_> = states.iter_mut().collect();
        model.decode_batch(&inputs, &mut batch, &mut refs).unwrap()
    };
    let rows = prompts.len() as i32;
    assert_eq!(batched.shape(), &[rows, 1, batched.dim(-1).unwrap()]);
    for (row, ((cache, state), y)) in caches.iter_mut().zip(&mut states).zip(&last).enumerate() {
        let single = model.language_model(y, None, cache, None, state).unwrap();
        let r = row as i32;
        let got = batched.index(idx![r..r + 1, .., ..]).unwrap();
        let diff = ops::abs(&ops::subtract(&got, &single).unwrap())
            .unwrap()
            .max(None::<i32>, false)
            .unwrap()
            .item_as::<f32>()
            .unwrap();
        println!("row {row}: largest |batched - single| logit difference {diff:e}");
        assert!(diff <= tolerance, "row {row}: {diff}");
    }
}

/// Requests arriving two, then one, then two at a time on `model` under
/// `options`: each gives its own `generate` run's ids (with the same
/// options), and forwards ran several rows at once.
fn assert_staggered_batches(
    model: Arc<dyn VlmModel>,
    tokenizer: &tokenizers::Tokenizer,
    request: impl Fn(usize) -> BatchRequest,
    options: BatchOptions,
) {
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![
        vec![(0, request(0)), (1, request(1))],
        vec![],
        vec![(2, request(2))],
        vec![],
        vec![],
        vec![(3, request(3)), (4, request(4))],
    ];
    let (outcomes, _) = drive(&mut batcher, arrivals, |_, _, _| {});
    assert_eq!(outcomes.len(), 5);
    for i in 0..5 {
        assert_single_run(&*model, tokenizer, &outcomes, i, request(i), &options);
    }
    assert!(batcher.largest_batch() > 1, "{}", batcher.largest_batch());
}

/// Request `i` of the Qwen3-VL tests: [`qwen_request`]'s, with 16x16
/// patches, and long enough that several decode together.
fn qwen3_request(i: usize) -> BatchRequest {
    let mut request = qwen_request_with(i, QWEN3_PATCH);
    request.params.max_tokens = 10 + 2 * i;
    request
}

/// A family's batched step against each row's single step (requests 0,
/// 3 and 2 of `request`, left-padded by `padding`), bit for bit in f32,
/// then staggered requests against their own runs.
fn assert_family_batches(
    family: fixtures::TinyModel,
    tokenizer_dir: &Path,
    request: fn(usize) -> BatchRequest,
    padding: &[i32],
) {
    assert_family_batches_within(family, tokenizer_dir, request, padding, 0.0);
}

/// [`assert_family_batches`], each row's batched logits within
/// `tolerance` of its single step's.
fn assert_family_batches_within(
    family: fixtures::TinyModel,
    tokenizer_dir: &Path,
    request: fn(usize) -> BatchRequest,
    padding: &[i32],
    tolerance: f32,
) {
    let (_dir, model) = tiny(family);
    let prompts: Vec<_> = [0, 3, 2].map(|i| request(i).inputs).into();
    assert_batched_step(&*model, &prompts, padding, tolerance);
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_dir.join("tokenizer.json")).unwrap();
    assert_staggered_batches(model, &tokenizer, request, small_chunks(4));
}

/// Prompts of 23, 14 and 45 tokens.
const QWEN_PADDING: [i32; 3] = [22, 31, 0];

#[test]
fn qwen3_vl_decodes_in_batches() {
    let tokenizer = fixtures::qwen_tokenizer_dir().unwrap();
    let family = fixtures::qwen3_vl_tiny();
    assert_family_batches(family, &tokenizer, qwen3_request, &QWEN_PADDING);
}

#[test]
fn qwen3_vl_moe_decodes_in_batches() {
    let tokenizer = fixtures::qwen_tokenizer_dir().unwrap();
    let family = fixtures::qwen3_vl_moe_tiny();
    assert_family_batches(family, &tokenizer, qwen3_request, &QWEN_PADDING);
}

/// Request `i` of the plain-RoPE families' tests: `4 + 5i` text ids
/// below their tiny vocabularies (512), `max_tokens` varying with `i`.
fn text_request(i: usize) -> BatchRequest {
    text_request_below(i, 500)
}

/// [`text_request`] with every id below `vocab` (at least 21).
fn text_request_below(i: usize, vocab: i32) -> BatchRequest {
    let ids: Vec<i32> = (0..4 + 5 * i as i32)
        .map(|t| 20 + (t * 13 + 7 * i as i32) % (vocab - 20))
        .collect();
    let n = ids.len() as i32;
    BatchRequest {
        inputs: GenerateInputs::text(Array::from_slice(&ids, &[1, n]).unwrap()),
        params: GenerateParams {
            max_tokens: 8 + 2 * i,
            ..Default::default()
        },
    }
}

/// Prompts of 4, 19 and 14 tokens.
const TEXT_PADDING: [i32; 3] = [15, 0, 5];

#[test]
fn llava_decodes_in_batches() {
    let tokenizer = fixtures::llama_tokenizer_dir();
    let family = fixtures::llava_tiny();
    assert_family_batches(family, &tokenizer, text_request, &TEXT_PADDING);
}

#[test]
fn llava_next_decodes_in_batches() {
    let tokenizer = fixtures::llama_tokenizer_dir();
    let family = fixtures::llava_next_tiny();
    assert_family_batches(family, &tokenizer, text_request, &TEXT_PADDING);
}

#[test]
fn idefics3_decodes_in_batches() {
    let tokenizer = fixtures::smollm_tokenizer_dir();
    let family = fixtures::idefics3_tiny();
    assert_family_batches(family, &tokenizer, text_request, &TEXT_PADDING);
}

#[test]
fn smolvlm_decodes_in_batches() {
    let tokenizer = fixtures::smollm_tokenizer_dir();
    let family = fixtures::smolvlm_tiny();
    assert_family_batches(family, &tokenizer, text_request, &TEXT_PADDING);
}

#[test]
fn a_request_stopped_early_hands_its_conversation_back() {
    let (_dir, model) = qwen(Dtype::Float32);
    let tokenizer = qwen_tokenizer();
    let options = small_chunks(4);
    let request = |text: &[i32]| BatchRequest {
        inputs: qwen_inputs(text, None, None),
        params: GenerateParams {
            max_tokens: 20,
            ..Default::default()
        },
    };
    let text: Vec<i32> = (0..7).map(|t| 300 + 13 * t).collect();
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let id = batcher
        .insert_with_prompt_cache(request(&text), PromptCacheState::new(Vec::new()))
        .unwrap();
    batcher.insert(qwen_request(1)).unwrap();
    // Stopped after its third token (as a matched stop string would).
    let mut tokens = Vec::new();
    while tokens.len() < 3 {
        for event in batcher.next() {
            if let BatchEvent::Token { id: t, token, .. } = event
                && t == id
            {
                tokens.push(token);
            }
        }
    }
    assert_eq!(batcher.num_batched(), 2, "both rows decode in the batch");
    batcher.stop(id);
    let mut kept = None;
    while !batcher.is_idle() {
        for event in batcher.next() {
            match event {
                BatchEvent::Token { id: t, .. } => assert_ne!(t, id, "a token after stop"),
                BatchEvent::Finished {
                    id: t,
                    reason,
                    generation_tokens,
                    prompt_cache,
                    ..
                } if t == id => {
                    assert_eq!((reason, generation_tokens), (FinishReason::Stop, 3));
                    kept = prompt_cache;
                }
                _ => {}
            }
        }
    }
    // The caches hold the prompt and the three tokens: the batch's last
    // step ran on the third (pipelined, it samples before reporting).
    let kept = kept.expect("a stopped request hands its conversation back");
    let mut ids: Vec<u32> = text.iter().map(|&t| t as u32).collect();
    ids.extend(&tokens);
    assert_eq!(kept.token_ids.as_deref(), Some(&ids[..]));
    // The next turn continues from it and gives its cold run's ids.
    let mut next: Vec<i32> = text.clone();
    next.extend(tokens.iter().map(|&t| t as i32));
    next.extend([530, 531]);
    let turn = run_turn(&mut batcher, request(&next), kept, Vec::new());
    assert_eq!(turn.cached_tokens, ids.len());
    let (cold, _) = single_run(&*model, &tokenizer, request(&next), &options);
    assert_eq!(turn.tokens, cold);
}

/// Gemma 3 (sliding-window layers of 8 tokens between global ones):
/// prompts of 4, 19 and 14 tokens, shorter and longer than the window,
/// the staggered ones decoding past it (its conversations:
/// `a_conversation_continues_from_the_sliding_window_caches_of_its_batched_turns`).
/// The rows filling the window step bit for bit;
/// the short one does not: the full batched ring hands its keys over
/// rotated with its padding (as Python's `BatchRotatingKVCache`), so
/// attention sums them in another order than its single run does.
#[test]
fn gemma3_decodes_in_batches() {
    let tokenizer = fixtures::gemma_tokenizer_dir();
    let family = fixtures::gemma3_tiny();
    assert_family_batches_within(family, &tokenizer, text_request, &TEXT_PADDING, 1e-5);
}

/// PaliGemma and Gemma 3n cannot continue a conversation's caches and get
/// a cold prefill's ids (`FamilyModel::reuses_prompt_cache`): their second
/// turn reuses nothing and gives its cold run's ids.
#[test]
fn families_that_cannot_continue_a_cache_prefill_every_turn_cold() {
    let tokenizer =
        tokenizers::Tokenizer::from_file(fixtures::gemma_tokenizer_dir().join("tokenizer.json"))
            .unwrap();
    let request = |text: &[i32]| {
        let n = text.len() as i32;
        BatchRequest {
            inputs: GenerateInputs::text(Array::from_slice(text, &[1, n]).unwrap()),
            params: GenerateParams {
                max_tokens: 7,
                ..Default::default()
            },
        }
    };
    for family in [fixtures::paligemma_tiny(), fixtures::gemma3n_tiny()] {
        let (_dir, model) = tiny(family);
        assert!(!model.reuses_prompt_cache());
        let options = small_chunks(8);
        let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
        let mut text: Vec<i32> = (0..9).map(|t| 400 + 11 * t).collect();
        let first = run_turn(
            &mut batcher,
            request(&text),
            PromptCacheState::new(Vec::new()),
            Vec::new(),
        );
        let kept = first.kept.expect("the conversation is handed back");
        text.extend(first.tokens.iter().map(|&t| t as i32));
        text.extend([520, 521, 522]);
        let second = run_turn(&mut batcher, request(&text), kept, Vec::new());
        assert_eq!(second.cached_tokens, 0, "{}", model.model_type());
        let (cold, _) = single_run(&*model, &tokenizer, request(&text), &options);
        assert_eq!(second.tokens, cold, "{}", model.model_type());
    }
}

#[test]
fn paligemma_decodes_in_batches() {
    let tokenizer = fixtures::gemma_tokenizer_dir();
    let family = fixtures::paligemma_tiny();
    assert_family_batches(family, &tokenizer, text_request, &TEXT_PADDING);
}

/// PaliGemma 2's decoder (Gemma 2: eager attention with soft-capped f32
/// scores, the batch's mask added to them), as the KV-quantization
/// goldens configure it.
#[test]
fn paligemma2_decodes_in_batches() {
    let tokenizer = fixtures::gemma_tokenizer_dir();
    let mut family = fixtures::paligemma_tiny();
    let text = family.config["text_config"].as_object_mut().unwrap();
    for (key, value) in [
        ("model_type", serde_json::json!("gemma2")),
        ("num_attention_heads", serde_json::json!(2)),
        ("head_dim", serde_json::json!(32)),
        ("query_pre_attn_scalar", serde_json::json!(32)),
        ("attn_logit_softcapping", serde_json::json!(50.0)),
        ("final_logit_softcapping", serde_json::json!(30.0)),
    ] {
        text.insert(key.into(), value);
    }
    assert_family_batches(family, &tokenizer, text_request, &TEXT_PADDING);
}

/// [`text_request`] below the tiny Kimi vocabulary (482).
fn kimi_request(i: usize) -> BatchRequest {
    text_request_below(i, 460)
}

#[test]
fn kimi_vl_decodes_in_batches() {
    let tokenizer = fixtures::kimi_vl_tokenizer_dir();
    let family = fixtures::kimi_vl_tiny();
    assert_family_batches(family, &tokenizer, kimi_request, &TEXT_PADDING);
}

/// Gemma 3n (sliding-window layers of 8 tokens, the last two layers
/// reading the keys and values of earlier ones): prompts of 4, 19 and 14
/// tokens, shorter and longer than the window, the staggered ones
/// decoding past it. As in [`gemma3_decodes_in_batches`], the rows filling
/// the window step bit for bit and the short one within 1e-5 (the full
/// batched ring hands its keys over rotated with its padding, so attention
/// sums them in another order than its single run does).
#[test]
fn gemma3n_decodes_in_batches() {
    let tokenizer = fixtures::gemma_tokenizer_dir();
    let family = fixtures::gemma3n_tiny();
    assert_family_batches_within(family, &tokenizer, text_request, &TEXT_PADDING, 1e-5);
}
