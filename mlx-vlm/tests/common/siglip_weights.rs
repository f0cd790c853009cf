//! Deterministic weights for a model with a SigLIP tower (PaliGemma,
//! Gemma 3), as the generators `tests/fixtures/{paligemma,gemma3}/
//! gen_model.py` make them: each parameter is `tensor_values` of its key in
//! its Hugging Face shape (the patch convolution channels-first), then
//! moved to this model's layout.

use std::collections::BTreeMap;

use mlx_rs::Array;
use mlx_rs::nn::{Module, ModuleExt, Verify};
use mlx_vlm::fixtures::tensor_values;

/// The generators' `hf_param`: the same key; the patch convolution
/// channels-first.
fn hf_param(key: &str, shape: &[i32]) -> (String, Vec<i32>) {
    if key.ends_with("patch_embedding.weight")
        && let &[o, kh, kw, i] = shape
    {
        return (key.to_string(), vec![o, i, kh, kw]);
    }
    (key.to_string(), shape.to_vec())
}

/// Sets every parameter of `model` to the generators' values, strictly.
pub fn load_tiny_weights(model: &mut impl Module) {
    let mut weights = BTreeMap::new();
    for (key, value) in model.parameters() {
        let (hf_key, hf_shape) = hf_param(&key, value.shape());
        let mut v = Array::from_vec_shaped(tensor_values(&hf_key, &hf_shape), &hf_shape).unwrap();
        if hf_shape != value.shape() {
            v = v.transpose([0, 2, 3, 1]).unwrap();
        }
        weights.insert(key, v);
    }
    model.update_parameters(&weights, Verify::Strict).unwrap();
}
