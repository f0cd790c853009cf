//! Exact comparison of a tensor with its golden.

use mlx_rs::{Array, ops};

/// Asserts `got` has `want`'s shape, dtype and values, bit for bit.
pub fn assert_exact(name: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let equal = ops::array_equal(got, want, false)
        .unwrap()
        .item::<bool>()
        .unwrap();
    assert!(equal, "{name}: values differ");
}
