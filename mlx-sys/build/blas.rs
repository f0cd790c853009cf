//! An optimised BLAS for MLX's CPU backend on Linux (the `openblas` feature).
//!
//! The `mlx-cpu` wheel links libmlx against a bundled reference BLAS and
//! LAPACK (`mlx_cpu.libs/libblas-*.so`, `liblapack-*.so`), whose f32 GEMM is
//! two orders of magnitude slower than OpenBLAS. libmlx looks up
//! `cblas_sgemm`, `sgetrf_` and the rest through the dynamic linker's global
//! scope, which lists the executable's own NEEDED libraries before those of
//! libmlx. Making libopenblas a NEEDED library of every final binary
//! therefore makes OpenBLAS answer those lookups, as `LD_PRELOAD` would,
//! without touching the wheel.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Failure;
use crate::settings::{Settings, tidy};

/// An OpenBLAS shared library to link.
pub struct OpenBlas {
    /// The folder holding it.
    pub dir: PathBuf,
    /// The `-l` argument: `openblas`, or the runtime file name itself when
    /// only the runtime package (no `libopenblas.so` symlink) is installed.
    pub link_name: String,
}

/// Finds OpenBLAS when the `openblas` feature or `MLX_SYS_OPENBLAS_DIR` asks
/// for it; `None` keeps the wheel's bundled BLAS.
pub fn locate(settings: &Settings) -> Result<Option<OpenBlas>, Failure> {
    if !settings.openblas {
        return Ok(None);
    }
    if settings.target_os != "linux" {
        return crate::fail!(
            "the `openblas` feature is for Linux; on {} MLX brings its own BLAS (Accelerate on \
             macOS). Build without `--features mlx-sys/openblas` and unset MLX_SYS_OPENBLAS_DIR.",
            settings.target_os
        );
    }
    if let Some(dir) = &settings.openblas_dir {
        return match in_dir(dir) {
            Some(found) => Ok(Some(found)),
            None => crate::fail!(
                "MLX_SYS_OPENBLAS_DIR={} holds neither libopenblas.so nor libopenblas.so.0. \
                 Point it at the folder of OpenBLAS's shared library, or unset it to search \
                 pkg-config and the system folders.",
                tidy(dir).display()
            ),
        };
    }
    let candidates = pkg_config_dir().into_iter().chain(system_dirs(settings));
    for dir in candidates {
        if let Some(found) = in_dir(&dir) {
            return Ok(Some(found));
        }
    }
    crate::fail!(
        "the `openblas` feature needs OpenBLAS's shared library, and none was found through \
         pkg-config or in the system library folders. Install it:\n    \
         sudo apt-get install libopenblas-dev      (Debian, Ubuntu)\n    \
         sudo dnf install openblas-devel           (Fedora, RHEL)\n\
         or set MLX_SYS_OPENBLAS_DIR to the folder holding libopenblas.so, or build without \
         the `openblas` feature to keep the wheel's bundled (slow) BLAS."
    )
}

/// Emits the link directives. They come before libmlx's so that, even in
/// link orders where it matters, OpenBLAS is the earlier NEEDED entry.
pub fn emit(settings: &Settings, blas: &OpenBlas) -> Result<(), Failure> {
    let search = search_dir(settings, &blas.dir)?;
    println!("cargo:rustc-link-search=native={}", search.display());
    if blas.link_name == "openblas" {
        println!("cargo:rustc-link-lib=dylib=openblas");
    } else {
        println!("cargo:rustc-link-lib=dylib:+verbatim={}", blas.link_name);
    }
    // rustc links with --as-needed, and the `-as-needed` modifier is
    // nightly-only: src/lib.rs references an OpenBLAS symbol under this cfg
    // so that the linker keeps libopenblas.
    println!("cargo:rustc-cfg=mlx_sys_openblas");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", blas.dir.display());
    println!("cargo:openblas_dir={}", blas.dir.display());
    Ok(())
}

fn in_dir(dir: &Path) -> Option<OpenBlas> {
    let dir = tidy(dir);
    if dir.join("libopenblas.so").exists() {
        return Some(OpenBlas {
            dir,
            link_name: "openblas".into(),
        });
    }
    if dir.join("libopenblas.so.0").exists() {
        return Some(OpenBlas {
            dir,
            link_name: "libopenblas.so.0".into(),
        });
    }
    None
}

fn pkg_config_dir() -> Option<PathBuf> {
    let out = Command::new("pkg-config")
        .args(["--variable=libdir", "openblas"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Debian puts the pthread build first among its OpenBLAS variants; the
/// plain multiarch folder holds whichever `update-alternatives` selected.
fn system_dirs(settings: &Settings) -> Vec<PathBuf> {
    let arch = settings.target.split('-').next().unwrap_or("x86_64");
    let multiarch = format!("/usr/lib/{arch}-linux-gnu");
    vec![
        PathBuf::from(format!("{multiarch}/openblas-pthread")),
        PathBuf::from(format!("{multiarch}/openblas-openmp")),
        PathBuf::from(format!("{multiarch}/openblas-serial")),
        PathBuf::from(&multiarch),
        PathBuf::from("/usr/lib64"),
        PathBuf::from("/usr/lib"),
        PathBuf::from("/usr/local/lib"),
        PathBuf::from("/opt/OpenBLAS/lib"),
    ]
}

/// A folder outside the loader's default paths is reached through a symlink
/// inside `OUT_DIR`, which cargo adds to the library path of `cargo run` and
/// `cargo test`; system folders are linked as they are, since putting them
/// on that path would shadow the loader's own choices.
fn search_dir(settings: &Settings, dir: &Path) -> Result<PathBuf, Failure> {
    if dir.starts_with("/usr") {
        return Ok(dir.to_path_buf());
    }
    #[cfg(unix)]
    {
        let link = settings.out_dir.join("openblas-lib");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(dir, &link).map_err(|e| {
            Failure(format!(
                "cannot link {} to {}: {e}",
                link.display(),
                dir.display()
            ))
        })?;
        return Ok(link);
    }
    #[allow(unreachable_code)]
    {
        let _ = settings;
        Ok(dir.to_path_buf())
    }
}
