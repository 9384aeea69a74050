//! The registry's one error type.

use std::path::PathBuf;

use crate::ContentHash;

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
    /// A file-system operation failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating-system error (in the message, not chained as a source: chained, an
        /// error report would print it twice).
        cause: std::io::Error,
    },
    /// A blob or record whose contents are not what its name or key promises.
    #[error("{}: corrupt: {problem}; `infoat registry verify` lists every such file (nothing is deleted)", path.display())]
    Corrupt {
        /// The file (or the registry folder, for a record).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A blob a record needs is not in the store.
    #[error("checkpoint blob {hash} is missing (expected at {}); import it again or rerun with --force", path.display())]
    MissingBlob {
        /// The checkpoint digest.
        hash: ContentHash,
        /// Where it should be.
        path: PathBuf,
    },
    /// Another process holds the registry.
    #[error(
        "registry {} is in use by {holder}; wait for it to finish, or give this process its own registry \
         (--registry DIR) and merge afterwards with `infoat registry merge`",
        path.display()
    )]
    Locked {
        /// The registry folder.
        path: PathBuf,
        /// Who holds it (pid, host, command, since when).
        holder: String,
    },
    /// The embedded database failed.
    #[error("registry database {}: {message}", path.display())]
    Db {
        /// The registry folder.
        path: PathBuf,
        /// sled's message.
        message: String,
    },
    /// A bundle to import that is malformed or unsafe.
    #[error("bundle {}: {problem}", path.display())]
    BadBundle {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A lookup that matched nothing or more than one thing.
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
}

/// The registry's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
