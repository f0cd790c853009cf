//! The mlx-c source tree: `MLX_C_DIR`, or the pinned crates.io package.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Failure;
use crate::settings::{MLX_C_VERSION, Settings, tidy};

/// The pinned package that carries mlx-c under `src/mlx-c`.
const CARRIER: &str = "mlx-sys-0.7.0";

/// Returns the root of an mlx-c tree (the folder holding `mlx/c/mlx.h`).
pub fn locate(settings: &Settings) -> Result<PathBuf, Failure> {
    if let Some(dir) = &settings.mlx_c_dir {
        return check_tree(dir, "MLX_C_DIR");
    }
    let vendored = settings.out_dir.join("mlx-c-vendor");
    let tree = vendored.join(CARRIER).join("src").join("mlx-c");
    if !tree.join("mlx/c/mlx.h").is_file() {
        vendor(settings, &vendored)?;
    }
    check_tree(&tree, "the vendored mlx-sys 0.7.0 package")
}

fn check_tree(dir: &Path, origin: &str) -> Result<PathBuf, Failure> {
    if dir.join("mlx/c/mlx.h").is_file() && dir.join("CMakeLists.txt").is_file() {
        Ok(dir.to_path_buf())
    } else {
        crate::fail!(
            "{} (from {origin}) is not an mlx-c {MLX_C_VERSION} source tree: it lacks \
             mlx/c/mlx.h or CMakeLists.txt. Point MLX_C_DIR at the root of an mlx-c checkout.",
            tidy(dir).display()
        )
    }
}

/// Runs `cargo vendor --locked` on a copy of vendor/mlx-c, so that cargo
/// fetches the carrier package and checks it against Cargo.lock's checksum.
fn vendor(settings: &Settings, into: &Path) -> Result<(), Failure> {
    let pin_src = settings.vendor_dir.join("mlx-c");
    let pin = settings.out_dir.join("mlx-c-pin");
    fs::create_dir_all(&pin).map_err(|e| io_failure(&pin, e))?;
    for file in ["Cargo.toml", "Cargo.lock", "lib.rs"] {
        fs::copy(pin_src.join(file), pin.join(file))
            .map_err(|e| io_failure(&pin_src.join(file), e))?;
    }
    let mut cargo = Command::new(&settings.cargo);
    cargo
        .args(["vendor", "--locked", "--versioned-dirs", "--quiet"])
        .arg("--manifest-path")
        .arg(pin.join("Cargo.toml"))
        .arg(into)
        // The printed `[source]` stanza is for humans; cargo must not read it.
        .stdout(Stdio::null());
    if settings.offline {
        cargo.arg("--offline");
    }
    match cargo.status() {
        Ok(s) if s.success() => {
            // cargo vendor also copies the carrier's own build dependencies;
            // only the carrier is needed.
            for entry in fs::read_dir(into).into_iter().flatten().flatten() {
                if entry.file_name() != CARRIER {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
            Ok(())
        }
        Ok(s) => crate::fail!(
            "`cargo vendor` could not fetch the mlx-c sources (crates.io package mlx-sys 0.7.0) \
             pinned in {} ({s}); its messages are above. With MLX_SYS_OFFLINE the package must \
             already be in cargo's cache. Alternatively set MLX_C_DIR to an mlx-c {MLX_C_VERSION} \
             source tree.",
            tidy(&pin_src).display()
        ),
        Err(e) => crate::fail!("cannot run `{}`: {e}", settings.cargo),
    }
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure(format!("cannot copy {}: {e}", path.display()))
}
