//! Loading a checkpoint: the loading half of Python's `mlx_vlm/utils.py`
//! (`get_model_path`, `load_model`, `_load_safetensors`, `sanitize_weights`,
//! `load`, `load_config`), in that order; the saving half is [`save`].
//!
//! Divergences from Python (stricter checks, before any module is built):
//!
//! - Every safetensors header is read and checked first (the JSON header
//!   only, so loading speed is unchanged): each tensor's `data_offsets` must
//!   be ordered, match its dtype and shape, lie inside the file, and not
//!   overlap another tensor's (Python's loader, like MLX's, trusts them);
//!   each fault is an [`Error::Weights`] naming the file and the keys.
//! - [`load_model_with`] then checks `config.json` against those headers
//!   ([`registry::check_weights`], each model type's own check; for
//!   Qwen2.5-VL `ModelConfig::check_weights`: layer counts, sizes, dtypes), so that a
//!   config such as `num_hidden_layers: 1000000000` is an error at once
//!   instead of building modules until memory runs out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use mlx_rs::nn::{ItemMut, Module, ModuleExt, QuantSpec, Verify};
use mlx_rs::ops::QuantizationMode;
use mlx_rs::{Array, Dtype};
use serde_json::Value;

use crate::models::VlmModel;
use crate::registry;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub mod python_json;
pub mod save;

/// The files [`get_model_path`] fetches from the hub (Python's default
/// `allow_patterns` of `get_model_path`).
pub const ALLOW_PATTERNS: &[&str] = &[
    "*.json",
    "*.jsonl",
    "*.safetensors",
    "*.py",
    "*.model",
    "*.tiktoken",
    "*.txt",
    "*.jinja",
];

/// The keys of `generation_config.json` that override `config.json`
/// (Python: `GENERATION_CONFIG_DEFAULT_KEYS`).
pub const GENERATION_CONFIG_DEFAULT_KEYS: &[&str] =
    &["eos_token_id", "temperature", "top_p", "top_k", "do_sample"];

/// Options of [`load`] and [`load_model`] (Python's keyword arguments of
/// `load`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Branch, tag or commit of a hub repository (Python: `revision`).
    pub revision: Option<String>,
    /// Casts every floating-point parameter after loading (Python's
    /// `convert --dtype`; `None` keeps the checkpoint's dtypes).
    pub dtype: Option<Dtype>,
    /// Leaves the weights unread until first used (Python: `lazy`).
    pub lazy: bool,
    /// Overrides the image processor's `min_pixels`.
    pub min_pixels: Option<u64>,
    /// Overrides the image processor's `max_pixels` (Python's
    /// `--max-pixels`).
    pub max_pixels: Option<u64>,
}

/// How a checkpoint's layers are quantized: `config.json`'s `quantization`
/// object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantization {
    /// Elements per group sharing a scale.
    pub group_size: i32,
    /// Bits per element.
    pub bits: i32,
    /// The format (`"affine"` unless stated).
    pub mode: QuantizationMode,
}

// ---------------------------------------------------------------------------
// get_model_path

/// The local folder of a model: `path_or_hf_repo` itself when it is an
/// existing path, otherwise a snapshot of that Hugging Face repository
/// fetched into the hub cache (Python: `get_model_path`).
///
/// The cache is `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`. With `HF_HUB_OFFLINE=1` only the cache is
/// read. Online, files already cached are not fetched again; an index
/// (`model.safetensors.index.json`) limits the weights to its shards.
pub fn get_model_path(path_or_hf_repo: &str, revision: Option<&str>) -> Result<PathBuf> {
    let path = Path::new(path_or_hf_repo);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    // A repo id is `name` or `org/name`; anything else can only be a
    // folder, and asking the hub for it would hide the real problem.
    let looks_like_path = path_or_hf_repo.starts_with(['.', '/', '~', '\\'])
        || path_or_hf_repo.contains('\\')
        || path_or_hf_repo.matches('/').count() > 1
        || path.is_absolute();
    if looks_like_path {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            hint: "no such model folder; pass an existing folder or a Hugging Face repo id \
                   such as Qwen/Qwen2.5-VL-3B-Instruct"
                .into(),
        });
    }
    let cache = Cache::new(hub_cache_dir(path_or_hf_repo)?);
    let revision = revision.unwrap_or("main");
    let repo = Repo::with_revision(
        path_or_hf_repo.to_string(),
        RepoType::Model,
        revision.into(),
    );
    if hub_offline() {
        return cached_snapshot(&cache, &repo, path_or_hf_repo, revision);
    }
    download_snapshot(cache, repo, path_or_hf_repo)
}

fn hub_error(repo: &str, message: impl Into<String>) -> Error {
    Error::Hub {
        repo: repo.to_string(),
        message: message.into(),
    }
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

fn hub_cache_dir(repo: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Ok(PathBuf::from(home).join("hub"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    base.map(|b| b.join("huggingface").join("hub"))
        .ok_or_else(|| {
            hub_error(
                repo,
                "no hub cache folder: set HF_HOME (or HF_HUB_CACHE), or pass a local folder",
            )
        })
}

/// The cached snapshot of `repo` at `revision`: `refs/<revision>` names the
/// commit, unless `revision` is itself a commit.
fn cached_snapshot(cache: &Cache, repo: &Repo, id: &str, revision: &str) -> Result<PathBuf> {
    let root = cache.path().join(repo.folder_name());
    let commit = fs::read_to_string(root.join("refs").join(revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let snapshot = root.join("snapshots").join(&commit);
    if snapshot.is_dir() {
        return Ok(snapshot);
    }
    Err(hub_error(
        id,
        format!(
            "revision {revision:?} is not in the local cache {} and HF_HUB_OFFLINE is set; \
             unset HF_HUB_OFFLINE to download it, or pass the path of a local checkpoint folder",
            root.display()
        ),
    ))
}

fn matches_allow_patterns(file: &str) -> bool {
    // Patterns match whole paths as fnmatch does, so `*.json` also takes
    // files in subfolders; every pattern here is a suffix glob.
    ALLOW_PATTERNS.iter().any(|p| {
        p.strip_prefix('*')
            .is_some_and(|suffix| file.ends_with(suffix))
    })
}

fn download_snapshot(cache: Cache, repo: Repo, id: &str) -> Result<PathBuf> {
    let mut builder = ApiBuilder::from_cache(cache).with_progress(true);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder
        .build()
        .map_err(|e| hub_error(id, format!("cannot start the hub client: {e}")))?;
    let api_repo = api.repo(repo);
    let info = api_repo.info().map_err(|e| {
        hub_error(
            id,
            format!(
                "cannot list the repository ({e}); check the repository id and revision, \
                 your network, or HF_TOKEN for a gated model"
            ),
        )
    })?;
    let mut files: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| matches_allow_patterns(f))
        .collect();
    let get = |file: &str| {
        api_repo
            .get(file)
            .map_err(|e| hub_error(id, format!("downloading {file}: {e}")))
    };
    const INDEX: &str = "model.safetensors.index.json";
    if files.iter().any(|f| f == INDEX) {
        let index = get(INDEX)?;
        let shards: BTreeSet<String> = read_index(&index)?.into_values().collect();
        files.retain(|f| !f.ends_with(".safetensors") || shards.contains(f));
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("Fetching {pos}/{len} files {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut root = None;
    for file in &files {
        bar.set_message(file.clone());
        let local = get(file)?;
        // The snapshot root is the local path minus the file's own parts.
        root = root.or_else(|| {
            let depth = Path::new(file).components().count();
            local.ancestors().nth(depth).map(Path::to_path_buf)
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    root.ok_or_else(|| {
        hub_error(
            id,
            format!("the repository has none of the files {ALLOW_PATTERNS:?}"),
        )
    })
}

// ---------------------------------------------------------------------------
// load_model

/// The weight files of a checkpoint and, when sharded, its index (key ->
/// shard file name).
pub type WeightFiles = (Vec<PathBuf>, Option<BTreeMap<String, String>>);

/// The weight files of `model_path` and, when the checkpoint is sharded,
/// its index (key -> shard file) (Python: the file search of `load_model`).
pub fn weight_files(model_path: &Path) -> Result<WeightFiles> {
    let index_file = model_path.join("model.safetensors.index.json");
    if index_file.is_file() {
        let index = read_index(&index_file)?;
        let shards: BTreeSet<&String> = index.values().collect();
        let mut files = Vec::new();
        for shard in shards {
            let file = model_path.join(shard);
            if !file.is_file() {
                return Err(Error::MissingFile {
                    path: file,
                    hint: format!(
                        "{} names this shard; download it again or fix the index",
                        index_file.display()
                    ),
                });
            }
            files.push(file);
        }
        return Ok((files, Some(index)));
    }
    let entries = fs::read_dir(model_path).map_err(|e| Error::io(model_path, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(model_path, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // consolidated.safetensors is the Mistral-format duplicate of the
        // weights, skipped as Python does.
        if name.ends_with(".safetensors") && name != "consolidated.safetensors" {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::MissingFile {
            path: model_path.join("*.safetensors"),
            hint: "the checkpoint has no weights; convert it to safetensors \
                   (python -m mlx_vlm.convert --hf-path <model> --mlx-path <dir>)"
                .into(),
        });
    }
    Ok((files, None))
}

fn read_index(index_file: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(index_file).map_err(|e| Error::io(index_file, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::Weights {
        path: index_file.display().to_string(),
        message: format!(
            "not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ),
    })?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Weights {
            path: index_file.display().to_string(),
            message: "no \"weight_map\" object of key -> shard file".into(),
        })?;
    map.iter()
        .map(|(key, shard)| match shard.as_str() {
            Some(s) => Ok((key.clone(), s.to_string())),
            None => Err(Error::Weights {
                path: index_file.display().to_string(),
                message: format!("weight_map[{key:?}] is {shard}, expected a file name"),
            }),
        })
        .collect()
}

/// Every weight of the checkpoint in `model_path`, by checkpoint key
/// (Python: the loading loop of `load_model`). A key the index lists but its
/// shard lacks, a key in two files, or a truncated file is an
/// [`Error::Weights`] naming the file.
pub fn load_weights(model_path: &Path) -> Result<HashMap<String, Array>> {
    let (files, index) = weight_files(model_path)?;
    read_weight_headers(&files)?;
    load_files(model_path, &files, index.as_ref())
}

/// The weights of `files`, whose headers [`read_weight_headers`] checked
/// (which also refuses a key in two files).
fn load_files(
    model_path: &Path,
    files: &[PathBuf],
    index: Option<&BTreeMap<String, String>>,
) -> Result<HashMap<String, Array>> {
    let mut weights = HashMap::new();
    for file in files {
        weights.extend(load_safetensors(file)?);
    }
    for (key, shard) in index.into_iter().flatten() {
        if !weights.contains_key(key) {
            return Err(Error::Weights {
                path: model_path.join(shard).display().to_string(),
                message: format!(
                    "{key} is listed in model.safetensors.index.json but missing from this shard"
                ),
            });
        }
    }
    Ok(weights)
}

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The safetensors dtype name (`F32`, `BF16`, `U32`, ...).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<u64>,
    /// `data_offsets`: start and end, relative to the data section.
    pub data_offsets: (u64, u64),
    /// The file holding it.
    pub file: PathBuf,
}

/// The tensors of the weight files `files`, by checkpoint key, read from
/// their headers alone (no tensor data). Each header is checked as the top
/// of this file describes; a key in two files is an [`Error::Weights`].
pub fn read_weight_headers(files: &[PathBuf]) -> Result<BTreeMap<String, TensorInfo>> {
    let mut all = BTreeMap::new();
    for file in files {
        for (key, info) in check_safetensors(file)? {
            if let Some(first) = all.get(&key).map(|i: &TensorInfo| i.file.clone()) {
                return Err(Error::Weights {
                    path: file.display().to_string(),
                    message: format!("{key} is also in {}; remove one copy", first.display()),
                });
            }
            all.insert(key, info);
        }
    }
    Ok(all)
}

/// Loads one safetensors file whose header [`check_safetensors`] passed
/// (Python: `_load_safetensors`); the check comes first because MLX reads
/// the data only when it is used.
fn load_safetensors(path: &Path) -> Result<HashMap<String, Array>> {
    let (arrays, _metadata) = mlx_rs::io::load_safetensors(path).map_err(|e| Error::Weights {
        path: path.display().to_string(),
        message: format!("not a readable safetensors file: {e}"),
    })?;
    Ok(arrays)
}

/// Bytes per element of the safetensors dtypes MLX reads.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" | "C64" => 8,
        _ => return None,
    })
}

/// Checks the header of a safetensors file (see the top of this file) and
/// returns its tensors.
///
/// Hand-written rather than the `safetensors` crate's `Metadata`: the crate
/// also requires the tensors to be contiguous and to end exactly at the end
/// of the file, which refuses files with padding that MLX and Python load;
/// this checks only what keeps MLX's reader inside the file.
fn check_safetensors(path: &Path) -> Result<Vec<(String, TensorInfo)>> {
    let bad = |message: String| Error::Weights {
        path: path.display().to_string(),
        message: format!("{message}; the file is truncated or corrupt, download it again"),
    };
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| {
        bad(format!(
            "{size} bytes, shorter than the 8-byte header length"
        ))
    })?;
    let header_len = u64::from_le_bytes(len);
    if header_len > size.saturating_sub(8) {
        return Err(bad(format!(
            "header of {header_len} bytes does not fit in {size} bytes"
        )));
    }
    let mut header = vec![0u8; usize::try_from(header_len).unwrap_or(usize::MAX)];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let Value::Object(entries) = header else {
        return Err(bad("the header is not a JSON object".into()));
    };
    let mut tensors = Vec::with_capacity(entries.len());
    for (key, entry) in &entries {
        if key == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype").and_then(Value::as_str);
        let shape: Option<Vec<u64>> = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(Value::as_u64).collect());
        let offsets = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
        let (Some(dtype), Some(shape), Some((start, end))) = (dtype, shape, offsets) else {
            return Err(bad(format!(
                "{key}: header entry {entry} lacks a dtype string, a shape of non-negative \
                 integers or data_offsets [start, end]"
            )));
        };
        if start > end {
            return Err(bad(format!(
                "{key}: data_offsets [{start}, {end}] end before they start"
            )));
        }
        if let Some(item) = dtype_size(dtype) {
            let bytes = shape
                .iter()
                .try_fold(item, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("{key}: shape {shape:?} overflows")))?;
            if bytes != end - start {
                return Err(bad(format!(
                    "{key}: {dtype} {shape:?} needs {bytes} bytes but data_offsets \
                     [{start}, {end}] hold {}",
                    end - start
                )));
            }
        }
        tensors.push((
            key.clone(),
            TensorInfo {
                dtype: dtype.to_owned(),
                shape,
                data_offsets: (start, end),
                file: path.to_path_buf(),
            },
        ));
    }
    let mut spans: Vec<(u64, u64, &str)> = tensors
        .iter()
        .map(|(k, i)| (i.data_offsets.0, i.data_offsets.1, k.as_str()))
        .filter(|(start, end, _)| end > start)
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if let [(_, a_end, a), (b_start, _, b)] = pair
            && b_start < a_end
        {
            return Err(Error::Weights {
                path: path.display().to_string(),
                message: format!(
                    "the data of {a} and {b} overlap (data_offsets end {a_end} > start \
                     {b_start}); the header is corrupt or crafted, download the file again"
                ),
            });
        }
    }
    let data_end = spans.iter().map(|(_, end, _)| *end).max().unwrap_or(0);
    let needed = 8 + header_len + data_end;
    if needed > size {
        return Err(bad(format!(
            "the header needs {needed} bytes, the file has {size}"
        )));
    }
    Ok(tensors)
}

/// Renames the keys of a Qwen2-VL or Qwen2.5-VL checkpoint re-saved by
/// transformers 5 (`model.visual.*`, `model.language_model.*`) to the
/// original Hugging Face layout (`visual.*`, `model.*`) that those families'
/// `sanitize` expects; they call it first. Python mlx-vlm 0.7.6 has no
/// counterpart and fails on such checkpoints. (Qwen3-VL's original layout
/// is this one, and its `sanitize` reads it as Python does.)
pub fn normalize_transformers5_layout(weights: HashMap<String, Array>) -> HashMap<String, Array> {
    let is_tf5 = weights
        .keys()
        .any(|k| k.starts_with("model.language_model.") || k.starts_with("model.visual."));
    if !is_tf5 {
        return weights;
    }
    weights
        .into_iter()
        .map(|(key, value)| {
            let key = if let Some(rest) = key.strip_prefix("model.language_model.") {
                format!("model.{rest}")
            } else if let Some(rest) = key.strip_prefix("model.visual.") {
                format!("visual.{rest}")
            } else {
                key
            };
            (key, value)
        })
        .collect()
}

/// The quantization `config` declares: `quantization`, else a
/// `quantization_config` (at the root or in `text_config`) giving
/// `group_size` and `bits`. `file` names the configuration in errors.
pub fn get_quantization(config: &Value, file: &str) -> Result<Option<Quantization>> {
    let found = config
        .get("quantization")
        .map(|q| ("quantization", q))
        .or_else(|| {
            config
                .get("quantization_config")
                .map(|q| ("quantization_config", q))
        })
        .or_else(|| {
            config
                .get("text_config")?
                .get("quantization_config")
                .map(|q| ("text_config.quantization_config", q))
        });
    let Some((key, q)) = found else {
        return Ok(None);
    };
    let bad = |message: String| Error::Config {
        file: file.to_string(),
        message: format!("{key}: {message}"),
    };
    let int = |name: &str| -> Result<Option<i32>> {
        match q.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("{name} is {v}, expected an integer"))),
        }
    };
    let (group_size, bits) = (int("group_size")?, int("bits")?);
    let (Some(group_size), Some(bits)) = (group_size, bits) else {
        let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("?");
        return Err(bad(format!(
            "quant_method {method:?} without group_size and bits is not supported; \
             convert the checkpoint with mlx_vlm.convert --quantize"
        )));
    };
    let name = q.get("mode").and_then(Value::as_str).unwrap_or("affine");
    let mode = quantization_mode(name).ok_or_else(|| {
        bad(format!(
            "mode {name:?} is not one of affine, mxfp4, mxfp8, nvfp4"
        ))
    })?;
    Ok(Some(Quantization {
        group_size,
        bits,
        mode,
    }))
}

/// The quantization format a `mode` string names.
fn quantization_mode(name: &str) -> Option<QuantizationMode> {
    match name {
        "affine" => Some(QuantizationMode::Affine),
        "mxfp4" => Some(QuantizationMode::Mxfp4),
        "mxfp8" => Some(QuantizationMode::Mxfp8),
        "nvfp4" => Some(QuantizationMode::Nvfp4),
        _ => None,
    }
}

/// The per-layer entries of `config.json`'s `quantization` object (as
/// `mlx_vlm.convert --quant-predicate mixed_3_6` writes them): a layer path
/// mapped to its own spec (`group_size`, `bits` and `mode`, each defaulting
/// as in `nn.QuantizedLinear`: 64, 4, affine), or to `None` for `false`
/// (the layer stays float). Python: `_quantization_for_module_path`; the
/// loader also tries a path without its `language_model.` prefix, as
/// Python does.
pub fn quantization_overrides(
    config: &Value,
    file: &str,
) -> Result<BTreeMap<String, Option<QuantSpec>>> {
    let mut overrides = BTreeMap::new();
    let Some(Value::Object(q)) = config.get("quantization") else {
        return Ok(overrides);
    };
    for (path, value) in q {
        let spec = match value {
            Value::Bool(false) => None,
            Value::Object(layer) => {
                let int = |name: &str| -> Result<Option<i32>> {
                    match layer.get(name) {
                        None | Some(Value::Null) => Ok(None),
                        Some(v) => v
                            .as_i64()
                            .and_then(|n| i32::try_from(n).ok())
                            .filter(|n| *n > 0)
                            .map(Some)
                            .ok_or_else(|| Error::Config {
                                file: file.to_string(),
                                message: format!(
                                    "quantization.{path}.{name} is {v}, expected a positive \
                                     integer"
                                ),
                            }),
                    }
                };
                let name = layer
                    .get("mode")
                    .and_then(Value::as_str)
                    .unwrap_or("affine");
                let mode = quantization_mode(name).ok_or_else(|| Error::Config {
                    file: file.to_string(),
                    message: format!(
                        "quantization.{path}.mode {name:?} is not one of affine, mxfp4, \
                         mxfp8, nvfp4"
                    ),
                })?;
                Some(QuantSpec::new(int("group_size")?, int("bits")?, mode))
            }
            _ => continue,
        };
        overrides.insert(path.clone(), spec);
    }
    Ok(overrides)
}

/// Loads the model in `model_path` (Python: `load_model`): reads the config
/// and weights, builds the model its `model_type` names, renames the weights
/// into it, quantizes the layers the checkpoint holds quantized, and loads
/// every weight strictly.
pub fn load_model(model_path: &Path, options: &LoadOptions) -> Result<Box<dyn VlmModel>> {
    load_model_with(model_path, options, registry::create_model)
}

/// [`load_model`] with the model constructor given (`create(config, file)`),
/// for models outside the registry. Python has no counterpart: its
/// `get_model_and_args` also imports a checkpoint's own `model_file`.
pub fn load_model_with(
    model_path: &Path,
    options: &LoadOptions,
    create: impl FnOnce(&Value, &str) -> Result<Box<dyn VlmModel>>,
) -> Result<Box<dyn VlmModel>> {
    let config = load_config(model_path)?;
    let config_file = model_path.join("config.json").display().to_string();
    let (files, index) = weight_files(model_path)?;
    let tensors = read_weight_headers(&files)?;
    // A model type outside the registry (a custom `create`) has no check.
    match registry::check_weights(&config, &config_file, &tensors) {
        Err(Error::UnknownModelType { .. }) => {}
        other => other?,
    }
    let weights = load_files(model_path, &files, index.as_ref())?;
    let mut model = create(&config, &config_file)?;
    let weights = sanitize_weights(&*model, weights)?;
    let weights: BTreeMap<String, Array> = weights.into_iter().collect();
    let checkpoint = model_path.display().to_string();
    let weights_error = |e: mlx_rs::Error| Error::Weights {
        path: checkpoint.clone(),
        message: e.to_string(),
    };
    let module: &mut dyn Module = &mut *model;
    if let Some(q) = get_quantization(&config, &config_file)? {
        // Python: a layer with its own `quantization` entry takes it (or
        // stays float for `false`); any other layer is quantized with the
        // checkpoint's spec when the checkpoint holds its `.scales`.
        let per_layer = quantization_overrides(&config, &config_file)?;
        let default = QuantSpec::new(Some(q.group_size), Some(q.bits), q.mode);
        mlx_rs::nn::quantize_with(module, |path, _| {
            let own = per_layer.get(path).or_else(|| {
                path.strip_prefix("language_model.")
                    .and_then(|p| per_layer.get(p))
            });
            match own {
                Some(spec) => *spec,
                None => weights
                    .contains_key(&format!("{path}.scales"))
                    .then_some(default),
            }
        })
        .map_err(weights_error)?;
    }
    adopt_checkpoint_dtypes(module, &weights);
    module
        .update_parameters(&weights, Verify::Strict)
        .map_err(weights_error)?;
    if let Some(dtype) = options.dtype {
        cast_floating_parameters(module, dtype)?;
    }
    if !options.lazy {
        let parameters = module.parameters();
        mlx_rs::transforms::eval(parameters.values()).map_err(weights_error)?;
    }
    Ok(model)
}

fn visit_parameters_mut(
    module: &mut dyn Module,
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut mlx_rs::nn::Param),
) {
    module.items_mut(&mut |key, item| {
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        match item {
            ItemMut::Param(p) => f(&path, p),
            ItemMut::Module(m) => visit_parameters_mut(m, &path, f),
        }
    });
}

/// Python's `load_weights` replaces each parameter by the checkpoint's array
/// whatever its dtype, so a float32-initialised model becomes bf16 with a
/// bf16 checkpoint; the strict update checks dtypes, so they are adopted
/// first where the shapes agree.
fn adopt_checkpoint_dtypes(module: &mut dyn Module, weights: &BTreeMap<String, Array>) {
    visit_parameters_mut(module, "", &mut |path, p| {
        if let Some(w) = weights.get(path)
            && w.shape() == p.shape()
            && w.dtype() != p.dtype()
        {
            p.set(w.clone());
        }
    });
}

fn cast_floating_parameters(module: &mut dyn Module, dtype: Dtype) -> Result<()> {
    let mut result = Ok(());
    visit_parameters_mut(module, "", &mut |_, p| {
        if result.is_ok() && p.dtype().is_inexact() && p.dtype() != dtype {
            match p.as_type(dtype) {
                Ok(cast) => p.set(cast),
                Err(e) => result = Err(Error::from(e)),
            }
        }
    });
    result
}

/// The weights renamed and reshaped for `model` (Python: `sanitize_weights`,
/// called by `load_model` on the model, then its vision and language towers;
/// [`VlmModel::sanitize`] covers all three, including any layout a family
/// accepts beyond Python's, such as [`normalize_transformers5_layout`]).
pub fn sanitize_weights(
    model: &dyn VlmModel,
    weights: HashMap<String, Array>,
) -> Result<HashMap<String, Array>> {
    model.sanitize(weights)
}

/// Loads a model and its tokenizer from a local folder or a hub repository
/// (Python: `load`), returning the folder too. The image processor is loaded
/// separately (`Qwen2_5VlProcessor`).
pub fn load(
    path_or_hf_repo: &str,
    options: &LoadOptions,
) -> Result<(Box<dyn VlmModel>, Tokenizer, PathBuf)> {
    let model_path = get_model_path(path_or_hf_repo, options.revision.as_deref())?;
    let model = load_model(&model_path, options)?;
    let tokenizer = Tokenizer::from_dir(&model_path)?;
    Ok((model, tokenizer, model_path))
}

// ---------------------------------------------------------------------------
// load_config

/// `config.json` of `model_path`, with the generation defaults of
/// `generation_config.json` merged in (Python: `load_config` and
/// `_merge_generation_config`): `generation_config` holds the whole file and
/// [`GENERATION_CONFIG_DEFAULT_KEYS`] override the root.
pub fn load_config(model_path: &Path) -> Result<Value> {
    let file = model_path.join("config.json");
    if !file.is_file() {
        return Err(Error::MissingFile {
            path: file,
            hint: "a checkpoint folder needs its config.json; pass the folder of a \
                   Hugging Face or mlx-community checkpoint"
                .into(),
        });
    }
    let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let mut config: Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        file: file.display().to_string(),
        message: format!(
            "not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ),
    })?;
    let Value::Object(root) = &mut config else {
        return Err(Error::Config {
            file: file.display().to_string(),
            message: "expected a JSON object at the top".into(),
        });
    };
    let generation_file = model_path.join("generation_config.json");
    // Python ignores an unreadable generation_config.json.
    let generation = fs::read_to_string(&generation_file)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    if let Some(Value::Object(generation)) = generation
        && !generation.is_empty()
    {
        for key in GENERATION_CONFIG_DEFAULT_KEYS {
            if let Some(v) = generation.get(*key) {
                root.insert((*key).to_string(), v.clone());
            }
        }
        root.insert("generation_config".into(), Value::Object(generation));
    }
    Ok(config)
}

/// The JSON of `path`, or `None` when there is no such file; bad JSON is
/// an [`Error::Config`] naming the file, line and column.
pub(crate) fn read_json_if_exists(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config {
            file: path.display().to_string(),
            message: format!(
                "not valid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        })
}
