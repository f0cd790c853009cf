//! The default stream ops use follows `Stream::set_default` (mlx-rs keeps
//! it per thread between changes). Its own test binary: it changes MLX's
//! default, which other tests' threads would otherwise see.

use mlx_rs::{Array, Device, Stream, ops};

#[test]
fn ops_follow_a_new_default_stream_and_back() {
    let original = Stream::current().unwrap();
    assert_eq!(
        Stream::current().unwrap(),
        original,
        "the cached stream is stable"
    );
    let fresh = Stream::new(&Device::cpu()).unwrap();
    fresh.set_default().unwrap();
    assert_eq!(Stream::current().unwrap(), fresh);
    let a = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    assert_eq!(ops::add(&a, 1).unwrap().to_vec::<i32>().unwrap(), [2, 3]);
    original.set_default().unwrap();
    assert_eq!(Stream::current().unwrap(), original);
}
