//! `infoat verify-evidence`: the stored witnesses of evaluations re-checked with the model's
//! forward pass alone (issue 21); each check is recorded, and reports print its confirmed
//! counts beside the robust accuracies.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::VerifyEvidenceArgs;
use infoat_harness::pipeline::evidence::{describe, select, verify_and_record};
use infoat_registry::Registry;

pub(crate) fn run(a: VerifyEvidenceArgs) -> Result<ExitCode> {
    let registry = Registry::open(&a.registry)?;
    let device = a.device.device()?;
    let mut reports = Vec::new();
    for record in select(&registry, &a.keys, a.all)? {
        reports.push(verify_and_record(&registry, &record, device)?);
    }
    let ok = reports.iter().all(|r| r.confirmed());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!("{} {} ({} test images)", r.key.short(16), describe(&r.model), r.images);
            for e in &r.attacks {
                let Some(witnessed) = e.witnessed else {
                    println!(
                        "  {:<9} broken {}, no witnesses stored (evaluated before they were kept; `infoat eval --force` stores them)",
                        e.attack, e.broken
                    );
                    continue;
                };
                let mut line = format!("  {:<9} broken {}, confirmed {}", e.attack, e.broken, e.confirmed);
                if witnessed < e.broken {
                    line.push_str(&format!(
                        " ({} broken without a witness: at an earlier iterate, or the returned point does not fool)",
                        e.broken - witnessed
                    ));
                }
                if !e.failed.is_empty() {
                    line.push_str(&format!(" — {} of {witnessed} witnesses FAILED", e.failed.len()));
                }
                println!("{line}");
                for f in &e.failed {
                    println!(
                        "    example {}: L∞ {:.6} (eps {}), {}, {}",
                        f.index,
                        f.linf,
                        e.eps,
                        if f.in_box { "in [0, 1]" } else { "outside [0, 1]" },
                        if f.fools { "misclassified" } else { "classified correctly" }
                    );
                }
            }
        }
        if reports.is_empty() {
            println!("no evaluation in {}", a.registry.display());
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
