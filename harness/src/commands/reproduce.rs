//! `infoat reproduce`: a preset's runs trained and evaluated (or reused), its report written;
//! `--list` and `--dry-run` plan without running.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::ReproduceArgs;
use infoat_harness::cost;
use infoat_harness::pipeline;
use infoat_harness::preset::Preset;
use infoat_harness::train::Progress;
use infoat_registry::Registry;
use serde_json::json;

pub(crate) fn run(a: ReproduceArgs, progress: Progress) -> Result<ExitCode> {
    if a.list {
        return list_presets(a.json);
    }
    let name = a.preset.context("a preset name is required")?;
    let mut preset = Preset::find(&name)?;
    preset.select(&a.only)?;
    let registry = Registry::open(&a.registry.registry)?;
    if a.dry_run {
        return dry_run(&preset, &registry, a.json);
    }
    super::import_published(&registry)?;
    let (rows, failed) = pipeline::preset::keep_going(
        &preset.runs,
        |run| {
            if progress == Progress::Bar {
                eprintln!("== {} / {} ==", preset.name, run.name);
            }
            let out = pipeline::reproduce_run(run, &registry, a.registry.force, progress)?;
            if progress == Progress::Bar && (out.reused || out.eval_reused) {
                // On stderr, so that a rerun's stdout is identical to the first run's.
                let what = match (out.reused, out.eval_reused) {
                    (true, true) => "training and evaluation",
                    (true, false) => "training",
                    _ => "evaluation",
                };
                eprintln!("reused from the registry: {what}");
            }
            Ok(out)
        },
        |f| eprintln!("FAILED run '{}' of preset '{}': {}", f.run, preset.name, f.error),
    );
    let missed: usize = rows.iter().map(|r| r.missed.len()).sum();
    // Every witness re-checked with the forward pass alone before the report prints the
    // confirmed counts (issue 21); a failed witness marks its cell, it does not stop the preset.
    let eval_keys: Vec<_> = rows.iter().flat_map(|r| std::iter::once(r.eval_key).chain(r.black_box_eval_key)).collect();
    for check in pipeline::evidence::verify_unchecked(&registry, &eval_keys).context("verifying the witnesses")? {
        let failed: usize = check.attacks.iter().map(|a| a.failed.len()).sum();
        if failed > 0 {
            eprintln!(
                "evaluation {}: {failed} witnesses FAILED the re-check (`infoat verify-evidence {}` lists them)",
                check.key.short(12),
                check.key.short(16)
            );
        }
    }
    let selection = infoat_reports::Selection {
        tables: Vec::new(),
        configs: Some(rows.iter().map(|r| r.config_hash.to_hex()).collect()),
        evals: Some(eval_keys.iter().map(|k| k.to_hex()).collect()),
        include_not_run: false,
    };
    use infoat_reports::Format;
    let report = pipeline::write_report(
        &registry,
        &format!("Preset {}: {}", preset.name, preset.description),
        &selection,
        &[Format::Md, Format::Html, Format::Json],
        &a.out,
        &preset.name,
    )
    .context("writing the preset's report")?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "preset": preset.name, "runs": rows, "failed": failed, "report": report })
            )?
        );
    } else {
        print_preset_table(&preset, &rows);
        for f in &failed {
            println!("{:<24} FAILED: {}", f.run, f.error);
        }
        let paths: Vec<String> = report.iter().map(|p| p.display().to_string()).collect();
        println!("report: {}", paths.join(", "));
    }
    if !failed.is_empty() {
        eprintln!(
            "{} of {} runs failed (listed above); fix the cause and run the same command again: finished runs are reused",
            failed.len(),
            preset.runs.len()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(if missed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `reproduce --list`: every embedded preset with its size and estimated cost.
fn list_presets(as_json: bool) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for p in Preset::all()? {
        let mut costs: BTreeMap<cost::CostDevice, f64> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut trainings = std::collections::BTreeSet::new();
        for r in &p.runs {
            // A config shared by several runs trains once; an identical evaluation runs once.
            let hash = r.config.hash()?;
            let first_training = trainings.insert(hash);
            if !seen.insert((hash, serde_json::to_string(&r.eval)?)) {
                continue;
            }
            let (device, c) = cost::estimate(r, !first_training, false)?;
            *costs.entry(device).or_default() += c.total_s();
        }
        let cost: Vec<String> = costs.iter().map(|(d, s)| cost::human(*d, *s)).collect();
        rows.push((p.name.clone(), p.description.clone(), p.runs.len(), trainings.len(), cost.join(" + ")));
    }
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, d, runs, models, c)| json!({ "name": n, "description": d, "runs": runs, "models": models, "estimate": c }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<12} {:>5} {:>7} {:>14}  description", "preset", "runs", "models", "estimate");
    for (n, d, runs, models, c) in &rows {
        println!("{n:<12} {runs:>5} {models:>7} {c:>14}  {d}");
    }
    println!(
        "\nEstimates: passes per image of each method and attack x measured throughput per architecture and device"
    );
    println!("(fixtures/costs/throughput.toml; GPU figures from an NVIDIA H200 in fp32, CPU from a 2-core VM).");
    Ok(ExitCode::SUCCESS)
}

/// `reproduce --dry-run`: config hashes, what the registry holds, the cost of the rest.
fn dry_run(preset: &Preset, registry: &Registry, as_json: bool) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut total: BTreeMap<cost::CostDevice, f64> = BTreeMap::new();
    let mut trainings = std::collections::BTreeSet::new();
    let evals = registry.evals()?;
    for r in &preset.runs {
        let status = pipeline::plan_status(r, registry, &evals)?;
        let trained = status.checkpoint_hash.is_some() || !trainings.insert(status.config_hash);
        let evaluated = status.evaluated && status.black_box_evaluated != Some(false);
        let (device, c) = cost::estimate(r, trained, evaluated)?;
        *total.entry(device).or_default() += c.total_s();
        rows.push((r, status, device, c));
    }
    if as_json {
        let runs: Vec<_> = rows
            .iter()
            .map(|(r, s, d, c)| {
                json!({ "run": r.name, "status": s, "done": s.done(), "device": d, "estimate_s": c,
                        "config": r.config.canonical_view() })
            })
            .collect();
        let total: BTreeMap<_, _> = total.iter().map(|(d, s)| (format!("{d:?}").to_lowercase(), *s)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "preset": preset.name, "runs": runs, "estimate_s": total }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("preset {}: {} (dry run: nothing is trained or evaluated)", preset.name, preset.description);
    println!(
        "{:<28} {:<13} {:<13} {:<22} {:<11} {:>12}",
        "run", "config", "checkpoint", "training", "evaluation", "to do"
    );
    for (r, s, d, c) in &rows {
        let training = match (s.checkpoint_hash, s.resume_after_epoch) {
            (Some(_), _) => "in registry".to_string(),
            (None, Some(e)) => format!("resumes after epoch {e}"),
            (None, None) => format!("to train ({} ep)", r.config.train.epochs),
        };
        let evaluation = match (s.evaluated, s.black_box_evaluated) {
            (true, None | Some(true)) => "in registry",
            (true, Some(false)) => "black-box",
            (false, Some(false)) => "both",
            (false, _) => "to do",
        };
        let todo = if c.total_s() == 0.0 { "-".to_string() } else { cost::human(*d, c.total_s()) };
        println!(
            "{:<28} {:<13} {:<13} {:<22} {:<11} {:>12}",
            r.name,
            s.config_hash.short(12),
            s.checkpoint_hash.map_or("-".to_string(), |h| h.short(12)),
            training,
            evaluation,
            todo
        );
    }
    let done = rows.iter().filter(|(_, s, _, _)| s.done()).count();
    let cost: Vec<String> = total.iter().map(|(d, s)| cost::human(*d, *s)).collect();
    println!(
        "{done} of {} runs complete; the rest: {}",
        rows.len(),
        if cost.is_empty() { "nothing".to_string() } else { cost.join(" + ") }
    );
    Ok(ExitCode::SUCCESS)
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
            let checks: Vec<&str> = r.sanity.iter().map(|f| f.check.name()).collect();
            format!("{verdict}, FLAGGED ({})", checks.join(", "))
        };
        println!(
            "{:<24} {:<13} {:<13} {} {:>8.1}  {verdict}",
            r.run,
            r.config_hash.short(12),
            r.checkpoint_hash.short(12),
            cells.join(" "),
            r.train_seconds
        );
    }
    let images: Vec<String> = metrics
        .iter()
        .filter_map(|m| rows.first().and_then(|r| r.images.get(m)).map(|n| format!("{m} on {n}")))
        .collect();
    println!("test images: {}", images.join(", "));
}
