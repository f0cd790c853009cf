//! The check of a PaliGemma or Gemma 3 checkpoint's tensors against its
//! `config.json` before any module is built (Rust only: Python builds the
//! model and fails while loading, or later in a matmul): layer counts and
//! the widths the tensors fix, in the Hugging Face, transformers-5 and
//! mlx-community layouts, quantized or not.

use std::collections::BTreeMap;

use crate::utils::TensorInfo;
use crate::{Error, Result};

/// Which tower a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tower {
    /// The Gemma decoder (`language_model.model.*`).
    Text,
    /// SigLIP (`vision_tower.vision_model.*`).
    Vision,
}

/// The tower of a checkpoint key and the key within it, in any layout.
fn tower_key(key: &str) -> Option<(Tower, &str)> {
    const PREFIXES: &[(&str, Tower)] = &[
        ("model.language_model.model.", Tower::Text),
        ("model.language_model.", Tower::Text),
        ("language_model.model.", Tower::Text),
        ("model.vision_tower.vision_model.", Tower::Vision),
        ("vision_tower.vision_model.", Tower::Vision),
    ];
    PREFIXES
        .iter()
        .find_map(|(prefix, tower)| key.strip_prefix(prefix).map(|rest| (*tower, rest)))
}

/// One more than the largest `N` of `<blocks>.N.` keys of `tower`, with
/// that key, or `None` when there are none.
fn block_count<'a>(
    tensors: &'a BTreeMap<String, TensorInfo>,
    tower: Tower,
    blocks: &str,
) -> Option<(u64, &'a str)> {
    tensors
        .keys()
        .filter_map(|key| {
            let (t, rest) = tower_key(key)?;
            let index = rest.strip_prefix(blocks)?.strip_prefix('.')?;
            let n: u64 = index.split('.').next()?.parse().ok()?;
            (t == tower).then_some((n + 1, key.as_str()))
        })
        .max_by_key(|(n, _)| *n)
}

/// A size the tensors fix: (config key, configured value, tower, tensor
/// within the tower, dimension).
pub(crate) type SizeCheck<'a> = (&'a str, i32, Tower, &'a str, usize);

/// Checks `tensors` against the configuration `file`: `text_layers`
/// decoder layers, `vision_layers` SigLIP layers and each of `sizes`.
/// `model` names the family in messages.
pub(crate) fn check_gemma_tensors(
    tensors: &BTreeMap<String, TensorInfo>,
    file: &str,
    model: &str,
    text_layers: i32,
    vision_layers: i32,
    sizes: &[SizeCheck<'_>],
) -> Result<()> {
    let config_error = |message: String| Error::Config {
        file: file.to_string(),
        message,
    };
    let counts = [
        (
            "text_config.num_hidden_layers",
            text_layers,
            block_count(tensors, Tower::Text, "layers"),
            "decoder layers",
        ),
        (
            "vision_config.num_hidden_layers",
            vision_layers,
            block_count(tensors, Tower::Vision, "encoder.layers"),
            "SigLIP layers",
        ),
    ];
    for (name, configured, found, what) in counts {
        let (count, example) = found.unwrap_or((0, "none"));
        if i64::try_from(count).ok() != Some(i64::from(configured)) {
            return Err(config_error(format!(
                "{name} is {configured}, but the {model} weights hold {count} {what} \
                 (highest key: {example}); set {name} to {count} or use the config.json \
                 that came with these weights"
            )));
        }
    }
    // A quantized weight's packed columns say nothing about the width.
    let quantized = |key: &str| {
        key.strip_suffix(".weight")
            .is_some_and(|b| tensors.contains_key(&format!("{b}.scales")))
    };
    for &(name, configured, tower, within, dim) in sizes {
        for (key, info) in tensors {
            if tower_key(key) != Some((tower, within)) || (dim > 0 && quantized(key)) {
                continue;
            }
            let Some(&found) = info.shape.get(dim) else {
                continue;
            };
            if i64::try_from(found).ok() != Some(i64::from(configured)) {
                return Err(config_error(format!(
                    "{name} is {configured}, but {key} in {} has shape {:?} (dimension {dim} \
                     is {found}); set {name} to {found} or use the config.json that came \
                     with these weights",
                    info.file.display(),
                    info.shape
                )));
            }
        }
    }
    Ok(())
}
