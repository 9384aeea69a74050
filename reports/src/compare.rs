//! Placing a new defense among everything in the registry (issue 6 "Comparing a new defense"):
//! the candidate's evaluation protocol (dataset, architecture or "external", eps, attack suite,
//! subset) selects every registry entry evaluated the same way; entries aggregate over seeds,
//! rank per metric, and each baseline's difference to the candidate is tested against noise.
//!
//! Noise (issue 21, paired statistics): when the candidate and a baseline each have one
//! evaluation with per-example flags on the same examples (the protocol fixes the data and the
//! subset), their difference is judged by McNemar's exact test on the examples only one of the
//! two gets right, significant when p < 0.05 ([`crate::stats::mcnemar_exact_p`]). Otherwise: with
//! n ≥ 2 seeds an entry's standard error is std/√n; with one seed it is the binomial standard
//! error √(p(1−p)/N) of an accuracy on N examples, and a difference "exceeds noise" when
//! |Δ| > 1.96 · √(se_candidate² + se_baseline²). A single evaluation's accuracy also carries its
//! exact 95 % (Clopper–Pearson) interval.

use std::collections::{BTreeMap, BTreeSet};

use infoat_registry::records::unpack_flags;
use infoat_registry::{ArchId, AttackId, DatasetId, EvalFlags, EvalRecord, MethodKind, Metric, RunRecord};
use serde::Serialize;
use serde_json::Value;

use crate::observations::recipe_hash;
use crate::{Error, Result};

/// One model's numbers under a protocol, aggregated over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Label (method, or the external model's file name).
    pub label: String,
    /// Architecture label or `external`.
    pub arch: String,
    /// True for the candidate.
    pub candidate: bool,
    /// Per metric: mean (fraction), std, n, standard error.
    pub metrics: BTreeMap<Metric, Stat>,
    /// Config hashes (empty for external models).
    pub config_hashes: Vec<String>,
    /// Model hashes (checkpoint digest or TorchScript sha256).
    pub model_hashes: Vec<String>,
    /// The entry's evaluations tripped sanity checks.
    pub flagged: bool,
    /// Per metric, the per-example flags of the entry's one evaluation (none for an entry of
    /// several seeds or an evaluation stored without flags).
    #[serde(skip)]
    pub per_example: BTreeMap<Metric, Vec<bool>>,
}

/// A mean with its spread.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    /// Mean over seeds, fraction in [0, 1].
    pub mean: f64,
    /// Sample standard deviation (0 for one seed).
    pub std: f64,
    /// Seeds.
    pub n: usize,
    /// Standard error (see the module docs).
    pub se: f64,
    /// Examples per evaluation.
    pub examples: usize,
    /// The exact 95 % (Clopper–Pearson) interval of a single evaluation's accuracy, as
    /// fractions; `None` for an entry of several seeds.
    pub interval: Option<(f64, f64)>,
}

/// One cell of the comparison: a baseline's value, rank and difference to the candidate.
#[derive(Debug, Clone, Serialize)]
pub struct CompareCell {
    /// Value in percent.
    pub value: Option<f64>,
    /// Rank within the column (1 = most robust).
    pub rank: Option<usize>,
    /// Candidate − this entry, in percentage points (None for the candidate itself).
    pub diff: Option<f64>,
    /// |diff| exceeds noise (see the module docs for the test).
    pub significant: bool,
    /// McNemar's exact two-sided p on the paired per-example flags, when both sides have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

/// A comparison row.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// The entry.
    pub entry: Entry,
    /// Cells in column order.
    pub cells: Vec<CompareCell>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The candidate's label.
    pub candidate: String,
    /// The shared protocol.
    pub protocol: String,
    /// The metrics in column order (serialized as their names).
    pub metrics: Vec<Metric>,
    /// Column headings.
    pub headers: Vec<String>,
    /// Rows, candidate first, then by the last column's rank.
    pub rows: Vec<CompareRow>,
    /// For the last column (the strongest attack): each baseline whose order relative to the
    /// candidate is not significant at 5 %, said in a sentence.
    pub not_significant: Vec<String>,
    /// The candidate's place on RobustBench's L∞ leaderboard of its dataset (issue 23), when it
    /// was evaluated under RobustBench's protocol ([`crate::robustbench`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaderboard: Option<crate::robustbench::Placement>,
    /// Why a CIFAR-10/100 candidate is not placed on the leaderboard: each departure from
    /// RobustBench's protocol.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leaderboard_departures: Vec<String>,
}

/// Where `compare` finds an evaluation's per-example flags (the registry keeps them apart from
/// the record); `None` when the evaluation has none.
pub type FlagSource<'a> = dyn Fn(&EvalRecord) -> Result<Option<EvalFlags>> + 'a;

/// An evaluation's per-example flags by metric (clean correctness under `Natural`).
fn flags_by_metric(flags: &EvalFlags) -> Result<BTreeMap<Metric, Vec<bool>>> {
    let mut out = BTreeMap::new();
    if let Some(clean) = unpack_flags(&flags.clean) {
        out.insert(Metric::Natural, clean);
    }
    for (a, packed) in &flags.attacks {
        let id: AttackId = a.parse().map_err(Error::Invalid)?;
        if let Some(f) = unpack_flags(packed) {
            out.insert(Metric::robust(id), f);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Protocol {
    data: String,
    subset: String,
    suite: String,
    arch: String,
}

fn protocol_of(e: &EvalRecord, arch: &str) -> Protocol {
    Protocol {
        data: e.key.data.clone(),
        subset: e.key.subset.clone(),
        suite: e.key.suite_hash.to_hex(),
        arch: arch.to_string(),
    }
}

/// What one evaluation contributes to a comparison.
struct Identity {
    /// The entry it belongs to: the run's recipe, or the external model's hash.
    entry: String,
    /// Its row label.
    label: String,
    /// Architecture label, or `external`.
    arch: String,
}

fn identify(e: &EvalRecord, runs: &BTreeMap<String, &RunRecord>) -> Result<Identity> {
    if let Some(run) = e.config_hash.and_then(|h| runs.get(&h.to_hex())) {
        let c = &run.config;
        let kind = c.pointer("/method/kind").and_then(Value::as_str).unwrap_or("unknown");
        let arch = c.pointer("/model/arch").and_then(Value::as_str).unwrap_or("unknown");
        let recipe = recipe_hash(c)?;
        let label = format!("{} [{}]", MethodKind::label_of(kind), &recipe[..8]);
        return Ok(Identity { entry: recipe, label, arch: ArchId::label_of(arch) });
    }
    let path = e.model.get("path").and_then(Value::as_str).unwrap_or("model");
    let name = std::path::Path::new(path).file_name().map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
    let arch = e.model.get("arch").and_then(Value::as_str).map_or("external".to_string(), ArchId::label_of);
    let hash = e.key.model_hash.to_hex();
    Ok(Identity { label: format!("{name} [{}]", &hash[..8]), entry: hash, arch })
}

fn examples(subset: &str) -> (usize, usize) {
    let (c, a) = subset.split_once('/').unwrap_or((subset, subset));
    (c.parse().unwrap_or(0), a.parse().unwrap_or(0))
}

/// Compares `candidate` — a run's config hash or an evaluation key hash, full or a unique
/// prefix — with every registry entry evaluated under its protocol (that of the candidate's
/// evaluation with the most attacks, the latest among equals).
///
/// `flags` gives the per-example flags of an evaluation (`|_| Ok(None)` without them: the
/// comparison then uses the unpaired noise bands only).
pub fn compare(
    candidate: &str,
    runs: &[RunRecord],
    evals: &[EvalRecord],
    flags: &FlagSource<'_>,
) -> Result<Comparison> {
    let complete: BTreeMap<String, &RunRecord> =
        runs.iter().filter(|r| r.is_complete()).map(|r| (r.config_hash.to_hex(), r)).collect();
    let key_hashes: Vec<String> = evals.iter().map(|e| e.key.hash().map(|h| h.to_hex())).collect::<Result<_, _>>()?;
    let by_run: Vec<usize> =
        (0..evals.len()).filter(|&i| evals[i].config_hash.is_some_and(|h| h.to_hex().starts_with(candidate))).collect();
    let by_key: Vec<usize> = (0..evals.len()).filter(|&i| key_hashes[i].starts_with(candidate)).collect();
    let picked = if !by_run.is_empty() { by_run } else { by_key };
    if candidate.len() < 4 || picked.is_empty() {
        return Err(Error::Invalid(format!(
            "no evaluation in the registry belongs to '{candidate}': give a run's config hash or an evaluation key \
             (at least 4 hex digits; see `infoat registry ls`), and evaluate it first with `infoat eval`"
        )));
    }
    // The candidate's evaluation with the most attacks decides the protocol (ties: the latest).
    let cand = *picked.iter().max_by_key(|&&i| (evals[i].attacks.len(), &evals[i].attempt, i)).expect("non-empty");
    // Each evaluation is identified once (a run's recipe hash is a canonical-JSON digest).
    let ids: Vec<Identity> = evals.iter().map(|e| identify(e, &complete)).collect::<Result<_>>()?;
    let arch_for_protocol = if evals[cand].config_hash.is_some() { ids[cand].arch.clone() } else { "external".into() };
    let protocol = protocol_of(&evals[cand], &arch_for_protocol);

    // Latest evaluation per model under the protocol.
    let mut latest: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in evals.iter().enumerate() {
        let p = protocol_of(e, if protocol.arch == "external" { "external" } else { &ids[i].arch });
        if p != protocol {
            continue;
        }
        let id = e.key.model_hash.to_hex();
        if latest.get(&id).is_none_or(|&old| evals[old].attempt < e.attempt) {
            latest.insert(id, i);
        }
    }
    // Group models into entries (a recipe's seeds together).
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in latest.values() {
        groups.entry(ids[i].entry.clone()).or_default().push(i);
    }
    let (n_clean, n_attacked) = examples(&protocol.subset);
    let mut metric_ids: BTreeSet<Metric> = BTreeSet::new();
    let mut entries = Vec::new();
    for (key, members) in &groups {
        let es: Vec<&EvalRecord> = members.iter().map(|&i| &evals[i]).collect();
        let mut values: BTreeMap<Metric, Vec<f64>> = BTreeMap::new();
        for e in &es {
            values.entry(Metric::Natural).or_default().push(e.clean_acc);
            for (a, r) in &e.attacks {
                let id: AttackId = a.parse().map_err(Error::Invalid)?;
                values.entry(Metric::robust(id)).or_default().push(r.robust_acc);
            }
        }
        let metrics = values
            .into_iter()
            .map(|(m, v)| {
                metric_ids.insert(m);
                let n = v.len();
                let mean = v.iter().sum::<f64>() / n as f64;
                let std = if n >= 2 {
                    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
                } else {
                    0.0
                };
                let examples = if m == Metric::Natural { n_clean } else { n_attacked };
                let se = if n >= 2 {
                    std / (n as f64).sqrt()
                } else {
                    (mean * (1.0 - mean) / examples.max(1) as f64).sqrt()
                };
                let interval = (n == 1 && m != Metric::Adbd).then(|| {
                    let k = (mean * examples as f64).round() as usize;
                    crate::stats::clopper_pearson(k.min(examples), examples, 0.05)
                });
                (m, Stat { mean, std, n, se, examples, interval })
            })
            .collect();
        let id = &ids[members[0]];
        let (label, arch) = (id.label.clone(), id.arch.clone());
        let mut config_hashes: Vec<String> = es.iter().filter_map(|e| e.config_hash.map(|h| h.to_hex())).collect();
        config_hashes.sort();
        let mut model_hashes: Vec<String> = es.iter().map(|e| e.key.model_hash.to_hex()).collect();
        model_hashes.sort();
        let per_example = match es.as_slice() {
            [one] => flags(one)?.map(|f| flags_by_metric(&f)).transpose()?.unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        entries.push(Entry {
            label,
            arch,
            candidate: *key == ids[cand].entry,
            metrics,
            config_hashes,
            model_hashes,
            flagged: es.iter().any(|e| !e.sanity.is_empty()),
            per_example,
        });
    }
    let mut metrics: Vec<Metric> = metric_ids.into_iter().collect();
    metrics.sort_by_key(|m| m.rank());
    let cand_entry = entries.iter().find(|e| e.candidate).cloned().expect("the candidate is under its own protocol");
    let mut rows: Vec<CompareRow> = entries
        .iter()
        .map(|e| {
            let cells = metrics
                .iter()
                .map(|m| {
                    let Some(s) = e.metrics.get(m) else {
                        return CompareCell { value: None, rank: None, diff: None, significant: false, p_value: None };
                    };
                    let rank = 1 + entries
                        .iter()
                        .filter(|o| o.metrics.get(m).is_some_and(|x| x.mean > s.mean + 1e-12))
                        .count();
                    let paired = match (cand_entry.per_example.get(m), e.per_example.get(m)) {
                        (Some(a), Some(b)) if a.len() == b.len() && !e.candidate => {
                            let only_candidate = a.iter().zip(b).filter(|(x, y)| **x && !**y).count();
                            let only_baseline = a.iter().zip(b).filter(|(x, y)| !**x && **y).count();
                            Some(crate::stats::mcnemar_exact_p(only_candidate, only_baseline))
                        }
                        _ => None,
                    };
                    let (diff, significant) = match (e.candidate, cand_entry.metrics.get(m)) {
                        (false, Some(c)) => {
                            let d = c.mean - s.mean;
                            let significant = match paired {
                                Some(p) => p < 0.05,
                                None => d.abs() > 1.96 * (c.se.powi(2) + s.se.powi(2)).sqrt(),
                            };
                            (Some(100.0 * d), significant)
                        }
                        _ => (None, false),
                    };
                    CompareCell { value: Some(100.0 * s.mean), rank: Some(rank), diff, significant, p_value: paired }
                })
                .collect();
            CompareRow { entry: e.clone(), cells }
        })
        .collect();
    let last = metrics.len().saturating_sub(1);
    rows.sort_by_key(|r| {
        (!r.entry.candidate, r.cells.get(last).and_then(|c| c.rank).unwrap_or(usize::MAX), r.entry.label.clone())
    });
    let not_significant = match metrics.last() {
        Some(m) => rows
            .iter()
            .filter_map(|r| {
                let cell = r.cells.get(last)?;
                let d = cell.diff.filter(|_| !cell.significant)?;
                let order = if d < 0.0 {
                    "above"
                } else if d > 0.0 {
                    "below"
                } else {
                    "level with"
                };
                let test = cell.p_value.map_or_else(
                    || "within 1.96 combined standard errors".to_string(),
                    |p| format!("McNemar's exact p = {p:.2} on the paired examples"),
                );
                Some(format!(
                    "{} ranks {order} the candidate under {} by {:.2} points: not significant at 5 % ({test})",
                    r.entry.label,
                    m.header(),
                    d.abs()
                ))
            })
            .collect(),
        None => Vec::new(),
    };
    let (leaderboard, leaderboard_departures) = match crate::robustbench::dataset_of(&evals[cand]) {
        Some(DatasetId::Cifar10 | DatasetId::Cifar100) => {
            let e = &evals[cand];
            let arch = e.model.get("arch").and_then(Value::as_str).and_then(|a| a.parse::<ArchId>().ok());
            let arch = arch.map_or("external", crate::robustbench::architecture_label);
            match crate::robustbench::place(e, &ids[cand].label, arch)? {
                Ok(p) => (Some(p), Vec::new()),
                Err(why) => (None, why),
            }
        }
        _ => (None, Vec::new()),
    };
    let (ds, _) = protocol.data.split_once('/').unwrap_or((&protocol.data, ""));
    let eps = crate::observations::suite_eps(&evals[cand]);
    Ok(Comparison {
        candidate: ids[cand].label.clone(),
        protocol: format!(
            "{} test, clean on {n_clean}, attacks on the first {n_attacked}, L∞ eps {eps:.6}, {}, suite {}",
            DatasetId::label_of(ds),
            if protocol.arch == "external" { "any architecture".to_string() } else { protocol.arch.clone() },
            &protocol.suite[..12]
        ),
        headers: metrics.iter().map(|m| m.header().to_string()).collect(),
        metrics,
        rows,
        not_significant,
        leaderboard,
        leaderboard_departures,
    })
}
