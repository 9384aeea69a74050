//! # infoat-reports
//!
//! The artefacts reviewers read (issue 6): the registry's runs and evaluations aggregated over
//! seeds with polars ([`aggregate`]), joined with the paper's published numbers ([`paper`],
//! Tables I–VI transcribed under `fixtures/paper/`), judged cell by cell against tolerances
//! that are data (`fixtures/reports/tolerances.toml`), laid out as the paper's tables
//! ([`grid`]) and rendered through tera templates as Markdown, LaTeX, CSV, JSON and HTML with
//! SVG plots ([`mod@render`]); the paper's claims beyond its cells are checked with paired tests
//! on per-example flags ([`claims`]). No libtorch.

pub mod aggregate;
pub mod analyses;
pub mod bench;
pub mod claims;
pub mod compare;
pub mod diagnostics;
mod error;
pub mod grid;
pub mod observations;
pub mod paper;
pub mod plots;
pub mod regress;
pub mod render;
pub mod robustbench;
pub mod stats;
mod templates;

pub use aggregate::{Cell, Tolerances, Verdict};
pub use compare::{compare, Comparison};
pub use error::{Error, Result};
pub use paper::{PaperTable, Published};
pub use render::{build, build_verified, render, render_comparison, Format, Report, Selection};
