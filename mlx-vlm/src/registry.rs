//! Which model a `config.json` asks for: Python's `get_model_and_args` and
//! `MODEL_REMAPPING` in `mlx_vlm/utils.py`, with the families' registrations
//! ([`Family`]) in place of Python's
//! `importlib.import_module(f"mlx_vlm.models.{model_type}")`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use std::fmt;

use crate::models::VlmModel;
use crate::processor::ProcessorFactory;
use crate::prompt_utils::{MessageFormat, PromptRules};
use crate::utils::TensorInfo;
use crate::{Error, Result};

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

/// Builds a model from the parsed `config.json` object; the `&str` names the
/// file in errors.
pub type ModelConstructor = fn(&Map<String, Value>, &str) -> Result<Box<dyn VlmModel>>;

/// Checks the parsed `config.json` (named by the `&str` in errors) against
/// the checkpoint's tensors, read from the safetensors headers, before any
/// module is built (Rust only: Python builds the model first).
pub type WeightsCheck = fn(&Map<String, Value>, &str, &BTreeMap<String, TensorInfo>) -> Result<()>;

/// The media a family's processor accepts besides text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaKinds {
    /// Still images.
    pub images: bool,
    /// Videos the model takes natively; a family without sends a video's
    /// frames as images, as Python does.
    pub videos: bool,
    /// Audio clips.
    pub audio: bool,
}

impl fmt::Display for MediaKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = [
            (self.images, "images"),
            (self.videos, "videos"),
            (self.audio, "audio"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        if kinds.is_empty() {
            f.write_str("text only")
        } else {
            write!(f, "text, {}", kinds.join(", "))
        }
    }
}

/// One model family: everything the generic code (loader, processor,
/// chat template, generation, CLI) needs of it, in one value. Each family
/// folder defines its `FAMILY` constant, and `models/mod.rs` lists the
/// folder once; a missing field does not compile.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The `model_type` it implements (Python: the package name).
    pub model_type: &'static str,
    /// Builds the model from its configuration.
    pub create: ModelConstructor,
    /// Checks the configuration against the weights first.
    pub check_weights: WeightsCheck,
    /// Builds the family's processor from the checkpoint folder.
    pub processor: ProcessorFactory,
    /// The Python processor class it ports, for `mlx-vlm info`.
    pub processor_name: &'static str,
    /// The media its processor accepts.
    pub media: MediaKinds,
    /// How a user message with media is laid out (Python: the family's
    /// entry of `MODEL_CONFIG` in `prompt_utils.py`).
    pub message_format: MessageFormat,
    /// The single-image and last-message rules of its prompts (Python:
    /// `SINGLE_IMAGE_ONLY_MODELS` and `apply_chat_template`'s list of
    /// models that take the last message alone).
    pub prompt_rules: PromptRules,
}

/// Every family's registration (Rust's counterpart of the packages under
/// Python's `mlx_vlm/models/`).
pub use crate::models::FAMILIES;

/// The registration of `model_type` (already normalised, see
/// [`get_model_type`]), if this crate ports it.
pub fn family(model_type: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|family| family.model_type == model_type)
}

/// Every model type `config.json` may name, ported packages first, then the
/// aliases that lead to them.
pub fn model_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = FAMILIES.iter().map(|family| family.model_type).collect();
    types.extend(
        MODEL_REMAPPING
            .iter()
            .filter(|(alias, target)| alias != target && family(target).is_some())
            .map(|(alias, _)| *alias),
    );
    types
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
/// built, as the model type's [`Family::check_weights`] says (Rust
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

/// The registration of the model type `config` names, or
/// [`Error::UnknownModelType`]; `file` names the configuration in errors.
pub fn registered(config: &Value, file: &str) -> Result<&'static Family> {
    let model_type = get_model_type(config, file)?;
    family(&model_type).ok_or_else(|| Error::UnknownModelType {
        model_type: model_type.clone(),
        file: file.to_string(),
        supported: model_types().join(", "),
    })
}
