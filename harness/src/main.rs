//! The `infoat` binary: parses the command line and runs the pipeline.
//!
//! Exit status: 0 success; 1 a preset ran but missed a target; 2 an error (bad input, missing
//! data, corrupted checkpoint, …), printed with its full cause chain.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use infoat_harness::cli::{
    AnalyzeArgs, BenchArgs, Cli, Command, CompareArgs, ConfigArgs, EvalArgs, RegistryAction, RegistryCmd, RegressArgs,
    ReportArgs, ReproduceArgs, SweepArgs, TrainArgs,
};
use infoat_harness::config::RunConfig;
use infoat_harness::cost;
use infoat_harness::data::Dataset;
use infoat_harness::pipeline::{self, EvalRequest, ModelSource};
use infoat_harness::preset::Preset;
use infoat_harness::train::Progress;
use infoat_registry::Registry;
use serde_json::json;

fn main() -> ExitCode {
    // Before any tensor operation: ATen and MKL read their dispatch settings once.
    infoat_harness::numerics::apply_portable_mode_from_env();
    infoat_harness::alloc::tune();
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
        Command::Analyze(a) => analyze(a, progress),
        Command::Regress(a) => regress(a, progress),
        Command::Sweep(a) => sweep(a),
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
        let what = match r.work {
            bench::Work::TrainStep => format!("{} (PGD-{})", r.method, r.inner_steps),
            bench::Work::Pgd => format!("{} (PGD-{}, inner maximisation only)", r.method, r.inner_steps),
            bench::Work::ApgdCe => "APGD-CE attack".to_string(),
        };
        println!(
            "{} {} on {} [{}], {}{}, batch {}: {:.1} ms/step, {:.0} images/s ({:.1} s per epoch); heap: {}",
            r.arch,
            what,
            r.device,
            r.device_name,
            r.precision,
            if r.channels_last { ", channels-last" } else { "" },
            r.batch_size,
            r.ms_per_step,
            r.images_per_second,
            r.epoch_seconds,
            r.allocator
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
                "{id:<9} robust accuracy {:.2}% ({}/{}) at eps {}, {:.1}s (attack v{})",
                100.0 * r.robust.accuracy,
                r.robust.correct,
                r.robust.total,
                r.eps,
                r.seconds,
                r.version
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
        return list_presets(a.json);
    }
    let name = a.preset.context("a preset name is required")?;
    let mut preset = Preset::find(&name)?;
    if !a.only.is_empty() {
        let unknown: Vec<&String> = a.only.iter().filter(|o| !preset.runs.iter().any(|r| &&r.name == o)).collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = preset.runs.iter().map(|r| r.name.as_str()).collect();
            anyhow::bail!(
                "--only {unknown:?}: preset '{}' has no such run; its runs: {}",
                preset.name,
                names.join(", ")
            );
        }
        preset.runs.retain(|r| a.only.contains(&r.name));
    }
    let registry = Registry::open(&a.registry.registry)?;
    if a.dry_run {
        return dry_run(&preset, &registry, a.json);
    }
    import_published(&registry)?;
    let mut rows = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for run in &preset.runs {
        if progress == Progress::Bar {
            eprintln!("== {} / {} ==", preset.name, run.name);
        }
        let out = match pipeline::reproduce_run(run, &registry, a.registry.force, progress) {
            Ok(out) => out,
            Err(e) => {
                // Keep going: one missing dataset or diverged run must not cost the others.
                let message = format!("{:#}", anyhow::Error::from(e));
                eprintln!("FAILED run '{}' of preset '{}': {message}", run.name, preset.name);
                failed.push((run.name.clone(), message));
                continue;
            }
        };
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
        let failed: Vec<_> = failed.iter().map(|(run, error)| json!({ "run": run, "error": error })).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "preset": preset.name, "runs": rows, "failed": failed, "report": report })
            )?
        );
    } else {
        print_preset_table(&preset, &rows);
        for (run, error) in &failed {
            println!("{run:<24} FAILED: {error}");
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

/// `infoat analyze`: one analysis per run, recorded; the figures written as SVG.
fn analyze(a: AnalyzeArgs, progress: Progress) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry.registry)?;
    let mut records = Vec::new();
    for run in &a.run {
        let req = pipeline::AnalysisRequest {
            figure: a.figure,
            run: run.clone(),
            n: a.n,
            eps: a.eps,
            steps: a.steps,
            points: a.points,
            examples: a.examples.clone(),
            seed: a.seed,
            data_dir: a.data_dir.clone(),
            force: a.registry.force,
        };
        if progress == Progress::Bar {
            eprintln!("== {} on run {run} ==", a.figure.name());
        }
        let (record, reused) =
            pipeline::analyze(&req, &registry).with_context(|| format!("{} on run {run}", a.figure.name()))?;
        if progress == Progress::Bar {
            eprintln!(
                "{} in {:.1}s",
                if reused { "reused from the registry, computed" } else { "computed" },
                record.seconds
            );
        }
        records.push(record);
    }
    let runs = registry.runs()?;
    let label = |r: &infoat_registry::AnalysisRecord| -> String {
        let method = infoat_reports::analyses::run_method(r, &runs);
        format!("{method} ({})", r.config_hash.map(|h| h.short(6)).unwrap_or_default())
    };
    let figures = infoat_reports::analyses::figures(&records, &label)?;
    std::fs::create_dir_all(&a.out)?;
    let mut written = Vec::new();
    for f in &figures {
        let path = a.out.join(format!("{}.svg", f.name));
        infoat_registry::blobs::write_atomic(&path, f.svg.as_bytes())?;
        written.push(path);
    }
    let json_path = a.out.join(format!("{}.json", a.figure.name()));
    infoat_registry::blobs::write_atomic(&json_path, &serde_json::to_vec_pretty(&records)?)?;
    written.push(json_path);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "records": records, "files": written }))?);
    } else {
        for f in &figures {
            println!("{}\n{}\n", f.title, f.caption);
        }
        let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("written: {}", paths.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `infoat regress`: rerun a preset, compare with (or write) a baseline bundle.
fn regress(a: RegressArgs, progress: Progress) -> Result<ExitCode> {
    let preset = Preset::find(&a.preset)?;
    if a.write_baseline && a.baseline.exists() && std::fs::read_dir(&a.baseline)?.next().is_some() {
        anyhow::bail!("--write-baseline: {} is not empty; give a new folder", a.baseline.display());
    }
    // Read the baseline first: a missing or broken one must not cost a whole rerun.
    let baseline = if a.write_baseline {
        None
    } else {
        Some(infoat_registry::bundle::read_records(&a.baseline).with_context(|| {
            format!("reading the baseline bundle {} (write one with --write-baseline)", a.baseline.display())
        })?)
    };
    let (registry_path, temporary) = match &a.registry {
        Some(p) => (p.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let p = std::env::temp_dir().join(format!("infoat-regress-{}-{}-{nanos}", preset.name, std::process::id()));
            (p, true)
        }
    };
    let result = (|| -> Result<ExitCode> {
        let registry = Registry::open(&registry_path)?;
        let mut plan = Vec::new();
        let mut failed = Vec::new();
        for run in &preset.runs {
            if progress == Progress::Bar {
                eprintln!("== regress {} / {} ==", preset.name, run.name);
            }
            match pipeline::reproduce_run(run, &registry, false, progress) {
                Ok(out) => plan.push(infoat_reports::regress::PlannedRun {
                    name: run.name.clone(),
                    config_hash: out.config_hash,
                    eval_keys: std::iter::once(out.eval_key).chain(out.black_box_eval_key).collect(),
                }),
                Err(e) => failed.push(format!("{}: the rerun failed: {:#}", run.name, anyhow::Error::from(e))),
            }
        }
        if a.write_baseline {
            anyhow::ensure!(
                failed.is_empty(),
                "not writing a baseline from a rerun with failures:\n{}",
                failed.join("\n")
            );
            let configs: Vec<_> = plan.iter().map(|p| p.config_hash).collect();
            let evals: Vec<_> = plan.iter().flat_map(|p| p.eval_keys.iter().copied()).collect();
            let (records, blobs) = registry.export_selected(&a.baseline, &configs, &evals, a.with_blobs)?;
            println!(
                "baseline for preset {} written to {}: {records} records, {blobs} blobs",
                preset.name,
                a.baseline.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let baseline = baseline.as_ref().expect("read above");
        let (runs, evals) = (registry.runs()?, registry.evals()?);
        let mut report = infoat_reports::regress::regress(
            &preset.name,
            &a.baseline.display().to_string(),
            &plan,
            (&runs, &evals),
            (&baseline.runs, &baseline.evals),
            &infoat_reports::regress::Settings {
                tolerance: &|m| preset.regress.tolerance_of(m),
                seed_sd: &|m| preset.regress.seed_sd_of(m),
                alpha: preset.regress.alpha,
            },
        )?;
        report.passed &= failed.is_empty();
        report.differences.splice(0..0, failed);
        let markdown = infoat_reports::render::render_regress(&report)?;
        if let Some(path) = &a.summary {
            infoat_registry::blobs::write_atomic(path, markdown.as_bytes())?;
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{markdown}");
        }
        Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })();
    if temporary {
        let _ = std::fs::remove_dir_all(&registry_path);
    }
    result
}

/// `infoat sweep --emit slurm`: a job array with one task per preset run, each writing its own
/// registry shard, plus the script that merges the shards.
fn sweep(a: SweepArgs) -> Result<ExitCode> {
    let preset = Preset::find(&a.preset)?;
    anyhow::ensure!(a.margin.is_finite() && a.margin >= 1.0, "--margin {}: expected a number ≥ 1", a.margin);
    let out = std::path::absolute(&a.out)?;
    std::fs::create_dir_all(out.join("logs"))?;
    std::fs::create_dir_all(out.join("shards"))?;
    let exe = std::env::current_exe()?;
    let preset_arg =
        if preset.embedded { preset.name.clone() } else { std::path::absolute(&a.preset)?.display().to_string() };
    let mut longest = 0.0f64;
    let mut gpu = false;
    let mut table = String::from("task\trun\tconfig_hash\testimate_s\n");
    for (i, r) in preset.runs.iter().enumerate() {
        let (device, c) = cost::estimate(r, false, false)?;
        gpu |= device == cost::CostDevice::Gpu;
        longest = longest.max(c.total_s());
        table.push_str(&format!("{i}\t{}\t{}\t{:.0}\n", r.name, r.config.hash()?, c.total_s()));
    }
    let limit_min = ((longest * a.margin / 60.0).ceil() as u64).max(10);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let runs: Vec<String> = preset.runs.iter().map(|r| quote(&r.name)).collect();
    let mut ctx = tera::Context::new();
    ctx.insert("preset", &preset.name);
    ctx.insert("n_minus_1", &(preset.runs.len() - 1));
    ctx.insert("out", &out.display().to_string());
    ctx.insert("time", &format!("{}:{:02}:00", limit_min / 60, limit_min % 60));
    ctx.insert(
        "longest_estimate",
        &cost::human(if gpu { cost::CostDevice::Gpu } else { cost::CostDevice::Cpu }, longest),
    );
    ctx.insert("margin", &a.margin);
    ctx.insert("gpu", &gpu);
    ctx.insert("partition", &a.partition);
    ctx.insert("runs", &runs);
    ctx.insert("exe", &quote(&exe.display().to_string()));
    ctx.insert("preset_arg", &quote(&preset_arg));
    ctx.insert("ld_library_path", &std::env::var("LD_LIBRARY_PATH").ok().map(|p| quote(&p)));
    ctx.insert(
        "data_dir",
        &a.data_dir.as_ref().map(|d| std::path::absolute(d).map(|d| quote(&d.display().to_string()))).transpose()?,
    );
    ctx.insert("registry", &quote(&std::path::absolute(&a.registry)?.display().to_string()));
    let mut tera = tera::Tera::default();
    tera.add_raw_templates([
        ("sweep.sbatch", include_str!("../templates/sweep.sbatch.tera")),
        ("merge.sh", include_str!("../templates/merge.sh.tera")),
    ])?;
    for (name, file) in [("sweep.sbatch", "sweep.sbatch"), ("merge.sh", "merge.sh")] {
        let path = out.join(file);
        std::fs::write(&path, tera.render(name, &ctx)?)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(out.join("runs.tsv"), table)?;
    println!("{}", out.join("sweep.sbatch").display());
    eprintln!(
        "{} array tasks, time limit {limit_min} min each (longest estimate × {}){}; submit with `sbatch {}`, then merge with `sh {}`",
        preset.runs.len(),
        a.margin,
        if gpu { ", one GPU each" } else { "" },
        out.join("sweep.sbatch").display(),
        out.join("merge.sh").display()
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
                // Evaluations by an older attack implementation stay listed, marked as such.
                let outdated: Vec<String> = pipeline::outdated_attacks(&e.suite)
                    .iter()
                    .map(|(attack, v)| format!("{} v{v}, now v{}", attack.name(), attack.version()))
                    .collect();
                text.push_str(&format!(
                    "eval {}  model {}  clean {:.2}% on {}  {}{}{}\n",
                    e.key.hash()?.short(12),
                    e.key.model_hash.short(12),
                    100.0 * e.clean_acc,
                    e.n,
                    attacks.join(", "),
                    if e.sanity.is_empty() { "" } else { "  FLAGGED" },
                    if outdated.is_empty() {
                        String::new()
                    } else {
                        format!("  OUTDATED ({}: recomputed by eval/reproduce)", outdated.join("; "))
                    }
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
