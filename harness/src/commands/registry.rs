//! `infoat registry`: list, show, verify, export, import, merge and garbage-collect the
//! registry.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::attacks::AttackBuild;
use infoat_harness::cli::{RegistryAction, RegistryCmd};
use infoat_harness::pipeline;
use infoat_registry::Registry;

pub(crate) fn run(a: RegistryCmd) -> Result<ExitCode> {
    let reg = Registry::open(&a.registry)?;
    super::import_published(&reg)?;
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
