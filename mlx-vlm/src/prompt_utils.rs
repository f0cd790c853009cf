//! Chat messages and their rendering: Python's `mlx_vlm/prompt_utils.py`
//! (`extract_text_from_content`, `MessageBuilder`, `MessageFormatter`,
//! `get_message_json`, `get_chat_template`, `apply_chat_template`) with
//! Python's whole table of message formats (`MODEL_CONFIG`, every model
//! type it lists, ported or not), rendered with minijinja as transformers
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

/// How a model wants a user message laid out (Python: `MessageFormat`,
/// every member). Each family's registration
/// ([`crate::registry::Family::message_format`]) names its own; model
/// types this crate does not port take theirs from [`MODEL_CONFIG`], as
/// in Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// Content parts, images after the text (Python: `LIST_WITH_IMAGE`).
    ListWithImage,
    /// Content parts, images first (Python: `LIST_WITH_IMAGE_FIRST`).
    ListWithImageFirst,
    /// Content parts, images first as `{"type": "image_url"}` (Python:
    /// `LIST_WITH_IMAGE_URL_FIRST`).
    ListWithImageUrlFirst,
    /// Content parts with text parts `{"type": "text", "text", "content"}`,
    /// images before the text and audio clips after it; an assistant
    /// message's content is its first part's text (Python:
    /// `LIST_WITH_IMAGE_TYPE`, `_format_list_with_image_type`).
    ListWithImageType,
    /// As [`MessageFormat::ListWithImageType`] (Python:
    /// `LIST_WITH_IMAGE_TYPE_TEXT`, the same parts with
    /// `message_type="text"`; Gemma 3n).
    ListWithImageTypeText,
    /// As [`MessageFormat::ListWithImageTypeText`], images after the text
    /// (Python: `LIST_WITH_IMAGE_TYPE_TEXT_IMAGE_LAST`).
    ListWithImageTypeTextImageLast,
    /// One string content, `<image>` once per image before the text
    /// (Python: `IMAGE_TOKEN`).
    ImageToken,
    /// As [`MessageFormat::ImageToken`] with `<|image|>` (Python:
    /// `IMAGE_TOKEN_PIPE`).
    ImageTokenPipe,
    /// As [`MessageFormat::ImageToken`] with `<im_patch>` (Python:
    /// `IMAGE_PATCH_TOKEN`).
    ImagePatchToken,
    /// The text with `<start_of_image>` once per image after it, as one
    /// string content (Python: `START_IMAGE_TOKEN`; Gemma 3).
    StartImageToken,
    /// As [`MessageFormat::ImageToken`] with `<image>\n` (Python:
    /// `IMAGE_TOKEN_NEWLINE`).
    ImageTokenNewline,
    /// One `<image>` before the text whatever the number of images
    /// (Python: `SINGLE_IMAGE_TOKEN`).
    SingleImageToken,
    /// As [`MessageFormat::ImageToken`] with `(<image>./</image>)\n`
    /// (Python: `IMAGE_TOKEN_WRAPPED`).
    ImageTokenWrapped,
    /// `<|image_1|><|image_2|>...` then `<|audio_1|>...` before the text
    /// (Python: `NUMBERED_IMAGE_TOKENS`).
    NumberedImageTokens,
    /// The bare text, not a message object (Python: `PROMPT_ONLY`).
    PromptOnly,
    /// A message whose content is the text alone (Python: `TEXT_ONLY`).
    TextOnly,
    /// A bare string, `<image>` once per image before the text (Python:
    /// `PROMPT_WITH_IMAGE_TOKEN`; PaliGemma). Not a message object: the
    /// family's [`PromptRules::last_message_only`] hands it to the
    /// processor as the prompt.
    PromptWithImageToken,
    /// A bare string, the text then `<start_of_image>` once per image
    /// (Python: `PROMPT_WITH_START_IMAGE_TOKEN`).
    PromptWithStartImageToken,
    /// The videos' entries, then the text (Python: `VIDEO_WITH_TEXT`,
    /// `_format_video_message`); a message without videos is an error, as
    /// Python's `kwargs["video"]` is.
    VideoWithText,
}

/// The message format of every model type Python mlx-vlm 0.7.6 lists
/// (Python: `MODEL_CONFIG`, copied whole and in its order, so a model type
/// formats its messages as in Python whether or not this crate ports it).
/// A registered family's [`crate::registry::Family::message_format`] is
/// its entry here (a test checks it).
pub const MODEL_CONFIG: &[(&str, MessageFormat)] = {
    use MessageFormat::*;
    &[
        ("jina_vlm", ImageTokenPipe),
        ("jvlm", ImageTokenPipe),
        ("idefics2", ListWithImage),
        ("idefics3", ListWithImageFirst),
        ("lfm2-vl", ListWithImageFirst),
        ("lfm2_vl", ListWithImageFirst),
        ("aya_vision", ListWithImage),
        ("cohere2_vision", ListWithImage),
        ("cohere_compass", ListWithImageFirst),
        ("paddleocr_vl", ListWithImageFirst),
        ("qwen2_vl", ListWithImage),
        ("qwen2_5_vl", ListWithImageFirst),
        ("mimo_v2", ListWithImageFirst),
        ("zaya1_vl", ListWithImageFirst),
        ("qwen3_vl", ListWithImageFirst),
        ("qwen3_vl_moe", ListWithImageFirst),
        ("mage_vl", ListWithImageFirst),
        ("qwen3_5", ListWithImageFirst),
        ("prism_hadamard_qwen35", ListWithImageFirst),
        ("qwen3_5_moe", ListWithImageFirst),
        ("qwen4_exp", ListWithImageFirst),
        ("qwen3_omni_moe", ListWithImageFirst),
        ("minicpmo", ImageToken),
        ("minicpmv4_6", ImageTokenWrapped),
        ("mistral3", ListWithImageFirst),
        ("glm4v", ListWithImageFirst),
        ("glm4v_moe", ListWithImageFirst),
        ("glm5_next", ListWithImageFirst),
        ("glm_ocr", ListWithImageFirst),
        ("dots_ocr", ListWithImageFirst),
        ("ernie4_5_moe_vl", ListWithImageUrlFirst),
        ("internvl_chat", ListWithImageType),
        ("internvl", ListWithImageType),
        ("llmjpvl", ImageToken),
        ("nemotron_h_nano_omni", ListWithImageType),
        ("nemotronh_nano_omni_reasoning_v3", ListWithImageType),
        ("kimi_vl", ListWithImage),
        ("kimi_k25", ListWithImage),
        ("kimi_k3", ListWithImage),
        ("locateanything", ListWithImageFirst),
        ("gemma3", StartImageToken),
        ("gemma3n", ListWithImageTypeText),
        ("gemma4", ListWithImageTypeText),
        ("gemma4_unified", ListWithImageTypeText),
        ("diffusion_gemma", ListWithImageTypeText),
        ("llama4", ListWithImage),
        ("smolvlm", ListWithImageFirst),
        ("llava", ListWithImage),
        ("llava_next", ListWithImage),
        ("llava_onevision", ListWithImage),
        ("granite_vision", ListWithImage),
        ("granite4_vision", ListWithImage),
        ("mllama", ListWithImage),
        ("pixtral", ListWithImageTypeText),
        ("molmo2", ListWithImageFirst),
        ("molmo_point", ListWithImageFirst),
        ("step3p7", ImagePatchToken),
        ("minimax_m3_vl", ListWithImageFirst),
        ("muse_glimmer", ListWithImageFirst),
        ("llava-qwen2", ImageTokenNewline),
        ("llava_qwen2", ImageTokenNewline),
        ("bunny-llama", ImageTokenNewline),
        ("phi3_v", NumberedImageTokens),
        ("phi4mm", NumberedImageTokens),
        ("multi_modality", ImageToken),
        ("deepseek_vl_v2", ImageTokenNewline),
        ("deepseekocr_2", ImageTokenNewline),
        ("deepseekocr", ImageTokenNewline),
        ("unlimited-ocr", SingleImageToken),
        ("phi4-siglip", ImageTokenNewline),
        ("hunyuan_vl", ListWithImageFirst),
        ("youtu_vl", ListWithImageFirst),
        ("inkling", ListWithImageFirst),
        ("inkling_mm_model", ListWithImageFirst),
        ("florence2", PromptOnly),
        ("plamo2vl", PromptOnly),
        ("molmo", TextOnly),
        ("moondream2", PromptOnly),
        ("moondream3", PromptOnly),
        ("falcon_ocr", PromptOnly),
        ("paligemma", PromptWithImageToken),
        ("laguna", TextOnly),
        ("nemotron_labs_diffusion", TextOnly),
        ("deepseek_v4", ListWithImageFirst),
        ("deepseek_v41", ListWithImageFirst),
        ("hrm_text", TextOnly),
        ("minimax_m3", TextOnly),
        ("qwen3_5_text", TextOnly),
        ("limite", TextOnly),
    ]
};

/// Model types that take one image per message (Python:
/// `SINGLE_IMAGE_ONLY_MODELS`); a registered family says so in its
/// [`PromptRules::single_image_only`] (a test checks they agree).
pub const SINGLE_IMAGE_ONLY_MODELS: &[&str] = &[
    "llava_next",
    "llava-qwen2",
    "bunny-llama",
    "paligemma",
    "multi_modality",
    "mllama",
    "falcon_ocr",
];

/// Model types whose prompt is the last message, unrendered (Python:
/// `apply_chat_template`'s `if model_type in ["paligemma", "florence2",
/// "falcon_ocr"]: return messages[-1]`); a registered family says so in
/// its [`PromptRules::last_message_only`].
pub const LAST_MESSAGE_ONLY_MODELS: &[&str] = &["paligemma", "florence2", "falcon_ocr"];

/// Model types whose messages carry video entries when videos are given
/// (Python: the list in `MessageFormatter.format_message`).
pub const VIDEO_MESSAGE_MODELS: &[&str] = &[
    "qwen2_vl",
    "qwen2_5_vl",
    "mimo_v2",
    "qwen3_vl",
    "mage_vl",
    "qwen3_vl_moe",
    "qwen3_5",
    "prism_hadamard_qwen35",
    "qwen3_5_moe",
    "qwen4_exp",
    "qwen3_omni_moe",
    "gemma4",
    "gemma4_unified",
    "diffusion_gemma",
    "minicpmv4_6",
    "minimax_m3_vl",
    "llava_onevision",
    "glm5_next",
];

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

/// The message format of `model_type`: its registration's, else its
/// [`MODEL_CONFIG`] entry (Python: `MODEL_CONFIG.get(model_name.lower())`).
pub fn message_format(model_type: &str) -> Option<MessageFormat> {
    let model_type = model_type.to_lowercase();
    crate::registry::family(&model_type)
        .map(|family| family.message_format)
        .or_else(|| {
            MODEL_CONFIG
                .iter()
                .find(|(name, _)| *name == model_type)
                .map(|(_, format)| *format)
        })
}

/// The prompt rules of `model_type`: its registration's, else its
/// membership of [`SINGLE_IMAGE_ONLY_MODELS`] and
/// [`LAST_MESSAGE_ONLY_MODELS`].
pub fn prompt_rules(model_type: &str) -> PromptRules {
    let model_type = model_type.to_lowercase();
    crate::registry::family(&model_type).map_or_else(
        || PromptRules {
            single_image_only: SINGLE_IMAGE_ONLY_MODELS.contains(&model_type.as_str()),
            last_message_only: LAST_MESSAGE_ONLY_MODELS.contains(&model_type.as_str()),
        },
        |family| family.prompt_rules,
    )
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

/// One part of a message's content, before the format renders it (Python:
/// what `MessageFormatter._content_parts` hands its builders).
enum Part {
    Text(String),
    /// The `n`-th image the prompt places itself, from 0.
    Image(usize),
}

/// The content parts of `prompt`, text and images in order, and the number
/// of images among them (Python: `MessageFormatter._content_parts`): the
/// prompt's text alone unless it is a list and `include_images`.
fn content_parts(prompt: &Value, include_images: bool) -> (Vec<Part>, usize) {
    let items = match prompt.as_array() {
        Some(items) if include_images => items,
        _ => return (vec![Part::Text(extract_text_from_content(prompt))], 0),
    };
    let (mut parts, mut images) = (Vec::new(), 0);
    for item in items.iter().filter(|i| i.is_object()) {
        match item.get("type").and_then(Value::as_str) {
            Some(t) if IMAGE_TYPES.contains(&t) => {
                parts.push(Part::Image(images));
                images += 1;
            }
            Some("text" | "input_text" | "output_text") => {
                if let Some(text) =
                    truthy_str(item.get("text")).or_else(|| truthy_str(item.get("content")))
                {
                    parts.push(Part::Text(text.to_string()));
                }
            }
            _ => {}
        }
    }
    (parts, images)
}

/// The media of one message (Python: `get_message_json`'s keyword
/// arguments `skip_image_token`, `skip_audio_token`, `num_images`,
/// `num_audios`, `video` and `fps`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageMedia<'a> {
    /// Adds no image parts or tokens (Python: `skip_image_token`).
    pub skip_image_token: bool,
    /// Adds no audio parts or tokens (Python: `skip_audio_token`).
    pub skip_audio_token: bool,
    /// Images that go with the message (Python: `num_images`); those the
    /// prompt places itself count towards it.
    pub num_images: usize,
    /// Audio clips that go with the message (Python: `num_audios`).
    pub num_audios: usize,
    /// Videos, by path (Python: the `video` keyword). Only the model types
    /// of [`VIDEO_MESSAGE_MODELS`] and [`MessageFormat::VideoWithText`]
    /// write them into the message.
    ///
    /// Give them to one message only: Python adds the video entries to
    /// every message of a conversation (system and assistant turns too), so
    /// a `--system` prompt with a video gets two video placeholders and
    /// fails in its processor; [`chat_messages`] gives them to the message
    /// that takes the side-channel images (the last user message).
    pub videos: &'a [String],
    /// The videos' sampling rate (Python: the `fps` keyword, `None` when
    /// not given).
    pub fps: Option<f64>,
}

/// One message in the layout `model_name` wants (Python: `get_message_json`
/// through `MessageFormatter.format_message`): a message object, or for the
/// prompt-only formats a bare string, with the images and audio clips of
/// `media` laid out as the model type's [`MessageFormat`] says.
///
/// An error for a model type without a format (Python: `ValueError:
/// Unsupported model`), for more than one image to a single-image model
/// type, and for [`MessageFormat::VideoWithText`] without videos.
pub fn get_message_json(
    model_name: &str,
    prompt: &Value,
    role: &str,
    media: &MessageMedia<'_>,
) -> Result<Value> {
    let model_name = model_name.to_lowercase();
    let format = message_format(&model_name).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unsupported model {model_name:?} for chat messages; supported: {}",
            MODEL_CONFIG
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut media = *media;
    let mut prompt = prompt.clone();
    if prompt.is_array() {
        let explicit = content_media_count(&prompt, IMAGE_TYPES);
        if explicit == 0 {
            prompt = Value::String(extract_text_from_content(&prompt));
        } else if role == "user" && !media.skip_image_token {
            media.num_images = media.num_images.max(explicit);
        }
    }
    if media.num_images > 1 && prompt_rules(&model_name).single_image_only {
        // Python: `format_message`'s multi-image check.
        return Err(Error::InvalidArgument(format!(
            "Model {model_name} does not support multi-image chat. Please only use 1 image."
        )));
    }
    let formatter = MessageFormatter {
        role,
        with_images: role == "user" && !media.skip_image_token,
        with_audio: role == "user" && !media.skip_audio_token && media.num_audios > 0,
        media: &media,
    };
    if VIDEO_MESSAGE_MODELS.contains(&model_name.as_str()) && !media.videos.is_empty() {
        return Ok(formatter.video_message(&prompt));
    }
    use MessageFormat::*;
    Ok(match format {
        ListWithImage => formatter.list_with_image(&prompt, false, false),
        ListWithImageFirst => formatter.list_with_image(&prompt, true, false),
        ListWithImageUrlFirst => formatter.list_with_image(&prompt, true, true),
        ListWithImageType | ListWithImageTypeText => formatter.list_with_image_type(&prompt, true),
        ListWithImageTypeTextImageLast => formatter.list_with_image_type(&prompt, false),
        ImageToken => formatter.with_token(&prompt, "<image>", true, true),
        ImageTokenPipe => formatter.with_token(&prompt, "<|image|>", true, true),
        ImagePatchToken => formatter.with_token(&prompt, "<im_patch>", true, true),
        StartImageToken => formatter.with_token(&prompt, "<start_of_image>", false, true),
        ImageTokenNewline => formatter.with_token(&prompt, "<image>\n", true, true),
        SingleImageToken => formatter.with_token(&prompt, "<image>", true, false),
        ImageTokenWrapped => formatter.with_token(&prompt, "(<image>./</image>)\n", true, true),
        NumberedImageTokens => formatter.numbered_tokens(&prompt),
        PromptOnly => Value::String(extract_text_from_content(&prompt)),
        TextOnly => json!({"role": role, "content": extract_text_from_content(&prompt)}),
        // Python's lambdas ignore the role and the skip flags.
        PromptWithImageToken => Value::String(format!(
            "{}{}",
            "<image>".repeat(media.num_images),
            extract_text_from_content(&prompt)
        )),
        PromptWithStartImageToken => Value::String(format!(
            "{}{}",
            extract_text_from_content(&prompt),
            "<start_of_image>".repeat(media.num_images)
        )),
        VideoWithText => {
            if media.videos.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "model {model_name} formats its messages around videos; give at least one video"
                )));
            }
            formatter.video_message(&prompt)
        }
    })
}

/// One message's formatting (Python: `MessageFormatter`'s `_format_*`
/// methods, with the flags they all compute first).
struct MessageFormatter<'a> {
    role: &'a str,
    /// A user message that takes image parts.
    with_images: bool,
    /// A user message that takes audio parts.
    with_audio: bool,
    media: &'a MessageMedia<'a>,
}

impl MessageFormatter<'_> {
    /// The images to add besides the `explicit` ones the prompt places.
    fn missing_images(&self, explicit: usize) -> usize {
        if self.with_images && self.media.num_images > 0 {
            self.media.num_images.saturating_sub(explicit)
        } else {
            0
        }
    }

    fn audio_parts(&self) -> Vec<Value> {
        let n = if self.with_audio {
            self.media.num_audios
        } else {
            0
        };
        vec![MessageBuilder::audio_message(); n]
    }

    fn parts_to_values(parts: Vec<Part>, image: &Value) -> Vec<Value> {
        parts
            .into_iter()
            .map(|part| match part {
                Part::Text(text) => MessageBuilder::text_message(&text),
                Part::Image(_) => image.clone(),
            })
            .collect()
    }

    /// Python: `_format_list_with_image`.
    fn list_with_image(&self, prompt: &Value, image_first: bool, use_image_url: bool) -> Value {
        let image = if use_image_url {
            json!({"type": "image_url"})
        } else {
            MessageBuilder::image_message()
        };
        let (parts, explicit) = content_parts(prompt, self.with_images);
        let mut content = Self::parts_to_values(parts, &image);
        let images = vec![image; self.missing_images(explicit)];
        let audios = self.audio_parts();
        for added in [images, audios] {
            if image_first {
                content.splice(0..0, added);
            } else {
                content.extend(added);
            }
        }
        json!({"role": self.role, "content": content})
    }

    /// Python: `_format_list_with_image_type` (`message_type` "content"
    /// and "text" build the same text parts).
    fn list_with_image_type(&self, prompt: &Value, image_first: bool) -> Value {
        let image = MessageBuilder::image_message();
        let (parts, explicit) = content_parts(prompt, self.with_images);
        let mut content = Self::parts_to_values(parts, &image);
        if self.role == "user" {
            let images = vec![image; self.missing_images(explicit)];
            if image_first {
                content.splice(0..0, images);
            } else {
                content.extend(images);
            }
            content.extend(self.audio_parts());
        }
        if self.role == "assistant" {
            let first = content.first().cloned().unwrap_or(Value::Null);
            let text = first.get("content").or_else(|| first.get("text"));
            return json!({"role": self.role, "content": text});
        }
        json!({"role": self.role, "content": content})
    }

    /// Python: `_format_with_token`: the text with `token` for each image,
    /// the images the prompt places kept in place, the missing ones before
    /// or after the text as `image_first` says (with `repeat_image_token`
    /// false, one token for all), and `<|audio_N|>` before it all.
    fn with_token(&self, prompt: &Value, token: &str, image_first: bool, repeat: bool) -> Value {
        let (parts, explicit) = content_parts(prompt, self.with_images);
        let mut content: String = parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Image(i) if repeat || *i == 0 => token,
                Part::Image(_) => "",
            })
            .collect();
        if self.with_images && self.media.num_images > 0 {
            let prefix = match (repeat, explicit) {
                (true, _) => token.repeat(self.media.num_images.saturating_sub(explicit)),
                (false, 0) => token.to_string(),
                (false, _) => String::new(),
            };
            content = if image_first {
                format!("{prefix}{content}")
            } else {
                format!("{content}{prefix}")
            };
        }
        if self.with_audio {
            content = format!("{}{content}", numbered("audio", 0, self.media.num_audios));
        }
        json!({"role": self.role, "content": content})
    }

    /// Python: `_format_numbered_tokens`: `<|image_N|>` for each image (the
    /// prompt's own numbered after the missing ones, which go first), then
    /// `<|audio_N|>`, before the text.
    fn numbered_tokens(&self, prompt: &Value) -> Value {
        let placed = content_media_count(prompt, IMAGE_TYPES);
        let missing_before = self.media.num_images.saturating_sub(placed);
        let (parts, explicit) = content_parts(prompt, self.with_images);
        let mut content: String = parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Image(i) => format!("<|image_{}|>", missing_before + i + 1),
            })
            .collect();
        if self.role == "user" {
            let mut prefix = String::new();
            if !self.media.skip_image_token && self.media.num_images > 0 {
                let missing = self.media.num_images.saturating_sub(explicit);
                prefix.push_str(&numbered("image", 0, missing));
            }
            if self.with_audio {
                prefix.push_str(&numbered("audio", 0, self.media.num_audios));
            }
            content = format!("{prefix}{content}");
        }
        json!({"role": self.role, "content": content})
    }

    /// Python: `_format_video_message`: the missing images, the videos'
    /// entries (Python's default `max_pixels`), the audio clips, then the
    /// prompt's parts.
    fn video_message(&self, prompt: &Value) -> Value {
        let image = MessageBuilder::image_message();
        let (parts, explicit) = content_parts(prompt, self.with_images);
        let images = if self.with_images {
            self.media.num_images.saturating_sub(explicit)
        } else {
            0
        };
        let mut content = vec![image.clone(); images];
        content.extend(
            self.media
                .videos
                .iter()
                .map(|v| MessageBuilder::video_message(v, 224 * 224, self.media.fps)),
        );
        content.extend(self.audio_parts());
        content.extend(Self::parts_to_values(parts, &image));
        json!({"role": self.role, "content": content})
    }
}

/// `<|{kind}_{first+1}|>...<|{kind}_{first+count}|>`.
fn numbered(kind: &str, first: usize, count: usize) -> String {
    (first + 1..=first + count)
        .map(|n| format!("<|{kind}_{n}|>"))
        .collect()
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
    // Python: `skip_audio_token` is true exactly where `num_audios` is 0.
    let media = |skip_image_token, num_images, num_audios: usize, videos| MessageMedia {
        skip_image_token,
        skip_audio_token: num_audios == 0,
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
            messages.push(get_message_json(model_type, prompt, "user", &m)?);
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
                messages.push(get_message_json(model_type, content, role, &m)?);
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
                    messages.push(get_message_json(model_type, item, "user", &m)?);
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
                        messages.push(get_message_json(model_type, &content, &role, &m)?);
                    }
                }
            }
        }
        other => {
            let m = media(false, num_images, num_audios, videos);
            let text = Value::String(python_str(other));
            messages.push(get_message_json(model_type, &text, "user", &m)?);
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
