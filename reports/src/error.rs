//! The reports crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the reports crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A published-numbers file that does not parse.
    #[error("{}: row {row}, column '{column}': expected {expected}, found '{found}'", path.display())]
    Cell {
        /// The CSV file.
        path: PathBuf,
        /// 1-based data row.
        row: usize,
        /// The column name.
        column: String,
        /// What the column holds.
        expected: String,
        /// The text found.
        found: String,
    },
    /// A CSV file that cannot be read at all.
    #[error("{}: {message}", path.display())]
    File {
        /// The CSV file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Bad input to a report (unknown format, malformed tolerances).
    #[error("{0}")]
    Invalid(String),
    /// A registry record that cannot be read or hashed.
    #[error("registry: {0}")]
    Registry(#[from] infoat_registry::Error),
    /// The aggregation failed.
    #[error("aggregation (polars): {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// A template failed to render.
    #[error("template: {0}")]
    Template(String),
    /// JSON serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// CSV serialisation failed.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
}

/// The reports crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
