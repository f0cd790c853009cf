//! Element-wise ops of one array against Python MLX (goldens from
//! `tests/goldens/gen_unary.py`).

mod common;

use common::Goldens;
use mlx_rs::ops::{self, IntoOperand, NanToNumOptions};
use mlx_rs::{Array, Dtype, Error, Result};

type UnaryFn = fn(&Array) -> Result<Array>;

/// The ops of gen_unary.py's table, by Python name.
const TABLE: &[(&str, UnaryFn)] = &[
    ("abs", ops::abs),
    ("arccos", ops::arccos),
    ("arccosh", ops::arccosh),
    ("arcsin", ops::arcsin),
    ("arcsinh", ops::arcsinh),
    ("arctan", ops::arctan),
    ("arctanh", ops::arctanh),
    ("bitwise_invert", ops::bitwise_invert),
    ("ceil", ops::ceil),
    ("conjugate", ops::conjugate),
    ("copy", ops::copy),
    ("cos", ops::cos),
    ("cosh", ops::cosh),
    ("degrees", ops::degrees),
    ("erf", ops::erf),
    ("erfinv", ops::erfinv),
    ("exp", ops::exp),
    ("expm1", ops::expm1),
    ("floor", ops::floor),
    ("imag", ops::imag),
    ("isfinite", ops::isfinite),
    ("isinf", ops::isinf),
    ("isnan", ops::isnan),
    ("isneginf", ops::isneginf),
    ("isposinf", ops::isposinf),
    ("log", ops::log),
    ("log10", ops::log10),
    ("log1p", ops::log1p),
    ("log2", ops::log2),
    ("logical_not", ops::logical_not),
    ("nan_to_num", |a| {
        ops::nan_to_num(a, NanToNumOptions::default())
    }),
    ("negative", ops::negative),
    ("positive", ops::positive),
    ("radians", ops::radians),
    ("real", ops::real),
    ("reciprocal", ops::reciprocal),
    ("round", |a| ops::round(a, 0)),
    ("rsqrt", ops::rsqrt),
    ("sigmoid", ops::sigmoid),
    ("sign", ops::sign),
    ("sin", ops::sin),
    ("sinh", ops::sinh),
    ("sqrt", ops::sqrt),
    ("square", ops::square),
    ("stop_gradient", ops::stop_gradient),
    ("tan", ops::tan),
    ("tanh", ops::tanh),
    ("trunc", ops::trunc),
];

/// The `Array` methods, checked against the same goldens.
const METHODS: &[(&str, UnaryFn)] = &[
    ("abs", Array::abs),
    ("conjugate", Array::conj),
    ("cos", Array::cos),
    ("exp", Array::exp),
    ("imag", Array::imag),
    ("log", Array::log),
    ("log10", Array::log10),
    ("log1p", Array::log1p),
    ("log2", Array::log2),
    ("real", Array::real),
    ("reciprocal", Array::reciprocal),
    ("round", |a| a.round(0)),
    ("rsqrt", Array::rsqrt),
    ("sin", Array::sin),
    ("sqrt", Array::sqrt),
    ("square", Array::square),
];

/// The input dtypes of the table (gen_unary.py's DTYPES).
const DTYPES: [&str; 6] = [
    "float32",
    "float16",
    "bfloat16",
    "int32",
    "bool",
    "complex64",
];

/// Asserts that `result`, or evaluating it, fails with MLX's error.
fn assert_mlx_error(what: &str, result: Result<Array>) {
    let result = result.and_then(|a| a.eval().map(|()| a));
    match result {
        Err(Error::Mlx { message }) => assert!(!message.is_empty(), "{what}: empty message"),
        other => panic!("{what}: expected an MLX error, got {other:?}"),
    }
}

#[test]
fn table_ops_match_python_for_every_dtype() {
    let g = Goldens::load("unary");
    for &(name, op) in TABLE {
        for dtype in DTYPES {
            let golden = format!("{name}.{dtype}");
            let input = format!("{golden}.in");
            if g.has(&golden) {
                g.check(
                    &golden,
                    &op(&g.get(&input)).unwrap_or_else(|e| panic!("{golden}: {e}")),
                );
            } else {
                // Python rejected this pair: so must we, with an `Err`.
                let x = g.get("abs.float32.in").as_type(dtype_named(dtype)).unwrap();
                assert_mlx_error(&golden, op(&x));
            }
        }
    }
}

#[test]
fn methods_match_the_functions() {
    let g = Goldens::load("unary");
    for &(name, method) in METHODS {
        for dtype in DTYPES {
            let golden = format!("{name}.{dtype}");
            if g.has(&golden) {
                g.check(&golden, &method(&g.get(&format!("{golden}.in"))).unwrap());
            }
        }
    }
}

fn dtype_named(name: &str) -> Dtype {
    Dtype::ALL
        .into_iter()
        .find(|d| d.to_string() == name)
        .unwrap_or_else(|| panic!("no dtype {name}"))
}

/// The goldens of the ops with arguments, each checked by a test below.
const ROUND: &[&str] = &[
    "round/x.2",
    "round/x.-1",
    "round/xb.1",
    "round/xi.-1",
    "round/xi.-2",
    "round/half.0",
    "round/half.1",
];

#[test]
fn round_with_decimals_matches_python() {
    let g = Goldens::load("unary");
    for &name in ROUND {
        let (input, decimals) = name.rsplit_once('.').unwrap();
        let decimals: i32 = decimals.parse().unwrap();
        let x = g.get(&format!("{input}.in"));
        g.check(name, &ops::round(&x, decimals).unwrap());
        g.check(name, &x.round(decimals).unwrap());
    }
}

const CLIP: &[&str] = &[
    "clip/scalars",
    "clip/min_only",
    "clip/max_only",
    "clip/arrays",
    "clip/array_and_scalar",
    "clip/bf16_scalars",
    "clip/int_scalars",
    "clip/int_float_scalar",
    "clip/f16_f32_array",
];

#[test]
fn clip_matches_python() {
    let g = Goldens::load("unary");
    let (x, lo, hi) = (g.get("clip/x.in"), g.get("clip/lo.in"), g.get("clip/hi.in"));
    let (xb, xi, xh) = (
        g.get("clip/xb.in"),
        g.get("clip/xi.in"),
        g.get("clip/xh.in"),
    );
    let results = [
        ops::clip(&x, -0.5, 0.5),
        ops::clip(&x, 0.0, None),
        ops::clip(&x, None, 0.25f32),
        ops::clip(&x, &lo, &hi),
        ops::clip(&x, &lo, 1),
        ops::clip(&xb, -0.5, 1),
        ops::clip(&xi, -3, 4),
        ops::clip(&xi, -3, 4.5),
        ops::clip(&xh, lo.clone(), None),
    ];
    for (&name, result) in CLIP.iter().zip(results) {
        g.check(name, &result.unwrap());
    }
    // A bound held in an `Option` converts with `into_operand`.
    let upper: Option<f32> = None;
    let lower = Some(0.0f32);
    g.check(
        "clip/min_only",
        &ops::clip(
            &x,
            lower.map(IntoOperand::into_operand),
            upper.map(IntoOperand::into_operand),
        )
        .unwrap(),
    );
}

#[test]
fn clip_rejects_no_bounds_and_bad_shapes() {
    let x = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    match ops::clip(&x, None, None) {
        Err(Error::Mlx { message }) => assert!(message.contains("a_min"), "{message}"),
        other => panic!("expected an MLX error, got {other:?}"),
    }
    let lo = Array::from_slice(&[0.0f32, 1.0], &[2]).unwrap();
    match ops::clip(&x, &lo, None) {
        Err(Error::Mlx { message }) => assert!(message.contains("broadcast"), "{message}"),
        other => panic!("expected an MLX error, got {other:?}"),
    }
}

const NAN_TO_NUM: &[&str] = &["given", "nan_only", "neginf_only"];

#[test]
fn nan_to_num_with_values_matches_python() {
    let g = Goldens::load("unary");
    let cases = [
        NanToNumOptions {
            nan: -1.0,
            posinf: Some(100.0),
            neginf: Some(-100.0),
        },
        NanToNumOptions {
            nan: 2.5,
            ..Default::default()
        },
        NanToNumOptions {
            neginf: Some(-9.0),
            ..Default::default()
        },
    ];
    for dtype in ["float32", "float16", "bfloat16"] {
        let x = g.get(&format!("nan_to_num/{dtype}.in"));
        for (case, options) in NAN_TO_NUM.iter().zip(cases) {
            let name = format!("nan_to_num/{dtype}.{case}");
            g.check(&name, &ops::nan_to_num(&x, options).unwrap());
        }
    }
}

const LOGICAL_XOR: &[&str] = &[
    "logical_xor/bool_bool",
    "logical_xor/int_bool",
    "logical_xor/float_int",
    "logical_xor/bool_true",
    "logical_xor/zero_float",
];

#[test]
fn logical_xor_matches_python() {
    let g = Goldens::load("unary");
    let (a, b) = (g.get("logical_xor/a.in"), g.get("logical_xor/b.in"));
    let (ai, af) = (g.get("logical_xor/ai.in"), g.get("logical_xor/af.in"));
    let results = [
        ops::logical_xor(&a, &b),
        ops::logical_xor(&ai, &b),
        ops::logical_xor(&af, &ai),
        ops::logical_xor(&a, true),
        ops::logical_xor(0, &af),
    ];
    for (&name, result) in LOGICAL_XOR.iter().zip(results) {
        g.check(name, &result.unwrap());
    }
    let short = Array::from_slice(&[true, false, true], &[3]).unwrap();
    assert_mlx_error(
        "logical_xor of (3, 4) and (3,)",
        ops::logical_xor(&a, &short),
    );
}

const BITWISE_INVERT: [&str; 4] = ["uint8", "int8", "uint32", "int64"];

#[test]
fn bitwise_invert_of_other_integers_matches_python() {
    let g = Goldens::load("unary");
    for dtype in BITWISE_INVERT {
        let name = format!("bitwise_invert/{dtype}");
        let x = g.get(&format!("{name}.in"));
        g.check(&name, &ops::bitwise_invert(&x).unwrap());
    }
}

#[test]
fn unsupported_dtypes_fail_with_mlx_messages() {
    let x = Array::from_slice(&[1.5f32, -2.0], &[2]).unwrap();
    match ops::bitwise_invert(&x) {
        Err(Error::Mlx { message }) => assert!(message.contains("bitwise_invert"), "{message}"),
        other => panic!("expected an MLX error, got {other:?}"),
    }
    let b = Array::from_slice(&[true, false], &[2]).unwrap();
    match ops::negative(&b) {
        Err(Error::Mlx { message }) => assert!(message.contains("logical_not"), "{message}"),
        other => panic!("expected an MLX error, got {other:?}"),
    }
    let c = x.as_type(Dtype::Complex64).unwrap();
    match ops::floor(&c) {
        Err(Error::Mlx { message }) => assert!(message.contains("complex64"), "{message}"),
        other => panic!("expected an MLX error, got {other:?}"),
    }
}

#[test]
fn every_golden_is_checked() {
    let g = Goldens::load("unary");
    let table: Vec<&str> = TABLE.iter().map(|(name, _)| *name).collect();
    let mut special: Vec<String> = [ROUND, CLIP, LOGICAL_XOR]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect();
    for dtype in ["float32", "float16", "bfloat16"] {
        special.extend(NAN_TO_NUM.iter().map(|c| format!("nan_to_num/{dtype}.{c}")));
    }
    special.extend(BITWISE_INVERT.iter().map(|d| format!("bitwise_invert/{d}")));
    for name in g.names() {
        if name.ends_with(".in") {
            continue;
        }
        let in_table = name
            .split_once('.')
            .is_some_and(|(op, dtype)| table.contains(&op) && DTYPES.contains(&dtype));
        assert!(
            in_table || special.contains(&name),
            "golden {name} is checked by no test"
        );
    }
}
