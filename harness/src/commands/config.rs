//! `infoat config`: a run config's canonical form and hash.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::ConfigArgs;
use infoat_harness::config::RunConfig;
use serde_json::json;

pub(crate) fn run(a: ConfigArgs) -> Result<ExitCode> {
    let cfg = RunConfig::from_file(&a.config)?;
    let out = json!({ "config_hash": cfg.hash()?, "config": cfg.canonical_view() });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
