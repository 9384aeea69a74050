//! Report workflow: the registry's tables (paper Tables I–VI) and the paper's claims checked
//! on per-example flags (`fixtures/paper/claims.toml`) rendered into files.

use std::path::{Path, PathBuf};

use infoat_registry::Registry;
use infoat_reports::Report;

use crate::{Error, Result};

/// The report of `selection`: the tables with their witness checks (`infoat verify-evidence`),
/// the analyses, and the paper's claims checked on per-example flags.
pub fn build_report(registry: &Registry, title: &str, selection: &infoat_reports::Selection) -> Result<Report> {
    let (runs, evals) = (registry.runs()?, registry.evals()?);
    let mut report = infoat_reports::build_verified(
        title,
        &runs,
        &evals,
        &registry.verifications()?,
        &registry.published()?,
        selection,
    )?;
    infoat_reports::render::add_analyses(&mut report, &registry.analyses()?, &runs, selection)?;
    let flags = |e: &infoat_registry::EvalRecord| Ok(registry.eval_flags(e)?);
    let claims = infoat_reports::claims::ClaimFile::embedded()?;
    infoat_reports::render::add_claims(&mut report, &claims, &runs, &evals, &flags, selection)?;
    Ok(report)
}

/// Renders the report of `selection` from `registry` into `out_dir` as `<stem>.<ext>` for each
/// of `formats` (issue 6), the claims section included (issue 21; as JSON in
/// `<stem>.claims.json` beside `<stem>.json`) and the attack diagnostics (issue 22; as JSON in
/// `<stem>.diagnostics.json`); returns the files written. Files are written
/// atomically.
pub fn write_report(
    registry: &Registry,
    title: &str,
    selection: &infoat_reports::Selection,
    formats: &[infoat_reports::Format],
    out_dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    let report = build_report(registry, title, selection)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut written = Vec::new();
    for &format in formats {
        let text = infoat_reports::render(&report, format)?;
        let path = out_dir.join(format!("{stem}.{}", format.extension()));
        infoat_registry::blobs::write_atomic(&path, text.as_bytes())?;
        written.push(path);
        if format == infoat_reports::Format::Json {
            if let Some(claims) = infoat_reports::render::render_claims_json(&report)? {
                let path = out_dir.join(format!("{stem}.claims.json"));
                infoat_registry::blobs::write_atomic(&path, claims.as_bytes())?;
                written.push(path);
            }
            if let Some(diagnostics) = infoat_reports::render::render_diagnostics_json(&report)? {
                let path = out_dir.join(format!("{stem}.diagnostics.json"));
                infoat_registry::blobs::write_atomic(&path, diagnostics.as_bytes())?;
                written.push(path);
            }
        }
    }
    Ok(written)
}
