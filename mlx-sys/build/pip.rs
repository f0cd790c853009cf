//! Wheels from PyPI through pip, verified against vendor/wheels/ hashes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::settings::Settings;
use crate::{Failure, cache};

/// Installs the wheels pinned in `vendor/wheels/<pin_name>` (once per user
/// and target) and returns the folder holding them, laid out as pip's
/// `--target` lays them out (so `mlx/lib` and `mlx_cpu.libs` keep their
/// relative places). `purpose` and `instead` go into error messages.
pub fn install(
    settings: &Settings,
    pin_name: &str,
    purpose: &str,
    instead: &str,
) -> Result<PathBuf, Failure> {
    let pin = settings.pin_file(pin_name);
    let entry = cache::entry(settings, &pin)?;
    if entry.is_dir() {
        return Ok(entry);
    }
    if settings.offline {
        return crate::fail!(
            "{purpose} is not in the cache ({}) and MLX_SYS_OFFLINE forbids downloads: build once without it to fill the cache. {instead}",
            entry.display()
        );
    }
    if !settings.can_use_host_wheels() {
        return crate::fail!(
            "{purpose}: pip installs wheels for the host ({}), not for the target {}. {instead}",
            settings.host,
            settings.target
        );
    }
    cache::fill_once(&entry, |tmp| run_pip(settings, &pin, tmp, purpose, instead))?;
    Ok(entry)
}

fn run_pip(
    settings: &Settings,
    pin: &Path,
    target: &Path,
    purpose: &str,
    instead: &str,
) -> Result<(), Failure> {
    // stderr, not a cargo warning: cargo would replay a warning on every build.
    eprintln!(
        "mlx-sys: installing {purpose} from PyPI into {}",
        target.display()
    );
    let status = Command::new(&settings.python)
        .args(["-m", "pip", "install", "--require-hashes", "--no-deps"])
        .args([
            "--only-binary=:all:",
            "--ignore-requires-python",
            "--no-compile",
        ])
        .args([
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--quiet",
        ])
        .arg("--target")
        .arg(target)
        .arg("-r")
        .arg(pin)
        // pip writes progress to stdout; cargo must only see its own lines there.
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => crate::fail!(
            "pip could not install {purpose} ({s}) from the pins in {}; its messages are above. \
             Check that PyPI (or PIP_INDEX_URL) is reachable. {instead}",
            pin.display()
        ),
        Err(e) => crate::fail!(
            "cannot run `{} -m pip` to install {purpose}: {e}. Install Python 3 with pip \
             (Debian/Ubuntu: `sudo apt-get install python3-pip`; macOS: `brew install python`), \
             or set MLX_SYS_PYTHON to a Python that has pip. {instead}",
            settings.python
        ),
    }
}
