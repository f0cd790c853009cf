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
