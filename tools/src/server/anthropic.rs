//! Anthropic's `POST /v1/messages` (Python: `server/anthropic.py`), plain
//! and streaming (`message_start`, `content_block_start`, `ping`,
//! `content_block_delta`..., `content_block_stop`, `message_delta`,
//! `message_stop`).
//!
//! Divergences from Python: errors use Anthropic's error object; tools and
//! thinking are not ported (`tools` is refused with 400); `ping` is sent
//! after `content_block_start` as Anthropic's stream does.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::engine::{Finish, Update};
use super::errors::{ApiError, Dialect};
use super::normalize::{anthropic_content, chat_prompt};
use super::openai::refuse_unported;
use super::schemas::{AnthropicRequest, ChatMessage, parse_body};
use super::sse::{collect, first_update, stream};
use super::{AppState, body_bytes, random_id};

/// Python: `_anthropic_stop_reason`.
fn stop_reason(finish: &Finish) -> &'static str {
    if finish.stop_sequence.is_some() {
        "stop_sequence"
    } else if finish.finish_reason == "length" {
        "max_tokens"
    } else {
        "end_turn"
    }
}

/// Anthropic's `usage`.
fn usage(input_tokens: usize, output_tokens: usize) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

/// An SSE event of `kind` with `data`.
fn event(kind: &str, data: Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(state, body).await {
        Ok(response) => response,
        Err(e) => e.in_dialect(Dialect::Anthropic).into_response(),
    }
}

async fn run(state: AppState, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let raw: Value = parse_body(&body)?;
    refuse_unported(&raw, &["tools"])?;
    let request: AnthropicRequest = parse_body(&body)?;
    state.check_model(&request.model)?;
    let params = request.sampling.params(state.defaults())?;
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, m) in request.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "user" | "assistant") {
            return Err(ApiError::bad_param(
                "messages",
                format!(
                    "messages[{i}].role must be user or assistant, got {:?}",
                    m.role
                ),
            ));
        }
        messages.push(ChatMessage {
            role: m.role.clone(),
            content: anthropic_content(&m.content)?,
        });
    }
    let system = match &request.system {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(mlx_vlm::prompt_utils::extract_text_from_content(other)),
    };
    let prompt = chat_prompt(&messages, system.as_deref())?;
    let mut updates = state
        .submit(prompt, params, request.sampling.stop())
        .await?;
    let first = first_update(&mut updates).await?;
    let id = random_id("msg_");
    let model = request.model.clone();
    if !request.stream {
        let done = collect(first, &mut updates).await?;
        return Ok(axum::Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": done.text}],
            "stop_reason": stop_reason(&done.finish),
            "stop_sequence": done.finish.stop_sequence,
            "usage": usage(done.finish.prompt_tokens, done.finish.completion_tokens),
        }))
        .into_response());
    }
    let mut started = false;
    Ok(stream(first, updates, move |update| {
        let mut events = Vec::new();
        let mut start = |prompt_tokens| {
            if !started {
                started = true;
                events.push(event(
                    "message_start",
                    json!({"type": "message_start", "message": {
                        "id": id, "type": "message", "role": "assistant", "model": model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": usage(prompt_tokens, 0),
                    }}),
                ));
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}}),
                ));
                events.push(event("ping", json!({"type": "ping"})));
            }
        };
        match update {
            Update::Started { prompt_tokens } => {
                start(prompt_tokens);
                (events, false)
            }
            Update::Delta { text, .. } => {
                start(0);
                if !text.is_empty() {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": text}}),
                    ));
                }
                (events, false)
            }
            Update::Done(finish) => {
                start(finish.prompt_tokens);
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                events.push(event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": stop_reason(&finish),
                                     "stop_sequence": finish.stop_sequence},
                           "usage": {"output_tokens": finish.completion_tokens}}),
                ));
                events.push(event("message_stop", json!({"type": "message_stop"})));
                (events, true)
            }
            Update::Failed(e) => {
                events.push(event("error", e.in_dialect(Dialect::Anthropic).body()));
                (events, true)
            }
        }
    }))
}
