//! Safetensors reading of arbitrary bytes, as the checkpoint loader reads a
//! shard: mlx-vlm's header check first, then MLX's reader on what the check
//! accepts, reading every array. A typed error or arrays, never a crash or
//! unbounded allocation. (MLX's own reader is also fed the bytes directly:
//! `mlx_rs::io` is safe API of its own.)
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One scratch file per process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("mlx-vlm-fuzz-{}.safetensors", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok((arrays, _metadata)) = mlx_rs::io::load_safetensors_from_bytes(data) {
        for array in arrays.values() {
            let _ = array.eval();
        }
    }
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if mlx_vlm::utils::read_weight_headers(std::slice::from_ref(path)).is_ok()
        && let Ok((arrays, _metadata)) = mlx_rs::io::load_safetensors(path)
    {
        for array in arrays.values() {
            let _ = array.eval();
        }
    }
});
