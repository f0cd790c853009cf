//! The array core against Python MLX: creation, casting and readback.

mod common;

use common::Goldens;
use mlx_rs::{Array, Dtype, Error, bf16, f16};

#[test]
fn casting_matches_python_for_every_dtype() {
    let g = Goldens::load("core");
    let x = g.get("x");
    for dtype in Dtype::ALL {
        let name = format!("x.as_{dtype}");
        let source = if dtype == Dtype::Float64 {
            x.clone()
        } else {
            &x * 10.0f32
        };
        let cast = source.as_type(dtype).unwrap();
        g.check(&name, &cast);
    }
}

#[test]
fn data_round_trips_for_every_element_type() {
    fn round_trip<T: mlx_rs::ArrayElement + PartialEq + std::fmt::Debug>(values: &[T]) {
        let a = Array::from_slice(values, &[values.len() as i32]).unwrap();
        assert_eq!(a.dtype(), T::DTYPE);
        assert_eq!(a.to_vec::<T>().unwrap(), values);
    }
    round_trip(&[true, false, true]);
    round_trip(&[0u8, 7, 255]);
    round_trip(&[0u16, 65535]);
    round_trip(&[0u32, u32::MAX]);
    round_trip(&[0u64, u64::MAX]);
    round_trip(&[i8::MIN, 0, i8::MAX]);
    round_trip(&[i16::MIN, i16::MAX]);
    round_trip(&[i32::MIN, i32::MAX]);
    round_trip(&[i64::MIN, i64::MAX]);
    round_trip(&[f16::from_f32(1.5), f16::from_f32(-65504.0)]);
    round_trip(&[bf16::from_f32(1.5), bf16::from_f32(-3.0e38)]);
    round_trip(&[1.5f32, -0.25]);
    round_trip(&[1.5f64, 1e300]);
    round_trip(&[mlx_rs::Complex32::new(1.0, -2.0)]);
}

#[test]
fn non_contiguous_arrays_read_in_logical_order() {
    let g = Goldens::load("core");
    let x = g.get("x");
    let t = g.get("x.T");
    // A transposed view shares x's data with swapped strides.
    let swapped = mlx_rs::ops::contiguous(&t, false).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), swapped.to_vec::<f32>().unwrap());
    assert_eq!(x.shape(), [3, 4]);
}

#[test]
fn readback_requires_the_exact_dtype() {
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    match a.to_vec::<i32>() {
        Err(Error::DtypeMismatch { requested, actual }) => {
            assert_eq!((requested, actual), (Dtype::Int32, Dtype::Float32));
        }
        other => panic!("expected a dtype mismatch, got {other:?}"),
    }
    assert_eq!(a.to_vec_as::<i32>().unwrap(), [1, 2]);
    assert!(matches!(a.item::<f32>(), Err(Error::InvalidArgument(_))));
    assert_eq!(Array::scalar(2.5f32).item::<f32>().unwrap(), 2.5);
}

#[test]
fn data_that_does_not_fill_the_shape_is_rejected() {
    match Array::from_slice(&[1.0f32, 2.0, 3.0], &[2, 2]) {
        Err(Error::ShapeMismatch {
            shape,
            expected,
            actual,
        }) => {
            assert_eq!((shape, expected, actual), (vec![2, 2], 4, 3));
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
    assert!(Array::from_slice::<f32>(&[], &[-1]).is_err());
}

#[test]
fn display_matches_python_repr() {
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    assert_eq!(a.to_string(), "array([1, 2, 3], dtype=int32)");
}

#[test]
fn integer_scalars_that_overflow_the_array_dtype_are_errors_as_in_python() {
    let a = Array::from_slice(&[1i8], &[1]).unwrap();
    for v in [300i64, -129, 1 << 40] {
        match mlx_rs::ops::add(&a, v) {
            Err(Error::InvalidArgument(message)) => {
                assert_eq!(
                    message,
                    format!("Converting {v} to int8 would result in overflow.")
                )
            }
            other => panic!("expected an overflow error, got {other:?}"),
        }
    }
    let flags = Array::from_slice(&[true], &[1]).unwrap();
    // Python silently wraps here (bool + 2**40 gives int32 1); an error is better.
    assert!(mlx_rs::ops::add(&flags, 1i64 << 40).is_err());
    assert_eq!(Array::from(1i64 << 40).dtype(), Dtype::Int64);
    assert_eq!(
        mlx_rs::ops::add(&a, 100).unwrap().to_vec::<i8>().unwrap(),
        [101]
    );
}

#[test]
fn operators_follow_python() {
    let a = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    assert_eq!((!&a).to_vec::<i32>().unwrap(), [-2, -3]);
    let flags = Array::from_slice(&[true, false], &[2]).unwrap();
    assert_eq!((!&flags).to_vec::<bool>().unwrap(), [false, true]);
    assert_eq!((-&a).to_vec::<i32>().unwrap(), [-1, -2]);
    assert_eq!((&a + 2).to_vec::<i32>().unwrap(), [3, 4]);
    assert_eq!((2 - &a).to_vec::<i32>().unwrap(), [1, 0]);
    assert_eq!(
        mlx_rs::ops::multiply(&a, 2.5).unwrap().dtype(),
        Dtype::Float32
    );
    let x = Array::from_slice(&[bf16::from_f32(1.5)], &[1]).unwrap();
    // A float scalar keeps bfloat16, as Python's weak scalars do.
    assert_eq!((&x * 2.0).dtype(), Dtype::Bfloat16);
    assert_eq!((&a / 2.0f32).dtype(), Dtype::Float32);
    let r = std::panic::catch_unwind(|| &a + &Array::from_slice(&[1i32, 2, 3], &[3]).unwrap());
    assert!(
        r.is_err(),
        "operators panic on shapes that do not broadcast"
    );
}

#[test]
fn comparison_and_logical_methods_match_the_functions() {
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    assert_eq!(
        a.less(2).unwrap().to_vec::<bool>().unwrap(),
        [true, false, false]
    );
    assert_eq!(
        a.greater_equal(&a).unwrap().to_vec::<bool>().unwrap(),
        [true; 3]
    );
    let big = a.greater(1).unwrap();
    assert_eq!(
        big.logical_and(a.less(3).unwrap())
            .unwrap()
            .to_vec::<bool>()
            .unwrap(),
        [false, true, false]
    );
    assert_eq!(
        a.bitwise_and(1).unwrap().to_vec::<i32>().unwrap(),
        [1, 0, 1]
    );
    assert_eq!(
        a.left_shift(2).unwrap().to_vec::<i32>().unwrap(),
        [4, 8, 12]
    );
    assert_eq!(a.maximum(2).unwrap().to_vec::<i32>().unwrap(), [2, 2, 3]);
    assert!(
        a.equal(Array::from_slice(&[1i32, 2], &[2]).unwrap())
            .is_err()
    );
}

/// The example of README.md's "mlx-rs in one screen".
#[test]
fn the_readme_example_runs() -> mlx_rs::Result<()> {
    use mlx_rs::{idx, ops, transforms};
    let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    let y = ops::sum(&(&x * 2.0 + 1.0), [1], false)?; // mx.sum(x * 2 + 1, axis=1)
    let first_row = x.index(idx![0, ..])?; // x[0, :]
    let grad = transforms::grad(
        |a: &[Array]| Ok(vec![ops::sum(&(&a[0] * &a[0]), None, false)?]),
        &[0],
    )?;
    assert_eq!(y.to_vec::<f32>()?, [8.0, 16.0]);
    assert_eq!(first_row.to_vec::<f32>()?, [1.0, 2.0]);
    assert_eq!(grad(&[x])?[0].to_vec::<f32>()?, [2.0, 4.0, 6.0, 8.0]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Integer division by zero and MIN // -1 (SIGFPE in Python MLX on the CPU;
// numpy's results here). Every expected value below was produced by numpy
// 2.4 (`a // b`, `a % b`, `np.divmod` on arrays of the same dtype).
//
// MLX 0.32's integer `floor_divide` (unlike its `divmod` and `remainder`)
// rounds towards zero when the signs differ, so the ordinary operands of
// `floor_divide` below have equal signs; that divergence is checked apart.

fn ints<T: mlx_rs::ArrayElement>(values: &[T]) -> Array {
    Array::from_slice(values, &[values.len() as i32]).unwrap()
}

#[test]
fn int32_division_by_zero_and_minus_one_matches_numpy() {
    use mlx_rs::ops::{divmod, floor_divide, remainder};
    let a = ints(&[7i32, 7, -7, 0, 5, -5, 123, i32::MAX, i32::MIN]);
    let b = ints(&[2i32, 3, -2, 3, 0, 0, -1, -1, -1]);
    let quotient = [3, 2, 3, 0, 0, 0, -123, -2147483647, -2147483648];
    let rest = [1, 1, -1, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        floor_divide(&a, &b).unwrap().to_vec::<i32>().unwrap(),
        quotient
    );
    assert_eq!(remainder(&a, &b).unwrap().to_vec::<i32>().unwrap(), rest);
    let (q, r) = divmod(&a, &b).unwrap();
    assert_eq!(q.to_vec::<i32>().unwrap(), quotient);
    assert_eq!(r.to_vec::<i32>().unwrap(), rest);
    // The operator goes through the same function.
    assert_eq!((&a % &b).to_vec::<i32>().unwrap(), rest);

    // Signs that differ: divmod and remainder floor as numpy does
    // (numpy: [-4, -4], [1, -1]); MLX's floor_divide rounds towards zero.
    let (a, b) = (ints(&[-7i32, 7, 5]), ints(&[2i32, -2, 0]));
    let (q, r) = divmod(&a, &b).unwrap();
    assert_eq!(q.to_vec::<i32>().unwrap(), [-4, -4, 0]);
    assert_eq!(r.to_vec::<i32>().unwrap(), [1, -1, 0]);
    assert_eq!(
        remainder(&a, &b).unwrap().to_vec::<i32>().unwrap(),
        [1, -1, 0]
    );
    assert_eq!(
        floor_divide(&a, &b).unwrap().to_vec::<i32>().unwrap(),
        [-3, -3, 0]
    );
}

#[test]
fn int64_division_by_zero_and_min_remainder_minus_one_match_numpy() {
    use mlx_rs::ops::{divmod, floor_divide, remainder};
    let a = ints(&[7i64, -7, i64::MAX, i64::MIN, i64::MIN, -9, 9]);
    let b = ints(&[0i64, 0, -1, -1, -3, -4, 4]);
    let quotient = [
        0,
        0,
        -9223372036854775807,
        -9223372036854775808,
        3074457345618258602,
        2,
        2,
    ];
    let rest = [0, 0, 0, 0, -2, -1, 1];
    assert_eq!(
        floor_divide(&a, &b).unwrap().to_vec::<i64>().unwrap(),
        quotient
    );
    assert_eq!(remainder(&a, &b).unwrap().to_vec::<i64>().unwrap(), rest);
    let (q, r) = divmod(&a, &b).unwrap();
    assert_eq!(q.to_vec::<i64>().unwrap(), quotient);
    assert_eq!(r.to_vec::<i64>().unwrap(), rest);
}

#[test]
fn unsigned_and_small_int_division_by_zero_matches_numpy() {
    use mlx_rs::ops::{divmod, floor_divide, remainder};
    let a = ints(&[0u8, 1, 200, 255, 17]);
    let b = ints(&[0u8, 0, 0, 7, 5]);
    let q = floor_divide(&a, &b).unwrap();
    assert_eq!(q.dtype(), Dtype::Uint8);
    assert_eq!(q.to_vec::<u8>().unwrap(), [0, 0, 0, 36, 3]);
    assert_eq!(
        remainder(&a, &b).unwrap().to_vec::<u8>().unwrap(),
        [0, 0, 0, 3, 2]
    );
    let (q, r) = divmod(&a, &b).unwrap();
    assert_eq!(q.to_vec::<u8>().unwrap(), [0, 0, 0, 36, 3]);
    assert_eq!(r.to_vec::<u8>().unwrap(), [0, 0, 0, 3, 2]);

    let a = ints(&[-128i8, 127, 5, -5]);
    let b = ints(&[-1i8, -1, 0, -3]);
    assert_eq!(
        floor_divide(&a, &b).unwrap().to_vec::<i8>().unwrap(),
        [-128, -127, 0, 1]
    );
    assert_eq!(
        remainder(&a, &b).unwrap().to_vec::<i8>().unwrap(),
        [0, 0, 0, -2]
    );
    // int8 against int32 promotes to int32.
    let q = floor_divide(&a, ints(&[0i32, 2, -1, -4])).unwrap();
    assert_eq!(q.dtype(), Dtype::Int32);
    assert_eq!(q.to_vec::<i32>().unwrap(), [0, 63, -5, 1]);
}

#[test]
fn integer_division_by_zero_broadcasts_and_takes_scalars() {
    use mlx_rs::ops::{floor_divide, remainder};
    let a = Array::from_slice(&[10i32, -10, 3, i32::MIN, 5, 0], &[2, 3]).unwrap();
    let b = ints(&[0i32, -1, 2]);
    let q = floor_divide(&a, &b).unwrap();
    assert_eq!(q.shape(), [2, 3]);
    assert_eq!(q.to_vec::<i32>().unwrap(), [0, 10, 1, 0, -5, 0]);
    assert_eq!(
        remainder(&a, &b).unwrap().to_vec::<i32>().unwrap(),
        [0, 0, 1, 0, 0, 0]
    );
    // Integer scalars take the array's dtype (the integer path)...
    assert_eq!(
        floor_divide(&a, 0).unwrap().to_vec::<i32>().unwrap(),
        [0; 6]
    );
    assert_eq!(remainder(&a, 0).unwrap().to_vec::<i32>().unwrap(), [0; 6]);
    assert_eq!(
        floor_divide(7, &b).unwrap().to_vec::<i32>().unwrap(),
        [0, -7, 3]
    );
    assert_eq!(
        floor_divide(ints(&[i64::MIN]), -1)
            .unwrap()
            .to_vec::<i64>()
            .unwrap(),
        [i64::MIN]
    );
    // ...while a float scalar makes the division a float32 one.
    let f = floor_divide(&b, 0.0).unwrap();
    assert_eq!(f.dtype(), Dtype::Float32);
    let f = f.to_vec::<f32>().unwrap();
    assert!(f[0].is_nan() && f[1] == f32::NEG_INFINITY && f[2] == f32::INFINITY);
}

#[test]
fn float_division_by_zero_still_gives_inf_and_nan() {
    use mlx_rs::ops::{divmod, floor_divide, remainder};
    let a = ints(&[1.0f32, -1.0, 0.0, 7.5]);
    let zero = ints(&[0.0f32; 4]);
    // numpy: [inf, -inf, nan, inf] and [nan; 4].
    let q = floor_divide(&a, &zero).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(q[0], f32::INFINITY);
    assert_eq!(q[1], f32::NEG_INFINITY);
    assert!(q[2].is_nan());
    assert_eq!(q[3], f32::INFINITY);
    let r = remainder(&a, &zero).unwrap().to_vec::<f32>().unwrap();
    assert!(r.iter().all(|v| v.is_nan()), "{r:?}");
    // Ordinary float divmod is untouched (numpy: [0, -1, 0, 3], [1, 1, 0, 1.5]).
    let (q, r) = divmod(&a, 2.0f32).unwrap();
    assert_eq!(q.to_vec::<f32>().unwrap(), [0.0, -1.0, 0.0, 3.0]);
    assert_eq!(r.to_vec::<f32>().unwrap(), [1.0, 1.0, 0.0, 1.5]);
    // No fix-up ops are added for floats: the graph is MLX's own.
    let ours = mlx_rs::graph::print_graph(&[floor_divide(&a, &zero).unwrap()], None).unwrap();
    assert!(!ours.contains("Select"), "{ours}");
    let ints_graph =
        mlx_rs::graph::print_graph(&[floor_divide(ints(&[1i32]), 0).unwrap()], None).unwrap();
    assert!(ints_graph.contains("Select"), "{ints_graph}");
}
