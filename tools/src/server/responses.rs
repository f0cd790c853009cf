//! OpenAI's Responses API, `POST /v1/responses` (Python: the
//! `responses_endpoint` of `server/openai.py`), plain and streaming.
//!
//! Divergences from Python: no stored responses (`previous_response_id`,
//! retrieval, compaction are refused or absent), no tools or reasoning
//! items; `input` takes a string or message items.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::engine::{Finish, Update};
use super::errors::ApiError;
use super::normalize::{chat_prompt, responses_input};
use super::openai::refuse_unported;
use super::schemas::{ResponsesRequest, parse_body};
use super::sse::{collect, first_update, stream};
use super::{AppState, body_bytes, random_id, unix_time};

/// The response object; `text` so far and `finish_reason` once done.
fn response_object(
    id: &str,
    message_id: &str,
    model: &str,
    created: u64,
    text: &str,
    finish_reason: Option<&str>,
    tokens: (usize, usize),
) -> Value {
    let status = match finish_reason {
        None => "in_progress",
        Some("length") => "incomplete",
        Some(_) => "completed",
    };
    let output = if finish_reason.is_some() {
        json!([{
            "type": "message", "id": message_id, "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }])
    } else {
        json!([])
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "incomplete_details": if finish_reason == Some("length") {
            json!({"reason": "max_output_tokens"})
        } else {
            Value::Null
        },
        "model": model,
        "output": output,
        "usage": {
            "input_tokens": tokens.0,
            "output_tokens": tokens.1,
            "total_tokens": tokens.0 + tokens.1,
        },
    })
}

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(state, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(state: AppState, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let raw: Value = parse_body(&body)?;
    refuse_unported(&raw, &["tools", "previous_response_id", "text"])?;
    let request: ResponsesRequest = parse_body(&body)?;
    state.check_model(&request.model)?;
    let params = request.sampling.params(state.defaults())?;
    let messages = responses_input(&request.input)?;
    let prompt = chat_prompt(&messages, request.instructions.as_deref())?;
    let mut updates = state
        .submit(prompt, params, request.sampling.stop())
        .await?;
    let first = first_update(&mut updates).await?;
    let id = random_id("resp_");
    let message_id = random_id("msg_");
    let created = unix_time();
    let model = request.model.clone();
    if !request.stream {
        let done = collect(first, &mut updates).await?;
        let mut object = response_object(
            &id,
            &message_id,
            &model,
            created,
            &done.text,
            Some(done.finish.finish_reason),
            (done.finish.prompt_tokens, done.finish.completion_tokens),
        );
        object["output_text"] = done.text.into();
        return Ok(axum::Json(object).into_response());
    }
    let mut sequence = 0u64;
    let mut text = String::new();
    let mut prompt_tokens = 0;
    Ok(stream(first, updates, move |update| {
        let mut events = Vec::new();
        let mut push = |kind: &str, mut data: Value| {
            data["type"] = kind.into();
            data["sequence_number"] = sequence.into();
            sequence += 1;
            events.push(Event::default().event(kind).data(data.to_string()));
        };
        let object = |text: &str, finish: Option<&str>, tokens| {
            response_object(&id, &message_id, &model, created, text, finish, tokens)
        };
        let done = match update {
            Update::Started { prompt_tokens: n } => {
                prompt_tokens = n;
                push(
                    "response.created",
                    json!({"response": object("", None, (n, 0))}),
                );
                push(
                    "response.in_progress",
                    json!({"response": object("", None, (n, 0))}),
                );
                push(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": {
                        "type": "message", "id": message_id, "status": "in_progress",
                        "role": "assistant", "content": [],
                    }}),
                );
                push(
                    "response.content_part.added",
                    json!({"item_id": message_id, "output_index": 0, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}}),
                );
                false
            }
            Update::Delta { text: delta, .. } => {
                if !delta.is_empty() {
                    text.push_str(&delta);
                    push(
                        "response.output_text.delta",
                        json!({"item_id": message_id, "output_index": 0, "content_index": 0,
                               "delta": delta}),
                    );
                }
                false
            }
            Update::Done(Finish {
                finish_reason,
                completion_tokens,
                ..
            }) => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                push(
                    "response.output_text.done",
                    json!({"item_id": message_id, "output_index": 0, "content_index": 0,
                           "text": text}),
                );
                push(
                    "response.content_part.done",
                    json!({"item_id": message_id, "output_index": 0, "content_index": 0,
                           "part": part}),
                );
                push(
                    "response.output_item.done",
                    json!({"output_index": 0, "item": {
                        "type": "message", "id": message_id, "status": "completed",
                        "role": "assistant", "content": [part],
                    }}),
                );
                let kind = if finish_reason == "length" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                let tokens = (prompt_tokens, completion_tokens);
                push(
                    kind,
                    json!({"response": object(&text, Some(finish_reason), tokens)}),
                );
                true
            }
            Update::Failed(e) => {
                let body = e.body();
                push(
                    "error",
                    json!({"code": body["error"]["code"],
                                     "message": body["error"]["message"], "param": null}),
                );
                true
            }
        };
        (events, done)
    }))
}
