//! OpenAI's `POST /v1/chat/completions` and `GET /v1/models` (Python:
//! `server/openai.py`: `chat_completions_endpoint`; `app.py`:
//! `models_endpoint`).
//!
//! Divergences from Python:
//! - `stop` ends generation at the first stop sequence and cuts it from the
//!   text, as OpenAI's reference says (Python's plain path ignores it).
//! - `stream_options.include_usage` adds OpenAI's last chunk with `usage`
//!   and no choices only when asked (Python always sends one).
//! - Tools, `response_format`, `logprobs` and `n` > 1 are refused with 400
//!   (not ported), instead of being handled or ignored.
//! - The header `x-mlx-vlm-token-ids: true` adds the generated `token_ids`
//!   to each choice (an extension, for exact comparisons in tests).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::engine::{Finish, Update};
use super::errors::ApiError;
use super::normalize::chat_prompt;
use super::schemas::{ChatRequest, parse_body};
use super::sse::{collect, first_update, stream};
use super::{AppState, body_bytes, random_id, unix_time};

/// The header asking for the generated token ids.
pub const TOKEN_IDS_HEADER: &str = "x-mlx-vlm-token-ids";

/// Whether `headers` ask for the token ids.
pub fn wants_token_ids(headers: &HeaderMap) -> bool {
    headers
        .get(TOKEN_IDS_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v, "1" | "true"))
}

/// Refuses request fields this port does not implement.
pub fn refuse_unported(body: &Value, fields: &[&str]) -> Result<(), ApiError> {
    for field in fields {
        match body.get(*field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => {
                return Err(ApiError::bad_param(
                    field,
                    format!("{field} is not supported by this server; remove it"),
                ));
            }
        }
    }
    Ok(())
}

/// OpenAI's `usage` (Python: `UsageStats`), with the prompt tokens a
/// kept conversation's cache held.
pub fn usage(finish: &Finish) -> Value {
    json!({
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finish.cached_tokens},
    })
}

/// `GET /v1/models`: the served model (Python: `models_endpoint`, with the
/// model type and context length added).
pub async fn models(State(state): State<AppState>) -> Response {
    let info = &state.engine.info;
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": info.id,
            "object": "model",
            "created": state.created(),
            "owned_by": "mlx-vlm",
            "loaded": true,
            "model_type": info.model_type,
            "context_length": info.context_length,
        }],
    }))
    .into_response()
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match chat(state, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn chat(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let raw: Value = parse_body(&body)?;
    refuse_unported(&raw, &["tools", "response_format", "logprobs"])?;
    let request: ChatRequest = parse_body(&body)?;
    state.check_model(&request.model)?;
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_param("n", "only n = 1 is supported"));
    }
    let params = request.sampling.params(state.defaults())?;
    let prompt = chat_prompt(&request.messages, None)?;
    let mut updates = state
        .submit(prompt, params, request.sampling.stop())
        .await?;
    let first = first_update(&mut updates).await?;
    let id = random_id("chatcmpl-");
    let created = unix_time();
    let model = request.model.clone();
    let token_ids = wants_token_ids(&headers);
    if !request.stream {
        let done = collect(first, &mut updates).await?;
        // Python answers null content for empty text.
        let content = if done.text.is_empty() {
            Value::Null
        } else {
            Value::String(done.text)
        };
        let mut choice = json!({
            "index": 0,
            "finish_reason": done.finish.finish_reason,
            "message": {"role": "assistant", "content": content},
            "logprobs": null,
        });
        if token_ids {
            choice["token_ids"] = json!(done.tokens);
        }
        return Ok(axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage(&done.finish),
        }))
        .into_response());
    }
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let chunk = move |delta: Value, finish_reason: Value, tokens: Option<&[u32]>| {
        let mut choice = json!({
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        });
        if let (true, Some(tokens)) = (token_ids, tokens) {
            choice["token_ids"] = json!(tokens);
        }
        let value = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        });
        Event::default().data(value.to_string())
    };
    let usage_chunk = {
        let (id, model) = (random_id("chatcmpl-"), request.model.clone());
        move |finish: &Finish| {
            Event::default().data(
                json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage(finish),
                })
                .to_string(),
            )
        }
    };
    let mut started = false;
    Ok(stream(first, updates, move |update| {
        let mut events = Vec::new();
        if !started {
            started = true;
            events.push(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
                None,
            ));
        }
        match update {
            Update::Started { .. } => (events, false),
            Update::Delta { text, tokens } => {
                if !text.is_empty() || (token_ids && !tokens.is_empty()) {
                    events.push(chunk(json!({"content": text}), Value::Null, Some(&tokens)));
                }
                (events, false)
            }
            Update::Done(finish) => {
                events.push(chunk(json!({}), finish.finish_reason.into(), None));
                if include_usage {
                    events.push(usage_chunk(&finish));
                }
                events.push(Event::default().data("[DONE]"));
                (events, true)
            }
            Update::Failed(e) => {
                events.push(Event::default().data(e.body().to_string()));
                (events, true)
            }
        }
    }))
}
