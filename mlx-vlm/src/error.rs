//! Errors of model loading and generation.

/// What can go wrong loading or running a model.
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
    /// An error from MLX.
    #[error(transparent)]
    Mlx(#[from] mlx_rs::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
