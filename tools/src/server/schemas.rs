//! The request bodies the server reads (Python: `server/schemas.py`) and
//! their sampling fields mapped to [`GenerateParams`].
//!
//! Unknown fields are ignored, as Python's `FlexibleBaseModel` allows
//! them; fields this port does not implement (`tools`, `response_format`,
//! `logprobs`, `n` above 1) are refused by name rather than ignored.

use std::collections::HashMap;

use mlx_vlm::generate::GenerateParams;
use mlx_vlm::sample_utils::LogitsProcessorArgs;
use serde::Deserialize;
use serde_json::Value;

use super::errors::ApiError;

/// A string or a list of strings (OpenAI's `stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, empty ones dropped.
    pub fn into_vec(self) -> Vec<String> {
        let all = match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        all.into_iter().filter(|s| !s.is_empty()).collect()
    }
}

/// OpenAI's `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling fields the three APIs share (Python: `GenerationRequest`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Most tokens to generate (default: the server's `--max-tokens`).
    pub max_tokens: Option<i64>,
    /// OpenAI's newer name of `max_tokens`; wins when both are given.
    pub max_completion_tokens: Option<i64>,
    /// The Responses API's name of `max_tokens`.
    pub max_output_tokens: Option<i64>,
    /// Sampling temperature (0: greedy, Python's default).
    pub temperature: Option<f64>,
    /// Nucleus threshold.
    pub top_p: Option<f64>,
    /// Top-k filter.
    pub top_k: Option<i32>,
    /// Min-p filter.
    pub min_p: Option<f64>,
    /// Seed of the position-keyed sampler.
    pub seed: Option<u64>,
    /// Text that ends generation (`stop`, Anthropic's `stop_sequences`).
    #[serde(alias = "stop_sequences")]
    pub stop: Option<OneOrMany>,
    /// Additive bias per token id (keys are ids as strings).
    pub logit_bias: Option<HashMap<String, f64>>,
    /// Multiplicative penalty of recent tokens.
    pub repetition_penalty: Option<f64>,
    /// Tokens the repetition penalty looks at.
    pub repetition_context_size: Option<i32>,
    /// Additive penalty of present tokens.
    pub presence_penalty: Option<f64>,
    /// Additive penalty per occurrence.
    pub frequency_penalty: Option<f64>,
}

/// The server's defaults for what a request leaves out.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `--max-tokens`.
    pub max_tokens: usize,
    /// The engine-wide generation settings (prefill step, KV cache).
    pub params: GenerateParams,
}

impl Sampling {
    /// The generation parameters, or a 400 naming the field at fault.
    pub fn params(&self, defaults: &Defaults) -> Result<GenerateParams, ApiError> {
        let max_tokens = match self
            .max_completion_tokens
            .or(self.max_output_tokens)
            .or(self.max_tokens)
        {
            None => defaults.max_tokens,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!("max_tokens must be at least 1, got {n}"),
                ));
            }
        };
        let logit_bias = match &self.logit_bias {
            None => None,
            Some(map) => Some(
                map.iter()
                    .map(|(k, v)| match k.parse::<u32>() {
                        Ok(id) => Ok((id, *v)),
                        Err(_) => Err(ApiError::bad_param(
                            "logit_bias",
                            format!("logit_bias key {k:?} is not a token id"),
                        )),
                    })
                    .collect::<Result<HashMap<u32, f64>, _>>()?,
            ),
        };
        let base = defaults.params.clone();
        let params = GenerateParams {
            max_tokens,
            temperature: self.temperature.unwrap_or(base.temperature),
            top_p: self.top_p.unwrap_or(base.top_p),
            top_k: self.top_k.unwrap_or(base.top_k),
            min_p: self.min_p.unwrap_or(base.min_p),
            seed: self.seed,
            logits_processors: LogitsProcessorArgs {
                logit_bias,
                repetition_penalty: self.repetition_penalty,
                repetition_context_size: self
                    .repetition_context_size
                    .unwrap_or(base.logits_processors.repetition_context_size),
                // OpenAI's 0 means no penalty; the processors treat None so.
                presence_penalty: self.presence_penalty.filter(|p| *p != 0.0),
                frequency_penalty: self.frequency_penalty.filter(|p| *p != 0.0),
                ..base.logits_processors.clone()
            },
            ..base
        };
        params.validate()?;
        Ok(params)
    }

    /// The stop strings.
    pub fn stop(&self) -> Vec<String> {
        self.stop
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
    }
}

/// One chat message (Python: `ChatMessage`): `content` is a string, a
/// list of parts or null.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content.
    #[serde(default)]
    pub content: Value,
}

/// `POST /v1/chat/completions` (Python: `ChatRequest`).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The model id (see [`super::AppState::check_model`]).
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Stream SSE chunks.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Choices to generate; only 1 is supported.
    pub n: Option<u32>,
    /// Sampling.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /v1/messages` (Python: `AnthropicRequest`).
#[derive(Debug, Clone, Deserialize)]
pub struct AnthropicRequest {
    /// The model id.
    pub model: String,
    /// The conversation (`user` and `assistant`).
    pub messages: Vec<ChatMessage>,
    /// The system prompt: a string or text blocks.
    #[serde(default)]
    pub system: Value,
    /// Stream SSE events.
    #[serde(default)]
    pub stream: bool,
    /// Sampling (`max_tokens` is required by Anthropic's API; Python
    /// defaults it, as this does).
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /v1/responses` (Python: `OpenAIRequest`).
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    /// The model id.
    pub model: String,
    /// A string or a list of input items (messages).
    pub input: Value,
    /// A system message placed first.
    pub instructions: Option<String>,
    /// Stream SSE events.
    #[serde(default)]
    pub stream: bool,
    /// Sampling.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// Parses a request body, or a 400 that says what is wrong where.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "invalid request"
        };
        ApiError::bad_request(format!("{kind} in the request body: {e}"))
    })
}
