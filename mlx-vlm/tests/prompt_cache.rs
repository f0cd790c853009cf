//! Prompt cache reuse across turns against Python mlx-vlm 0.7.6:
//! `tests/fixtures/prompt_cache/gen_goldens.py` runs two greedy turns
//! through one `PromptCacheState` on the tiny Qwen2.5-VL (f32), for an
//! image then a text follow-up, a new image in the follow-up, a rotating
//! cache that never fills, one that wraps and an edit of a wrapped one.
//! Also the LRU [`PrefixCache`] (Rust only).

use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype};
use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};
use mlx_vlm::generate::{
    GenerateParams, GenerationResult, stream_generate, stream_generate_with_prompt_cache,
};
use mlx_vlm::models::cache::{KvCache, RotatingKvCache};
use mlx_vlm::models::{Cache, VlmModel};
use mlx_vlm::prompt_cache::{
    PrefixCache, PromptCacheState, multimodal_token_ids_from_config, prefix_cache_trim_amount,
};
use mlx_vlm::prompt_utils::{ChatTemplateOptions, apply_chat_template};
use mlx_vlm::utils::LoadOptions;
use mlx_vlm::{Error, ImageSource, Processor};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn goldens() -> Value {
    let path = fixture_dir().join("prompt_cache/goldens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The tiny Qwen2.5-VL in f32, Hugging Face layout, as the generator
/// writes it.
fn load() -> (Box<dyn VlmModel>, Processor) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prompt_cache_qwen2_5_vl_f32");
    let spec = CheckpointSpec {
        dtype: Dtype::Float32,
        layout: Layout::HuggingFace,
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::ensure_checkpoint(&dir, &fixtures::tiny_config(), &spec, |_| Ok(())).unwrap();
    mlx_vlm::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn images(names: &[Value]) -> Vec<ImageSource> {
    names
        .iter()
        .map(|n| {
            ImageSource::from(
                fixture_dir()
                    .join("qwen2_5_vl/images")
                    .join(n.as_str().unwrap()),
            )
        })
        .collect()
}

/// The prompt of `messages` with `n_images` images, as Python's
/// `apply_chat_template(processor, config, messages, num_images=n)`.
fn template(processor: &Processor, messages: &Value, n_images: usize) -> String {
    let options = ChatTemplateOptions {
        num_images: n_images,
        ..Default::default()
    };
    apply_chat_template(
        processor.chat_tokenizer(),
        processor.config(),
        messages,
        &options,
    )
    .unwrap()
}

/// One greedy turn; with a state, through it.
fn turn(
    model: &dyn VlmModel,
    processor: &Processor,
    prompt: &str,
    image_names: &[Value],
    max_kv_size: Option<i32>,
    state: Option<&mut PromptCacheState>,
) -> GenerationResult {
    let inputs = processor
        .prepare_inputs(prompt, &images(image_names))
        .unwrap();
    let params = GenerateParams {
        max_tokens: goldens()["max_tokens"].as_u64().unwrap() as usize,
        max_kv_size,
        ..Default::default()
    };
    let tokenizer = processor.tokenizer();
    let eos = processor.eos_token_ids();
    let stream = match state {
        Some(state) => {
            stream_generate_with_prompt_cache(model, tokenizer, inputs, eos, &params, state)
        }
        None => stream_generate(model, tokenizer, inputs, eos, &params),
    }
    .unwrap();
    let mut last = None;
    for r in stream {
        last = Some(r.unwrap());
    }
    last.unwrap()
}

/// Both turns of one case through one state, checked against Python: the
/// prompts, the ids, the reused prefix and the state's token count; the
/// second turn without the state gives Python's cold ids too.
fn check_case(model: &dyn VlmModel, processor: &Processor, name: &str) {
    let g = goldens();
    let case = &g["cases"][name];
    let all_images = case["images"].as_array().unwrap();
    let max_kv_size = case["max_kv_size"].as_i64().map(|v| v as i32);
    let mut state = PromptCacheState::new(multimodal_token_ids_from_config(processor.config()));

    // Turn 1: the first message, with its images.
    let images1 = case["turn1"]["images"].as_array().unwrap();
    let p1 = template(processor, &case["turn1"]["messages"], images1.len());
    assert_eq!(p1, case["turn1"]["prompt"].as_str().unwrap(), "{name}");
    let r1 = turn(
        model,
        processor,
        &p1,
        images1,
        max_kv_size,
        Some(&mut state),
    );
    let got1 = r1.token_ids.clone().unwrap();
    assert_eq!(got1, ids(&case["turn1"]["generated_ids"]), "{name} turn 1");
    assert_eq!(r1.cached_tokens, 0, "{name}: a fresh state holds nothing");
    let text1 = processor.tokenizer().decode(&got1, false).unwrap();
    assert_eq!(text1, case["turn1"]["text"].as_str().unwrap(), "{name}");
    assert_eq!(
        state.token_ids.as_ref().map(Vec::len),
        case["turn2"]["state_tokens_before"]
            .as_u64()
            .map(|n| n as usize),
        "{name}: the state holds the prompt and the generated ids"
    );

    // Turn 2: the whole conversation.
    let p2 = template(processor, &case["messages"], all_images.len());
    assert_eq!(p2, case["turn2"]["prompt"].as_str().unwrap(), "{name}");
    let r2 = turn(
        model,
        processor,
        &p2,
        all_images,
        max_kv_size,
        Some(&mut state),
    );
    let t2 = &case["turn2"];
    assert_eq!(
        r2.token_ids.clone().unwrap(),
        ids(&t2["generated_ids"]),
        "{name} turn 2"
    );
    assert_eq!(
        r2.cached_tokens as u64,
        t2["cached_tokens"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        r2.prompt_tokens as u64,
        t2["prompt_tokens"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        state.token_ids.as_ref().map(Vec::len),
        t2["state_tokens_after"].as_u64().map(|n| n as usize),
        "{name}"
    );

    // Turn 2 prefilled cold.
    let cold = turn(model, processor, &p2, all_images, max_kv_size, None);
    assert_eq!(
        cold.token_ids.clone().unwrap(),
        ids(&case["turn2_without_cache"]["generated_ids"]),
        "{name} turn 2 without the cache"
    );
    assert_eq!(cold.cached_tokens, 0);
}

#[test]
fn second_turn_reuses_the_prefix_with_pythons_ids() {
    let (model, processor) = load();
    let g = goldens();
    for name in g["cases"].as_object().unwrap().keys() {
        check_case(&*model, &processor, name);
    }
    // Where Python reuses a prefix the caches can go back to, the reused
    // turn's ids are the cold turn's.
    for name in ["image_then_text", "rotating_reuse"] {
        let case = &g["cases"][name];
        assert!(
            case["turn2"]["cached_tokens"].as_u64().unwrap() > 0,
            "{name}"
        );
        assert_eq!(
            case["turn2"]["generated_ids"],
            case["turn2_without_cache"]["generated_ids"]
        );
    }
    for name in ["new_image", "rotating_wrapped_edit"] {
        assert_eq!(g["cases"][name]["turn2"]["cached_tokens"], 0, "{name}");
    }
}

/// A `[1, 1, n, 2]` key/value update.
fn kv(n: i32) -> Array {
    Array::from_slice(
        &(0..2 * n).map(|x| x as f32).collect::<Vec<_>>(),
        &[1, 1, n, 2],
    )
    .unwrap()
}

fn filled(cache: &mut dyn Cache, n: i32) {
    for _ in 0..n {
        cache.update_and_fetch(&kv(1), &kv(1)).unwrap();
    }
}

/// A state holding `ids` in a plain cache of that length.
fn state(ids: &[u32]) -> PromptCacheState {
    let mut cache = KvCache::new();
    filled(&mut cache, ids.len() as i32);
    let mut s = PromptCacheState::new(vec![]);
    let model_state = load_state();
    s.update(ids.to_vec(), vec![Box::new(cache)], model_state);
    s
}

/// Some request state (its contents do not matter to the LRU).
fn load_state() -> mlx_vlm::models::RequestState {
    static MODEL: std::sync::OnceLock<Box<dyn VlmModel>> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| load().0).new_request_state()
}

#[test]
fn trim_rule_refuses_wrapped_windows() {
    // Python: `_prefix_cache_trim_amount`.
    let mut plain = KvCache::new();
    filled(&mut plain, 10);
    let caches: Vec<Box<dyn Cache>> = vec![Box::new(plain)];
    assert_eq!(prefix_cache_trim_amount(&caches, 7), Some(3));
    assert_eq!(prefix_cache_trim_amount(&caches, 12), Some(0));

    let mut window = RotatingKvCache::new(8, 0);
    filled(&mut window, 10);
    let caches: Vec<Box<dyn Cache>> = vec![Box::new(window)];
    assert_eq!(prefix_cache_trim_amount(&caches, 7), None);
    assert_eq!(prefix_cache_trim_amount(&caches, 10), Some(0));

    let mut window = RotatingKvCache::new(16, 0);
    filled(&mut window, 10);
    let mut caches: Vec<Box<dyn Cache>> = vec![Box::new(window)];
    assert_eq!(prefix_cache_trim_amount(&caches, 7), Some(3));
    assert_eq!(caches[0].trim(3), 3);
    assert_eq!((caches[0].offset(), caches[0].idx()), (7, Some(7)));
}

#[test]
fn prefix_cache_takes_the_longest_prefix_and_evicts_the_least_recently_used() {
    let mut lru = PrefixCache::new(2, None).unwrap();
    lru.insert(state(&[1, 2, 3]));
    lru.insert(state(&[1, 2, 4, 5]));
    assert_eq!(lru.len(), 2);
    assert_eq!(lru.longest_prefix(&[1, 2, 4, 9]), 3);
    assert_eq!(lru.longest_prefix(&[7]), 0);
    assert!(lru.take_longest_prefix(&[7]).is_none());

    // Taking removes; putting back makes it the most recent.
    let (taken, shared) = lru.take_longest_prefix(&[1, 2, 3, 8]).unwrap();
    assert_eq!(
        (taken.token_ids.as_deref(), shared),
        (Some(&[1, 2, 3][..]), 3)
    );
    assert_eq!(lru.len(), 1);
    lru.insert(taken);
    assert_eq!(lru.keys(), vec![&[1, 2, 3][..], &[1, 2, 4, 5][..]]);

    // A third entry evicts the least recently used ([1, 2, 4, 5]).
    lru.insert(state(&[9, 9]));
    assert_eq!(lru.keys(), vec![&[9, 9][..], &[1, 2, 3][..]]);

    // The same ids replace their entry.
    lru.insert(state(&[9, 9]));
    assert_eq!(lru.len(), 2);

    // A byte bound: each 3-token entry here holds one [1,1,256,2] f32 key
    // and value buffer (KvCache grows in steps of 256), 4096 bytes.
    let one = state(&[1, 2, 3]).nbytes();
    assert_eq!(one, 2 * 256 * 2 * 4);
    let mut lru = PrefixCache::new(10, Some(2 * one)).unwrap();
    for i in 0..3 {
        lru.insert(state(&[i, i + 1, i + 2]));
    }
    assert_eq!(lru.keys(), vec![&[2, 3, 4][..], &[1, 2, 3][..]]);
    assert_eq!(lru.nbytes(), 2 * one);
    // An entry larger than the bound is not kept.
    let mut small = PrefixCache::new(10, Some(one - 1)).unwrap();
    small.insert(state(&[1]));
    assert!(small.is_empty());
    // A state without a cache is not kept.
    small.insert(PromptCacheState::new(vec![]));
    assert!(small.is_empty());
}

#[test]
fn prefix_cache_bounds_must_hold_something() {
    for (entries, bytes, name) in [(0, None, "max_entries"), (1, Some(0), "max_bytes")] {
        match PrefixCache::new(entries, bytes) {
            Err(Error::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
            other => panic!("expected an InvalidParameter error, got {other:?}"),
        }
    }
}

#[test]
fn checkout_takes_a_whole_prefix_and_copies_a_partly_shared_one() {
    let mut lru = PrefixCache::new(4, None).unwrap();
    lru.insert(state(&[1, 2, 3, 4]));
    // Another conversation sharing the first two ids gets a copy; the
    // entry stays whole, and what the copy does never reaches it.
    let (mut copy, shared) = lru.checkout(&[1, 2, 7, 8]).unwrap();
    assert_eq!(shared, 2);
    assert_eq!(lru.len(), 1);
    let reused = copy.take_reusable(&[1, 2, 7, 8], false).unwrap();
    assert_eq!(reused.prefix_len, 2);
    let mut cache = reused.cache;
    assert_eq!(cache[0].offset(), 2);
    let marker = Array::from_slice(&[99.0f32, 99.0], &[1, 1, 1, 2]).unwrap();
    let (written, _) = cache[0].update_and_fetch(&marker, &marker).unwrap();
    assert_eq!(
        written.to_vec_as::<f32>().unwrap(),
        [0.0, 1.0, 0.0, 1.0, 99.0, 99.0]
    );
    let (entry, _) = lru.take_longest_prefix(&[1, 2, 3, 4, 5]).unwrap();
    let held = entry.cache.as_ref().unwrap()[0]
        .plain_kv()
        .unwrap()
        .unwrap()
        .0;
    // The entry's keys are its own four updates, untouched by the copy's
    // write at position 2.
    let mut original = KvCache::new();
    filled(&mut original, 4);
    let expected = original.plain_kv().unwrap().unwrap().0;
    assert_eq!(
        held.to_vec_as::<f32>().unwrap(),
        expected.to_vec_as::<f32>().unwrap()
    );
    lru.insert(entry);
    // A prompt extending an entry whole takes it out.
    let (taken, shared) = lru.checkout(&[1, 2, 3, 4, 9]).unwrap();
    assert_eq!(
        (shared, taken.token_ids.as_deref()),
        (4, Some(&[1, 2, 3, 4][..]))
    );
    assert!(lru.is_empty());
}
