//! What the build reads from its environment, read once.

use std::env;
use std::path::{Path, PathBuf};

use crate::Failure;

/// The MLX version this crate pins (vendor/wheels/mlx-*.txt).
pub const MLX_VERSION: &str = "0.32.2";
/// The mlx-c version this crate pins (vendor/mlx-c/Cargo.toml).
pub const MLX_C_VERSION: &str = "0.7.0";

/// Environment variables the user may set; a change to any re-runs the build.
const USER_VARIABLES: &[&str] = &[
    "MLX_DIR",
    "MLX_C_DIR",
    "MLX_SYS_OFFLINE",
    "MLX_SYS_CACHE_DIR",
    "MLX_SYS_PYTHON",
    "MLX_SYS_OPENBLAS_DIR",
    "CARGO_NET_OFFLINE",
    "CMAKE",
    "LIBCLANG_PATH",
    "CXX",
    "CXXFLAGS",
];

/// Everything the build steps need to know, read from cargo and the user.
pub struct Settings {
    /// `OUT_DIR` of this build.
    pub out_dir: PathBuf,
    /// The workspace's `vendor/` folder holding the pins.
    pub vendor_dir: PathBuf,
    /// This crate's folder.
    pub manifest_dir: PathBuf,
    /// `MLX_DIR`: an MLX install prefix holding `share/cmake/MLX`.
    pub mlx_dir: Option<PathBuf>,
    /// `MLX_C_DIR`: an mlx-c source tree.
    pub mlx_c_dir: Option<PathBuf>,
    /// `MLX_SYS_OFFLINE=1` (or `CARGO_NET_OFFLINE=true`): download nothing.
    pub offline: bool,
    /// Where downloaded wheels are unpacked, shared by every build of the user.
    pub cache_dir: PathBuf,
    /// The Python interpreter that runs pip.
    pub python: String,
    /// The `cuda` feature.
    pub cuda: bool,
    /// The `openblas` feature, or `MLX_SYS_OPENBLAS_DIR` set: link OpenBLAS
    /// ahead of the wheel's bundled BLAS.
    pub openblas: bool,
    /// `MLX_SYS_OPENBLAS_DIR`: the folder holding `libopenblas.so`.
    pub openblas_dir: Option<PathBuf>,
    /// `CARGO_CFG_TARGET_OS`.
    pub target_os: String,
    /// `TARGET`, the Rust target triple.
    pub target: String,
    /// `HOST`, the Rust host triple.
    pub host: String,
    /// How many jobs cargo allows (`NUM_JOBS`).
    pub jobs: String,
    /// The `cargo` that runs this build.
    pub cargo: String,
}

impl Settings {
    /// Reads cargo's variables and the user's.
    pub fn from_env() -> Result<Self, Failure> {
        let manifest_dir = PathBuf::from(required("CARGO_MANIFEST_DIR")?);
        let offline = flag("MLX_SYS_OFFLINE") || flag("CARGO_NET_OFFLINE");
        let openblas_dir = path_var("MLX_SYS_OPENBLAS_DIR");
        Ok(Settings {
            out_dir: PathBuf::from(required("OUT_DIR")?),
            vendor_dir: manifest_dir.join("..").join("vendor"),
            mlx_dir: path_var("MLX_DIR"),
            mlx_c_dir: path_var("MLX_C_DIR"),
            offline,
            cache_dir: cache_dir()?,
            python: env::var("MLX_SYS_PYTHON").unwrap_or_else(|_| "python3".into()),
            cuda: env::var_os("CARGO_FEATURE_CUDA").is_some(),
            openblas: env::var_os("CARGO_FEATURE_OPENBLAS").is_some() || openblas_dir.is_some(),
            openblas_dir,
            target_os: required("CARGO_CFG_TARGET_OS")?,
            target: required("TARGET")?,
            host: required("HOST")?,
            jobs: env::var("NUM_JOBS").unwrap_or_else(|_| "2".into()),
            cargo: env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            manifest_dir,
        })
    }

    /// Tells cargo exactly what this build depends on, so that a build with
    /// nothing changed runs neither pip nor CMake.
    pub fn emit_rerun_triggers(&self) {
        for var in USER_VARIABLES {
            println!("cargo:rerun-if-env-changed={var}");
        }
        for path in [
            self.manifest_dir.join("build"),
            self.manifest_dir.join("compat"),
            self.vendor_dir.join("mlx-c").join("Cargo.toml"),
            self.vendor_dir.join("mlx-c").join("Cargo.lock"),
            self.vendor_dir.join("wheels"),
        ] {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        if let Some(dir) = &self.mlx_c_dir {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }

    /// The hash-pinned requirement file `vendor/wheels/<name>`.
    pub fn pin_file(&self, name: &str) -> PathBuf {
        self.vendor_dir.join("wheels").join(name)
    }

    /// Whether pip may install wheels for this build: only for the host's own
    /// platform, since pip picks wheels for the machine it runs on.
    pub fn can_use_host_wheels(&self) -> bool {
        self.target == self.host
    }
}

fn required(name: &str) -> Result<String, Failure> {
    env::var(name).map_err(|_| Failure(format!("cargo did not set {name}")))
}

fn flag(name: &str) -> bool {
    matches!(
        env::var(name)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

fn path_var(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `MLX_SYS_CACHE_DIR`, else the platform's per-user cache folder.
fn cache_dir() -> Result<PathBuf, Failure> {
    if let Some(dir) = path_var("MLX_SYS_CACHE_DIR") {
        return Ok(dir);
    }
    let home = path_var("HOME");
    // The host decides where caches live, not the target.
    let base = if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library").join("Caches"))
    } else {
        path_var("XDG_CACHE_HOME").or_else(|| home.map(|h| h.join(".cache")))
    };
    match base {
        Some(base) => Ok(base.join("mlx-sys")),
        None => crate::fail!(
            "cannot tell where to cache MLX: HOME is unset. Set MLX_SYS_CACHE_DIR to a writable folder."
        ),
    }
}

/// `path` with `..` resolved where it exists, for readable messages.
pub fn tidy(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
