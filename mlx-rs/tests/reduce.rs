//! Reductions against Python MLX: `tests/goldens/gen_reduce.py`.

mod common;

use common::Goldens;
use mlx_rs::ops::{self, Axes};
use mlx_rs::{Array, Dtype, Error, Result};

/// The axes of gen_reduce.py's `AXES`, with their name tags.
fn axes_cases() -> Vec<(&'static str, Axes)> {
    vec![
        ("all", Axes::All),
        ("1", Axes::One(1)),
        ("-1", Axes::One(-1)),
        ("0,2", Axes::Many(vec![0, 2])),
        ("-1,0", Axes::Many(vec![-1, 0])),
    ]
}

fn keep_tag(keepdims: bool) -> &'static str {
    if keepdims { "keep" } else { "drop" }
}

type Reduce = fn(&Array, Axes, bool) -> Result<Array>;

/// gen_reduce.py's `REDUCTIONS`.
fn reductions() -> Vec<(&'static str, Reduce, &'static [&'static str])> {
    let numeric: &'static [&'static str] = &["float32", "bfloat16", "int32"];
    let logical: &'static [&'static str] = &["bool", "float32", "int32"];
    vec![
        ("sum", ops::sum, &["float32", "bfloat16", "int32", "bool"]),
        ("prod", ops::prod, numeric),
        ("max", ops::max, &["float32", "bfloat16", "int32", "bool"]),
        ("min", ops::min, numeric),
        ("mean", ops::mean, numeric),
        ("median", ops::median, numeric),
        ("logsumexp", ops::logsumexp, numeric),
        ("all", ops::all, logical),
        ("any", ops::any, logical),
        ("count_nonzero", ops::count_nonzero, logical),
    ]
}

#[test]
fn reductions_match_python_over_every_axes_form() {
    let g = Goldens::load("reduce");
    let mut ops_seen = Vec::new();
    for (op, f, dtypes) in reductions() {
        ops_seen.push(op);
        for dtype in dtypes {
            let x = g.input(dtype);
            for (tag, axes) in axes_cases() {
                for keepdims in [false, true] {
                    let name = format!("{op}.{dtype}.{tag}.{}", keep_tag(keepdims));
                    let out =
                        f(&x, axes.clone(), keepdims).unwrap_or_else(|e| panic!("{name}: {e}"));
                    g.check(&name, &out);
                }
            }
        }
    }
    g.assert_covered(&ops_seen);
}

#[test]
fn var_and_std_match_python_with_ddof() {
    let g = Goldens::load("reduce");
    type Moment = fn(&Array, Axes, bool, i32) -> Result<Array>;
    let moments: [(&str, Moment); 2] = [("var", ops::var), ("std", ops::std)];
    for (op, f) in moments {
        for dtype in ["float32", "bfloat16", "int32"] {
            let x = g.input(dtype);
            for (tag, axes) in axes_cases() {
                for keepdims in [false, true] {
                    for ddof in [0, 1] {
                        let name = format!("{op}.{dtype}.{tag}.{}.ddof{ddof}", keep_tag(keepdims));
                        g.check(&name, &f(&x, axes.clone(), keepdims, ddof).unwrap());
                    }
                }
            }
        }
    }
    g.assert_covered(&["var", "std"]);
}

#[test]
fn argmax_and_argmin_match_python() {
    let g = Goldens::load("reduce");
    type ArgReduce = fn(&Array, Option<i32>, bool) -> Result<Array>;
    let arg_ops: [(&str, ArgReduce); 2] = [("argmax", ops::argmax), ("argmin", ops::argmin)];
    for (op, f) in arg_ops {
        for dtype in ["float32", "bfloat16", "int32"] {
            let x = g.input(dtype);
            for (tag, axis) in [
                ("all", None),
                ("0", Some(0)),
                ("1", Some(1)),
                ("-1", Some(-1)),
            ] {
                for keepdims in [false, true] {
                    let name = format!("{op}.{dtype}.{tag}.{}", keep_tag(keepdims));
                    let out = f(&x, axis, keepdims).unwrap();
                    assert_eq!(out.dtype(), Dtype::Uint32, "{name}");
                    g.check(&name, &out);
                }
            }
        }
    }
    g.assert_covered(&["argmax", "argmin"]);
}

#[test]
fn array_methods_delegate_to_the_functions() {
    let g = Goldens::load("reduce");
    let x = g.input("float32");
    let b = g.input("bool");
    g.check("sum.float32.0,2.keep", &x.sum([0, 2], true).unwrap());
    g.check("prod.float32.1.drop", &x.prod(1, false).unwrap());
    g.check("max.float32.-1.keep", &x.max(-1, true).unwrap());
    g.check("min.float32.all.drop", &x.min(Axes::All, false).unwrap());
    g.check(
        "mean.float32.-1,0.drop",
        &x.mean(vec![-1, 0], false).unwrap(),
    );
    g.check("logsumexp.float32.1.keep", &x.logsumexp(1, true).unwrap());
    g.check(
        "var.float32.0,2.drop.ddof1",
        &x.var(&[0, 2][..], false, 1).unwrap(),
    );
    g.check(
        "std.float32.all.keep.ddof0",
        &x.std(Axes::All, true, 0).unwrap(),
    );
    g.check("all.bool.1.drop", &b.all(1, false).unwrap());
    g.check("any.bool.-1,0.keep", &b.any([-1, 0], true).unwrap());
    g.check("argmax.float32.1.keep", &x.argmax(Some(1), true).unwrap());
    g.check("argmin.float32.all.drop", &x.argmin(None, false).unwrap());
}

#[test]
fn an_empty_axis_list_reduces_nothing() {
    let g = Goldens::load("reduce");
    let x = g.input("float32");
    g.check(
        "x.float32",
        &ops::sum(&x, Vec::<i32>::new(), false).unwrap(),
    );
    g.check(
        "x.float32",
        &ops::max(&x, Axes::Many(vec![]), true).unwrap(),
    );
}

#[test]
fn every_golden_belongs_to_a_test() {
    let g = Goldens::load("reduce");
    let known = [
        "x",
        "sum",
        "prod",
        "max",
        "min",
        "mean",
        "median",
        "logsumexp",
        "all",
        "any",
        "count_nonzero",
        "var",
        "std",
        "argmax",
        "argmin",
    ];
    for name in g.names() {
        let op = name.split('.').next().unwrap_or_default();
        assert!(known.contains(&op), "golden {name} is checked by no test");
    }
}

/// `result` is MLX's error, and its message contains `needle` (ignoring case).
fn assert_mlx_error(what: &str, result: Result<Array>, needle: &str) {
    match result {
        Err(Error::Mlx { message }) => assert!(
            message.to_lowercase().contains(needle),
            "{what}: message {message:?} does not mention {needle:?}"
        ),
        Err(other) => panic!("{what}: expected Error::Mlx, got {other:?}"),
        Ok(out) => panic!("{what}: expected an error, got shape {:?}", out.shape()),
    }
}

#[test]
fn bad_axes_are_errors() {
    let g = Goldens::load("reduce");
    let x = g.input("float32");
    let mut all: Vec<(&str, Reduce)> = reductions().into_iter().map(|(n, f, _)| (n, f)).collect();
    all.push(("var", |a, axes, keepdims| ops::var(a, axes, keepdims, 0)));
    all.push(("std", |a, axes, keepdims| ops::std(a, axes, keepdims, 1)));
    for (op, f) in all {
        assert_mlx_error(op, f(&x, Axes::One(3), false), "axis 3");
        assert_mlx_error(op, f(&x, Axes::One(-4), true), "axis -4");
        assert_mlx_error(op, f(&x, Axes::Many(vec![0, 3]), false), "axis 3");
        assert_mlx_error(op, f(&x, Axes::Many(vec![1, 1]), false), "duplicate");
        assert_mlx_error(op, f(&x, Axes::Many(vec![0, -3]), true), "duplicate");
    }
    assert_mlx_error("argmax", ops::argmax(&x, Some(3), false), "axis 3");
    assert_mlx_error("argmin", ops::argmin(&x, Some(-4), true), "axis -4");
    let scalar = Array::scalar(1.0f32);
    assert_mlx_error("sum of a scalar", ops::sum(&scalar, 0, false), "axis 0");
}

#[test]
fn empty_arrays_reduce_or_fail_cleanly() {
    let empty = Array::from_slice::<f32>(&[], &[0, 3]).unwrap();
    let sum = ops::sum(&empty, 0, false).unwrap();
    assert_eq!(sum.to_vec::<f32>().unwrap(), [0.0; 3]);
    let prod = ops::prod(&empty, Axes::All, true).unwrap();
    assert_eq!(prod.shape(), [1, 1]);
    assert_eq!(prod.to_vec::<f32>().unwrap(), [1.0]);
    let any = ops::any(&empty, Axes::All, false).unwrap();
    assert!(!any.item::<bool>().unwrap());
    assert_mlx_error("max of nothing", ops::max(&empty, 0, false), "size 0");
    assert_mlx_error(
        "argmax of nothing",
        ops::argmax(&empty, None, false),
        "zero size",
    );
    assert_mlx_error(
        "median of nothing",
        ops::median(&empty, Axes::All, false),
        "empty",
    );
    assert_mlx_error(
        "logsumexp of nothing",
        ops::logsumexp(&empty, 1, false),
        "empty",
    );
}
