//! KvCache and RotatingKvCache against Python mlx-vlm 0.7.6's KVCache and
//! RotatingKVCache over the same updates (tests/fixtures/gen_sampling.py).

use std::collections::HashMap;

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::models::cache::{Cache, KvCache, Mask, RotatingKvCache};
use serde_json::Value;

#[path = "common/exact.rs"]
mod exact;
use exact::assert_exact;

fn fixtures() -> (HashMap<String, Array>, Value) {
    let dir = format!("{}/tests/fixtures/sampling", env!("CARGO_MANIFEST_DIR"));
    let (tensors, _) = mlx_rs::io::load_safetensors(format!("{dir}/cache.safetensors")).unwrap();
    let json = std::fs::read_to_string(format!("{dir}/cache.json")).unwrap();
    (tensors, serde_json::from_str(&json).unwrap())
}

/// The update of step `step`, as the generator makes it.
fn kv(step: i32, s: i32) -> (Array, Array) {
    let (heads, dim) = (2, 3);
    let base = ops::arange(0, heads * s * dim, 1, Some(Dtype::Float32))
        .unwrap()
        .reshape(&[1, heads, s, dim])
        .unwrap();
    let k = ops::add(&base, 1000.0 * f64::from(step + 1)).unwrap();
    let v = ops::negative(&k).unwrap();
    (k, v)
}

fn check(name: &str, mut cache: Box<dyn Cache>) {
    let (tensors, record) = fixtures();
    let steps = record[name].as_array().unwrap();
    for (i, step) in steps.iter().enumerate() {
        let s = step["s"].as_i64().unwrap() as i32;
        let (k, v) = kv(i as i32, s);
        let (ok, ov) = cache.update_and_fetch(&k, &v).unwrap();
        assert_exact(
            &format!("{name}.{i}.keys"),
            &ok,
            &tensors[&format!("{name}.{i}.keys")],
        );
        assert_exact(
            &format!("{name}.{i}.values"),
            &ov,
            &tensors[&format!("{name}.{i}.values")],
        );
        assert_eq!(
            i64::from(cache.offset()),
            step["offset"].as_i64().unwrap(),
            "{name}.{i} offset"
        );
        if let Some(idx) = step.get("idx") {
            assert_eq!(cache.idx().map(i64::from), idx.as_i64(), "{name}.{i} _idx");
        }
        for (key, kind) in step["masks"].as_object().unwrap() {
            let mut parts = key.split('_');
            let n: i32 = parts.next().unwrap().parse().unwrap();
            let window = parts.next().unwrap();
            let window = (window != "None").then(|| window.parse::<i32>().unwrap());
            let mask = cache.make_mask(n, window, false).unwrap();
            let label = format!("{name}.{i}.mask.{key}");
            match (kind.as_str().unwrap(), &mask) {
                ("none", Mask::None) | ("causal", Mask::Causal) => {}
                ("array", Mask::Array(m)) => assert_exact(&label, m, &tensors[&label]),
                (want, got) => panic!("{label}: want {want}, got {got:?}"),
            }
        }
    }
}

#[test]
fn kv_cache_grows_in_steps() {
    check("kv", Box::new(KvCache::new()));
}

#[test]
fn rotating_cache_keep_2() {
    check("rot8k2", Box::new(RotatingKvCache::new(8, 2)));
}

#[test]
fn rotating_cache_keep_0() {
    check("rot8k0", Box::new(RotatingKvCache::new(8, 0)));
}

#[test]
fn rotating_cache_prefill_larger_than_window() {
    check("rot6big", Box::new(RotatingKvCache::new(6, 1)));
}

#[test]
fn rotating_cache_single_tokens_only() {
    check("rot4single", Box::new(RotatingKvCache::new(4, 0)));
}
