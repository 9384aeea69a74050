//! Evaluation workflow: a model (a run, a checkpoint or a TorchScript file) loaded, its clean
//! accuracy and each attack of the suite measured on the test split, recorded by key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use infoat_registry::records::{new_attempt, pack_flags, unpack_flags};
use infoat_registry::{AttackResult, ContentHash, EvalFlags, EvalRecord, Registry};
use serde::{Deserialize, Serialize};

use super::suite::recorded_version;
use super::suite::SuiteRequest;
use super::train::{find_run, recorded_setup};
use super::{file_hash, identity_of, load_split, now_unix, DataIdentity, EVAL_SEMVER};
use crate::attacks::AttackId;
use crate::checkpoint;
use crate::data::{Dataset, Split};
use crate::env::{fingerprint, Fingerprint};
use crate::eval::{accuracy_of, clean_flags, robust_run_with_points, Accuracy};
use crate::models::{Arch, Classifier, Network, ScriptModel};
use crate::sanity::SanityFlag;
use crate::{Error, Result};

/// One attack's result.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    /// Robust accuracy as a fraction in [0, 1] (`robust.accuracy`).
    pub robust_acc: f64,
    /// Robust accuracy on the attacked images, with counts.
    pub robust: Accuracy,
    /// L∞ radius.
    pub eps: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Model forward passes per attacked example (the attack's cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_passes: Option<f64>,
    /// Average L∞ distance to the decision boundary over the attacked examples (RayS's ADBD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adbd: Option<f64>,
    /// The version of the attack's implementation that computed this ([`AttackBuild::version`](crate::attacks::AttackBuild::version)).
    pub version: u32,
    /// Per attacked example, in order: `1` robust, `0` not (empty when a stored evaluation
    /// has no flags).
    pub flags: String,
    /// RayS's per-example L∞ boundary distances (fresh evaluations only; the registry keeps
    /// their average).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Vec<f64>>,
    /// Broken examples that left a confirmed witness ([`crate::evidence`]); absent for
    /// evaluations from before witnesses were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<usize>,
    /// Model backward passes per attacked example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backward_passes: Option<f64>,
    /// The attack's indicators of attack failure and self-tests ([`crate::diagnostics`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<infoat_registry::AttackDiagnostics>,
    /// For AutoAttack, each component's examples, breaks, seconds and passes, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<infoat_registry::StageCost>>,
}

/// Where the model under evaluation comes from (issue 4, "Any model").
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A complete harness run in the registry, by config hash (a unique prefix is enough).
    Run {
        /// The config hash or a unique prefix of it.
        hash: String,
    },
    /// A safetensors checkpoint with PyTorch `state_dict` names.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Its architecture; taken from the checkpoint's recorded config when `None`.
        arch: Option<Arch>,
    },
    /// A TorchScript module mapping [0, 1] NCHW float32 images to logits.
    TorchScript {
        /// The file.
        path: PathBuf,
    },
}

/// What was evaluated: enough to find it again and to know it is the same model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// `run`, `checkpoint` or `torchscript`.
    pub source: String,
    /// The model file.
    pub path: PathBuf,
    /// The checkpoint digest (sha256 over tensors sorted by name, recomputed on load) or, for
    /// TorchScript, the sha256 of the file, whose code is part of the model.
    pub hash: ContentHash,
    /// The harness architecture; `None` for an external TorchScript model.
    pub arch: Option<Arch>,
    /// The run's config hash when the model is a harness run.
    pub config_hash: Option<ContentHash>,
}

/// The result of evaluating a model on test data: the registry's [`EvalRecord`] of it, with what
/// the registry keeps beside the record (the per-example flags) and what it does not keep
/// (RayS's per-example distances). `infoat eval --json` prints [`EvalReport`]'s serde form, a
/// view of the record: key, reused, model, data, n, clean_acc, clean, attacks (each with its
/// counts, version and per-example flags), worst_case_acc, worst_case_flags, flagged, sanity,
/// seconds, env.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// The evaluation's registry key (model, attack suite, data and subset, seed).
    pub key: ContentHash,
    /// True when the registry already held this evaluation and nothing was attacked.
    pub reused: bool,
    /// The record, as the registry holds it (or would, without a registry).
    pub record: EvalRecord,
    /// The model evaluated (the record's `model`, typed).
    pub model: ModelIdentity,
    /// The test data (the record's `data`, typed).
    pub data: DataIdentity,
    /// The per-example results; `None` for a stored evaluation whose flags are missing.
    pub flags: Option<EvalFlags>,
    /// RayS's per-example L∞ boundary distances by attack id (fresh evaluations only; the
    /// record keeps their average).
    pub distances: BTreeMap<String, Vec<f64>>,
}

impl EvalReport {
    /// Wraps a record, reading its model and data identities.
    fn new(
        key: ContentHash,
        reused: bool,
        record: EvalRecord,
        flags: Option<EvalFlags>,
        distances: BTreeMap<String, Vec<f64>>,
    ) -> Result<EvalReport> {
        let bad = |what: &str| Error::Invalid(format!("registry eval record {key}: {what}; rerun with --force"));
        let model = serde_json::from_value(record.model.clone()).map_err(|_| bad("model identity unreadable"))?;
        let data = serde_json::from_value(record.data.clone()).map_err(|_| bad("data identity unreadable"))?;
        Ok(EvalReport { key, reused, record, model, data, flags, distances })
    }

    /// Clean accuracy, with counts.
    pub fn clean(&self) -> Accuracy {
        let r = &self.record;
        Accuracy { total: r.n, correct: (r.clean_acc * r.n as f64).round() as usize, accuracy: r.clean_acc }
    }

    /// Each attack's result, by attack id.
    pub fn attacks(&self) -> BTreeMap<String, AttackReport> {
        let r = &self.record;
        r.attacks
            .iter()
            .map(|(id, a)| {
                let version = serde_json::from_value::<AttackId>(serde_json::json!(id))
                    .map_or(1, |attack| recorded_version(&r.suite, attack));
                let flags = self
                    .flags
                    .as_ref()
                    .and_then(|f| f.attacks.get(id))
                    .and_then(|f| unpack_flags(f))
                    .map(|f| digits(&f))
                    .unwrap_or_default();
                let report = AttackReport {
                    robust_acc: a.robust_acc,
                    robust: Accuracy { total: a.total, correct: a.correct, accuracy: a.robust_acc },
                    eps: a.eps,
                    seconds: a.seconds,
                    forward_passes: a.forward_passes,
                    adbd: a.adbd,
                    version,
                    flags,
                    distances: self.distances.get(id).cloned(),
                    witnessed: a.witnessed,
                    backward_passes: a.backward_passes,
                    diagnostics: a.diagnostics.clone(),
                    stages: a.stages.clone(),
                };
                (id.clone(), report)
            })
            .collect()
    }

    /// The sanity checks that tripped ([`crate::sanity`]); non-empty means flagged.
    pub fn sanity(&self) -> &[SanityFlag] {
        &self.record.sanity
    }

    /// Wall-clock seconds of the evaluation (of the original one when reused).
    pub fn seconds(&self) -> f64 {
        self.record.seconds
    }

    /// Per-example worst case over all attacks run, on the attacked images; `None` when no
    /// attack ran.
    pub fn worst_case_acc(&self) -> Option<f64> {
        self.record.worst_case_acc
    }
}

impl Serialize for EvalReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            key: ContentHash,
            reused: bool,
            model: &'a ModelIdentity,
            data: &'a DataIdentity,
            n: usize,
            clean_acc: f64,
            clean: Accuracy,
            attacks: BTreeMap<String, AttackReport>,
            worst_case_acc: Option<f64>,
            worst_case_flags: String,
            flagged: bool,
            sanity: &'a [SanityFlag],
            #[serde(skip_serializing_if = "Option::is_none")]
            diagnostics: Option<&'a infoat_registry::EvalDiagnostics>,
            seconds: f64,
            env: &'a Fingerprint,
        }
        let worst = self.flags.as_ref().and_then(|f| unpack_flags(&f.worst_case)).map(|w| digits(&w));
        View {
            key: self.key,
            reused: self.reused,
            model: &self.model,
            data: &self.data,
            n: self.record.n,
            clean_acc: self.record.clean_acc,
            clean: self.clean(),
            attacks: self.attacks(),
            worst_case_acc: self.record.worst_case_acc,
            worst_case_flags: worst.unwrap_or_default(),
            flagged: !self.record.sanity.is_empty(),
            sanity: &self.record.sanity,
            diagnostics: self.record.diagnostics.as_ref(),
            seconds: self.record.seconds,
            env: &self.record.env,
        }
        .serialize(s)
    }
}

/// What to evaluate and on what.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The model.
    pub source: ModelSource,
    /// The dataset; taken from the run or the checkpoint's recorded config when `None`
    /// (required for TorchScript).
    pub dataset: Option<Dataset>,
    /// Data directory; the run's, or the dataset's default cache folder, when `None`.
    pub data_dir: Option<PathBuf>,
    /// Device.
    pub device: tch::Device,
    /// Evaluate only the first N test images.
    pub limit: Option<usize>,
    /// The attack suite, resolved on the model's dataset ([`SuiteRequest::resolve`]).
    pub suite: SuiteRequest,
    /// Evaluate again even when the registry holds this evaluation (both records are kept).
    pub force: bool,
}

type Loaded = (Box<dyn Classifier>, ModelIdentity, Dataset, Option<PathBuf>);

pub(super) fn load_checkpoint(
    path: &Path,
    arch: Option<Arch>,
    dataset: Option<Dataset>,
    device: tch::Device,
) -> Result<(Network, Arch, Dataset, ContentHash)> {
    let (rec_arch, rec_ds) = recorded_setup(path)?;
    let need = |what: &str| {
        Error::Invalid(format!(
            "{} records no {what}; pass --{what} (it was not written by `infoat train`)",
            path.display()
        ))
    };
    let arch = arch.or(rec_arch).ok_or_else(|| need("arch"))?;
    let dataset = dataset.or(rec_ds).ok_or_else(|| need("dataset"))?;
    let mut model = Network::new(arch, dataset.image_shape(), dataset.num_classes(), device)?;
    let loaded = checkpoint::load_into(&mut model, path)?;
    Ok((model, arch, dataset, loaded.hash))
}

/// Loads the model a source names, for `dataset` (`None`: the recorded one).
pub(super) fn load_model(
    source: &ModelSource,
    registry: Option<&Registry>,
    dataset: Option<Dataset>,
    device: tch::Device,
) -> Result<Loaded> {
    Ok(match source {
        ModelSource::Run { hash } => {
            let registry = registry.ok_or_else(|| Error::Invalid("--run needs a registry".into()))?;
            let run = find_run(registry, hash)?;
            let cfg = run.config()?;
            let ds = dataset.unwrap_or(cfg.data.dataset);
            let (model, arch, ds, h) = load_checkpoint(&run.checkpoint_path, Some(cfg.model.arch), Some(ds), device)?;
            let identity = ModelIdentity {
                source: "run".into(),
                path: run.checkpoint_path.clone(),
                hash: h,
                arch: Some(arch),
                config_hash: Some(run.record.config_hash),
            };
            (Box::new(model), identity, ds, run.data_dir())
        }
        ModelSource::Checkpoint { path, arch } => {
            let (model, arch, ds, h) = load_checkpoint(path, *arch, dataset, device)?;
            let identity = ModelIdentity {
                source: "checkpoint".into(),
                path: path.clone(),
                hash: h,
                arch: Some(arch),
                config_hash: None,
            };
            (Box::new(model), identity, ds, None)
        }
        ModelSource::TorchScript { path } => {
            let ds = dataset.ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: a TorchScript model records no dataset; pass --dataset (e.g. --dataset mnist)",
                    path.display()
                ))
            })?;
            let shape = ds.image_shape();
            let model =
                ScriptModel::load(path, device, [shape.channels as i64, shape.height as i64, shape.width as i64])?;
            if model.num_classes() != ds.num_classes() {
                return Err(Error::Checkpoint {
                    path: path.clone(),
                    message: format!(
                        "the module outputs {} logits but {} has {} classes",
                        model.num_classes(),
                        ds.name(),
                        ds.num_classes()
                    ),
                });
            }
            let identity = ModelIdentity {
                source: "torchscript".into(),
                path: path.clone(),
                hash: file_hash(path)?,
                arch: None,
                config_hash: None,
            };
            (Box::new(model), identity, ds, None)
        }
    })
}

pub(super) fn digits(flags: &[bool]) -> String {
    flags.iter().map(|&f| if f { '1' } else { '0' }).collect()
}

/// Evaluates a model: clean accuracy on the test split, then each attack on the first
/// `attack_limit` test images, the per-example worst case and the sanity checks. With a
/// registry, an evaluation under the same key is returned from it instead of being redone
/// (unless `force`), and a new one is recorded.
pub fn evaluate(req: &EvalRequest, registry: Option<&Registry>) -> Result<EvalReport> {
    let start = Instant::now();
    // An evaluation of no example is an error, not a 0 % result (and is never recorded).
    for (what, n) in [("--n (the test images evaluated)", req.limit), ("the attacked subset", req.suite.attack_limit)] {
        if n == Some(0) {
            return Err(Error::Invalid(format!(
                "{what} = 0: an evaluation needs at least one example; give a positive count or omit it for the whole test set"
            )));
        }
    }
    // Attacks run in IEEE float32 whatever the model was trained in: TF32 or bf16 change the
    // direction of a few percent of the input-gradient signs (docs/performance.md).
    crate::precision::configure_backends(crate::precision::Precision::Fp32);
    let (mut model, identity, dataset, run_data_dir) = load_model(&req.source, registry, req.dataset, req.device)?;
    if req.suite.channels_last {
        model.set_channels_last()?;
    }
    let model = model.as_ref();
    let data_dir = req.data_dir.clone().or(run_data_dir);
    let (test, dir) = load_split(dataset, data_dir.as_deref(), Split::Test)?;
    let test = match req.limit {
        Some(n) => test.take(n),
        None => test,
    };
    if test.is_empty() {
        return Err(Error::Invalid(format!(
            "the {dataset} test set in {} holds no example: there is nothing to evaluate; check the data folder",
            dir.display()
        )));
    }
    let suite = req.suite.resolve(dataset)?;
    let data = identity_of(dataset, &dir, Split::Test, &test);
    let key = suite.key(identity.hash, &data)?;
    let key_hash = key.hash()?;
    if let (Some(reg), false) = (registry, req.force) {
        if let Some(rec) = reg.find_eval(&key_hash, EVAL_SEMVER)? {
            let flags = reg.eval_flags(&rec)?;
            return EvalReport::new(key_hash, true, rec, flags, BTreeMap::new());
        }
    }

    let clean_ok = clean_flags(model, &test, suite.batch_size)?;
    let clean = accuracy_of(&clean_ok);
    // Only a subset is copied; without a limit the attacks read the test set itself.
    let subset = suite.attack_limit.map(|n| test.take(n));
    let attacked = subset.as_ref().unwrap_or(&test);
    let mut attacks = BTreeMap::new();
    let mut attack_flags = BTreeMap::new();
    let mut distances = BTreeMap::new();
    let mut witnesses = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut worst: Option<Vec<bool>> = None;
    // What the diagnostics read of each attack: its robust flags and trace.
    let mut outcomes: Vec<(AttackId, Vec<bool>, Option<crate::eval::RunTrace>)> = Vec::new();
    for id in &suite.attacks {
        let t = Instant::now();
        let attack = suite.attack(*id);
        let run = robust_run_with_points(model, attacked, attack.as_ref(), suite.batch_size, suite.seed)?;
        let adbd = run.distances.as_ref().filter(|d| !d.is_empty()).map(|d| d.iter().sum::<f64>() / d.len() as f64);
        let robust = accuracy_of(&run.flags);
        // The points that break examples, confirmed by the forward pass alone, kept as evidence.
        let points = run.adversarial.as_ref().expect("invariant: robust_run_with_points keeps the points");
        let found = crate::evidence::collect(model, *id, attacked, points, &run.flags, suite.eps)?;
        let witnessed = found.len();
        if let Some(reg) = registry {
            let (bytes, _) = found.to_bytes(*id, suite.eps)?;
            let hash = reg.blobs().put_bytes(&bytes, Path::new(&format!("witnesses of {id}")))?;
            witnesses.insert(id.name().to_string(), hash);
        }
        attack_flags.insert(id.name().to_string(), pack_flags(&run.flags));
        outcomes.push((*id, run.flags.clone(), run.trace.clone()));
        if let Some(d) = run.distances {
            distances.insert(id.name().to_string(), d);
        }
        worst = Some(match worst {
            Some(w) => w.iter().zip(&run.flags).map(|(a, b)| *a && *b).collect(),
            None => run.flags,
        });
        counts.insert(*id, (robust.correct, robust.total));
        let result = AttackResult {
            robust_acc: robust.accuracy,
            correct: robust.correct,
            total: robust.total,
            eps: suite.eps,
            seconds: t.elapsed().as_secs_f64(),
            forward_passes: Some(run.forward_passes),
            adbd,
            witnessed: Some(witnessed),
            backward_passes: Some(run.backward_passes),
            diagnostics: None,
            stages: run.stages,
        };
        attacks.insert(id.name().to_string(), result);
    }
    let mut sanity = crate::sanity::compare_attacks(&counts);
    let mut diagnostics = None;
    if suite.sanity && !suite.attacks.is_empty() {
        sanity.extend(crate::sanity::probe_model(model, attacked, suite.batch_size, suite.seed)?);
        // The attacks' self-examination (issue 22): indicators, planted self-tests, curves.
        let views: Vec<crate::diagnostics::Outcome<'_>> = outcomes
            .iter()
            .map(|(id, robust, trace)| crate::diagnostics::Outcome { id: *id, robust, trace: trace.as_ref() })
            .collect();
        let setting = crate::diagnostics::Setting {
            eps: suite.eps,
            batch_size: suite.batch_size,
            rays_budget: suite.rays_budget,
            seed: suite.seed,
        };
        let clean_attacked = &clean_ok[..attacked.len()];
        let d = crate::diagnostics::diagnose(model, attacked, clean_attacked, setting, &views, worst.as_deref())?;
        for (id, a) in d.attacks {
            if let Some(r) = attacks.get_mut(id.name()) {
                r.diagnostics = Some(a);
            }
        }
        sanity.extend(d.sanity);
        diagnostics = Some(d.eval);
    }
    let record = EvalRecord {
        key,
        attempt: new_attempt(),
        eval_semver: EVAL_SEMVER.to_string(),
        model: serde_json::to_value(&identity)?,
        config_hash: identity.config_hash,
        suite: suite.description(),
        data: serde_json::to_value(&data)?,
        n: clean.total,
        clean_acc: clean.accuracy,
        attacks,
        worst_case_acc: worst.as_deref().map(|w| accuracy_of(w).accuracy),
        sanity,
        witnesses,
        diagnostics,
        seconds: start.elapsed().as_secs_f64(),
        finished_unix: now_unix(),
        env: fingerprint(req.device),
    };
    let flags = EvalFlags {
        clean: pack_flags(&clean_ok),
        attacks: attack_flags,
        worst_case: pack_flags(worst.as_deref().unwrap_or(&[])),
    };
    if let Some(reg) = registry {
        reg.put_eval(&record, &flags)?;
    }
    let report = EvalReport::new(key_hash, false, record, Some(flags), distances)?;
    Ok(report)
}
