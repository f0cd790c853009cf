//! The build script stops with a message that names the culprit and the fix
//! when it is given bad settings, rather than panicking or half-building.
//!
//! Each case runs `cargo build -p mlx-sys` in a target folder of its own (the
//! outer `cargo test` holds the main one), so the build script is compiled
//! once there and each case only re-runs it with other variables.

use std::path::{Path, PathBuf};
use std::process::Command;

const WORKSPACE_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");

/// Variables the build script reads; each case starts with none of them set.
const BUILD_VARIABLES: &[&str] = &[
    "MLX_DIR",
    "MLX_C_DIR",
    "MLX_SYS_OFFLINE",
    "MLX_SYS_CACHE_DIR",
    "CARGO_NET_OFFLINE",
    "CMAKE",
    "CARGO_TARGET_DIR",
    "MLX_SYS_OPENBLAS_DIR",
];

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("build-errors")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Builds mlx-sys with `vars` set and returns its stderr, requiring failure.
fn failing_build(vars: &[(&str, &str)], path: Option<&str>) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-p",
            "mlx-sys",
            "--manifest-path",
            WORKSPACE_MANIFEST,
        ])
        .arg("--target-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-errors-target"));
    for var in BUILD_VARIABLES {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let output = command.output().expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "the build succeeded with {vars:?}:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "the build script panicked:\n{stderr}"
    );
    stderr
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    }
}

/// The MLX prefix the main build used: `MLX_DIR`, or the cached wheel.
fn cached_mlx_prefix() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MLX_DIR") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("MLX_SYS_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME")?);
            Some(if cfg!(target_os = "macos") {
                home.join("Library/Caches/mlx-sys")
            } else {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or(home.join(".cache"))
                    .join("mlx-sys")
            })
        })?;
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path().join("mlx"))
        .find(|p| p.join("share/cmake/MLX/MLXConfig.cmake").is_file())
}

/// PATH without the folders that hold a `cmake` program.
fn path_without_cmake() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("cmake").exists())
        .collect();
    std::env::join_paths(kept)
        .expect("PATH entries join")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn bad_build_settings_fail_with_the_fix_in_the_message() {
    // An MLX_DIR that is not an MLX prefix.
    let not_mlx = scratch("not-mlx");
    let stderr = failing_build(&[("MLX_DIR", not_mlx.to_str().unwrap())], None);
    assert_mentions(
        &stderr,
        &[
            &format!("MLX_DIR={}", not_mlx.display()),
            "share/cmake/MLX/MLXConfig.cmake",
        ],
    );

    // An MLX_C_DIR that is not an mlx-c tree.
    let not_mlx_c = scratch("not-mlx-c");
    let stderr = failing_build(&[("MLX_C_DIR", not_mlx_c.to_str().unwrap())], None);
    assert_mentions(&stderr, &["is not an mlx-c 0.7.0 source tree", "MLX_C_DIR"]);

    // Offline with an empty cache: nothing may be downloaded.
    let empty_cache = scratch("empty-cache");
    let stderr = failing_build(
        &[
            ("MLX_SYS_OFFLINE", "1"),
            ("MLX_SYS_CACHE_DIR", empty_cache.to_str().unwrap()),
        ],
        None,
    );
    assert_mentions(
        &stderr,
        &["MLX_SYS_OFFLINE forbids downloads", "set MLX_DIR"],
    );

    // Offline without cmake: the message names the install commands.
    let prefix = cached_mlx_prefix().expect("the main build cached an MLX wheel");
    let stderr = failing_build(
        &[
            ("MLX_SYS_OFFLINE", "1"),
            ("MLX_SYS_CACHE_DIR", empty_cache.to_str().unwrap()),
            ("MLX_DIR", prefix.to_str().unwrap()),
        ],
        Some(&path_without_cmake()),
    );
    assert_mentions(
        &stderr,
        &["sudo apt-get install cmake", "brew install cmake"],
    );
}

#[test]
fn an_openblas_dir_without_openblas_fails_with_the_fix_in_the_message() {
    let empty = scratch("no-openblas");
    let stderr = failing_build(&[("MLX_SYS_OPENBLAS_DIR", empty.to_str().unwrap())], None);
    let expected = if cfg!(target_os = "linux") {
        vec![
            format!("MLX_SYS_OPENBLAS_DIR={}", empty.display()),
            "neither libopenblas.so nor libopenblas.so.0".to_string(),
        ]
    } else {
        vec!["the `openblas` feature is for Linux".to_string()]
    };
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_mentions(&stderr, &expected);
}
