//! `infoat needs`: the fetchable datasets an invocation would read (used by the `./infoat`
//! wrapper).

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use infoat_harness::cli::{Cli, Command};
use infoat_harness::config::RunConfig;
use infoat_harness::data::Dataset;
use infoat_harness::pipeline;
use infoat_harness::preset::Preset;
use infoat_registry::Registry;

/// Prints the fetchable datasets that the given invocation would read from the default cache.
pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let Ok(cli) = Cli::try_parse_from(std::iter::once("infoat".to_string()).chain(args)) else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut sets: Vec<Dataset> = match cli.command {
        Command::Train(a) if a.data_dir.is_none() => {
            RunConfig::from_file(&a.config).map(|c| vec![c.data.dataset]).unwrap_or_default()
        }
        Command::Eval(a) if a.data_dir.is_none() => match (a.dataset, &a.model.checkpoint, &a.model.run) {
            (Some(d), _, _) => vec![d],
            (None, Some(path), _) => pipeline::recorded_setup(path).ok().and_then(|(_, d)| d).into_iter().collect(),
            (None, None, Some(hash)) => Registry::open(&a.registry.registry)
                .ok()
                .and_then(|reg| pipeline::find_run(&reg, hash).ok())
                .and_then(|r| r.config().ok())
                .map(|c| vec![c.data.dataset])
                .unwrap_or_default(),
            _ => vec![],
        },
        Command::Reproduce(a) => match a.preset.as_deref().map(Preset::find) {
            Some(Ok(p)) => p.runs.iter().map(|r| r.config.data.dataset).collect(),
            _ => vec![],
        },
        _ => vec![],
    };
    sets.sort_by_key(|d| d.name());
    sets.dedup();
    for d in sets.into_iter().filter_map(Dataset::fetch_name) {
        println!("{d}");
    }
    Ok(ExitCode::SUCCESS)
}
