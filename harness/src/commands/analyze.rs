//! `infoat analyze`: an analysis figure (paper Figs. 1–3) per run, recorded, written as SVG.

use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::AnalyzeArgs;
use infoat_harness::pipeline;
use infoat_harness::train::Progress;
use infoat_registry::Registry;
use serde_json::json;

/// `infoat analyze`: one analysis per run, recorded; the figures written as SVG.
pub(crate) fn run(a: AnalyzeArgs, progress: Progress) -> Result<ExitCode> {
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
