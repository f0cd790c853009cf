//! The check of an Idefics3 or SmolVLM checkpoint's tensors against its
//! `config.json` before any module is built (Rust only: Python builds the
//! model and fails while loading, or later in a matmul): layer counts and
//! the widths the tensors fix, in the Hugging Face (`model.text_model.*`,
//! `model.vision_model.*`) and mlx-community (`language_model.*`,
//! `vision_model.*`) layouts, quantized or not.

use std::collections::BTreeMap;

use super::config::ModelConfig;
use crate::utils::TensorInfo;
use crate::{Error, Result};

/// The tower (`true`: text) of a checkpoint key and the key within it.
fn tower_key(key: &str) -> Option<(bool, &str)> {
    const PREFIXES: &[(&str, bool)] = &[
        ("model.text_model.", true),
        ("language_model.", true),
        ("model.vision_model.", false),
        ("vision_model.", false),
    ];
    PREFIXES
        .iter()
        .find_map(|(prefix, text)| key.strip_prefix(prefix).map(|rest| (*text, rest)))
}

/// Checks `tensors` against `config` (read from `file`).
pub(crate) fn check_tensors(
    config: &ModelConfig,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let (t, v) = (&config.text_config, &config.vision_config);
    let error = |message: String| Error::Config {
        file: file.to_string(),
        message,
    };
    for (name, configured, text, blocks) in [
        ("text_config.num_hidden_layers", t.num_hidden_layers, true, "layers."),
        ("vision_config.num_hidden_layers", v.num_hidden_layers, false, "encoder.layers."),
    ] {
        let found = tensors
            .keys()
            .filter_map(|key| {
                let (is_text, rest) = tower_key(key)?;
                let n: i64 = rest.strip_prefix(blocks)?.split('.').next()?.parse().ok()?;
                (is_text == text).then_some(n + 1)
            })
            .max()
            .unwrap_or(0);
        if found != i64::from(configured) {
            return Err(error(format!(
                "{name} is {configured}, but the weights hold {found} such layers; set {name} \
                 to {found} or use the config.json that came with these weights"
            )));
        }
    }
    let quantized = |key: &str| {
        key.strip_suffix(".weight")
            .is_some_and(|b| tensors.contains_key(&format!("{b}.scales")))
    };
    let sizes = [
        ("text_config.vocab_size", t.vocab_size, true, "embed_tokens.weight", 0),
        ("text_config.hidden_size", t.hidden_size, true, "embed_tokens.weight", 1),
        ("text_config.intermediate_size", t.intermediate_size, true, "layers.0.mlp.gate_proj.weight", 0),
        ("vision_config.hidden_size", v.hidden_size, false, "embeddings.patch_embedding.weight", 0),
        ("vision_config.intermediate_size", v.intermediate_size, false, "encoder.layers.0.mlp.fc1.weight", 0),
    ];
    for (name, configured, text, within, dim) in sizes {
        for (key, info) in tensors {
            if tower_key(key) != Some((text, within)) || (dim > 0 && quantized(key)) {
                continue;
            }
            let Some(&found) = info.shape.get(dim) else {
                continue;
            };
            if i64::try_from(found).ok() != Some(i64::from(configured)) {
                return Err(error(format!(
                    "{name} is {configured}, but {key} in {} has shape {:?} (dimension {dim} is \
                     {found}); set {name} to {found} or use the config.json that came with \
                     these weights",
                    info.file.display(),
                    info.shape
                )));
            }
        }
    }
    Ok(())
}
