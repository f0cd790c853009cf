//! Indexing and index assignment against Python MLX (gen_index.py writes
//! the same cases in Python).

mod common;

use common::Goldens;
use mlx_rs::{Array, Ellipsis, Error, Index, NewAxis, idx, ops};

#[test]
fn indexing_matches_python() {
    check_gets(&Goldens::load("index"));
}

#[test]
fn index_assignment_matches_python() {
    check_puts(&Goldens::load("index"));
}

#[test]
fn every_golden_is_checked() {
    let g = Goldens::load("index");
    check_gets(&g);
    check_puts(&g);
    g.assert_all_used();
}

fn check_gets(g: &Goldens) {
    let (a, i2, i3, i4) = (g.get("a"), g.get("i2"), g.get("i3"), g.get("i4"));
    let i2_head = a_slice(&i2);
    let cases: Vec<(&str, Vec<Index>)> = vec![
        ("int", idx![1].to_vec()),
        ("neg_int", idx![-1].to_vec()),
        ("two_ints", idx![1, 2].to_vec()),
        ("slice", idx![.., 1..3].to_vec()),
        ("slice_step", idx![.., .., ..;2].to_vec()),
        ("neg_step", idx![.., ..;-1].to_vec()),
        (
            "neg_step_bounds",
            vec![
                Index::from(..),
                Index::from(..),
                Index::slice(Some(3), Some(0), Some(-2)),
            ],
        ),
        ("neg_slice_bounds", idx![.., -2..].to_vec()),
        ("out_of_range_slice", idx![.., 1..100].to_vec()),
        (
            "empty_slice",
            vec![Index::from(..), Index::slice(Some(2), Some(1), None)],
        ),
        ("mixed", idx![1, 1.., NewAxis, ..;2].to_vec()),
        ("ellipsis_last", idx![Ellipsis, 1].to_vec()),
        ("ellipsis_middle", idx![0, Ellipsis, 2].to_vec()),
        ("newaxis_front", idx![NewAxis, 0].to_vec()),
        ("newaxis_end", idx![Ellipsis, NewAxis].to_vec()),
        ("adv_first", idx![&i2].to_vec()),
        ("adv_middle", idx![.., &i3].to_vec()),
        ("adv_adjacent", idx![.., &i3, &i4].to_vec()),
        ("adv_separated", idx![&i2_head, .., &i4].to_vec()),
        ("adv_with_int", idx![.., &i3, 1].to_vec()),
        ("adv_int_separated", idx![1, .., &i3].to_vec()),
        ("adv_with_slice", idx![.., &i3, 1..3].to_vec()),
        ("adv_with_newaxis", idx![NewAxis, .., &i3].to_vec()),
    ];
    for (name, index) in cases {
        let got = a
            .index(&index)
            .unwrap_or_else(|e| panic!("get.{name}: {e}"));
        g.check(&format!("get.{name}"), &got);
    }
}

/// `i[:2]`.
fn a_slice(i3: &Array) -> Array {
    i3.index(idx![..2]).unwrap()
}

fn check_puts(g: &Goldens) {
    let (a, i3, i4) = (g.get("a"), g.get("i3"), g.get("i4"));
    let put = |name: &str, index: &[Index], value: Array| {
        let mut b = a.clone();
        b.index_put(index, &value)
            .unwrap_or_else(|e| panic!("put.{name}: {e}"));
        g.check(&format!("put.{name}"), &b);
        // The original is untouched: assignment makes a new array.
        g.check("a", &a);
    };
    put("int_scalar", idx![1], Array::from(7.0f32));
    put("slice_scalar", idx![.., 1..3], Array::from(-1.0f32));
    let ten = ops::reshape(
        &ops::arange(0, 10, 1, Some(mlx_rs::Dtype::Float32)).unwrap(),
        &[2, 5],
    )
    .unwrap();
    put("step_array", idx![0, 0, ..;2], ten);
    put(
        "neg_step_broadcast",
        idx![.., ..;-1, 0],
        Array::from_slice(&[1.0f32, 2., 3., 4., 5.], &[5]).unwrap(),
    );
    put("newaxis", idx![NewAxis, 1, 2], Array::from(5.0f32));
    put("adv_scalar", idx![.., &i3], Array::from(9.0f32));
    put(
        "adv_values",
        idx![0, &i3, 1],
        Array::from_slice(&[10.0f32, 20., 30.], &[3, 1]).unwrap(),
    );
    put(
        "adv_broadcast",
        idx![1, &a_slice(&i3), &i4, 1..3],
        Array::from_slice(&[1.0f32, 2.], &[2]).unwrap(),
    );
    put("int_array_value_cast", idx![0, 0, 0], Array::from(3i32));
}

#[test]
fn scalars_assign_with_the_array_dtype() {
    let mut a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    a.index_put(idx![1..], 7).unwrap();
    assert_eq!(a.to_vec::<i32>().unwrap(), [1, 7, 7]);
}

#[test]
fn bad_indices_are_errors() {
    let a = Array::from_iter(0..6i32, &[2, 3]).unwrap();
    match a.index(idx![0, 3]) {
        Err(Error::IndexOutOfRange { index, axis, size }) => {
            assert_eq!((index, axis, size), (3, 1, 3))
        }
        other => panic!("expected IndexOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        a.index(idx![-3]),
        Err(Error::IndexOutOfRange { .. })
    ));
    assert!(
        matches!(a.index(idx![0, 0, 0]), Err(Error::InvalidArgument(m)) if m.contains("too many indices"))
    );
    assert!(matches!(
        a.index(idx![Ellipsis, 0, Ellipsis]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.index(&[Index::slice(None, None, Some(0))]),
        Err(Error::InvalidArgument(_))
    ));
    let mask = Array::from_slice(&[true, false], &[2]).unwrap();
    assert!(
        matches!(a.index(idx![&mask]), Err(Error::InvalidArgument(m)) if m.contains("boolean"))
    );
    let mut b = a.clone();
    let wrong = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    assert!(matches!(
        b.index_put(idx![0], &wrong),
        Err(Error::Mlx { .. })
    ));
    assert!(matches!(
        b.index_put(idx![5], 1),
        Err(Error::IndexOutOfRange { .. })
    ));
}
