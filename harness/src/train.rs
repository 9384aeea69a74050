//! The training loop (SPEC §2): seeded shuffling and augmentation per epoch and batch, the
//! method's loss, the optimizer and the learning-rate schedule, with a progress bar.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig as _};
use tch::Kind;

use crate::config::{OptimizerConfig, RunConfig};
use crate::data::{make_batch, shuffled_indices, ImageSet};
use crate::eval::clean_accuracy;
use crate::models::Network;
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
    /// Accuracy on the (augmented) training batches, from the train-mode pass.
    pub train_accuracy: f64,
    /// Clean accuracy on the validation hold-out, when there is one.
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// How training reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar on a terminal and one summary line per epoch on stderr.
    Bar,
    /// Nothing.
    Quiet,
}

fn optimizer(cfg: &OptimizerConfig, vs: &nn::VarStore) -> Result<nn::Optimizer> {
    Ok(match *cfg {
        OptimizerConfig::Sgd { lr, momentum, weight_decay, nesterov } => {
            nn::Sgd { momentum, dampening: 0.0, wd: weight_decay, nesterov }.build(vs, lr)?
        }
        OptimizerConfig::Adam { lr, beta1, beta2, weight_decay } => {
            nn::Adam { beta1, beta2, wd: weight_decay, eps: 1e-8, amsgrad: false }.build(vs, lr)?
        }
    })
}

/// Trains `model` on `train_set` as `cfg` says; returns one [`EpochStats`] per epoch.
///
/// Randomness: the epoch's order comes from `(seed, Shuffle, epoch)`, a batch's crops and
/// flips from `(seed, Augment, epoch, batch)`, and libtorch's generator is re-seeded from
/// `(seed, Torch, epoch, batch)` before each batch, so every batch is reproducible on its own.
pub fn train(
    cfg: &RunConfig,
    model: &mut Network,
    train_set: &ImageSet,
    val_set: Option<&ImageSet>,
    progress: Progress,
) -> Result<Vec<EpochStats>> {
    if train_set.is_empty() {
        return Err(Error::Invalid("the training set is empty".into()));
    }
    let device = model.device();
    let mut method = cfg.method.build();
    let mut opt = optimizer(&cfg.optimizer, model.var_store())?;
    let base_lr = cfg.optimizer.lr();
    let batch_size = cfg.train.batch_size;
    let n = train_set.len();
    let batches = n.div_ceil(batch_size);
    let epochs = cfg.train.epochs;
    let augment = cfg.augment();
    let mut history = Vec::with_capacity(epochs);

    for epoch in 1..=epochs {
        let start = Instant::now();
        let bar = progress_bar(progress, batches, epoch, epochs);
        let order = shuffled_indices(n, derive(cfg.seed, Stream::Shuffle, &[epoch as u64]));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0i64, 0usize);
        let mut epoch_lr = base_lr;
        for (b, idx) in order.chunks(batch_size).enumerate() {
            let lr = cfg.schedule.lr(base_lr, epoch, b as f64 / batches as f64, epochs);
            if b == 0 {
                epoch_lr = lr;
            }
            opt.set_lr(lr);
            let parts = [epoch as u64, b as u64];
            let batch = make_batch(train_set, idx, augment, derive(cfg.seed, Stream::Augment, &parts), device)?;
            seed_torch(derive(cfg.seed, Stream::Torch, &parts));
            let out = method.loss(model, &batch)?;
            let loss = out.total.double_value(&[]);
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "training diverged: {} loss is {loss} at epoch {epoch}, batch {b}; lower optimizer.lr",
                    method.name()
                )));
            }
            opt.zero_grad();
            out.total.f_backward()?;
            opt.step();
            let hits = out.natural_logits.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?.f_sum(Kind::Int64)?;
            correct += hits.int64_value(&[]);
            loss_sum += loss * idx.len() as f64;
            seen += idx.len();
            if let Some(bar) = &bar {
                bar.inc(1);
                if b % 10 == 0 {
                    let secs = start.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(format!(
                        "loss {:.4}  acc {:.2}%  {:.0} img/s",
                        loss_sum / seen as f64,
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
            train_accuracy: correct as f64 / seen as f64,
            val_accuracy,
            seconds: start.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds.max(1e-9),
        };
        if progress == Progress::Bar {
            let val = stats.val_accuracy.map(|a| format!("  val {:.2}%", 100.0 * a)).unwrap_or_default();
            eprintln!(
                "epoch {epoch}/{epochs}  lr {:.3e}  loss {:.4}  train acc {:.2}%{val}  {:.1}s  {:.0} img/s",
                stats.lr,
                stats.loss,
                100.0 * stats.train_accuracy,
                stats.seconds,
                stats.images_per_second
            );
        }
        history.push(stats);
    }
    Ok(history)
}

fn progress_bar(progress: Progress, batches: usize, epoch: usize, epochs: usize) -> Option<ProgressBar> {
    if progress == Progress::Quiet {
        return None;
    }
    let bar = ProgressBar::new(batches as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches  {msg}  eta {eta}")
            .expect("invariant: the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    Some(bar)
}
