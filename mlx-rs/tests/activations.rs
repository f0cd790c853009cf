//! The activation functions of `mlx.nn` against Python MLX (goldens from
//! `tests/goldens/gen_activations.py`).

mod common;

use common::{Goldens, assert_mlx};
use mlx_rs::nn::activations as act;
use mlx_rs::ops::{self, Axes};
use mlx_rs::{Array, Result};

type UnaryFn = fn(&Array) -> Result<Array>;

/// gen_activations.py's UNARY table: each function with Python's defaults.
const UNARY: &[(&str, UnaryFn)] = &[
    ("sigmoid", act::sigmoid),
    ("relu", act::relu),
    ("relu2", act::relu2),
    ("relu6", act::relu6),
    ("leaky_relu", |x| act::leaky_relu(x, 0.01)),
    ("log_softmax", |x| act::log_softmax(x, -1)),
    ("elu", |x| act::elu(x, 1.0)),
    ("softmax", |x| act::softmax(x, -1)),
    ("softplus", act::softplus),
    ("softsign", act::softsign),
    ("softshrink", |x| act::softshrink(x, 0.5)),
    ("celu", |x| act::celu(x, 1.0)),
    ("silu", act::silu),
    ("log_sigmoid", act::log_sigmoid),
    ("gelu", act::gelu),
    ("gelu_approx", act::gelu_approx),
    ("gelu_fast_approx", act::gelu_fast_approx),
    ("glu", |x| act::glu(x, -1)),
    ("step", |x| act::step(x, 0.0)),
    ("selu", act::selu),
    ("mish", act::mish),
    ("hardswish", act::hardswish),
    ("hard_tanh", |x| act::hard_tanh(x, -1.0, 1.0)),
    ("hard_shrink", |x| act::hard_shrink(x, 0.5)),
    ("softmin", |x| act::softmin(x, -1)),
    ("tanh", act::tanh),
];

/// gen_activations.py's CASES: other argument values, as `{fn}/{case}`.
const CASES: &[(&str, UnaryFn)] = &[
    ("leaky_relu/slope_0.2", |x| act::leaky_relu(x, 0.2)),
    ("log_softmax/axis_0", |x| act::log_softmax(x, 0)),
    ("log_softmax/axis_01", |x| act::log_softmax(x, [0, 1])),
    ("elu/alpha_0.5", |x| act::elu(x, 0.5)),
    ("softmax/axis_0", |x| act::softmax(x, 0)),
    ("softshrink/lambd_1", |x| act::softshrink(x, 1.0)),
    ("celu/alpha_2", |x| act::celu(x, 2.0)),
    ("glu/axis_0", |x| act::glu(x, 0)),
    ("step/threshold_0.5", |x| act::step(x, 0.5)),
    ("hard_tanh/range", |x| act::hard_tanh(x, -0.5, 2.0)),
    ("hard_shrink/lambd_1", |x| act::hard_shrink(x, 1.0)),
    ("softmin/axis_0", |x| act::softmin(x, 0)),
];

const DTYPES: [&str; 4] = ["float32", "float16", "bfloat16", "int32"];

#[test]
fn activations_match_python() {
    let g = Goldens::load("activations");

    for &(name, f) in UNARY {
        for dtype in DTYPES {
            let golden = format!("{name}.{dtype}");
            let y = f(&g.input(dtype)).unwrap_or_else(|e| panic!("{golden}: {e}"));
            g.check(&golden, &y);
        }
    }

    for &(name, f) in CASES {
        for dtype in ["float32", "bfloat16"] {
            let golden = format!("{name}.{dtype}");
            let y = f(&g.input(dtype)).unwrap_or_else(|e| panic!("{golden}: {e}"));
            g.check(&golden, &y);
        }
    }

    let alpha = g.get("prelu/alpha.in");
    for dtype in ["float32", "float16", "bfloat16"] {
        let x = g.input(dtype);
        let per_channel = alpha.as_type(x.dtype()).unwrap();
        g.check(
            &format!("prelu/channels.{dtype}"),
            &act::prelu(&x, &per_channel).unwrap(),
        );
        let single = ops::full(&[1], 0.25f32, None)
            .unwrap()
            .as_type(x.dtype())
            .unwrap();
        g.check(
            &format!("prelu/single.{dtype}"),
            &act::prelu(&x, &single).unwrap(),
        );
    }
    g.check(
        "prelu/mixed.bfloat16",
        &act::prelu(&g.input("bfloat16"), &alpha).unwrap(),
    );

    g.assert_all_used();
}

#[test]
fn scalars_are_weak() {
    let x = Array::from_slice(&[-1.5f32, 0.25, 2.0], &[3])
        .unwrap()
        .as_type(mlx_rs::Dtype::Bfloat16)
        .unwrap();
    for (name, y) in [
        ("leaky_relu", act::leaky_relu(&x, 0.3)),
        ("elu", act::elu(&x, 2.0)),
        ("celu", act::celu(&x, 0.5)),
        ("gelu", act::gelu(&x)),
        ("hard_tanh", act::hard_tanh(&x, -0.5, 0.5)),
        ("softshrink", act::softshrink(&x, 0.1)),
    ] {
        assert_eq!(y.unwrap().dtype(), mlx_rs::Dtype::Bfloat16, "{name}");
    }
    assert_eq!(act::step(&x, 0.0).unwrap().dtype(), mlx_rs::Dtype::Int32);
}

/// Forces evaluation so that errors raised at eval time surface too.
fn evaluated(r: Result<Array>) -> Result<Array> {
    r.and_then(|a| a.eval().map(|()| a))
}

#[test]
fn bad_arguments_are_errors() {
    let odd = ops::ones(&[3, 5], mlx_rs::Dtype::Float32).unwrap();
    assert_mlx(evaluated(act::glu(&odd, -1)), "equal size");
    assert_mlx(evaluated(act::glu(&odd, 0)), "equal size");
    assert_mlx(evaluated(act::glu(&odd, 2)), "out of bounds");
    assert_mlx(evaluated(act::log_softmax(&odd, 2)), "Invalid axis 2");
    assert_mlx(evaluated(act::log_softmax(&odd, [0, 0])), "Duplicate axes");
    assert_mlx(evaluated(act::softmax(&odd, -3)), "Invalid axis -3");
    assert_mlx(evaluated(act::softmin(&odd, 5)), "Invalid axis 5");
    let alpha = ops::ones(&[4], mlx_rs::Dtype::Float32).unwrap();
    assert_mlx(evaluated(act::prelu(&odd, &alpha)), "cannot be broadcast");
    // Every axis at once (Python's `axis=None`) is accepted.
    let all = act::log_softmax(&odd, Axes::All).unwrap();
    let expected = -(15f32.ln());
    for v in all.to_vec::<f32>().unwrap() {
        assert!((v - expected).abs() < 1e-6, "{v} != {expected}");
    }
}

/// `gelu` gives Python's float32 values bit for bit, where MLX's fused
/// kernel computes `erf` otherwise than its `erf` primitive (18 of the 48
/// golden inputs differ by one ulp between the two forms in Python): it
/// is compiled, as Python's is. Needs a C++ compiler on `PATH` at run
/// time, as MLX's CPU compile does (without one MLX falls back to the
/// plain ops and Python's goldens were not made that way).
#[test]
fn gelu_is_pythons_compiled_gelu_bit_for_bit() {
    let g = Goldens::load("activations");
    let x = g.input("float32");
    g.check_tol("gelu.float32", &act::gelu(&x).unwrap(), 0.0, 0.0);
    // The plain ops differ: this test can tell the two apart.
    let cdf = ops::add(
        1,
        ops::erf(&ops::divide(&x, std::f64::consts::SQRT_2).unwrap()).unwrap(),
    )
    .unwrap();
    let plain = ops::divide(ops::multiply(&x, cdf).unwrap(), 2).unwrap();
    let golden = g.get("gelu.float32");
    let same = ops::equal(&plain, &golden)
        .unwrap()
        .all(None, false)
        .unwrap();
    assert!(
        !same.item::<bool>().unwrap(),
        "the plain ops gave Python's values too"
    );
}
