//! Error answers of the server (Python: FastAPI's `HTTPException`s).
//!
//! Divergence: Python answers `{"detail": "..."}` (FastAPI's shape) and
//! 422 for schema errors; this answers the APIs' own error objects, as
//! their references define them: OpenAI's `{"error": {"message", "type",
//! "param", "code"}}` and Anthropic's `{"type": "error", "error": {"type",
//! "message"}}`, with 400 for every malformed request.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which API's error shape an answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's `{"error": {...}}`.
    OpenAi,
    /// Anthropic's `{"type": "error", "error": {...}}`.
    Anthropic,
}

/// A failed request: the status and the message naming what is at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and how to fix it.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// The error shape.
    pub dialect: Dialect,
}

impl ApiError {
    /// An error of `status` in OpenAI's shape.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            dialect: Dialect::OpenAi,
        }
    }

    /// 400: a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 naming the field at fault.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::bad_request(message)
        }
    }

    /// The same error in `dialect`'s shape.
    pub fn in_dialect(self, dialect: Dialect) -> Self {
        Self { dialect, ..self }
    }

    /// OpenAI's `error.type` for the status.
    fn openai_type(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "server_overloaded",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// Anthropic's `error.type` for the status (its errors reference).
    fn anthropic_type(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            s if s.is_server_error() => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body, also sent as an SSE `error` event mid-stream.
    pub fn body(&self) -> serde_json::Value {
        match self.dialect {
            Dialect::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.status.as_u16().to_string(),
            }}),
            Dialect::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type(),
                "message": self.message,
            }}),
        }
    }
}

impl From<mlx_vlm::Error> for ApiError {
    /// Errors of the request's own inputs (images, audio, parameters, the
    /// prompt's length) are 400; the rest are the server's (500).
    fn from(e: mlx_vlm::Error) -> Self {
        use mlx_vlm::Error as E;
        let status = match &e {
            E::Image { .. }
            | E::Audio { .. }
            | E::UnsupportedMedia { .. }
            | E::ImageTokenMismatch { .. }
            | E::InvalidArgument(_)
            | E::InvalidParameter { .. }
            | E::LimitExceeded { .. }
            | E::OutOfMemory { .. }
            | E::Template { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let param = match &e {
            E::InvalidParameter { name, .. } => Some(name.to_string()),
            _ => None,
        };
        Self {
            param,
            ..Self::new(status, e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
