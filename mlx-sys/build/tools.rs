//! Build tools: cmake and libclang, from the machine or from PyPI.
//!
//! A fresh machine with Rust and Python has neither. Rather than stop with an
//! install hint, the build installs the pinned PyPI wheels (`cmake`,
//! `libclang`) into the same cache as MLX; with `MLX_SYS_OFFLINE` it stops
//! with the exact command that installs them instead.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use crate::settings::Settings;
use crate::{Failure, pip};

const INSTALL_CMAKE: &str = "Alternatively, install cmake 3.16 or newer yourself (Debian/Ubuntu: \
    `sudo apt-get install cmake`; macOS: `brew install cmake`), or set CMAKE to its path.";
const INSTALL_LIBCLANG: &str = "Alternatively, install libclang yourself (Debian/Ubuntu: \
    `sudo apt-get install libclang-dev`; macOS: `xcode-select --install`), or set \
    LIBCLANG_PATH to the folder holding it.";
/// mlx-c's CMakeLists.txt needs this version.
const CMAKE_MINIMUM: (u32, u32) = (3, 16);

/// The cmake program to run.
pub fn cmake(settings: &Settings) -> Result<PathBuf, Failure> {
    if let Some(cmake) = env::var_os("CMAKE") {
        let cmake = PathBuf::from(cmake);
        return match cmake_version(&cmake) {
            Some(_) => Ok(cmake),
            None => crate::fail!("CMAKE={} does not run as cmake.", cmake.display()),
        };
    }
    let system = PathBuf::from("cmake");
    if cmake_version(&system).is_some_and(|v| v >= CMAKE_MINIMUM) {
        return Ok(system);
    }
    let root = pip::install(
        settings,
        "cmake.txt",
        "cmake (not found on PATH)",
        INSTALL_CMAKE,
    )?;
    let candidates = [
        root.join("cmake/data/bin/cmake"),
        root.join("cmake/data/CMake.app/Contents/bin/cmake"),
    ];
    match candidates.iter().find(|c| cmake_version(c).is_some()) {
        Some(found) => Ok(found.clone()),
        None => crate::fail!(
            "the cmake wheel in {} has no runnable cmake. Delete that folder to retry. {INSTALL_CMAKE}",
            root.display()
        ),
    }
}

/// `(major, minor)` of a cmake that runs.
fn cmake_version(cmake: &std::path::Path) -> Option<(u32, u32)> {
    let out = Command::new(cmake).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2)?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// What bindgen needs beyond a loaded libclang.
pub struct Clang {
    /// Extra arguments for clang (include folders).
    pub args: Vec<String>,
}

/// Loads libclang for bindgen (which reuses the library loaded on this
/// thread), installing the PyPI wheel when the machine has none.
pub fn libclang(settings: &Settings) -> Result<Clang, Failure> {
    let first_try = match clang_sys::load() {
        Ok(()) => return Ok(Clang { args: Vec::new() }),
        Err(e) => e,
    };
    if env::var_os("LIBCLANG_PATH").is_some() {
        return crate::fail!("LIBCLANG_PATH is set but libclang does not load: {first_try}");
    }
    let root = pip::install(
        settings,
        "libclang.txt",
        "libclang (not found)",
        INSTALL_LIBCLANG,
    )?;
    let dir = root.join("clang").join("native");
    // SAFETY: the build script runs on this one thread; nothing reads or
    // writes the environment concurrently.
    unsafe { env::set_var("LIBCLANG_PATH", &dir) };
    clang_sys::load().map_err(|e| {
        Failure(format!(
            "libclang from {} does not load: {e}. Delete that folder to retry. {INSTALL_LIBCLANG}",
            dir.display()
        ))
    })?;
    // The wheel holds libclang alone, without clang's own headers (stddef.h,
    // stdbool.h); the C compiler's equivalents serve for mlx-c's C headers.
    Ok(Clang {
        args: compiler_builtin_includes(),
    })
}

/// `-isystem <dir>` for the C compiler's built-in headers, if it tells.
fn compiler_builtin_includes() -> Vec<String> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(&cc).arg("-print-file-name=include").output() else {
        return Vec::new();
    };
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if dir.is_absolute() && dir.join("stddef.h").is_file() {
        vec!["-isystem".into(), dir.display().to_string()]
    } else {
        Vec::new()
    }
}
