//! Regression checks (issue 8, `infoat regress`; issue 18): a fresh rerun of a preset against
//! a baseline bundle.
//!
//! **Same numerics** — both on CPU with the same libtorch, thread count and numerics
//! fingerprint ([`Environment::same_numerics`]: CPU vendor, family, model, stepping, the ISA
//! extensions and caches, ATen's CPU capability, oneDNN's ISA, the oneDNN and MKL builds, the
//! dispatch overrides): a run's checkpoint must be bit-identical to the baseline's (same config
//! ⇒ same checkpoint hash) and every metric within the preset's tolerance (exact unless set).
//!
//! **Other numerics** (another CPU generation, a record without a fingerprint, CUDA): float-level
//! differences grow through training into a different model, like another seed. Checkpoints are
//! then shown for information, and each metric difference is judged by whether it exceeds what
//! seed-level and sampling noise explain: for a proportion measured on n examples at pooled
//! rate p, each side scatters with variance p(1−p)/n + σ_seed² (σ_seed: the preset's measured
//! spread between seeds; for RayS's boundary distance σ_seed alone), so the difference has
//! sd √(2·(p(1−p)/n + σ_seed²)). A difference fails when it exceeds z·sd (and the preset's
//! tolerance), z = Φ⁻¹(1 − α/2m) for the m metrics compared this way: a two-sided z-test at
//! family-wise level α (Bonferroni), so a rerun that differs only in numerics fails with
//! probability at most α. Ignoring that both sides attack the same examples (their outcomes are
//! positively correlated) overstates the noise: the test is conservative.

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

/// What a regression check accepts, from the preset's `[regress]` table.
pub struct Settings<'a> {
    /// The accepted |difference| per metric (`clean`, an attack id, `adbd`) where numerics
    /// are the same.
    pub tolerance: &'a dyn Fn(&str) -> f64,
    /// The spread of the metric between training seeds (σ_seed), used across numerics.
    pub seed_sd: &'a dyn Fn(&str) -> f64,
    /// The family-wise level of the noise test across numerics.
    pub alpha: f64,
}

/// How a metric was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricTest {
    /// Same numerics: within the preset's tolerance.
    Exact,
    /// Other numerics: within the seed-and-sampling noise band.
    Noise,
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
    /// Examples the metric was measured on (the rerun's).
    pub n: usize,
    /// The preset's tolerance.
    pub tolerance: f64,
    /// How it was judged.
    pub test: MetricTest,
    /// The noise sd of the difference (noise test only).
    pub noise_sd: Option<f64>,
    /// The accepted |difference|: the tolerance (exact test), or max(tolerance, z·sd).
    pub band: f64,
    /// Within the band.
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
    /// Whether the checkpoint must match exactly (same numerics on CPU) or is informational.
    pub checkpoint_exact: bool,
    /// The metrics.
    pub metrics: Vec<MetricDiff>,
    /// No difference beyond tolerance.
    pub ok: bool,
}

/// The noise test's parameters, when any metric was judged by it.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseTest {
    /// Family-wise level.
    pub alpha: f64,
    /// Metrics judged by it (the Bonferroni count).
    pub tests: usize,
    /// The critical value Φ⁻¹(1 − α/2m).
    pub z: f64,
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
    /// The rerun's environment (of its first run) and the baseline's, when their numerics
    /// differ (or are unknown).
    pub environments: Option<(Environment, Environment)>,
    /// The noise test, when some metric was judged by it.
    pub noise: Option<NoiseTest>,
    /// True when there is no difference.
    pub passed: bool,
}

fn latest_complete<'a>(runs: &'a [RunRecord], config: &ContentHash) -> Option<&'a RunRecord> {
    runs.iter().filter(|r| &r.config_hash == config && r.is_complete()).max_by_key(|r| r.finished_unix)
}

/// A metric of an evaluation: its value, the examples it was measured on, and whether it is a
/// proportion (accuracy) or a mean distance (RayS's ADBD).
struct Measured {
    value: f64,
    n: usize,
    proportion: bool,
}

/// The metrics of an evaluation record: clean accuracy, each attack's robust accuracy and, for
/// RayS, the mean boundary distance.
fn metrics_of(e: &EvalRecord) -> BTreeMap<String, Measured> {
    let mut m = BTreeMap::from([("clean".to_string(), Measured { value: e.clean_acc, n: e.n, proportion: true })]);
    for (id, a) in &e.attacks {
        m.insert(id.clone(), Measured { value: a.robust_acc, n: a.total, proportion: true });
        if let Some(d) = a.adbd {
            m.insert(format!("{id}.adbd"), Measured { value: d, n: a.total, proportion: false });
        }
    }
    m
}

/// An evaluation suite (as recorded) without its attack versions.
fn without_versions(suite: &serde_json::Value) -> serde_json::Value {
    let mut s = suite.clone();
    if let Some(map) = s.as_object_mut() {
        map.remove("versions");
    }
    s
}

/// The attack versions a suite records, for messages (`all v1` where it records none).
fn versions_of(suite: &serde_json::Value) -> String {
    match suite.get("versions").and_then(|v| v.as_object()) {
        Some(m) if !m.is_empty() => m.iter().map(|(a, v)| format!("{a} v{v}")).collect::<Vec<_>>().join(", "),
        _ => "all v1".to_string(),
    }
}

/// The preset's key for a metric: `clean`, the attack id, or `adbd` for boundary distances.
fn metric_class(metric: &str) -> &str {
    match metric.split_once('.') {
        Some((_, "adbd")) => "adbd",
        _ => metric,
    }
}

/// A metric pair before its verdict (the noise test's z depends on how many there are).
struct Pending {
    run: usize,
    metric: String,
    now: Measured,
    baseline: Option<f64>,
    test: MetricTest,
}

/// Compares the rerun (`runs` of `plan` found in `now_runs`/`now_evals`) with the baseline
/// records under the preset's `settings`.
pub fn regress(
    preset: &str,
    baseline: &str,
    plan: &[PlannedRun],
    (now_runs, now_evals): (&[RunRecord], &[EvalRecord]),
    (base_runs, base_evals): (&[RunRecord], &[EvalRecord]),
    settings: &Settings<'_>,
) -> Result<RegressReport> {
    let mut out = Vec::new();
    let mut differences: Vec<(usize, String)> = Vec::new();
    let mut environments = None;
    let mut pending: Vec<Pending> = Vec::new();
    // Each rerun evaluation's key, hashed once.
    let now_by_key: BTreeMap<ContentHash, &EvalRecord> =
        now_evals.iter().filter_map(|e| Some((e.key.hash().ok()?, e))).collect();
    for (index, p) in plan.iter().enumerate() {
        let now = latest_complete(now_runs, &p.config_hash);
        let base = latest_complete(base_runs, &p.config_hash);
        let device = now.map_or_else(|| "?".to_string(), |r| r.env.device.clone());
        // Bit-identical checkpoints are promised on CPU for equal numerics fingerprints only.
        let same_numerics = matches!((now, base), (Some(n), Some(b)) if n.env.same_numerics(&b.env));
        let exact = device == "cpu" && same_numerics;
        let test = if exact { MetricTest::Exact } else { MetricTest::Noise };
        let (checkpoint_now, checkpoint_baseline) =
            (now.and_then(|r| r.checkpoint_hash), base.and_then(|r| r.checkpoint_hash));
        let mut ok = true;
        let short = p.config_hash.short(12);
        if base.is_none() {
            ok = false;
            differences.push((index, format!("{}: config {short} has no complete run in the baseline", p.name)));
        } else if exact && checkpoint_now != checkpoint_baseline {
            ok = false;
            let show = |h: Option<ContentHash>| h.map_or("none".to_string(), |h| h.short(12));
            differences.push((
                index,
                format!(
                    "{}: checkpoint {} on CPU, the baseline's is {} (same config {short}, same numerics: training changed)",
                    p.name,
                    show(checkpoint_now),
                    show(checkpoint_baseline)
                ),
            ));
        }
        if let (Some(n), Some(b), None) = (now, base, &environments) {
            if !n.env.same_numerics(&b.env) {
                environments = Some((n.env.clone(), b.env.clone()));
            }
        }
        for key in &p.eval_keys {
            let Some(e) = now_by_key.get(key).copied() else {
                ok = false;
                differences.push((
                    index,
                    format!("{}: the rerun's evaluation {} is not in its registry", p.name, key.short(12)),
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
                // The same suite under other attack versions: the baseline predates a change of
                // an attack's implementation (its numbers mean something else).
                let older = base_evals.iter().find(|b| {
                    b.config_hash == Some(p.config_hash)
                        && b.key.data == e.key.data
                        && b.key.subset == e.key.subset
                        && b.key.seed == e.key.seed
                        && without_versions(&b.suite) == without_versions(&e.suite)
                });
                let why = match older {
                    Some(old) => format!(
                        "the baseline evaluated config {short} on {} with other attack versions ({} there, {} now): \
                         its numbers come from older attack implementations; write a new baseline",
                        e.key.subset,
                        versions_of(&old.suite),
                        versions_of(&e.suite)
                    ),
                    None => format!(
                        "the baseline has no evaluation of config {short} with suite {} on {}",
                        e.key.suite_hash.short(12),
                        e.key.subset
                    ),
                };
                differences.push((index, format!("{}: {why}", p.name)));
            }
            for (metric, value) in metrics_of(e) {
                if pending.iter().any(|m| m.run == index && m.metric == metric) {
                    continue; // clean accuracy again, from the black-box evaluation
                }
                let baseline = base_metrics.get(&metric).map(|m| m.value);
                if b.is_some() && baseline.is_none() {
                    ok = false;
                    differences.push((index, format!("{}: {metric} is not in the baseline's evaluation", p.name)));
                }
                pending.push(Pending { run: index, metric, now: value, baseline, test });
            }
        }
        out.push(RunDiff {
            name: p.name.clone(),
            config_hash: p.config_hash,
            device,
            checkpoint_now,
            checkpoint_baseline,
            checkpoint_exact: exact,
            metrics: Vec::new(),
            ok,
        });
    }
    // Verdicts: the noise test's critical value counts every metric it judges.
    let tests = pending.iter().filter(|m| m.test == MetricTest::Noise && m.baseline.is_some()).count();
    let z = crate::stats::bonferroni_z(settings.alpha, tests);
    for m in pending {
        let class = metric_class(&m.metric);
        let tolerance = (settings.tolerance)(class);
        let diff = m.baseline.map(|b| m.now.value - b);
        let noise_sd = match (m.test, m.baseline) {
            (MetricTest::Noise, Some(b)) => Some(if m.now.proportion {
                crate::stats::proportion_difference_sd((m.now.value + b) / 2.0, m.now.n, (settings.seed_sd)(class))
            } else {
                std::f64::consts::SQRT_2 * (settings.seed_sd)(class)
            }),
            _ => None,
        };
        let band = noise_sd.map_or(tolerance, |sd| tolerance.max(z * sd));
        let within = diff.is_some_and(|d| d.abs() <= band + 1e-12);
        let run = &mut out[m.run];
        if let (Some(d), Some(b), false) = (diff, m.baseline, within) {
            run.ok = false;
            let why = match noise_sd {
                Some(sd) if sd > 0.0 => format!("noise band ±{band:.4}: {:.1} sd", d.abs() / sd),
                Some(_) => format!("noise band ±{band:.4}: the preset declares no seed spread for it"),
                None => format!("tolerance {tolerance}"),
            };
            differences.push((
                m.run,
                format!("{}: {} {:.4} vs baseline {b:.4} (Δ {d:+.4}, {why})", run.name, m.metric, m.now.value),
            ));
        }
        run.metrics.push(MetricDiff {
            metric: m.metric,
            now: m.now.value,
            baseline: m.baseline,
            diff,
            n: m.now.n,
            tolerance,
            test: m.test,
            noise_sd,
            band,
            ok: within,
        });
    }
    // Differences in plan order (a run's checkpoint line before its metrics).
    differences.sort_by_key(|(run, _)| *run);
    let differences: Vec<String> = differences.into_iter().map(|(_, d)| d).collect();
    let passed = differences.is_empty();
    Ok(RegressReport {
        preset: preset.to_string(),
        baseline: baseline.to_string(),
        runs: out,
        differences,
        environments,
        noise: (tests > 0).then_some(NoiseTest { alpha: settings.alpha, tests, z }),
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use infoat_registry::MethodKind;

    fn committed() -> (infoat_registry::bundle::BundleRecords, Vec<PlannedRun>) {
        bundle("quickstart")
    }

    fn bundle(name: &str) -> (infoat_registry::bundle::BundleRecords, Vec<PlannedRun>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/regress").join(name);
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
        (b, plan)
    }

    /// A numerics fingerprint for the tests (the committed baseline's records may predate it).
    fn fingerprint(family: u32) -> infoat_registry::Numerics {
        infoat_registry::Numerics {
            cpu_vendor: "AuthenticAMD".into(),
            cpu_family: Some(family),
            cpu_model: Some(1),
            cpu_stepping: Some(1),
            isa_flags: vec!["avx2".into(), "fma".into()],
            caches: vec!["L2 1024K".into()],
            aten_cpu_capability: "AVX2".into(),
            onednn_isa: "avx2".into(),
            onednn_version: "3.10.2".into(),
            mkl_version: "2024.2".into(),
            overrides: BTreeMap::new(),
        }
    }

    fn with_numerics(runs: &[RunRecord], family: u32) -> Vec<RunRecord> {
        let mut runs = runs.to_vec();
        for r in &mut runs {
            r.env.numerics = Some(fingerprint(family));
        }
        runs
    }

    const EXACT: Settings<'static> = Settings { tolerance: &|_| 0.0, seed_sd: &|_| 0.0, alpha: 0.01 };

    /// The committed quickstart baseline against itself with equal fingerprints, then against
    /// copies with another checkpoint: a difference under the same numerics, information only
    /// under another CPU generation.
    #[test]
    fn checkpoints_are_exact_under_the_same_numerics_and_informational_under_others() {
        let (b, plan) = committed();
        let runs = with_numerics(&b.runs, 25);
        let same = regress("quickstart", "self", &plan, (&runs, &b.evals), (&runs, &b.evals), &EXACT).unwrap();
        assert!(same.passed && same.differences.is_empty() && same.environments.is_none(), "{:?}", same.differences);
        assert!(same.noise.is_none());
        assert_eq!(same.runs.len(), 6);
        assert!(same.runs.iter().all(|r| r.checkpoint_exact && r.metrics.len() >= 10));
        assert!(same.runs.iter().flat_map(|r| &r.metrics).all(|m| m.test == MetricTest::Exact));

        let mut other = runs.clone();
        other[0].checkpoint_hash = Some("0".repeat(64).parse().unwrap());
        let r = regress("quickstart", "x", &plan, (&runs, &b.evals), (&other, &b.evals), &EXACT).unwrap();
        assert!(
            !r.passed && r.differences.len() == 1 && r.differences[0].contains("training changed"),
            "{:?}",
            r.differences
        );

        // Same CPU model name, another family: the fingerprint tells them apart.
        let other = with_numerics(&other, 26);
        let r = regress("quickstart", "x", &plan, (&runs, &b.evals), (&other, &b.evals), &EXACT).unwrap();
        assert!(r.passed, "another CPU generation: the checkpoint is information: {:?}", r.differences);
        assert!(r.environments.is_some() && !r.runs[0].checkpoint_exact);
        // A record without a fingerprint is never taken as the same numerics.
        let mut unknown = b.runs.clone();
        unknown[0].checkpoint_hash = Some("0".repeat(64).parse().unwrap());
        for r in &mut unknown {
            r.env.numerics = None;
        }
        let r = regress("quickstart", "x", &plan, (&runs, &b.evals), (&unknown, &b.evals), &EXACT).unwrap();
        assert!(r.passed && !r.runs[0].checkpoint_exact, "{:?}", r.differences);
        // A metric off by more than its tolerance fails under the same numerics.
        let mut evals = b.evals.clone();
        let e = evals.iter_mut().find(|e| e.attacks.contains_key("pgd20")).unwrap();
        e.attacks.get_mut("pgd20").unwrap().robust_acc += 0.02;
        let loose = Settings { tolerance: &|_| 0.01, ..EXACT };
        let r = regress("quickstart", "x", &plan, (&runs, &b.evals), (&runs, &evals), &loose).unwrap();
        assert!(!r.passed && r.differences.iter().any(|d| d.contains("pgd20")), "{:?}", r.differences);
    }

    /// Two real quickstart runs of the same configs on two CPU generations, both evaluated by
    /// the version-1 attacks (AMD EPYC family 25 without AVX-512; family 26 with AVX-512, recorded before the
    /// fingerprint existed): every checkpoint differs, and the metrics pass the noise test with
    /// the quickstart preset's measured seed spread, while they fail a bit-exact comparison.
    #[test]
    fn two_cpu_generations_pass_the_noise_test_with_the_quickstarts_seed_spread() {
        let (now, plan) = bundle("quickstart-epyc-family25-v1");
        let (old, _) = bundle("quickstart-epyc-family26");
        let preset: toml::Value = toml::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/presets/quickstart.toml"),
            )
            .unwrap(),
        )
        .unwrap();
        let sd = preset["regress"]["seed_sd"].clone();
        let seed_sd =
            move |m: &str| sd.get(m).or_else(|| sd.get("default")).and_then(toml::Value::as_float).unwrap_or(0.0);
        let alpha = preset["regress"]["alpha"].as_float().unwrap();
        let settings = Settings { tolerance: &|_| 0.0, seed_sd: &seed_sd, alpha };
        let r = regress("quickstart", "family26", &plan, (&now.runs, &now.evals), (&old.runs, &old.evals), &settings)
            .unwrap();
        assert!(r.passed, "{:?}", r.differences);
        assert!(r.environments.is_some() && r.runs.iter().all(|x| !x.checkpoint_exact));
        assert!(r.runs.iter().all(|x| x.checkpoint_now != x.checkpoint_baseline), "the CPUs trained other models");
        let differing = r.runs.iter().flat_map(|x| &x.metrics).filter(|m| m.diff.is_some_and(|d| d != 0.0)).count();
        assert!(differing > 20, "{differing} metrics differ");
        // Judged bit-exactly, the same pair would fail on most of those metrics.
        let mut same = old.runs.clone();
        for (o, n) in same.iter_mut().zip(now.runs.iter().cycle()) {
            o.env = n.env.clone();
        }
        let r =
            regress("quickstart", "family26", &plan, (&now.runs, &now.evals), (&same, &old.evals), &settings).unwrap();
        assert!(!r.passed && r.differences.len() >= differing, "{}", r.differences.len());
    }

    /// Across fingerprints a difference passes when sampling and seed noise explain it and
    /// fails beyond the Bonferroni band.
    #[test]
    fn across_numerics_differences_are_judged_against_the_noise_band() {
        let (b, plan) = committed();
        let (now, base) = (with_numerics(&b.runs, 25), with_numerics(&b.runs, 26));
        let settings =
            Settings { tolerance: &|_| 0.0, seed_sd: &|m| if m == "clean" { 0.01 } else { 0.0 }, alpha: 0.01 };
        let at = b.runs.iter().find(|r| MethodKind::of_config(&r.config) == Some(MethodKind::At)).unwrap().config_hash;
        let at_eval = |evals: &mut Vec<EvalRecord>| -> usize {
            evals.iter().position(|e| e.config_hash == Some(at) && e.attacks.contains_key("pgd20")).unwrap()
        };
        let shift = |metric: &str, by: f64| {
            let mut evals = b.evals.clone();
            let i = at_eval(&mut evals);
            if metric == "clean" {
                for e in evals.iter_mut().filter(|e| e.config_hash == Some(at)) {
                    e.clean_acc += by;
                }
            } else {
                evals[i].attacks.get_mut(metric).unwrap().robust_acc += by;
            }
            regress("quickstart", "x", &plan, (&now, &b.evals), (&base, &evals), &settings).unwrap()
        };
        let r = shift("pgd20", 0.0);
        assert!(r.passed, "{:?}", r.differences);
        let noise = r.noise.as_ref().expect("every metric is judged by the noise test");
        let compared = r.runs.iter().flat_map(|r| &r.metrics).filter(|m| m.baseline.is_some()).count();
        assert_eq!(noise.tests, compared);
        assert!((noise.z - crate::stats::bonferroni_z(0.01, compared)).abs() < 1e-12);
        // AT's PGD-20 on 50 images at about 50 %: sd √(2·0.25/50) = 0.1, so 0.1 (5 images) is
        // within any reasonable band and 0.5 is not.
        let r = shift("pgd20", -0.1);
        assert!(r.passed, "{:?}", r.differences);
        let m = r.runs.iter().flat_map(|r| &r.metrics).find(|m| m.metric == "pgd20" && m.diff != Some(0.0)).unwrap();
        assert!((m.noise_sd.unwrap() - 0.1).abs() < 0.01 && m.band > 0.3 && m.ok, "{m:?}");
        let r = shift("pgd20", -0.5);
        assert!(!r.passed && r.differences.len() == 1 && r.differences[0].contains("at: pgd20"), "{:?}", r.differences);
        assert!(r.differences[0].contains("noise band"), "{:?}", r.differences);
        // Clean accuracy on 10,000 images with σ_seed = 0.01: sd ≈ 0.015; 2 points pass, 10 fail.
        assert!(shift("clean", 0.02).passed);
        let r = shift("clean", -0.10);
        assert!(!r.passed && r.differences[0].contains("at: clean"), "{:?}", r.differences);
        // Without seed noise the clean band is sampling only, and 2 points are far outside it.
        let sampling = Settings { seed_sd: &|_| 0.0, ..settings };
        let mut evals = b.evals.clone();
        for e in evals.iter_mut().filter(|e| e.config_hash == Some(at)) {
            e.clean_acc += 0.02;
        }
        let r = regress("quickstart", "x", &plan, (&now, &b.evals), (&base, &evals), &sampling).unwrap();
        assert!(!r.passed, "{:?}", r.differences);
    }
}
