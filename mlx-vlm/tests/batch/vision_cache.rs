//! The vision feature cache (`mlx_vlm::vision_cache`) in the batch
//! generator: a request whose image an earlier one encoded takes the
//! features from the cache and still gives its own uncached `generate`
//! run's ids (Qwen2.5-VL in f32 and bf16, Qwen2-VL, Qwen3-VL); a hit's embeddings (and
//! Qwen3-VL's deepstack features) equal the uncached ones bit for bit in
//! f32; LRU eviction, the refused size 0, and keys that tell different
//! media apart. The other families' tests are in [`families`].

use std::sync::Arc;

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::batch::{BatchGenerator, BatchOptions, BatchRequest};
use mlx_vlm::fixtures;
use mlx_vlm::generate::{GenerateInputs, GenerateParams};
use mlx_vlm::models::qwen2_5_vl::qwen2_5_vl::PrefillArgs as Qwen2PrefillArgs;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::QwenVlInputs;
use mlx_vlm::models::qwen3_vl::qwen3_vl::PrefillArgs as Qwen3PrefillArgs;
use mlx_vlm::models::{InputEmbeddings, ModelInputs, VlmModel};
use mlx_vlm::vision_cache::{VisionCacheError, VisionCacheStats, VisionFeatureCache, VisionKey};

use super::qwen_prompt::{IMAGE_TOKEN, VISION_END, VISION_START};
use super::{assert_exact, assert_single_run, drive, qwen, qwen_tokenizer, small_chunks, tiny};

#[path = "vision_cache_families.rs"]
mod families;

/// Values per patch: 3 channels, 2 frames, `patch`² pixels.
fn patch_values(patch: i32) -> i32 {
    3 * 2 * patch * patch
}

/// An 8x8-patch image (16 tokens after the 2x2 merge) whose pixels vary
/// with `seed`, then `text`.
fn image_prompt(text: &[i32], seed: f32, patch: i32) -> GenerateInputs {
    let (h, w) = (8, 8);
    let mut ids = vec![VISION_START];
    ids.extend(std::iter::repeat_n(IMAGE_TOKEN, (h * w / 4) as usize));
    ids.push(VISION_END);
    ids.extend_from_slice(text);
    let n = h * w * patch_values(patch);
    let ramp = ops::arange(0, n, 1, Some(Dtype::Float32)).unwrap();
    let pixels = ops::sin(&ops::multiply(&ramp, seed).unwrap()).unwrap();
    let pixels = pixels.reshape(&[h * w, patch_values(patch)]).unwrap();
    let media = QwenVlInputs::images(pixels, &[[1, h, w]]).unwrap();
    let len = ids.len() as i32;
    GenerateInputs {
        input_ids: Array::from_slice(&ids, &[1, len]).unwrap(),
        mask: None,
        media: Some(ModelInputs::new(media, vec![[1, h, w]])),
    }
}

/// Request `i`: images 0 and 1 are the same picture under different text,
/// 2 another picture under 0's text, 3 text alone.
fn request(i: usize, patch: i32) -> BatchRequest {
    let text = request_text(i);
    let inputs = match i {
        0 => image_prompt(&text, 0.01, patch),
        1 => image_prompt(&text, 0.01, patch),
        2 => image_prompt(&request_text(0), 0.02, patch),
        _ => GenerateInputs::text(Array::from_slice(&text, &[1, text.len() as i32]).unwrap()),
    };
    BatchRequest {
        inputs,
        params: GenerateParams {
            max_tokens: 8,
            ..Default::default()
        },
    }
}

/// Request `i`'s text.
fn request_text(i: usize) -> Vec<i32> {
    (0..5 + 4 * i as i32)
        .map(|t| 300 + 41 * t + 7 * i as i32)
        .collect()
}

/// Requests 0 to 3 at once, then 1 again: 1 and the repeat of 1 hit the
/// entry 0 made, 2 misses, 3 never looks; every request's ids are its
/// uncached `generate` run's.
fn assert_hits_keep_single_run_ids(model: Arc<dyn VlmModel>, patch: i32) {
    assert_hits_keep_single_run_ids_of(model, &qwen_tokenizer(), |i| request(i, patch));
}

/// [`assert_hits_keep_single_run_ids`] for `request` (0 and 1: one image
/// under two texts, 2: another image, 3: text alone).
fn assert_hits_keep_single_run_ids_of(
    model: Arc<dyn VlmModel>,
    tokenizer: &tokenizers::Tokenizer,
    request: impl Fn(usize) -> BatchRequest,
) {
    let options = BatchOptions {
        vision_cache_size: Some(4),
        ..small_chunks(8)
    };
    let mut batcher = BatchGenerator::new(Arc::clone(&model), Vec::new(), options.clone());
    let arrivals = vec![
        (0..4).map(|i| (i, request(i))).collect(),
        vec![],
        vec![(4, request(1))],
    ];
    let (outcomes, _) = drive(&mut batcher, arrivals, |_, _, _| {});
    assert_eq!(
        batcher.vision_cache_stats(),
        Some(VisionCacheStats {
            hits: 2,
            misses: 2,
            entries: 2
        })
    );
    for i in 0..5 {
        let original = if i == 4 { 1 } else { i };
        assert_single_run(
            &*model,
            tokenizer,
            &outcomes,
            i,
            request(original),
            &options,
        );
    }
    assert_eq!(outcomes[&1].tokens, outcomes[&4].tokens);
    // Without a cache nothing is counted.
    let plain = BatchGenerator::new(model, Vec::new(), small_chunks(8));
    assert_eq!(plain.vision_cache_stats(), None);
}

#[test]
fn qwen2_5_vl_hits_keep_each_requests_single_run_ids() {
    let (_dir, model) = qwen(Dtype::Float32);
    assert_hits_keep_single_run_ids(model, 14);
}

/// bf16: the key hashes the patches cast to the tower's dtype.
#[test]
fn qwen2_5_vl_hits_keep_each_requests_single_run_ids_in_bf16() {
    let (_dir, model) = qwen(Dtype::Bfloat16);
    assert_hits_keep_single_run_ids(model, 14);
}

#[test]
fn qwen2_vl_hits_keep_each_requests_single_run_ids() {
    let (_dir, model) = tiny(fixtures::qwen2_vl_tiny());
    assert_hits_keep_single_run_ids(model, 14);
}

#[test]
fn qwen3_vl_hits_keep_each_requests_single_run_ids() {
    let (_dir, model) = tiny(fixtures::qwen3_vl_tiny());
    assert_hits_keep_single_run_ids(model, 16);
}

/// The uncached embeddings of `inputs`, then the cached ones twice (a
/// miss, then a hit): all three equal bit for bit.
fn embeddings_three_ways(model: &dyn VlmModel, inputs: &GenerateInputs) -> [InputEmbeddings; 3] {
    let mut cache = VisionFeatureCache::new(2).unwrap();
    let (ids, media) = (&inputs.input_ids, inputs.media.as_ref());
    let plain = model.get_input_embeddings(ids, media, None).unwrap();
    let miss = model
        .get_input_embeddings_cached(ids, media, None, &mut cache)
        .unwrap();
    let hit = model
        .get_input_embeddings_cached(ids, media, None, &mut cache)
        .unwrap();
    assert_eq!(
        cache.stats(),
        VisionCacheStats {
            hits: 1,
            misses: 1,
            entries: 1
        }
    );
    for (name, got) in [("miss", &miss), ("hit", &hit)] {
        assert_exact(name, &got.inputs_embeds, &plain.inputs_embeds);
    }
    [plain, miss, hit]
}

#[test]
fn a_hit_embeds_bit_for_bit_as_the_tower_in_f32() {
    let text = request_text(1);
    for (model, patch) in [
        (qwen(Dtype::Float32), 14),
        (tiny(fixtures::qwen2_vl_tiny()), 14),
    ] {
        let [plain, miss, hit] =
            embeddings_three_ways(&*model.1, &image_prompt(&text, 0.03, patch));
        let position_ids = |e: &InputEmbeddings| {
            let args = e.prefill.downcast_ref::<Qwen2PrefillArgs>().unwrap();
            args.position_ids.clone().unwrap()
        };
        assert_exact("positions", &position_ids(&hit), &position_ids(&plain));
        assert_exact("positions", &position_ids(&miss), &position_ids(&plain));
    }
    // Qwen3-VL: the deepstack features come back from the cache too.
    let (_dir, model) = tiny(fixtures::qwen3_vl_tiny());
    let [plain, miss, hit] = embeddings_three_ways(&*model, &image_prompt(&text, 0.03, 16));
    let deepstack = |e: &InputEmbeddings| {
        let args = e.prefill.downcast_ref::<Qwen3PrefillArgs>().unwrap();
        args.deepstack_visual_embeds.clone().unwrap()
    };
    let want = deepstack(&plain);
    assert!(!want.is_empty(), "the tiny Qwen3-VL has deepstack layers");
    for got in [deepstack(&miss), deepstack(&hit)] {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_exact("deepstack", g, w);
        }
    }
}

/// A key of one f32 tensor.
fn key(values: &[f32], shape: &[i32]) -> VisionKey {
    VisionKey::of(
        "qwen2_5_vl",
        &[Some(&Array::from_slice(values, shape).unwrap())],
    )
    .unwrap()
}

#[test]
fn the_cache_evicts_the_least_recently_used_and_refuses_size_0() {
    assert_eq!(
        VisionFeatureCache::new(0).unwrap_err(),
        VisionCacheError::ZeroCapacity
    );
    let mut cache = VisionFeatureCache::new(2).unwrap();
    let (a, b, c) = (key(&[1.0], &[1]), key(&[2.0], &[1]), key(&[3.0], &[1]));
    let features = |v: f32| vec![Array::from_slice(&[v, v], &[1, 2]).unwrap()];
    cache.put(a, features(1.0)).unwrap();
    cache.put(b, features(2.0)).unwrap();
    // `a` used last: `b` is the one to go.
    let got = cache.get(&a).unwrap();
    assert_exact("a", &got[0], &features(1.0)[0]);
    cache.put(c, features(3.0)).unwrap();
    assert!(cache.contains(&a) && cache.contains(&c) && !cache.contains(&b));
    assert!(cache.get(&b).is_none());
    // Storing a held key again replaces it without evicting another.
    cache.put(c, features(4.0)).unwrap();
    assert_exact("c", &cache.get(&c).unwrap()[0], &features(4.0)[0]);
    assert_eq!(
        cache.stats(),
        VisionCacheStats {
            hits: 2,
            misses: 1,
            entries: 2
        }
    );
    // get_or_encode runs the encoder on a miss only.
    let mut runs = 0;
    for _ in 0..2 {
        cache
            .get_or_encode(b, || {
                runs += 1;
                Ok(features(2.0))
            })
            .unwrap();
    }
    assert_eq!(runs, 1);
    assert!(!cache.contains(&a), "a was the least recently used");
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn different_media_never_share_a_key() {
    let base = key(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    // The same content in another array: the same key.
    assert_eq!(base, key(&[1.0, 2.0, 3.0, 4.0], &[2, 2]));
    let others = [
        // One value changed, by one ulp.
        key(
            &[1.0, 2.0, 3.0, f32::from_bits(4.0f32.to_bits() + 1)],
            &[2, 2],
        ),
        // The same bytes in another shape.
        key(&[1.0, 2.0, 3.0, 4.0], &[4, 1]),
        // The same bits as another dtype.
        VisionKey::of(
            "qwen2_5_vl",
            &[Some(
                &Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])
                    .unwrap()
                    .view(Dtype::Int32)
                    .unwrap(),
            )],
        )
        .unwrap(),
        // Another family's tower.
        VisionKey::of(
            "qwen3_vl",
            &[Some(
                &Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap(),
            )],
        )
        .unwrap(),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(&base, other, "variant {i}");
    }
    // The same patches under another grid (or none) differ too.
    let pixels = Array::from_slice(&[0.5f32; 8], &[2, 4]).unwrap();
    let grid = |h: i32, w: i32| Array::from_slice(&[1, h, w], &[1, 3]).unwrap();
    let with = |g: Option<&Array>| VisionKey::of("qwen2_5_vl", &[Some(&pixels), g]).unwrap();
    let keys = [with(Some(&grid(1, 2))), with(Some(&grid(2, 1))), with(None)];
    assert_ne!(keys[0], keys[1]);
    assert_ne!(keys[0], keys[2]);
    assert_ne!(keys[1], keys[2]);
}
