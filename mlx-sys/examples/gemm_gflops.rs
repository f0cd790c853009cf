//! Measures MLX's CPU matmul throughput, to tell which BLAS the binary
//! reached: the CPU wheel's bundled reference BLAS, or OpenBLAS with the
//! `openblas` feature.
//!
//! `cargo run --release -p mlx-sys --example gemm_gflops [--features openblas] -- [N] [REPS] [float32|bfloat16]`
//!
//! Prints the best of REPS runs of an `N x N` by `N x N` product (default
//! 1024, 5, float32). bfloat16 uses MLX's own kernel, so BLAS does not change
//! it.

use std::ffi::{CStr, c_char, c_void};
use std::time::Instant;

use mlx_sys::*;

extern "C" fn print_error(msg: *const c_char, _data: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: mlx-c passes a NUL-terminated message valid for this call.
        let msg = unsafe { CStr::from_ptr(msg) };
        eprintln!("MLX error: {}", msg.to_string_lossy());
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let reps: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dtype = match args.get(2).map(String::as_str) {
        None | Some("float32") => mlx_dtype_::MLX_FLOAT32,
        Some("bfloat16") => mlx_dtype_::MLX_BFLOAT16,
        Some(other) => {
            eprintln!("unknown dtype {other}: use float32 or bfloat16");
            std::process::exit(2);
        }
    };
    // A fixed pseudo-random fill: no RNG state to set up, same data each run.
    let mut state = 0x2545_f491_u32;
    let data: Vec<f32> = (0..n * n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    let side = i32::try_from(n).unwrap_or(i32::MAX);

    // SAFETY: every handle is created, used on this thread and freed once;
    // `data` outlives the array that copies it.
    unsafe {
        mlx_set_error_handler(Some(print_error), std::ptr::null_mut(), None);
        let stream = mlx_default_cpu_stream_new();
        let host = mlx_array_new_data(
            data.as_ptr().cast(),
            [side, side].as_ptr(),
            2,
            mlx_dtype_::MLX_FLOAT32,
        );
        let mut a = mlx_array_new();
        if mlx_astype(&mut a, host, dtype, stream) != 0 || mlx_array_eval(a) != 0 {
            std::process::exit(1);
        }
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) {
            let mut c = mlx_array_new();
            let start = Instant::now();
            if mlx_matmul(&mut c, a, a, stream) != 0 || mlx_array_eval(c) != 0 {
                std::process::exit(1);
            }
            best = best.min(start.elapsed().as_secs_f64());
            mlx_array_free(c);
        }
        let flops = 2.0 * (n as f64).powi(3);
        println!(
            "{n}x{n}x{n} {} matmul: best {:.4} s, {:.1} GFLOP/s",
            args.get(2).map_or("float32", String::as_str),
            best,
            flops / best / 1e9
        );
        mlx_array_free(a);
        mlx_array_free(host);
        mlx_stream_free(stream);
    }
}
