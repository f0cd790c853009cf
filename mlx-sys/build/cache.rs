//! The per-user cache of unpacked wheels: one folder per pin file, content
//! and target, filled atomically so that concurrent builds never see half a
//! folder.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Failure;
use crate::settings::Settings;

/// The cache folder for `pin` (a file under vendor/wheels/) on this target.
/// Its name carries a digest of the pin file, so a new pin never reuses an
/// old folder.
pub fn entry(settings: &Settings, pin: &Path) -> Result<PathBuf, Failure> {
    let text = fs::read(pin)
        .map_err(|e| Failure(format!("cannot read the pin file {}: {e}", pin.display())))?;
    let stem = pin.file_stem().and_then(|s| s.to_str()).unwrap_or("pin");
    Ok(settings.cache_dir.join(format!(
        "{stem}-{:016x}-{}",
        fnv1a64(&text),
        settings.target
    )))
}

/// Fills `entry` with `fill(tmp)` unless it already exists. `fill` writes a
/// private temporary folder that is then renamed into place.
pub fn fill_once(
    entry: &Path,
    fill: impl FnOnce(&Path) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if entry.is_dir() {
        return Ok(());
    }
    let parent = entry.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| {
        Failure(format!(
            "cannot create the cache folder {}: {e}. Set MLX_SYS_CACHE_DIR to a writable folder.",
            parent.display()
        ))
    })?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("entry"),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    let filled = fill(&tmp);
    if filled.is_ok() && fs::rename(&tmp, entry).is_ok() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(&tmp);
    filled?;
    // The rename failed because another build finished the same entry first.
    if entry.is_dir() {
        Ok(())
    } else {
        crate::fail!("cannot move the new cache folder into {}", entry.display())
    }
}

/// FNV-1a, 64 bits: a cache key, not an integrity check (pip checks sha256).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
