//! Gemma 3n's vision tower (MobileNetV5) against Python mlx-vlm 0.7.6
//! (goldens of `tests/fixtures/gemma3n/gen_vision.py`).
//!
//! Python's tower hard-codes its widths and takes its blocks from
//! `gemma3n_mobilenet_def()`; the generator replaces that function by a
//! reduced list (`tiny_def` in `vision.json`) keeping every block type and
//! path: edge residuals with and without skip, inverted residuals with
//! every depthwise combination and a strided one, multi-query attention
//! with and without key/value downsampling, and the fusion adapter over
//! stages 3 (640 channels) and 4 (1280), the widths its hard-coded 1920
//! inputs need. Weights are `tensor_values` of the Hugging Face keys in
//! PyTorch's layout, through `sanitize`. Checked, for two 128x128 images:
//! the stem, every block, the adapter's resized concatenation and its
//! inverted residual, the output (upsampled, pooled, normalized), the soft
//! tokens `get_image_features` makes of it, bfloat16; a 64x64 image (no
//! pooling, channels-first output, as Python); a 128x64 image (the
//! adapter's swapped axes: a [1, 8, 32, 2048] output); a 96x96 image (an error:
//! Python fails there); the real `mobilenetv5_300m_enc`'s blocks and
//! parameter names and shapes; `sanitize`; quantization (none, as
//! Python's convert); typed errors.
//!
//! Goldens are fingerprints of each output (per-channel means, per-position
//! means of maps up to 16x16, an 8x8x8 grid sample with first and last
//! indices), full tensors being megabytes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx_rs::nn::{ItemMut, ModuleExt, Verify};
use mlx_rs::ops::QuantizationMode;
use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::Error;
use mlx_vlm::fixtures::{fnv1a64, tensor_values};
use mlx_vlm::models::gemma3n::config::VisionConfig;
use mlx_vlm::models::gemma3n::vision::{
    Block, BlockConfig, UniversalInvertedResidual, UniversalInvertedResidualArgs, VisionModel,
    gemma3n_mobilenet_def, make_divisible, num_groups, uir,
};
use serde_json::Value;

/// Every float32 stage is Python's bit for bit (measured: 0 everywhere)
/// since `mlx_rs::nn::activations::gelu` is compiled as Python's `nn.gelu`
/// is; with the plain ops, MLX's fused `erf` made the stem differ by 2e-7
/// and the output by up to 1.9e-5. Needs a C++ compiler on `PATH`, as
/// MLX's CPU compile does.
const F32_TOLERANCE: f32 = 0.0;
/// bfloat16 keeps 8 significant bits. On the CPU the Rust tower runs
/// Python's operations in Python's order and matches exactly (0); the
/// bound (a few bfloat16 steps at the output's magnitude, ~2) leaves room
/// for another backend's reduction order.
const BF16_TOLERANCE: f32 = 0.05;
const HF_PREFIX: &str = "model.vision_tower.";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3n")
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("vision.json")).unwrap()).unwrap()
}

fn goldens() -> HashMap<String, Array> {
    mlx_rs::io::load_safetensors(fixtures().join("vision.safetensors"))
        .unwrap()
        .0
}

fn shape_of(v: &Value) -> Vec<i32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn tiny_def(meta: &Value) -> Vec<Vec<BlockConfig>> {
    serde_json::from_value(meta["tiny_def"].clone()).unwrap()
}

fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let a = a.as_type(Dtype::Float32).unwrap();
    let b = b.as_type(Dtype::Float32).unwrap();
    ops::abs(&ops::subtract(&a, &b).unwrap())
        .unwrap()
        .max(None, false)
        .unwrap()
        .item::<f32>()
        .unwrap()
}

/// The generator's fingerprint of an NHWC output: per-channel means,
/// per-position means (maps up to 16x16), the 8x8x8 grid sample.
fn fingerprint(x: &Array, samples: i32) -> Vec<(&'static str, Array)> {
    let x = x.as_type(Dtype::Float32).unwrap();
    let &[_, h, w, c] = x.shape() else {
        panic!("not 4-D: {:?}", x.shape())
    };
    let grid = |n: i32| {
        let indices: Vec<i32> = (0..samples).map(|i| i * (n - 1) / (samples - 1)).collect();
        Array::from_slice(&indices, &[samples]).unwrap()
    };
    let mut out = vec![("channel_mean", x.mean([1, 2], false).unwrap())];
    if h <= 16 {
        out.push(("position_mean", x.mean(3, false).unwrap()));
    }
    let mut sample = x;
    for (axis, n) in [(1, h), (2, w), (3, c)] {
        sample = ops::take(&sample, &grid(n), axis).unwrap();
    }
    out.push(("sample", sample));
    out
}

/// Compares `x`'s fingerprint with the goldens `<name>.*`; returns the
/// largest difference.
fn check(g: &HashMap<String, Array>, name: &str, x: &Array, tolerance: f32) -> f32 {
    let mut worst = 0f32;
    for (part, got) in fingerprint(x, 8) {
        let key = format!("{name}.{part}");
        let want = g.get(&key).unwrap_or_else(|| panic!("no golden {key}"));
        let diff = max_abs_diff(&got, want);
        assert!(diff <= tolerance, "{key} differs by {diff} (> {tolerance})");
        worst = worst.max(diff);
    }
    // Every golden of this name was compared.
    let parts = g
        .keys()
        .filter(|k| k.starts_with(&format!("{name}.")))
        .count();
    assert_eq!(parts, fingerprint(x, 8).len(), "goldens of {name}");
    worst
}

/// PyTorch's layout of an MLX convolution weight.
fn hf_shape(shape: &[i32]) -> Vec<i32> {
    match *shape {
        [o, kh, kw, i] => vec![o, i, kh, kw],
        _ => shape.to_vec(),
    }
}

/// The generator's weights: `tensor_values` of each Hugging Face key in
/// PyTorch's layout, through Python's `Model.sanitize` (strip `model.`),
/// `VisionModel::sanitize`, and loaded strictly.
fn load_weights(model: &mut VisionModel) {
    let hf: HashMap<String, Array> = model
        .parameters()
        .into_iter()
        .map(|(key, value)| {
            let key = format!("{HF_PREFIX}{key}");
            let shape = hf_shape(value.shape());
            let values = Array::from_vec_shaped(tensor_values(&key, &shape), &shape).unwrap();
            (key, values)
        })
        .collect();
    let stripped = hf
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("model.").unwrap().to_string(), v))
        .collect();
    let sanitized: BTreeMap<String, Array> = VisionModel::sanitize(stripped)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("vision_tower.").unwrap().to_string(), v))
        .collect();
    model.update_parameters(&sanitized, Verify::Strict).unwrap();
}

fn tiny_model(meta: &Value) -> VisionModel {
    let mut model = VisionModel::with_blocks(&VisionConfig::default(), &tiny_def(meta)).unwrap();
    load_weights(&mut model);
    model
}

fn image(meta: &Value, key: &str, shape_key: &str) -> Array {
    let shape = shape_of(&meta[shape_key]);
    let scale = meta["image_scale"].as_f64().unwrap() as f32;
    let pixels = Array::from_vec_shaped(tensor_values(key, &shape), &shape).unwrap();
    ops::multiply(&pixels, scale).unwrap()
}

fn cast_parameters(model: &mut VisionModel, dtype: Dtype) {
    model.apply_to_modules(&mut |_, m| {
        m.items_mut(&mut |_, item| {
            if let ItemMut::Param(p) = item {
                let cast = p.as_type(dtype).unwrap();
                p.set(cast);
            }
        })
    });
}

/// Every stage of the tower on two images, float32 then bfloat16, and the
/// 64x64 and 96x96 cases (one test: the model is built once).
#[test]
fn tower_matches_python_stage_by_stage() {
    let meta = meta();
    let g = goldens();
    let mut model = tiny_model(&meta);
    let pixels = image(&meta, "pixel_values", "batch_shape");
    let tower = &model.timm_model;
    let mut worst = 0f32;

    let mut x = tower.stem(&pixels).unwrap();
    worst = worst.max(check(&g, "stem", &x, F32_TOLERANCE));
    let mut intermediates = Vec::new();
    for (s, group) in tower.blocks.iter().enumerate() {
        for (b, block) in group.iter().enumerate() {
            x = block.forward(&x).unwrap();
            worst = worst.max(check(&g, &format!("blocks.{s}.{b}"), &x, F32_TOLERANCE));
        }
        if tower.msfa_indices.contains(&(s + 1)) {
            intermediates.push(x.clone());
        }
    }
    let msfa = &tower.msfa;
    let concat = msfa
        .resize_and_concatenate(&intermediates)
        .unwrap()
        .swapaxes(1, 3)
        .unwrap();
    worst = worst.max(check(&g, "msfa.concat", &concat, F32_TOLERANCE));
    let ffn = msfa.ffn.forward(&concat).unwrap();
    worst = worst.max(check(&g, "msfa.ffn", &ffn, F32_TOLERANCE));
    let out = msfa.forward(&intermediates).unwrap();
    assert_eq!(out.shape(), shape_of(&meta["output_shape"]).as_slice());
    worst = worst.max(check(&g, "output", &out, F32_TOLERANCE));
    let whole = model.forward(&pixels).unwrap();
    assert_eq!(
        max_abs_diff(&whole, &out),
        0.0,
        "forward differs from its steps"
    );
    eprintln!("float32 stages: max |diff| {worst:e}");

    // get_image_features' soft tokens: [B, 256, 2048] times sqrt(2048).
    let tokens = out
        .transpose([0, 3, 1, 2])
        .unwrap()
        .reshape(&[2, 2048, 256])
        .unwrap()
        .transpose([0, 2, 1])
        .unwrap();
    let tokens = ops::multiply(&tokens, 2048f64.sqrt()).unwrap();
    let every = |n: i32, step: usize| {
        let i: Vec<i32> = (0..n).step_by(step).collect();
        Array::from_slice(&i, &[i.len() as i32]).unwrap()
    };
    let tokens = ops::take(&tokens, &every(256, 17), 1).unwrap();
    let tokens = ops::take(&tokens, &every(2048, 97), 2).unwrap();
    let diff = max_abs_diff(&tokens, &g["soft_tokens.sample"]);
    assert!(
        diff <= 2048f32.sqrt() * F32_TOLERANCE,
        "soft tokens differ by {diff}"
    );

    // Stage 3 at 16x16: no pooling, no norm, channels-first, as Python.
    let small = image(
        &meta,
        "pixel_values.same_resolution",
        "same_resolution_shape",
    );
    let out = model.forward(&small).unwrap();
    assert_eq!(
        out.shape(),
        shape_of(&meta["same_resolution_output_shape"]).as_slice()
    );
    let nhwc = out.transpose([0, 2, 3, 1]).unwrap();
    let diff = check(&g, "same_resolution.output", &nhwc, F32_TOLERANCE);
    eprintln!("64x64 output: max |diff| {diff:e}");

    // Stage 3 at 32x16: Python's swapped axes pool [B, W, H, C] with the
    // (2, 1) kernel computed for (H, W): [1, 8, 32, 2048].
    let tall = image(&meta, "pixel_values.non_square", "non_square_shape");
    let out = model.forward(&tall).unwrap();
    assert_eq!(out.shape(), &[1, 8, 32, 2048]);
    assert_eq!(
        out.shape(),
        shape_of(&meta["non_square_output_shape"]).as_slice()
    );
    let diff = check(&g, "non_square.output", &out, F32_TOLERANCE);
    eprintln!("128x64 output: max |diff| {diff:e}");

    // Stage 3 at 24x24: Python fails (bicubic, then a broadcast error);
    // Rust says why.
    assert!(meta["bicubic_error"].is_string(), "Python no longer fails");
    let odd = image(&meta, "pixel_values.bicubic", "bicubic_shape");
    match model.forward(&odd) {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains("24x24"), "{message}");
            assert!(message.contains("multiple of 256 pixels"), "{message}");
        }
        other => panic!("expected an InvalidArgument error, got {other:?}"),
    }

    cast_parameters(&mut model, Dtype::Bfloat16);
    let out = model
        .forward(&pixels.as_type(Dtype::Bfloat16).unwrap())
        .unwrap();
    assert_eq!(out.dtype(), Dtype::Bfloat16);
    assert_eq!(meta["bf16_output_dtype"], "mlx.core.bfloat16");
    let diff = check(&g, "bf16.output", &out, BF16_TOLERANCE);
    eprintln!("bfloat16 output: max |diff| {diff:e}");
}

fn block_name(block: &Block) -> &'static str {
    match block {
        Block::EdgeResidual(_) => "EdgeResidual",
        Block::UniversalInvertedResidual(_) => "UniversalInvertedResidual",
        Block::MobileAttention(_) => "MobileAttention",
    }
}

/// Count, elements and `fnv1a64` of the sorted `key shape` lines (the
/// generator's `parameter_fingerprint`).
fn parameter_fingerprint(model: &VisionModel) -> Value {
    let params = model.parameters();
    let text: String = params
        .iter()
        .map(|(k, v)| {
            let shape: Vec<String> = v.shape().iter().map(i32::to_string).collect();
            format!("{k} {}\n", shape.join(","))
        })
        .collect();
    let elements: i64 = params
        .values()
        .map(|v| v.shape().iter().map(|&d| i64::from(d)).product::<i64>())
        .sum();
    serde_json::json!({
        "count": params.len(),
        "elements": elements,
        "fnv1a64": fnv1a64(&text).to_string(),
    })
}

/// The real mobilenetv5_300m_enc (built lazily, never evaluated): Python's
/// blocks, parameter names and shapes.
#[test]
fn real_architecture_matches_python() {
    let meta = meta();
    let real = &meta["real_architecture"];
    let model = VisionModel::new(&VisionConfig::default()).unwrap();
    let blocks: Vec<Vec<&str>> = model
        .timm_model
        .blocks
        .iter()
        .map(|stage| stage.iter().map(block_name).collect())
        .collect();
    let want: Vec<Vec<String>> = serde_json::from_value(real["blocks"].clone()).unwrap();
    assert_eq!(blocks, want);
    assert_eq!(parameter_fingerprint(&model), real["parameters"]);
    assert_eq!(
        gemma3n_mobilenet_def().iter().map(Vec::len).sum::<usize>(),
        84
    );
}

/// The tiny model's keys are Python's; quantizing it as `mlx_vlm.convert`
/// does (layers with `to_quantized` whose weight size is a multiple of 64)
/// changes nothing, as in Python: the tower has no Linear or Embedding.
#[test]
fn keys_and_quantization_match_python() {
    let meta = meta();
    let mut model = VisionModel::with_blocks(&VisionConfig::default(), &tiny_def(&meta)).unwrap();
    let keys: Vec<String> = model.parameters().into_keys().collect();
    let want: Vec<String> = serde_json::from_value(meta["keys"].clone()).unwrap();
    assert_eq!(keys, want);
    mlx_rs::nn::quantize(
        &mut model,
        Some(64),
        Some(4),
        QuantizationMode::Affine,
        |_, m| {
            m.quantizable().is_some()
                && m.parameters()
                    .get("weight")
                    .is_some_and(|w| w.size() % 64 == 0)
        },
    )
    .unwrap();
    let keys: Vec<String> = model.parameters().into_keys().collect();
    let want: Vec<String> = serde_json::from_value(meta["quantized_keys"].clone()).unwrap();
    assert_eq!(keys, want);
}

fn shapes(map: &HashMap<String, Array>) -> BTreeMap<String, Vec<i32>> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.shape().to_vec()))
        .collect()
}

fn zeros_of(v: &Value) -> HashMap<String, Array> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), ops::zeros(&shape_of(s), Dtype::Float32).unwrap()))
        .collect()
}

/// `sanitize` of the Hugging Face keys (after the model's `model.` strip):
/// Python's keys and shapes, PyTorch's layout transposed, a non-vision key
/// kept; applied again (MLX layout) it changes nothing; the result is
/// exactly the Rust model's parameters.
#[test]
fn sanitize_matches_python_and_names_the_model_parameters() {
    let meta = meta();
    let input = zeros_of(&meta["sanitize"]["input"]);
    let sanitized = VisionModel::sanitize(input).unwrap();
    let want: BTreeMap<String, Vec<i32>> =
        serde_json::from_value(meta["sanitize"]["output"].clone()).unwrap();
    assert_eq!(shapes(&sanitized), want);
    let again = VisionModel::sanitize(sanitized.clone()).unwrap();
    let want: BTreeMap<String, Vec<i32>> =
        serde_json::from_value(meta["sanitize_mlx_layout"].clone()).unwrap();
    assert_eq!(shapes(&again), want);

    let model = VisionModel::with_blocks(&VisionConfig::default(), &tiny_def(&meta)).unwrap();
    let params: BTreeMap<String, Vec<i32>> = model
        .parameters()
        .into_iter()
        .map(|(k, v)| (format!("vision_tower.{k}"), v.shape().to_vec()))
        .collect();
    let mut vision: BTreeMap<String, Vec<i32>> = shapes(&sanitized);
    vision.retain(|k, _| k.starts_with("vision_tower."));
    assert_eq!(vision, params);
}

#[test]
fn sanitize_without_the_probe_key_is_a_typed_error() {
    let mut weights = HashMap::new();
    weights.insert(
        "vision_tower.timm_model.conv_stem.conv.weight".to_string(),
        ops::zeros(&[64, 3, 3, 3], Dtype::Float32).unwrap(),
    );
    match VisionModel::sanitize(weights.clone()) {
        Err(Error::Weights { message, .. }) => {
            assert!(message.contains("blocks.0.0.conv_exp.weight"), "{message}");
        }
        other => panic!("expected a Weights error, got {other:?}"),
    }
    weights.insert(
        "vision_tower.timm_model.blocks.0.0.conv_exp.weight".to_string(),
        ops::zeros(&[128, 64, 9], Dtype::Float32).unwrap(),
    );
    match VisionModel::sanitize(weights) {
        Err(Error::Weights { message, .. }) => assert!(message.contains("4-D"), "{message}"),
        other => panic!("expected a Weights error, got {other:?}"),
    }
}

#[test]
fn bad_pixels_are_typed_errors() {
    let meta = meta();
    let model = VisionModel::with_blocks(&VisionConfig::default(), &tiny_def(&meta)).unwrap();
    for shape in [&[1, 64, 64, 3][..], &[1, 4, 64, 64], &[3, 64, 64]] {
        let x = ops::zeros(shape, Dtype::Float32).unwrap();
        match model.forward(&x) {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains(&format!("{shape:?}")), "{message}");
                assert!(message.contains("[batch, 3, height, width]"), "{message}");
            }
            other => panic!("{shape:?}: expected InvalidArgument, got {other:?}"),
        }
    }
}

#[test]
fn bad_configs_are_typed_errors() {
    let config = VisionConfig {
        model_type: "siglip_vision_model".into(),
        ..Default::default()
    };
    match VisionModel::new(&config) {
        Err(Error::UnknownModelType { model_type, .. }) => {
            assert_eq!(model_type, "siglip_vision_model");
        }
        other => panic!("expected UnknownModelType, got {other:?}"),
    }
    // Block lists the fusion adapter cannot read, bad sizes.
    let meta = meta();
    let mut three_stages = tiny_def(&meta);
    three_stages.pop();
    let error = VisionModel::with_blocks(&VisionConfig::default(), &three_stages).unwrap_err();
    assert!(error.to_string().contains("has 3 stages"), "{error}");
    let mut narrow = tiny_def(&meta);
    narrow[3].push(uir(0, 0, 640, 1, 1.0, false));
    let error = VisionModel::with_blocks(&VisionConfig::default(), &narrow).unwrap_err();
    assert!(error.to_string().contains("640 + 640"), "{error}");
    let mut zero_stride = tiny_def(&meta);
    zero_stride[1][0] = uir(3, 5, 48, 0, 6.0, false);
    let error = VisionModel::with_blocks(&VisionConfig::default(), &zero_stride).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("block 0 of stage 2: strides is 0"),
        "{error}"
    );
    // Python asserts: a stride needs a depthwise kernel; group sizes divide.
    let strided = UniversalInvertedResidualArgs {
        dw_kernel_size_mid: 0,
        stride: 2,
        ..Default::default()
    };
    let error = UniversalInvertedResidual::new(8, 8, strided).unwrap_err();
    assert!(error.to_string().contains("stride 2"), "{error}");
    let error = num_groups(3, 8).unwrap_err();
    assert!(error.to_string().contains("group_size 3"), "{error}");
}

/// `make_divisible` as Python computes it (values from Python's function).
#[test]
fn make_divisible_matches_python() {
    assert_eq!(make_divisible(64.0 * 4.0, 8, None, 0.9), 256);
    assert_eq!(make_divisible(48.0 * 6.0, 8, None, 0.9), 288);
    assert_eq!(make_divisible(1280.0 * 0.5, 8, None, 0.9), 640);
    assert_eq!(make_divisible(3.0, 8, None, 0.9), 8);
    assert_eq!(make_divisible(20.0, 8, None, 0.9), 24);
    assert_eq!(make_divisible(11.0, 8, None, 0.9), 16);
}
