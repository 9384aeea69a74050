//! # infoat-reports
//!
//! The paper's published numbers (Tables I–VI, transcribed under `fixtures/paper/`) as typed
//! records, so every reproduced cell can be put beside the number it reproduces. Rendering
//! (polars + tera) builds on these. No libtorch.

mod error;
pub mod paper;

pub use error::{Error, Result};
pub use paper::{PaperTable, Published};
