//! `infoat report`: the paper's Tables I–VI from the registry, each cell beside the published
//! number.

use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::ReportArgs;
use infoat_harness::pipeline;
use infoat_registry::Registry;

pub(crate) fn run(a: ReportArgs) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    super::import_published(&registry)?;
    // Each table once, in the order given (`--table 2,II` is Table II).
    let mut picked: Vec<infoat_registry::PaperTable> = Vec::new();
    for &t in &a.table {
        if !picked.contains(&t) {
            picked.push(t);
        }
    }
    let formats = a.format;
    let configs = if a.run.is_empty() {
        None
    } else {
        let mut hashes = Vec::new();
        for prefix in &a.run {
            let run = pipeline::find_run(&registry, prefix)?;
            hashes.push(run.record.config_hash.to_hex());
        }
        Some(hashes)
    };
    let selection =
        infoat_reports::Selection { tables: picked.clone(), configs, evals: None, include_not_run: !a.no_not_run };
    let stem = if picked.is_empty() {
        "tables".to_string()
    } else {
        format!("table{}", picked.iter().map(|t| t.number().to_string()).collect::<Vec<_>>().join("-"))
    };
    let title = if picked.is_empty() {
        "InfoAT reproduction: every table in the registry".to_string()
    } else {
        format!("InfoAT reproduction: Table {}", picked.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "))
    };
    if a.out.as_os_str() == "-" {
        let format = *formats.first().context("--format names no format")?;
        let r = pipeline::build_report(&registry, &title, &selection)?;
        print!("{}", infoat_reports::render(&r, format)?);
        return Ok(ExitCode::SUCCESS);
    }
    for path in pipeline::write_report(&registry, &title, &selection, &formats, &a.out, &stem)? {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
