//! Requests' messages → the conversation the chat template renders, plus
//! the images and audio clips in prompt order (Python:
//! `server/request_normalization.py` and the message loop of
//! `chat_completions_endpoint`).
//!
//! Images are `data:` URLs, local paths or `http(s)` URLs (fetched by
//! [`super::fetch`] before the request is queued). Anthropic and Responses
//! content blocks are mapped to the OpenAI parts first.

use mlx_vlm::ImageSource;
use mlx_vlm::prompt_utils::extract_text_from_content;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::schemas::ChatMessage;

/// Python's `_MISSING_INPUT_DETAIL`.
const MISSING_INPUT: &str =
    "Request must include at least one non-empty message, image, audio, or video input.";

/// A conversation ready for the chat template.
#[derive(Debug, Clone, Default)]
pub struct NormalizedPrompt {
    /// `{"role", "content"}` messages; image parts are `{"type": "image"}`.
    pub messages: Vec<Value>,
    /// The images, in order.
    pub images: Vec<ImageSource>,
    /// The audio clips' `data:` URLs or paths, in order.
    pub audio: Vec<String>,
}

/// The URL of an OpenAI `image_url` part (`{"url": ...}` or a string) or
/// a Responses `input_image` part.
fn image_url(part: &Value) -> Option<String> {
    let url = part.get("image_url")?;
    match url {
        Value::String(s) => Some(s.clone()),
        other => other.get("url")?.as_str().map(str::to_string),
    }
}

/// An OpenAI `input_audio` part's `data:` URL.
fn input_audio(part: &Value) -> Result<String, ApiError> {
    let audio = part.get("input_audio").unwrap_or(&Value::Null);
    let data = audio.get("data").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_param(
            "messages",
            "an input_audio part needs {\"data\": <base64>, \"format\": \"wav\"|\"mp3\"|...}",
        )
    })?;
    if data.starts_with("data:") {
        return Ok(data.to_string());
    }
    let format = audio.get("format").and_then(Value::as_str).unwrap_or("wav");
    Ok(format!("data:audio/{format};base64,{data}"))
}

/// Python: `normalize_image_content`: ordered text and image parts, or the
/// joined text when there is no image.
fn normalize_image_content(content: &Value) -> Value {
    let Value::Array(items) = content else {
        return Value::String(extract_text_from_content(content));
    };
    let mut parts = Vec::new();
    for item in items {
        match item.get("type").and_then(Value::as_str) {
            Some("image" | "image_url" | "input_image") => parts.push(json!({"type": "image"})),
            Some("text" | "input_text" | "output_text") => {
                let text = item
                    .get("text")
                    .or_else(|| item.get("content"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !text.is_empty() {
                    parts.push(json!({"type": "text", "text": text}));
                }
            }
            _ => {}
        }
    }
    if parts.iter().any(|p| p["type"] == "image") {
        return Value::Array(parts);
    }
    let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    Value::String(texts.join(" ").trim().to_string())
}

/// OpenAI chat messages → the prompt (Python: the message loop,
/// `_chat_message_to_prompt`, `_normalize_instruction_messages` and
/// `_ensure_effective_input`). `instructions` lead the system message.
pub fn chat_prompt(
    messages: &[ChatMessage],
    instructions: Option<&str>,
) -> Result<NormalizedPrompt, ApiError> {
    let mut out = NormalizedPrompt::default();
    let mut system_parts: Vec<String> = instructions
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .into_iter()
        .collect();
    let mut conversation = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.role.as_str();
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::bad_param(
                "messages",
                format!(
                    "messages[{i}].role {role:?} is not one of system, developer, user, \
                     assistant, tool"
                ),
            ));
        }
        if !matches!(
            message.content,
            Value::Null | Value::String(_) | Value::Array(_)
        ) {
            return Err(ApiError::bad_param(
                "messages",
                format!("messages[{i}].content must be a string, a list of parts or null"),
            ));
        }
        if let (Value::Array(parts), "user") = (&message.content, role) {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("image_url" | "input_image" | "image") => {
                        let url = image_url(part).ok_or_else(|| {
                            ApiError::bad_param(
                                "messages",
                                format!(
                                    "messages[{i}] has an image part without a URL: give \
                                     {{\"type\": \"image_url\", \"image_url\": {{\"url\": \
                                     \"data:image/png;base64,...\"}}}}"
                                ),
                            )
                        })?;
                        out.images.push(ImageSource::parse(&url));
                    }
                    Some("input_audio") => out.audio.push(input_audio(part)?),
                    _ => {}
                }
            }
        }
        let content = match (&message.content, role) {
            (Value::Array(_), "user") => normalize_image_content(&message.content),
            (Value::Array(_), _) => Value::String(extract_text_from_content(&message.content)),
            (other, _) => other.clone(),
        };
        if matches!(role, "system" | "developer") {
            let text = extract_text_from_content(&content);
            if !text.is_empty() {
                system_parts.push(text);
            }
        } else {
            conversation.push(json!({"role": role, "content": content}));
        }
    }
    if !system_parts.is_empty() {
        conversation.insert(
            0,
            json!({"role": "system", "content": system_parts.join("\n\n")}),
        );
    }
    let has_text = conversation
        .iter()
        .any(|m| !extract_text_from_content(&m["content"]).trim().is_empty());
    if !has_text && out.images.is_empty() && out.audio.is_empty() {
        return Err(ApiError::bad_param("messages", MISSING_INPUT));
    }
    out.messages = conversation;
    Ok(out)
}

/// Anthropic content blocks → OpenAI parts: `text`, and `image` with a
/// `base64` or `url` source.
pub fn anthropic_content(content: &Value) -> Result<Value, ApiError> {
    let Value::Array(blocks) = content else {
        return Ok(content.clone());
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
            Some("image") => {
                let source = &block["source"];
                let url = match source.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source["media_type"].as_str().unwrap_or("image/png"),
                        source["data"].as_str().unwrap_or("")
                    ),
                    Some("url") => source["url"].as_str().unwrap_or("").to_string(),
                    _ => {
                        return Err(ApiError::bad_param(
                            "messages",
                            "an image block needs a source of type base64 or url",
                        ));
                    }
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            // tool_use/tool_result and others carry no prompt text here.
            _ => {}
        }
    }
    Ok(Value::Array(parts))
}

/// A Responses API `input` → chat messages: a string is one user
/// message; a list holds messages (`role` and `content`).
pub fn responses_input(input: &Value) -> Result<Vec<ChatMessage>, ApiError> {
    match input {
        Value::String(text) => Ok(vec![ChatMessage {
            role: "user".into(),
            content: Value::String(text.clone()),
        }]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let role = item.get("role").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::bad_param(
                        "input",
                        format!("input[{i}] needs a \"role\" (message items only)"),
                    )
                })?;
                Ok(ChatMessage {
                    role: role.to_string(),
                    content: item.get("content").cloned().unwrap_or(Value::Null),
                })
            })
            .collect(),
        _ => Err(ApiError::bad_param(
            "input",
            "input must be a string or a list of messages",
        )),
    }
}
