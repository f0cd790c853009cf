//! Sorting, selection and scans against Python MLX:
//! `tests/goldens/gen_sort.py`.

mod common;

use common::Goldens;
use mlx_rs::ops::{self, AccumulateOptions, Axes, CumulativeOptions, SearchSide};
use mlx_rs::{Array, Dtype, Error, Result};

const DTYPES: [&str; 3] = ["float32", "bfloat16", "int32"];

/// gen_sort.py's `AXES`, with their name tags.
const AXES: [(&str, Option<i32>); 4] = [
    ("all", None),
    ("0", Some(0)),
    ("1", Some(1)),
    ("-1", Some(-1)),
];

#[test]
fn sort_and_argsort_match_python() {
    let g = Goldens::load("sort");
    type SortOp = fn(&Array, Option<i32>) -> Result<Array>;
    let sort_ops: [(&str, SortOp); 2] = [("sort", ops::sort), ("argsort", ops::argsort)];
    for (op, f) in sort_ops {
        for dtype in DTYPES {
            let x = g.input(dtype);
            for (tag, axis) in AXES {
                g.check(&format!("{op}.{dtype}.{tag}"), &f(&x, axis).unwrap());
            }
        }
    }
    g.assert_covered(&["sort", "argsort"]);
}

#[test]
fn topk_finds_the_largest_elements() {
    let g = Goldens::load("sort");
    for dtype in DTYPES {
        let x = g.input(dtype);
        for (tag, axis) in [("all", None), ("0", Some(0)), ("-1", Some(-1))] {
            for k in [1, 3] {
                let top = ops::topk(&x, k, axis).unwrap();
                // The order of the k elements is unspecified: compare sorted.
                let sorted = ops::sort(&top, Some(axis.unwrap_or(-1))).unwrap();
                g.check(&format!("topk_sorted.{dtype}.{tag}.k{k}"), &sorted);
            }
        }
    }
    g.assert_covered(&["topk_sorted"]);
}

/// The lanes of row-major `values` of `shape` along `axis`.
fn lanes(values: &[f64], shape: &[i32], axis: usize) -> Vec<Vec<f64>> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let n = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for i in 0..inner {
            out.push((0..n).map(|j| values[(o * n + j) * inner + i]).collect());
        }
    }
    out
}

fn sorted(mut lane: Vec<f64>) -> Vec<f64> {
    lane.sort_by(f64::total_cmp);
    lane
}

/// The lane with each side of `kth` sorted: the sorted lane exactly when
/// `lane` is partitioned around `kth`.
fn canonical(lane: &[f64], kth: usize) -> Vec<f64> {
    let mut out = sorted(lane[..kth].to_vec());
    out.push(lane[kth]);
    out.extend(sorted(lane[kth + 1..].to_vec()));
    out
}

#[test]
fn partition_and_argpartition_partition_around_kth() {
    let g = Goldens::load("sort");
    for dtype in DTYPES {
        let x = g.get(&format!("x.{dtype}"));
        for (tag, axis) in [("all", None), ("0", Some(0i32)), ("-1", Some(-1))] {
            // Lanes along the axis, of the input (flattened for None).
            let (shape, lane_axis) = match axis {
                None => (vec![x.size() as i32], 0),
                Some(a) => (x.shape().to_vec(), a.rem_euclid(x.ndim() as i32) as usize),
            };
            let expected = g.get(&format!("sort.{dtype}.{tag}"));
            let expected = lanes(&expected.to_vec_as::<f64>().unwrap(), &shape, lane_axis);
            let input = lanes(&x.to_vec_as::<f64>().unwrap(), &shape, lane_axis);
            let n = shape[lane_axis];
            for kth in [0i32, 2, -1] {
                let k = kth.rem_euclid(n) as usize;
                let what = format!("{dtype}, axis {tag}, kth {kth}");

                let part = ops::partition(&x, kth, axis).unwrap();
                assert_eq!(part.shape(), &shape[..], "partition {what}: shape");
                assert_eq!(part.dtype(), x.dtype(), "partition {what}: dtype");
                let got = lanes(&part.to_vec_as::<f64>().unwrap(), &shape, lane_axis);
                for (lane, want) in got.iter().zip(&expected) {
                    assert_eq!(&canonical(lane, k), want, "partition {what}");
                }

                let idx = ops::argpartition(&x, kth, axis).unwrap();
                assert_eq!(idx.dtype(), Dtype::Uint32, "argpartition {what}: dtype");
                assert_eq!(idx.shape(), &shape[..], "argpartition {what}: shape");
                let idx = lanes(&idx.to_vec_as::<f64>().unwrap(), &shape, lane_axis);
                for ((lane, values), want) in idx.iter().zip(&input).zip(&expected) {
                    let picked: Vec<f64> = lane.iter().map(|&i| values[i as usize]).collect();
                    // Values are distinct, so this also makes `lane` a permutation.
                    assert_eq!(&canonical(&picked, k), want, "argpartition {what}");
                }
            }
        }
    }
}

fn direction(reverse: bool) -> &'static str {
    if reverse { "rev" } else { "fwd" }
}

fn inclusion(inclusive: bool) -> &'static str {
    if inclusive { "incl" } else { "excl" }
}

#[test]
fn scans_match_python() {
    let g = Goldens::load("sort");
    type Accumulate = fn(&Array, Option<i32>, AccumulateOptions) -> Result<Array>;
    type Scan = fn(&Array, Option<i32>, CumulativeOptions) -> Result<Array>;
    let accumulations: [(&str, Accumulate, &[&str]); 2] = [
        (
            "cumsum",
            ops::cumsum,
            &["float32", "bfloat16", "int32", "bool"],
        ),
        ("cumprod", ops::cumprod, &DTYPES),
    ];
    let scans: [(&str, Scan, &[&str]); 3] = [
        ("cummax", ops::cummax, &DTYPES),
        ("cummin", ops::cummin, &DTYPES),
        ("logcumsumexp", ops::logcumsumexp, &["float32", "bfloat16"]),
    ];
    // Each scan as (name, dtypes, |x, axis, reverse, inclusive| result).
    type Case = (
        &'static str,
        &'static [&'static str],
        Box<dyn Fn(&Array, Option<i32>, bool, bool) -> Array>,
    );
    let mut cases: Vec<Case> = Vec::new();
    for (op, f, dtypes) in accumulations {
        cases.push((
            op,
            dtypes,
            Box::new(move |x, axis, reverse, inclusive| {
                let options = AccumulateOptions {
                    reverse,
                    inclusive,
                    ..Default::default()
                };
                f(x, axis, options).unwrap()
            }),
        ));
    }
    for (op, f, dtypes) in scans {
        cases.push((
            op,
            dtypes,
            Box::new(move |x, axis, reverse, inclusive| {
                f(x, axis, CumulativeOptions { reverse, inclusive }).unwrap()
            }),
        ));
    }
    for (op, dtypes, f) in &cases {
        for dtype in dtypes.iter() {
            let x = g.input(dtype);
            for (tag, axis) in AXES {
                for reverse in [false, true] {
                    for inclusive in [true, false] {
                        let name = format!(
                            "{op}.{dtype}.{tag}.{}.{}",
                            direction(reverse),
                            inclusion(inclusive)
                        );
                        g.check(&name, &f(&x, axis, reverse, inclusive));
                    }
                }
            }
        }
    }
    // An explicit accumulation dtype.
    type Dtyped = fn(&Array, Option<i32>, AccumulateOptions) -> Result<Array>;
    let dtyped: [(&str, Dtyped); 2] = [("cumsum", ops::cumsum), ("cumprod", ops::cumprod)];
    for (op, f) in dtyped {
        let as_f32 = AccumulateOptions {
            dtype: Some(Dtype::Float32),
            ..Default::default()
        };
        let as_i64 = AccumulateOptions {
            dtype: Some(Dtype::Int64),
            ..Default::default()
        };
        g.check(
            &format!("{op}.int32.1.as_float32"),
            &f(&g.input("int32"), Some(1), as_f32).unwrap(),
        );
        g.check(
            &format!("{op}.bool.all.as_int64"),
            &f(&g.input("bool"), None, as_i64).unwrap(),
        );
    }
    g.assert_covered(&["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]);
}

#[test]
fn softmax_matches_python() {
    let g = Goldens::load("sort");
    let axes: [(&str, Axes); 4] = [
        ("all", Axes::All),
        ("1", Axes::One(1)),
        ("-1", Axes::One(-1)),
        ("0,2", Axes::Many(vec![0, 2])),
    ];
    for dtype in ["float32", "bfloat16"] {
        let x = g.input(dtype);
        for (tag, axes) in &axes {
            for precise in [false, true] {
                let name = format!(
                    "softmax.{dtype}.{tag}.{}",
                    if precise { "precise" } else { "fast" }
                );
                g.check(&name, &ops::softmax(&x, axes.clone(), precise).unwrap());
            }
        }
    }
    g.assert_covered(&["softmax"]);
}

#[test]
fn searchsorted_matches_python_on_both_sides() {
    let g = Goldens::load("sort");
    for dtype in ["float32", "int32"] {
        let sequence = g.get(&format!("seq.{dtype}"));
        let probes = g.get(&format!("probes.{dtype}"));
        for (tag, side) in [("left", SearchSide::Left), ("right", SearchSide::Right)] {
            let out = ops::searchsorted(&sequence, &probes, side).unwrap();
            g.check(&format!("searchsorted.{dtype}.{tag}"), &out);
        }
    }
    assert_eq!(SearchSide::default(), SearchSide::Left);
    g.assert_covered(&["searchsorted"]);
}

#[test]
fn array_methods_delegate_to_the_functions() {
    let g = Goldens::load("sort");
    let x = g.input("float32");
    let reverse = CumulativeOptions {
        reverse: true,
        ..Default::default()
    };
    let exclusive = AccumulateOptions {
        inclusive: false,
        ..Default::default()
    };
    g.check(
        "cumsum.float32.1.fwd.excl",
        &x.cumsum(Some(1), exclusive).unwrap(),
    );
    g.check(
        "cumprod.float32.all.fwd.incl",
        &x.cumprod(None, AccumulateOptions::default()).unwrap(),
    );
    g.check(
        "cummax.float32.-1.rev.incl",
        &x.cummax(Some(-1), reverse).unwrap(),
    );
    g.check(
        "cummin.float32.0.fwd.incl",
        &x.cummin(Some(0), CumulativeOptions::default()).unwrap(),
    );
    g.check(
        "logcumsumexp.float32.1.rev.incl",
        &x.logcumsumexp(Some(1), reverse).unwrap(),
    );
}

#[test]
fn every_golden_belongs_to_a_test() {
    let g = Goldens::load("sort");
    let known = [
        "x",
        "seq",
        "probes",
        "sort",
        "argsort",
        "topk_sorted",
        "cumsum",
        "cumprod",
        "cummax",
        "cummin",
        "logcumsumexp",
        "softmax",
        "searchsorted",
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
fn bad_axes_and_counts_are_errors() {
    let x = Goldens::load("sort").get("x.float32");
    for axis in [3, -4] {
        let needle = format!("axis {axis}");
        assert_mlx_error("sort", ops::sort(&x, Some(axis)), &needle);
        assert_mlx_error("argsort", ops::argsort(&x, Some(axis)), &needle);
        assert_mlx_error("partition", ops::partition(&x, 0, Some(axis)), &needle);
        assert_mlx_error(
            "argpartition",
            ops::argpartition(&x, 0, Some(axis)),
            &needle,
        );
        assert_mlx_error("topk", ops::topk(&x, 1, Some(axis)), &needle);
        let opts = CumulativeOptions::default();
        assert_mlx_error("cummax", ops::cummax(&x, Some(axis), opts), &needle);
        assert_mlx_error("cummin", ops::cummin(&x, Some(axis), opts), &needle);
        assert_mlx_error(
            "logcumsumexp",
            ops::logcumsumexp(&x, Some(axis), opts),
            &needle,
        );
        let opts = AccumulateOptions::default();
        assert_mlx_error("cumsum", ops::cumsum(&x, Some(axis), opts), &needle);
        assert_mlx_error("cumprod", ops::cumprod(&x, Some(axis), opts), &needle);
        assert_mlx_error("softmax", ops::softmax(&x, axis, false), &needle);
        assert_mlx_error("softmax", ops::softmax(&x, [0, axis], true), &needle);
    }
    assert_mlx_error("softmax", ops::softmax(&x, [2, 2], false), "duplicate");
    assert_mlx_error("softmax", ops::softmax(&x, [0, -3], false), "duplicate");
    // The last axis has 5 elements.
    assert_mlx_error("partition", ops::partition(&x, 5, Some(-1)), "kth 5");
    assert_mlx_error(
        "argpartition",
        ops::argpartition(&x, -6, Some(-1)),
        "kth -6",
    );
    assert_mlx_error("topk", ops::topk(&x, 6, Some(-1)), "k=6");
    assert_mlx_error("topk", ops::topk(&x, -1, Some(-1)), "k=-1");
    assert_mlx_error(
        "sort of a scalar",
        ops::sort(&Array::scalar(1.0f32), Some(-1)),
        "axis -1",
    );
    let probes = Array::from_slice(&[1.0f32], &[1]).unwrap();
    assert_mlx_error(
        "searchsorted",
        ops::searchsorted(&x, &probes, SearchSide::Left),
        "1-d",
    );
}

#[test]
fn empty_axes_give_empty_results_without_running_the_kernel() {
    // MLX's CPU sort and scan kernels die with SIGFPE on an empty axis.
    let cases: [(&[i32], Option<i32>, &[i32]); 5] = [
        (&[0, 3], Some(0), &[0, 3]),
        (&[0, 3], None, &[0]),
        (&[3, 0], Some(-1), &[3, 0]),
        (&[3, 0], None, &[0]),
        (&[0], Some(0), &[0]),
    ];
    for (shape, axis, out_shape) in cases {
        let x = Array::from_slice::<f32>(&[], shape).unwrap();
        let b = ops::as_type(&x, Dtype::Bool).unwrap();
        let scan = CumulativeOptions::default();
        let accumulate = AccumulateOptions::default();
        let results = [
            ("sort", ops::sort(&x, axis), Dtype::Float32),
            ("argsort", ops::argsort(&x, axis), Dtype::Uint32),
            ("cumsum", ops::cumsum(&x, axis, accumulate), Dtype::Float32),
            (
                "cumsum bool",
                ops::cumsum(&b, axis, accumulate),
                Dtype::Int32,
            ),
            (
                "cumprod",
                ops::cumprod(&x, axis, accumulate),
                Dtype::Float32,
            ),
            ("cummax", ops::cummax(&x, axis, scan), Dtype::Float32),
            ("cummin", ops::cummin(&x, axis, scan), Dtype::Float32),
            (
                "logcumsumexp",
                ops::logcumsumexp(&x, axis, scan),
                Dtype::Float32,
            ),
            ("topk 0", ops::topk(&x, 0, axis), Dtype::Float32),
        ];
        for (op, out, dtype) in results {
            let what = format!("{op} of shape {shape:?} along {axis:?}");
            let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(out.shape(), out_shape, "{what}: shape");
            assert_eq!(out.dtype(), dtype, "{what}: dtype");
            out.eval().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(out.size(), 0, "{what}");
        }
        // No valid kth exists on an empty axis.
        assert_mlx_error("partition", ops::partition(&x, 0, axis), "kth");
    }
    // An empty array along a non-empty axis goes through MLX unchanged.
    let x = Array::from_slice::<f32>(&[], &[3, 0]).unwrap();
    let sorted = ops::sort(&x, Some(0)).unwrap();
    assert_eq!(sorted.shape(), [3, 0]);
    sorted.eval().unwrap();
}
