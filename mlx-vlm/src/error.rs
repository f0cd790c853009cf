//! Errors of model loading, preprocessing and generation.

use std::path::PathBuf;

/// What can go wrong loading or running a model.
///
/// Every variant names the file, key, shape or value at fault and, where one
/// exists, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model's configuration is missing a value or holds a bad one.
    #[error("{file}: {message}")]
    Config {
        /// The configuration file (or "config" for an in-memory value).
        file: String,
        /// What is wrong and, where it helps, what would fix it.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file a model needs is not there.
    #[error("{}: not found; {hint}", path.display())]
    MissingFile {
        /// The file looked for.
        path: PathBuf,
        /// What would fix it.
        hint: String,
    },
    /// `config.json` names a `model_type` no model of this crate implements.
    #[error("unsupported model_type {model_type:?} in {file}; supported: {supported}")]
    UnknownModelType {
        /// The `model_type` found.
        model_type: String,
        /// The configuration file.
        file: String,
        /// The model types (and aliases) this crate knows.
        supported: String,
    },
    /// The weights of a checkpoint do not fit the model.
    #[error("{path}: {message}")]
    Weights {
        /// The checkpoint folder or file.
        path: String,
        /// The keys or shapes at fault.
        message: String,
    },
    /// An image could not be opened, decoded or preprocessed.
    #[error("image {source_name}: {message}")]
    Image {
        /// The image's path, `<bytes>` or `<data URI>`.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// An audio clip could not be opened, decoded or resampled.
    #[error("audio {source_name}: {message}")]
    Audio {
        /// The clip's path, `<bytes>`, `<data URI>` or URL.
        source_name: String,
        /// What is wrong and what would fix it.
        message: String,
    },
    /// Media of a kind the model's family does not take (for example audio
    /// for a family without an audio encoder).
    #[error(
        "{model_type} takes no {media} (it takes {supported}); remove the {media} or use a \
         model whose family takes {media} (mlx-vlm info lists each family's media)"
    )]
    UnsupportedMedia {
        /// The model type.
        model_type: String,
        /// The kind refused (`audio`, `videos`, ...).
        media: String,
        /// What the family takes ([`crate::registry::MediaKinds`]).
        supported: String,
    },
    /// The prompt's image tokens do not match the images given.
    #[error("{message}")]
    ImageTokenMismatch {
        /// The counts found and what would fix it.
        message: String,
    },
    /// The tokenizer could not be loaded or failed on the text.
    #[error("tokenizer {context}: {message}")]
    Tokenizer {
        /// The tokenizer file or the operation.
        context: String,
        /// The tokenizer's message.
        message: String,
    },
    /// The chat template could not be found, parsed or rendered.
    #[error("chat template {context}: {message}")]
    Template {
        /// Where the template came from.
        context: String,
        /// The template engine's message.
        message: String,
    },
    /// A download from the Hugging Face hub failed.
    #[error("hub {repo}: {message}")]
    Hub {
        /// The repository id.
        repo: String,
        /// What failed and what would fix it.
        message: String,
    },
    /// An argument is out of its valid range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A generation or sampling parameter is out of its valid range
    /// (checked by `GenerateParams::validate` before any work).
    #[error("{message}")]
    InvalidParameter {
        /// The parameter at fault, as the field of `GenerateParams` names it
        /// (e.g. `temperature`, `repetition_context_size`).
        name: &'static str,
        /// Its value, as given.
        value: String,
        /// What is wrong and what would fix it; names the parameter and the
        /// value (Python mlx-vlm's own words where Python checks).
        message: String,
    },
    /// An input exceeds one of the crate's resource limits (decoded image
    /// pixels, decoder allocation, chat-template fuel, rendered-prompt
    /// size, string growth in a template), checked before the work that
    /// would exhaust time or memory.
    #[error("{context}: {message}")]
    LimitExceeded {
        /// The input at fault: the image, `chat template`, the file.
        context: String,
        /// Which limit: `image pixels`, `decoder allocation`,
        /// `template fuel`, `rendered prompt bytes`, `template string
        /// growth`.
        limit: &'static str,
        /// What was found, the limit, and what would fix it.
        message: String,
    },
    /// A request would need more memory than the process may use, or an
    /// array larger than MLX can index (checked by `preflight::check`
    /// before anything is allocated).
    #[error("out of memory: {message}")]
    OutOfMemory {
        /// The estimate, the limit and what would fit.
        message: String,
        /// The estimated peak in bytes.
        needed_bytes: u64,
        /// The bytes free under the tightest limit.
        available_bytes: u64,
        /// The largest `max_pixels` at which the request's images would fit,
        /// when images are the cause and some size fits.
        fit_max_pixels: Option<u64>,
    },
    /// An error from MLX.
    #[error(transparent)]
    Mlx(#[from] mlx_rs::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
