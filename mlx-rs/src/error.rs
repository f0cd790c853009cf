//! Errors: every failure of MLX or of this crate's checks is an [`Error`].

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::Dtype;

/// What can go wrong in a call into MLX.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// MLX rejected the call; the message is MLX's own (for example a shape
    /// that does not broadcast).
    #[error("{message}")]
    Mlx {
        /// MLX's message.
        message: String,
    },
    /// An mlx-c constructor or accessor returned an empty handle.
    #[error("mlx-c returned an empty {what}")]
    NullHandle {
        /// What was being made or read.
        what: &'static str,
    },
    /// Data was read back as a type other than the array's dtype.
    #[error("the array holds {actual}, but {requested} was requested; cast it first (`as_type`)")]
    DtypeMismatch {
        /// The dtype the caller asked for.
        requested: Dtype,
        /// The array's dtype.
        actual: Dtype,
    },
    /// Data does not fill the shape it was given.
    #[error("shape {shape:?} holds {expected} elements, but {actual} values were given")]
    ShapeMismatch {
        /// The requested shape.
        shape: Vec<i32>,
        /// The number of elements the shape holds.
        expected: usize,
        /// The number of values given.
        actual: usize,
    },
    /// An index outside an axis.
    #[error("index {index} is out of range for axis {axis} of size {size}")]
    IndexOutOfRange {
        /// The index given (before negative indices wrap).
        index: i64,
        /// The axis indexed.
        axis: usize,
        /// The size of that axis.
        size: i32,
    },
    /// An argument this crate rejects before calling MLX.
    #[error("{0}")]
    InvalidArgument(String),
    /// A Rust closure called by MLX (in `grad`, `vmap`, a custom function...)
    /// panicked. The panic was caught at the FFI boundary, since unwinding
    /// through C is undefined; [`PanicPayload::resume`] re-raises it.
    #[error("a Rust closure called by MLX panicked: {0}")]
    CallbackPanicked(PanicPayload),
    /// `update_parameters` (strict) found parameters that do not fit; every
    /// problem is listed.
    #[error("the parameters do not fit the module:\n  {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    ModuleUpdate(Vec<crate::nn::UpdateProblem>),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidArgument`] with this message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

/// The payload of a panic caught where MLX called back into Rust.
#[derive(Clone)]
pub struct PanicPayload {
    message: String,
    payload: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

impl PanicPayload {
    pub(crate) fn new(payload: Box<dyn Any + Send>) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-string payload".to_string());
        PanicPayload {
            message,
            payload: Arc::new(Mutex::new(Some(payload))),
        }
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Re-raises the original panic (once; a clone that resumes later panics
    /// with the message only).
    pub fn resume(self) -> ! {
        let payload = self
            .payload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match payload {
            Some(payload) => std::panic::resume_unwind(payload),
            None => panic!("{}", self.message),
        }
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PanicPayload").field(&self.message).finish()
    }
}

impl fmt::Display for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
