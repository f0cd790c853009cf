//! CMake build of mlx-c as a static library against the located MLX.
//!
//! cmake is run directly rather than through the `cmake` crate: the program
//! may be one this script installed (the crate only reads `$CMAKE` from the
//! environment), and mlx-c must be built optimised whatever cargo's profile,
//! without the flags cc-rs derives from that profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Failure;
use crate::mlx::Mlx;
use crate::settings::Settings;

/// Configures and builds mlx-c; returns the folder holding `libmlxc.a`.
pub fn build_mlx_c(
    settings: &Settings,
    cmake: &Path,
    mlx_c: &Path,
    mlx: &Mlx,
) -> Result<PathBuf, Failure> {
    let build_dir = settings.out_dir.join("mlx-c-build");
    let compat = settings.manifest_dir.join("compat");
    // `-include` supplies std::format where the C++ library lacks it
    // (libstdc++ before GCC 13; a no-op elsewhere), and makes mlx-c print
    // exception messages through "%s" instead of using them as the printf
    // format (compat/mlx_error_format.h says why).
    let mut cxx_flags = format!(
        "-include \"{}\" -include \"{}\"",
        compat.join("std_format.h").display(),
        compat.join("mlx_error_format.h").display()
    );
    if let Ok(user) = std::env::var("CXXFLAGS") {
        cxx_flags = format!("{user} {cxx_flags}");
    }
    let configure = || {
        let mut configure = Command::new(cmake);
        configure_arguments(settings, mlx_c, mlx, &build_dir, &cxx_flags, &mut configure);
        configure
    };
    if run(configure(), "configure mlx-c").is_err() {
        // A build folder left by an interrupted configure can keep failing;
        // start it afresh once before giving up.
        eprintln!(
            "mlx-sys: configuring again in a fresh {}",
            build_dir.display()
        );
        let _ = std::fs::remove_dir_all(&build_dir);
        run(configure(), "configure mlx-c")?;
    }

    let mut build = Command::new(cmake);
    build.arg("--build").arg(&build_dir).args([
        "--config",
        "Release",
        "--parallel",
        &settings.jobs,
    ]);
    run(build, "build mlx-c")?;

    let lib = if settings.target_os == "windows" {
        "mlxc.lib"
    } else {
        "libmlxc.a"
    };
    match [build_dir.clone(), build_dir.join("Release")]
        .into_iter()
        .find(|d| d.join(lib).is_file())
    {
        Some(dir) => Ok(dir),
        None => crate::fail!(
            "the mlx-c build finished without {lib} under {}",
            build_dir.display()
        ),
    }
}

fn configure_arguments(
    settings: &Settings,
    mlx_c: &Path,
    mlx: &Mlx,
    build_dir: &Path,
    cxx_flags: &str,
    configure: &mut Command,
) {
    configure
        .arg("-S")
        .arg(mlx_c)
        .arg("-B")
        .arg(build_dir)
        .arg("-DCMAKE_BUILD_TYPE=Release")
        .arg("-DBUILD_SHARED_LIBS=OFF")
        .arg("-DMLX_C_BUILD_EXAMPLES=OFF")
        .arg("-DMLX_C_USE_SYSTEM_MLX=ON")
        .arg(format!("-DMLX_DIR={}", mlx.cmake_dir().display()))
        .arg(format!("-DCMAKE_CXX_FLAGS={cxx_flags}"));
    if settings.target_os == "macos" {
        configure.arg("-DCMAKE_OSX_ARCHITECTURES=arm64");
    }
    if settings.cuda {
        cuda_arguments(settings, mlx, configure);
    }
}

/// MLX's CMake package requires the CUDA toolkit and cuDNN when MLX was built
/// with CUDA. mlx-c needs neither, so a stand-in find module accepts a
/// machine without the toolkit, and cuDNN is looked for in the NVIDIA wheels
/// installed beside MLX (`<root>/nvidia/cudnn`).
fn cuda_arguments(settings: &Settings, mlx: &Mlx, configure: &mut Command) {
    let modules = settings.manifest_dir.join("compat").join("cmake");
    configure.arg(format!("-DCMAKE_MODULE_PATH={}", modules.display()));
    if let Some(cudnn) = mlx
        .prefix
        .parent()
        .map(|root| root.join("nvidia").join("cudnn"))
        && cudnn.join("include").join("cudnn.h").is_file()
    {
        configure.arg(format!(
            "-DCUDNN_INCLUDE_PATH={}",
            cudnn.join("include").display()
        ));
        configure.arg(format!(
            "-DCUDNN_LIBRARY_PATH={}",
            cudnn.join("lib").display()
        ));
    }
}

fn run(mut command: Command, what: &str) -> Result<(), Failure> {
    // cmake's output goes to stderr, since cargo reads stdout for directives;
    // cargo shows it when the build fails.
    let output = command
        .output()
        .map_err(|e| Failure(format!("cannot {what}: {e}")))?;
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(())
    } else {
        crate::fail!(
            "could not {what} ({}); CMake's messages are above. A C++20 compiler is needed \
             (GCC 12 or newer, or Apple clang 15 or newer).",
            output.status
        )
    }
}
