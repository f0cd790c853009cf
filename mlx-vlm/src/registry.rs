//! Which model a `config.json` asks for: Python's `get_model_and_args` and
//! `MODEL_REMAPPING` in `mlx_vlm/utils.py`, with a table of constructors in
//! place of Python's `importlib.import_module(f"mlx_vlm.models.{model_type}")`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::models::VlmModel;
use crate::models::qwen2_5_vl;
use crate::utils::TensorInfo;
use crate::{Error, Result};

/// Builds a model from the parsed `config.json` object; the `&str` names the
/// file in errors.
pub type ModelConstructor = fn(&Map<String, Value>, &str) -> Result<Box<dyn VlmModel>>;

/// Aliases of model types, as in `config.json`, to the model package that
/// implements them (Python: `MODEL_REMAPPING`, copied whole so an alias
/// resolves as in Python even where its target is not ported yet).
pub const MODEL_REMAPPING: &[(&str, &str)] = &[
    ("moondream1", "moondream2"),
    ("llava_qwen2", "fastvlm"),
    ("llava-qwen2", "llava_bunny"),
    ("bunny-llama", "llava_bunny"),
    ("lfm2-vl", "lfm2_vl"),
    ("cohere2_vision", "aya_vision"),
    ("jvlm", "jina_vlm"),
    ("phi4-siglip", "phi4_siglip"),
    ("sam3_video", "sam3"),
    ("sam3.1_video", "sam3_1"),
    ("granite-vision", "granite_vision"),
    ("granite4-vision", "granite4_vision"),
    ("granite4_vision", "granite4_vision"),
    ("rf-detr", "rfdetr"),
    ("dinov2_with_registers", "dinov2"),
    ("falcon-perception", "falcon_perception"),
    ("nemotronh_nano_omni_reasoning_v3", "nemotron_h_nano_omni"),
    ("cohere2moe", "cohere2_moe"),
    ("unlimited-ocr", "unlimited_ocr"),
    ("mistral", "llama"),
    ("phi-msft", "phixtral"),
    ("falcon_mamba", "mamba"),
    ("joyai_llm_flash", "deepseek_v3"),
    ("kimi_k2", "deepseek_v3"),
    ("minimax_m2", "minimax"),
    ("iquestcoder", "llama"),
    ("nemotron-nas", "nemotron_nas"),
    ("inkling_mm_model", "inkling"),
    ("lille-130m", "lille_130m"),
];

/// Checks the parsed `config.json` (named by the `&str` in errors) against
/// the checkpoint's tensors, read from the safetensors headers, before any
/// module is built (Rust only: Python builds the model first).
pub type WeightsCheck = fn(&Map<String, Value>, &str, &BTreeMap<String, TensorInfo>) -> Result<()>;

/// One model package of this crate: what the loader needs of it.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    /// The `model_type` it implements.
    pub model_type: &'static str,
    /// Builds the model from its configuration.
    pub create: ModelConstructor,
    /// Checks the configuration against the weights first.
    pub check_weights: WeightsCheck,
}

/// The model packages of this crate by model type: Rust's counterpart of the
/// modules under Python's `mlx_vlm/models/`.
pub const MODELS: &[ModelEntry] = &[ModelEntry {
    model_type: "qwen2_5_vl",
    create: new_qwen2_5_vl,
    check_weights: check_qwen2_5_vl,
}];

fn new_qwen2_5_vl(config: &Map<String, Value>, file: &str) -> Result<Box<dyn VlmModel>> {
    let config = qwen2_5_vl::config::ModelConfig::from_map(config.clone(), file)?;
    Ok(Box::new(qwen2_5_vl::Model::new(config)?))
}

fn check_qwen2_5_vl(
    config: &Map<String, Value>,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    qwen2_5_vl::config::ModelConfig::from_map(config.clone(), file)?.check_weights(tensors, file)
}

/// Every model type `config.json` may name, ported packages first, then the
/// aliases that lead to them.
pub fn model_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = MODELS.iter().map(|entry| entry.model_type).collect();
    types.extend(
        MODEL_REMAPPING
            .iter()
            .filter(|(alias, target)| alias != target && entry(target).is_some())
            .map(|(alias, _)| *alias),
    );
    types
}

fn entry(model_type: &str) -> Option<&'static ModelEntry> {
    MODELS.iter().find(|entry| entry.model_type == model_type)
}

/// The normalised model type of `config`: `model_type` (or
/// `speculators_model_type`), lower-cased, through [`MODEL_REMAPPING`]
/// (Python: the first half of `get_model_and_args`). `file` names the
/// configuration in errors.
pub fn get_model_type(config: &Value, file: &str) -> Result<String> {
    let raw = ["model_type", "speculators_model_type"]
        .iter()
        .find_map(|key| config.get(key).and_then(Value::as_str))
        .ok_or_else(|| Error::Config {
            file: file.to_string(),
            message: "no \"model_type\" string; add the model type of the checkpoint \
                      (for example \"qwen2_5_vl\")"
                .into(),
        })?;
    let model_type = raw.to_lowercase();
    Ok(MODEL_REMAPPING
        .iter()
        .find(|(alias, _)| *alias == model_type)
        .map_or(model_type.clone(), |(_, target)| (*target).to_string()))
}

/// A model of the type `config` names, with freshly initialised weights
/// (Python: `get_model_and_args` then `model_class.Model(model_config)`).
/// `file` names the configuration in errors.
pub fn create_model(config: &Value, file: &str) -> Result<Box<dyn VlmModel>> {
    let Value::Object(map) = config else {
        return Err(Error::Config {
            file: file.to_string(),
            message: "expected a JSON object at the top".into(),
        });
    };
    (registered(config, file)?.create)(map, file)
}

/// Checks `config` against the checkpoint's `tensors` before any module is
/// built, as the model type's [`ModelEntry::check_weights`] says (Rust
/// only). `file` names the configuration in errors.
pub fn check_weights(
    config: &Value,
    file: &str,
    tensors: &BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let Value::Object(map) = config else {
        return Err(Error::Config {
            file: file.to_string(),
            message: "expected a JSON object at the top".into(),
        });
    };
    (registered(config, file)?.check_weights)(map, file, tensors)
}

/// The entry of the model type `config` names.
fn registered(config: &Value, file: &str) -> Result<&'static ModelEntry> {
    let model_type = get_model_type(config, file)?;
    entry(&model_type).ok_or_else(|| Error::UnknownModelType {
        model_type: model_type.clone(),
        file: file.to_string(),
        supported: model_types().join(", "),
    })
}
