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
    let tables = a.table.iter().map(|t| roman_table(t)).collect::<Result<Vec<_>>>()?;
    let formats =
        a.format.iter().map(|f| infoat_reports::Format::parse(f)).collect::<std::result::Result<Vec<_>, _>>()?;
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
        infoat_reports::Selection { tables: tables.clone(), configs, evals: None, include_not_run: !a.no_not_run };
    let stem = if tables.is_empty() {
        "tables".to_string()
    } else {
        format!("table{}", tables.iter().map(|t| roman_index(t)).collect::<Vec<_>>().join("-"))
    };
    let title = if tables.is_empty() {
        "InfoAT reproduction: every table in the registry".to_string()
    } else {
        format!("InfoAT reproduction: Table {}", tables.join(", "))
    };
    if a.out.as_os_str() == "-" {
        let format = *formats.first().context("--format names no format")?;
        let mut r =
            infoat_reports::build(&title, &registry.runs()?, &registry.evals()?, &registry.published()?, &selection)?;
        infoat_reports::render::add_analyses(&mut r, &registry.analyses()?, &registry.runs()?, &selection)?;
        print!("{}", infoat_reports::render(&r, format)?);
        return Ok(ExitCode::SUCCESS);
    }
    for path in pipeline::write_report(&registry, &title, &selection, &formats, &a.out, &stem)? {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `2`, `II` or `table2` → `II`.
fn roman_table(s: &str) -> Result<String> {
    let t = s.trim().trim_start_matches("table").trim_start_matches("Table").trim();
    let romans = ["I", "II", "III", "IV", "V", "VI"];
    if let Ok(n) = t.parse::<usize>() {
        if (1..=6).contains(&n) {
            return Ok(romans[n - 1].to_string());
        }
    }
    let up = t.to_ascii_uppercase();
    romans
        .iter()
        .find(|r| **r == up)
        .map(|r| r.to_string())
        .with_context(|| format!("unknown table '{s}': the paper has Tables 1-6 (I-VI); e.g. --table 2 or --table II"))
}

fn roman_index(t: &str) -> String {
    let romans = ["I", "II", "III", "IV", "V", "VI"];
    romans.iter().position(|r| *r == t).map_or_else(|| t.to_string(), |i| (i + 1).to_string())
}
