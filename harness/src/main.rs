//! The `infoat` binary: parses the command line and runs the pipeline.
//!
//! Exit status: 0 success; 1 a preset ran but missed a target; 2 an error (bad input, missing
//! data, corrupted checkpoint, …), printed with its full cause chain.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use infoat_harness::cli::{
    BenchArgs, Cli, Command, CompareArgs, ConfigArgs, EvalArgs, RegistryAction, RegistryCmd, ReportArgs, ReproduceArgs,
    TrainArgs,
};
use infoat_harness::config::RunConfig;
use infoat_harness::data::Dataset;
use infoat_harness::pipeline::{self, EvalRequest, ModelSource};
use infoat_harness::preset::Preset;
use infoat_harness::train::Progress;
use infoat_registry::Registry;
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
        Command::Registry(a) => registry_cmd(a),
        Command::Bench(a) => bench(a),
        Command::Report(a) => report(a),
        Command::Compare(a) => compare(a),
        Command::Needs { args } => needs(args),
    }
}

fn train(a: TrainArgs, progress: Progress) -> Result<ExitCode> {
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

fn report(a: ReportArgs) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    import_published(&registry)?;
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
        let r =
            infoat_reports::build(&title, &registry.runs()?, &registry.evals()?, &registry.published()?, &selection)?;
        print!("{}", infoat_reports::render(&r, format)?);
        return Ok(ExitCode::SUCCESS);
    }
    for path in pipeline::write_report(&registry, &title, &selection, &formats, &a.out, &stem)? {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn compare(a: CompareArgs) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    let formats =
        a.format.iter().map(|f| infoat_reports::Format::parse(f)).collect::<std::result::Result<Vec<_>, _>>()?;
    let c = infoat_reports::compare(a.candidate.trim(), &registry.runs()?, &registry.evals()?)?;
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

fn roman_index(t: &str) -> String {
    let romans = ["I", "II", "III", "IV", "V", "VI"];
    romans.iter().position(|r| *r == t).map_or_else(|| t.to_string(), |i| (i + 1).to_string())
}

fn bench(a: BenchArgs) -> Result<ExitCode> {
    use infoat_harness::bench::{self, BenchSpec};
    let device = a.device.device()?;
    if a.cudnn_benchmark {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    if a.agreement {
        let step = infoat_harness::methods::default_eps(a.dataset) / 4.0;
        let r = bench::agreement(&bench::AgreementSpec {
            arch: a.arch,
            dataset: a.dataset,
            device,
            precision: a.precision,
            channels_last: a.channels_last,
            n: a.n,
            step,
            seed: a.seed,
        })?;
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{} on {} ({}{}) vs cpu fp32, {} examples: logits rel. max diff {:.2e}, argmax agree {:.4}, \
                 input-grad sign agree {:.4} (cosine {:.6}), one PGD step (size {:.4}) same direction {:.4}, max diff {:.2e}",
                r.arch,
                r.device,
                r.precision,
                if r.channels_last { ", channels-last" } else { "" },
                r.n,
                r.logits_rel_max_diff,
                r.argmax_agreement,
                r.grad_sign_agreement,
                r.grad_cosine,
                r.step,
                r.pgd_step_agreement,
                r.pgd_step_max_diff
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let spec = BenchSpec {
        arch: a.arch,
        dataset: a.dataset,
        method: a.method.config(a.inner_steps),
        batch_size: a.batch_size,
        device,
        precision: a.precision,
        channels_last: a.channels_last,
        warmup: a.warmup,
        steps: a.steps,
        seed: a.seed,
        work: a.work,
    };
    if a.max_batch {
        let found = bench::max_batch(&spec, a.max_batch_limit, 8)?;
        if a.json {
            println!(
                "{}",
                json!({"arch": a.arch.name(), "precision": a.precision, "channels_last": a.channels_last, "max_batch": found, "limit": a.max_batch_limit})
            );
        } else {
            match found {
                Some(b) if b >= a.max_batch_limit => println!("max batch: at least {b} (the search limit)"),
                Some(b) => println!("max batch: {b}"),
                None => println!("max batch: even {} does not fit", a.batch_size),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = bench::throughput(&spec)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} {} (PGD-{}{}) on {} [{}], {}{}, batch {}: {:.1} ms/step, {:.0} images/s ({:.1} s per epoch)",
            r.arch,
            r.method,
            r.inner_steps,
            if r.work == infoat_harness::bench::Work::Pgd { ", inner maximisation only" } else { "" },
            r.device,
            r.device_name,
            r.precision,
            if r.channels_last { ", channels-last" } else { "" },
            r.batch_size,
            r.ms_per_step,
            r.images_per_second,
            r.epoch_seconds
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
        rays_budget: a.rays_budget,
        sanity: !a.no_sanity,
        force: a.registry.force,
    };
    let registry = Registry::open(&a.registry.registry)?;
    let report = pipeline::evaluate(&req, Some(&registry))?;
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
        (Some(hash), None, None) => ModelSource::Run { hash: hash.clone() },
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
    let registry = Registry::open(&a.registry.registry)?;
    import_published(&registry)?;
    let mut rows = Vec::new();
    for run in &preset.runs {
        if progress == Progress::Bar {
            eprintln!("== {} / {} ==", preset.name, run.name);
        }
        let out = pipeline::reproduce_run(run, &registry, a.registry.force, progress)
            .with_context(|| format!("run '{}' of preset '{}'", run.name, preset.name))?;
        if progress == Progress::Bar && (out.reused || out.eval_reused) {
            // On stderr, so that a rerun's stdout is identical to the first run's.
            let what = match (out.reused, out.eval_reused) {
                (true, true) => "training and evaluation",
                (true, false) => "training",
                _ => "evaluation",
            };
            eprintln!("reused from the registry: {what}");
        }
        rows.push(out);
    }
    let missed: usize = rows.iter().map(|r| r.missed.len()).sum();
    let selection = infoat_reports::Selection {
        tables: Vec::new(),
        configs: Some(rows.iter().map(|r| r.config_hash.to_hex()).collect()),
        evals: Some(
            rows.iter()
                .flat_map(|r| std::iter::once(r.eval_key).chain(r.black_box_eval_key))
                .map(|k| k.to_hex())
                .collect(),
        ),
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
            serde_json::to_string_pretty(&json!({ "preset": preset.name, "runs": rows, "report": report }))?
        );
    } else {
        print_preset_table(&preset, &rows);
        let paths: Vec<String> = report.iter().map(|p| p.display().to_string()).collect();
        println!("report: {}", paths.join(", "));
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

/// Keeps the paper's published numbers (compiled in from fixtures/paper) in the registry as
/// their own record kind, so reports and comparisons find them beside the reproductions.
fn import_published(registry: &Registry) -> Result<usize> {
    let records: Vec<_> = infoat_reports::paper::embedded()?.iter().map(|p| p.to_record()).collect();
    Ok(registry.put_published_bulk(&records)?)
}

fn registry_cmd(a: RegistryCmd) -> Result<ExitCode> {
    let reg = Registry::open(&a.registry)?;
    import_published(&reg)?;
    let print = |v: serde_json::Value, text: String| -> Result<()> {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{text}");
        }
        Ok(())
    };
    match &a.action {
        RegistryAction::Ls => {
            let runs = reg.runs()?;
            let evals = reg.evals()?;
            let published = reg.published()?.len();
            let mut text = format!(
                "{} run attempts, {} evaluations, {} published numbers in {}\n",
                runs.len(),
                evals.len(),
                published,
                a.registry.display()
            );
            for r in &runs {
                let method = r.config.pointer("/method/kind").and_then(|m| m.as_str()).unwrap_or("?");
                let ds = r.config.pointer("/data/dataset").and_then(|m| m.as_str()).unwrap_or("?");
                let state = match &r.status {
                    infoat_registry::RunStatus::Running => {
                        format!("running/interrupted after {} epochs", r.epochs.len())
                    }
                    infoat_registry::RunStatus::Complete => "complete".to_string(),
                    infoat_registry::RunStatus::Failed { error } => format!("failed: {error}"),
                };
                text.push_str(&format!(
                    "run  {}  {:<10} {:<13} checkpoint {}  {}\n",
                    r.config_hash.short(12),
                    method,
                    ds,
                    r.checkpoint_hash.map_or("-".repeat(12), |h| h.short(12)),
                    state
                ));
            }
            for e in &evals {
                let attacks: Vec<String> =
                    e.attacks.iter().map(|(id, x)| format!("{id} {:.2}%", 100.0 * x.robust_acc)).collect();
                text.push_str(&format!(
                    "eval {}  model {}  clean {:.2}% on {}  {}{}\n",
                    e.key.hash()?.short(12),
                    e.key.model_hash.short(12),
                    100.0 * e.clean_acc,
                    e.n,
                    attacks.join(", "),
                    if e.sanity.is_empty() { "" } else { "  FLAGGED" }
                ));
            }
            print(serde_json::json!({ "runs": runs, "evals": evals, "published": published }), text)?;
        }
        RegistryAction::Show { hash } => {
            let runs = reg.runs_with_prefix(hash)?;
            let prefix = hash.trim().to_ascii_lowercase();
            let mut evals = Vec::new();
            for e in reg.evals()? {
                if e.key.hash()?.to_hex().starts_with(&prefix) || e.key.model_hash.to_hex().starts_with(&prefix) {
                    evals.push(e);
                }
            }
            if runs.is_empty() && evals.is_empty() {
                anyhow::bail!("nothing in {} has a hash starting with {prefix}", a.registry.display());
            }
            let v = serde_json::json!({ "runs": runs, "evals": evals });
            let text = format!("{}\n", serde_json::to_string_pretty(&v)?);
            print(v, text)?;
        }
        RegistryAction::Verify => {
            let r = reg.verify()?;
            let mut text =
                format!("{} records read, {} blobs intact, {} problems\n", r.records, r.blobs_ok, r.problems.len());
            for p in &r.problems {
                text.push_str(&format!("PROBLEM: {p}\n"));
            }
            let bad = !r.problems.is_empty();
            print(serde_json::to_value(&r)?, text)?;
            return Ok(if bad { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        RegistryAction::Export { dir } => {
            let (records, blobs) = reg.export(dir)?;
            print(
                serde_json::json!({ "records": records, "blobs": blobs, "dir": dir }),
                format!("exported {records} records and {blobs} blobs to {}\n", dir.display()),
            )?;
        }
        RegistryAction::Import { dir } => {
            let r = reg.import(dir)?;
            print_import(&a, &r, dir)?;
        }
        RegistryAction::Merge { other } => {
            let r = reg.merge(other)?;
            print_import(&a, &r, other)?;
        }
        RegistryAction::Gc => {
            let r = reg.gc()?;
            print(
                serde_json::to_value(&r)?,
                format!("kept {} referenced blobs, removed {} unreferenced\n", r.kept, r.removed.len()),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_import(a: &RegistryCmd, r: &infoat_registry::ImportReport, from: &std::path::Path) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "from {}: {} records added, {} already present, {} blobs added, {} conflicts, {} rejected",
        from.display(),
        r.added,
        r.identical,
        r.blobs_added,
        r.conflicts.len(),
        r.rejected.len()
    );
    for c in &r.conflicts {
        println!("CONFLICT: {c}");
    }
    for x in &r.rejected {
        println!("REJECTED: {x}");
    }
    Ok(())
}
