//! Gemma 3n's audio encoder against Python mlx-vlm 0.7.6 (goldens of
//! `tests/fixtures/gemma3n/gen_audio.py`): a tiny Conformer (16 mel bins,
//! width 16, 3 blocks, attention chunks of 4 frames with 5 past and 1
//! future frames of context, a softcap and gradient clipping that bite,
//! reduction 3) on two clips of 1.5 s and 0.89 s padded to one batch.
//! Checked: the features of the Rust extractor, the subsampling output,
//! each Conformer block's output, the encodings and the mask in float32 and
//! with bfloat16 parameters (float32 and bfloat16 features), and for a
//! one-block model with the real checkpoint's attention geometry (chunks of
//! 12, no future context, reduction 4); the cumulative group norm with and
//! without a mask; the pad-width conversion; `sanitize` of the tiny and of
//! the real checkpoint's Hugging Face audio keys; the typed errors of bad
//! inputs and configs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx_rs::nn::{ItemMut, ModuleExt, Param, Verify};
use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::Error;
use mlx_vlm::feature_extraction::gemma3n::Gemma3nAudioFeatureExtractor;
use mlx_vlm::fixtures::tensor_values;
use mlx_vlm::models::gemma3n::audio::{
    AudioModel, Gemma3nAudioAttention, Gemma3nAudioSSCPConvBlock,
    Gemma3nAudioSubSampleConvProjection, Gemma3nCumulativeGroupNorm,
    convert_torch_to_mlx_pad_width,
};
use mlx_vlm::models::gemma3n::config::AudioConfig;
use serde_json::{Value, json};

const F32_TOLERANCE: f32 = 1e-4;
/// The bfloat16 runs compute in float32 after the first clip (Python's
/// float32 constants promote); only the subsampling of bfloat16 features
/// rounds to 8 bits, values up to ~6 to steps of ~0.03.
const BF16_TOLERANCE: f32 = 0.05;
const PREFIX: &str = "model.audio_tower.";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3n")
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("audio.json")).unwrap()).unwrap()
}

fn goldens() -> HashMap<String, Array> {
    mlx_rs::io::load_safetensors(fixtures().join("audio.safetensors"))
        .unwrap()
        .0
}

fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let a = a.as_type(Dtype::Float32).unwrap();
    let b = b.as_type(Dtype::Float32).unwrap();
    ops::max(
        &ops::abs(&ops::subtract(&a, &b).unwrap()).unwrap(),
        None,
        false,
    )
    .unwrap()
    .item::<f32>()
    .unwrap()
}

fn assert_close(what: &str, got: &Array, want: &Array, tolerance: f32) -> f32 {
    assert_eq!(got.dtype(), want.dtype(), "{what} dtype");
    let diff = max_abs_diff(got, want);
    println!("{what}: max |diff| {diff}");
    assert!(
        diff <= tolerance,
        "{what} differs by {diff} (> {tolerance})"
    );
    diff
}

fn assert_equal_masks(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.dtype(), Dtype::Bool, "{what} dtype");
    assert_eq!(got.shape(), want.shape(), "{what} shape");
    assert_eq!(
        got.to_vec::<bool>().unwrap(),
        want.to_vec::<bool>().unwrap(),
        "{what}"
    );
}

fn audio_config(meta: &Value) -> AudioConfig {
    serde_json::from_value(meta["audio_config"].clone()).unwrap()
}

/// The one-block model with the real checkpoint's attention geometry.
fn real_geometry_config(meta: &Value) -> AudioConfig {
    serde_json::from_value(meta["real_geometry_config"].clone()).unwrap()
}

/// The checkpoint's (PyTorch) shape of an MLX parameter: the generator's
/// `hf_shape`.
fn hf_shape(key: &str, shape: &[i32]) -> Vec<i32> {
    match *shape {
        [o, kh, kw, i] if key.ends_with("conv.weight") => vec![o, i, kh, kw],
        [o, k, i] if key.ends_with("conv1d.weight") => vec![o, i, k],
        _ => shape.to_vec(),
    }
}

/// Python's `load_model` on Hugging Face weights: `Model.sanitize` strips
/// `model.`, [`AudioModel::sanitize`] runs on every key, the audio tower
/// takes the `audio_tower.` keys.
fn load_hf(weights: HashMap<String, Array>) -> HashMap<String, Array> {
    let stripped = weights
        .into_iter()
        .map(|(k, v)| match k.strip_prefix("model.") {
            Some(rest) => (rest.to_string(), v),
            None => (k, v),
        })
        .collect();
    AudioModel::sanitize(stripped).unwrap()
}

fn shapes(weights: &HashMap<String, Array>) -> BTreeMap<String, Vec<i32>> {
    weights
        .iter()
        .map(|(k, v)| (k.clone(), v.shape().to_vec()))
        .collect()
}

fn json_shapes(value: &Value) -> BTreeMap<String, Vec<i32>> {
    serde_json::from_value(value.clone()).unwrap()
}

/// The generator's Hugging Face weights of `model`: `tensor_values` of each
/// `model.audio_tower.*` key in the checkpoint's shape.
fn hf_weights(model: &AudioModel) -> HashMap<String, Array> {
    model
        .parameters()
        .into_iter()
        .map(|(key, value)| {
            let hf_key = format!("{PREFIX}{key}");
            let shape = hf_shape(&key, value.shape());
            let values = tensor_values(&hf_key, &shape);
            (hf_key, Array::from_vec_shaped(values, &shape).unwrap())
        })
        .collect()
}

/// The generator's model of `config`, its parameters cast to `dtype` as
/// Python's `set_dtype`.
fn model_of(config: &AudioConfig, dtype: Dtype) -> AudioModel {
    let mut model = AudioModel::new(config).unwrap();
    let sanitized = load_hf(hf_weights(&model));
    let weights: BTreeMap<String, Array> = sanitized
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("audio_tower.").unwrap().to_string(), v))
        .collect();
    model.update_parameters(&weights, Verify::Strict).unwrap();
    model.apply_to_modules(&mut |_, m| {
        m.items_mut(&mut |_, item| {
            if let ItemMut::Param(p) = item {
                let cast = p.as_type(dtype).unwrap();
                p.set(cast);
            }
        })
    });
    model
}

/// The generator's tiny model.
fn model(meta: &Value, dtype: Dtype) -> AudioModel {
    model_of(&audio_config(meta), dtype)
}

/// The generator's clips: `tensor_values` of `gemma3n.audio.clip.N` times
/// 0.25 (exact).
fn clips(meta: &Value) -> Vec<Vec<f32>> {
    let lengths: Vec<i32> = serde_json::from_value(meta["clip_samples"].clone()).unwrap();
    lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            tensor_values(&format!("gemma3n.audio.clip.{i}"), &[n])
                .into_iter()
                .map(|v| v * 0.25)
                .collect()
        })
        .collect()
}

#[test]
fn rust_feature_extractor_gives_the_golden_features() {
    let meta = meta();
    let g = goldens();
    let feature_size = audio_config(&meta).input_feat_size;
    let extractor =
        Gemma3nAudioFeatureExtractor::from_json(&json!({ "feature_size": feature_size }), "test")
            .unwrap();
    let clips = clips(&meta);
    let refs: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
    let out = extractor.extract(&refs).unwrap();
    let frames = out[0].num_frames as i32;
    let features: Vec<f32> = out.iter().flat_map(|f| f.input_features.clone()).collect();
    let mask: Vec<bool> = out
        .iter()
        .flat_map(|f| f.input_features_mask.clone())
        .collect();
    let features = Array::from_vec_shaped(features, &[2, frames, feature_size]).unwrap();
    let mask = Array::from_vec_shaped(mask, &[2, frames]).unwrap();
    assert_close("features", &features, &g["features"], F32_TOLERANCE);
    assert_equal_masks("features mask", &mask, &g["features_mask"]);
}

/// Runs `model` on the golden features (cast to `input_dtype`) and checks
/// every golden of `prefix`.
fn check_run(model: &AudioModel, input_dtype: Dtype, prefix: &str, tolerance: f32) {
    let g = goldens();
    let features = g["features"].as_type(input_dtype).unwrap();
    let padded = ops::logical_not(&g["features_mask"]).unwrap();
    let out = model
        .forward_with_block_outputs(&features, &padded)
        .unwrap();
    let want = |name: &str| &g[&format!("{prefix}{name}")];
    assert_close(
        &format!("{prefix}subsampled"),
        &out.subsampled,
        want("subsampled"),
        tolerance,
    );
    assert_eq!(
        out.block_outputs.len(),
        model.config.conf_num_hidden_layers as usize
    );
    for (i, block) in out.block_outputs.iter().enumerate() {
        let name = format!("block.{i}");
        assert_close(&format!("{prefix}{name}"), block, want(&name), tolerance);
    }
    assert_close(
        &format!("{prefix}encodings"),
        &out.encodings,
        want("encodings"),
        tolerance,
    );
    assert_equal_masks(&format!("{prefix}mask"), &out.mask, want("mask"));
    // The padded frames are zero, the valid ones not (the test sees both).
    let mask = out.mask.to_vec::<bool>().unwrap();
    assert!(mask.iter().any(|&m| m) && mask.iter().any(|&m| !m));

    let (encodings, mask) = model.forward(&features, &padded).unwrap();
    assert_eq!(max_abs_diff(&encodings, &out.encodings), 0.0);
    assert_equal_masks("forward mask", &mask, &out.mask);
}

#[test]
fn float32_outputs_match_python() {
    let meta = meta();
    // The short clip's subsampled frames span several attention chunks.
    let config = audio_config(&meta);
    assert!(goldens()["subsampled"].shape()[1] > 4 * config.conf_attention_chunk_size);
    check_run(
        &model(&meta, Dtype::Float32),
        Dtype::Float32,
        "",
        F32_TOLERANCE,
    );
}

#[test]
fn real_attention_geometry_matches_python() {
    let meta = meta();
    let config = real_geometry_config(&meta);
    let defaults = AudioConfig::default();
    // Chunks of 12 frames, 12 past, none future, reduction 4, Python's
    // softcap and clipping.
    assert_eq!(
        (
            config.conf_attention_chunk_size,
            config.conf_attention_context_left,
            config.conf_attention_context_right,
            config.conf_reduction_factor,
            config.gradient_clipping,
        ),
        (12, 13, 0, 4, defaults.gradient_clipping)
    );
    let model = model_of(&config, Dtype::Float32);
    check_run(&model, Dtype::Float32, "real_geometry.", F32_TOLERANCE);
}

#[test]
fn bfloat16_parameters_match_python() {
    let meta = meta();
    let bf16 = model(&meta, Dtype::Bfloat16);
    check_run(&bf16, Dtype::Float32, "bf16.", F32_TOLERANCE);
    check_run(&bf16, Dtype::Bfloat16, "bf16_in.", BF16_TOLERANCE);
}

#[test]
fn cumulative_group_norm_matches_python() {
    let g = goldens();
    let mut norm = Gemma3nCumulativeGroupNorm::new(3, &[5], 1e-3, true, false).unwrap();
    norm.weight = Some(Param::new(g["group_norm.weight"].clone()));
    let x = &g["group_norm.input"];
    let masked = norm.forward(x, Some(&g["group_norm.mask"])).unwrap();
    assert_close("masked", &masked, &g["group_norm.masked"], F32_TOLERANCE);
    let unmasked = norm.forward(x, None).unwrap();
    assert_close(
        "unmasked",
        &unmasked,
        &g["group_norm.unmasked"],
        F32_TOLERANCE,
    );

    let int_mask = g["group_norm.mask"].as_type(Dtype::Int32).unwrap();
    let err = norm.forward(x, Some(&int_mask)).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("booleans")),
        "{err}"
    );
    let wide = ops::zeros(&[2, 7, 6, 3], Dtype::Float32).unwrap();
    let err = norm.forward(&wide, None).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("[2, 7, 6, 3]")),
        "{err}"
    );
}

#[test]
fn pad_width_conversion_matches_python() {
    for case in meta()["pad_width"].as_array().unwrap() {
        let padding: Vec<i32> = serde_json::from_value(case["padding"].clone()).unwrap();
        let shape: Vec<i32> = serde_json::from_value(case["shape"].clone()).unwrap();
        let want: Vec<(i32, i32)> = serde_json::from_value(case["output"].clone()).unwrap();
        assert_eq!(
            convert_torch_to_mlx_pad_width(&padding, shape.len()),
            want,
            "{case}"
        );
    }
}

#[test]
fn tiny_hugging_face_keys_sanitize_as_python_to_the_model_parameters() {
    let meta = meta();
    let model = AudioModel::new(&audio_config(&meta)).unwrap();
    let hf = hf_weights(&model);
    assert_eq!(shapes(&hf), json_shapes(&meta["hf_sanitize"]["input"]));
    let sanitized = load_hf(hf);
    assert_eq!(
        shapes(&sanitized),
        json_shapes(&meta["hf_sanitize"]["output"])
    );
    let params: BTreeMap<String, Vec<i32>> = model
        .parameters()
        .into_iter()
        .map(|(k, v)| (format!("audio_tower.{k}"), v.shape().to_vec()))
        .collect();
    assert_eq!(shapes(&sanitized), params);
    let keys: Vec<String> = serde_json::from_value(meta["keys"].clone()).unwrap();
    assert_eq!(
        model.parameters().into_keys().collect::<Vec<_>>(),
        keys,
        "Python's parameter keys"
    );

    // Weights already converted pass through unchanged, as in Python.
    assert_eq!(meta["mlx_sanitize_unchanged"], json!(true));
    let mlx_layout: HashMap<String, Array> = model
        .parameters()
        .into_iter()
        .map(|(k, v)| (format!("audio_tower.{k}"), v))
        .collect();
    let before = shapes(&mlx_layout);
    assert_eq!(shapes(&AudioModel::sanitize(mlx_layout).unwrap()), before);
}

#[test]
fn real_hugging_face_keys_sanitize_as_python_to_the_model_parameters() {
    let meta = meta();
    let root: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("config.json")).unwrap())
            .unwrap();
    let config: AudioConfig = serde_json::from_value(root["hf"]["audio_config"].clone()).unwrap();
    assert_eq!((config.hidden_size, config.input_feat_size), (1536, 128));
    // Never evaluated: the weights are shapes only.
    let model = AudioModel::new(&config).unwrap();
    let input = json_shapes(&meta["real_sanitize"]["input"]);
    let hf: HashMap<String, Array> = input
        .iter()
        .map(|(k, shape)| (k.clone(), ops::zeros(shape, Dtype::Float32).unwrap()))
        .collect();
    let sanitized = shapes(&load_hf(hf));
    assert_eq!(sanitized, json_shapes(&meta["real_sanitize"]["output"]));
    let params: BTreeMap<String, Vec<i32>> = model
        .parameters()
        .into_iter()
        .map(|(k, v)| (format!("audio_tower.{k}"), v.shape().to_vec()))
        .collect();
    assert_eq!(sanitized, params);
    assert_eq!(
        sanitized["audio_tower.subsample_conv_projection.conv_1.conv.weight"],
        [32, 3, 3, 128]
    );
    assert_eq!(
        sanitized["audio_tower.conformer.11.lconv1d.depthwise_conv1d.weight"],
        [1536, 5, 1]
    );
}

fn invalid_message<T: std::fmt::Debug>(result: mlx_vlm::Result<T>) -> String {
    match result {
        Err(Error::InvalidArgument(message)) => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let meta = meta();
    let model = model(&meta, Dtype::Float32);
    let zeros = |shape: &[i32]| ops::zeros(shape, Dtype::Float32).unwrap();
    let mask = |shape: &[i32]| ops::zeros(shape, Dtype::Bool).unwrap();

    let m = invalid_message(model.forward(&zeros(&[20, 16]), &mask(&[20])));
    assert!(m.contains("[20, 16]") && m.contains("batch axis"), "{m}");
    let m = invalid_message(model.forward(&zeros(&[1, 20, 80]), &mask(&[1, 20])));
    assert!(
        m.contains("[1, 20, 80]") && m.contains("feature_size 16"),
        "{m}"
    );
    let m = invalid_message(model.forward(&zeros(&[1, 0, 16]), &mask(&[1, 0])));
    assert!(m.contains("[1, 0, 16]") && m.contains("longer clip"), "{m}");
    let m = invalid_message(model.forward(&zeros(&[0, 20, 16]), &mask(&[0, 20])));
    assert!(m.contains("no clip"), "{m}");
    let m = invalid_message(model.forward(&zeros(&[2, 20, 16]), &mask(&[2, 19])));
    assert!(m.contains("[2, 19]") && m.contains("[2, 20]"), "{m}");
    let int_mask = ops::zeros(&[2, 20], Dtype::Int32).unwrap();
    let m = invalid_message(model.forward(&zeros(&[2, 20, 16]), &int_mask));
    assert!(m.contains("booleans") && m.contains("Int32"), "{m}");

    // The public pieces check their own inputs.
    let attention = &model.conformer[0].attention.attn;
    let m = invalid_message(attention.unfold_mlx(&zeros(&[1, 3, 2]), 1, 4, 1));
    assert!(m.contains("[1, 3, 2]") && m.contains("size 4"), "{m}");
    let m = invalid_message(attention.unfold_mlx(&zeros(&[1, 8, 2]), 3, 4, 1));
    assert!(m.contains("dimension 3"), "{m}");
    let m = invalid_message(attention.unfold_mlx(&zeros(&[1, 8, 2]), 1, 4, 0));
    assert!(m.contains("step 0"), "{m}");
    let windows = attention.unfold_mlx(&zeros(&[1, 8, 2]), 1, 4, 2).unwrap();
    assert_eq!(windows.shape(), [1, 4, 3, 2]);
    let m = invalid_message(attention.forward(&zeros(&[2, 20, 16]), &mask(&[2, 21])));
    assert!(m.contains("[2, 21]") && m.contains("[2, 20]"), "{m}");
    let m = invalid_message(Gemma3nAudioSSCPConvBlock::new(
        2,
        16,
        &model.config,
        [1, 1, 0, 2],
    ));
    assert!(m.contains("index 2"), "{m}");

    // One frame is enough: Python subsamples it to one.
    let (encodings, out_mask) = model.forward(&zeros(&[1, 1, 16]), &mask(&[1, 1])).unwrap();
    assert_eq!(encodings.shape(), [1, 1, 16]);
    assert_eq!(out_mask.shape(), [1, 1]);

    // A clip shorter than one analysis frame (100 samples) has no frames,
    // in transformers' extractor as in Rust's; Python's model then returns
    // one frame computed from nothing, Rust's an error naming the fix.
    let extractor =
        Gemma3nAudioFeatureExtractor::from_json(&json!({ "feature_size": 16 }), "test").unwrap();
    let out = extractor.extract(&[&[0.1f32; 100][..]]).unwrap();
    assert_eq!(out[0].num_frames, 0);
    let features = Array::from_vec_shaped(out[0].input_features.clone(), &[1, 0, 16]).unwrap();
    let m = invalid_message(model.forward(&features, &mask(&[1, 0])));
    assert!(m.contains("longer clip"), "{m}");
}

#[test]
fn bad_configs_are_typed_errors() {
    let meta = meta();
    let cases = [
        (
            "hidden_size",
            json!(15),
            "multiple of conf_num_attention_heads",
        ),
        ("conf_num_attention_heads", json!(0), "must be positive"),
        ("conf_attention_chunk_size", json!(0), "must be positive"),
        (
            "sscp_conv_kernel_size",
            json!([[3, 3], [3, 11]]),
            "wider than",
        ),
        (
            "sscp_conv_stride_size",
            json!([[2, 0], [2, 2]]),
            "must be positive",
        ),
    ];
    for (key, value, expected) in cases {
        let mut config = meta["audio_config"].clone();
        config[key] = value;
        let config: AudioConfig = serde_json::from_value(config).unwrap();
        match AudioModel::new(&config) {
            Err(Error::Config { message, .. }) => {
                assert!(
                    message.contains(key) || message.contains("sscp"),
                    "{message}"
                );
                assert!(message.contains(expected), "{message}");
            }
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
    // The pieces that divide by configured sizes check them too.
    let mut no_heads = audio_config(&meta);
    no_heads.conf_num_attention_heads = 0;
    assert!(matches!(
        Gemma3nAudioAttention::new(&no_heads),
        Err(Error::Config { .. })
    ));
    let mut no_stride = audio_config(&meta);
    no_stride.sscp_conv_stride_size[1] = [2, 0];
    assert!(matches!(
        Gemma3nAudioSubSampleConvProjection::new(&no_stride),
        Err(Error::Config { .. })
    ));

    let mut odd = audio_config(&meta);
    (odd.hidden_size, odd.conf_num_attention_heads) = (15, 3);
    assert!(
        matches!(AudioModel::new(&odd), Err(Error::Config { message, .. }) if message.contains("even"))
    );
}
