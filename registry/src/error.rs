//! The registry's one error type.

/// Everything that can go wrong in the registry crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string that should be a 64-digit hex sha256.
    #[error("'{text}' is not a content hash: expected 64 hex digits")]
    BadHash {
        /// The text that was given.
        text: String,
    },
    /// Two tensors of one checkpoint with the same name.
    #[error("checkpoint has two tensors named '{0}'; tensor names must be unique")]
    DuplicateTensor(String),
    /// A value that has no canonical JSON form (a NaN or infinite float).
    #[error("{0}")]
    NotCanonical(String),
    /// JSON (de)serialisation.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The registry's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
