//! The linked MLX works through the raw bindings: version, a computation,
//! and an error reported through a handler instead of `exit`.

use std::ffi::{CStr, c_char, c_void};
use std::sync::{Mutex, Once};

use mlx_sys::*;

/// Messages the test's error handler received, in order.
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn record_error(msg: *const c_char, _data: *mut c_void) {
    // A panic must not unwind into C.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: mlx-c passes a NUL-terminated message valid for this call.
        let text = unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned();
        ERRORS.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    });
}

fn install_handler() {
    static ONCE: Once = Once::new();
    // SAFETY: the handler is a plain function that catches panics; no data.
    ONCE.call_once(|| unsafe {
        mlx_set_error_handler(Some(record_error), std::ptr::null_mut(), None)
    });
}

fn cpu_stream() -> mlx_stream {
    // SAFETY: returns a new stream handle owned by the caller.
    unsafe { mlx_default_cpu_stream_new() }
}

fn array_f32(values: &[f32], shape: &[i32]) -> mlx_array {
    // SAFETY: `values` holds the product of `shape` f32s; mlx copies them.
    unsafe {
        mlx_array_new_data(
            values.as_ptr().cast(),
            shape.as_ptr(),
            shape.len() as i32,
            mlx_dtype_::MLX_FLOAT32,
        )
    }
}

fn to_vec_f32(a: mlx_array) -> Vec<f32> {
    // SAFETY: `a` is a valid float32 array; it is evaluated before reading,
    // and the data pointer stays valid while `a` lives.
    unsafe {
        assert_eq!(mlx_array_eval(a), 0);
        assert_eq!(mlx_array_dtype(a), mlx_dtype_::MLX_FLOAT32);
        let n = mlx_array_size(a);
        std::slice::from_raw_parts(mlx_array_data_float32(a), n).to_vec()
    }
}

#[test]
fn linked_mlx_reports_the_pinned_version() {
    install_handler();
    // SAFETY: mlx_version fills a string handle that is freed after reading.
    let version = unsafe {
        let mut s = mlx_string_new();
        assert_eq!(mlx_version(&mut s), 0);
        let text = CStr::from_ptr(mlx_string_data(s))
            .to_string_lossy()
            .into_owned();
        mlx_string_free(s);
        text
    };
    assert_eq!(version, "0.32.2");
    assert_eq!(MLX_VERSION, "0.32.2");
}

#[test]
fn adding_two_arrays_evaluates_to_their_sum() {
    install_handler();
    let a = array_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = array_f32(&[10.0, 20.0, 30.0], &[3]);
    let stream = cpu_stream();
    // SAFETY: all handles are valid; each is freed once.
    unsafe {
        let mut sum = mlx_array_new();
        assert_eq!(mlx_add(&mut sum, a, b, stream), 0);
        let mut shape = [0i32; 2];
        assert_eq!(mlx_array_ndim(sum), 2);
        shape.copy_from_slice(std::slice::from_raw_parts(mlx_array_shape(sum), 2));
        assert_eq!(shape, [2, 3]);
        assert_eq!(to_vec_f32(sum), [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        mlx_array_free(sum);
        mlx_array_free(a);
        mlx_array_free(b);
        mlx_stream_free(stream);
    }
}

#[test]
fn a_shape_mismatch_reaches_the_handler_and_the_process_carries_on() {
    install_handler();
    let a = array_f32(&[1.0, 2.0], &[2]);
    let b = array_f32(&[1.0, 2.0, 3.0], &[3]);
    let stream = cpu_stream();
    // SAFETY: all handles are valid; each is freed once.
    unsafe {
        let mut out = mlx_array_new();
        let status = mlx_add(&mut out, a, b, stream);
        assert_ne!(status, 0, "adding shapes (2) and (3) must fail");
        let errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            errors
                .iter()
                .any(|m| m.contains("broadcast") && m.contains("(2)") && m.contains("(3)")),
            "the handler got {errors:?}"
        );
        // MLX stays usable after the error.
        let mut ok = mlx_array_new();
        assert_eq!(mlx_add(&mut ok, a, a, stream), 0);
        assert_eq!(to_vec_f32(ok), [2.0, 4.0]);
        for x in [out, ok, a, b] {
            mlx_array_free(x);
        }
        mlx_stream_free(stream);
    }
}

#[test]
fn a_percent_sign_in_an_error_message_is_printed_not_interpreted() {
    install_handler();
    // MLX's message names the file; mlx-c used to pass the whole message
    // to vsnprintf as its format, so `%s` read a missing argument (SIGSEGV)
    // and `%n` wrote through one.
    let path = c"/nonexistent-mlx-sys-test/%s%s%s%s%n%x.npy";
    let stream = cpu_stream();
    // SAFETY: the path is NUL-terminated; the handles are freed once.
    unsafe {
        let mut out = mlx_array_new();
        let status = mlx_load(&mut out, path.as_ptr(), stream);
        assert_ne!(status, 0, "loading a missing file must fail");
        mlx_array_free(out);
        mlx_stream_free(stream);
    }
    let errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        errors
            .iter()
            .any(|m| m.contains("/nonexistent-mlx-sys-test/%s%s%s%s%n%x.npy")),
        "the handler got {errors:?}"
    );
}
