//! From registry records to observations: one number per (trained model, evaluation protocol,
//! metric), labelled the way the paper's tables label rows and columns, with the hashes that
//! trace it back to a config and a checkpoint.
//!
//! A row of a table is a *recipe*: a run config without its seed (and without where it ran),
//! so the seeds of one recipe aggregate into one cell while two InfoAT variants that differ in a
//! hyperparameter stay apart. Only complete runs count; of several attempts of one config the
//! latest complete one is used, and of several attempts of one evaluation the latest.

use std::collections::BTreeMap;

use infoat_registry::{
    canonical_json, ArchId, AttackDiagnostics, AttackId, ContentHash, DatasetId, EvalRecord, Hasher, MethodKind,
    Metric, PaperTable, RunRecord, VerificationRecord,
};
use serde::Serialize;
use serde_json::Value;

use crate::Result;

/// One reproduced number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// The paper table whose layout it belongs in (serialized as printed: `II`, `V`, …).
    pub table: PaperTable,
    /// Dataset as the paper prints it (`CIFAR-10`, `MNIST`).
    pub dataset: String,
    /// Architecture as the paper prints it (`ResNet-18`, `SmallCNN`).
    pub arch: String,
    /// Method as the paper prints it (`AT`, `InfoAT`), with the recipe prefix when two recipes
    /// of one method meet in a table.
    pub method: String,
    /// The recipe: hash of the config without seed and device.
    pub recipe: String,
    /// The evaluation protocol: dataset split, subset sizes, eps, attack-suite hash.
    pub protocol: String,
    /// The L∞ radius of the attacks.
    pub eps: f64,
    /// Clean accuracy, an attack's robust accuracy or RayS's ADBD.
    pub metric: Metric,
    /// Accuracy as a fraction in [0, 1] (ADBD: an L∞ distance).
    pub value: f64,
    /// The attack's cost: model forward passes per attacked example, when recorded.
    pub cost: Option<f64>,
    /// Examples behind the accuracy (evaluated clean, or attacked).
    pub examples: usize,
    /// Examples the attack broke (attacks only).
    pub broken: Option<usize>,
    /// Of those, witnesses `infoat verify-evidence` confirmed in its latest check of this
    /// evaluation; `None` when never checked.
    pub confirmed: Option<usize>,
    /// The run's seed.
    pub seed: u64,
    /// The run's config hash.
    pub config_hash: String,
    /// The evaluated checkpoint.
    pub checkpoint_hash: String,
    /// The evaluation's key hash.
    pub eval_key: String,
    /// The evaluation tripped a sanity check.
    pub flagged: bool,
    /// The sanity checks, `check: message`.
    pub flags: Vec<String>,
    /// Where it was trained (device, GPU or CPU model, libtorch, harness version and commit).
    pub environment: String,
    /// Model backward passes per attacked example, when recorded.
    pub backward: Option<f64>,
    /// The attack's diagnostics (issue 22), when the evaluation ran them.
    pub diagnostics: Option<AttackDiagnostics>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The recipe hash of a resolved config: everything but `seed` and `device`.
pub fn recipe_hash(config: &Value) -> Result<String> {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("seed");
        o.remove("device");
    }
    let mut h = Hasher::new("infoat-recipe-v1");
    h.str(&canonical_json(&c)?);
    Ok(h.finish().to_hex())
}

fn environment(r: &RunRecord) -> String {
    let e = &r.env;
    let hw = e.gpu.clone().or_else(|| e.cpu.clone()).unwrap_or_default();
    format!(
        "{} ({hw}), libtorch {}, {} threads, infoat {} @ {}",
        e.device,
        e.libtorch,
        e.threads,
        e.harness_version,
        &e.git_commit[..e.git_commit.len().min(12)]
    )
}

/// The attacks' L∞ radius an evaluation recorded in its suite.
pub fn suite_eps(e: &EvalRecord) -> f64 {
    e.suite.get("eps").and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn protocol(e: &EvalRecord, eps: f64) -> String {
    let split = e.key.data.split('/').take(2).collect::<Vec<_>>().join("/");
    let (clean, attacked) = e.key.subset.split_once('/').unwrap_or((e.key.subset.as_str(), e.key.subset.as_str()));
    format!(
        "{split}: clean on {clean}, attacks on the first {attacked}, L∞ eps {eps:.6}, suite {}",
        &e.key.suite_hash.to_hex()[..12]
    )
}

/// Every observation the registry's records support: each evaluation of a complete run's final
/// checkpoint gives its clean accuracy (`natural`) and one number per attack, with the confirmed
/// witness counts of the latest of `verifications` that checked it.
pub fn collect(
    runs: &[RunRecord],
    evals: &[EvalRecord],
    verifications: &[VerificationRecord],
) -> Result<Vec<Observation>> {
    // The latest check of each evaluation attempt.
    let mut checked: BTreeMap<(ContentHash, &str), &VerificationRecord> = BTreeMap::new();
    for v in verifications {
        let k = (v.eval_key, v.eval_attempt.as_str());
        if checked.get(&k).is_none_or(|old| (old.finished_unix, &old.attempt) < (v.finished_unix, &v.attempt)) {
            checked.insert(k, v);
        }
    }
    // Latest complete attempt per config.
    let mut latest: BTreeMap<ContentHash, &RunRecord> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.is_complete()) {
        let keep = latest.get(&r.config_hash).is_none_or(|old| old.attempt < r.attempt);
        if keep {
            latest.insert(r.config_hash, r);
        }
    }
    // Latest attempt per (checkpoint, protocol).
    let mut chosen: BTreeMap<(ContentHash, String), &EvalRecord> = BTreeMap::new();
    for e in evals {
        let Some(cfg) = e.config_hash else { continue };
        let Some(run) = latest.get(&cfg) else { continue };
        if run.checkpoint_hash != Some(e.key.model_hash) {
            continue;
        }
        let key = (e.key.model_hash, protocol(e, suite_eps(e)));
        let keep = chosen.get(&key).is_none_or(|old| old.attempt < e.attempt);
        if keep {
            chosen.insert(key, e);
        }
    }
    let mut out = Vec::new();
    for ((_, proto), e) in chosen {
        let run = latest[&e.config_hash.expect("invariant: filtered above")];
        let c = &run.config;
        let dataset_id = str_at(c, &["data", "dataset"]).unwrap_or("unknown");
        let arch_id = str_at(c, &["model", "arch"]).unwrap_or("unknown");
        let kind = str_at(c, &["method", "kind"]).unwrap_or("unknown");
        let table = ArchId::of_config(c).map_or(PaperTable::II, ArchId::whitebox_table);
        let eps = suite_eps(e);
        let flags: Vec<String> = e.sanity.iter().map(|s| format!("{}: {}", s.check, s.message)).collect();
        let (table, method) = match mine_row(c) {
            Some(label) => (PaperTable::I, label),
            None => (table, MethodKind::label_of(kind)),
        };
        let check = checked.get(&(e.key.hash()?, e.attempt.as_str())).copied();
        let base = Observation {
            table,
            dataset: DatasetId::label_of(dataset_id),
            arch: ArchId::label_of(arch_id),
            method,
            recipe: recipe_hash(c)?[..12].to_string(),
            protocol: proto.clone(),
            eps,
            metric: Metric::Natural,
            value: e.clean_acc,
            cost: None,
            examples: e.n,
            broken: None,
            confirmed: None,
            seed: c.get("seed").and_then(Value::as_u64).unwrap_or(0),
            config_hash: run.config_hash.to_hex(),
            checkpoint_hash: e.key.model_hash.to_hex(),
            eval_key: e.key.hash()?.to_hex(),
            flagged: !flags.is_empty(),
            flags,
            environment: environment(run),
            backward: None,
            diagnostics: None,
        };
        for (attack, r) in &e.attacks {
            // Black-box attacks go to their own tables (III: SPSA, IV: RayS's ADBD and robust
            // accuracy); white-box ones stay in the run's table.
            let id: AttackId =
                attack.parse().map_err(|e| crate::Error::Invalid(format!("evaluation {}: {e}", base.eval_key)))?;
            let table = id.black_box_table().unwrap_or(base.table);
            // A self-test the attack was expected to pass and did not flags its cells (only its).
            let mut flags = base.flags.clone();
            if let Some(d) = &r.diagnostics {
                for (test, t) in d.failed_self_tests() {
                    flags.push(format!(
                        "self_test: {attack} found {}/{} of the {test} test's planted adversarial examples (expected ≥ \
                         {:.0} %)",
                        t.found,
                        t.planted,
                        100.0 * infoat_registry::SelfTestResult::PASS_FRACTION
                    ));
                }
            }
            let evidence = Observation {
                examples: r.total,
                broken: Some(r.total.saturating_sub(r.correct)),
                confirmed: check.and_then(|v| v.attacks.get(attack)).map(|t| t.confirmed),
                backward: r.backward_passes,
                diagnostics: r.diagnostics.clone(),
                flagged: !flags.is_empty(),
                flags,
                ..base.clone()
            };
            if id == AttackId::Rays {
                if let Some(adbd) = r.adbd {
                    out.push(Observation {
                        table,
                        metric: Metric::Adbd,
                        value: adbd,
                        cost: r.forward_passes,
                        broken: None,
                        confirmed: None,
                        ..evidence.clone()
                    });
                }
                out.push(Observation {
                    table,
                    metric: Metric::RobAcc,
                    value: r.robust_acc,
                    cost: r.forward_passes,
                    ..evidence
                });
                continue;
            }
            out.push(Observation {
                table,
                metric: Metric::Attack(id),
                value: r.robust_acc,
                cost: r.forward_passes,
                ..evidence
            });
        }
        // Clean accuracy belongs to the white-box tables; an evaluation with black-box attacks
        // only (Tables III and IV print no clean column) does not add a row of its own there.
        let black_box_only =
            !e.attacks.is_empty() && e.attacks.keys().all(|a| a.parse::<AttackId>().is_ok_and(AttackId::is_black_box));
        if !black_box_only {
            out.push(base);
        }
    }
    disambiguate(&mut out);
    Ok(out)
}

/// Table I's row label of an InfoAT config that estimates the mutual information with MINE
/// (paper §V-B): `InfoAT (MINE layer l, λ = x)`, the spelling of the published rows.
pub fn mine_row(config: &Value) -> Option<String> {
    let m = config.get("method")?;
    if m.get("kind")?.as_str()? != "infoat" || m.pointer("/mi_estimator/kind")?.as_str()? != "mine" {
        return None;
    }
    let layer = m.pointer("/mi_estimator/layer")?.as_u64()?;
    let lambda = m.get("lambda")?.as_f64()?;
    Some(format!("InfoAT (MINE layer {layer}, λ = {lambda:.1})"))
}

/// Two recipes of one method in one grid get the recipe prefix in their label.
fn disambiguate(obs: &mut [Observation]) {
    let mut recipes: BTreeMap<(PaperTable, String, String, String, String), Vec<String>> = BTreeMap::new();
    for o in obs.iter() {
        let v = recipes
            .entry((o.table, o.dataset.clone(), o.arch.clone(), o.protocol.clone(), o.method.clone()))
            .or_default();
        if !v.contains(&o.recipe) {
            v.push(o.recipe.clone());
        }
    }
    for o in obs.iter_mut() {
        let k = (o.table, o.dataset.clone(), o.arch.clone(), o.protocol.clone(), o.method.clone());
        if recipes[&k].len() > 1 {
            o.method = format!("{} [{}]", o.method, &o.recipe[..8]);
        }
    }
}
