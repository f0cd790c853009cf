//! `BatchRotatingKvCache` against Python mlx-vlm 0.7.6's
//! `BatchRotatingKVCache` (goldens of
//! tests/fixtures/batch/gen_batch_rotating_cache.py): a merge of windows
//! longer and shorter than the window, decode steps that wrap the ring
//! (their masks, fetched keys and state), a filter, an extend and an
//! extraction, all compared whole.

use std::collections::HashMap;

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::models::cache::{Mask, RotatingKvCache};
use mlx_vlm::models::{BatchRotatingKvCache, Cache};

use super::exact::assert_exact;

const WINDOW: i32 = 4;

/// Row `r`'s prompt through a `RotatingKvCache`, as the generator builds it.
fn rotating_row(r: i32, n: i32) -> (Array, Array, i32) {
    let k = ops::arange(0, 2 * n * 3, 1, Some(Dtype::Float32))
        .unwrap()
        .reshape(&[1, 2, n, 3])
        .unwrap();
    let k = ops::add(&k, 1000.0 * f64::from(r + 1)).unwrap();
    let mut cache = RotatingKvCache::new(WINDOW, 0);
    cache
        .update_and_fetch(&k, &ops::negative(&k).unwrap())
        .unwrap();
    cache.rotating_kv().unwrap().unwrap()
}

fn assert_stage(goldens: &HashMap<String, Array>, stage: &str, cache: &BatchRotatingKvCache) {
    let state = cache.state();
    for (i, part) in ["keys", "values"].iter().enumerate() {
        let name = format!("{stage}.{part}");
        assert_exact(&name, &state[i], &goldens[&name]);
    }
    let offsets = cache.offsets();
    let offsets = Array::from_slice(&offsets, &[offsets.len() as i32]).unwrap();
    let name = format!("{stage}.offset");
    assert_exact(&name, &offsets, &goldens[&name]);
    let pads = cache.left_padding();
    let pads = Array::from_slice(pads, &[pads.len() as i32]).unwrap();
    let name = format!("{stage}.left_padding");
    assert_exact(&name, &pads, &goldens[&name]);
}

/// One decode token per row (the generator's `step`): mask, then update.
fn step(goldens: &HashMap<String, Array>, s: i32, cache: &mut BatchRotatingKvCache) {
    let stage = format!("step{s}");
    match cache.make_mask(1, None, true).unwrap() {
        Mask::Array(mask) => assert_exact(
            &format!("{stage}.mask"),
            &mask,
            &goldens[&format!("{stage}.mask")],
        ),
        other => panic!("expected an array mask, got {other:?}"),
    }
    let b = cache.batch_size() as i32;
    let k = ops::arange(0, b * 2 * 3, 1, Some(Dtype::Float32))
        .unwrap()
        .reshape(&[b, 2, 1, 3])
        .unwrap();
    let k = ops::add(&k, 5000.0 + 100.0 * f64::from(s)).unwrap();
    let (keys, values) = cache
        .update_and_fetch(&k, &ops::negative(&k).unwrap())
        .unwrap();
    let name = format!("{stage}.fetched_keys");
    assert_exact(&name, &keys, &goldens[&name]);
    let name = format!("{stage}.fetched_values");
    assert_exact(&name, &values, &goldens[&name]);
    assert_stage(goldens, &stage, cache);
}

#[test]
fn batch_rotating_kv_cache_matches_pythons_merge_steps_filter_extend_and_extract() {
    let path = format!(
        "{}/tests/fixtures/batch/batch_rotating_cache.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let (goldens, _) = mlx_rs::io::load_safetensors(path).unwrap();
    let rows = [rotating_row(0, 6), rotating_row(1, 2), rotating_row(2, 3)];
    let mut batch = BatchRotatingKvCache::merge(&rows, WINDOW).unwrap();
    assert_stage(&goldens, "merge", &batch);
    for s in 0..3 {
        step(&goldens, s, &mut batch);
    }
    batch.filter(&[2, 0]).unwrap();
    assert_stage(&goldens, "filter", &batch);
    batch
        .extend(BatchRotatingKvCache::merge(&[rotating_row(3, 1)], WINDOW).unwrap())
        .unwrap();
    assert_stage(&goldens, "extend", &batch);
    for s in 3..5 {
        step(&goldens, s, &mut batch);
    }
    let extracted = batch.extract(1).unwrap();
    let state = extracted.state();
    assert_exact("extract.keys", &state[0], &goldens["extract.keys"]);
    assert_exact("extract.values", &state[1], &goldens["extract.values"]);
    let offset = Array::from_slice(&[extracted.offset()], &[1]).unwrap();
    assert_exact("extract.offset", &offset, &goldens["extract.offset"]);
    assert!(batch.filter(&[3]).is_err(), "row 3 of a batch of three");
    assert!(batch.extract(3).is_err(), "row 3 of a batch of three");
}
