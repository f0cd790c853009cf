//! Saving a converted checkpoint: the saving half of Python's
//! `mlx_vlm/utils.py` (`skip_multimodal_module`, `make_shards`,
//! `create_model_card`, `save_weights`, `save_config`), in that order.
//!
//! Divergences from Python:
//!
//! - [`save_weights`] takes the weights sorted by key (Python: the model's
//!   attribute order), so in a checkpoint of more than one shard the
//!   tensors are spread over the shards differently; the index maps each
//!   key to its shard either way. A first tensor larger than a shard does
//!   not leave an empty first shard as Python's `make_shards` does.
//! - JSON is written as Python writes it ([`super::python_json`]), but
//!   the key order of `config.json`'s objects is the caller's to give
//!   ([`KeyOrder`]: `serde_json::Value` keeps none).
//! - Each shard's tensors are bit-identical to Python's, but the file's
//!   header lists them in another order, so the files' bytes differ.
//! - [`create_model_card`] writes the card's metadata itself (Python uses
//!   `huggingface_hub.ModelCard`); for a hub repository it does not read
//!   the original card, so only `base_model` is carried over.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use mlx_rs::Array;
use serde_json::{Value, json};

use super::python_json::{KeyOrder, dumps};

use crate::{Error, Result};

/// The largest shard, in GiB (Python: `MAX_FILE_SIZE_GB`).
pub const MAX_FILE_SIZE_GB: u64 = 5;

/// The dtypes `convert --dtype` casts to (Python:
/// `MODEL_CONVERSION_DTYPES`).
pub const MODEL_CONVERSION_DTYPES: [&str; 3] = ["float16", "bfloat16", "float32"];

/// Module path fragments of the vision and audio towers and projectors,
/// which `convert` leaves in float (Python: the list in
/// `skip_multimodal_module`).
pub const MULTIMODAL_MODULES: [&str; 12] = [
    "vision",
    "aligner",
    "vision_model",
    "vision_tower",
    "vl_connector",
    "sam_model",
    "audio_model",
    "audio_tower",
    "code_predictor",
    "img_projector",
    "multi_modal_projector",
    "patch_merge_mlp",
];

/// Whether the module at `path` belongs to a vision or audio tower or a
/// projector, which quantization skips (Python: `skip_multimodal_module`:
/// a substring match, so `embed_vision` counts).
pub fn skip_multimodal_module(path: &str) -> bool {
    MULTIMODAL_MODULES.iter().any(|m| path.contains(m))
}

/// The weights split into shards of at most `max_file_size_gb` GiB each,
/// in the order given (Python: `make_shards`).
pub fn make_shards(
    weights: Vec<(String, Array)>,
    max_file_size_gb: u64,
) -> Vec<Vec<(String, Array)>> {
    let max_bytes = max_file_size_gb << 30;
    let mut shards = Vec::new();
    let mut shard = Vec::new();
    let mut shard_size = 0u64;
    for (key, value) in weights {
        let bytes = value.nbytes() as u64;
        if !shard.is_empty() && shard_size + bytes > max_bytes {
            shards.push(std::mem::take(&mut shard));
            shard_size = 0;
        }
        shard.push((key, value));
        shard_size += bytes;
    }
    shards.push(shard);
    shards
}

/// Writes the model card `README.md` into `path` (Python:
/// `create_model_card`): library `mlx`, pipeline `image-text-to-text`,
/// tag `mlx`, and `base_model` when converted from the hub repository
/// `hf_repo`.
pub fn create_model_card(path: &Path, hf_repo: Option<&str>) -> Result<()> {
    let mut card = String::from("---\n");
    if let Some(repo) = hf_repo {
        card.push_str(&format!("base_model: {repo}\n"));
    }
    card.push_str("language: en\nlibrary_name: mlx\npipeline_tag: image-text-to-text\n");
    card.push_str("tags:\n- mlx\n---\n");
    let file = path.join("README.md");
    fs::write(&file, card).map_err(|e| Error::io(&file, e))
}

/// Writes `weights` into `save_path` as `model.safetensors`, or
/// `model-00001-of-0000N.safetensors` ... when they take more than one
/// shard of [`MAX_FILE_SIZE_GB`], each with the metadata `format: mlx`,
/// and `model.safetensors.index.json` (total size and the shard of every
/// key, sorted) (Python: `save_weights`). `on_shard(i, n, file)` is called
/// before each shard is written. Creates `save_path` if needed.
pub fn save_weights(
    save_path: &Path,
    weights: BTreeMap<String, Array>,
    on_shard: &mut dyn FnMut(usize, usize, &str),
) -> Result<()> {
    fs::create_dir_all(save_path).map_err(|e| Error::io(save_path, e))?;
    let total_size: u64 = weights.values().map(|v| v.nbytes() as u64).sum();
    let shards = make_shards(weights.into_iter().collect(), MAX_FILE_SIZE_GB);
    let count = shards.len();
    let metadata: HashMap<String, String> = [("format".to_string(), "mlx".to_string())].into();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let name = if count > 1 {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        } else {
            "model.safetensors".to_string()
        };
        on_shard(i, count, &name);
        for (key, _) in &shard {
            weight_map.insert(key.clone(), name.clone());
        }
        let file = save_path.join(&name);
        mlx_rs::io::save_safetensors(&file, shard, Some(&metadata)).map_err(|e| {
            Error::Weights {
                path: file.display().to_string(),
                message: format!("could not write the converted weights: {e}"),
            }
        })?;
    }
    let index = json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
    let order = KeyOrder::of_keys(&["metadata", "weight_map"]);
    write_json(
        &save_path.join("model.safetensors.index.json"),
        &index,
        &order,
    )
}

/// Writes the model configuration to `config_path` without
/// `_name_or_path` and `torch_dtype`, its top-level keys sorted (Python:
/// `save_config`); nested objects keep the key order `order` gives (the
/// Python dict's: see [`KeyOrder`]).
pub fn save_config(config: &Value, config_path: &Path, order: &KeyOrder) -> Result<()> {
    let Value::Object(map) = config else {
        return Err(Error::Config {
            file: config_path.display().to_string(),
            message: "expected a JSON object at the top".into(),
        });
    };
    let mut map = map.clone();
    map.remove("_name_or_path");
    map.remove("torch_dtype");
    let order = order.clone().sorted(map.keys());
    write_json(config_path, &Value::Object(map), &order)
}

/// `json.dump(value, f, indent=4)`.
fn write_json(path: &Path, value: &Value, order: &KeyOrder) -> Result<()> {
    fs::write(path, dumps(value, order)).map_err(|e| Error::io(path, e))
}
