//! Qwen2.5-VL's vision tower against Python mlx-vlm 0.7.6: every step of
//! the forward pass on the tiny deterministic checkpoint, in float32 and
//! bfloat16, against the goldens of tests/fixtures/qwen2_5_vl/gen_goldens.py;
//! parameter keys against gen_vision_keys.py; bad grids and weights.

use std::collections::{BTreeMap, HashMap};

use mlx_rs::nn::{ItemMut, ModuleExt, Verify};
use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::Error;
use mlx_vlm::fixtures;
use mlx_vlm::models::qwen2_5_vl::config::{ModelConfig, VisionConfig};
use mlx_vlm::models::qwen2_5_vl::vision::{VisionModel, check_array_shape};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen2_5_vl");

fn safetensors(name: &str) -> HashMap<String, Array> {
    let path = format!("{FIXTURES}/goldens/{name}.safetensors");
    mlx_rs::io::load_safetensors(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .0
}

fn vision_config() -> VisionConfig {
    let text = fixtures::tiny_config().to_string();
    ModelConfig::from_json(&text, "config.json")
        .unwrap()
        .vision_config
}

/// The tower with the checkpoint's `visual.*` weights, loaded as Python's
/// `load` does: prefix dropped, `sanitize`, strict update.
fn load_model(dtype: Dtype) -> VisionModel {
    let mut model = VisionModel::new(&vision_config()).unwrap();
    let weights: HashMap<String, Array> = fixtures::hf_weights(&fixtures::tiny_config(), dtype)
        .unwrap()
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("visual.")?.to_string(), v)))
        .collect();
    let sanitized: BTreeMap<String, Array> = model.sanitize(weights).unwrap().into_iter().collect();
    // Python's update ignores dtypes; Rust's strict one checks them, so the
    // float32-initialised parameters take the checkpoint's dtype first.
    model.apply_to_modules(&mut |_, module| {
        module.items_mut(&mut |_, item| {
            if let ItemMut::Param(p) = item {
                let cast = p.as_type(dtype).unwrap();
                p.set(cast);
            }
        })
    });
    model
        .update_parameters(&sanitized, Verify::Strict)
        .unwrap_or_else(|e| panic!("strict load: {e}"));
    model
}

/// Whole-tensor comparison: `|got - want| <= atol + rtol * |want|` everywhere.
fn assert_close(key: &str, got: &Array, want: &Array, rtol: f32, atol: f32) {
    assert_eq!(got.shape(), want.shape(), "{key}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{key}: dtype");
    let g = got.to_vec_as::<f32>().unwrap();
    let w = want.to_vec_as::<f32>().unwrap();
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let excess = (a - b).abs() - (atol + rtol * b.abs());
        assert!(!a.is_nan(), "{key}[{i}] is NaN");
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{key}: element {i} is {} but Python has {} (rtol {rtol}, atol {atol})",
        g[i],
        w[i]
    );
}

fn assert_ints(key: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{key}: shape");
    assert_eq!(
        got.to_vec::<i32>().unwrap(),
        want.to_vec::<i32>().unwrap(),
        "{key}"
    );
}

fn ints(values: &[i32]) -> Array {
    Array::from_slice(values, &[values.len() as i32]).unwrap()
}

/// Python's `dict(tree_flatten(VisionModel(cfg).parameters()))`, key ->
/// shape, as gen_vision_keys.py wrote it.
#[test]
fn parameter_keys_are_pythons() {
    let path = format!("{FIXTURES}/vision_param_keys.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let python: BTreeMap<String, Vec<i32>> = serde_json::from_str(&text).unwrap();
    let model = VisionModel::new(&vision_config()).unwrap();
    let rust: BTreeMap<String, Vec<i32>> = model
        .parameters()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    assert_eq!(rust, python);
}

/// Every intermediate of gen_goldens.py's `intermediates` for the `single`
/// case, in the same order.
fn check_against_goldens(variant: &str, dtype: Dtype, rtol: f32, atol: f32) {
    let model = load_model(dtype);
    let g = safetensors(variant);
    let p = safetensors("processor");
    let golden = |k: &str| {
        g.get(k)
            .unwrap_or_else(|| panic!("{variant}: no golden {k}"))
    };
    let close = |k: &str, got: &Array| assert_close(k, got, golden(k), rtol, atol);

    // As Python's Model does before calling the tower.
    let pv = p["single.pixel_values"]
        .as_type(model.patch_embed.proj.weight.dtype())
        .unwrap();
    let grid_array = &p["single.image_grid_thw"];
    let grid = model.grid_thw_tolist(grid_array).unwrap();

    let x = model.patch_embed.forward(&pv).unwrap();
    close("vision.patch_embed", &x);
    // float32 in both variants: tight.
    let rot = model.rot_pos_emb(&grid).unwrap();
    assert_close(
        "vision.rotary_pos_emb",
        &rot,
        golden("vision.rotary_pos_emb"),
        1e-5,
        1e-5,
    );

    let (window_index, cu_raw) = model.get_window_index(&grid).unwrap();
    assert_ints(
        "vision.window_index",
        &window_index,
        golden("vision.window_index"),
    );
    let mut cu_window = cu_raw.to_vec::<i32>().unwrap();
    cu_window.dedup();
    assert_ints(
        "vision.cu_window_seqlens",
        &ints(&cu_window),
        golden("vision.cu_window_seqlens"),
    );

    let n = x.dim(0).unwrap();
    let mu = model.spatial_merge_unit;
    let by_window = |a: &Array| {
        let a = a.reshape(&[n / mu, mu, -1]).unwrap();
        ops::take(&a, &window_index, 0)
            .unwrap()
            .reshape(&[n, -1])
            .unwrap()
    };
    let mut x = by_window(&x);
    let rot = by_window(&rot);
    close("vision.hidden_windowed", &x);

    let mut cu_seqlens = vec![0];
    for &[t, h, w] in &grid {
        for _ in 0..t {
            cu_seqlens.push(cu_seqlens.last().unwrap() + h * w);
        }
    }
    assert_ints(
        "vision.cu_seqlens",
        &ints(&cu_seqlens),
        golden("vision.cu_seqlens"),
    );

    assert_eq!(model.blocks.len(), 2);
    for (i, blk) in model.blocks.iter().enumerate() {
        let full = model.fullatt_block_indexes.contains(&(i as i32));
        let cs = if full { &cu_seqlens } else { &cu_window };
        if i == 0 {
            let h1 = blk.norm1.forward(&x).unwrap();
            close("vision.block.0.norm1", &h1);
            let attn = blk.attn.forward(&h1, cs, &rot).unwrap();
            close("vision.block.0.attn", &attn);
            let mlp = blk
                .mlp
                .forward(
                    &blk.norm2
                        .forward(&(&x + golden("vision.block.0.attn")))
                        .unwrap(),
                )
                .unwrap();
            close("vision.block.0.mlp", &mlp);
        }
        x = blk.forward(&x, cs, &rot).unwrap();
        close(&format!("vision.block.{i}"), &x);
    }
    close("vision.merger_windowed", &model.merger.forward(&x).unwrap());
    close("vision.output", &model.forward(&pv, grid_array).unwrap());
}

#[test]
fn f32_matches_python() {
    check_against_goldens("f32", Dtype::Float32, 1e-5, 1e-4);
}

#[test]
fn bf16_matches_python() {
    check_against_goldens("bf16", Dtype::Bfloat16, 2e-2, 2e-2);
}

/// Attention never crosses images, so each image's rows of a two-image
/// call are that image run alone (and the first is the `single` golden).
#[test]
fn multi_image_rows_are_each_image_alone() {
    let model = load_model(Dtype::Float32);
    let p = safetensors("processor");
    let pv = &p["multi.pixel_values"];
    let grid = &p["multi.image_grid_thw"];
    let rows = model.grid_thw_tolist(grid).unwrap();
    assert_eq!(rows.len(), 2);
    let out = model.forward(pv, grid).unwrap();

    let patches: Vec<i32> = rows.iter().map(|[t, h, w]| t * h * w).collect();
    let tokens: Vec<i32> = patches.iter().map(|n| n / 4).collect();
    assert_eq!(out.shape(), &[tokens[0] + tokens[1], 64]);

    let pv_parts = ops::split(pv, [patches[0]], 0).unwrap();
    let out_parts = ops::split(&out, [tokens[0]], 0).unwrap();
    for i in 0..2 {
        let grid_i = Array::from_slice(&rows[i], &[1, 3]).unwrap();
        let alone = model.forward(&pv_parts[i], &grid_i).unwrap();
        assert_close(&format!("image {i}"), &out_parts[i], &alone, 1e-5, 1e-4);
    }
    let single = safetensors("f32");
    assert_close(
        "multi image 0 vs single golden",
        &out_parts[0],
        &single["vision.output"],
        1e-5,
        1e-4,
    );
}

fn expect_invalid(what: &str, result: mlx_vlm::Result<Array>) {
    match result {
        Err(Error::InvalidArgument(message)) => eprintln!("{what}: {message}"),
        Err(e) => panic!("{what}: expected InvalidArgument, got {e}"),
        Ok(a) => panic!("{what}: expected an error, got shape {:?}", a.shape()),
    }
}

#[test]
fn bad_grids_are_errors() {
    let model = load_model(Dtype::Float32);
    let p = safetensors("processor");
    let pv = &p["single.pixel_values"];
    let grid = |v: &[i32], shape: &[i32]| Array::from_slice(v, shape).unwrap();

    // Too many and too few patches for the pixel values.
    expect_invalid(
        "[1, 10, 16]",
        model.forward(pv, &grid(&[1, 10, 16], &[1, 3])),
    );
    expect_invalid(
        "[1, 10, 12]",
        model.forward(pv, &grid(&[1, 10, 12], &[1, 3])),
    );
    expect_invalid(
        "[2, 10, 14]",
        model.forward(pv, &grid(&[2, 10, 14], &[1, 3])),
    );
    // Not a multiple of the merge size, not positive.
    expect_invalid("[1, 9, 14]", model.forward(pv, &grid(&[1, 9, 14], &[1, 3])));
    expect_invalid("[1, 10, 0]", model.forward(pv, &grid(&[1, 10, 0], &[1, 3])));
    expect_invalid(
        "[-1, 10, 14]",
        model.forward(pv, &grid(&[-1, 10, 14], &[1, 3])),
    );
    // Wrong shape or dtype, no images.
    expect_invalid("shape [1, 2]", model.forward(pv, &grid(&[10, 14], &[1, 2])));
    expect_invalid("shape [3]", model.forward(pv, &grid(&[1, 10, 14], &[3])));
    expect_invalid("no rows", model.forward(pv, &grid(&[], &[0, 3])));
    let float_grid = Array::from_slice(&[1.0f32, 10.0, 14.0], &[1, 3]).unwrap();
    expect_invalid("float grid", model.forward(pv, &float_grid));
    let huge = Array::from_slice(&[1i64, 1 << 40, 14], &[1, 3]).unwrap();
    expect_invalid("huge grid", model.forward(pv, &huge));

    // The hooks check host grids too.
    expect_invalid("rot_pos_emb", model.rot_pos_emb(&[[1, 9, 14]]));
    expect_invalid("rot_pos_emb empty", model.rot_pos_emb(&[]));
    assert!(matches!(
        model.get_window_index(&[[1, 10, 0]]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn other_model_types_and_broken_sizes_are_rejected() {
    let mut config = vision_config();
    config.model_type = "qwen2_vl".into();
    assert!(matches!(
        VisionModel::new(&config),
        Err(Error::UnknownModelType { .. })
    ));
    let changes: [fn(&mut VisionConfig); 5] = [
        |c: &mut VisionConfig| c.num_heads = 0,
        |c: &mut VisionConfig| c.num_heads = 3,
        |c: &mut VisionConfig| c.spatial_merge_size = 0,
        |c: &mut VisionConfig| c.patch_size = 0,
        |c: &mut VisionConfig| c.window_size = 27,
    ];
    for change in changes {
        let mut config = vision_config();
        change(&mut config);
        assert!(
            matches!(VisionModel::new(&config), Err(Error::Config { .. })),
            "{config:?}"
        );
    }
}

#[test]
fn sanitize_drops_position_ids_and_converts_the_conv_weight() {
    let model = VisionModel::new(&vision_config()).unwrap();
    let hf = Array::from_vec_shaped(
        (0..32 * 3 * 2 * 14 * 14).map(|i| i as f32).collect(),
        &[32, 3, 2, 14, 14],
    )
    .unwrap();
    assert!(!check_array_shape(&hf));
    let weights = HashMap::from([
        ("patch_embed.proj.weight".to_string(), hf.clone()),
        ("position_ids".to_string(), ints(&[0, 1])),
        ("merger.ln_q.weight".to_string(), ints(&[7])),
    ]);
    let out = model.sanitize(weights).unwrap();
    assert!(!out.contains_key("position_ids"));
    assert_ints("ln_q", &out["merger.ln_q.weight"], &ints(&[7]));
    let converted = &out["patch_embed.proj.weight"];
    assert_eq!(converted.shape(), &[32, 2, 14, 14, 3]);
    assert!(check_array_shape(converted));
    let expected = ops::transpose(&hf, &[0, 2, 3, 4, 1][..]).unwrap();
    assert_close("converted", converted, &expected, 0.0, 0.0);

    // Already channels-last: unchanged (sanitize runs twice on re-saved
    // checkpoints).
    let again = model.sanitize(out).unwrap();
    assert_close(
        "again",
        &again["patch_embed.proj.weight"],
        &expected,
        0.0,
        0.0,
    );

    // A weight that is no 3-D convolution's.
    let flat = HashMap::from([("patch_embed.proj.weight".to_string(), ints(&[1, 2, 3]))]);
    assert!(matches!(model.sanitize(flat), Err(Error::Weights { .. })));
}
