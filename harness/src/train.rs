//! The training loop (SPEC §2): seeded shuffling and augmentation per epoch and batch, the
//! method's loss, the optimizer and the learning-rate schedule, a progress bar with the loss
//! parts, and an epoch checkpoint (model, optimizer, method state, history) after every epoch
//! from which an interrupted run resumes exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint;
use crate::config::RunConfig;
use crate::data::{make_batch, shuffled_indices, Batch, ImageSet};
use crate::eval::clean_accuracy;
use crate::methods::StepCtx;
use crate::models::Network;
use crate::optim::Optimizer;
use crate::seed::{derive, seed_torch, Stream};
use crate::{Error, Result};

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Learning rate at the start of the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Mean of each named loss part over the epoch (e.g. `ce`, `robust_kl`).
    pub parts: BTreeMap<String, f64>,
    /// Accuracy on the training batches from the method's train-mode pass (natural batch, or
    /// adversarial batch for AT).
    pub train_accuracy: f64,
    /// Clean accuracy on the validation hold-out, when there is one.
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Digest of the model at the end of the epoch.
    #[serde(default)]
    pub checkpoint_hash: Option<infoat_registry::ContentHash>,
}

/// How training reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar on a terminal and one summary line per epoch on stderr.
    Bar,
    /// Nothing.
    Quiet,
}

/// Called after every epoch's state is saved, with the history so far (the registry records
/// the running attempt's progress through it).
pub type OnEpoch<'a> = &'a dyn Fn(&[EpochStats]) -> Result<()>;

/// Where epoch checkpoints go and whether to resume from them.
pub struct EpochStates<'a> {
    /// The folder (`<work>/state/`).
    pub dir: PathBuf,
    /// The config hash the states must carry.
    pub config_hash: String,
    /// Resume from the latest valid state in `dir`.
    pub resume: bool,
    /// Told about every finished epoch.
    pub on_epoch: Option<OnEpoch<'a>>,
}

impl std::fmt::Debug for EpochStates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochStates").field("dir", &self.dir).field("resume", &self.resume).finish()
    }
}

const META_EPOCH: &str = "infoat.epoch";
const META_HISTORY: &str = "infoat.history";
const META_CONFIG_HASH: &str = "infoat.config_sha256";

fn state_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:04}.safetensors"))
}

/// The epochs for which `dir` holds a state file, ascending.
fn saved_epochs(dir: &Path) -> Vec<usize> {
    let mut epochs: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("epoch-")?.strip_suffix(".safetensors")?.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// The newest epoch for which `dir` holds a state file, if any.
pub fn latest_state_epoch(dir: &Path) -> Option<usize> {
    saved_epochs(dir).last().copied()
}

/// Restores the newest readable state of `states`; returns the epochs it completed.
fn resume(
    states: &EpochStates,
    model: &Network,
    opt: &mut Optimizer,
    method: &mut dyn crate::methods::Method,
) -> Result<Option<Vec<EpochStats>>> {
    for epoch in saved_epochs(&states.dir).into_iter().rev() {
        let path = state_path(&states.dir, epoch);
        let Ok((tensors, loaded)) = checkpoint::read_tensors(&path) else { continue };
        if loaded.metadata.get(META_CONFIG_HASH) != Some(&states.config_hash)
            || loaded.metadata.get(META_EPOCH).and_then(|e| e.parse::<usize>().ok()) != Some(epoch)
        {
            continue;
        }
        let history: Vec<EpochStats> = match loaded.metadata.get(META_HISTORY).map(|h| serde_json::from_str(h)) {
            Some(Ok(h)) => h,
            _ => continue,
        };
        let (mut model_t, mut opt_t, mut method_t) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (k, v) in tensors {
            if let Some(n) = k.strip_prefix("model.") {
                model_t.insert(n.to_string(), v);
            } else if let Some(n) = k.strip_prefix("optim.") {
                opt_t.insert(n.to_string(), v);
            } else if let Some(n) = k.strip_prefix("method.") {
                method_t.insert(n.to_string(), v);
            }
        }
        let ours = model.named_tensors();
        if ours.len() != model_t.len() || ours.keys().any(|k| !model_t.contains_key(k)) {
            return Err(Error::Checkpoint { path, message: "epoch state does not match the model's tensors".into() });
        }
        tch::no_grad(|| -> Result<()> {
            for (k, var) in &ours {
                var.shallow_clone().f_copy_(&model_t[k].f_to_device(var.device())?)?;
            }
            Ok(())
        })?;
        opt.load_state(opt_t)?;
        method.load_state(
            method_t.into_iter().map(|(k, v)| Ok((k, v.f_to_device(model.device())?))).collect::<Result<_>>()?,
        )?;
        return Ok(Some(history));
    }
    Ok(None)
}

fn save_state(
    states: &EpochStates,
    epoch: usize,
    model: &Network,
    opt: &Optimizer,
    method: &dyn crate::methods::Method,
    history: &[EpochStats],
) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for (k, v) in model.named_tensors() {
        tensors.insert(format!("model.{k}"), v);
    }
    for (k, v) in opt.state_tensors() {
        tensors.insert(format!("optim.{k}"), v);
    }
    for (k, v) in method.state() {
        tensors.insert(format!("method.{k}"), v);
    }
    let meta = BTreeMap::from([
        (META_EPOCH.to_string(), epoch.to_string()),
        (META_HISTORY.to_string(), serde_json::to_string(history)?),
        (META_CONFIG_HASH.to_string(), states.config_hash.clone()),
    ]);
    checkpoint::save_tensors(&tensors, &state_path(&states.dir, epoch), &meta)?;
    for old in saved_epochs(&states.dir).into_iter().filter(|&e| e < epoch) {
        let _ = std::fs::remove_file(state_path(&states.dir, old));
    }
    Ok(())
}

/// Trains `model` on `train_set` as `cfg` says; returns one [`EpochStats`] per epoch (resumed
/// epochs included).
///
/// Randomness: the epoch's order comes from `(seed, Shuffle, epoch)`, a batch's crops and
/// flips from `(seed, Augment, epoch, batch)`, and libtorch's generator is re-seeded from
/// `(seed, Torch, epoch, batch)` before each batch, so every batch is reproducible on its own
/// and a resumed run follows the uninterrupted one exactly.
///
/// With `extra` (the config's `data.extra`, loaded), every batch mixes the epoch's next
/// labelled images with extra images drawn with replacement from `(seed, Extra, epoch,
/// batch)` in the config's proportion ([`crate::data::extra`]); an epoch is one pass over the
/// labelled images.
pub fn train(
    cfg: &RunConfig,
    model: &mut Network,
    data: TrainData<'_>,
    progress: Progress,
    states: Option<&EpochStates>,
) -> Result<Vec<EpochStats>> {
    let method = cfg.method.build(model.num_classes(), model.device())?;
    train_method(cfg, model, method, data, progress, states)
}

/// The images a run trains on.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    /// The labelled training images.
    pub train: &'a ImageSet,
    /// Extra images mixed into every batch (`data.extra`).
    pub extra: Option<&'a ImageSet>,
    /// Held-out validation images.
    pub val: Option<&'a ImageSet>,
}

impl<'a> TrainData<'a> {
    /// Just the labelled training images.
    pub fn new(train: &'a ImageSet) -> Self {
        TrainData { train, extra: None, val: None }
    }
}

/// [`train`] with an already-built method (tests plug in their own).
pub fn train_method(
    cfg: &RunConfig,
    model: &mut Network,
    mut method: Box<dyn crate::methods::Method>,
    data: TrainData<'_>,
    progress: Progress,
    states: Option<&EpochStates>,
) -> Result<Vec<EpochStats>> {
    let TrainData { train: train_set, extra, val: val_set } = data;
    if train_set.is_empty() {
        return Err(Error::Invalid("the training set is empty".into()));
    }
    let device = model.device();
    let mut opt = Optimizer::new(&cfg.optimizer, model.trainable());
    let base_lr = cfg.optimizer.lr();
    // Labelled and extra images per batch.
    let (batch_size, extra_per_batch) = match (&cfg.data.extra, extra) {
        (Some(plan), Some(set)) if !set.is_empty() => plan.split(cfg.train.batch_size),
        (None, None) => (cfg.train.batch_size, 0),
        (Some(_), _) => {
            return Err(Error::Invalid("the config has data.extra but no (or empty) extra images were loaded".into()))
        }
        (None, Some(_)) => {
            return Err(Error::Invalid("extra images were given, but the config has no data.extra".into()))
        }
    };
    let n = train_set.len();
    let batches = n.div_ceil(batch_size);
    let epochs = cfg.train.epochs;
    let augment = cfg.augment();

    let mut history = match states.filter(|s| s.resume) {
        Some(s) => resume(s, model, &mut opt, method.as_mut())?.unwrap_or_default(),
        None => Vec::new(),
    };
    if !history.is_empty() && progress == Progress::Bar {
        eprintln!("resuming after epoch {} of {epochs}", history.len());
    }

    for epoch in history.len() + 1..=epochs {
        let start = Instant::now();
        let bar = progress_bar(progress, batches, epoch, epochs);
        let order = shuffled_indices(n, derive(cfg.seed, Stream::Shuffle, &[epoch as u64]));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let mut part_sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut epoch_lr = base_lr;
        for (b, idx) in order.chunks(batch_size).enumerate() {
            let progress_in_epoch = b as f64 / batches as f64;
            let lr = cfg.schedule.lr(base_lr, epoch, progress_in_epoch, epochs);
            if b == 0 {
                epoch_lr = lr;
            }
            opt.set_lr(lr);
            let parts = [epoch as u64, b as u64];
            let mut batch = make_batch(train_set, idx, augment, derive(cfg.seed, Stream::Augment, &parts), device)?;
            if let (Some(set), true) = (extra, extra_per_batch > 0) {
                let picks =
                    crate::data::extra::draw(set.len(), extra_per_batch, derive(cfg.seed, Stream::Extra, &parts));
                let more = make_batch(set, &picks, augment, derive(cfg.seed, Stream::ExtraAugment, &parts), device)?;
                batch =
                    Batch { x: Tensor::f_cat(&[&batch.x, &more.x], 0)?, y: Tensor::f_cat(&[&batch.y, &more.y], 0)? };
            }
            seed_torch(derive(cfg.seed, Stream::Torch, &parts));
            let ctx = StepCtx {
                epoch,
                batch: b,
                epochs_done: (epoch - 1) as f64 + progress_in_epoch,
                seed: derive(cfg.seed, Stream::Method, &parts),
                train_set,
                augment,
            };
            let out = method.loss(model, &batch, &ctx)?;
            let loss = out.total.f_double_value(&[])?;
            let mut values = Vec::with_capacity(out.parts.len());
            for (name, t) in &out.parts {
                values.push((*name, t.f_double_value(&[])?));
            }
            if let Some((name, v)) =
                values.iter().find(|(_, v)| !v.is_finite()).copied().or((!loss.is_finite()).then_some(("total", loss)))
            {
                return Err(Error::Invalid(format!(
                    "training diverged: {} loss part '{name}' is {v} at epoch {epoch}, batch {b}; nothing was recorded \
                     as complete; lower optimizer.lr or check the method's hyperparameters",
                    method.name()
                )));
            }
            opt.backward_step(&out.total)?;
            let hits = out.logits.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?.f_sum(Kind::Int64)?;
            correct += hits.int64_value(&[]);
            loss_sum += loss * idx.len() as f64;
            for (name, v) in &values {
                *part_sums.entry(name.to_string()).or_default() += v * idx.len() as f64;
            }
            seen += idx.len();
            if let Some(bar) = &bar {
                bar.inc(1);
                if b % 5 == 0 {
                    let secs = start.elapsed().as_secs_f64().max(1e-9);
                    let parts: Vec<String> =
                        part_sums.iter().map(|(k, v)| format!("{k} {:.4}", v / seen as f64)).collect();
                    bar.set_message(format!(
                        "loss {:.4} [{}]  acc {:.2}%  {:.0} img/s",
                        loss_sum / seen as f64,
                        parts.join(", "),
                        100.0 * correct as f64 / seen as f64,
                        seen as f64 / secs
                    ));
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let val_accuracy = match val_set {
            Some(v) => Some(clean_accuracy(model, v, cfg.train.eval_batch_size)?.accuracy),
            None => None,
        };
        let stats = EpochStats {
            epoch,
            lr: epoch_lr,
            loss: loss_sum / seen as f64,
            parts: part_sums.into_iter().map(|(k, v)| (k, v / seen as f64)).collect(),
            train_accuracy: correct as f64 / seen as f64,
            val_accuracy,
            seconds: start.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds.max(1e-9),
            checkpoint_hash: Some(checkpoint::digest(model)?),
        };
        if progress == Progress::Bar {
            let val = stats.val_accuracy.map(|a| format!("  val {:.2}%", 100.0 * a)).unwrap_or_default();
            let parts: Vec<String> = stats.parts.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            eprintln!(
                "epoch {epoch}/{epochs}  lr {:.3e}  loss {:.4} [{}]  train acc {:.2}%{val}  {:.1}s  {:.0} img/s",
                stats.lr,
                stats.loss,
                parts.join(", "),
                100.0 * stats.train_accuracy,
                stats.seconds,
                stats.images_per_second
            );
        }
        history.push(stats);
        if let Some(s) = states {
            save_state(s, epoch, model, &opt, method.as_ref(), &history)?;
            if let Some(f) = s.on_epoch {
                f(&history)?;
            }
        }
    }
    Ok(history)
}

fn progress_bar(progress: Progress, batches: usize, epoch: usize, epochs: usize) -> Option<ProgressBar> {
    if progress == Progress::Quiet {
        return None;
    }
    let bar = ProgressBar::new(batches as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len}  {msg}  eta {eta}")
            .expect("invariant: the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    Some(bar)
}
