//! Converting a Hugging Face checkpoint to the mlx-community layout:
//! Python's `mlx_vlm/convert.py` (`convert`), the plain path.
//!
//! [`convert`] loads the checkpoint as [`crate::utils::load_model`] does
//! (the family's `sanitize` renames and reshapes the weights), casts the
//! floating-point weights to `dtype` (given, else `config.json`'s
//! `torch_dtype`, else `text_config.dtype`), optionally quantizes every
//! layer outside the vision and audio towers
//! ([`crate::utils::save::skip_multimodal_module`]) whose input width the
//! group size divides, and writes the weights, `config.json` (with
//! `quantization` and `quantization_config` when quantized), the other
//! files of the checkpoint and a model card.
//!
//! Not ported (the CLI refuses these flags of Python's `convert`):
//! `--q-mode` other than `affine`, `--quant-method awq` with
//! `--calibration` and `--calibration-data`, `--quant-predicate` (the
//! `mixed_*` recipes), `-d/--dequantize`, `--upload-repo`, `--mtp` and
//! `--mtp-output`. `--trust-remote-code` has no meaning here (no Python
//! code is run).
//!
//! Divergences from Python:
//!
//! - An output folder that exists and is not empty is refused: Python
//!   writes into it, overwriting the files it writes and keeping every
//!   other, so shards of an earlier conversion could linger beside the new
//!   index.
//! - Quantizing a checkpoint that is already quantized is refused (see
//!   [`crate::quant_utils::quantize_model`]); converting one without
//!   `--quantize` re-saves it as Python does.
//! - The processor files are copied as they are (Python's own fallback
//!   for processors without `save_pretrained`: `*.json`, `*.txt`,
//!   `*.jinja`, `*.model`), not re-serialized by transformers'
//!   `processor.save_pretrained`: `tokenizer_config.json` keeps its
//!   original text and a `processor_config.json` the source lacks is not
//!   created. Like `save_pretrained`, a `chat_template.json`'s template is
//!   also written as `chat_template.jinja`.
//! - No family's model has a `quant_predicate` or `cast_predicate` of its
//!   own in the families ported here (Qwen3-VL-MoE's is on its language
//!   model, which Python's `convert` does not consult), so the base
//!   predicates apply to all.
//! - A subfolder of the source that is the output folder itself is not
//!   copied into the output.

use std::fs;
use std::path::{Path, PathBuf};

use mlx_rs::Dtype;
use mlx_rs::nn::{Module, ModuleExt};
use serde_json::Value;

use crate::quant_utils::{QuantizeReport, get_quantization_params, quantize_model};
use crate::utils::python_json::KeyOrder;
use crate::utils::save::{
    MODEL_CONVERSION_DTYPES, create_model_card, save_config, save_weights, skip_multimodal_module,
};
use crate::utils::{LoadOptions, get_model_path, load_config, load_model};
use crate::{Error, Result};

/// The arguments of [`convert`] (Python's keyword arguments of `convert`
/// that are ported).
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Local folder or Hugging Face repo id of the source checkpoint
    /// (Python: `hf_path`).
    pub hf_path: String,
    /// The output folder (Python: `mlx_path`, default `mlx_model`).
    pub mlx_path: PathBuf,
    /// Quantize the weights (Python: `quantize`).
    pub quantize: bool,
    /// Elements per quantization group; `None`: 64 (Python:
    /// `q_group_size`).
    pub q_group_size: Option<i32>,
    /// Bits per quantized weight; `None`: 4 (Python: `q_bits`).
    pub q_bits: Option<i32>,
    /// `float16`, `bfloat16` or `float32`; `None`: the config's
    /// `torch_dtype` (Python: `dtype`).
    pub dtype: Option<String>,
    /// Branch, tag or commit of a hub repository (Python: `revision`).
    pub revision: Option<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            hf_path: String::new(),
            mlx_path: PathBuf::from("mlx_model"),
            quantize: false,
            q_group_size: None,
            q_bits: None,
            dtype: None,
            revision: None,
        }
    }
}

/// A stage of [`convert`], reported as it starts (Python prints `[INFO]`
/// lines at the same points).
#[derive(Debug, Clone, PartialEq)]
pub enum ConvertStep {
    /// Loading the checkpoint from this folder.
    Loading(PathBuf),
    /// Casting the floating-point weights to this dtype.
    Casting(String),
    /// Quantizing.
    Quantizing,
    /// Writing weight shard `shard` (from 0) of `shards`, into `file`.
    Saving {
        /// The shard's number, from 0.
        shard: usize,
        /// How many shards there are.
        shards: usize,
        /// Its file name.
        file: String,
    },
    /// Copying the other files and writing `config.json` and the model
    /// card.
    Copying,
}

/// What [`convert`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// The source folder (a hub snapshot for a repo id).
    pub model_path: PathBuf,
    /// The output folder.
    pub mlx_path: PathBuf,
    /// The dtype the weights were cast to, if any.
    pub dtype: Option<String>,
    /// The quantization's outcome, when quantized.
    pub quantization: Option<QuantizeReport>,
}

fn dtype_of(name: &str) -> Option<Dtype> {
    match name {
        "float16" => Some(Dtype::Float16),
        "bfloat16" => Some(Dtype::Bfloat16),
        "float32" => Some(Dtype::Float32),
        _ => None,
    }
}

/// Refuses an output path that is a file or a folder with something in it.
fn check_output(mlx_path: &Path) -> Result<()> {
    if !mlx_path.exists() {
        return Ok(());
    }
    if !mlx_path.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "--mlx-path {}: exists and is not a folder; pass a new or empty folder",
            mlx_path.display()
        )));
    }
    let mut entries = fs::read_dir(mlx_path).map_err(|e| Error::io(mlx_path, e))?;
    if entries.next().is_some() {
        return Err(Error::InvalidArgument(format!(
            "--mlx-path {}: the folder exists and is not empty; pass a new or empty folder, or \
             remove it first (Python's convert would write into it, keeping files of an \
             earlier conversion beside the new ones)",
            mlx_path.display()
        )));
    }
    Ok(())
}

/// Converts the checkpoint `options.hf_path` into `options.mlx_path`
/// (Python: `convert`; see the top of this file), calling `on_step` as
/// each stage starts. Bad options and an unusable output folder are
/// refused before anything is loaded.
pub fn convert(
    options: &ConvertOptions,
    on_step: &mut dyn FnMut(ConvertStep),
) -> Result<ConvertReport> {
    if let Some(dtype) = &options.dtype
        && dtype_of(dtype).is_none()
    {
        return Err(Error::InvalidArgument(format!(
            "--dtype {dtype:?} is not one of {MODEL_CONVERSION_DTYPES:?}"
        )));
    }
    let quantization = options
        .quantize
        .then(|| get_quantization_params(options.q_group_size, options.q_bits))
        .transpose()?;
    check_output(&options.mlx_path)?;

    let model_path = get_model_path(&options.hf_path, options.revision.as_deref())?;
    if !model_path.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "--hf-path {}: not a folder; pass the folder of a Hugging Face checkpoint or a \
             repo id",
            model_path.display()
        )));
    }
    on_step(ConvertStep::Loading(model_path.clone()));
    let mut config = load_config(&model_path)?;
    if quantization.is_some() && config.get("quantization").is_some() {
        // Checked by `quantize_model` too; here before the weights load.
        return Err(Error::Config {
            file: model_path.join("config.json").display().to_string(),
            message: "the checkpoint is already quantized (it has a \"quantization\" entry); \
                      convert a float checkpoint, or drop --quantize to re-save it as is"
                .into(),
        });
    }
    let dtype = options
        .dtype
        .clone()
        .or_else(|| config_str(&config, &["torch_dtype"]))
        .or_else(|| config_str(&config, &["text_config", "dtype"]))
        .filter(|d| dtype_of(d).is_some());
    if let Some(d) = &dtype {
        on_step(ConvertStep::Casting(d.clone()));
    }
    let load_options = LoadOptions {
        revision: options.revision.clone(),
        dtype: dtype.as_deref().and_then(dtype_of),
        lazy: true,
        ..LoadOptions::default()
    };
    let mut model = load_model(&model_path, &load_options)?;

    let mut report = None;
    if let Some(params) = quantization {
        on_step(ConvertStep::Quantizing);
        if let Value::Object(map) = &mut config {
            map.entry("vision_config")
                .or_insert_with(|| Value::Object(Default::default()));
        }
        // Python's `base_quant_predicate` (no family ported here has a
        // model-level `quant_predicate`).
        let module: &mut dyn Module = &mut *model;
        let (quantized, outcome) = quantize_model(module, &config, params, &|path| {
            !skip_multimodal_module(path)
        })?;
        config = quantized;
        report = Some(outcome);
    }

    let module: &dyn Module = &*model;
    let weights = module.parameters();
    drop(model);
    save_weights(&options.mlx_path, weights, &mut |shard, shards, file| {
        on_step(ConvertStep::Saving {
            shard,
            shards,
            file: file.to_string(),
        })
    })?;

    on_step(ConvertStep::Copying);
    copy_checkpoint_files(&model_path, &options.mlx_path)?;
    let order = config_key_order(&model_path, &config)?;
    save_config(&config, &options.mlx_path.join("config.json"), &order)?;
    let hf_repo = (!Path::new(&options.hf_path).exists()).then_some(options.hf_path.as_str());
    create_model_card(&options.mlx_path, hf_repo)?;
    Ok(ConvertReport {
        model_path,
        mlx_path: options.mlx_path.clone(),
        dtype,
        quantization: report,
    })
}

/// The key order of the config Python's `convert` saves: `config.json`'s,
/// with `generation_config.json`'s for the `generation_config` that
/// `load_config` merged in, and `quantization` entries as
/// `get_quantization_params` builds them.
fn config_key_order(model_path: &Path, config: &Value) -> Result<KeyOrder> {
    let parse = |file: &Path| -> Result<KeyOrder> {
        let text = fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        KeyOrder::parse(&text).map_err(|e| Error::Config {
            file: file.display().to_string(),
            message: format!("not valid JSON: {e}"),
        })
    };
    let mut order = parse(&model_path.join("config.json"))?;
    if config.get("generation_config").is_some() {
        let generation = parse(&model_path.join("generation_config.json"))?;
        order = order.with_field("generation_config", generation);
    }
    let quantization = KeyOrder::of_keys(&["group_size", "bits", "mode"]);
    for key in ["quantization", "quantization_config"] {
        if config.get(key).is_some() {
            order = order.with_field(key, quantization.clone());
        }
    }
    Ok(order)
}

/// The string at `path` in `config`, if any.
fn config_str(config: &Value, path: &[&str]) -> Option<String> {
    let mut v = config;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().map(str::to_string)
}

/// The files of `model_path` whose names end with one of `suffixes`.
fn files_ending(model_path: &Path, suffixes: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(model_path).map_err(|e| Error::io(model_path, e))? {
        let path = entry.map_err(|e| Error::io(model_path, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && suffixes.iter().any(|s| name.ends_with(s)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Copies `src` to `dst` (a file, followed through links), naming the
/// file in the error.
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    fs::copy(src, dst)
        .map(|_| ())
        .map_err(|e| Error::io(src, e))
}

/// Copies the folder `src` into `dst` recursively (Python's
/// `shutil.copytree`, links followed).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let path = entry.map_err(|e| Error::io(src, e))?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if path.is_dir() {
            copy_tree(&path, &dst.join(name))?;
        } else {
            copy_file(&path, &dst.join(name))?;
        }
    }
    Ok(())
}

/// The files `convert` carries over from the source folder (Python: the
/// copy loops of `convert` and the processor's files; see the top of this
/// file): `*.py` and `*.json` but the weight index, every subfolder, the
/// processor files, and `chat_template.jinja` from `chat_template.json`.
fn copy_checkpoint_files(model_path: &Path, mlx_path: &Path) -> Result<()> {
    for file in files_ending(model_path, &[".py", ".json"])? {
        if file
            .file_name()
            .is_some_and(|n| n == "model.safetensors.index.json")
        {
            continue;
        }
        copy_file(&file, &mlx_path.join(file.file_name().unwrap_or_default()))?;
    }
    let output = fs::canonicalize(mlx_path).map_err(|e| Error::io(mlx_path, e))?;
    for entry in fs::read_dir(model_path).map_err(|e| Error::io(model_path, e))? {
        let path = entry.map_err(|e| Error::io(model_path, e))?.path();
        if !path.is_dir() || fs::canonicalize(&path).is_ok_and(|p| p == output) {
            continue;
        }
        let Some(name) = path.file_name() else {
            continue;
        };
        let dest = mlx_path.join(name);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        }
        copy_tree(&path, &dest)?;
    }
    for file in files_ending(model_path, &[".txt", ".jinja", ".model"])? {
        copy_file(&file, &mlx_path.join(file.file_name().unwrap_or_default()))?;
    }
    let jinja = mlx_path.join("chat_template.jinja");
    let template_json = model_path.join("chat_template.json");
    if !jinja.exists()
        && let Some(template) = crate::utils::read_json_if_exists(&template_json)?
        && let Some(text) = template.get("chat_template").and_then(Value::as_str)
    {
        fs::write(&jinja, text).map_err(|e| Error::io(&jinja, e))?;
    }
    Ok(())
}
