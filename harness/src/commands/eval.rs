//! `infoat eval`: a model (run, checkpoint or TorchScript file) under the chosen attacks,
//! recorded by key.

use std::process::ExitCode;

use anyhow::Result;
use infoat_harness::cli::EvalArgs;
use infoat_harness::pipeline::{self, EvalRequest, SuiteRequest};
use infoat_registry::Registry;

pub(crate) fn run(a: EvalArgs) -> Result<ExitCode> {
    let source = super::model_source(&a.model)?;
    let req = EvalRequest {
        source,
        dataset: a.dataset,
        data_dir: a.data_dir,
        device: a.device.device()?,
        limit: a.limit,
        suite: SuiteRequest {
            attacks: a.attacks.clone(),
            eps: a.eps,
            rays_budget: a.rays_budget,
            attack_limit: None,
            batch_size: a.batch_size,
            sanity: !a.no_sanity,
            seed: a.seed,
            channels_last: a.channels_last,
        },
        force: a.registry.force,
    };
    let registry = Registry::open(&a.registry.registry)?;
    let report = pipeline::evaluate(&req, Some(&registry))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let m = &report.model;
        let clean = report.clean();
        println!(
            "{} ({} {} on {}, {} {})\nclean test accuracy {:.2}% ({}/{})",
            m.path.display(),
            m.source,
            m.arch.map_or("external".to_string(), |a| a.to_string()),
            report.data.dataset,
            if m.source == "torchscript" { "file sha256" } else { "checkpoint" },
            m.hash.short(16),
            100.0 * clean.accuracy,
            clean.correct,
            clean.total
        );
        for (id, r) in report.attacks() {
            println!(
                "{id:<9} robust accuracy {:.2}% ({}/{}) at eps {}, {:.1}s (attack v{})",
                100.0 * r.robust.accuracy,
                r.robust.correct,
                r.robust.total,
                r.eps,
                r.seconds,
                r.version
            );
            // AutoAttack's log prints the robust accuracy after each component; so does this,
            // with what each cost.
            for s in r.stages.iter().flatten() {
                let robust = s.attacked - s.broken;
                println!(
                    "          after {:<7} {:.2}% ({robust}/{}), {} attacked, {:.1}s, {} fwd / {} bwd images",
                    s.attack.name(),
                    100.0 * robust as f64 / r.robust.total.max(1) as f64,
                    r.robust.total,
                    s.attacked,
                    s.seconds,
                    s.forward_images,
                    s.backward_images
                );
            }
            if let Some(d) = &r.diagnostics {
                let mut parts: Vec<String> = d.tripped().iter().map(|(i, n)| format!("{i} {n}")).collect();
                for (t, s) in &d.self_tests {
                    let verdict = if s.passed() { "passed" } else { "MISSED" };
                    parts.push(format!("self-test {t} {}/{} {verdict}", s.found, s.planted));
                }
                if !parts.is_empty() {
                    println!("          {}", parts.join(", "));
                }
            }
        }
        if let Some(w) = report.worst_case_acc() {
            println!("worst case over the attacks {:.2}%", 100.0 * w);
        }
        for f in report.sanity() {
            println!("FLAGGED [{}]: {}", f.check, f.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}
