//! Regression checks (issue 8, `infoat regress`): a fresh rerun of a preset against a baseline
//! bundle. On CPU a run's checkpoint must be bit-identical to the baseline's (same config ⇒
//! same checkpoint hash) when both ran with the same libtorch, CPU model and thread count; on
//! CUDA, where cuDNN does not promise that, and on another CPU model, where oneDNN may choose
//! other kernels, only the metrics are held, each within its tolerance from the preset, and
//! the two environments are shown. Every difference is listed; the verdict is pass only when
//! there are none.

use std::collections::BTreeMap;

use infoat_registry::{ContentHash, Environment, EvalRecord, RunRecord};
use serde::Serialize;

use crate::Result;

/// One run of the rerun preset: its name, config, and the evaluations it produced.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// The run's name in the preset.
    pub name: String,
    /// Its config hash.
    pub config_hash: ContentHash,
    /// The registry keys of its evaluations in the rerun.
    pub eval_keys: Vec<ContentHash>,
}

/// A metric compared.
#[derive(Debug, Clone, Serialize)]
pub struct MetricDiff {
    /// `clean`, an attack id, or `<attack>.adbd`.
    pub metric: String,
    /// The rerun's value.
    pub now: f64,
    /// The baseline's value (`None`: the baseline has no such metric).
    pub baseline: Option<f64>,
    /// now − baseline.
    pub diff: Option<f64>,
    /// The accepted |diff|.
    pub tolerance: f64,
    /// Within tolerance.
    pub ok: bool,
}

/// One run compared.
#[derive(Debug, Clone, Serialize)]
pub struct RunDiff {
    /// The run's name.
    pub name: String,
    /// Its config hash.
    pub config_hash: ContentHash,
    /// The device it ran on now.
    pub device: String,
    /// Its checkpoint now.
    pub checkpoint_now: Option<ContentHash>,
    /// The baseline's checkpoint (`None`: the baseline has no complete run of this config).
    pub checkpoint_baseline: Option<ContentHash>,
    /// Whether the checkpoint must match exactly (CPU) or is informational (CUDA).
    pub checkpoint_exact: bool,
    /// The metrics.
    pub metrics: Vec<MetricDiff>,
    /// No difference beyond tolerance.
    pub ok: bool,
}

/// The outcome of a regression check.
#[derive(Debug, Clone, Serialize)]
pub struct RegressReport {
    /// The preset.
    pub preset: String,
    /// The baseline (a path, for the summary).
    pub baseline: String,
    /// Every run.
    pub runs: Vec<RunDiff>,
    /// One line per difference beyond tolerance.
    pub differences: Vec<String>,
    /// The rerun's environment (of its first run) and the baseline's, when they differ in
    /// something that changes floating-point results.
    pub environments: Option<(Environment, Environment)>,
    /// True when there is no difference.
    pub passed: bool,
}

fn latest_complete<'a>(runs: &'a [RunRecord], config: &ContentHash) -> Option<&'a RunRecord> {
    runs.iter().filter(|r| &r.config_hash == config && r.is_complete()).max_by_key(|r| r.finished_unix)
}

/// The metrics of an evaluation record: clean accuracy, each attack's robust accuracy and, for
/// RayS, the mean boundary distance.
fn metrics_of(e: &EvalRecord) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::from([("clean".to_string(), e.clean_acc)]);
    for (id, a) in &e.attacks {
        m.insert(id.clone(), a.robust_acc);
        if let Some(d) = a.adbd {
            m.insert(format!("{id}.adbd"), d);
        }
    }
    m
}

/// True when two environments differ in what changes floating-point results.
fn numerics_differ(a: &Environment, b: &Environment) -> bool {
    (&a.libtorch, &a.device, a.threads, &a.cpu, &a.gpu) != (&b.libtorch, &b.device, b.threads, &b.cpu, &b.gpu)
}

/// Compares the rerun (`runs` of `plan` found in `now_runs`/`now_evals`) with the baseline
/// records. `tolerance(metric)` is the preset's accepted |difference| per metric.
pub fn regress(
    preset: &str,
    baseline: &str,
    plan: &[PlannedRun],
    (now_runs, now_evals): (&[RunRecord], &[EvalRecord]),
    (base_runs, base_evals): (&[RunRecord], &[EvalRecord]),
    tolerance: &dyn Fn(&str) -> f64,
) -> Result<RegressReport> {
    let mut out = Vec::new();
    let mut differences = Vec::new();
    let mut environments = None;
    // Each rerun evaluation's key, hashed once.
    let now_by_key: BTreeMap<ContentHash, &EvalRecord> =
        now_evals.iter().filter_map(|e| Some((e.key.hash().ok()?, e))).collect();
    for p in plan {
        let now = latest_complete(now_runs, &p.config_hash);
        let base = latest_complete(base_runs, &p.config_hash);
        let device = now.map_or_else(|| "?".to_string(), |r| r.env.device.clone());
        // Bit-identical checkpoints are promised on CPU for the same libtorch, CPU model and
        // thread count; across CPU models oneDNN may pick other kernels (other rounding), so
        // there only the metrics are held and the environments are shown.
        let same_numerics = matches!((now, base), (Some(n), Some(b)) if !numerics_differ(&n.env, &b.env));
        let exact = device == "cpu" && same_numerics;
        let (checkpoint_now, checkpoint_baseline) =
            (now.and_then(|r| r.checkpoint_hash), base.and_then(|r| r.checkpoint_hash));
        let mut ok = true;
        let short = p.config_hash.short(12);
        if base.is_none() {
            ok = false;
            differences.push(format!("{}: config {short} has no complete run in the baseline", p.name));
        } else if exact && checkpoint_now != checkpoint_baseline {
            ok = false;
            let show = |h: Option<ContentHash>| h.map_or("none".to_string(), |h| h.short(12));
            differences.push(format!(
                "{}: checkpoint {} on CPU, the baseline's is {} (same config {short}: training changed)",
                p.name,
                show(checkpoint_now),
                show(checkpoint_baseline)
            ));
        }
        if let (Some(n), Some(b), None) = (now, base, &environments) {
            if numerics_differ(&n.env, &b.env) {
                environments = Some((n.env.clone(), b.env.clone()));
            }
        }
        let mut metrics = Vec::new();
        for key in &p.eval_keys {
            let Some(e) = now_by_key.get(key).copied() else {
                ok = false;
                differences.push(format!(
                    "{}: the rerun's evaluation {} is not in its registry",
                    p.name,
                    key.short(12)
                ));
                continue;
            };
            // The baseline's evaluation of the same config under the same suite, data and seed
            // (its model hash differs when the checkpoint does).
            let b = base_evals
                .iter()
                .filter(|b| {
                    b.config_hash == Some(p.config_hash)
                        && b.key.suite_hash == e.key.suite_hash
                        && b.key.data == e.key.data
                        && b.key.subset == e.key.subset
                        && b.key.seed == e.key.seed
                })
                .max_by_key(|b| b.finished_unix);
            let base_metrics = b.map(metrics_of).unwrap_or_default();
            if b.is_none() {
                ok = false;
                differences.push(format!(
                    "{}: the baseline has no evaluation of config {short} with suite {} on {}",
                    p.name,
                    e.key.suite_hash.short(12),
                    e.key.subset
                ));
            }
            for (metric, value) in metrics_of(e) {
                if metrics.iter().any(|m: &MetricDiff| m.metric == metric) {
                    continue; // clean accuracy again, from the black-box evaluation
                }
                let baseline = base_metrics.get(&metric).copied();
                let tol = tolerance(metric.split('.').next().unwrap_or(&metric));
                let diff = baseline.map(|b| value - b);
                let within = diff.is_some_and(|d| d.abs() <= tol + 1e-12);
                if b.is_some() && !within {
                    ok = false;
                    differences.push(match diff {
                        Some(d) => format!(
                            "{}: {metric} {value:.4} vs baseline {:.4} (Δ {d:+.4}, tolerance {tol})",
                            p.name,
                            baseline.unwrap_or_default()
                        ),
                        None => format!("{}: {metric} is not in the baseline's evaluation", p.name),
                    });
                }
                metrics.push(MetricDiff { metric, now: value, baseline, diff, tolerance: tol, ok: within });
            }
        }
        out.push(RunDiff {
            name: p.name.clone(),
            config_hash: p.config_hash,
            device,
            checkpoint_now,
            checkpoint_baseline,
            checkpoint_exact: exact,
            metrics,
            ok,
        });
    }
    let passed = differences.is_empty();
    Ok(RegressReport {
        preset: preset.to_string(),
        baseline: baseline.to_string(),
        runs: out,
        differences,
        environments,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed quickstart baseline against itself, then against copies with another
    /// checkpoint: a difference on the same CPU, information only on another CPU model.
    #[test]
    fn checkpoints_are_exact_on_the_same_cpu_and_informational_on_another() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/regress/quickstart");
        let b = infoat_registry::bundle::read_records(&dir).unwrap();
        let plan: Vec<PlannedRun> = b
            .runs
            .iter()
            .map(|r| PlannedRun {
                name: r.config.pointer("/method/kind").and_then(serde_json::Value::as_str).unwrap_or("?").to_string(),
                config_hash: r.config_hash,
                eval_keys: b
                    .evals
                    .iter()
                    .filter(|e| e.config_hash == Some(r.config_hash))
                    .map(|e| e.key.hash().unwrap())
                    .collect(),
            })
            .collect();
        let exact = |_: &str| 0.0;
        let same = regress("quickstart", "self", &plan, (&b.runs, &b.evals), (&b.runs, &b.evals), &exact).unwrap();
        assert!(same.passed && same.differences.is_empty() && same.environments.is_none(), "{:?}", same.differences);
        assert_eq!(same.runs.len(), 6);
        assert!(same.runs.iter().all(|r| r.checkpoint_exact && r.metrics.len() >= 10));

        let mut other = b.runs.clone();
        other[0].checkpoint_hash = Some("0".repeat(64).parse().unwrap());
        let r = regress("quickstart", "x", &plan, (&b.runs, &b.evals), (&other, &b.evals), &exact).unwrap();
        assert!(
            !r.passed && r.differences.len() == 1 && r.differences[0].contains("training changed"),
            "{:?}",
            r.differences
        );

        for run in &mut other {
            run.env.cpu = Some("Another CPU".into());
        }
        let r = regress("quickstart", "x", &plan, (&b.runs, &b.evals), (&other, &b.evals), &exact).unwrap();
        assert!(r.passed, "another CPU model: the checkpoint is information, the metrics hold: {:?}", r.differences);
        assert!(r.environments.is_some() && !r.runs[0].checkpoint_exact);
        // A metric off by more than its tolerance fails wherever it ran.
        let mut evals = b.evals.clone();
        let e = evals.iter_mut().find(|e| e.attacks.contains_key("pgd20")).unwrap();
        e.attacks.get_mut("pgd20").unwrap().robust_acc += 0.02;
        let r = regress("quickstart", "x", &plan, (&b.runs, &b.evals), (&other, &evals), &|_| 0.01).unwrap();
        assert!(!r.passed && r.differences.iter().any(|d| d.contains("pgd20")), "{:?}", r.differences);
    }
}
