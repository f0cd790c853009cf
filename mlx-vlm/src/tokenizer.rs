//! The tokenizer of a checkpoint folder with its special tokens and chat
//! template: what Python gets from `AutoProcessor.from_pretrained(path)`
//! (`processor.tokenizer`, `processor.chat_template`) and the EOS ids of
//! `resolve_eos_token_ids` in `mlx_vlm/utils.py`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::AddedToken;

use crate::{Error, Result};

/// A Hugging Face tokenizer (`tokenizer.json`) with the special tokens of
/// `tokenizer_config.json`, the chat template and the EOS ids of the
/// generation config (Python: `processor.tokenizer`).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_token: Option<String>,
    pad_token: Option<String>,
    bos_token: Option<String>,
    chat_template: Option<String>,
    config_eos_token_ids: Vec<u32>,
}

fn tokenizer_error(context: &Path, message: impl ToString) -> Error {
    Error::Tokenizer {
        context: context.display().to_string(),
        message: message.to_string(),
    }
}

/// A special token of `tokenizer_config.json`: a string, or an object with
/// its `content` (the `AddedToken` form).
fn token_content(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Ids of an `eos_token_id` entry: one integer or a list of them.
fn token_ids(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect(),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

/// The template text of a `chat_template` value: a string, or transformers'
/// list of named templates (`[{"name": "default", "template": ...}]`) or map
/// of them, of which the `default` one is taken.
fn template_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.iter().find_map(|t| {
            (t.get("name")?.as_str()? == "default")
                .then(|| t.get("template")?.as_str().map(str::to_string))
                .flatten()
        }),
        Value::Object(map) => map.get("default").and_then(template_text),
        _ => None,
    }
}

/// The chat template of the checkpoint in `dir` and the file it came from,
/// in transformers' order: `processor_config.json`'s `chat_template`, the
/// legacy `chat_template.json`, `chat_template.jinja`, then
/// `tokenizer_config.json`'s `chat_template` (Python: the chat-template
/// resolution of `ProcessorMixin.from_pretrained`, falling back to the
/// tokenizer's).
pub fn load_chat_template(dir: &Path) -> Result<Option<(String, PathBuf)>> {
    for (file, key) in [
        ("processor_config.json", Some("chat_template")),
        ("chat_template.json", Some("chat_template")),
        ("chat_template.jinja", None),
        ("tokenizer_config.json", Some("chat_template")),
    ] {
        let path = dir.join(file);
        let template = match key {
            None if path.is_file() => {
                Some(fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?)
            }
            None => None,
            Some(key) => crate::utils::read_json_if_exists(&path)?
                .as_ref()
                .and_then(|v| v.get(key))
                .and_then(template_text),
        };
        if let Some(template) = template {
            return Ok(Some((template, path)));
        }
    }
    Ok(None)
}

impl Tokenizer {
    /// Loads the tokenizer of the checkpoint folder `dir`: `tokenizer.json`,
    /// the special and added tokens of `tokenizer_config.json`, the chat
    /// template ([`load_chat_template`]) and the EOS ids of
    /// `generation_config.json` (else `config.json`)
    /// (Python: `AutoProcessor.from_pretrained(dir).tokenizer`).
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            return Err(Error::MissingFile {
                path: file,
                hint: "the checkpoint needs the tokenizer.json of its model; copy it from \
                       the original Hugging Face repository"
                    .into(),
            });
        }
        let mut inner =
            tokenizers::Tokenizer::from_file(&file).map_err(|e| tokenizer_error(&file, e))?;
        let config = crate::utils::read_json_if_exists(&dir.join("tokenizer_config.json"))?
            .unwrap_or(Value::Null);
        // Tokens listed only in tokenizer_config.json still count, as in
        // transformers; those tokenizer.json already has are left alone.
        let mut extra = Vec::new();
        if let Some(Value::Object(decoder)) = config.get("added_tokens_decoder") {
            for (id, token) in decoder {
                let Some(content) = token_content(Some(token)) else {
                    continue;
                };
                let listed = inner.token_to_id(&content);
                if listed.is_none() {
                    let special = token
                        .get("special")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    extra.push(AddedToken::from(content, special));
                } else if listed.map(|l| l.to_string()) != Some(id.clone()) {
                    return Err(tokenizer_error(
                        &dir.join("tokenizer_config.json"),
                        format!(
                            "added token {content:?} has id {id} here but {listed:?} in tokenizer.json"
                        ),
                    ));
                }
            }
        }
        if !extra.is_empty() {
            inner.add_tokens(&extra);
        }
        let generation = crate::utils::read_json_if_exists(&dir.join("generation_config.json"))?;
        // Python's load_config copies generation_config's eos_token_id over
        // config.json's whenever the key is there, even as an empty list.
        let config_eos_token_ids = match generation.as_ref().and_then(|g| g.get("eos_token_id")) {
            Some(ids) => token_ids(Some(ids)),
            None => {
                let model_config = crate::utils::read_json_if_exists(&dir.join("config.json"))?;
                token_ids(model_config.as_ref().and_then(|c| c.get("eos_token_id")))
            }
        };
        Ok(Tokenizer {
            inner,
            eos_token: token_content(config.get("eos_token")),
            pad_token: token_content(config.get("pad_token")),
            bos_token: token_content(config.get("bos_token")),
            chat_template: load_chat_template(dir)?.map(|(template, _)| template),
            config_eos_token_ids,
        })
    }

    /// The ids of `text` (Python: `tokenizer(text).input_ids`, which passes
    /// `add_special_tokens=True`; Qwen's tokenizer.json adds no tokens for
    /// it, so the ids are exactly the text's).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer {
                context: "encode".into(),
                message: e.to_string(),
            })
    }

    /// The text of `ids` (Python: `tokenizer.decode(ids,
    /// skip_special_tokens=...)`).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer {
                context: "decode".into(),
                message: e.to_string(),
            })
    }

    /// The id of a token of the vocabulary (Python:
    /// `tokenizer.convert_tokens_to_ids(token)`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The end-of-sequence token (Python: `tokenizer.eos_token`).
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Its id (Python: `tokenizer.eos_token_id`).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The padding token (Python: `tokenizer.pad_token`).
    pub fn pad_token(&self) -> Option<&str> {
        self.pad_token.as_deref()
    }

    /// The beginning-of-sequence token (Python: `tokenizer.bos_token`).
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The ids that end generation: the generation config's `eos_token_id`
    /// (one or a list), then the tokenizer's own EOS, without duplicates
    /// (Python: `resolve_eos_token_ids(model.config.eos_token_id, tokenizer)`).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Vec::new();
        for id in self
            .config_eos_token_ids
            .iter()
            .copied()
            .chain(self.eos_token_id())
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The checkpoint's chat template (Python: `processor.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
