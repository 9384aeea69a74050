//! The `infoat` binary: parses the command line and runs the pipeline.
//!
//! Exit status: 0 success; 1 a preset ran but missed a target; 2 an error (bad input, missing
//! data, corrupted checkpoint, …), printed with its full cause chain.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use infoat_harness::cli::{Cli, Command, ConfigArgs, EvalArgs, ReproduceArgs, TrainArgs};
use infoat_harness::config::RunConfig;
use infoat_harness::data::Dataset;
use infoat_harness::pipeline::{self, EvalRequest, ModelSource};
use infoat_harness::preset::Preset;
use infoat_harness::train::Progress;
use serde_json::json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let progress = if cli.quiet { Progress::Quiet } else { Progress::Bar };
    match cli.command {
        Command::Train(a) => train(a, progress),
        Command::Eval(a) => eval(a),
        Command::Reproduce(a) => reproduce(a, progress),
        Command::Config(a) => config(a),
        Command::Needs { args } => needs(args),
    }
}

fn train(a: TrainArgs, progress: Progress) -> Result<ExitCode> {
    let mut cfg = RunConfig::from_file(&a.config)?;
    if let Some(d) = a.device {
        cfg.device = d;
    }
    if a.resume {
        pipeline::check_resumable(&cfg, &a.runs.runs_dir)?;
    }
    let out = pipeline::train_run(&cfg, a.data_dir.as_deref(), &a.runs.runs_dir, a.runs.force, progress)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let r = &out.record;
        let last = r.epochs.last().context("a complete run has at least one epoch")?;
        println!(
            "{} config {}\ncheckpoint {} ({})\n{} epochs, final train loss {:.4}, train accuracy {:.2}%, {:.1}s",
            if out.reused { "reused complete run of" } else { "trained" },
            r.config_hash,
            out.checkpoint_path.display(),
            r.checkpoint_hash,
            r.epochs.len(),
            last.loss,
            100.0 * last.train_accuracy,
            r.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn eval(a: EvalArgs) -> Result<ExitCode> {
    let source = model_source(&a)?;
    let req = EvalRequest {
        source,
        dataset: a.dataset,
        data_dir: a.data_dir,
        device: a.device.device()?,
        batch_size: a.batch_size,
        limit: a.limit,
        attacks: a.attacks.clone(),
        eps: a.eps,
        attack_limit: None,
        seed: a.seed,
        sanity: !a.no_sanity,
    };
    let report = pipeline::evaluate(&req)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let m = &report.model;
        println!(
            "{} ({} {} on {}, {} {})\nclean test accuracy {:.2}% ({}/{})",
            m.path.display(),
            m.source,
            m.arch.map_or("external".to_string(), |a| a.to_string()),
            report.data.dataset,
            if m.source == "torchscript" { "file sha256" } else { "checkpoint" },
            m.hash.short(16),
            100.0 * report.clean.accuracy,
            report.clean.correct,
            report.clean.total
        );
        for (id, r) in &report.attacks {
            println!(
                "{id:<9} robust accuracy {:.2}% ({}/{}) at eps {}, {:.1}s",
                100.0 * r.robust.accuracy,
                r.robust.correct,
                r.robust.total,
                r.eps,
                r.seconds
            );
        }
        if let Some(w) = report.worst_case_acc {
            println!("worst case over the attacks {:.2}%", 100.0 * w);
        }
        for f in &report.sanity {
            println!("FLAGGED [{}]: {}", f.check, f.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn model_source(a: &EvalArgs) -> Result<ModelSource> {
    Ok(match (&a.run, &a.checkpoint, &a.torchscript) {
        (Some(hash), None, None) => ModelSource::Run { runs_dir: a.runs_dir.clone(), hash: hash.clone() },
        (None, Some(path), None) => ModelSource::Checkpoint { path: path.clone(), arch: a.arch },
        (None, None, Some(path)) => ModelSource::TorchScript { path: path.clone() },
        _ => anyhow::bail!("give exactly one of --run, --checkpoint, --torchscript"),
    })
}

fn reproduce(a: ReproduceArgs, progress: Progress) -> Result<ExitCode> {
    if a.list {
        for p in Preset::all()? {
            println!(
                "{:<12} {} ({} run{})",
                p.name,
                p.description,
                p.runs.len(),
                if p.runs.len() == 1 { "" } else { "s" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = a.preset.context("a preset name is required")?;
    let preset = Preset::find(&name)?;
    let mut rows = Vec::new();
    for run in &preset.runs {
        if progress == Progress::Bar {
            eprintln!("== {} / {} ==", preset.name, run.name);
        }
        let out = pipeline::reproduce_run(run, &a.runs.runs_dir, a.runs.force, progress)
            .with_context(|| format!("run '{}' of preset '{}'", run.name, preset.name))?;
        rows.push(out);
    }
    let missed: usize = rows.iter().map(|r| r.missed.len()).sum();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "preset": preset.name, "runs": rows }))?);
    } else {
        print_preset_table(&preset, &rows);
    }
    Ok(if missed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_preset_table(preset: &Preset, rows: &[pipeline::PresetOutcome]) {
    let mut metrics: Vec<String> = vec!["clean".into()];
    for r in rows {
        for m in r.accuracy.keys() {
            if !metrics.contains(m) {
                metrics.push(m.clone());
            }
        }
    }
    println!("preset {}: {}", preset.name, preset.description);
    let header: Vec<String> = metrics.iter().map(|m| format!("{m:>9}")).collect();
    println!("{:<24} {:<13} {:<13} {} {:>8}  verdict", "run", "config", "checkpoint", header.join(" "), "train s");
    for r in rows {
        let cells: Vec<String> = metrics
            .iter()
            .map(|m| r.accuracy.get(m).map_or(format!("{:>9}", "-"), |a| format!("{:>8.2}%", 100.0 * a)))
            .collect();
        let verdict = if r.missed.is_empty() {
            "ok".to_string()
        } else {
            let what: Vec<String> = r
                .missed
                .iter()
                .map(|m| format!("{m} < {:.2}%", 100.0 * r.expect.get(m).copied().unwrap_or(0.0)))
                .collect();
            format!("BELOW TARGET ({})", what.join(", "))
        };
        let verdict = if r.sanity.is_empty() {
            verdict
        } else {
            let checks: Vec<&str> = r.sanity.iter().map(|f| f.check.as_str()).collect();
            format!("{verdict}, FLAGGED ({})", checks.join(", "))
        };
        println!(
            "{:<24} {:<13} {:<13} {} {:>8.1}  {verdict}{}",
            r.run,
            r.config_hash.short(12),
            r.checkpoint_hash.short(12),
            cells.join(" "),
            r.train_seconds,
            if r.reused { " (reused)" } else { "" }
        );
    }
    let images: Vec<String> = metrics
        .iter()
        .filter_map(|m| rows.first().and_then(|r| r.images.get(m)).map(|n| format!("{m} on {n}")))
        .collect();
    println!("test images: {}", images.join(", "));
}

fn config(a: ConfigArgs) -> Result<ExitCode> {
    let cfg = RunConfig::from_file(&a.config)?;
    let out = json!({ "config_hash": cfg.hash()?, "config": cfg.canonical_view() });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Prints the fetchable datasets that the given invocation would read from the default cache.
fn needs(args: Vec<String>) -> Result<ExitCode> {
    let Ok(cli) = Cli::try_parse_from(std::iter::once("infoat".to_string()).chain(args)) else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut sets: Vec<Dataset> = match cli.command {
        Command::Train(a) if a.data_dir.is_none() => {
            RunConfig::from_file(&a.config).map(|c| vec![c.data.dataset]).unwrap_or_default()
        }
        Command::Eval(a) if a.data_dir.is_none() => match (a.dataset, &a.checkpoint, &a.run) {
            (Some(d), _, _) => vec![d],
            (None, Some(path), _) => pipeline::recorded_setup(path).ok().and_then(|(_, d)| d).into_iter().collect(),
            (None, None, Some(hash)) => {
                pipeline::find_run(&a.runs_dir, hash).map(|r| vec![r.record.config.data.dataset]).unwrap_or_default()
            }
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
