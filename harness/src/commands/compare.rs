//! `infoat compare`: a candidate defense against every method in the registry.

use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::CompareArgs;
use infoat_registry::Registry;

pub(crate) fn run(a: CompareArgs) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    let formats = a.format;
    // The per-example flags make the comparison paired (McNemar's exact test).
    let flags = |e: &infoat_registry::EvalRecord| Ok(registry.eval_flags(e)?);
    let c = infoat_reports::compare(a.candidate.trim(), &registry.runs()?, &registry.evals()?, &flags)?;
    if a.out.as_os_str() == "-" {
        let format = *formats.first().context("--format names no format")?;
        print!("{}", infoat_reports::render_comparison(&c, format)?);
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for format in formats {
        let path = a.out.join(format!("compare.{}", format.extension()));
        infoat_registry::blobs::write_atomic(&path, infoat_reports::render_comparison(&c, format)?.as_bytes())?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
