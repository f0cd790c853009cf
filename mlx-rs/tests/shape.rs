//! Shape manipulation against Python MLX (goldens from
//! `tests/goldens/gen_shape.py`), and the errors of bad arguments.

mod common;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{Goldens, assert_invalid, assert_mlx};
use mlx_rs::ops::{
    self, AsStridedOptions, Axes, DiagonalOptions, IndicesOrSections, PadMode, PadOptions,
    PadWidth, Shift,
};
use mlx_rs::{Array, Dtype, Result};

/// The golden inputs, plus non-contiguous views of them.
struct In {
    x: Array,
    xi: Array,
    xh: Array,
    w: Array,
    m: Array,
    v: Array,
    s: Array,
    y: Array,
    u: Array,
    /// `x.transpose(2, 0, 1)`, shape `[4, 2, 3]`.
    xt: Array,
    /// `m.T`, shape `[5, 4]`.
    mt: Array,
}

impl In {
    fn load(g: &Goldens) -> In {
        let x = g.get("in.x");
        let m = g.get("in.m");
        In {
            xt: x.transpose([2, 0, 1]).unwrap(),
            mt: m.T().unwrap(),
            x,
            xi: g.get("in.xi"),
            xh: g.get("in.xh"),
            w: g.get("in.w"),
            m,
            v: g.get("in.v"),
            s: g.get("in.s"),
            y: g.get("in.y"),
            u: g.get("in.u"),
        }
    }
}

/// One golden (or, for several outputs, `name.0`, `name.1`...) and how to
/// compute it.
enum Run {
    One(fn(&In) -> Result<Array>),
    Many(fn(&In) -> Result<Vec<Array>>),
}

fn one(name: &'static str, f: fn(&In) -> Result<Array>) -> (&'static str, Run) {
    (name, Run::One(f))
}

fn many(name: &'static str, f: fn(&In) -> Result<Vec<Array>>) -> (&'static str, Run) {
    (name, Run::Many(f))
}

/// Runs every case, then fails listing each mismatch and each golden that
/// no case checked.
fn run_cases(g: &Goldens, inputs: &In, cases: Vec<(&'static str, Run)>) {
    let mut checked = HashSet::new();
    let mut failures = Vec::new();
    for (name, run) in cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| match &run {
            Run::One(f) => {
                let out = f(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
                g.check(name, &out);
                vec![name.to_string()]
            }
            Run::Many(f) => {
                let outs = f(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    !g.has(&format!("{name}.{}", outs.len())),
                    "{name}: Python returned more than {} arrays",
                    outs.len()
                );
                outs.iter()
                    .enumerate()
                    .map(|(i, out)| {
                        let part = format!("{name}.{i}");
                        g.check(&part, out);
                        part
                    })
                    .collect()
            }
        }));
        match outcome {
            Ok(names) => checked.extend(names),
            Err(panic) => failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| format!("{name}: panicked")),
            ),
        }
    }
    for name in g.names() {
        if !name.starts_with("in.") && !checked.contains(&name) {
            failures.push(format!("golden {name} is never checked"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn shape_ops_match_python() {
    let g = Goldens::load("shape");
    let inputs = In::load(&g);
    let cases = vec![
        // reshape / flatten / unflatten
        one("reshape.x.6_4", |i| ops::reshape(&i.x, &[6, 4])),
        one("reshape.x.-1_2", |i| i.x.reshape(&[-1, 2])),
        one("reshape.xt.4_6", |i| ops::reshape(&i.xt, &[4, 6])),
        one("reshape.xi.24", |i| ops::reshape(&i.xi, &[24])),
        one("reshape.s.1_1", |i| ops::reshape(&i.s, &[1, 1])),
        one("reshape.xh.3_-1", |i| ops::reshape(&i.xh, &[3, -1])),
        one("flatten.x", |i| ops::flatten(&i.x, 0, -1)),
        one("flatten.x.1_2", |i| i.x.flatten(1, 2)),
        one("flatten.x.-3_-2", |i| ops::flatten(&i.x, -3, -2)),
        one("flatten.x.-9_9", |i| ops::flatten(&i.x, -9, 9)),
        one("flatten.xt.0_1", |i| ops::flatten(&i.xt, 0, 1)),
        one("flatten.s", |i| ops::flatten(&i.s, 0, -1)),
        one("unflatten.x.2.2_2", |i| ops::unflatten(&i.x, 2, &[2, 2])),
        one("unflatten.x.-1.-1_2", |i| {
            ops::unflatten(&i.x, -1, &[-1, 2])
        }),
        one("unflatten.xt.0.2_1_2", |i| {
            ops::unflatten(&i.xt, 0, &[2, 1, 2])
        }),
        one("unflatten.xi.1.3", |i| ops::unflatten(&i.xi, 1, &[3])),
        // squeeze / expand_dims / atleast
        one("squeeze.y", |i| ops::squeeze(&i.y, Axes::All)),
        one("squeeze.y.1", |i| i.y.squeeze(1)),
        one("squeeze.y.-2", |i| ops::squeeze(&i.y, -2)),
        one("squeeze.y.1_3", |i| ops::squeeze(&i.y, [1, 3])),
        one("squeeze.y.empty", |i| ops::squeeze(&i.y, Vec::new())),
        one("expand_dims.x.0", |i| ops::expand_dims(&i.x, 0)),
        one("expand_dims.x.-1", |i| ops::expand_dims(&i.x, -1)),
        one("expand_dims.x.0_3", |i| ops::expand_dims(&i.x, [0, 3])),
        one("expand_dims.x.-1_1", |i| {
            ops::expand_dims(&i.x, &[-1, 1][..])
        }),
        one("expand_dims.xt.1", |i| ops::expand_dims(&i.xt, 1)),
        one("expand_dims.s.0", |i| ops::expand_dims(&i.s, 0)),
        one("atleast_1d.s", |i| ops::atleast_1d(&i.s)),
        one("atleast_2d.s", |i| ops::atleast_2d(&i.s)),
        one("atleast_3d.s", |i| ops::atleast_3d(&i.s)),
        one("atleast_1d.v", |i| ops::atleast_1d(&i.v)),
        one("atleast_2d.v", |i| ops::atleast_2d(&i.v)),
        one("atleast_3d.v", |i| ops::atleast_3d(&i.v)),
        one("atleast_1d.m", |i| ops::atleast_1d(&i.m)),
        one("atleast_2d.m", |i| ops::atleast_2d(&i.m)),
        one("atleast_3d.m", |i| ops::atleast_3d(&i.m)),
        one("atleast_1d.x", |i| ops::atleast_1d(&i.x)),
        one("atleast_2d.x", |i| ops::atleast_2d(&i.x)),
        one("atleast_3d.x", |i| ops::atleast_3d(&i.x)),
        // view / as_strided
        one("view.x.int32", |i| ops::view(&i.x, Dtype::Int32)),
        one("view.x.uint8", |i| i.x.view(Dtype::Uint8)),
        one("view.xi.int16", |i| ops::view(&i.xi, Dtype::Int16)),
        one("view.xi.float32", |i| ops::view(&i.xi, Dtype::Float32)),
        one("view.xh.int16", |i| ops::view(&i.xh, Dtype::Int16)),
        one("view.xt.int32", |i| ops::view(&i.xt, Dtype::Int32)),
        one("view.x.float64", |i| ops::view(&i.x, Dtype::Float64)),
        one("as_strided.x.default", |i| {
            ops::as_strided(&i.x, AsStridedOptions::default())
        }),
        one("as_strided.x.3_3.4_1.2", |i| {
            ops::as_strided(
                &i.x,
                AsStridedOptions {
                    shape: Some(vec![3, 3]),
                    strides: Some(vec![4, 1]),
                    offset: 2,
                },
            )
        }),
        one("as_strided.x.2_3.0_1.5", |i| {
            ops::as_strided(
                &i.x,
                AsStridedOptions {
                    shape: Some(vec![2, 3]),
                    strides: Some(vec![0, 1]),
                    offset: 5,
                },
            )
        }),
        one("as_strided.x.4.-2.10", |i| {
            ops::as_strided(
                &i.x,
                AsStridedOptions {
                    shape: Some(vec![4]),
                    strides: Some(vec![-2]),
                    offset: 10,
                },
            )
        }),
        one("as_strided.xt.2_5.1_3.1", |i| {
            ops::as_strided(
                &i.xt,
                AsStridedOptions {
                    shape: Some(vec![2, 5]),
                    strides: Some(vec![1, 3]),
                    offset: 1,
                },
            )
        }),
        one("as_strided.xi.shape.6_4", |i| {
            ops::as_strided(
                &i.xi,
                AsStridedOptions {
                    shape: Some(vec![6, 4]),
                    ..Default::default()
                },
            )
        }),
        // transpose / swapaxes / moveaxis / flip / roll
        one("transpose.x", |i| ops::transpose(&i.x, Axes::All)),
        one("transpose.x.1_0_2", |i| i.x.transpose([1, 0, 2])),
        one("transpose.x.-1_0_1", |i| {
            ops::transpose(&i.x, vec![-1, 0, 1])
        }),
        one("transpose.xt", |i| ops::transpose(&i.xt, Axes::All)),
        one("transpose.v.0", |i| ops::transpose(&i.v, 0)),
        one("T.m", |i| i.m.T()),
        one("T.xh", |i| i.xh.T()),
        one("swapaxes.x.0_2", |i| ops::swapaxes(&i.x, 0, 2)),
        one("swapaxes.x.-1_1", |i| i.x.swapaxes(-1, 1)),
        one("swapaxes.xt.0_1", |i| ops::swapaxes(&i.xt, 0, 1)),
        one("moveaxis.x.0_2", |i| ops::moveaxis(&i.x, 0, 2)),
        one("moveaxis.x.-1_0", |i| i.x.moveaxis(-1, 0)),
        one("moveaxis.xt.1_-1", |i| ops::moveaxis(&i.xt, 1, -1)),
        one("flip.x", |i| ops::flip(&i.x, Axes::All)),
        one("flip.x.1", |i| ops::flip(&i.x, 1)),
        one("flip.x.-1", |i| ops::flip(&i.x, -1)),
        one("flip.x.0_2", |i| ops::flip(&i.x, [0, 2])),
        one("flip.xt.0", |i| ops::flip(&i.xt, 0)),
        one("flip.xi.2", |i| ops::flip(&i.xi, 2)),
        one("roll.x.2", |i| ops::roll(&i.x, 2, Axes::All)),
        one("roll.x.-5", |i| ops::roll(&i.x, -5, Axes::All)),
        one("roll.x.1.ax1", |i| ops::roll(&i.x, 1, 1)),
        one("roll.x.-1.ax-1", |i| ops::roll(&i.x, -1, -1)),
        one("roll.x.1.ax0_2", |i| ops::roll(&i.x, 1, [0, 2])),
        one("roll.x.1_-2.ax0_2", |i| ops::roll(&i.x, [1, -2], [0, 2])),
        one("roll.x.1_2", |i| {
            ops::roll(&i.x, Shift::Many(vec![1, 2]), Axes::All)
        }),
        one("roll.x.1_2.ax1", |i| ops::roll(&i.x, [1, 2], 1)),
        one("roll.xt.3.ax1", |i| ops::roll(&i.xt, 3, 1)),
        one("roll.xi.7.ax2", |i| ops::roll(&i.xi, 7, 2)),
        // broadcasting
        one("broadcast_to.v.3_4", |i| ops::broadcast_to(&i.v, &[3, 4])),
        one("broadcast_to.s.2_2", |i| ops::broadcast_to(&i.s, &[2, 2])),
        one("broadcast_to.xt.2_4_2_3", |i| {
            ops::broadcast_to(&i.xt, &[2, 4, 2, 3])
        }),
        one("broadcast_to.u.2_1_3", |i| {
            ops::broadcast_to(&i.u, &[2, 1, 3])
        }),
        many("broadcast_arrays.u_col", |i| {
            ops::broadcast_arrays(&[i.u.clone(), i.u.reshape(&[3, 1])?])
        }),
        many("broadcast_arrays.s_v_m", |i| {
            ops::broadcast_arrays(&[&i.s, &i.v, &i.mt])
        }),
        many("meshgrid.xy", |i| ops::meshgrid(&[&i.u, &i.v], false, "xy")),
        many("meshgrid.ij", |i| ops::meshgrid(&[&i.u, &i.v], false, "ij")),
        many("meshgrid.xy.sparse", |i| {
            ops::meshgrid(&[&i.u, &i.v], true, "xy")
        }),
        many("meshgrid.ij.3", |i| {
            ops::meshgrid(&[&i.u, &i.v, &i.s], false, "ij")
        }),
        // joining and splitting
        one("concatenate.x_w.2", |i| ops::concatenate(&[&i.x, &i.w], 2)),
        one("concatenate.x_w.-1", |i| {
            ops::concatenate(&[&i.x, &i.w], -1)
        }),
        one("concatenate.x_xi.0", |i| {
            ops::concatenate(&[&i.x, &i.xi], 0)
        }),
        one("concatenate.xt_xt.1", |i| {
            ops::concatenate(&[&i.xt, &i.xt], 1)
        }),
        one("concatenate.x_v.none", |i| {
            ops::concatenate(&[&i.x, &i.v], None)
        }),
        one("concatenate.x.0", |i| ops::concatenate(&[&i.x], 0)),
        one("stack.x_x.0", |i| ops::stack(&[&i.x, &i.x], 0)),
        one("stack.x_xi.-1", |i| ops::stack(&[&i.x, &i.xi], -1)),
        one("stack.x_xi.1", |i| ops::stack(&[&i.x, &i.xi], 1)),
        one("stack.xt_xt.3", |i| ops::stack(&[&i.xt, &i.xt], 3)),
        one("stack.v_v.none", |i| ops::stack(&[&i.v, &i.v], None)),
        many("split.x.3.ax1", |i| ops::split(&i.x, 3, 1)),
        many("split.x.2.ax-1", |i| i.x.split(2, -1)),
        many("split.x.1_3.ax2", |i| ops::split(&i.x, [1, 3], 2)),
        many("split.x.3_1.ax2", |i| ops::split(&i.x, vec![3, 1], 2)),
        many("split.x.-3.ax2", |i| ops::split(&i.x, &[-3][..], 2)),
        many("split.xt.1.ax0", |i| {
            ops::split(&i.xt, IndicesOrSections::Indices(vec![1]), 0)
        }),
        many("split.xi.2.ax0", |i| ops::split(&i.xi, 2, 0)),
        many("unstack.x", |i| ops::unstack(&i.x, None)),
        many("unstack.x.ax1", |i| ops::unstack(&i.x, 1)),
        many("unstack.xt.ax-1", |i| ops::unstack(&i.xt, -1)),
        one("repeat.x.2", |i| ops::repeat(&i.x, 2, None)),
        one("repeat.x.2.ax1", |i| ops::repeat(&i.x, 2, 1)),
        one("repeat.x.3.ax-1", |i| ops::repeat(&i.x, 3, -1)),
        one("repeat.xt.2.ax0", |i| ops::repeat(&i.xt, 2, 0)),
        one("repeat.x.0.ax1", |i| ops::repeat(&i.x, 0, 1)),
        one("tile.v.2", |i| ops::tile(&i.v, &[2])),
        one("tile.v.2_3", |i| ops::tile(&i.v, &[2, 3])),
        one("tile.x.1_2_1", |i| ops::tile(&i.x, &[1, 2, 1])),
        one("tile.xt.2", |i| ops::tile(&i.xt, &[2])),
        one("tile.xi.2_1_1_2", |i| ops::tile(&i.xi, &[2, 1, 1, 2])),
        one("tile.v.0", |i| ops::tile(&i.v, &[0])),
        // pad
        one("pad.x.1", |i| ops::pad(&i.x, 1, PadOptions::default())),
        one("pad.x.1_2", |i| {
            ops::pad(&i.x, (1, 2), PadOptions::default())
        }),
        one("pad.x.per_axis", |i| {
            ops::pad(&i.x, [(0, 1), (2, 0), (1, 1)], PadOptions::default())
        }),
        one("pad.x.one_pair", |i| {
            ops::pad(&i.x, vec![(1, 2)], PadOptions::default())
        }),
        one("pad.x.1_2.const1.5", |i| {
            ops::pad(&i.x, (1, 2), PadOptions::constant(1.5f32))
        }),
        one("pad.xi.2.const7", |i| {
            ops::pad(&i.xi, 2, PadOptions::constant(7))
        }),
        one("pad.xi.1.const2.7", |i| {
            ops::pad(&i.xi, 1, PadOptions::constant(2.7f32))
        }),
        one("pad.x.2.edge", |i| {
            ops::pad(&i.x, 2, PadOptions::mode(PadMode::Edge))
        }),
        one("pad.x.per_axis.edge", |i| {
            ops::pad(
                &i.x,
                PadWidth::PerAxis(vec![(0, 1), (2, 0), (1, 3)]),
                PadOptions::mode(PadMode::Edge),
            )
        }),
        one("pad.x.1_2.reflect", |i| {
            ops::pad(&i.x, (1, 2), PadOptions::mode(PadMode::Reflect))
        }),
        one("pad.m.6.reflect", |i| {
            ops::pad(&i.m, 6, PadOptions::mode(PadMode::Reflect))
        }),
        one("pad.x.per_axis.symmetric", |i| {
            ops::pad(
                &i.x,
                [(0, 1), (2, 0), (1, 3)],
                PadOptions::mode(PadMode::Symmetric),
            )
        }),
        one("pad.m.7.symmetric", |i| {
            ops::pad(&i.m, 7, PadOptions::mode(PadMode::Symmetric))
        }),
        one("pad.xt.1.edge", |i| {
            ops::pad(&i.xt, 1, PadOptions::mode(PadMode::Edge))
        }),
        one("pad.xh.1_0.const-2", |i| {
            ops::pad(
                &i.xh,
                (1, 0),
                PadOptions {
                    mode: PadMode::Constant,
                    constant_values: Some(Array::scalar(-2i32)),
                },
            )
        }),
        // diagonals and triangles
        one("diag.v", |i| ops::diag(&i.v, 0)),
        one("diag.v.1", |i| i.v.diag(1)),
        one("diag.v.-2", |i| ops::diag(&i.v, -2)),
        one("diag.m", |i| ops::diag(&i.m, 0)),
        one("diag.m.2", |i| ops::diag(&i.m, 2)),
        one("diag.m.-1", |i| ops::diag(&i.m, -1)),
        one("diag.m.10", |i| ops::diag(&i.m, 10)),
        one("diag.mT.1", |i| ops::diag(&i.mt, 1)),
        one("diagonal.x", |i| {
            ops::diagonal(&i.x, DiagonalOptions::default())
        }),
        one("diagonal.x.1.0.2", |i| {
            i.x.diagonal(DiagonalOptions {
                offset: 1,
                axis1: 0,
                axis2: 2,
            })
        }),
        one("diagonal.x.-1.-1.0", |i| {
            ops::diagonal(
                &i.x,
                DiagonalOptions {
                    offset: -1,
                    axis1: -1,
                    axis2: 0,
                },
            )
        }),
        one("diagonal.x.0.2.1", |i| {
            ops::diagonal(
                &i.x,
                DiagonalOptions {
                    offset: 0,
                    axis1: 2,
                    axis2: 1,
                },
            )
        }),
        one("diagonal.xt.1.1.2", |i| {
            ops::diagonal(
                &i.xt,
                DiagonalOptions {
                    offset: 1,
                    axis1: 1,
                    axis2: 2,
                },
            )
        }),
        one("diagonal.m.-9.0.1", |i| {
            ops::diagonal(&i.m, DiagonalOptions::offset(-9))
        }),
        one("tril.m", |i| ops::tril(&i.m, 0)),
        one("tril.m.1", |i| ops::tril(&i.m, 1)),
        one("tril.m.-2", |i| ops::tril(&i.m, -2)),
        one("tril.m.100", |i| ops::tril(&i.m, 100)),
        one("tril.m.-100", |i| ops::tril(&i.m, -100)),
        one("tril.x.0", |i| ops::tril(&i.x, 0)),
        one("tril.mT.1", |i| ops::tril(&i.mt, 1)),
        one("triu.m", |i| ops::triu(&i.m, 0)),
        one("triu.m.2", |i| ops::triu(&i.m, 2)),
        one("triu.m.-1", |i| ops::triu(&i.m, -1)),
        one("triu.m.100", |i| ops::triu(&i.m, 100)),
        one("triu.m.-100", |i| ops::triu(&i.m, -100)),
        one("triu.xi.1", |i| ops::triu(&i.xi, 1)),
        one("diff.x", |i| ops::diff(&i.x, 1, -1)),
        one("diff.x.2.ax1", |i| ops::diff(&i.x, 2, 1)),
        one("diff.x.1.ax0", |i| ops::diff(&i.x, 1, 0)),
        one("diff.xi.3.ax-1", |i| ops::diff(&i.xi, 3, -1)),
        one("diff.xt.1.ax1", |i| ops::diff(&i.xt, 1, 1)),
        one("diff.x.0.ax-1", |i| ops::diff(&i.x, 0, -1)),
        one("diff.x.10.ax-1", |i| ops::diff(&i.x, 10, -1)),
        // number_of_elements
        one("number_of_elements.x.0_2", |i| {
            ops::number_of_elements(&i.x, &[0, 2], false, Dtype::Int32)
        }),
        one("number_of_elements.x.-1.inv", |i| {
            ops::number_of_elements(&i.x, &[-1], true, Dtype::Float32)
        }),
        one("number_of_elements.x.none", |i| {
            ops::number_of_elements(&i.x, &[], false, Dtype::Int32)
        }),
        one("number_of_elements.xt.0_1_2.f16", |i| {
            ops::number_of_elements(&i.xt, &[0, 1, 2], false, Dtype::Float16)
        }),
    ];
    run_cases(&g, &inputs, cases);
}

#[test]
fn depends_returns_its_inputs() {
    let g = Goldens::load("shape");
    let (x, xi) = (g.get("in.x"), g.get("in.xi"));
    let out = ops::depends(&[&x, &xi], &[&g.get("in.m")]).unwrap();
    assert_eq!(out.len(), 2);
    g.check("in.x", &out[0]);
    g.check("in.xi", &out[1]);
    let none: [&Array; 0] = [];
    g.check("in.x", &ops::depends(&[&x], &none).unwrap()[0]);
}

#[test]
fn transpose_views_are_not_contiguous() {
    // The tests above feed `xt` and `mt` as views with permuted strides.
    let g = Goldens::load("shape");
    let inputs = In::load(&g);
    inputs.xt.eval().unwrap();
    assert_eq!(inputs.xt.shape(), [4, 2, 3]);
    assert_eq!(inputs.xt.strides().unwrap(), [1, 12, 4]);
    inputs.mt.eval().unwrap();
    assert_eq!(inputs.mt.strides().unwrap(), [1, 5]);
}

// ---------------------------------------------------------------------------
// Errors.

fn arange(n: i32, shape: &[i32]) -> Array {
    Array::from_iter(0..n, shape).unwrap()
}

#[test]
fn impossible_reshapes_fail() {
    let a = arange(6, &[2, 3]);
    assert_mlx(ops::reshape(&a, &[4, 2]), "Cannot reshape array of size 6");
    assert_mlx(ops::reshape(&a, &[-1, -1]), "infer one dimension");
    assert_mlx(
        ops::reshape(&Array::from_slice::<f32>(&[], &[0, 3]).unwrap(), &[0, -1]),
        "empty array",
    );
    // MLX multiplies dimensions as unsigned sizes and would accept these.
    assert_invalid(
        ops::reshape(&arange(4, &[4]), &[-2, -2]),
        "negative dimension",
    );
    assert_invalid(
        ops::reshape(&a, &[i32::MAX, i32::MAX, i32::MAX, 8]),
        "too many elements",
    );
    assert_mlx(ops::unflatten(&a, 1, &[2, 2]), "Cannot unflatten");
    assert_invalid(ops::unflatten(&a, 1, &[-3, -1]), "negative dimension");
    // MLX would divide by zero here.
    assert_invalid(
        ops::unflatten(&Array::from_slice::<f32>(&[], &[0]).unwrap(), 0, &[0, -1]),
        "cannot infer",
    );
    assert_mlx(ops::unflatten(&a, 1, &[]), "cannot be empty");
    assert_mlx(ops::view(&Array::scalar(1.0f32), Dtype::Int16), "scalar");
    assert_mlx(ops::view(&arange(3, &[3]), Dtype::Int64), "multiple");
}

#[test]
fn axes_out_of_range_fail() {
    let a = arange(24, &[2, 3, 4]);
    assert_mlx(ops::squeeze(&a, 3), "squeeze");
    assert_mlx(ops::squeeze(&a, 0), "not equal to 1");
    assert_mlx(ops::expand_dims(&a, 5), "expand_dims");
    assert_invalid(ops::expand_dims(&a, Axes::All), "axes to insert");
    assert_mlx(ops::transpose(&a, [0, 1]), "transpose");
    assert_mlx(ops::transpose(&a, [0, 1, 1]), "Repeat axes");
    assert_mlx(ops::transpose(&a, [0, 1, 3]), "Invalid axis");
    assert_mlx(ops::swapaxes(&a, 0, 3), "swapaxes");
    assert_mlx(ops::moveaxis(&a, -4, 0), "moveaxis");
    assert_mlx(ops::flip(&a, 3), "flip");
    assert_mlx(ops::roll(&a, 1, 3), "roll");
    assert_mlx(
        ops::roll(&a, [1], [0, 1]),
        "At least one shift value per axis",
    );
    assert_mlx(ops::flatten(&a, 2, 1), "flatten");
    assert_mlx(ops::unflatten(&a, 3, &[1]), "unflatten");
    assert_mlx(ops::concatenate(&[&a, &a], 3), "concatenate");
    assert_mlx(ops::stack(&[&a, &a], 4), "stack");
    assert_mlx(ops::split(&a, 2, 3), "split");
    assert_mlx(ops::unstack(&a, -4), "unstack");
    assert_mlx(ops::repeat(&a, 2, 3), "repeat");
    assert_mlx(ops::diff(&a, 1, 3), "diff");
    assert_mlx(
        ops::diagonal(
            &a,
            DiagonalOptions {
                offset: 0,
                axis1: 0,
                axis2: 3,
            },
        ),
        "axis2",
    );
    assert_mlx(
        ops::diagonal(
            &a,
            DiagonalOptions {
                offset: 0,
                axis1: 1,
                axis2: -2,
            },
        ),
        "same axis",
    );
    // MLX wraps these modulo the number of axes (and divides by zero for a
    // scalar).
    assert_invalid(
        ops::number_of_elements(&a, &[3], false, Dtype::Int32),
        "out of range",
    );
    assert_invalid(
        ops::number_of_elements(&Array::scalar(1.0f32), &[0], false, Dtype::Int32),
        "out of range",
    );
}

#[test]
fn mismatched_joins_fail() {
    let a = arange(6, &[2, 3]);
    let b = arange(8, &[2, 4]);
    assert_mlx(ops::concatenate(&[&a, &b], 0), "must match exactly");
    assert_mlx(
        ops::concatenate(&[&a, &arange(6, &[6])], 0),
        "same number of dimensions",
    );
    let none: [&Array; 0] = [];
    assert_mlx(ops::concatenate(&none, 0), "No arrays");
    assert_mlx(ops::stack(&[&a, &b], 0), "same shape");
    assert_mlx(ops::stack(&none, None), "No arrays");
    assert_mlx(ops::broadcast_arrays(&[&a, &b]), "broadcast");
    assert_mlx(ops::broadcast_to(&a, &[3, 3]), "cannot be broadcast");
    assert_mlx(ops::split(&a, 2, 1), "equal size");
    assert_mlx(ops::split(&a, 0, 1), "num_splits must be positive");
    assert_mlx(ops::meshgrid(&[&a], false, "ab"), "indexing");
    assert_invalid(ops::depends(&none, &[&a]), "at least one input");
}

#[test]
fn negative_sizes_fail() {
    let a = arange(6, &[2, 3]);
    assert_mlx(ops::broadcast_to(&a, &[-1, 3]), "Negative dimensions");
    assert_invalid(ops::tile(&a, &[2, -1]), "must not be negative");
    assert_mlx(ops::repeat(&a, -1, 0), "cannot be negative");
    assert_mlx(ops::pad(&a, -1, PadOptions::default()), "non-negative");
    assert_mlx(ops::pad(&a, (0, -2), PadOptions::default()), "non-negative");
    assert_mlx(
        ops::pad(&a, [(1, 1), (1, 1), (1, 1)], PadOptions::default()),
        "Invalid number of padding sizes",
    );
    assert_mlx(ops::diff(&a, -1, 0), "non-negative");
    assert_invalid(
        ops::as_strided(
            &a,
            AsStridedOptions {
                shape: Some(vec![-1, 2]),
                strides: Some(vec![1, 1]),
                offset: 0,
            },
        ),
        "negative dimension",
    );
    // A 1-D diagonal whose matrix would not fit MLX's int sizes.
    assert_invalid(ops::diag(&arange(3, &[3]), i32::MIN), "does not fit");
    assert_invalid(ops::diag(&arange(3, &[3]), i32::MAX - 1), "does not fit");
}

#[test]
fn strided_views_outside_the_array_fail() {
    let a = arange(6, &[2, 3]);
    let strided = |shape: Vec<i32>, strides: Vec<i64>, offset: usize| {
        ops::as_strided(
            &a,
            AsStridedOptions {
                shape: Some(shape),
                strides: Some(strides),
                offset,
            },
        )
    };
    assert_invalid(strided(vec![3, 3], vec![3, 1], 0), "outside the 6 elements");
    assert_invalid(strided(vec![2], vec![1], 5), "outside");
    assert_invalid(strided(vec![3], vec![-1], 1), "outside");
    assert_invalid(strided(vec![2, 2], vec![1], 0), "strides");
    // The last element exactly, and an empty view anywhere, are fine.
    assert_eq!(
        strided(vec![2, 2], vec![3, 1], 1)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        [1, 2, 4, 5]
    );
    assert_eq!(strided(vec![0, 4], vec![100, 100], 100).unwrap().size(), 0);
}

#[test]
fn huge_offsets_and_orders_are_exact() {
    // Offsets past the matrix select empty or full triangles, and diff
    // orders past the axis give an empty axis, without MLX's arithmetic
    // overflowing.
    let m = arange(6, &[2, 3]);
    assert_eq!(
        ops::tril(&m, i32::MAX).unwrap().to_vec::<i32>().unwrap(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        ops::tril(&m, i32::MIN).unwrap().to_vec::<i32>().unwrap(),
        [0; 6]
    );
    assert_eq!(
        ops::triu(&m, i32::MIN).unwrap().to_vec::<i32>().unwrap(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        ops::triu(&m, i32::MAX).unwrap().to_vec::<i32>().unwrap(),
        [0; 6]
    );
    assert_eq!(ops::diag(&m, i32::MIN).unwrap().shape(), [0]);
    assert_eq!(
        ops::diagonal(&m, DiagonalOptions::offset(i32::MAX))
            .unwrap()
            .shape(),
        [0]
    );
    assert_eq!(ops::diff(&m, i32::MAX, 1).unwrap().shape(), [2, 0]);
}

#[test]
fn pad_modes_fail_where_mlx_does() {
    let empty = Array::from_slice::<f32>(&[], &[0, 2]).unwrap();
    assert_mlx(
        ops::pad(&empty, 1, PadOptions::mode(PadMode::Reflect)),
        "Cannot pad empty axis",
    );
    let pad_width: PadWidth = 1.into();
    assert_eq!(pad_width, PadWidth::Uniform(1));
}
