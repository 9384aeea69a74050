//! `infoat export robustbench`: an evaluation as a RobustBench model card (issue 23).

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::attacks::{AttackBuild, AttackId};
use infoat_harness::cli::{ExportCmd, ExportFormat, ExportRobustbenchArgs};
use infoat_harness::pipeline::evidence::{describe, select};
use infoat_harness::pipeline::outdated_attacks;
use infoat_registry::{EvalRecord, MethodKind, Registry};
use infoat_reports::robustbench::{model_card, CardDetails};

pub(crate) fn run(a: ExportCmd) -> Result<ExitCode> {
    match a.format {
        ExportFormat::Robustbench(a) => robustbench(a),
    }
}

/// The model's name when the card is given no title: a run's method and config, or the
/// checkpoint's file name.
fn label(registry: &Registry, record: &EvalRecord) -> Result<String> {
    if let Some(h) = record.config_hash {
        let hex = h.to_hex();
        let kind = registry.runs_with_prefix(&hex)?.first().and_then(|r| {
            r.config.pointer("/method/kind").and_then(serde_json::Value::as_str).map(MethodKind::label_of)
        });
        return Ok(format!("{} (infoat run {})", kind.unwrap_or_else(|| "run".into()), &hex[..12]));
    }
    let path = record.model.get("path").and_then(serde_json::Value::as_str).unwrap_or("model");
    Ok(describe(path))
}

fn robustbench(a: ExportRobustbenchArgs) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    let record = select(&registry, std::slice::from_ref(&a.eval_key), false)?.remove(0);
    // A number an older implementation computed is not the current attack's: never exported.
    if let Some((_, v)) = outdated_attacks(&record.suite).into_iter().find(|(id, _)| *id == AttackId::Aa) {
        anyhow::bail!(
            "not exported: the evaluation's AutoAttack ran an older implementation (v{v}, now v{}); \
             recompute it with `infoat eval ... --force`",
            AttackId::Aa.version()
        );
    }
    let details = CardDetails {
        name: a.name,
        authors: a.authors,
        link: a.link,
        venue: a.venue,
        reported: a.reported,
        additional_data: a.additional_data,
    };
    let card = model_card(&record, &label(&registry, &record)?, &details)?;
    let json = serde_json::to_string_pretty(&card)? + "\n";
    match &a.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            infoat_registry::blobs::write_atomic(path, json.as_bytes())?;
            println!("{}", path.display());
        }
        None => print!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}
