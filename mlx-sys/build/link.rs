//! What the linker and dependent crates are told.

use std::path::{Path, PathBuf};

use crate::Failure;
use crate::blas::{self, OpenBlas};
use crate::mlx::Mlx;
use crate::settings::{MLX_C_VERSION, Settings};

/// Emits link directives, this crate's rpath and `links = "mlx"` metadata.
///
/// libmlx is linked dynamically. Its folder is reached two ways:
/// - an rpath to its real folder, for binaries run directly; cargo passes
///   link arguments only to the targets of the crate that emits them, so each
///   workspace crate with binaries, tests or examples repeats it from the
///   `DEP_MLX_LIB_DIR` metadata (see README.md);
/// - a link-search folder inside `OUT_DIR` (a symlink to MLX's parent
///   folder, keeping the relative layout libmlx's own rpath relies on), which
///   cargo adds to the library path of `cargo run` and `cargo test`.
pub fn emit(
    settings: &Settings,
    mlx: &Mlx,
    mlx_c: &Path,
    mlxc_lib_dir: &Path,
    openblas: Option<&OpenBlas>,
) -> Result<(), Failure> {
    println!("cargo:rustc-link-search=native={}", mlxc_lib_dir.display());
    println!("cargo:rustc-link-lib=static=mlxc");
    if let Some(openblas) = openblas {
        blas::emit(settings, openblas)?;
    }
    println!(
        "cargo:rustc-link-search=native={}",
        search_dir(settings, mlx)?.display()
    );
    println!("cargo:rustc-link-lib=dylib=mlx");
    // libmlxc is C++ built against the platform's C++ runtime; libmlx (and
    // through it Metal, Accelerate or CUDA) brings its own dependencies.
    match settings.target_os.as_str() {
        "macos" | "ios" => println!("cargo:rustc-link-lib=dylib=c++"),
        "windows" => {}
        _ => println!("cargo:rustc-link-lib=dylib=stdc++"),
    }
    if settings.target_os != "windows" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", mlx.lib_dir.display());
    }

    // Metadata for direct dependents, as DEP_MLX_<KEY>.
    println!("cargo:lib_dir={}", mlx.lib_dir.display());
    println!("cargo:prefix={}", mlx.prefix.display());
    println!("cargo:include={}", mlx_c.display());
    println!("cargo:version={}", mlx.version);
    println!("cargo:mlx_c_version={MLX_C_VERSION}");
    println!("cargo:rustc-env=MLX_SYS_MLX_VERSION={}", mlx.version);
    Ok(())
}

/// A folder inside `OUT_DIR` that resolves to `mlx.lib_dir`.
fn search_dir(settings: &Settings, mlx: &Mlx) -> Result<PathBuf, Failure> {
    #[cfg(unix)]
    {
        if let (Some(root), Some(name)) = (mlx.prefix.parent(), mlx.prefix.file_name()) {
            let link = settings.out_dir.join("mlx-root");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(root, &link).map_err(|e| {
                Failure(format!(
                    "cannot link {} to {}: {e}",
                    link.display(),
                    root.display()
                ))
            })?;
            return Ok(link.join(name).join("lib"));
        }
    }
    let _ = settings;
    Ok(mlx.lib_dir.clone())
}
