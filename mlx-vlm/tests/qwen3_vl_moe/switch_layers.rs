//! `models/switch_layers.rs` against Python mlx-vlm 0.7.6
//! (`tests/fixtures/switch_layers/gen_goldens.py`): `SwitchGLU` and
//! `SwitchMLP` with float and 4-bit quantized experts, on inputs that take
//! the unsorted, sorted (`indices.size >= 64`) and decode-block paths.
//! Weights and inputs are `tensor_values` of their keys, as in Python.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_vlm::fixtures::tensor_values;
use mlx_vlm::mlx_rs::nn::{Module, Param, QuantSpec, Quantizable, quantize};
use mlx_vlm::mlx_rs::ops::QuantizationMode;
use mlx_vlm::mlx_rs::{Array, Dtype};
use mlx_vlm::models::switch_layers::{SwitchGLU, SwitchLinear, SwitchMLP};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/switch_layers")
}

fn goldens() -> HashMap<String, Array> {
    mlx_vlm::mlx_rs::io::load_safetensors(dir().join("goldens.safetensors"))
        .unwrap()
        .0
        .into_iter()
        .collect()
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("goldens.json")).unwrap()).unwrap()
}

fn values(key: &str, shape: &[i32]) -> Array {
    Array::from_vec_shaped(tensor_values(key, shape), shape).unwrap()
}

fn set(linear: &mut SwitchLinear, prefix: &str, bias: bool) {
    let shape = linear.weight.shape().to_vec();
    linear.weight = Param::new(values(&format!("{prefix}.weight"), &shape));
    if bias {
        let shape = [shape[0], shape[1]];
        linear.bias = Some(Param::new(values(&format!("{prefix}.bias"), &shape)));
    }
}

/// Python's `nn.quantize(m, group_size, bits)`.
fn quantized(module: &mut dyn Module, group_size: i32, bits: i32) {
    quantize(
        module,
        Some(group_size),
        Some(bits),
        QuantizationMode::Affine,
        |_, _| true,
    )
    .unwrap();
}

/// Largest `|a - b|` over the whole tensors, after checking the shapes.
fn max_diff(name: &str, got: &Array, want: &Array) -> f32 {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let g = got.to_vec_as::<f32>().unwrap();
    let w = want.to_vec_as::<f32>().unwrap();
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn check(name: &str, got: &Array, want: &Array) -> f32 {
    let d = max_diff(name, got, want);
    let scale = want
        .to_vec_as::<f32>()
        .unwrap()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        d <= 1e-4 * scale.max(1.0),
        "{name}: max |rust - python| = {d} (max |python| = {scale})"
    );
    d
}

struct Dims {
    d: i32,
    h: i32,
    e: i32,
    group_size: i32,
    bits: i32,
}

fn dims() -> Dims {
    let m = meta();
    let v = |x: &Value| x.as_i64().unwrap() as i32;
    Dims {
        d: v(&m["dims"][0]),
        h: v(&m["dims"][1]),
        e: v(&m["dims"][2]),
        group_size: v(&m["group_size"]),
        bits: v(&m["bits"]),
    }
}

fn glu(quantize: bool) -> SwitchGLU {
    let Dims { d, h, e, .. } = dims();
    let mut m = SwitchGLU::new(d, h, e, false).unwrap();
    set(&mut m.gate_proj, "switch_glu.gate_proj", false);
    set(&mut m.up_proj, "switch_glu.up_proj", false);
    set(&mut m.down_proj, "switch_glu.down_proj", false);
    if quantize {
        let Dims {
            group_size, bits, ..
        } = dims();
        quantized(&mut m, group_size, bits);
    }
    m
}

fn mlp(quantize: bool) -> SwitchMLP {
    let Dims { d, h, e, .. } = dims();
    let mut m = SwitchMLP::new(d, h, e, true).unwrap();
    set(&mut m.fc1, "switch_mlp.fc1", true);
    set(&mut m.fc2, "switch_mlp.fc2", true);
    if quantize {
        let Dims {
            group_size, bits, ..
        } = dims();
        quantized(&mut m, group_size, bits);
    }
    m
}

fn cases() -> Vec<(String, Vec<i32>)> {
    meta()["cases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, lead)| {
            let lead = lead
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as i32)
                .collect();
            (name.clone(), lead)
        })
        .collect()
}

fn run(q: &str) {
    let g = goldens();
    let d = dims().d;
    let (glu, mlp) = (glu(q == "q4"), mlp(q == "q4"));
    let mut worst = 0.0f32;
    let mut n = 0;
    for (case, lead) in cases() {
        let mut shape = lead.clone();
        shape.push(d);
        let x = values(&format!("x.{case}"), &shape);
        let idx = &g[&format!("idx.{case}")];
        let name = format!("glu.{q}.{case}");
        worst = worst.max(check(&name, &glu.forward(&x, idx).unwrap(), &g[&name]));
        n += 1;
        let name = format!("mlp.{q}.{case}");
        if let Some(want) = g.get(&name) {
            worst = worst.max(check(&name, &mlp.forward(&x, idx).unwrap(), want));
            n += 1;
        }
    }
    assert_eq!(n, 9, "every golden case was compared");
    eprintln!("switch layers {q}: max |rust - python| over {n} cases = {worst:e}");
}

#[test]
fn switch_glu_and_mlp_f32_match_python() {
    run("f32");
}

#[test]
fn switch_glu_and_mlp_4bit_match_python() {
    run("q4");
}

#[test]
fn quantized_switch_linear_round_trips() {
    let Dims {
        d,
        h,
        e,
        group_size,
        bits,
    } = dims();
    let spec = QuantSpec::new(Some(group_size), Some(bits), QuantizationMode::Affine);
    let mut l = SwitchLinear::new_quantized(d, h, e, true, spec).unwrap();
    assert_eq!(l.weight.dtype(), Dtype::Uint32);
    assert_eq!(
        (l.input_dims(), l.output_dims(), l.num_experts()),
        (d, h, e)
    );
    assert!(l.weight.is_frozen() && l.bias.as_ref().unwrap().is_frozen());
    l.dequantize().unwrap();
    assert_eq!(l.weight.shape(), &[e, h, d]);
    assert_eq!(l.quantization(), None);
}

/// The loader's rule: a layer is quantized exactly when the checkpoint has
/// its `.scales`.
#[test]
fn checkpoint_scales_quantize_switch_linears() {
    let Dims {
        group_size, bits, ..
    } = dims();
    let mut m = glu(false);
    mlx_vlm::mlx_rs::nn::quantize_like_checkpoint(
        &mut m,
        ["up_proj.scales", "down_proj.scales"],
        Some(group_size),
        Some(bits),
        QuantizationMode::Affine,
    )
    .unwrap();
    assert!(m.up_proj.quantization().is_some());
    assert!(m.down_proj.quantization().is_some());
    assert!(m.gate_proj.quantization().is_none());
}
