//! Report workflow: the registry's tables (paper Tables I–VI) rendered into files.

use std::path::{Path, PathBuf};

use infoat_registry::Registry;

use crate::{Error, Result};

/// Renders the report of `selection` from `registry` into `out_dir` as `<stem>.<ext>` for each
/// of `formats` (issue 6); returns the files written. Files are written atomically.
pub fn write_report(
    registry: &Registry,
    title: &str,
    selection: &infoat_reports::Selection,
    formats: &[infoat_reports::Format],
    out_dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    let mut report =
        infoat_reports::build(title, &registry.runs()?, &registry.evals()?, &registry.published()?, selection)?;
    infoat_reports::render::add_analyses(&mut report, &registry.analyses()?, &registry.runs()?, selection)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut written = Vec::new();
    for &format in formats {
        let text = infoat_reports::render(&report, format)?;
        let path = out_dir.join(format!("{stem}.{}", format.extension()));
        infoat_registry::blobs::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}
