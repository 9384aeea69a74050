//! The pipeline: config → data → model → training → checkpoint → evaluation, with a run
//! folder per config hash that makes a second run of the same config cost nothing.
//!
//! A run folder `<runs-dir>/<config-hash>/` holds `checkpoint.safetensors` and `run.json`, the
//! record of the run, written last and atomically: a folder without a complete `run.json` is an
//! interrupted run and is trained again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use infoat_registry::ContentHash;
use serde::{Deserialize, Serialize};

use crate::attacks::AttackId;
use crate::checkpoint;
use crate::config::RunConfig;
use crate::data::{default_data_dir, Dataset, ImageSet, Split};
use crate::env::Fingerprint;
use crate::eval::{accuracy_of, clean_accuracy, robust_flags, Accuracy};
use crate::methods::default_eps;
use crate::models::{Arch, Classifier, Network, ScriptModel};
use crate::preset::PresetRun;
use crate::sanity::SanityFlag;
use crate::seed::{derive, seed_torch, Stream};
use crate::train::{train, EpochStates, EpochStats, Progress};
use crate::{Error, Result};

/// Version of the training code's semantics: bump when a change alters what a config trains.
pub const TRAINING_SEMVER: &str = "1.0.0";

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

/// The record of a completed training run (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Always `"complete"`: a record is only written once the checkpoint is on disk.
    pub status: String,
    /// The config's content hash.
    pub config_hash: ContentHash,
    /// The resolved config.
    pub config: RunConfig,
    /// The training code's semantic version.
    pub training_semver: String,
    /// The checkpoint's file name inside the run folder.
    pub checkpoint: String,
    /// The checkpoint's canonical digest.
    pub checkpoint_hash: ContentHash,
    /// The training images used.
    pub train_data: DataIdentity,
    /// Size of the validation hold-out.
    pub val_images: usize,
    /// Per-epoch statistics.
    pub epochs: Vec<EpochStats>,
    /// Wall-clock seconds of data loading plus training.
    pub seconds: f64,
    /// Unix time the run finished.
    pub finished_unix: u64,
    /// Where it ran.
    pub env: Fingerprint,
}

/// A finished (or reused) training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The checkpoint path.
    pub checkpoint_path: PathBuf,
    /// True when an identical complete run was found and nothing was trained.
    pub reused: bool,
    /// The run's record.
    pub record: RunRecord,
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

/// The run folder of a config.
pub fn run_dir(runs_dir: &Path, hash: &ContentHash) -> PathBuf {
    runs_dir.join(hash.to_hex())
}

const RECORD: &str = "run.json";
const CHECKPOINT: &str = "checkpoint.safetensors";
const STATE: &str = "state";

/// Builds the network a config describes, initialised from the run's seed.
pub fn build_network(cfg: &RunConfig, device: tch::Device) -> Result<Network> {
    seed_torch(derive(cfg.seed, Stream::Init, &[]));
    let ds = cfg.data.dataset;
    Network::new(cfg.model.arch, ds.image_shape(), ds.num_classes(), device)
}

/// A complete earlier run of the same config whose checkpoint still verifies, if any.
fn reusable(dir: &Path, hash: &ContentHash, cfg: &RunConfig) -> Option<TrainOutcome> {
    let text = std::fs::read_to_string(dir.join(RECORD)).ok()?;
    let record: RunRecord = serde_json::from_str(&text).ok()?;
    if record.status != "complete" || &record.config_hash != hash || record.training_semver != TRAINING_SEMVER {
        return None;
    }
    let checkpoint_path = dir.join(&record.checkpoint);
    let mut model = build_network(cfg, tch::Device::Cpu).ok()?;
    let loaded = checkpoint::load_into(&mut model, &checkpoint_path).ok()?;
    (loaded.hash == record.checkpoint_hash).then(|| TrainOutcome {
        run_dir: dir.to_path_buf(),
        checkpoint_path,
        reused: true,
        record,
    })
}

/// Checks that an interrupted run of `cfg` waits in `runs_dir` to be resumed (`train --resume`).
pub fn check_resumable(cfg: &RunConfig, runs_dir: &Path) -> Result<()> {
    let dir = run_dir(runs_dir, &cfg.hash()?);
    match crate::train::latest_state_epoch(&dir.join(STATE)) {
        Some(_) if dir.join(RECORD).exists() => Err(Error::Invalid(format!(
            "{} is a complete run; there is nothing to resume (use --force to train again)",
            dir.display()
        ))),
        Some(_) => Ok(()),
        None => Err(Error::Invalid(format!(
            "no interrupted run of this config in {}: nothing to resume (drop --resume to start it)",
            dir.display()
        ))),
    }
}

/// Trains `cfg` into `<runs_dir>/<config hash>/`, or returns the complete run already there
/// (unless `force`).
pub fn train_run(
    cfg: &RunConfig,
    data_dir: Option<&Path>,
    runs_dir: &Path,
    force: bool,
    progress: Progress,
) -> Result<TrainOutcome> {
    let hash = cfg.hash()?;
    let dir = run_dir(runs_dir, &hash);
    if !force {
        if let Some(done) = reusable(&dir, &hash, cfg) {
            return Ok(done);
        }
    }
    let device = cfg.device.device()?;
    let start = Instant::now();
    let ds = cfg.data.dataset;
    let (full, data_dir) = load_split(ds, data_dir, Split::Train)?;
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
    let mut model = build_network(cfg, device)?;
    let state_dir = dir.join(STATE);
    if force {
        // Start over: earlier epoch states of this config must not be resumed.
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let states = EpochStates { dir: state_dir, config_hash: hash.to_hex(), resume: !force };
    let epochs = train(cfg, &mut model, &train_set, val_set.as_ref(), progress, Some(&states))?;

    let config_json = infoat_registry::canonical_json(&cfg.canonical_view())?;
    let meta = BTreeMap::from([
        (checkpoint::META_CONFIG.to_string(), config_json),
        ("infoat.config_sha256".to_string(), hash.to_hex()),
    ]);
    let checkpoint_path = dir.join(CHECKPOINT);
    let checkpoint_hash = checkpoint::save(&model, &checkpoint_path, &meta)?;
    let record = RunRecord {
        status: "complete".to_string(),
        config_hash: hash,
        config: cfg.clone(),
        training_semver: TRAINING_SEMVER.to_string(),
        checkpoint: CHECKPOINT.to_string(),
        checkpoint_hash,
        train_data: identity_of(ds, &data_dir, Split::Train, &train_set),
        val_images: val_set.as_ref().map_or(0, ImageSet::len),
        epochs,
        seconds: start.elapsed().as_secs_f64(),
        finished_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        env: Fingerprint::current(device),
    };
    checkpoint::write_atomic(&dir.join(RECORD), serde_json::to_string_pretty(&record)?.as_bytes())?;
    Ok(TrainOutcome { run_dir: dir, checkpoint_path, reused: false, record })
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
}

/// Where the model under evaluation comes from (issue 4, "Any model").
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A harness run in the runs folder, by config hash (a unique prefix is enough).
    Run {
        /// The runs folder.
        runs_dir: PathBuf,
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
    /// Wall-clock seconds of the evaluation.
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
    /// Data directory; the dataset's default cache folder when `None`.
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
    /// Run the model-probing sanity checks ([`crate::sanity::probe_model`]).
    pub sanity: bool,
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

/// The complete run whose config hash starts with `prefix`.
pub fn find_run(runs_dir: &Path, prefix: &str) -> Result<TrainOutcome> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "run hash '{prefix}': expected at least 4 hex digits of a config hash (see `infoat train --json`)"
        )));
    }
    let entries = std::fs::read_dir(runs_dir).map_err(|e| Error::io(runs_dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix) && e.path().join(RECORD).is_file())
        .map(|e| e.path())
        .collect();
    found.sort();
    let dir = match found.len() {
        1 => found.remove(0),
        0 => {
            return Err(Error::Invalid(format!(
                "no complete run with config hash {prefix}… in {}; pass --runs-dir or train it first",
                runs_dir.display()
            )))
        }
        n => {
            return Err(Error::Invalid(format!(
                "{n} runs in {} have config hashes starting with {prefix}; give more digits",
                runs_dir.display()
            )))
        }
    };
    let text = std::fs::read_to_string(dir.join(RECORD)).map_err(|e| Error::io(dir.join(RECORD), e))?;
    let record: RunRecord = serde_json::from_str(&text).map_err(|e| Error::Config {
        origin: dir.join(RECORD).display().to_string(),
        message: format!("not a run record ({e}); the run folder is damaged, train it again with --force"),
    })?;
    Ok(TrainOutcome { checkpoint_path: dir.join(&record.checkpoint), run_dir: dir, reused: true, record })
}

/// sha256 of a file's bytes.
fn file_hash(path: &Path) -> Result<ContentHash> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut h = infoat_registry::Hasher::new("infoat.file.v1");
    h.bytes(&bytes);
    Ok(h.finish())
}

/// Loads the model a source names, for `dataset` (`None`: the recorded one).
fn load_model(
    source: &ModelSource,
    dataset: Option<Dataset>,
    device: tch::Device,
) -> Result<(Box<dyn Classifier>, ModelIdentity, Dataset, Option<PathBuf>)> {
    let checkpoint =
        |path: &Path, arch: Option<Arch>, dataset: Option<Dataset>| -> Result<(Network, Arch, Dataset, ContentHash)> {
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
        };
    Ok(match source {
        ModelSource::Run { runs_dir, hash } => {
            let run = find_run(runs_dir, hash)?;
            let cfg = &run.record.config;
            let ds = dataset.unwrap_or(cfg.data.dataset);
            let (model, arch, ds, h) = checkpoint(&run.checkpoint_path, Some(cfg.model.arch), Some(ds))?;
            if h != run.record.checkpoint_hash {
                return Err(Error::Checkpoint {
                    path: run.checkpoint_path.clone(),
                    message: format!(
                        "digest {h} differs from the {} its run record promises; the file was changed or damaged, \
                         train the run again with --force",
                        run.record.checkpoint_hash
                    ),
                });
            }
            let identity = ModelIdentity {
                source: "run".into(),
                path: run.checkpoint_path.clone(),
                hash: h,
                arch: Some(arch),
                config_hash: Some(run.record.config_hash),
            };
            (Box::new(model), identity, ds, Some(run.record.train_data.dir.clone()))
        }
        ModelSource::Checkpoint { path, arch } => {
            let (model, arch, ds, h) = checkpoint(path, *arch, dataset)?;
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

/// Evaluates a model: clean accuracy on the test split, then each attack on the first
/// `attack_limit` test images, the per-example worst case and the sanity checks.
pub fn evaluate(req: &EvalRequest) -> Result<EvalReport> {
    let start = Instant::now();
    let (model, identity, dataset, run_data_dir) = load_model(&req.source, req.dataset, req.device)?;
    let model = model.as_ref();
    let data_dir = req.data_dir.clone().or(run_data_dir);
    let (test, dir) = load_split(dataset, data_dir.as_deref(), Split::Test)?;
    let test = match req.limit {
        Some(n) => test.take(n),
        None => test,
    };
    let clean = clean_accuracy(model, &test, req.batch_size)?;
    let eps = req.eps.unwrap_or(default_eps(dataset));
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Invalid(format!("--eps {eps}: expected a finite radius ≥ 0 (e.g. 0.3 or 0.031372549)")));
    }
    // Only a subset is copied; without a limit the attacks read the test set itself.
    let subset = req.attack_limit.map(|n| test.take(n));
    let attacked = subset.as_ref().unwrap_or(&test);
    let mut attacks = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut worst: Option<Vec<bool>> = None;
    for id in &req.attacks {
        let t = Instant::now();
        let attack = id.build(eps);
        let flags = robust_flags(model, attacked, attack.as_ref(), req.batch_size, req.seed)?;
        let robust = accuracy_of(&flags);
        worst = Some(match worst {
            Some(w) => w.iter().zip(&flags).map(|(a, b)| *a && *b).collect(),
            None => flags,
        });
        counts.insert(id.name().to_string(), (robust.correct, robust.total));
        attacks.insert(
            id.name().to_string(),
            AttackReport { robust_acc: robust.accuracy, robust, eps, seconds: t.elapsed().as_secs_f64() },
        );
    }
    let mut sanity = crate::sanity::compare_attacks(&counts);
    if req.sanity && !req.attacks.is_empty() {
        sanity.extend(crate::sanity::probe_model(model, attacked, req.batch_size, req.seed)?);
    }
    Ok(EvalReport {
        model: identity,
        data: identity_of(dataset, &dir, Split::Test, &test),
        n: clean.total,
        clean_acc: clean.accuracy,
        clean,
        attacks,
        worst_case_acc: worst.as_deref().map(|w| accuracy_of(w).accuracy),
        worst_case_flags: worst.as_deref().unwrap_or(&[]).iter().map(|&f| if f { '1' } else { '0' }).collect(),
        flagged: !sanity.is_empty(),
        sanity,
        seconds: start.elapsed().as_secs_f64(),
        env: Fingerprint::current(req.device),
    })
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
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// True when training was skipped because a complete run existed.
    pub reused: bool,
    /// Training seconds (of the original run when reused).
    pub train_seconds: f64,
    /// Accuracy per metric: `clean` and each attack id.
    pub accuracy: BTreeMap<String, f64>,
    /// Images each metric was computed on.
    pub images: BTreeMap<String, usize>,
    /// The preset's targets.
    pub expect: BTreeMap<String, f64>,
    /// Metrics below their targets.
    pub missed: Vec<String>,
    /// The sanity checks the evaluation tripped ([`crate::sanity`]); non-empty means flagged.
    pub sanity: Vec<SanityFlag>,
}

/// Trains (or reuses) and evaluates one preset run.
pub fn reproduce_run(run: &PresetRun, runs_dir: &Path, force: bool, progress: Progress) -> Result<PresetOutcome> {
    let out = train_run(&run.config, None, runs_dir, force, progress)?;
    let report = evaluate(&EvalRequest {
        source: ModelSource::Checkpoint { path: out.checkpoint_path.clone(), arch: Some(run.config.model.arch) },
        dataset: Some(run.config.data.dataset),
        data_dir: Some(out.record.train_data.dir.clone()),
        device: run.config.device.device()?,
        batch_size: run.config.train.eval_batch_size,
        limit: run.config.data.test_limit,
        attacks: run.eval.attacks.clone(),
        eps: run.eval.eps,
        attack_limit: run.eval.limit,
        seed: run.config.seed,
        sanity: true,
    })?;
    let mut accuracy = BTreeMap::from([("clean".to_string(), report.clean.accuracy)]);
    let mut images = BTreeMap::from([("clean".to_string(), report.clean.total)]);
    for (id, a) in &report.attacks {
        accuracy.insert(id.clone(), a.robust.accuracy);
        images.insert(id.clone(), a.robust.total);
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
        checkpoint_hash: out.record.checkpoint_hash,
        checkpoint: out.checkpoint_path,
        reused: out.reused,
        train_seconds: out.record.seconds,
        accuracy,
        images,
        expect: run.expect.clone(),
        missed,
        sanity: report.sanity,
    })
}
