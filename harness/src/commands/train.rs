//! `infoat train`: one run config trained (or its complete run reused) and recorded.

use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::TrainArgs;
use infoat_harness::config::RunConfig;
use infoat_harness::pipeline;
use infoat_harness::train::Progress;
use infoat_registry::Registry;

pub(crate) fn run(a: TrainArgs, progress: Progress) -> Result<ExitCode> {
    let mut cfg = RunConfig::from_file(&a.config)?;
    if let Some(d) = a.device {
        cfg.device = d;
    }
    let registry = Registry::open(&a.registry.registry)?;
    if a.resume {
        pipeline::check_resumable(&cfg, &registry)?;
    }
    let out = pipeline::train_run(&cfg, a.data_dir.as_deref(), &registry, a.registry.force, progress)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let r = &out.record;
        let last = r.epochs.last().context("a complete run has at least one epoch")?;
        let metric = |k: &str| last.metrics.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "{} config {}\ncheckpoint {} ({})\n{} epochs, final train loss {:.4}, train accuracy {:.2}%, {:.1}s",
            if out.reused { "reused complete run of" } else { "trained" },
            r.config_hash,
            out.checkpoint_path.display(),
            r.checkpoint_hash.map(|h| h.to_hex()).unwrap_or_default(),
            r.epochs.len(),
            metric("loss"),
            100.0 * metric("train_accuracy"),
            r.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
