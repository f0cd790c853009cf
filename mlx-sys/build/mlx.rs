//! The MLX library: `MLX_DIR`, or the pinned PyPI wheel.

use std::fs;
use std::path::{Path, PathBuf};

use crate::settings::{MLX_VERSION, Settings, tidy};
use crate::{Failure, pip};

/// An MLX installation usable by CMake and the linker.
pub struct Mlx {
    /// Install prefix: holds `include/`, `lib/` and `share/cmake/MLX/`.
    pub prefix: PathBuf,
    /// `prefix/lib`, where `libmlx` lies.
    pub lib_dir: PathBuf,
    /// The version its CMake package reports.
    pub version: String,
}

impl Mlx {
    /// `share/cmake/MLX`, for CMake's `MLX_DIR`.
    pub fn cmake_dir(&self) -> PathBuf {
        self.prefix.join("share").join("cmake").join("MLX")
    }
}

/// Finds MLX: the user's `MLX_DIR`, or the wheel for this platform.
pub fn locate(settings: &Settings) -> Result<Mlx, Failure> {
    if let Some(dir) = &settings.mlx_dir {
        let mlx = from_prefix(find_prefix(dir)?)?;
        if mlx.version != MLX_VERSION {
            println!(
                "cargo:warning=mlx-sys: MLX_DIR holds MLX {}, but mlx-c 0.7.0 is pinned to MLX {MLX_VERSION}; \
                 other versions may fail to compile or misbehave",
                mlx.version
            );
        }
        return Ok(mlx);
    }
    let pin = wheel_pin(settings)?;
    let root = pip::install(
        settings,
        pin,
        &format!("MLX {MLX_VERSION} ({})", pin.trim_end_matches(".txt")),
        "Alternatively, set MLX_DIR to an MLX install prefix (one holding share/cmake/MLX).",
    )?;
    from_prefix(root.join("mlx"))
}

/// The pin file of the wheel that carries libmlx for this target.
fn wheel_pin(settings: &Settings) -> Result<&'static str, Failure> {
    match (settings.target_os.as_str(), settings.cuda) {
        ("linux", false) => Ok("mlx-cpu.txt"),
        ("linux", true) => Ok("mlx-cuda-13.txt"),
        ("macos", false) => Ok("mlx-metal.txt"),
        ("macos", true) => crate::fail!(
            "the `cuda` feature is for Linux; on macOS MLX uses Metal. Build without `--features cuda`."
        ),
        (os, _) => crate::fail!(
            "PyPI has no MLX {MLX_VERSION} wheel that mlx-sys can use on `{os}`. Build MLX from \
             source and set MLX_DIR to its install prefix."
        ),
    }
}

/// Accepts an install prefix, its `share/cmake/MLX` folder, or a folder
/// holding an `mlx/` prefix (a wheel's root or a Python site-packages).
fn find_prefix(dir: &Path) -> Result<PathBuf, Failure> {
    let has_config = |d: &Path| d.join("share/cmake/MLX/MLXConfig.cmake").is_file();
    if has_config(dir) {
        return Ok(dir.to_path_buf());
    }
    if dir.join("MLXConfig.cmake").is_file()
        && let Some(prefix) = dir.ancestors().nth(3)
    {
        return Ok(prefix.to_path_buf());
    }
    if has_config(&dir.join("mlx")) {
        return Ok(dir.join("mlx"));
    }
    crate::fail!(
        "MLX_DIR={} holds no MLX CMake package: expected share/cmake/MLX/MLXConfig.cmake under it. \
         Point MLX_DIR at the prefix MLX was installed into (for example the `mlx` folder of a \
         Python site-packages, or /opt/homebrew).",
        dir.display()
    )
}

fn from_prefix(prefix: PathBuf) -> Result<Mlx, Failure> {
    let prefix = tidy(&prefix);
    let lib_dir = prefix.join("lib");
    let version_file = prefix.join("share/cmake/MLX/MLXConfigVersion.cmake");
    let text = fs::read_to_string(&version_file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", version_file.display())))?;
    let version = package_version(&text)
        .ok_or_else(|| Failure(format!("no PACKAGE_VERSION in {}", version_file.display())))?;
    Ok(Mlx {
        prefix,
        lib_dir,
        version,
    })
}

/// The value of `set(PACKAGE_VERSION "x.y.z")` in a CMake version file.
fn package_version(cmake_text: &str) -> Option<String> {
    let start = cmake_text.find("set(PACKAGE_VERSION \"")? + "set(PACKAGE_VERSION \"".len();
    let len = cmake_text[start..].find('"')?;
    Some(cmake_text[start..start + len].to_string())
}
