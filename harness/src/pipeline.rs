//! The pipeline: config → data → model → training → checkpoint → evaluation, every result
//! kept in the registry ([`infoat_registry::Registry`], issue 5) so that a second run of the
//! same config or evaluation costs nothing.
//!
//! A training attempt is recorded as `running` when it starts and after every epoch; its
//! resumable state lives in `<registry>/work/<config hash>/state/`. Only once the final
//! checkpoint is a verified blob in the store does the record say `complete`. An evaluation is
//! keyed by (model hash, attack-suite hash, data identity and subset, seed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use infoat_registry::records::{new_attempt, pack_flags, unpack_flags};
use infoat_registry::{
    AttackResult, ContentHash, EpochRecord, EvalFlags, EvalKey, EvalRecord, Registry, RunRecord, RunStatus,
    SanityRecord,
};
use serde::{Deserialize, Serialize};

use crate::attacks::AttackId;
use crate::checkpoint;
use crate::config::RunConfig;
use crate::data::{default_data_dir, Dataset, ImageSet, Split};
use crate::env::{fingerprint, Fingerprint};
use crate::eval::{accuracy_of, clean_flags, robust_run, Accuracy};
use crate::methods::default_eps;
use crate::models::{Arch, Classifier, Network, ScriptModel};
use crate::preset::PresetRun;
use crate::sanity::SanityFlag;
use crate::seed::{derive, seed_torch, Stream};
use crate::train::{latest_state_epoch, train, EpochStates, EpochStats, Progress, TrainData};
use crate::{Error, Result};

/// Version of the training code's semantics: bump when a change alters what a config trains.
pub const TRAINING_SEMVER: &str = "1.0.0";
/// Version of the evaluation code's semantics: bump when a change alters an attack's numbers.
pub const EVAL_SEMVER: &str = "1.0.0";
/// The registry folder when neither `--registry` nor `INFOAT_REGISTRY` names one.
pub const DEFAULT_REGISTRY: &str = "infoat-registry";

/// The data a run or an evaluation used: which dataset, where from, and what it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataIdentity {
    /// The dataset.
    pub dataset: Dataset,
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The split.
    pub split: Split,
    /// Images used.
    pub images: usize,
    /// sha256 of the images and labels used (see [`ImageSet::fingerprint`]).
    pub fingerprint: ContentHash,
}

/// A finished (or reused) training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    /// The final checkpoint: a content-addressed blob in the registry.
    pub checkpoint_path: PathBuf,
    /// True when an identical complete run was found and nothing was trained.
    pub reused: bool,
    /// The run's registry record.
    pub record: RunRecord,
}

impl TrainOutcome {
    /// The config the run trained, parsed back from its record.
    pub fn config(&self) -> Result<RunConfig> {
        run_config(&self.record)
    }

    /// The training data's folder.
    pub fn data_dir(&self) -> Option<PathBuf> {
        serde_json::from_value::<DataIdentity>(self.record.data.clone()).ok().map(|d| d.dir)
    }
}

fn run_config(record: &RunRecord) -> Result<RunConfig> {
    let mut v = record.config.clone();
    if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
        for key in ["train_limit", "test_limit"] {
            if data.get(key).is_some_and(|x| x == "all") {
                data.insert(key.to_string(), serde_json::Value::Null);
            }
        }
    }
    serde_json::from_value(v).map_err(|e| Error::Config {
        origin: format!("registry record {}", record.key()),
        message: format!("the recorded config does not parse with this build ({e})"),
    })
}

/// Loads a split, resolving the default data directory; returns the set and the directory.
pub fn load_split(dataset: Dataset, dir: Option<&Path>, split: Split) -> Result<(ImageSet, PathBuf)> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| default_data_dir(dataset));
    let set = dataset.source(&dir).load(split)?;
    Ok((set, dir))
}

fn identity_of(dataset: Dataset, dir: &Path, split: Split, set: &ImageSet) -> DataIdentity {
    DataIdentity { dataset, dir: dir.to_path_buf(), split, images: set.len(), fingerprint: set.fingerprint() }
}

/// Where an attempt at `hash` keeps its resumable state.
pub fn work_dir(registry: &Registry, hash: &ContentHash) -> PathBuf {
    registry.root().join("work").join(hash.to_hex())
}

const STATE: &str = "state";

/// Builds the network a config describes, initialised from the run's seed.
pub fn build_network(cfg: &RunConfig, device: tch::Device) -> Result<Network> {
    seed_torch(derive(cfg.seed, Stream::Init, &[]));
    let ds = cfg.data.dataset;
    let mut net = Network::new(cfg.model.arch, ds.image_shape(), ds.num_classes(), device)?;
    crate::precision::configure_backends(cfg.precision);
    net.set_numerics(cfg.precision, cfg.channels_last);
    Ok(net)
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn epoch_record(s: &EpochStats) -> EpochRecord {
    let mut metrics = BTreeMap::from([
        ("lr".to_string(), s.lr),
        ("loss".to_string(), s.loss),
        ("train_accuracy".to_string(), s.train_accuracy),
        ("seconds".to_string(), s.seconds),
        ("images_per_second".to_string(), s.images_per_second),
    ]);
    if let Some(v) = s.val_accuracy {
        metrics.insert("val_accuracy".into(), v);
    }
    for (k, v) in &s.parts {
        metrics.insert(format!("part.{k}"), *v);
    }
    EpochRecord { epoch: s.epoch, metrics, checkpoint_hash: s.checkpoint_hash }
}

/// Checks that an interrupted attempt at `cfg` waits in the registry to be resumed
/// (`train --resume`).
pub fn check_resumable(cfg: &RunConfig, registry: &Registry) -> Result<()> {
    let hash = cfg.hash()?;
    if registry.complete_run(&hash, TRAINING_SEMVER)?.is_some() {
        return Err(Error::Invalid(format!(
            "config {} has a complete run; there is nothing to resume (use --force to train again)",
            hash.short(12)
        )));
    }
    match latest_state_epoch(&work_dir(registry, &hash).join(STATE)) {
        Some(_) => Ok(()),
        None => Err(Error::Invalid(format!(
            "no interrupted run of config {} in {}: nothing to resume (drop --resume to start it)",
            hash.short(12),
            registry.root().display()
        ))),
    }
}

/// Trains `cfg`, or returns its complete run from the registry (unless `force`). An
/// interrupted attempt is resumed from its last epoch state. With `force` on CPU, a new
/// checkpoint that differs from the earlier complete one is a determinism failure (both
/// records are kept).
pub fn train_run(
    cfg: &RunConfig,
    data_dir: Option<&Path>,
    registry: &Registry,
    force: bool,
    progress: Progress,
) -> Result<TrainOutcome> {
    let hash = cfg.hash()?;
    let previous = registry.complete_run(&hash, TRAINING_SEMVER)?;
    if !force {
        if let Some((record, h)) = previous.clone().and_then(|r| r.checkpoint_hash.map(|h| (r, h))) {
            return Ok(TrainOutcome { checkpoint_path: registry.blobs().path(&h), reused: true, record });
        }
    }
    let interrupted = registry
        .runs_of(&hash)?
        .into_iter()
        .rev()
        .find(|r| r.status == RunStatus::Running && r.training_semver == TRAINING_SEMVER);
    let device = cfg.device.device()?;
    let start = Instant::now();
    let ds = cfg.data.dataset;
    let (full, data_dir) = load_split(ds, data_dir, Split::Train)?;
    // Before any record is written: missing or mismatched extra data must not leave a run behind.
    let extra = match &cfg.data.extra {
        Some(plan) => Some(plan.load(&data_dir, ds)?),
        None => None,
    };
    let full = match cfg.data.train_limit {
        Some(n) => full.take(n),
        None => full,
    };
    let (train_set, val_set) = if cfg.data.val_holdout > 0 {
        let (t, v) = full.split_holdout(cfg.data.val_holdout, derive(cfg.seed, Stream::Holdout, &[]))?;
        (t, Some(v))
    } else {
        (full, None)
    };
    let mut data_record = serde_json::to_value(identity_of(ds, &data_dir, Split::Train, &train_set))?;
    if let (Some((set, digest)), Some(plan)) = (&extra, &cfg.data.extra) {
        data_record["extra"] = serde_json::json!({ "name": plan.name, "sha256": digest, "images": set.len() });
    }
    let mut model = build_network(cfg, device)?;
    let work = work_dir(registry, &hash);
    let state_dir = work.join(STATE);
    if force {
        // Start over: earlier epoch states of this config must not be resumed.
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let (attempt, started_unix) = match (&interrupted, force) {
        (Some(r), false) => (r.attempt.clone(), r.started_unix),
        _ => (new_attempt(), now_unix()),
    };
    let mut record = RunRecord {
        config_hash: hash,
        attempt,
        config: cfg.canonical_view(),
        training_semver: TRAINING_SEMVER.to_string(),
        status: RunStatus::Running,
        epochs: Vec::new(),
        checkpoint_hash: None,
        data: data_record,
        started_unix,
        finished_unix: None,
        seconds: 0.0,
        env: fingerprint(device),
    };
    registry.put_run(&record)?;
    let on_epoch = |history: &[EpochStats]| -> Result<()> {
        let mut r = record.clone();
        r.epochs = history.iter().map(epoch_record).collect();
        r.seconds = start.elapsed().as_secs_f64();
        Ok(registry.put_run(&r)?)
    };
    let states = EpochStates { dir: state_dir, config_hash: hash.to_hex(), resume: !force, on_epoch: Some(&on_epoch) };
    let epochs = match train(
        cfg,
        &mut model,
        TrainData { train: &train_set, extra: extra.as_ref().map(|(s, _)| s), val: val_set.as_ref() },
        progress,
        Some(&states),
    ) {
        Ok(e) => e,
        Err(e) => {
            record.status = RunStatus::Failed { error: e.to_string() };
            record.seconds = start.elapsed().as_secs_f64();
            let _ = registry.put_run(&record);
            return Err(e);
        }
    };

    let config_json = infoat_registry::canonical_json(&cfg.canonical_view())?;
    let meta = BTreeMap::from([
        (checkpoint::META_CONFIG.to_string(), config_json),
        ("infoat.config_sha256".to_string(), hash.to_hex()),
    ]);
    // Straight into the blob store: the store re-hashes the bytes, which must match the model.
    let origin = PathBuf::from(format!("final checkpoint of run {}", record.key()));
    let (bytes, digest) = checkpoint::serialize(&model, &origin, &meta)?;
    let stored = registry.blobs().put_bytes(&bytes, &origin)?;
    if stored != digest {
        return Err(Error::Checkpoint {
            path: registry.blobs().path(&stored),
            message: format!("the registry hashed the saved checkpoint to {stored}, the model to {digest}"),
        });
    }
    record.status = RunStatus::Complete;
    record.checkpoint_hash = Some(digest);
    record.epochs = epochs.iter().map(epoch_record).collect();
    record.seconds = start.elapsed().as_secs_f64();
    record.finished_unix = Some(now_unix());
    registry.put_run(&record)?;
    let _ = std::fs::remove_dir_all(&work);
    if let Some(prev) = previous.filter(|p| p.checkpoint_hash != Some(digest)) {
        if device == tch::Device::Cpu {
            return Err(Error::Invalid(format!(
                "determinism failure: config {} trained again on CPU gives checkpoint {}, the earlier attempt {} gave \
                 {}; both records are kept (`infoat registry show {}`)",
                hash.short(12),
                digest.short(12),
                prev.attempt,
                prev.checkpoint_hash.map(|h| h.short(12)).unwrap_or_default(),
                hash.short(12)
            )));
        }
    }
    Ok(TrainOutcome { checkpoint_path: registry.blobs().path(&digest), reused: false, record })
}

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
    /// The version of the attack's implementation that computed this ([`AttackId::version`]).
    pub version: u32,
    /// Per attacked example, in order: `1` robust, `0` not (empty when a stored evaluation
    /// has no flags).
    pub flags: String,
    /// RayS's per-example L∞ boundary distances (fresh evaluations only; the registry keeps
    /// their average).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distances: Option<Vec<f64>>,
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

/// The result of evaluating a model on test data.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The evaluation's registry key (model, attack suite, data and subset, seed).
    pub key: ContentHash,
    /// True when the registry already held this evaluation and nothing was attacked.
    pub reused: bool,
    /// The model evaluated.
    pub model: ModelIdentity,
    /// The test data.
    pub data: DataIdentity,
    /// Number of test images evaluated clean.
    pub n: usize,
    /// Clean accuracy as a fraction in [0, 1] (`clean.accuracy`).
    pub clean_acc: f64,
    /// Clean accuracy, with counts.
    pub clean: Accuracy,
    /// Each attack's result, by attack id.
    pub attacks: BTreeMap<String, AttackReport>,
    /// Per-example worst case over all attacks run (robust to every one of them), on the
    /// attacked images; `None` when no attack ran.
    pub worst_case_acc: Option<f64>,
    /// Per-example robustness under the worst case (`1` robust, `0` not), in test-set order,
    /// as a string of digits; empty when no attack ran.
    pub worst_case_flags: String,
    /// True when a sanity check tripped: these numbers may overstate robustness.
    pub flagged: bool,
    /// The sanity checks that tripped ([`crate::sanity`]).
    pub sanity: Vec<SanityFlag>,
    /// Wall-clock seconds of the evaluation (of the original one when reused).
    pub seconds: f64,
    /// Where it ran.
    pub env: Fingerprint,
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
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Evaluate only the first N test images.
    pub limit: Option<usize>,
    /// Attacks to run after clean accuracy.
    pub attacks: Vec<AttackId>,
    /// Their L∞ radius; default: the dataset's (SPEC §1).
    pub eps: Option<f64>,
    /// Attack only the first N of the evaluated images.
    pub attack_limit: Option<usize>,
    /// Seed of the attacks' random starts.
    pub seed: u64,
    /// RayS queries per example; default [`crate::attacks::RAYS_DEFAULT_BUDGET`].
    pub rays_budget: Option<usize>,
    /// Run the model-probing sanity checks ([`crate::sanity::probe_model`]).
    pub sanity: bool,
    /// Evaluate again even when the registry holds this evaluation (both records are kept).
    pub force: bool,
}

/// The arch and dataset a checkpoint's recorded config names, if it carries one.
pub fn recorded_setup(path: &Path) -> Result<(Option<Arch>, Option<Dataset>)> {
    let meta = checkpoint::read_metadata(path)?;
    let Some(json) = meta.get(checkpoint::META_CONFIG) else { return Ok((None, None)) };
    let v: serde_json::Value = serde_json::from_str(json)?;
    let arch = v.pointer("/model/arch").cloned().and_then(|a| serde_json::from_value(a).ok());
    let dataset = v.pointer("/data/dataset").cloned().and_then(|d| serde_json::from_value(d).ok());
    Ok((arch, dataset))
}

/// The complete run whose config hash starts with `prefix` (newest attempt).
pub fn find_run(registry: &Registry, prefix: &str) -> Result<TrainOutcome> {
    let runs = registry.runs_with_prefix(prefix)?;
    let mut hashes: Vec<ContentHash> = runs.iter().map(|r| r.config_hash).collect();
    hashes.dedup();
    let prefix = prefix.trim();
    match hashes.len() {
        0 => {
            return Err(Error::Invalid(format!(
                "no run with config hash {prefix}… in registry {}; see `infoat registry ls`",
                registry.root().display()
            )))
        }
        1 => {}
        n => {
            return Err(Error::Invalid(format!(
                "{n} configs in registry {} have hashes starting with {prefix}; give more digits",
                registry.root().display()
            )))
        }
    }
    let Some(record) = registry.complete_run(&hashes[0], TRAINING_SEMVER)? else {
        return Err(Error::Invalid(format!(
            "config {} has no complete run with a verified checkpoint (interrupted, failed, or its blob is \
             damaged: `infoat registry verify`); train it with `infoat train`",
            hashes[0].short(12)
        )));
    };
    let h = record.checkpoint_hash.ok_or_else(|| Error::Invalid("complete run without checkpoint".into()))?;
    Ok(TrainOutcome { checkpoint_path: registry.blobs().path(&h), reused: true, record })
}

/// sha256 of a file's bytes.
fn file_hash(path: &Path) -> Result<ContentHash> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut h = infoat_registry::Hasher::new("infoat.file.v1");
    h.bytes(&bytes);
    Ok(h.finish())
}

type Loaded = (Box<dyn Classifier>, ModelIdentity, Dataset, Option<PathBuf>);

fn load_checkpoint(
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
fn load_model(
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

fn digits(flags: &[bool]) -> String {
    flags.iter().map(|&f| if f { '1' } else { '0' }).collect()
}

fn report_from_record(rec: &EvalRecord, flags: Option<EvalFlags>, key: ContentHash) -> Result<EvalReport> {
    let bad = |what: &str| Error::Invalid(format!("registry eval record {key}: {what}; rerun with --force"));
    let model: ModelIdentity =
        serde_json::from_value(rec.model.clone()).map_err(|_| bad("model identity unreadable"))?;
    let data: DataIdentity = serde_json::from_value(rec.data.clone()).map_err(|_| bad("data identity unreadable"))?;
    let correct = (rec.clean_acc * rec.n as f64).round() as usize;
    let attacks = rec
        .attacks
        .iter()
        .map(|(id, a)| {
            let robust = Accuracy { total: a.total, correct: a.correct, accuracy: a.robust_acc };
            let version = serde_json::from_value::<AttackId>(serde_json::json!(id))
                .map_or(1, |attack| recorded_version(&rec.suite, attack));
            let flags = flags
                .as_ref()
                .and_then(|f| f.attacks.get(id))
                .and_then(|f| unpack_flags(f))
                .map(|f| digits(&f))
                .unwrap_or_default();
            (
                id.clone(),
                AttackReport {
                    robust_acc: a.robust_acc,
                    robust,
                    eps: a.eps,
                    seconds: a.seconds,
                    forward_passes: a.forward_passes,
                    adbd: a.adbd,
                    version,
                    flags,
                    distances: None,
                },
            )
        })
        .collect();
    let worst = flags.and_then(|f| unpack_flags(&f.worst_case)).map(|w| digits(&w)).unwrap_or_default();
    Ok(EvalReport {
        key,
        reused: true,
        model,
        data,
        n: rec.n,
        clean_acc: rec.clean_acc,
        clean: Accuracy { total: rec.n, correct, accuracy: rec.clean_acc },
        attacks,
        worst_case_acc: rec.worst_case_acc,
        worst_case_flags: worst,
        flagged: !rec.sanity.is_empty(),
        sanity: rec.sanity.iter().map(|s| SanityFlag { check: s.check.clone(), message: s.message.clone() }).collect(),
        seconds: rec.seconds,
        env: rec.env.clone(),
    })
}

/// The attack suite as hashed into an evaluation's key.
fn suite_description(
    attacks: &[AttackId],
    eps: f64,
    batch_size: usize,
    sanity: bool,
    rays_budget: usize,
) -> serde_json::Value {
    let mut suite = serde_json::json!({
        "attacks": attacks.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "eps": eps,
        "batch_size": batch_size,
        "sanity": sanity,
        "norm": "linf",
    });
    if attacks.contains(&AttackId::Rays) {
        // Only suites with RayS carry its budget, so existing suite hashes stay put.
        suite["rays_budget"] = serde_json::json!(rays_budget);
    }
    // The implementation versions of the attacks past their first, so a suite of attacks that
    // never changed keeps its hash, and one with a changed attack gets a new one.
    let versions: BTreeMap<&str, u32> =
        attacks.iter().filter(|a| a.version() > 1).map(|a| (a.name(), a.version())).collect();
    if !versions.is_empty() {
        suite["versions"] = serde_json::json!(versions);
    }
    suite
}

/// The version of `attack` an evaluation suite (as recorded) was computed with: 1 where the
/// suite names none (suites from before versions were recorded).
pub fn recorded_version(suite: &serde_json::Value, attack: AttackId) -> u32 {
    suite.pointer(&format!("/versions/{}", attack.name())).and_then(|v| v.as_u64()).map_or(1, |v| v as u32)
}

/// The attacks of a recorded suite whose implementation has changed since: `(attack, recorded
/// version)` for each with an older version than the current one (attack ids this binary does
/// not know are skipped).
pub fn outdated_attacks(suite: &serde_json::Value) -> Vec<(AttackId, u32)> {
    let names = suite.get("attacks").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|n| serde_json::from_value::<AttackId>(n).ok())
        .filter_map(|a| {
            let v = recorded_version(suite, a);
            (v < a.version()).then_some((a, v))
        })
        .collect()
}

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

/// Evaluates a model: clean accuracy on the test split, then each attack on the first
/// `attack_limit` test images, the per-example worst case and the sanity checks. With a
/// registry, an evaluation under the same key is returned from it instead of being redone
/// (unless `force`), and a new one is recorded.
pub fn evaluate(req: &EvalRequest, registry: Option<&Registry>) -> Result<EvalReport> {
    let start = Instant::now();
    // An evaluation of no example is an error, not a 0 % result (and is never recorded).
    for (what, n) in [("--n (the test images evaluated)", req.limit), ("the attacked subset", req.attack_limit)] {
        if n == Some(0) {
            return Err(Error::Invalid(format!(
                "{what} = 0: an evaluation needs at least one example; give a positive count or omit it for the whole test set"
            )));
        }
    }
    // Attacks run in IEEE float32 whatever the model was trained in: TF32 or bf16 change the
    // direction of a few percent of the input-gradient signs (docs/performance.md).
    crate::precision::configure_backends(crate::precision::Precision::Fp32);
    let (model, identity, dataset, run_data_dir) = load_model(&req.source, registry, req.dataset, req.device)?;
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
    let eps = req.eps.unwrap_or(default_eps(dataset));
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Invalid(format!("--eps {eps}: expected a finite radius ≥ 0 (e.g. 0.3 or 0.031372549)")));
    }
    let data = identity_of(dataset, &dir, Split::Test, &test);
    let attacked_n = req.attack_limit.map_or(test.len(), |n| n.min(test.len()));
    let rays_budget = req.rays_budget.unwrap_or(crate::attacks::RAYS_DEFAULT_BUDGET);
    let suite = suite_description(&req.attacks, eps, req.batch_size, req.sanity, rays_budget);
    let key = EvalKey {
        model_hash: identity.hash,
        suite_hash: infoat_registry::config_hash("eval-suite", &suite)?,
        data: format!("{}/test/{}", dataset.name(), data.fingerprint),
        subset: format!("{}/{attacked_n}", test.len()),
        seed: req.seed,
    };
    let key_hash = key.hash()?;
    if let (Some(reg), false) = (registry, req.force) {
        if let Some(rec) = reg.find_eval(&key_hash, EVAL_SEMVER)? {
            let flags = reg.eval_flags(&rec)?;
            return report_from_record(&rec, flags, key_hash);
        }
    }

    let clean_ok = clean_flags(model, &test, req.batch_size)?;
    let clean = accuracy_of(&clean_ok);
    // Only a subset is copied; without a limit the attacks read the test set itself.
    let subset = req.attack_limit.map(|n| test.take(n));
    let attacked = subset.as_ref().unwrap_or(&test);
    let mut attacks = BTreeMap::new();
    let mut attack_flags = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut worst: Option<Vec<bool>> = None;
    for id in &req.attacks {
        let t = Instant::now();
        let attack = id.build_with(eps, rays_budget);
        let run = robust_run(model, attacked, attack.as_ref(), req.batch_size, req.seed)?;
        let adbd = run.distances.as_ref().filter(|d| !d.is_empty()).map(|d| d.iter().sum::<f64>() / d.len() as f64);
        let (flags, forward_passes) = (run.flags, run.forward_passes);
        let robust = accuracy_of(&flags);
        attack_flags.insert(id.name().to_string(), pack_flags(&flags));
        let flag_digits = digits(&flags);
        worst = Some(match worst {
            Some(w) => w.iter().zip(&flags).map(|(a, b)| *a && *b).collect(),
            None => flags,
        });
        counts.insert(id.name().to_string(), (robust.correct, robust.total));
        attacks.insert(
            id.name().to_string(),
            AttackReport {
                robust_acc: robust.accuracy,
                robust,
                eps,
                seconds: t.elapsed().as_secs_f64(),
                forward_passes: Some(forward_passes),
                adbd,
                version: id.version(),
                flags: flag_digits,
                distances: run.distances,
            },
        );
    }
    let mut sanity = crate::sanity::compare_attacks(&counts);
    if req.sanity && !req.attacks.is_empty() {
        sanity.extend(crate::sanity::probe_model(model, attacked, req.batch_size, req.seed)?);
    }
    let report = EvalReport {
        key: key_hash,
        reused: false,
        model: identity,
        data,
        n: clean.total,
        clean_acc: clean.accuracy,
        clean,
        attacks,
        worst_case_acc: worst.as_deref().map(|w| accuracy_of(w).accuracy),
        worst_case_flags: digits(worst.as_deref().unwrap_or(&[])),
        flagged: !sanity.is_empty(),
        sanity,
        seconds: start.elapsed().as_secs_f64(),
        env: fingerprint(req.device),
    };
    if let Some(reg) = registry {
        let record = EvalRecord {
            key,
            attempt: new_attempt(),
            eval_semver: EVAL_SEMVER.to_string(),
            model: serde_json::to_value(&report.model)?,
            config_hash: report.model.config_hash,
            suite,
            data: serde_json::to_value(&report.data)?,
            n: report.n,
            clean_acc: report.clean_acc,
            attacks: report
                .attacks
                .iter()
                .map(|(id, a)| {
                    let r = AttackResult {
                        robust_acc: a.robust_acc,
                        correct: a.robust.correct,
                        total: a.robust.total,
                        eps: a.eps,
                        seconds: a.seconds,
                        forward_passes: a.forward_passes,
                        adbd: a.adbd,
                    };
                    (id.clone(), r)
                })
                .collect(),
            worst_case_acc: report.worst_case_acc,
            sanity: report
                .sanity
                .iter()
                .map(|s| SanityRecord { check: s.check.clone(), message: s.message.clone() })
                .collect(),
            seconds: report.seconds,
            finished_unix: now_unix(),
            env: report.env.clone(),
        };
        let flags = EvalFlags {
            clean: pack_flags(&clean_ok),
            attacks: attack_flags,
            worst_case: pack_flags(worst.as_deref().unwrap_or(&[])),
        };
        reg.put_eval(&record, &flags)?;
    }
    Ok(report)
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

/// Renders the report of `selection` from `registry` into `out_dir` as `<stem>.<ext>` for each
/// of `formats` (issue 6); returns the files written. Files are written atomically.
pub fn write_report(
    registry: &Registry,
    title: &str,
    selection: &infoat_reports::Selection,
    formats: &[infoat_reports::Format],
    out_dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    let mut report =
        infoat_reports::build(title, &registry.runs()?, &registry.evals()?, &registry.published()?, selection)?;
    infoat_reports::render::add_analyses(&mut report, &registry.analyses()?, &registry.runs()?, selection)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut written = Vec::new();
    for &format in formats {
        let text = infoat_reports::render(&report, format)?;
        let path = out_dir.join(format!("{stem}.{}", format.extension()));
        infoat_registry::blobs::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Which of the paper's analyses (issue 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// Fig. 1: entropy of PGD survivors vs flipped examples; flipping radius vs entropy.
    Fig1,
    /// Fig. 4: weight loss landscape along a filter-normalised random direction.
    Fig4,
    /// Fig. 5: input loss surface around single examples.
    Fig5,
}

impl Figure {
    /// Its name in records and file names.
    pub fn name(self) -> &'static str {
        match self {
            Figure::Fig1 => "fig1",
            Figure::Fig4 => "fig4",
            Figure::Fig5 => "fig5",
        }
    }
}

/// What to analyse and how; unset fields take each figure's defaults.
#[derive(Debug, Clone)]
pub struct AnalysisRequest {
    /// The figure.
    pub figure: Figure,
    /// The run (config hash or unique prefix).
    pub run: String,
    /// Test images (fig1: 1,000; fig4: 500).
    pub n: Option<usize>,
    /// L∞ radius (default: the dataset's).
    pub eps: Option<f64>,
    /// PGD steps.
    pub steps: usize,
    /// Grid points per axis (fig4: 21; fig5: 21).
    pub points: Option<usize>,
    /// fig5: the test images (default 0, 1, 2, 3).
    pub examples: Vec<usize>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Data folder override.
    pub data_dir: Option<PathBuf>,
    /// Recompute even when the registry has it.
    pub force: bool,
}

/// Runs one analysis on one run, or finds it in the registry; records it. Returns the record
/// and whether it was reused.
pub fn analyze(req: &AnalysisRequest, registry: &Registry) -> Result<(infoat_registry::AnalysisRecord, bool)> {
    use crate::analysis::{fig1, fig4, fig5, ANALYSIS_SEMVER};
    crate::precision::configure_backends(crate::precision::Precision::Fp32);
    let run = find_run(registry, &req.run)?;
    let cfg = run.config()?;
    let device = cfg.device.device()?;
    let ds = cfg.data.dataset;
    let eps = req.eps.unwrap_or(default_eps(ds));
    let params = match req.figure {
        Figure::Fig1 => serde_json::to_value(fig1::Fig1Params {
            n: req.n.unwrap_or(1000),
            eps,
            steps: req.steps,
            eps_hi: (2.0 * eps).min(1.0),
            iterations: 10,
            bins: 20,
            seed: req.seed,
        })?,
        Figure::Fig4 => serde_json::to_value(fig4::Fig4Params {
            n: req.n.unwrap_or(500),
            eps,
            steps: req.steps,
            points: req.points.unwrap_or(21),
            seed: req.seed,
        })?,
        Figure::Fig5 => serde_json::to_value(fig5::Fig5Params {
            examples: if req.examples.is_empty() { vec![0, 1, 2, 3] } else { req.examples.clone() },
            eps,
            steps: req.steps,
            points: req.points.unwrap_or(21),
            seed: req.seed,
        })?,
    };
    let model_hash = run
        .record
        .checkpoint_hash
        .ok_or_else(|| Error::Invalid(format!("run {} has no checkpoint", run.record.config_hash.short(12))))?;
    let key = infoat_registry::AnalysisRecord::key_for(req.figure.name(), &model_hash, &params, ANALYSIS_SEMVER)?;
    if !req.force {
        if let Some(found) = registry.find_analysis(&key)? {
            return Ok((found, true));
        }
    }
    let start = Instant::now();
    let (model, _, _, loaded_hash) = load_checkpoint(&run.checkpoint_path, Some(cfg.model.arch), Some(ds), device)?;
    if loaded_hash != model_hash {
        return Err(Error::Checkpoint {
            path: run.checkpoint_path.clone(),
            message: format!("its tensors hash to {loaded_hash}, the run record says {model_hash}"),
        });
    }
    let data_dir = req.data_dir.clone().or(run.data_dir());
    let (test, _) = load_split(ds, data_dir.as_deref(), Split::Test)?;
    let batch = cfg.train.eval_batch_size;
    let bad = |e: serde_json::Error| Error::Invalid(format!("analysis parameters: {e}"));
    let result = match req.figure {
        Figure::Fig1 => serde_json::to_value(fig1::fig1(
            &model,
            &test,
            &serde_json::from_value(params.clone()).map_err(bad)?,
            batch,
        )?)?,
        Figure::Fig4 => serde_json::to_value(fig4::fig4(
            &model,
            &test,
            &serde_json::from_value(params.clone()).map_err(bad)?,
            batch,
        )?)?,
        Figure::Fig5 => {
            serde_json::to_value(fig5::fig5(&model, &test, &serde_json::from_value(params.clone()).map_err(bad)?)?)?
        }
    };
    let record = infoat_registry::AnalysisRecord {
        figure: req.figure.name().to_string(),
        model_hash,
        config_hash: Some(run.record.config_hash),
        params,
        analysis_semver: ANALYSIS_SEMVER.to_string(),
        result,
        seconds: start.elapsed().as_secs_f64(),
        finished_unix: now_unix(),
        env: fingerprint(device),
    };
    registry.put_analysis(&record)?;
    Ok((record, false))
}
