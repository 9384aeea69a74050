//! `verify-evidence` (issue 21): every stored witness of an evaluation re-checked with nothing
//! but the model's forward pass ([`crate::evidence::check`]) — the model loaded as the record
//! names it (its hash compared with the key's), the evaluated test images read again (their
//! fingerprint compared with the record's) — per attack: broken, witnessed, confirmed.

use std::path::Path;

use infoat_registry::records::new_attempt;
use infoat_registry::{AttackId, ContentHash, EvalRecord, Registry, VerificationRecord, WitnessTally};
use serde::Serialize;

use super::evaluate::{load_model, ModelIdentity, ModelSource};
use super::{load_split, now_unix, DataIdentity, Subset};
use crate::data::Split;
use crate::evidence::{check, Witnesses};
use crate::{Error, Result};

/// A witness the check did not confirm.
#[derive(Debug, Clone, Serialize)]
pub struct FailedWitness {
    /// The example's position in the test set.
    pub index: usize,
    /// Its L∞ distance to the clean image.
    pub linf: f64,
    /// Every pixel in [0, 1].
    pub in_box: bool,
    /// The verdict classifier gets it wrong.
    pub fools: bool,
}

/// One attack's evidence.
#[derive(Debug, Clone, Serialize)]
pub struct AttackEvidence {
    /// The attack id.
    pub attack: String,
    /// L∞ radius.
    pub eps: f64,
    /// Examples the attack broke (attacked − robust).
    pub broken: usize,
    /// Witnesses stored; `None` when the evaluation stored none (before witnesses were kept).
    pub witnessed: Option<usize>,
    /// Witnesses the check confirmed.
    pub confirmed: usize,
    /// The witnesses it did not confirm.
    pub failed: Vec<FailedWitness>,
}

/// Version of the witness check's semantics (recorded with every verification).
pub const VERIFIER_SEMVER: &str = "1.0.0";

/// One evaluation's evidence.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceReport {
    /// The evaluation key.
    pub key: ContentHash,
    /// The evaluation's attempt.
    #[serde(skip)]
    pub attempt: String,
    /// The model file.
    pub model: String,
    /// Test images evaluated.
    pub images: usize,
    /// Per attack.
    pub attacks: Vec<AttackEvidence>,
}

impl EvidenceReport {
    /// True when every stored witness was confirmed.
    pub fn confirmed(&self) -> bool {
        self.attacks.iter().all(|a| a.failed.is_empty())
    }

    /// The registry record of this check (attacks without stored witnesses are left out: they
    /// were not checked), for reports to print confirmed counts beside robust accuracies.
    pub fn record(&self, device: tch::Device) -> VerificationRecord {
        let attacks = self
            .attacks
            .iter()
            .filter_map(|a| {
                let witnessed = a.witnessed?;
                Some((a.attack.clone(), WitnessTally { broken: a.broken, witnessed, confirmed: a.confirmed }))
            })
            .collect();
        VerificationRecord {
            eval_key: self.key,
            eval_attempt: self.attempt.clone(),
            attempt: new_attempt(),
            attacks,
            verifier_semver: VERIFIER_SEMVER.to_string(),
            finished_unix: now_unix(),
            env: crate::env::fingerprint(device),
        }
    }
}

/// Verifies `record`'s witnesses and stores the outcome in the registry.
pub fn verify_and_record(registry: &Registry, record: &EvalRecord, device: tch::Device) -> Result<EvidenceReport> {
    let report = verify(registry, record, device)?;
    registry.put_verification(&report.record(device))?;
    Ok(report)
}

/// The evaluations `keys` name (unique prefixes; the latest attempt of each), or every
/// evaluation in the registry with `all`.
pub fn select(registry: &Registry, keys: &[String], all: bool) -> Result<Vec<EvalRecord>> {
    let evals = registry.evals()?;
    if all {
        return Ok(evals);
    }
    if keys.is_empty() {
        return Err(Error::Invalid(
            "name the evaluations to verify (keys from `infoat registry ls`) or pass --all".into(),
        ));
    }
    // Each key hashed once; a prefix picks the latest attempt of the one key it names.
    let hexes: Vec<String> =
        evals.iter().map(|e| e.key.hash().map(|h| h.to_hex())).collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::new();
    for k in keys {
        let k = k.trim().to_ascii_lowercase();
        let hits: Vec<(&String, &EvalRecord)> = hexes.iter().zip(&evals).filter(|(h, _)| h.starts_with(&k)).collect();
        let distinct: std::collections::BTreeSet<&String> = hits.iter().map(|(h, _)| *h).collect();
        match (k.len() >= 4, distinct.len()) {
            (true, 1) => out.push(hits.iter().max_by_key(|(_, e)| &e.attempt).expect("non-empty").1.clone()),
            (true, 0) | (false, _) => {
                return Err(Error::Invalid(format!(
                    "no evaluation key starts with '{k}' (give at least 4 hex digits; `infoat registry ls` lists them)"
                )))
            }
            (true, n) => {
                return Err(Error::Invalid(format!("'{k}' matches {n} evaluation keys; give more digits")));
            }
        }
    }
    Ok(out)
}

/// Verifies the witnesses of `record` on `device`.
pub fn verify(registry: &Registry, record: &EvalRecord, device: tch::Device) -> Result<EvidenceReport> {
    let key = record.key.hash()?;
    let bad = |what: String| Error::Invalid(format!("evaluation {}: {what}", key.short(12)));
    let identity: ModelIdentity =
        serde_json::from_value(record.model.clone()).map_err(|e| bad(format!("unreadable model identity ({e})")))?;
    let data: DataIdentity =
        serde_json::from_value(record.data.clone()).map_err(|e| bad(format!("unreadable data identity ({e})")))?;
    let source = match identity.source.as_str() {
        "run" => ModelSource::Run {
            hash: identity.config_hash.ok_or_else(|| bad("a run's identity without a config hash".into()))?.to_hex(),
        },
        "checkpoint" => ModelSource::Checkpoint { path: identity.path.clone(), arch: identity.arch },
        _ => ModelSource::TorchScript { path: identity.path.clone() },
    };
    let (model, loaded, dataset, _) = load_model(&source, Some(registry), Some(data.dataset), device)?;
    if loaded.hash != record.key.model_hash {
        return Err(bad(format!(
            "the model at {} hashes to {}, not the evaluated {}: it changed since",
            identity.path.display(),
            loaded.hash.short(16),
            record.key.model_hash.short(16)
        )));
    }
    let (test, _) = load_split(dataset, Some(&data.dir), Split::Test)?;
    let test = test.take(data.images);
    if test.fingerprint() != data.fingerprint {
        return Err(bad(format!(
            "the {} test images in {} are not the evaluated ones (fingerprint differs)",
            data.images,
            data.dir.display()
        )));
    }
    // The attacks of one evaluation share its attacked subset (the first `attacked` images).
    let subset: Subset = record.key.subset.parse().map_err(|e: String| bad(e))?;
    let attacked = test.take(subset.attacked);
    let mut attacks = Vec::new();
    for (id, result) in &record.attacks {
        let broken = result.total - result.correct;
        let Some(blob) = record.witnesses.get(id) else {
            attacks.push(AttackEvidence {
                attack: id.clone(),
                eps: result.eps,
                broken,
                witnessed: None,
                confirmed: 0,
                failed: Vec::new(),
            });
            continue;
        };
        let attack: AttackId = id.parse().map_err(|e: String| bad(e))?;
        let bytes = registry.blobs().read_verified(blob)?;
        let witnesses = Witnesses::from_bytes(&bytes, &registry.blobs().path(blob))?;
        let checks = check(model.as_ref(), attack, &attacked, &witnesses, result.eps)?;
        let failed: Vec<FailedWitness> = checks
            .iter()
            .filter(|c| !c.confirmed)
            .map(|c| FailedWitness { index: c.index, linf: c.linf, in_box: c.in_box, fools: c.fools })
            .collect();
        attacks.push(AttackEvidence {
            attack: id.clone(),
            eps: result.eps,
            broken,
            witnessed: Some(witnesses.len()),
            confirmed: checks.len() - failed.len(),
            failed,
        });
    }
    Ok(EvidenceReport {
        key,
        attempt: record.attempt.clone(),
        model: identity.path.display().to_string(),
        images: data.images,
        attacks,
    })
}

/// The device an evaluation ran on, for re-predicting its witnesses the same way (CPU when
/// that GPU is not here).
pub fn device_of(record: &EvalRecord) -> tch::Device {
    match record.env.device.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
        Some(i) if tch::Cuda::is_available() && i < tch::Cuda::device_count() as usize => tch::Device::Cuda(i),
        _ => tch::Device::Cpu,
    }
}

/// Verifies and records, for each of `keys`, the latest attempt of the evaluation unless a
/// check of that attempt is already in the registry (so a rerun of a preset checks nothing
/// twice); returns the checks made.
pub fn verify_unchecked(registry: &Registry, keys: &[ContentHash]) -> Result<Vec<EvidenceReport>> {
    let checked: std::collections::BTreeSet<(ContentHash, String)> =
        registry.verifications()?.into_iter().map(|v| (v.eval_key, v.eval_attempt)).collect();
    let mut out = Vec::new();
    for key in keys {
        let Some(record) = registry.find_eval(key, super::EVAL_SEMVER)? else { continue };
        if record.witnesses.is_empty() || checked.contains(&(*key, record.attempt.clone())) {
            continue;
        }
        out.push(verify_and_record(registry, &record, device_of(&record))?);
    }
    Ok(out)
}

/// Where a report's model came from, for the text output.
pub fn describe(path: &str) -> String {
    Path::new(path).file_name().map_or(path.to_string(), |n| n.to_string_lossy().into_owned())
}
