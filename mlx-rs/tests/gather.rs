//! Slices, take/put, gather and scatter against Python MLX (goldens from
//! `tests/goldens/gen_gather.py`), index clamping, and the errors of bad
//! arguments.

mod common;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{Goldens, assert_invalid, assert_mlx};
use mlx_rs::{Array, Dtype, Result, ops};

/// The goldens, with `in.<name>` inputs at hand.
struct Ctx {
    g: Goldens,
    /// `a.transpose(1, 0, 2)`, a non-contiguous view of shape `[5, 4, 6]`.
    at: Array,
}

impl Ctx {
    fn load() -> Ctx {
        let g = Goldens::load("gather");
        let at = g.get("in.a").transpose([1, 0, 2]).unwrap();
        Ctx { g, at }
    }

    /// The input `in.<name>`.
    fn i(&self, name: &str) -> Array {
        self.g.get(&format!("in.{name}"))
    }
}

fn ints(values: &[i32], shape: &[i32]) -> Array {
    Array::from_slice(values, shape).unwrap()
}

fn floats(values: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(values, shape).unwrap()
}

type Case = (&'static str, fn(&Ctx) -> Result<Array>);

/// Runs every case, then fails listing each mismatch and each golden that
/// no case checked.
fn run_cases(c: &Ctx, cases: Vec<Case>) {
    let mut checked = HashSet::new();
    let mut failures = Vec::new();
    for (name, f) in cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let out = f(c).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.g.check(name, &out);
        }));
        match outcome {
            Ok(()) => {
                checked.insert(name.to_string());
            }
            Err(panic) => failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| format!("{name}: panicked")),
            ),
        }
    }
    for name in c.g.names() {
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
fn indexing_ops_match_python() {
    let c = Ctx::load();
    let cases: Vec<Case> = vec![
        // Static slices.
        ("slice.a.1:3,::2,:", |c| {
            ops::slice(&c.i("a"), &[1, 0, 0], &[3, 5, 6], Some(&[1, 2, 1]))
        }),
        ("slice.a.rev", |c| {
            ops::slice(&c.i("a"), &[3, 1, -3], &[-5, 5, 6], Some(&[-1, 1, 1]))
        }),
        ("slice.a.clamp", |c| {
            ops::slice(
                &c.i("a"),
                &[-1, 10, -100],
                &[-4, 20, 100],
                Some(&[-2, 1, 1]),
            )
        }),
        ("slice.a.bigstep", |c| {
            ops::slice(&c.i("a"), &[0, 0, 5], &[4, 5, -7], Some(&[1, 7, -100]))
        }),
        ("slice.a.3:-5:-1", |c| {
            ops::slice(&c.i("a"), &[3, 0, 0], &[-5, 5, 6], Some(&[-1, 1, 1]))
        }),
        ("slice.a.2:-1:-1", |c| {
            ops::slice(&c.i("a"), &[2, 0, 0], &[-1, 5, 6], Some(&[-1, 1, 1]))
        }),
        ("slice.at.1:,:,::3", |c| {
            ops::slice(&c.at, &[1, 0, 0], &[5, 4, 6], Some(&[1, 1, 3]))
        }),
        ("slice.a.empty", |c| {
            ops::slice(&c.i("a"), &[2, 0, 0], &[1, 5, 6], None)
        }),
        ("slice.ai.nostride", |c| {
            ops::slice(&c.i("ai"), &[1, 2, 0], &[3, 4, 6], None)
        }),
        ("slice.ah.mix", |c| {
            ops::slice(&c.i("ah"), &[0, -2, 1], &[4, 5, 5], Some(&[2, 1, 2]))
        }),
        ("slice_update.a.1:3,::2", |c| {
            ops::slice_update(
                &c.i("a"),
                &c.i("upd"),
                &[1, 0, 0],
                &[3, 5, 6],
                Some(&[1, 2, 1]),
            )
        }),
        ("slice_update.a.rev.scalar", |c| {
            ops::slice_update(
                &c.i("a"),
                &Array::scalar(7.0f32),
                &[3, 1, -3],
                &[-5, 5, 6],
                Some(&[-1, 1, 1]),
            )
        }),
        ("slice_update.a.bcast", |c| {
            ops::slice_update(
                &c.i("a"),
                &c.i("row"),
                &[0, 1, 0],
                &[4, 3, 6],
                Some(&[1, 1, 2]),
            )
        }),
        ("slice_update.ai.cast", |c| {
            ops::slice_update(&c.i("ai"), &c.i("upd"), &[0, 0, 0], &[2, 3, 6], None)
        }),
        ("slice_update.at.zero", |c| {
            ops::slice_update(
                &c.at,
                &Array::scalar(0.0f32),
                &[1, 0, 0],
                &[5, 4, 6],
                Some(&[1, 1, 3]),
            )
        }),
        ("slice_update_add.a", |c| {
            ops::slice_update_add(
                &c.i("a"),
                &c.i("upd"),
                &[1, 0, 0],
                &[3, 5, 6],
                Some(&[1, 2, 1]),
            )
        }),
        ("slice_update_add.a.rev", |c| {
            ops::slice_update_add(
                &c.i("a"),
                &Array::scalar(1.0f32),
                &[3, 0, 1],
                &[-5, 5, 6],
                Some(&[-1, 1, 2]),
            )
        }),
        ("slice_update_prod.a", |c| {
            ops::slice_update_prod(
                &c.i("a"),
                &c.i("upd"),
                &[1, 0, 0],
                &[3, 5, 6],
                Some(&[1, 2, 1]),
            )
        }),
        ("slice_update_max.a", |c| {
            ops::slice_update_max(
                &c.i("a"),
                &c.i("upd"),
                &[1, 0, 0],
                &[3, 5, 6],
                Some(&[1, 2, 1]),
            )
        }),
        ("slice_update_min.a", |c| {
            ops::slice_update_min(
                &c.i("a"),
                &c.i("upd"),
                &[1, 0, 0],
                &[3, 5, 6],
                Some(&[1, 2, 1]),
            )
        }),
        ("slice_update_max.ai.bcast", |c| {
            ops::slice_update_max(
                &c.i("ai"),
                &ints(&[50, 60, 70], &[3]),
                &[0, 1, 0],
                &[4, 3, 6],
                Some(&[1, 1, 2]),
            )
        }),
        // Dynamic slices.
        ("slice_dynamic.a.0_2", |c| {
            ops::slice_dynamic(&c.i("a"), &ints(&[1, 2], &[2]), &[0, 2], &[2, 5, 3])
        }),
        ("slice_dynamic.a.ax1.scalar", |c| {
            ops::slice_dynamic(&c.i("a"), &Array::scalar(1i32), &[1], &[4, 2, 6])
        }),
        ("slice_dynamic.a.ax-1", |c| {
            ops::slice_dynamic(&c.i("a"), &ints(&[2], &[1]), &[-1], &[4, 5, 3])
        }),
        ("slice_dynamic.ai.u8", |c| {
            ops::slice_dynamic(&c.i("ai"), &Array::from(vec![3u8]), &[0], &[1, 5, 6])
        }),
        ("slice_dynamic.a.i64", |c| {
            ops::slice_dynamic(&c.i("a"), &Array::from(vec![2i64, 1]), &[2, 1], &[4, 3, 2])
        }),
        ("slice_dynamic.at", |c| {
            ops::slice_dynamic(&c.at, &ints(&[3, 1], &[2]), &[0, 1], &[2, 3, 6])
        }),
        ("slice_dynamic.a.clamped", |c| {
            ops::slice_dynamic(&c.i("a"), &ints(&[3, -2], &[2]), &[0, 2], &[2, 5, 4])
        }),
        ("slice_update_dynamic.a.0_2", |c| {
            ops::slice_update_dynamic(&c.i("a"), &c.i("u253"), &ints(&[1, 2], &[2]), &[0, 2])
        }),
        ("slice_update_dynamic.a.lead", |c| {
            let u = ops::take(&c.i("u253"), &Array::scalar(0i32), 0)?;
            ops::slice_update_dynamic(&c.i("a"), &u, &ints(&[2, 1], &[2]), &[0, 2])
        }),
        ("slice_update_dynamic.ai.cast", |c| {
            ops::slice_update_dynamic(&c.i("ai"), &c.i("u253"), &ints(&[0, 3], &[2]), &[0, -1])
        }),
        ("slice_update_dynamic.a.clamped", |c| {
            ops::slice_update_dynamic(&c.i("a"), &c.i("u253"), &ints(&[9, -1], &[2]), &[0, 2])
        }),
        // take / take_along_axis / put_along_axis / scatter_add_axis.
        ("take.a.flat.i1", |c| ops::take(&c.i("a"), &c.i("i1"), None)),
        ("take.a.ax1.i1", |c| ops::take(&c.i("a"), &c.i("i1"), 1)),
        ("take.a.ax-1.i2d", |c| ops::take(&c.i("a"), &c.i("i2d"), -1)),
        ("take.a.ax0.scalar", |c| {
            ops::take(&c.i("a"), &Array::scalar(2i32), 0)
        }),
        ("take.at.ax1.iu", |c| ops::take(&c.at, &c.i("iu"), 1)),
        ("take.a.ax2.i8", |c| ops::take(&c.i("a"), &c.i("i8"), 2)),
        ("take.a.ax0.i64", |c| ops::take(&c.i("a"), &c.i("i64"), 0)),
        ("take.ah.ax1.i1", |c| ops::take(&c.i("ah"), &c.i("i1"), 1)),
        ("take.ai.ax2.i2d", |c| ops::take(&c.i("ai"), &c.i("i2d"), 2)),
        ("take.a.ax1.oob", |c| {
            ops::take(&c.i("a"), &ints(&[7, -9, 2, 100, -5, -1], &[6]), 1)
        }),
        ("take.a.flat.oob", |c| {
            ops::take(&c.i("a"), &ints(&[200, -500, 119], &[3]), None)
        }),
        ("take.a.ax2.u8.oob", |c| {
            ops::take(&c.i("a"), &Array::from(vec![250u8, 3]), 2)
        }),
        ("take_along_axis.a.ax1", |c| {
            // `in.order` is Python's argsort along axis 1 (uint32).
            ops::take_along_axis(&c.i("a"), &c.i("order"), 1)
        }),
        ("take_along_axis.a.ax-1.bcast", |c| {
            ops::take_along_axis(&c.i("a"), &c.i("ib"), -1)
        }),
        ("take_along_axis.a.none", |c| {
            ops::take_along_axis(&c.i("a"), &ints(&[5, -1, 119], &[3]), None)
        }),
        ("take_along_axis.at.ax0", |c| {
            ops::take_along_axis(&c.at, &c.i("it"), 0)
        }),
        ("take_along_axis.a.ax1.oob", |c| {
            ops::take_along_axis(&c.i("a"), &ints(&[-7, 9], &[1, 2, 1]), 1)
        }),
        ("put_along_axis.a.ax1", |c| {
            ops::put_along_axis(&c.i("a"), &c.i("ip"), &c.i("vals"), 1)
        }),
        ("put_along_axis.a.none", |c| {
            ops::put_along_axis(
                &c.i("a"),
                &ints(&[0, 5, -1], &[3]),
                &floats(&[1.0, 2.0, 3.0], &[3]),
                None,
            )
        }),
        ("put_along_axis.ai.ax-1.scalar", |c| {
            ops::put_along_axis(
                &c.i("ai"),
                &ints(&[2], &[1, 1, 1]),
                &Array::scalar(100i32),
                -1,
            )
        }),
        ("put_along_axis.a.ax0.oob", |c| {
            ops::put_along_axis(
                &c.i("a"),
                &ints(&[9, -9], &[2, 1, 1]),
                &floats(&[-1.0, -2.0], &[2, 1, 1]),
                0,
            )
        }),
        ("scatter_add_axis.a.ax1", |c| {
            ops::scatter_add_axis(&c.i("a"), &c.i("isa"), &c.i("vsa"), 1)
        }),
        ("scatter_add_axis.a.none", |c| {
            ops::scatter_add_axis(
                &c.i("a"),
                &ints(&[0, 0, 119, -1], &[4]),
                &floats(&[1.0, 2.0, 3.0, 4.0], &[4]),
                None,
            )
        }),
        // gather.
        ("gather.a.0_2", |c| {
            ops::gather(&c.i("a"), &[c.i("g0"), c.i("g2")], &[0, 2], &[1, 5, 1])
        }),
        ("gather.a.single.blocks", |c| {
            ops::gather(&c.i("a"), &[ints(&[0, 3], &[2])], &[1], &[4, 2, 6])
        }),
        ("gather.a.bcast", |c| {
            ops::gather(&c.i("a"), &[c.i("gb0"), c.i("gb1")], &[0, 1], &[1, 1, 6])
        }),
        ("gather.a.none", |c| {
            let none: [&Array; 0] = [];
            ops::gather(&c.i("a"), &none, &[], &[2, 3, 4])
        }),
        ("gather.at.single", |c| {
            ops::gather(&c.at, &[ints(&[4, 0], &[2])], &[0], &[1, 4, 6])
        }),
        ("gather.ai.u32", |c| {
            // ai[[1, 2], 1:3, 0:4]: blocks of [1, 2, 4] starting at (i, 1, 0).
            let rows = Array::from(vec![1u32, 2]);
            let cols = Array::from(vec![1u32, 1]);
            ops::gather(&c.i("ai"), &[&rows, &cols], &[0, 1], &[1, 2, 4])
                .and_then(|out| out.reshape(&[2, 1, 2, 4]))
        }),
        ("gather.a.blocks.oob", |c| {
            ops::gather(&c.i("a"), &[ints(&[3, -1, 9], &[3])], &[1], &[4, 2, 6])
        }),
        // scatter and its reductions.
        ("scatter.a.0_2", |c| {
            let updates = c.i("su").reshape(&[3, 1, 5, 1])?;
            ops::scatter(&c.i("a"), &[c.i("g0"), c.i("g2")], &updates, &[0, 2])
        }),
        ("scatter.a.single.blocks", |c| {
            let updates = c.i("sb").reshape(&[2, 4, 2, 6])?;
            ops::scatter(&c.i("a"), &[ints(&[0, 2], &[2])], &updates, &[1])
        }),
        ("scatter.a.smallblock", |c| {
            ops::scatter(&c.i("a"), &[ints(&[1, 3], &[2])], &c.i("ss"), &[0])
        }),
        ("scatter_add.a.repeat", |c| {
            let updates = c.i("su").reshape(&[3, 1, 5, 1])?;
            ops::scatter_add(&c.i("a"), &[c.i("ir"), c.i("ic")], &updates, &[0, 2])
        }),
        ("scatter_prod.a.repeat", |c| {
            let updates = c.i("su").reshape(&[3, 1, 5, 1])?;
            ops::scatter_prod(&c.i("a"), &[c.i("ir"), c.i("ic")], &updates, &[0, 2])
        }),
        ("scatter_max.a.repeat", |c| {
            let updates = c.i("su").reshape(&[3, 1, 5, 1])?;
            ops::scatter_max(&c.i("a"), &[c.i("ir"), c.i("ic")], &updates, &[0, 2])
        }),
        ("scatter_min.a.repeat", |c| {
            let updates = c.i("su").reshape(&[3, 1, 5, 1])?;
            ops::scatter_min(&c.i("a"), &[c.i("ir"), c.i("ic")], &updates, &[0, 2])
        }),
        ("scatter_add.ai.single", |c| {
            let updates = ops::broadcast_to(&Array::scalar(10i32), &[3, 1, 5, 6])?;
            ops::scatter_add(&c.i("ai"), &[ints(&[1, 1, 2], &[3])], &updates, &[0])
        }),
        ("scatter_max.ai.single", |c| {
            let updates = ops::broadcast_to(&Array::scalar(60i32), &[2, 1, 5, 6])?;
            ops::scatter_max(&c.i("ai"), &[ints(&[3, 0], &[2])], &updates, &[0])
        }),
        ("scatter_min.ah.single", |c| {
            let zero = Array::scalar(0.0f32).as_type(Dtype::Float16)?;
            let updates = ops::broadcast_to(&zero, &[2, 1, 5, 6])?;
            ops::scatter_min(&c.i("ah"), &[ints(&[3, 0], &[2])], &updates, &[0])
        }),
        ("scatter_prod.ai.single", |c| {
            let updates = ops::broadcast_to(&Array::scalar(-1i32), &[1, 1, 5, 6])?;
            ops::scatter_prod(&c.i("ai"), &[ints(&[2], &[1])], &updates, &[0])
        }),
        ("scatter.a.oob", |c| {
            ops::scatter(&c.i("a"), &[ints(&[9, -10], &[2])], &c.i("so"), &[0])
        }),
        // masked_scatter.
        ("masked_scatter.a.mask2d", |c| {
            ops::masked_scatter(&c.i("a"), &c.i("mask"), &c.i("src2"))
        }),
        ("masked_scatter.a.mask3d", |c| {
            ops::masked_scatter(&c.i("a"), &c.i("mask3"), &c.i("src3"))
        }),
        ("masked_scatter.ai.scalar", |c| {
            ops::masked_scatter(&c.i("ai"), &c.i("mask"), &Array::scalar(5i32))
        }),
    ];
    run_cases(&c, cases);
}

#[test]
fn static_slices_take_any_bounds() {
    let a = Array::from_iter(0..24, &[2, 3, 4]).unwrap();
    // Extreme values clamp as in NumPy and never overflow MLX's arithmetic.
    let everything = ops::slice(
        &a,
        &[i32::MIN, i32::MIN, i32::MAX],
        &[i32::MAX, i32::MAX, i32::MIN],
        Some(&[1, i32::MAX, i32::MIN]),
    )
    .unwrap();
    assert_eq!(everything.shape(), [2, 1, 1]);
    assert_eq!(everything.to_vec::<i32>().unwrap(), [3, 15]);
    let reversed = ops::slice(&a, &[i32::MAX; 3], &[i32::MIN; 3], Some(&[-1; 3])).unwrap();
    assert_eq!(reversed.shape(), [2, 3, 4]);
    assert_eq!(reversed.to_vec::<i32>().unwrap()[..3], [23, 22, 21]);
}

#[test]
fn clamping_keeps_indices_of_every_integer_dtype_exact() {
    let a = Array::from_iter(0..300, &[300]).unwrap();
    // int8 indices next to an axis longer than int8 holds: -1 is 299.
    let i8s = Array::from(vec![-1i8, 127, -128]);
    assert_eq!(
        ops::take(&a, &i8s, 0).unwrap().to_vec::<i32>().unwrap(),
        [299, 127, 172]
    );
    let u16s = Array::from(vec![299u16, 300, 65535]);
    assert_eq!(
        ops::take(&a, &u16s, 0).unwrap().to_vec::<i32>().unwrap(),
        [299, 299, 299]
    );
    let i64s = Array::from(vec![i64::MIN, -300, 299, i64::MAX]);
    assert_eq!(
        ops::take(&a, &i64s, None).unwrap().to_vec::<i32>().unwrap(),
        [0, 0, 299, 299]
    );
    let u64s = Array::from(vec![0u64, u64::MAX]);
    assert_eq!(
        ops::take(&a, &u64s, 0).unwrap().to_vec::<i32>().unwrap(),
        [0, 299]
    );
}

// ---------------------------------------------------------------------------
// Errors.

#[test]
fn bad_slices_fail() {
    let a = Array::from_iter(0..24, &[2, 3, 4]).unwrap();
    assert_mlx(
        ops::slice(&a, &[0, 0], &[1, 1], None),
        "Invalid number of indices",
    );
    assert_mlx(
        ops::slice(&a, &[0, 0, 0], &[1, 1, 1], Some(&[1, 1])),
        "Invalid number of indices",
    );
    // MLX would divide by the zero stride.
    assert_invalid(
        ops::slice(&a, &[0, 0, 0], &[1, 1, 1], Some(&[1, 0, 1])),
        "must not be zero",
    );
    assert_invalid(
        ops::slice_update_add(&a, &a, &[0, 0, 0], &[1, 1, 1], Some(&[0, 1, 1])),
        "must not be zero",
    );
    assert_mlx(
        ops::slice_update(&a, &Array::from(vec![1, 2]), &[0, 0, 0], &[2, 3, 4], None),
        "broadcast",
    );
    let start = Array::from(vec![0i32]);
    assert_invalid(
        ops::slice_dynamic(&a, &start, &[0], &[1, -1, 4]),
        "must not be negative",
    );
    assert_mlx(
        ops::slice_dynamic(&a, &start, &[0], &[3, 3, 4]),
        "Invalid slice size",
    );
    assert_mlx(
        ops::slice_dynamic(&a, &start, &[3], &[1, 3, 4]),
        "Invalid axis",
    );
    assert_mlx(
        ops::slice_dynamic(&a, &Array::from(vec![0.5f32]), &[0], &[1, 3, 4]),
        "must be integers",
    );
    assert_mlx(
        ops::slice_dynamic(&a, &Array::from(vec![0, 1]), &[0], &[1, 3, 4]),
        "does not match number of axes",
    );
    // MLX would index its own shape past the end here.
    let big = Array::from_iter(0..48, &[2, 2, 3, 4]).unwrap();
    assert_invalid(
        ops::slice_update_dynamic(&a, &big, &start, &[0]),
        "more axes",
    );
}

#[test]
fn bad_indices_fail() {
    let a = Array::from_iter(0..24, &[2, 3, 4]).unwrap();
    let idx = Array::from(vec![0i32, 1]);
    // Out-of-range indices on an empty axis: MLX checks take...
    let empty = Array::from_slice::<f32>(&[], &[0, 3]).unwrap();
    assert_mlx(ops::take(&empty, &idx, 0), "empty axis");
    assert_mlx(ops::take(&empty, &idx, None), "empty axis");
    // ...but not take_along_axis, which would read outside the array.
    assert_invalid(
        ops::take_along_axis(&empty, &Array::from_slice(&[0i32; 3], &[1, 3]).unwrap(), 0),
        "empty axis",
    );
    assert_mlx(ops::take(&a, &idx, 3), "invalid axis");
    assert_mlx(ops::take(&a, &Array::from(vec![0.0f32]), 0), "integral");
    assert_mlx(
        ops::take_along_axis(&a, &idx, 0),
        "does not match array of dimension",
    );
    assert_mlx(ops::take_along_axis(&a, &idx, 5), "take_along_axis");
    assert_mlx(
        ops::put_along_axis(&a, &idx, &Array::scalar(1i32), 0),
        "does not match array of dimension",
    );
    assert_mlx(
        ops::gather(&a, &[&idx], &[3], &[1, 3, 4]),
        "Axes don't match",
    );
    assert_mlx(
        ops::gather(&a, &[&idx], &[-1], &[1, 3, 4]),
        "Axes don't match",
    );
    assert_mlx(
        ops::gather(&a, &[&idx, &idx], &[0], &[1, 3, 4]),
        "does not match number of axes",
    );
    assert_mlx(ops::gather(&a, &[&idx], &[0], &[3, 3, 4]), "Slice sizes");
    assert_mlx(ops::gather(&a, &[&idx], &[0], &[1, 3]), "slice_sizes");
    assert_invalid(
        ops::gather(&a, &[&idx], &[0], &[1, -3, 4]),
        "must not be negative",
    );
    assert_mlx(
        ops::gather(&a, &[Array::from(vec![true])], &[0], &[1, 3, 4]),
        "Boolean indices",
    );
    let updates = ops::broadcast_to(&Array::scalar(1i32), &[2, 1, 3, 4]).unwrap();
    assert_mlx(
        ops::scatter(&a, &[&idx], &a, &[0]),
        "does not match the sum",
    );
    assert_mlx(
        ops::scatter(&a, &[&idx], &updates, &[3]),
        "Axes don't match",
    );
    assert_mlx(
        ops::scatter_add(
            &a,
            &[&idx],
            &ops::broadcast_to(&Array::scalar(1i32), &[2, 3, 3, 4]).unwrap(),
            &[0],
        ),
        "too large",
    );
    // MLX would abort the process on boolean scatter indices.
    let mask = Array::from(vec![true, false]);
    assert_invalid(
        ops::scatter(&a, &[&mask], &updates, &[0]),
        "boolean indices",
    );
    assert_invalid(
        ops::scatter_max(&a, &[&mask], &updates, &[0]),
        "boolean indices",
    );
    assert_mlx(
        ops::masked_scatter(&a, &Array::from(vec![1i32, 0]), &Array::scalar(1i32)),
        "has to be boolean",
    );
    assert_mlx(
        ops::masked_scatter(
            &a,
            &Array::from(vec![true, false, true]),
            &Array::scalar(1i32),
        ),
        "mask should have the same shape",
    );
}

#[test]
fn masked_scatter_short_of_values_fails_on_evaluation() {
    let a = Array::from_iter(0..6, &[2, 3]).unwrap();
    let mask = Array::from_slice(&[true, true, true, true, false, true], &[2, 3]).unwrap();
    let out = ops::masked_scatter(&a, &mask, &Array::from(vec![9i32, 8])).unwrap();
    assert_mlx(out.eval(), "enough elements");
}
