//! Training workflow: a run config trained from scratch, resumed after its last saved epoch, or
//! reused from the registry; the attempt recorded as running, then complete or failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use infoat_registry::records::new_attempt;
use infoat_registry::{ContentHash, EpochRecord, Registry, RunRecord, RunStatus};
use serde::Serialize;

use super::{identity_of, load_split, now_unix, DataIdentity, TRAINING_SEMVER};
use crate::checkpoint;
use crate::config::RunConfig;
use crate::data::{Dataset, Split};
use crate::env::fingerprint;
use crate::models::{Arch, Network};
use crate::seed::{derive, seed_torch, Stream};
use crate::train::{latest_state_epoch, train, EpochStates, EpochStats, Progress, TrainData};
use crate::{Error, Result};

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

pub(super) fn run_config(record: &RunRecord) -> Result<RunConfig> {
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

/// Where an attempt at `hash` keeps its resumable state.
pub fn work_dir(registry: &Registry, hash: &ContentHash) -> PathBuf {
    registry.root().join("work").join(hash.to_hex())
}

pub(super) const STATE: &str = "state";

/// Builds the network a config describes, initialised from the run's seed.
pub fn build_network(cfg: &RunConfig, device: tch::Device) -> Result<Network> {
    seed_torch(derive(cfg.seed, Stream::Init, &[]));
    let ds = cfg.data.dataset;
    let mut net = Network::new(cfg.model.arch, ds.image_shape(), ds.num_classes(), device)?;
    crate::precision::configure_backends(cfg.precision);
    net.set_numerics(cfg.precision, cfg.channels_last);
    Ok(net)
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

/// The arch and dataset a checkpoint's recorded config names, if it carries one.
pub fn recorded_setup(path: &Path) -> Result<(Option<Arch>, Option<Dataset>)> {
    if checkpoint::format_of(path)? == checkpoint::Format::TorchSave {
        return Ok((None, None));
    }
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
