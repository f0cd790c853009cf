//! Raw bindings to [mlx-c](https://github.com/ml-explore/mlx-c) 0.7.0, MLX's
//! C API, linked against MLX 0.32.2.
//!
//! Everything here is `unsafe` and mirrors the C headers one to one; the safe
//! API is the `mlx-rs` crate. The build script obtains mlx-c and MLX from the
//! package registries (crates.io and PyPI), verifies their checksums, builds
//! a static `libmlxc` with CMake and links `libmlx` dynamically; README.md
//! lists the environment variables that change where they come from.
//!
//! Notes for callers:
//! - mlx-c's default error handler prints the message and calls `exit`.
//!   Install your own with [`mlx_set_error_handler`] before the first call.
//! - On x86-64, mlx-c declares the float16/bfloat16 scalar accessors only
//!   when `HAS_FLOAT16` is defined, so they are absent; read such arrays as
//!   `uint16` words.
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
#![allow(missing_docs, clippy::all, clippy::undocumented_unsafe_blocks)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The version of the MLX library this crate was built against, as its
/// CMake package reported it (0.32.2 unless `MLX_DIR` points elsewhere).
pub const MLX_VERSION: &str = env!("MLX_SYS_MLX_VERSION");

/// The version of mlx-c these bindings were generated from.
pub const MLX_C_VERSION: &str = "0.7.0";

/// Whether MLX's BLAS calls reach the system OpenBLAS (the `openblas`
/// feature, where the build found it), which runs each f32 product on all
/// cores, rather than the single-threaded BLAS libmlx was shipped with.
pub const OPENBLAS: bool = cfg!(mlx_sys_openblas);

/// With the `openblas` feature, a reference to OpenBLAS from Rust code that
/// every binary links: libmlx is the library that calls BLAS, and the binary
/// itself calls none of it, so the linker's `--as-needed` (rustc's default)
/// would otherwise leave libopenblas out of the binary's NEEDED list, and the
/// wheel's bundled reference BLAS would answer libmlx's lookups.
#[cfg(mlx_sys_openblas)]
mod openblas {
    unsafe extern "C" {
        fn openblas_get_num_threads() -> std::os::raw::c_int;
    }

    #[used]
    static KEEP_OPENBLAS_NEEDED: unsafe extern "C" fn() -> std::os::raw::c_int =
        openblas_get_num_threads;
}
