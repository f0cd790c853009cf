//! Chat messages and their rendering: Python's `mlx_vlm/prompt_utils.py`
//! (`extract_text_from_content`, `MessageBuilder`, `MessageFormatter`,
//! `get_message_json`, `get_chat_template`, `apply_chat_template`) for the
//! message formats of the ported families, rendered with minijinja as transformers
//! renders chat templates with Jinja2.
//!
//! Prompts are JSON values, as Python's are plain objects: a string, one
//! message object, or a list of strings and message objects.
//!
//! Limits on rendering (a chat template comes with the checkpoint and is
//! code: it must not hang the process or exhaust its memory). Each is an
//! [`Error::LimitExceeded`]; Python's Jinja2 has none of them, so each is a
//! divergence:
//!
//! - Fuel ([`TemplateLimits::fuel`], default [`TEMPLATE_FUEL`]): minijinja's
//!   `fuel` feature charges about one unit per VM instruction. The Qwen2.5-VL
//!   template spends 696 units on an 11-message conversation with two
//!   images (system + 5 user/assistant turns; measured by the
//!   `qwen_template_fuel_is_far_below_the_limit` test), about 60 a message.
//!   The default, 50,000,000, is over 70,000 times that (room for
//!   conversations of hundreds of thousands of messages and templates far
//!   heavier than Qwen's) and is spent in a few seconds at most (about 4 s
//!   in an unoptimised test build), so nested `range(100000)` loops stop
//!   instead of running for hours.
//! - Output size ([`TemplateLimits::max_output_bytes`], default
//!   [`MAX_RENDERED_PROMPT_BYTES`], 64 MiB, far above any model's context):
//!   the output is written through a counting writer that fails the render
//!   as soon as it passes the limit.
//! - String growth: the template source is checked before rendering
//!   ([`check_template_growth`], `template_growth.rs` says how and what it
//!   misses).

use std::collections::BTreeMap;

use minijinja::value::Kwargs;
use serde_json::{Map, Value, json};

pub use crate::template_growth::check_template_growth;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How a model wants a user message laid out (Python: `MessageFormat`;
/// only the formats of ported families). Each family's registration
/// ([`crate::registry::Family::message_format`]) names its own (Python:
/// `MODEL_CONFIG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// Content parts, images after the text (Python: `LIST_WITH_IMAGE`).
    ListWithImage,
    /// Content parts, images first (Python: `LIST_WITH_IMAGE_FIRST`).
    ListWithImageFirst,
    /// A bare string, `<image>` once per image before the text (Python:
    /// `PROMPT_WITH_IMAGE_TOKEN`; PaliGemma). Not a message object: the
    /// family's [`PromptRules::last_message_only`] hands it to the
    /// processor as the prompt.
    PromptWithImageToken,
    /// The text with `<start_of_image>` once per image after it, as one
    /// string content (Python: `START_IMAGE_TOKEN`, `_format_with_token`
    /// with `image_first=False`; Gemma 3).
    StartImageToken,
    /// Content parts with text parts `{"type": "text", "text", "content"}`,
    /// images before the text and audio clips after it (Python:
    /// `LIST_WITH_IMAGE_TYPE_TEXT`, `_format_list_with_image_type` with
    /// `message_type="text"`; Gemma 3n). An assistant message's content is
    /// its first part's text.
    ListWithImageTypeText,
}

/// How a family's messages become a prompt beyond their layout (Python:
/// membership of `SINGLE_IMAGE_ONLY_MODELS` and the model types whose
/// `apply_chat_template` returns the last message alone), held in the
/// family's registration ([`crate::registry::Family::prompt_rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PromptRules {
    /// A message with more than one image is an error (Python:
    /// `SINGLE_IMAGE_ONLY_MODELS`).
    pub single_image_only: bool,
    /// The prompt is the last message's text, not rendered with a chat
    /// template (Python: `if model_type in ["paligemma", ...]: return
    /// messages[-1]`).
    pub last_message_only: bool,
}

impl PromptRules {
    /// Any number of images; the messages rendered with the chat template.
    pub const DEFAULT: PromptRules = PromptRules {
        single_image_only: false,
        last_message_only: false,
    };
}

fn message_format(model_type: &str) -> Option<MessageFormat> {
    crate::registry::family(&model_type.to_lowercase()).map(|family| family.message_format)
}

fn prompt_rules(model_type: &str) -> PromptRules {
    crate::registry::family(&model_type.to_lowercase())
        .map_or(PromptRules::DEFAULT, |family| family.prompt_rules)
}

/// Options of [`apply_chat_template`] (Python's keyword arguments).
#[derive(Debug, Clone)]
pub struct ChatTemplateOptions {
    /// Ends the prompt with the assistant's turn header (Python:
    /// `add_generation_prompt`, default true).
    pub add_generation_prompt: bool,
    /// Images that go with the prompt (Python: `num_images`).
    pub num_images: usize,
    /// Audio clips that go with the prompt (Python: `num_audios`); they
    /// go to the last user message. Only families whose registration
    /// lists audio ([`crate::registry::MediaKinds::audio`]) take them.
    pub num_audios: usize,
    /// Videos that go with the prompt, by path (Python: the `video`
    /// keyword); used by families with native video.
    pub videos: Vec<String>,
    /// The videos' sampling rate (Python: the `fps` keyword), written into
    /// their content entries.
    pub fps: Option<f64>,
    /// Further variables for the template, such as `add_vision_id` (Python:
    /// `**kwargs`).
    pub kwargs: Map<String, Value>,
}

impl Default for ChatTemplateOptions {
    fn default() -> Self {
        ChatTemplateOptions {
            add_generation_prompt: true,
            num_images: 0,
            num_audios: 0,
            videos: Vec::new(),
            fps: None,
            kwargs: Map::new(),
        }
    }
}

/// Python's truthiness of an optional JSON string: `None` and `""` are false.
fn truthy_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The text parts of `content` joined by spaces, without image payloads
/// (Python: `extract_text_from_content`).
pub fn extract_text_from_content(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<&str> = items
                .iter()
                .filter(|item| {
                    matches!(
                        item.get("type").and_then(Value::as_str),
                        Some("text" | "input_text" | "output_text")
                    )
                })
                .filter_map(|item| {
                    truthy_str(item.get("text")).or_else(|| truthy_str(item.get("content")))
                })
                .collect();
            parts.join(" ").trim().to_string()
        }
        Value::Null | Value::Bool(false) => String::new(),
        other => python_str(other),
    }
}

/// Python's `str()` of a scalar JSON value.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// `(role, content)` of a message object, role defaulting to `user`
/// (Python: `_get_role_content`).
fn get_role_content(item: &Value) -> Option<(String, Value)> {
    let object = item.as_object()?;
    let role = object.get("role").and_then(Value::as_str).unwrap_or("user");
    Some((
        role.to_string(),
        object.get("content").cloned().unwrap_or(Value::Null),
    ))
}

/// Parts of `content` whose `type` is one of `media_types` (Python:
/// `_content_media_count`).
fn content_media_count(content: &Value, media_types: &[&str]) -> usize {
    content.as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|item| {
                item.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| media_types.contains(&t))
            })
            .count()
    })
}

const IMAGE_TYPES: &[&str] = &["image", "image_url", "input_image"];

/// A tool-calling message with `content` set for assistant calls and
/// string `arguments` parsed (Python: `_normalize_tool_message`).
fn normalize_tool_message(message: &Value) -> Value {
    let mut normalized = message.clone();
    let Some(object) = normalized.as_object_mut() else {
        return normalized;
    };
    let has_calls = object
        .get("tool_calls")
        .is_some_and(|c| !c.is_null() && c.as_array().is_none_or(|a| !a.is_empty()));
    if object.get("role").and_then(Value::as_str) == Some("assistant")
        && has_calls
        && object.get("content").is_none_or(Value::is_null)
    {
        object.insert("content".into(), json!(""));
    }
    if let Some(Value::Array(calls)) = object.get_mut("tool_calls") {
        for call in calls {
            if let Some(Value::Object(function)) = call.get_mut("function")
                && let Some(Value::String(arguments)) = function.get("arguments")
            {
                let parsed = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                function.insert("arguments".into(), parsed);
            }
        }
    }
    normalized
}

/// Builders of message parts (Python: `MessageBuilder`).
pub struct MessageBuilder;

impl MessageBuilder {
    /// `{"type": "text", "text": text, "content": text}` (Python:
    /// `MessageBuilder.text_message`).
    pub fn text_message(text: &str) -> Value {
        json!({"type": "text", "text": text, "content": text})
    }

    /// `{"type": "image"}` (Python: `MessageBuilder.image_message`).
    pub fn image_message() -> Value {
        json!({"type": "image"})
    }

    /// `{"type": "audio"}` (Python: `MessageBuilder.audio_message`).
    pub fn audio_message() -> Value {
        json!({"type": "audio"})
    }

    /// `{"type": "video", "video": path, "max_pixels": .., "fps": ..}`
    /// (Python: `MessageBuilder.video_message`; `fps` `None` is Python's
    /// `fps=None`).
    pub fn video_message(video_path: &str, max_pixels: u64, fps: Option<f64>) -> Value {
        json!({"type": "video", "video": video_path, "max_pixels": max_pixels, "fps": fps})
    }
}

/// The content parts of `prompt`, text and images in order, and the number
/// of images among them (Python: `MessageFormatter._content_parts`).
fn content_parts(prompt: &Value, include_images: bool) -> (Vec<Value>, usize) {
    let items = match prompt.as_array() {
        Some(items) if include_images => items,
        _ => {
            return (
                vec![MessageBuilder::text_message(&extract_text_from_content(
                    prompt,
                ))],
                0,
            );
        }
    };
    let (mut parts, mut images) = (Vec::new(), 0);
    for item in items.iter().filter(|i| i.is_object()) {
        match item.get("type").and_then(Value::as_str) {
            Some(t) if IMAGE_TYPES.contains(&t) => {
                parts.push(MessageBuilder::image_message());
                images += 1;
            }
            Some("text" | "input_text" | "output_text") => {
                if let Some(text) =
                    truthy_str(item.get("text")).or_else(|| truthy_str(item.get("content")))
                {
                    parts.push(MessageBuilder::text_message(text));
                }
            }
            _ => {}
        }
    }
    (parts, images)
}

/// One message in the layout `model_name` wants (Python: `get_message_json`
/// through `MessageFormatter.format_message`): a list of content parts with
/// `num_images` image parts before or after the text, as the family's
/// [`MessageFormat`] says, unless the prompt places its own.
pub fn get_message_json(
    model_name: &str,
    prompt: &Value,
    role: &str,
    skip_image_token: bool,
    num_images: usize,
) -> Result<Value> {
    get_message_json_with_videos(
        model_name,
        prompt,
        role,
        skip_image_token,
        num_images,
        &[],
        None,
    )
}

/// [`get_message_json`] with the `video` and `fps` keywords: for a family
/// with native video and a user message that takes media, the videos'
/// entries follow the images and precede the text (Python:
/// `_format_video_message`).
///
/// The caller passes `videos` to one message only: Python adds the video
/// entries to every message of a conversation (system and assistant turns
/// too), so a `--system` prompt with a video gets two video placeholders
/// and fails in its processor; [`chat_messages`] gives them to the message
/// that takes the side-channel images (the last user message).
pub fn get_message_json_with_videos(
    model_name: &str,
    prompt: &Value,
    role: &str,
    skip_image_token: bool,
    num_images: usize,
    videos: &[String],
    fps: Option<f64>,
) -> Result<Value> {
    let media = MessageMedia {
        skip_image_token,
        num_images,
        num_audios: 0,
        videos,
        fps,
    };
    format_message(model_name, prompt, role, &media)
}

/// The media of one message (Python: `format_message`'s keyword
/// arguments).
struct MessageMedia<'a> {
    skip_image_token: bool,
    num_images: usize,
    /// Audio clips of this message (Python: `num_audios`, with
    /// `skip_audio_token` as `num_audios == 0`).
    num_audios: usize,
    videos: &'a [String],
    fps: Option<f64>,
}

/// Python: `MessageFormatter.format_message`.
fn format_message(
    model_name: &str,
    prompt: &Value,
    role: &str,
    media: &MessageMedia<'_>,
) -> Result<Value> {
    let MessageMedia {
        skip_image_token,
        num_images,
        num_audios,
        videos,
        fps,
    } = *media;
    let with_audio = role == "user" && num_audios > 0;
    let audios = || vec![MessageBuilder::audio_message(); num_audios];
    let format = message_format(model_name).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unsupported model {model_name:?} for chat messages; supported: {}",
            crate::registry::FAMILIES
                .iter()
                .map(|family| family.model_type)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut num_images = num_images;
    let mut prompt = prompt.clone();
    if prompt.is_array() {
        let explicit = content_media_count(&prompt, IMAGE_TYPES);
        if explicit == 0 {
            prompt = Value::String(extract_text_from_content(&prompt));
        } else if role == "user" && !skip_image_token {
            num_images = num_images.max(explicit);
        }
    }
    if num_images > 1 && prompt_rules(model_name).single_image_only {
        // Python: `format_message`'s multi-image check.
        return Err(Error::InvalidArgument(format!(
            "Model {} does not support multi-image chat. Please only use 1 image.",
            model_name.to_lowercase()
        )));
    }
    let native_video = crate::registry::family(&model_name.to_lowercase())
        .is_some_and(|family| family.media.videos);
    if native_video && !videos.is_empty() {
        // Python: `_format_video_message` (its default `max_pixels`).
        let with_images = role == "user" && !skip_image_token;
        let (prompt_parts, explicit) = content_parts(&prompt, with_images);
        let images = if with_images {
            num_images.saturating_sub(explicit)
        } else {
            0
        };
        let mut content = vec![MessageBuilder::image_message(); images];
        content.extend(
            videos
                .iter()
                .map(|v| MessageBuilder::video_message(v, 224 * 224, fps)),
        );
        if with_audio {
            content.extend(audios());
        }
        content.extend(prompt_parts);
        return Ok(json!({"role": role, "content": content}));
    }
    let with_images = role == "user" && !skip_image_token;
    // Python: `_format_list_with_image`, `image_first` per format; the
    // token formats write the images into the text.
    let image_first = match format {
        MessageFormat::ListWithImage => false,
        MessageFormat::ListWithImageFirst => true,
        MessageFormat::PromptWithImageToken => {
            // Python's lambda ignores the role and the skip flag.
            let text = extract_text_from_content(&prompt);
            return Ok(Value::String(format!(
                "{}{text}",
                "<image>".repeat(num_images)
            )));
        }
        MessageFormat::StartImageToken => {
            let content =
                format_with_token(&prompt, with_images, num_images, "<start_of_image>", false);
            return Ok(json!({"role": role, "content": content}));
        }
        MessageFormat::ListWithImageTypeText => {
            // Python: `_format_list_with_image_type(message_type="text")`.
            let (mut content, explicit) = content_parts(&prompt, with_images);
            if role == "user" {
                if with_images && num_images > 0 {
                    let missing = num_images.saturating_sub(explicit);
                    content.splice(0..0, vec![MessageBuilder::image_message(); missing]);
                }
                if with_audio {
                    content.extend(audios());
                }
            }
            if role == "assistant" {
                let first = content.first().cloned().unwrap_or(Value::Null);
                let text = first.get("content").or_else(|| first.get("text"));
                return Ok(json!({"role": role, "content": text}));
            }
            return Ok(json!({"role": role, "content": content}));
        }
    };
    let (mut content, explicit) = content_parts(&prompt, with_images);
    if with_images && num_images > 0 {
        let missing = num_images.saturating_sub(explicit);
        let images = vec![MessageBuilder::image_message(); missing];
        if image_first {
            content.splice(0..0, images);
        } else {
            content.extend(images);
        }
    }
    if with_audio {
        // Python: `_format_list_with_image`'s audio parts, on the images'
        // side.
        if image_first {
            content.splice(0..0, audios());
        } else {
            content.extend(audios());
        }
    }
    Ok(json!({"role": role, "content": content}))
}

/// One message's text with `token` for each image (Python:
/// `MessageFormatter._format_with_token` with `repeat_image_token=True`):
/// the images the prompt places keep their place, the missing ones go
/// before or after the text as `image_first` says.
fn format_with_token(
    prompt: &Value,
    with_images: bool,
    num_images: usize,
    token: &str,
    image_first: bool,
) -> String {
    let (parts, explicit) = content_parts(prompt, with_images);
    let mut content: String = parts
        .iter()
        .map(|part| match part.get("type").and_then(Value::as_str) {
            Some("image") => token,
            _ => part.get("text").and_then(Value::as_str).unwrap_or(""),
        })
        .collect();
    if with_images && num_images > 0 {
        let prefix = token.repeat(num_images.saturating_sub(explicit));
        content = if image_first {
            format!("{prefix}{content}")
        } else {
            format!("{content}{prefix}")
        };
    }
    content
}

/// The messages [`apply_chat_template`] renders (Python:
/// `apply_chat_template(..., return_messages=True)`).
pub fn chat_messages(
    config: &Value,
    prompt: &Value,
    options: &ChatTemplateOptions,
) -> Result<Vec<Value>> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config {
            file: "config".into(),
            message: "no \"model_type\" string".into(),
        })?;
    let num_images = options.num_images;
    let (videos, fps) = (options.videos.as_slice(), options.fps);
    if message_format(model_type).is_none() {
        return Ok(text_only_messages(prompt));
    }
    check_audio_support(model_type, options.num_audios)?;
    let media = |skip_image_token, num_images, num_audios, videos| MessageMedia {
        skip_image_token,
        num_images,
        num_audios,
        videos,
        fps,
    };
    let num_audios = options.num_audios;
    let is_tool = |p: &Value, role: &str| {
        p.get("tool_calls").is_some() || p.get("tool_call_id").is_some() || role == "tool"
    };
    let mut messages = Vec::new();
    match prompt {
        Value::String(_) => {
            let m = media(false, num_images, num_audios, videos);
            messages.push(format_message(model_type, prompt, "user", &m)?);
        }
        Value::Object(object) => {
            let role = object.get("role").and_then(Value::as_str).unwrap_or("user");
            if is_tool(prompt, role) {
                messages.push(normalize_tool_message(prompt));
            } else {
                let content = object.get("content").ok_or_else(|| {
                    Error::InvalidArgument(
                        "the prompt message has no \"content\"; give {\"role\": ..., \"content\": ...}"
                            .into(),
                    )
                })?;
                let m = media(false, num_images, num_audios, videos);
                messages.push(format_message(model_type, content, role, &m)?);
            }
        }
        Value::Array(items) => {
            // Images a message places itself stay there; the rest go to the
            // last user message, as every audio clip does.
            let mut last_user = None;
            let mut image_counts = vec![0usize; items.len()];
            for (i, item) in items.iter().enumerate() {
                if item.is_string() {
                    last_user = Some(i);
                } else if let Some((role, content)) = get_role_content(item) {
                    if !matches!(role.as_str(), "system" | "assistant" | "tool") {
                        last_user = Some(i);
                    }
                    let tool_meta =
                        item.get("tool_calls").is_some() || item.get("tool_call_id").is_some();
                    if !matches!(role.as_str(), "system" | "assistant") || tool_meta {
                        image_counts[i] = content_media_count(&content, IMAGE_TYPES);
                    }
                }
            }
            let remaining = num_images.saturating_sub(image_counts.iter().sum());
            if let Some(slot) = last_user.and_then(|i| image_counts.get_mut(i)) {
                *slot += remaining;
            }
            for (i, (item, &count)) in items.iter().zip(&image_counts).enumerate() {
                let last = last_user == Some(i);
                let videos = if last { videos } else { &[] };
                let audios = if last { num_audios } else { 0 };
                if item.is_string() {
                    let m = media(count == 0, count, audios, videos);
                    messages.push(format_message(model_type, item, "user", &m)?);
                } else if let Some((role, content)) = get_role_content(item) {
                    if is_tool(item, &role) {
                        messages.push(normalize_tool_message(item));
                    } else {
                        let skip = count == 0 || matches!(role.as_str(), "system" | "assistant");
                        let audios = if matches!(role.as_str(), "system" | "assistant") {
                            0
                        } else {
                            audios
                        };
                        let m = media(skip, count, audios, videos);
                        messages.push(format_message(model_type, &content, &role, &m)?);
                    }
                }
            }
        }
        other => {
            let m = media(false, num_images, num_audios, videos);
            let text = Value::String(python_str(other));
            messages.push(format_message(model_type, &text, "user", &m)?);
        }
    }
    Ok(messages)
}

/// Refuses audio clips for a family whose registration lists none (Python
/// would add audio parts its template or processor then drops or fails
/// on).
fn check_audio_support(model_type: &str, num_audios: usize) -> Result<()> {
    let Some(family) = crate::registry::family(&model_type.to_lowercase()) else {
        return Ok(());
    };
    if num_audios > 0 && !family.media.audio {
        return Err(Error::UnsupportedMedia {
            model_type: family.model_type.to_string(),
            media: "audio".into(),
            supported: family.media.to_string(),
        });
    }
    Ok(())
}

/// Messages of a model without a message format: plain text contents
/// (Python: the text-only branch of `apply_chat_template`).
fn text_only_messages(prompt: &Value) -> Vec<Value> {
    let user = |text: String| json!({"role": "user", "content": text});
    match prompt {
        Value::String(s) => vec![user(s.clone())],
        Value::Object(object) => {
            let mut message = object.clone();
            let text = extract_text_from_content(object.get("content").unwrap_or(&json!("")));
            message.insert("content".into(), Value::String(text));
            vec![Value::Object(message)]
        }
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(user(s.clone())),
                Value::Object(object) => {
                    let (role, content) = get_role_content(item)?;
                    let mut message = object.clone();
                    if role != "tool" {
                        let text = extract_text_from_content(&content);
                        message.insert("content".into(), Value::String(text));
                    }
                    Some(Value::Object(message))
                }
                _ => None,
            })
            .collect(),
        other => vec![user(python_str(other))],
    }
}

/// The prompt string for `prompt` (Python: `apply_chat_template(processor,
/// config, prompt, add_generation_prompt, num_images=..., **kwargs)`):
/// messages in the model's format, rendered with the checkpoint's chat
/// template.
pub fn apply_chat_template(
    tokenizer: &Tokenizer,
    config: &Value,
    prompt: &Value,
    options: &ChatTemplateOptions,
) -> Result<String> {
    let messages = chat_messages(config, prompt, options)?;
    let model_type = config.get("model_type").and_then(Value::as_str);
    if model_type.is_some_and(|t| prompt_rules(t).last_message_only) {
        // Python returns `messages[-1]` unrendered: the bare string of
        // `PromptWithImageToken`, or (a tool message) its content's text.
        return Ok(match messages.last() {
            Some(Value::String(text)) => text.clone(),
            Some(message) => {
                extract_text_from_content(message.get("content").unwrap_or(&Value::Null))
            }
            None => String::new(),
        });
    }
    get_chat_template(
        tokenizer,
        &messages,
        options.add_generation_prompt,
        &options.kwargs,
    )
}

/// Renders `messages` with the tokenizer's chat template (Python:
/// `get_chat_template`, which calls the processor's `apply_chat_template`
/// with `enable_thinking=False` unless given).
///
/// Python falls back to a plain `Role: text` prompt when the checkpoint has
/// no template; this returns an [`Error::Template`] instead.
pub fn get_chat_template(
    tokenizer: &Tokenizer,
    messages: &[Value],
    add_generation_prompt: bool,
    kwargs: &Map<String, Value>,
) -> Result<String> {
    let template = tokenizer.chat_template().ok_or_else(|| Error::Template {
        context: "tokenizer".into(),
        message: "the checkpoint has no chat template; add chat_template.jinja (or \
                  chat_template.json) from the original model"
            .into(),
    })?;
    let mut kwargs = kwargs.clone();
    kwargs
        .entry("enable_thinking")
        .or_insert(Value::Bool(false));
    // transformers renders with the tokenizer's special tokens in the
    // context (`**special_tokens_map`): Gemma's template starts with
    // `{{ bos_token }}`.
    for (name, token) in [
        ("bos_token", tokenizer.bos_token()),
        ("eos_token", tokenizer.eos_token()),
        ("pad_token", tokenizer.pad_token()),
    ] {
        if let Some(token) = token {
            kwargs
                .entry(name)
                .or_insert_with(|| Value::String(token.to_string()));
        }
    }
    render_chat_template(template, messages, add_generation_prompt, &kwargs)
}

/// Default fuel of one chat-template render (see the top of this file):
/// over 70,000 times the 696 units the Qwen2.5-VL template spends on an
/// 11-message conversation.
pub const TEMPLATE_FUEL: u64 = 50_000_000;

/// Default size limit of a rendered prompt: 64 MiB.
pub const MAX_RENDERED_PROMPT_BYTES: usize = 64 << 20;

/// The resource limits of [`render_chat_template_with_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// minijinja fuel: roughly the VM instructions the render may run.
    pub fuel: u64,
    /// The most bytes the rendered prompt may have.
    pub max_output_bytes: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            fuel: TEMPLATE_FUEL,
            max_output_bytes: MAX_RENDERED_PROMPT_BYTES,
        }
    }
}

/// Renders a chat template as transformers does (`render_jinja_template`):
/// blocks trimmed and left-stripped, Python string methods, a `tojson` that
/// writes like `json.dumps` without escaping HTML, and `raise_exception`.
/// The context holds `messages`, `tools` and `documents` (none),
/// `add_generation_prompt` and `kwargs`. Runs under the default
/// [`TemplateLimits`].
pub fn render_chat_template(
    template: &str,
    messages: &[Value],
    add_generation_prompt: bool,
    kwargs: &Map<String, Value>,
) -> Result<String> {
    render_chat_template_with_limits(
        template,
        messages,
        add_generation_prompt,
        kwargs,
        &TemplateLimits::default(),
    )
}

/// [`render_chat_template`] under explicit `limits`: a template that runs
/// out of fuel, renders more than `max_output_bytes`, or can grow a string
/// exponentially ([`check_template_growth`]) is an
/// [`Error::LimitExceeded`].
pub fn render_chat_template_with_limits(
    template: &str,
    messages: &[Value],
    add_generation_prompt: bool,
    kwargs: &Map<String, Value>,
    limits: &TemplateLimits,
) -> Result<String> {
    render_measured(template, messages, add_generation_prompt, kwargs, limits).map(|(s, _)| s)
}

/// [`render_chat_template_with_limits`], also returning the fuel the render
/// consumed (to measure templates against [`TEMPLATE_FUEL`]).
pub fn render_measured(
    template: &str,
    messages: &[Value],
    add_generation_prompt: bool,
    kwargs: &Map<String, Value>,
    limits: &TemplateLimits,
) -> Result<(String, u64)> {
    check_template_growth(template)?;
    let exceeded = std::cell::Cell::new(false);
    let template_error = |e: minijinja::Error| {
        if e.kind() == minijinja::ErrorKind::OutOfFuel {
            Error::LimitExceeded {
                context: "chat template".into(),
                limit: "template fuel",
                message: format!(
                    "rendering ran out of fuel after {} units (about one per template \
                     instruction): the template loops too long for its input; fix the template's \
                     loops (real chat templates need a few thousand units)",
                    limits.fuel
                ),
            }
        } else if exceeded.get() {
            Error::LimitExceeded {
                context: "chat template".into(),
                limit: "rendered prompt bytes",
                message: format!(
                    "the rendered prompt exceeds the limit of {} bytes; shorten the messages or \
                     fix a template that repeats its output",
                    limits.max_output_bytes
                ),
            }
        } else {
            Error::Template {
                context: "chat_template".into(),
                message: format!("{e:#}"),
            }
        }
    };
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(limits.fuel));
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_template("chat_template", template)
        .map_err(template_error)?;
    let mut context: BTreeMap<String, minijinja::Value> = kwargs
        .iter()
        .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v)))
        .collect();
    context.insert(
        "messages".into(),
        minijinja::Value::from_serialize(messages),
    );
    context.insert("tools".into(), minijinja::Value::from(()));
    context.insert("documents".into(), minijinja::Value::from(()));
    context.insert(
        "add_generation_prompt".into(),
        minijinja::Value::from(add_generation_prompt),
    );
    let mut out = LimitedWriter {
        buf: Vec::new(),
        limit: limits.max_output_bytes,
        exceeded: &exceeded,
    };
    let captured = env
        .get_template("chat_template")
        .and_then(|t| t.render_captured_to(context, &mut out))
        .map_err(template_error)?;
    let fuel = captured
        .state()
        .fuel_levels()
        .map_or(0, |(consumed, _)| consumed);
    let text = String::from_utf8(out.buf).map_err(|e| Error::Template {
        context: "chat_template".into(),
        message: format!("rendered invalid UTF-8: {e}"),
    })?;
    Ok((text, fuel))
}

/// A byte buffer that fails the write that would take it past `limit`.
struct LimitedWriter<'a> {
    buf: Vec<u8>,
    limit: usize,
    exceeded: &'a std::cell::Cell<bool>,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.exceeded.set(true);
            return Err(std::io::Error::other("rendered prompt size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn raise_exception(message: String) -> std::result::Result<minijinja::Value, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        message,
    ))
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`.
fn tojson(
    value: minijinja::Value,
    kwargs: Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let invalid = |m: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m);
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let indent: Option<minijinja::Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(
                i64::try_from(v.clone())
                    .map_err(|_| invalid(format!("indent {v}")))?
                    .max(0) as usize,
            ),
        }),
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(other) => {
            return Err(invalid(format!(
                "separators must be two strings, got {other:?}"
            )));
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let json = serde_json::to_value(&value).map_err(|e| invalid(format!("tojson: {e}")))?;
    let dumper = PyJson {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    dumper.write(&json, 0, &mut out);
    Ok(out)
}

/// Python's `json.dumps` layout.
struct PyJson {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl PyJson {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
    }

    fn write(&self, value: &Value, depth: usize, out: &mut String) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => self.write_str(s, out),
            Value::Array(items) if items.is_empty() => out.push_str("[]"),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Value::Object(map) if map.is_empty() => out.push_str("{}"),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write_str(key, out);
                    out.push_str(&self.key_sep);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }

    fn write_str(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}
