//! The harness's one error type. Every message names the thing at fault, what was expected
//! and, where there is one, what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong inside the harness library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data or checkpoint file whose content is not what its format promises.
    #[error("{}: expected {expected}, found {found}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What the format requires at that point.
        expected: String,
        /// What the file holds instead.
        found: String,
    },
    /// A file that could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error (in the message, not chained as a source: chained, an
        /// error report would print it twice).
        cause: std::io::Error,
    },
    /// A dataset file that is not where the user pointed.
    #[error("{}: missing ({what}); {hint}", path.display())]
    MissingData {
        /// The path that was looked for.
        path: PathBuf,
        /// Which dataset file it should have been.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// A configuration value that cannot be used.
    #[error("config {origin}: {message}")]
    Config {
        /// Where the config came from (a file path or a preset name).
        origin: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A checkpoint that does not fit the model it is loaded into.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// A request that cannot be honoured (bad argument combination, unknown name, …).
    #[error("{0}")]
    Invalid(String),
    /// An error raised inside libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A JSON (de)serialisation failure of our own records.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A registry-level failure (hashing, canonical form).
    #[error(transparent)]
    Registry(#[from] infoat_registry::Error),
    /// A report that cannot be built or rendered.
    #[error("report: {0}")]
    Report(#[from] infoat_reports::Error),
}

impl Error {
    /// A [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Error::Format { path: path.into(), expected: expected.into(), found: found.into() }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
