//! Preset workflow: what of a preset run the registry holds, and one run reproduced (trained
//! and evaluated, or both reused) with its verdict against the preset's targets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use infoat_registry::{ContentHash, EvalRecord, Registry};
use serde::Serialize;

use super::evaluate::{evaluate, EvalReport, EvalRequest, ModelSource};
use super::suite::suite_description;
use super::train::STATE;
use super::train::{train_run, work_dir};
use super::{EVAL_SEMVER, TRAINING_SEMVER};
use crate::attacks::AttackId;
use crate::data::Dataset;
use crate::methods::default_eps;
use crate::models::Arch;
use crate::preset::PresetRun;
use crate::sanity::SanityFlag;
use crate::train::{latest_state_epoch, Progress};
use crate::{Error, Result};

/// What of a preset run the registry already holds (`reproduce --dry-run`, `sweep`).
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    /// The run's config hash.
    pub config_hash: ContentHash,
    /// Its complete run's checkpoint, when trained.
    pub checkpoint_hash: Option<ContentHash>,
    /// Epochs an interrupted attempt has saved (training resumes after them).
    pub resume_after_epoch: Option<usize>,
    /// The white-box evaluation (clean accuracy and `eval.attacks`) is recorded.
    pub evaluated: bool,
    /// The black-box evaluation is recorded (`None`: the run has none).
    pub black_box_evaluated: Option<bool>,
}

impl PlanStatus {
    /// True when nothing is left to do.
    pub fn done(&self) -> bool {
        self.checkpoint_hash.is_some() && self.evaluated && self.black_box_evaluated != Some(false)
    }
}

/// Looks up, without loading data or models, what of `run` the registry holds. An evaluation
/// counts as recorded when one of the run's checkpoint has the planned suite, seed and number
/// of attacked images. `evals` are the registry's evaluation records, read once by the caller
/// for all of a preset's runs.
pub fn plan_status(run: &PresetRun, registry: &Registry, evals: &[EvalRecord]) -> Result<PlanStatus> {
    let cfg = &run.config;
    let hash = cfg.hash()?;
    let checkpoint_hash = registry.complete_run(&hash, TRAINING_SEMVER)?.and_then(|r| r.checkpoint_hash);
    let resume_after_epoch = match checkpoint_hash {
        Some(_) => None,
        None => latest_state_epoch(&work_dir(registry, &hash).join(STATE)),
    };
    let (mut evaluated, mut black_box_evaluated) = (false, run.eval.black_box.as_ref().map(|_| false));
    if let Some(model) = checkpoint_hash {
        let eps = run.eval.eps.unwrap_or(default_eps(cfg.data.dataset));
        let (_, test_n) = crate::cost::split_sizes(cfg.data.dataset);
        let test_n = cfg.data.test_limit.map_or(test_n, |n| n.min(test_n));
        let key_of = |attacks: &[AttackId], limit: Option<usize>, budget: Option<usize>, sanity: bool| -> Result<_> {
            let budget = budget.unwrap_or(crate::attacks::RAYS_DEFAULT_BUDGET);
            let suite = suite_description(attacks, eps, cfg.train.eval_batch_size, sanity, budget);
            Ok((infoat_registry::config_hash("eval-suite", &suite)?, limit.map_or(test_n, |l| l.min(test_n))))
        };
        let white = key_of(&run.eval.attacks, run.eval.limit, run.eval.rays_budget, true)?;
        let black = match &run.eval.black_box {
            Some(bb) => Some(key_of(&bb.attacks, bb.limit, bb.rays_budget, false)?),
            None => None,
        };
        for e in evals {
            let k = &e.key;
            if k.model_hash != model || k.seed != cfg.seed || e.eval_semver != EVAL_SEMVER {
                continue;
            }
            let matches =
                |(suite, n): (ContentHash, usize)| k.suite_hash == suite && k.subset.ends_with(&format!("/{n}"));
            evaluated |= matches(white);
            if let (Some(b), Some(done)) = (black, black_box_evaluated.as_mut()) {
                *done |= matches(b);
            }
        }
    }
    Ok(PlanStatus { config_hash: hash, checkpoint_hash, resume_after_epoch, evaluated, black_box_evaluated })
}

/// One preset run, trained (or reused) and evaluated, with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PresetOutcome {
    /// The run's name in the preset.
    pub run: String,
    /// The method.
    pub method: String,
    /// The architecture.
    pub arch: Arch,
    /// The dataset.
    pub dataset: Dataset,
    /// The config hash.
    pub config_hash: ContentHash,
    /// The checkpoint hash.
    pub checkpoint_hash: ContentHash,
    /// The evaluation's registry key.
    pub eval_key: ContentHash,
    /// Its black-box evaluation's key, when the preset has one.
    pub black_box_eval_key: Option<ContentHash>,
    /// The checkpoint file (a registry blob).
    pub checkpoint: PathBuf,
    /// True when training was skipped because a complete run existed.
    pub reused: bool,
    /// True when the evaluation was found in the registry.
    pub eval_reused: bool,
    /// Training seconds (of the original run when reused).
    pub train_seconds: f64,
    /// Evaluation seconds (of the original evaluation when reused).
    pub eval_seconds: f64,
    /// Accuracy per metric: `clean` and each attack id.
    pub accuracy: BTreeMap<String, f64>,
    /// Images each metric was computed on.
    pub images: BTreeMap<String, usize>,
    /// Seconds each attack took.
    pub seconds: BTreeMap<String, f64>,
    /// The preset's targets.
    pub expect: BTreeMap<String, f64>,
    /// Metrics below their targets.
    pub missed: Vec<String>,
    /// The sanity checks the evaluation tripped ([`crate::sanity`]); non-empty means flagged.
    pub sanity: Vec<SanityFlag>,
}

/// Trains (or reuses) and evaluates (or reuses) one preset run.
pub fn reproduce_run(run: &PresetRun, registry: &Registry, force: bool, progress: Progress) -> Result<PresetOutcome> {
    let out = train_run(&run.config, None, registry, force, progress)?;
    let checkpoint_hash =
        out.record.checkpoint_hash.ok_or_else(|| Error::Invalid("a complete run has a checkpoint".into()))?;
    let white_box = EvalRequest {
        source: ModelSource::Run { hash: out.record.config_hash.to_hex() },
        dataset: Some(run.config.data.dataset),
        data_dir: out.data_dir(),
        device: run.config.device.device()?,
        batch_size: run.config.train.eval_batch_size,
        limit: run.config.data.test_limit,
        attacks: run.eval.attacks.clone(),
        eps: run.eval.eps,
        attack_limit: run.eval.limit,
        seed: run.config.seed,
        rays_budget: run.eval.rays_budget,
        sanity: true,
        force,
    };
    let report = evaluate(&white_box, Some(registry))?;
    let mut accuracy = BTreeMap::from([("clean".to_string(), report.clean.accuracy)]);
    let mut images = BTreeMap::from([("clean".to_string(), report.clean.total)]);
    let mut seconds = BTreeMap::new();
    let mut add = |r: &EvalReport| {
        for (id, a) in &r.attacks {
            accuracy.insert(id.clone(), a.robust.accuracy);
            images.insert(id.clone(), a.robust.total);
            seconds.insert(id.clone(), a.seconds);
        }
    };
    add(&report);
    let mut black_box_key = None;
    let mut black_box_reused = true;
    let mut sanity = report.sanity.clone();
    if let Some(bb) = &run.eval.black_box {
        let request = EvalRequest {
            attacks: bb.attacks.clone(),
            attack_limit: bb.limit,
            rays_budget: bb.rays_budget,
            // The model probes ran with the white-box suite.
            sanity: false,
            ..white_box
        };
        let bb_report = evaluate(&request, Some(registry))?;
        add(&bb_report);
        sanity.extend(bb_report.sanity.iter().cloned());
        black_box_key = Some(bb_report.key);
        black_box_reused = bb_report.reused;
    }
    let missed = run
        .expect
        .iter()
        .filter(|(m, min)| accuracy.get(*m).is_none_or(|a| a < *min))
        .map(|(m, _)| m.clone())
        .collect();
    Ok(PresetOutcome {
        run: run.name.clone(),
        method: run.config.method.name().to_string(),
        arch: run.config.model.arch,
        dataset: run.config.data.dataset,
        config_hash: out.record.config_hash,
        checkpoint_hash,
        eval_key: report.key,
        black_box_eval_key: black_box_key,
        checkpoint: out.checkpoint_path,
        reused: out.reused,
        eval_reused: report.reused && black_box_reused,
        train_seconds: out.record.seconds,
        eval_seconds: report.seconds,
        accuracy,
        images,
        seconds,
        expect: run.expect.clone(),
        missed,
        sanity,
    })
}
