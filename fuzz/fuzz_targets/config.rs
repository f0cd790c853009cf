//! `config.json` of arbitrary text, as the loader takes it: parsed, checked
//! against the tensors of the tiny checkpoint, and the model built when the
//! check passes. A typed error or a model, never a crash, hang or
//! unbounded allocation (`num_hidden_layers: 1000000000` and the like).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mlx_vlm::utils::TensorInfo;
use mlx_vlm::{fixtures, registry};
use serde_json::Value;

/// The tiny checkpoint's tensors, as its safetensors headers list them.
fn tensors() -> &'static BTreeMap<String, TensorInfo> {
    static TENSORS: OnceLock<BTreeMap<String, TensorInfo>> = OnceLock::new();
    TENSORS.get_or_init(|| {
        let mut offset = 0;
        fixtures::hf_param_shapes(&fixtures::tiny_config())
            .into_iter()
            .map(|(key, shape)| {
                let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
                let bytes = 4 * shape.iter().product::<u64>();
                let info = TensorInfo {
                    dtype: "F32".into(),
                    shape,
                    data_offsets: (offset, offset + bytes),
                    file: "model.safetensors".into(),
                };
                offset += bytes;
                (key, info)
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if registry::check_weights(&config, "config.json", tensors()).is_ok() {
        let _ = registry::create_model(&config, "config.json");
        // Each random initialisation splits MLX's global key lazily; the
        // loader replaces the parameters unevaluated, so the chain of
        // splits would grow with every run (as in Python). Reseeding drops it.
        let _ = mlx_rs::random::seed(0);
    }
});
