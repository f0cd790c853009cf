//! Build script of `mlx-sys`: mlx-c 0.7.0 over MLX 0.32.2, from the package
//! registries only.
//!
//! 1. mlx-c sources: `MLX_C_DIR`, or the crates.io package `mlx-sys` 0.7.0
//!    materialised with `cargo vendor --locked` (cargo checks its checksum).
//! 2. MLX: `MLX_DIR`, or the official PyPI wheel installed with
//!    `pip --require-hashes` into a per-user cache.
//! 3. cmake and libclang: found on the machine, or installed the same way.
//! 4. CMake builds a static `libmlxc`; bindgen writes `bindings.rs`.
//! 5. With the `openblas` feature, OpenBLAS found on the machine.
//! 6. Link directives, rpath and `links` metadata.
//!
//! Nothing here runs again unless a pin, this script or one of the
//! environment variables in [`settings`] changes.

mod bindings;
mod blas;
mod cache;
mod cmake;
mod link;
mod mlx;
mod mlx_c;
mod pip;
mod settings;
mod tools;

use std::fmt;

/// A build failure: its `Debug` form is the message, so that cargo prints a
/// readable text when `main` returns it.
pub struct Failure(pub String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n\nmlx-sys: {}\n", self.0)
    }
}

/// Shorthand for `Err(Failure(format!(...)))`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { Err($crate::Failure(format!($($arg)*))) };
}

fn main() -> Result<(), Failure> {
    let settings = settings::Settings::from_env()?;
    settings.emit_rerun_triggers();
    println!("cargo::rustc-check-cfg=cfg(mlx_sys_openblas)");

    // Before anything slow: a missing OpenBLAS should fail in a second.
    let openblas = blas::locate(&settings)?;
    let mlx_c = mlx_c::locate(&settings)?;
    let mlx = mlx::locate(&settings)?;
    let cmake = tools::cmake(&settings)?;
    let mlxc_lib_dir = cmake::build_mlx_c(&settings, &cmake, &mlx_c, &mlx)?;
    let clang = tools::libclang(&settings)?;
    bindings::generate(&settings, &mlx_c, &clang)?;
    link::emit(&settings, &mlx, &mlx_c, &mlxc_lib_dir, openblas.as_ref())
}
