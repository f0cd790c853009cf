//! Arrays made from sizes and values against Python MLX (goldens from
//! `tests/goldens/gen_creation.py`).

mod common;

use common::Goldens;
use mlx_rs::ops::{self, EyeOptions};
use mlx_rs::{Array, Dtype, Error, Result};

/// Every golden of creation.safetensors but the inputs (`in/...`), with
/// the Rust call that must reproduce it.
fn cases(g: &Goldens) -> Vec<(String, Result<Array>)> {
    let (row, xi, xf) = (g.get("in/row"), g.get("in/xi"), g.get("in/xf"));
    let (xi8, xh) = (g.get("in/xi8"), g.get("in/xh"));
    let eye = |m, k, dtype| EyeOptions { m, k, dtype };
    let f32 = Dtype::Float32;
    let cases: Vec<(&str, Result<Array>)> = vec![
        ("arange/0_10_1", ops::arange(0, 10, 1, None)),
        ("arange/stop_only", ops::arange(0, 7, 1, None)),
        ("arange/0_5_0.5", ops::arange(0, 5, 0.5, None)),
        ("arange/1.0_4_1", ops::arange(1.0, 4, 1, None)),
        ("arange/10_0_-3", ops::arange(10, 0, -3, None)),
        ("arange/5_0_1", ops::arange(5, 0, 1, None)),
        ("arange/-3.5_2.1_0.7", ops::arange(-3.5, 2.1, 0.7, None)),
        (
            "arange/0_5_2_float16",
            ops::arange(0, 5, 2, Some(Dtype::Float16)),
        ),
        (
            "arange/0_5_1_uint8",
            ops::arange(0, 5, 1, Some(Dtype::Uint8)),
        ),
        (
            "arange/0_3_1_complex64",
            ops::arange(0, 3, 1, Some(Dtype::Complex64)),
        ),
        (
            "arange/0.5_3_1_int32",
            ops::arange(0.5, 3, 1, Some(Dtype::Int32)),
        ),
        (
            "arange/big_ints",
            ops::arange(1i64 << 31, (1i64 << 31) + 3, 1, None),
        ),
        ("arange/0_5_inf", ops::arange(0, 5, f64::INFINITY, None)),
        ("eye/3", ops::eye(3, EyeOptions::default())),
        ("eye/3_4", ops::eye(3, eye(Some(4), 0, f32))),
        ("eye/4_3_k1", ops::eye(4, eye(Some(3), 1, f32))),
        ("eye/3_k-1_int32", ops::eye(3, eye(None, -1, Dtype::Int32))),
        ("eye/2_3_k5", ops::eye(2, eye(Some(3), 5, f32))),
        ("eye/0", ops::eye(0, EyeOptions::default())),
        ("eye/3_bool", ops::eye(3, eye(None, 0, Dtype::Bool))),
        ("eye/3_bfloat16", ops::eye(3, eye(None, 0, Dtype::Bfloat16))),
        ("identity/4", ops::identity(4, f32)),
        ("identity/3_int32", ops::identity(3, Dtype::Int32)),
        ("identity/0", ops::identity(0, f32)),
        ("tri/3", ops::tri(3, EyeOptions::default())),
        ("tri/3_4_k1", ops::tri(3, eye(Some(4), 1, f32))),
        (
            "tri/4_3_k-1_int32",
            ops::tri(4, eye(Some(3), -1, Dtype::Int32)),
        ),
        ("tri/2_bool", ops::tri(2, eye(None, 0, Dtype::Bool))),
        ("tri/-1", ops::tri(-1, EyeOptions::default())),
        ("tri/2_-1", ops::tri(2, eye(Some(-1), 0, f32))),
        ("full/int", ops::full(&[2, 3], 7, None)),
        ("full/float", ops::full(&[2, 3], 2.5, None)),
        ("full/bool", ops::full(&[2, 3], true, None)),
        (
            "full/float_float16",
            ops::full(&[2, 3], 2.5, Some(Dtype::Float16)),
        ),
        (
            "full/int_bfloat16",
            ops::full(&[2, 3], 3, Some(Dtype::Bfloat16)),
        ),
        ("full/big_int", ops::full(&[2], 1i64 << 40, None)),
        ("full/row", ops::full(&[3, 4], &row, None)),
        ("full/scalar_shape", ops::full(&[], 1.5, None)),
        ("full/empty", ops::full(&[0, 3], 1.0, None)),
        (
            "full/row_int32",
            ops::full(&[3, 4], row.clone(), Some(Dtype::Int32)),
        ),
        (
            "full/float_int32",
            ops::full(&[2, 3], 2.5, Some(Dtype::Int32)),
        ),
        ("full_like/int_float", ops::full_like(&xi, 2.5, None)),
        ("full_like/float_int", ops::full_like(&xf, 2, None)),
        (
            "full_like/float16",
            ops::full_like(&xi, 2.5, Some(Dtype::Float16)),
        ),
        (
            "full_like/int8_array",
            ops::full_like(&xi8, Array::from(vec![1.5f32, -2.5]), None),
        ),
        ("full_like/row", ops::full_like(&xf, &row, None)),
        ("linspace/0_1_5", ops::linspace(0.0, 1.0, 5, true, f32)),
        (
            "linspace/0_1_4_open",
            ops::linspace(0.0, 1.0, 4, false, f32),
        ),
        (
            "linspace/-2_3_7_float16",
            ops::linspace(-2.0, 3.0, 7, true, Dtype::Float16),
        ),
        (
            "linspace/0_10_5_int32",
            ops::linspace(0.0, 10.0, 5, true, Dtype::Int32),
        ),
        ("linspace/1_0_6", ops::linspace(1.0, 0.0, 6, true, f32)),
        ("linspace/0_10_1", ops::linspace(0.0, 10.0, 1, true, f32)),
        (
            "linspace/0_10_1_open",
            ops::linspace(0.0, 10.0, 1, false, f32),
        ),
        ("linspace/0_1_0", ops::linspace(0.0, 1.0, 0, true, f32)),
        (
            "linspace/default_num",
            ops::linspace(-1.0, 1.0, 50, true, f32),
        ),
    ];
    let mut out: Vec<(String, Result<Array>)> = cases
        .into_iter()
        .map(|(name, result)| (name.to_string(), result))
        .collect();
    type Filled = fn(&[i32], Dtype) -> Result<Array>;
    for (name, filled) in [("ones", ops::ones as Filled), ("zeros", ops::zeros)] {
        out.push((format!("{name}/2_3"), filled(&[2, 3], f32)));
        out.push((format!("{name}/scalar"), filled(&[], f32)));
        out.push((format!("{name}/0"), filled(&[0], f32)));
        for dtype in [Dtype::Int32, Dtype::Bool, Dtype::Bfloat16, Dtype::Complex64] {
            out.push((format!("{name}/2_3_{dtype}"), filled(&[2, 3], dtype)));
        }
    }
    type Like = fn(&Array, Option<Dtype>) -> Result<Array>;
    for (name, like) in [
        ("ones_like", ops::ones_like as Like),
        ("zeros_like", ops::zeros_like),
    ] {
        out.push((format!("{name}/float16"), like(&xh, None)));
        out.push((format!("{name}/int32"), like(&xh, Some(Dtype::Int32))));
        out.push((
            format!("{name}/complex64"),
            like(&xi, Some(Dtype::Complex64)),
        ));
    }
    type Window = fn(i32) -> Result<Array>;
    for (name, window) in [
        ("bartlett", ops::bartlett as Window),
        ("blackman", ops::blackman),
        ("hamming", ops::hamming),
        ("hanning", ops::hanning),
    ] {
        for m in [-1, 0, 1, 2, 5, 8] {
            out.push((format!("{name}/{m}"), window(m)));
        }
    }
    out
}

#[test]
fn creation_matches_python() {
    let g = Goldens::load("creation");
    for (name, result) in cases(&g) {
        let array = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        g.check(&name, &array);
    }
}

#[test]
fn every_golden_is_checked() {
    let g = Goldens::load("creation");
    let checked: Vec<String> = cases(&g).into_iter().map(|(name, _)| name).collect();
    for name in g.names() {
        assert!(
            name.starts_with("in/") || checked.contains(&name),
            "golden {name} is checked by no test"
        );
    }
}

fn expect_invalid(what: &str, result: Result<Array>, needle: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains(needle), "{what}: {message}")
        }
        other => panic!("{what}: expected an invalid argument, got {other:?}"),
    }
}

fn expect_mlx(what: &str, result: Result<Array>, needle: &str) {
    match result {
        Err(Error::Mlx { message }) => assert!(message.contains(needle), "{what}: {message}"),
        other => panic!("{what}: expected an MLX error, got {other:?}"),
    }
}

#[test]
fn negative_and_huge_shapes_are_rejected() {
    let f32 = Dtype::Float32;
    expect_invalid("zeros", ops::zeros(&[-1, 2], f32), "negative");
    expect_invalid("ones", ops::ones(&[2, -3], f32), "negative");
    expect_invalid("full", ops::full(&[-2], 1.0, None), "negative");
    expect_invalid("eye", ops::eye(-1, EyeOptions::default()), "negative");
    let m = EyeOptions {
        m: Some(-2),
        ..Default::default()
    };
    expect_invalid("eye m", ops::eye(2, m), "negative");
    expect_invalid("identity", ops::identity(-3, f32), "negative");
    // Sizes whose byte count wraps around: MLX would address out of bounds.
    let huge = [i32::MAX; 3];
    expect_invalid("zeros", ops::zeros(&huge, f32), "too large");
    expect_invalid("ones", ops::ones(&huge, Dtype::Complex64), "too large");
    expect_invalid("full", ops::full(&huge, 1, None), "too large");
    let wide = EyeOptions {
        m: Some(i32::MAX),
        ..Default::default()
    };
    expect_invalid("eye", ops::eye(i32::MAX, wide), "too large");
    expect_invalid("tri", ops::tri(i32::MAX, wide), "too large");
    // A zero dimension keeps any shape empty.
    assert_eq!(ops::zeros(&[i32::MAX, i32::MAX, 0], f32).unwrap().size(), 0);
    assert_eq!(ops::eye(0, wide).unwrap().size(), 0);
}

#[test]
fn bad_arguments_fail_with_mlx_messages() {
    let f32 = Dtype::Float32;
    expect_mlx("arange step 0", ops::arange(0, 5, 0, None), "step");
    expect_mlx(
        "arange size",
        ops::arange(0.0, 1e12, 1, None),
        "Maximum size",
    );
    expect_mlx("arange nan", ops::arange(0.0, f64::NAN, 1, None), "length");
    expect_mlx(
        "arange bool",
        ops::arange(0, 5, 1, Some(Dtype::Bool)),
        "bool",
    );
    expect_mlx("linspace num", ops::linspace(0.0, 1.0, -1, true, f32), "-1");
    let row = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    expect_mlx(
        "full broadcast",
        ops::full(&[2, 3], &row, None),
        "broadcast",
    );
    let x = ops::zeros(&[3], f32).unwrap();
    expect_mlx(
        "full_like broadcast",
        ops::full_like(&x, &row, None),
        "broadcast",
    );
}

#[test]
fn dtypes_follow_python_defaults() {
    assert_eq!(ops::arange(0, 3, 1, None).unwrap().dtype(), Dtype::Int32);
    assert_eq!(
        ops::arange(0u8, 3i64, 1, None).unwrap().dtype(),
        Dtype::Int32
    );
    assert_eq!(
        ops::arange(0, 3, 0.5f32, None).unwrap().dtype(),
        Dtype::Float32
    );
    assert_eq!(
        ops::arange(0, 5_000_000_000i64, 2_500_000_000i64, None)
            .unwrap()
            .dtype(),
        Dtype::Int64
    );
    assert_eq!(ops::full(&[1], 1u32, None).unwrap().dtype(), Dtype::Int32);
    let x = Array::from_slice(&[1u8, 2], &[2]).unwrap();
    assert_eq!(ops::full_like(&x, 200, None).unwrap().dtype(), Dtype::Uint8);
    // Python: "Converting 300 to uint8 would result in overflow."
    assert!(matches!(
        ops::full_like(&x, 300, None),
        Err(mlx_rs::Error::InvalidArgument(_))
    ));
    assert_eq!(ops::zeros_like(&x, None).unwrap().dtype(), Dtype::Uint8);
    assert_eq!(
        ops::ones_like(&x, None).unwrap().to_vec::<u8>().unwrap(),
        [1, 1]
    );
}
