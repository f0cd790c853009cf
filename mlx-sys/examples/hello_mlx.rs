//! Prints a small MLX computation made through the raw C API: the version of
//! the linked MLX and a matrix product evaluated on the CPU.
//!
//! `cargo run --release --example hello_mlx`

use std::ffi::{CStr, c_char, c_void};

use mlx_sys::*;

extern "C" fn print_error(msg: *const c_char, _data: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: mlx-c passes a NUL-terminated message valid for this call.
        let msg = unsafe { CStr::from_ptr(msg) };
        eprintln!("MLX error: {}", msg.to_string_lossy());
    });
}

fn main() {
    // SAFETY: every handle below is created, used on this thread and freed
    // once; data pointers are read only after evaluation.
    unsafe {
        mlx_set_error_handler(Some(print_error), std::ptr::null_mut(), None);

        let mut version = mlx_string_new();
        mlx_version(&mut version);
        println!(
            "MLX {}",
            CStr::from_ptr(mlx_string_data(version)).to_string_lossy()
        );
        mlx_string_free(version);

        let stream = mlx_default_cpu_stream_new();
        let a_data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b_data = [1.0f32, 0.5, -1.0, 2.0, 0.0, 1.0];
        let a = mlx_array_new_data(
            a_data.as_ptr().cast(),
            [2, 3].as_ptr(),
            2,
            mlx_dtype_::MLX_FLOAT32,
        );
        let b = mlx_array_new_data(
            b_data.as_ptr().cast(),
            [3, 2].as_ptr(),
            2,
            mlx_dtype_::MLX_FLOAT32,
        );
        let mut c = mlx_array_new();
        if mlx_matmul(&mut c, a, b, stream) != 0 || mlx_array_eval(c) != 0 {
            std::process::exit(1);
        }
        let values = std::slice::from_raw_parts(mlx_array_data_float32(c), mlx_array_size(c));
        println!("a = [[1, 2, 3], [4, 5, 6]]");
        println!("b = [[1, 0.5], [-1, 2], [0, 1]]");
        println!(
            "a @ b = [[{}, {}], [{}, {}]]",
            values[0], values[1], values[2], values[3]
        );
        for x in [a, b, c] {
            mlx_array_free(x);
        }
        mlx_stream_free(stream);
    }
}
