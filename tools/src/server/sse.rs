//! Server-sent events out of a request's [`Update`]s, and the wait for its
//! first update that decides between an error status and a stream.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::engine::{Finish, Update};
use super::errors::ApiError;

/// The first update: a failure before any text (a bad image, a prompt
/// too long) is answered as an error status instead of a stream.
pub async fn first_update(
    updates: &mut mpsc::UnboundedReceiver<Update>,
) -> Result<Update, ApiError> {
    match updates.recv().await {
        Some(Update::Failed(e)) => Err(e),
        Some(update) => Ok(update),
        None => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the engine stopped before answering",
        )),
    }
}

/// Streams the events `render` makes of each update, starting with
/// `first`; `render` returns the events and whether the stream is done.
/// A client that disconnects drops the stream, which closes `updates`:
/// the engine then cancels the generation.
pub fn stream<F>(
    first: Update,
    mut updates: mpsc::UnboundedReceiver<Update>,
    mut render: F,
) -> Response
where
    F: FnMut(Update) -> (Vec<Event>, bool) + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let mut next = Some(first);
        while let Some(update) = next.take() {
            let (events, done) = render(update);
            for event in events {
                if tx.send(Ok(event)).await.is_err() {
                    // The client went away: dropping `updates` cancels.
                    return;
                }
            }
            if done {
                return;
            }
            next = match updates.recv().await {
                Some(update) => Some(update),
                None => Some(Update::Failed(ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine stopped mid-generation",
                ))),
            };
        }
    });
    Sse::new(ReceiverStream::new(rx)).into_response()
}

/// All the text, tokens and totals of a request, for a non-streaming
/// answer.
#[derive(Debug, Default)]
pub struct Collected {
    /// The generated text.
    pub text: String,
    /// The generated tokens (the EOS token included).
    pub tokens: Vec<u32>,
    /// How it ended.
    pub finish: Finish,
}

/// Reads updates until the request ends.
pub async fn collect(
    first: Update,
    updates: &mut mpsc::UnboundedReceiver<Update>,
) -> Result<Collected, ApiError> {
    let mut out = Collected::default();
    let mut next = Some(first);
    while let Some(update) = next.take() {
        match update {
            Update::Started { .. } => {}
            Update::Delta { text, tokens } => {
                out.text.push_str(&text);
                out.tokens.extend(tokens);
            }
            Update::Done(finish) => {
                out.finish = finish;
                return Ok(out);
            }
            Update::Failed(e) => return Err(e),
        }
        next = updates.recv().await;
    }
    Err(ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "the engine stopped mid-generation",
    ))
}
