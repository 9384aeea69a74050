//! `infoat regress`: a preset rerun and compared with a baseline bundle (or the bundle written).

use std::process::ExitCode;

use anyhow::{Context, Result};
use infoat_harness::cli::RegressArgs;
use infoat_harness::pipeline;
use infoat_harness::preset::Preset;
use infoat_harness::train::Progress;
use infoat_registry::Registry;

/// `infoat regress`: rerun a preset, compare with (or write) a baseline bundle.
pub(crate) fn run(a: RegressArgs, progress: Progress) -> Result<ExitCode> {
    let mut preset = Preset::find(&a.preset)?;
    preset.select(&a.only)?;
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
        let (plan, failed) = pipeline::preset::keep_going(
            &preset.runs,
            |run| {
                if progress == Progress::Bar {
                    eprintln!("== regress {} / {} ==", preset.name, run.name);
                }
                let out = pipeline::reproduce_run(run, &registry, false, progress)?;
                Ok(infoat_reports::regress::PlannedRun {
                    name: run.name.clone(),
                    config_hash: out.config_hash,
                    eval_keys: std::iter::once(out.eval_key).chain(out.black_box_eval_key).collect(),
                })
            },
            |_| {},
        );
        let failed: Vec<String> = failed.iter().map(|f| format!("{}: the rerun failed: {}", f.run, f.error)).collect();
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
