//! One module per `infoat` subcommand. Each `run` maps its parsed arguments to a request of the
//! library (`pipeline`, `preset`, the registry), runs it and prints the result; the exit status
//! follows `main.rs`: 0 success, 1 a verdict failed (a target missed, a regression, a problem
//! found), 2 an error.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::{Cli, Command, ModelArgs};
use infoat_harness::pipeline::ModelSource;
use infoat_harness::train::Progress;
use infoat_registry::Registry;

mod analyze;
mod bench;
mod compare;
mod config;
mod eval;
mod evidence;
mod export;
mod logits;
mod needs;
mod registry;
mod regress;
mod report;
mod reproduce;
mod sweep;
mod train;
mod verify_evidence;

/// Runs the parsed command line.
pub(crate) fn dispatch(cli: Cli) -> Result<ExitCode> {
    let progress = if cli.quiet { Progress::Quiet } else { Progress::Bar };
    match cli.command {
        Command::Train(a) => train::run(a, progress),
        Command::Eval(a) => eval::run(a),
        Command::Reproduce(a) => reproduce::run(a, progress),
        Command::Config(a) => config::run(a),
        Command::Registry(a) => registry::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Report(a) => report::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Analyze(a) => analyze::run(a, progress),
        Command::Regress(a) => regress::run(a, progress),
        Command::Sweep(a) => sweep::run(a),
        Command::VerifyEvidence(a) => verify_evidence::run(a),
        Command::Evidence(a) => evidence::run(a),
        Command::Logits(a) => logits::run(a),
        Command::Export(a) => export::run(a),
        Command::Needs { args } => needs::run(args),
    }
}

/// Keeps the paper's published numbers (compiled in from fixtures/paper) in the registry as
/// their own record kind, so reports and comparisons find them beside the reproductions.
fn import_published(registry: &Registry) -> Result<usize> {
    let records: Vec<_> = infoat_reports::paper::embedded()?.iter().map(|p| p.to_record()).collect();
    Ok(registry.put_published_bulk(&records)?)
}

/// The model a command's `--run`/`--checkpoint`/`--torchscript` names (clap makes them
/// exclusive and one required).
fn model_source(m: &ModelArgs) -> Result<ModelSource> {
    Ok(match (&m.run, &m.checkpoint, &m.torchscript) {
        (Some(hash), None, None) => ModelSource::Run { hash: hash.clone() },
        (None, Some(path), None) => ModelSource::Checkpoint { path: path.clone(), arch: m.arch },
        (None, None, Some(path)) => ModelSource::TorchScript { path: path.clone() },
        _ => anyhow::bail!("give exactly one of --run, --checkpoint, --torchscript"),
    })
}
