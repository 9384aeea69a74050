//! `infoat bench` (issue 9): throughput of the work every experiment repeats, one adversarial
//! training step (inner PGD maximisation + outer update, the same [`Method`] code `train`
//! runs), on random data of a dataset's shape; the largest batch that fits; and the agreement
//! of CPU and CUDA on logits and one PGD step.
//!
//! Timings synchronise the CUDA device before reading the clock. Data never leaves the device
//! during a measurement, so the figure is the step itself, not the input pipeline.
//!
//! [`Method`]: crate::methods::Method

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::{Augment, Batch, Dataset, ImageSet};
use crate::methods::{MethodConfig, StepCtx};
use crate::models::{Arch, Classifier, Network};
use crate::optim::Optimizer;
use crate::optim::OptimizerConfig;
use crate::precision::{self, Precision};
use crate::seed::seed_torch;
use crate::{Error, Result};

/// What one benchmark measures.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// The network.
    pub arch: Arch,
    /// The data shape and class count (random data of that shape is used).
    pub dataset: Dataset,
    /// The training method whose step is timed (its inner maximisation included).
    pub method: MethodConfig,
    /// Images per step.
    pub batch_size: usize,
    /// Where.
    pub device: Device,
    /// Floating-point precision.
    pub precision: Precision,
    /// Channels-last memory format.
    pub channels_last: bool,
    /// Untimed steps first (cuDNN autotuning, allocator warm-up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Seed of the model's initialisation and the random data.
    pub seed: u64,
    /// What one timed step is.
    pub work: Work,
    /// Run the inner PGD as one captured CUDA graph ([`crate::attacks::GraphedPgd`]): for
    /// `Work::Pgd`, or the AT training step. On the CPU the same buffers run eagerly (the
    /// equivalence the tests check).
    pub cuda_graph: bool,
}

/// What `infoat bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// One training step: inner maximisation, outer loss, backward, update.
    #[default]
    TrainStep,
    /// The inner maximisation alone (PGD with the method's step count, parameters frozen).
    Pgd,
    /// One APGD-CE attack on the batch (100 iterations, AutoAttack's settings; examples the
    /// model already misclassifies, or that break, leave the run as in evaluation).
    ApgdCe,
}

/// The measured throughput of one [`BenchSpec`].
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Architecture name.
    pub arch: String,
    /// Dataset whose shape was used.
    pub dataset: String,
    /// Method name.
    pub method: String,
    /// Inner PGD steps of the method (0 for natural training); APGD's iterations for `apgd_ce`.
    pub inner_steps: usize,
    /// What one timed step is.
    pub work: Work,
    /// Device (`cpu`, `cuda:0`).
    pub device: String,
    /// Device name (GPU model or CPU).
    pub device_name: String,
    /// Precision.
    pub precision: Precision,
    /// Channels-last memory format.
    pub channels_last: bool,
    /// The inner PGD ran as a captured CUDA graph (omitted when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cuda_graph: bool,
    /// The captured graph's ascent against the eager one from the same seed, checked before
    /// timing (with `cuda_graph` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_check: Option<crate::attacks::GraphCheck>,
    /// Images per step.
    pub batch_size: usize,
    /// Timed steps.
    pub steps: usize,
    /// Mean wall time of one step, milliseconds.
    pub ms_per_step: f64,
    /// Training images per second (batch × steps / seconds).
    pub images_per_second: f64,
    /// Seconds an epoch of the dataset's training set would take at this rate.
    pub epoch_seconds: f64,
    /// Intra-op threads libtorch used.
    pub threads: i64,
    /// The process's heap settings ([`crate::alloc::tune`]).
    pub allocator: String,
    /// The process's peak resident memory when the timed steps ended, MiB (host memory; a
    /// GPU's is not counted); absent where the platform does not report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// Training-set sizes (SPEC §5), for the epoch-time figure.
fn train_len(dataset: Dataset) -> usize {
    match dataset {
        Dataset::Mnist | Dataset::FashionMnist => 60_000,
        Dataset::Cifar10 | Dataset::Cifar100 => 50_000,
        Dataset::Svhn => 73_257,
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The training progress every bench step claims (past any eps warm-up).
const BENCH_EPOCHS_DONE: f64 = 1.0;

/// A ready-to-step training setup on random data: what `infoat bench` times and the criterion
/// benches (`harness/benches/pgd.rs`) drive.
pub struct Rig {
    model: Network,
    method: Box<dyn crate::methods::Method>,
    opt: Optimizer,
    batch: Batch,
    pool: ImageSet,
    eps: f64,
    device: Device,
    /// The inner PGD as a graph (`BenchSpec::cuda_graph`).
    graphed: Option<crate::attacks::GraphedPgd>,
    /// The captured graph against the eager ascent (CUDA only).
    graph_check: Option<crate::attacks::GraphCheck>,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("model", &self.model).field("batch", &self.batch.len()).finish()
    }
}

impl Rig {
    /// Builds the model, method, optimizer and a random batch of `spec`.
    pub fn new(spec: &BenchSpec) -> Result<Rig> {
        let mut method_cfg = spec.method.clone();
        method_cfg.resolve(spec.dataset).map_err(Error::Invalid)?;
        precision::configure_backends(spec.precision);
        seed_torch(spec.seed);
        let shape = spec.dataset.image_shape();
        let k = spec.dataset.num_classes();
        let mut model = Network::new(spec.arch, shape, k, spec.device)?;
        model.set_numerics(spec.precision, spec.channels_last);
        let method = method_cfg.build(k, spec.device)?;
        let opt = Optimizer::new(&OptimizerConfig::default(), model.trainable());
        let dims = [spec.batch_size as i64, shape.channels as i64, shape.height as i64, shape.width as i64];
        let x = Tensor::f_rand(dims, (Kind::Float, spec.device))?;
        let y = Tensor::f_randint(k as i64, [spec.batch_size as i64], (Kind::Int64, spec.device))?;
        // GanDef draws its discriminator batch from the training set: a small random one.
        let n = 256usize;
        let pool = ImageSet {
            images: (0..n * shape.numel()).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect(),
            labels: (0..n).map(|i| (i % k) as u8).collect(),
            shape,
            num_classes: k,
        };
        let eps = spec.dataset.default_eps();
        let mut rig = Rig {
            model,
            method,
            opt,
            batch: Batch { x, y },
            pool,
            eps,
            device: spec.device,
            graphed: None,
            graph_check: None,
        };
        if spec.cuda_graph {
            let (pgd, bn) = match (spec.work, &method_cfg) {
                (Work::Pgd, cfg) => (rig.pgd_spec(cfg.inner().map_or(0, |i| i.steps)), crate::attacks::BnMode::Eval),
                (Work::TrainStep, MethodConfig::At { inner }) => {
                    (inner.spec_at(BENCH_EPOCHS_DONE), inner.attack_bn_mode)
                }
                _ => return Err(Error::Invalid(
                    "a CUDA graph captures the cross-entropy PGD attack: use it with --work pgd, or with --method at \
                         for a training step"
                        .into(),
                )),
            };
            let graphed = crate::attacks::GraphedPgd::new(&rig.model, &rig.batch.x, &rig.batch.y, pgd, bn)?;
            if graphed.is_graph() {
                // Before timing a graph, what it computes: the eager ascent, from the same seed.
                rig.graph_check = Some(graphed.check_against_eager(&rig.model, spec.seed as i64)?);
            }
            rig.graphed = Some(graphed);
        }
        Ok(rig)
    }

    /// The ascent `Rig::pgd` runs: `steps` steps of eps/4 from a uniform start.
    fn pgd_spec(&self, steps: usize) -> crate::attacks::PgdSpec {
        crate::attacks::PgdSpec {
            eps: self.eps,
            steps,
            step_size: crate::attacks::default_step(self.eps),
            start: crate::attacks::Start::Uniform,
        }
    }

    /// The inner maximisation alone: `steps` PGD steps of eps/4 on the cross-entropy from a
    /// uniform start, parameters frozen, BatchNorm in eval mode (SPEC §2 "Inner PGD"); a replay
    /// of the graph when the rig was built with one (for the step count it was built for).
    pub fn pgd(&self, steps: usize) -> Result<Tensor> {
        if let Some(g) = &self.graphed {
            return g.run(&self.model, &self.batch.x, &self.batch.y);
        }
        let spec = self.pgd_spec(steps);
        let y = &self.batch.y;
        crate::attacks::maximize(&self.model, &self.batch.x, &spec, crate::attacks::BnMode::Eval, &mut |logits| {
            crate::attacks::ce_sum(logits, y)
        })
    }

    /// One evaluation attack on the batch, against the labels the model itself predicts on
    /// it: every example starts correctly classified, so an attack that sets misclassified
    /// examples aside (APGD) attacks the whole batch, whatever the random weights predict.
    pub fn attack(&self, id: crate::attacks::AttackId) -> Result<Tensor> {
        attack_own_labels(&self.model, &self.batch.x, self.eps, id)
    }

    /// The model's trainable parameters by name (to compare runs).
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.model.trainable()
    }

    /// Whether the rig runs its PGD through [`crate::attacks::GraphedPgd`] (`BenchSpec::cuda_graph`).
    pub fn is_graphed(&self) -> bool {
        self.graphed.is_some()
    }

    /// Waits for the device to finish queued work (CUDA); a no-op on the CPU.
    pub fn sync(&self) {
        sync(self.device);
    }

    /// One training step (the method's loss, backward, optimizer update). With a graph (AT
    /// only), the graph's replay gives the adversarial batch and AT's outer loss follows.
    pub fn step(&mut self, i: usize) -> Result<()> {
        if let Some(g) = &self.graphed {
            let x_adv = g.run(&self.model, &self.batch.x, &self.batch.y)?;
            let out = crate::methods::At::outer(&self.model, &x_adv, &self.batch.y)?;
            return self.opt.backward_step(&out.total);
        }
        let ctx = StepCtx {
            epoch: 1,
            batch: i,
            epochs_done: BENCH_EPOCHS_DONE,
            seed: i as u64,
            train_set: &self.pool,
            augment: Augment::None,
        };
        let out = self.method.loss(&self.model, &self.batch, &ctx)?;
        self.opt.backward_step(&out.total)
    }
}

/// Runs attack `id` on `x` against the labels `model` predicts for it ([`Rig::attack`]).
fn attack_own_labels(model: &dyn Classifier, x: &Tensor, eps: f64, id: crate::attacks::AttackId) -> Result<Tensor> {
    let y = tch::no_grad(|| model.logits(x, false))?.f_argmax(1, false)?;
    Ok(crate::attacks::AttackBuild::build(id, eps).perturb(model, x, &y)?.0)
}

/// Times `spec.steps` training steps after `spec.warmup` untimed ones.
pub fn throughput(spec: &BenchSpec) -> Result<BenchResult> {
    if spec.batch_size == 0 || spec.steps == 0 {
        return Err(Error::Invalid("bench needs a batch size and a step count of at least 1".into()));
    }
    // The heap settings the measurement runs with and reports (a no-op after the binary's own call).
    let allocator = crate::alloc::tune();
    let mut rig = Rig::new(spec)?;
    let steps = match spec.work {
        Work::ApgdCe => crate::attacks::Apgd::ce(0.0).iterations,
        _ => spec.method.inner().map_or(0, |i| i.steps),
    };
    let one = |rig: &mut Rig, i: usize| -> Result<()> {
        match spec.work {
            Work::TrainStep => rig.step(i),
            Work::Pgd => rig.pgd(steps).map(drop),
            Work::ApgdCe => rig.attack(crate::attacks::AttackId::ApgdCe).map(drop),
        }
    };
    for i in 0..spec.warmup {
        one(&mut rig, i)?;
    }
    sync(spec.device);
    let start = Instant::now();
    for i in 0..spec.steps {
        one(&mut rig, spec.warmup + i)?;
    }
    sync(spec.device);
    let secs = start.elapsed().as_secs_f64();
    let ips = (spec.batch_size * spec.steps) as f64 / secs;
    let env = crate::env::fingerprint(spec.device);
    Ok(BenchResult {
        arch: spec.arch.name().to_string(),
        dataset: spec.dataset.name().to_string(),
        method: rig.method.name().to_string(),
        inner_steps: steps,
        work: spec.work,
        device: env.device.clone(),
        device_name: env.gpu.clone().or_else(|| env.cpu.clone()).unwrap_or_else(|| env.device.clone()),
        precision: spec.precision,
        channels_last: spec.channels_last,
        cuda_graph: rig.graphed.as_ref().is_some_and(|g| g.is_graph()),
        graph_check: rig.graph_check,
        batch_size: spec.batch_size,
        steps: spec.steps,
        ms_per_step: 1e3 * secs / spec.steps as f64,
        images_per_second: ips,
        epoch_seconds: train_len(spec.dataset) as f64 / ips,
        threads: tch::get_num_threads() as i64,
        allocator: allocator.to_string(),
        peak_rss_mib: crate::alloc::peak_resident_bytes().map(|b| b as f64 / (1u64 << 20) as f64),
    })
}

fn is_out_of_memory(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("out of memory") || m.contains("cuda_error_out_of_memory") || m.contains("can't allocate memory")
}

/// Whether two training steps at `batch` fit; `Ok(false)` on out-of-memory, other errors
/// passed on.
fn fits(spec: &BenchSpec, batch: usize) -> Result<bool> {
    let spec = BenchSpec { batch_size: batch, ..spec.clone() };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let mut rig = Rig::new(&spec)?;
        rig.step(0)?;
        rig.step(1)?;
        sync(spec.device);
        Ok(())
    }));
    match outcome {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) if is_out_of_memory(&e.to_string()) => Ok(false),
        Ok(Err(e)) => Err(e),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            if is_out_of_memory(&msg) {
                Ok(false)
            } else {
                Err(Error::Invalid(format!("bench step failed at batch {batch}: {msg}")))
            }
        }
    }
}

/// The largest batch (a multiple of `granularity`, at most `limit`) for which a training step
/// of `spec` fits in memory: doubling from `spec.batch_size`, then bisection. `None` when even
/// `spec.batch_size` does not fit.
pub fn max_batch(spec: &BenchSpec, limit: usize, granularity: usize) -> Result<Option<usize>> {
    let g = granularity.max(1);
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = (|| {
        let mut lo = spec.batch_size.max(g);
        if !fits(spec, lo)? {
            return Ok(None);
        }
        let mut hi = None;
        while lo < limit {
            let next = (lo * 2).min(limit);
            if fits(spec, next)? {
                lo = next;
            } else {
                hi = Some(next);
                break;
            }
        }
        if let Some(mut hi) = hi {
            while hi - lo > g {
                let mid = (lo + (hi - lo) / 2) / g * g;
                let mid = if mid <= lo { lo + g } else { mid };
                if fits(spec, mid)? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        Ok(Some(lo))
    })();
    panic::set_hook(hook);
    result
}

/// What [`agreement`] compares.
#[derive(Debug, Clone, Copy)]
pub struct AgreementSpec {
    /// The network.
    pub arch: Arch,
    /// The data shape and class count.
    pub dataset: Dataset,
    /// The device compared with the CPU.
    pub device: Device,
    /// Precision on that device.
    pub precision: Precision,
    /// Channels-last on that device.
    pub channels_last: bool,
    /// Random examples compared.
    pub n: usize,
    /// The PGD step size.
    pub step: f64,
    /// Seed of the initialisation and the data.
    pub seed: u64,
}

/// How closely two devices agree on the same network and inputs.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Architecture name.
    pub arch: String,
    /// The device compared with the CPU reference (float32).
    pub device: String,
    /// Precision on that device.
    pub precision: Precision,
    /// Channels-last on that device.
    pub channels_last: bool,
    /// Examples compared.
    pub n: usize,
    /// max |logits_dev − logits_cpu| / max |logits_cpu|.
    pub logits_rel_max_diff: f64,
    /// Fraction of examples with the same predicted class.
    pub argmax_agreement: f64,
    /// Fraction of input-gradient entries with the same sign (entries where either gradient
    /// is exactly zero are excluded).
    pub grad_sign_agreement: f64,
    /// Cosine similarity of the flattened input gradients.
    pub grad_cosine: f64,
    /// max |x1_dev − x1_cpu| after one PGD step of size `step` from the same point.
    pub pgd_step_max_diff: f64,
    /// Fraction of pixels whose PGD step went the same way.
    pub pgd_step_agreement: f64,
    /// The PGD step size.
    pub step: f64,
}

/// Builds `arch` on the CPU from `seed`, takes three clean SGD steps on the random batch,
/// copies it to `device` with the given numerics, and
/// compares logits and one PGD step (CE loss, sign of the input gradient, size `step`) on `n`
/// random images of `dataset`'s shape. BatchNorm runs in eval mode; the CPU side is float32.
pub fn agreement(spec: &AgreementSpec) -> Result<Agreement> {
    let AgreementSpec { arch, dataset, device, precision, channels_last, n, step, seed } = *spec;
    precision::configure_backends(precision);
    seed_torch(seed);
    let shape = dataset.image_shape();
    let k = dataset.num_classes();
    let cpu = Network::new(arch, shape, k, Device::Cpu)?;
    let dims = [n as i64, shape.channels as i64, shape.height as i64, shape.width as i64];
    let x = Tensor::f_rand(dims, (Kind::Float, Device::Cpu))?;
    let y = Tensor::f_randint(k as i64, [n as i64], (Kind::Int64, Device::Cpu))?;
    // A few clean SGD steps first: some initialisations (SmallCNN's zero classifier) give
    // constant logits and zero input gradients, which would compare nothing.
    let mut opt = Optimizer::new(&OptimizerConfig::default(), cpu.trainable());
    for _ in 0..3 {
        let loss = cpu.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.backward_step(&loss)?;
    }
    let mut dev = Network::new(arch, shape, k, device)?;
    tch::no_grad(|| -> Result<()> {
        let src = cpu.named_tensors();
        for (name, mut dst) in dev.named_tensors() {
            let s = src.get(&name).ok_or_else(|| Error::Invalid(format!("variable {name} missing on the CPU copy")))?;
            dst.f_copy_(s)?;
        }
        Ok(())
    })?;
    dev.set_numerics(precision, channels_last);

    let run = |model: &Network| -> Result<(Tensor, Tensor)> {
        let _frozen = model.freeze();
        let xd = x.f_to_device(model.device())?.f_detach()?.f_set_requires_grad(true)?;
        let logits = model.logits(&xd, false)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(
            &y.f_to_device(model.device())?,
            None,
            tch::Reduction::Sum,
            -100,
            0.0,
        )?;
        let g = Tensor::f_run_backward(&[&loss], &[&xd], false, false)?.remove(0);
        Ok((logits.f_detach()?.f_to_device(Device::Cpu)?, g.f_to_device(Device::Cpu)?))
    };
    let (l_cpu, g_cpu) = run(&cpu)?;
    let (l_dev, g_dev) = run(&dev)?;

    let max = |t: &Tensor| -> Result<f64> { Ok(t.f_abs()?.f_max()?.f_double_value(&[])?) };
    let mean = |t: &Tensor| -> Result<f64> { Ok(t.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?.f_double_value(&[])?) };
    let logits_rel = max(&(&l_dev - &l_cpu))? / max(&l_cpu)?.max(1e-30);
    let argmax = mean(&l_dev.f_argmax(-1, false)?.f_eq_tensor(&l_cpu.f_argmax(-1, false)?)?)?;
    let (s_cpu, s_dev) = (g_cpu.f_sign()?, g_dev.f_sign()?);
    let nonzero = s_cpu.f_ne(0)?.f_logical_and(&s_dev.f_ne(0)?)?;
    let same = s_cpu.f_eq_tensor(&s_dev)?.f_logical_and(&nonzero)?;
    let counted = nonzero.f_sum(Kind::Float)?.f_double_value(&[])?;
    let sign_agree = if counted > 0.0 { same.f_sum(Kind::Float)?.f_double_value(&[])? / counted } else { 1.0 };
    let cos = (&g_cpu * &g_dev).f_sum(Kind::Double)?.f_double_value(&[])?
        / (g_cpu.f_norm()?.f_double_value(&[])? * g_dev.f_norm()?.f_double_value(&[])?).max(1e-300);
    let x1 = |s: &Tensor| -> Result<Tensor> { Ok((&x + s * step).f_clamp(0.0, 1.0)?) };
    let (x1_cpu, x1_dev) = (x1(&s_cpu)?, x1(&s_dev)?);
    Ok(Agreement {
        arch: arch.name().to_string(),
        device: crate::env::fingerprint(device).device,
        precision,
        channels_last,
        n,
        logits_rel_max_diff: logits_rel,
        argmax_agreement: argmax,
        grad_sign_agreement: sign_agree,
        grad_cosine: cos,
        pgd_step_max_diff: max(&(&x1_dev - &x1_cpu))?,
        pgd_step_agreement: mean(&s_cpu.f_eq_tensor(&s_dev)?)?,
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::InnerConfig;

    fn spec(method: MethodConfig) -> BenchSpec {
        BenchSpec {
            arch: Arch::SmallCnn,
            dataset: Dataset::Mnist,
            method,
            batch_size: 8,
            device: Device::Cpu,
            precision: Precision::Fp32,
            channels_last: false,
            warmup: 1,
            steps: 2,
            seed: 1,
            work: Work::TrainStep,
            cuda_graph: false,
        }
    }

    #[test]
    fn a_graph_is_refused_for_a_step_whose_attack_is_not_cross_entropy_pgd() {
        let _g = crate::models::layers::test_support::rng_lock();
        let trades = MethodConfig::Trades { beta: 6.0, inner: InnerConfig::default() };
        let err = Rig::new(&BenchSpec { cuda_graph: true, ..spec(trades.clone()) }).unwrap_err().to_string();
        assert!(err.contains("--work pgd") && err.contains("--method at"), "{err}");
        // Its inner maximisation alone is cross-entropy PGD, which a graph takes.
        assert!(Rig::new(&BenchSpec { cuda_graph: true, work: Work::Pgd, ..spec(trades) }).is_ok());
    }

    #[test]
    fn throughput_reports_the_work_it_timed() {
        let inner = InnerConfig { steps: 2, ..InnerConfig::default() };
        let r = throughput(&spec(MethodConfig::At { inner })).unwrap();
        assert_eq!((r.method.as_str(), r.inner_steps, r.batch_size, r.steps), ("at", 2, 8, 2));
        assert!(r.images_per_second > 0.0 && r.ms_per_step > 0.0);
        assert!((r.images_per_second * r.ms_per_step / 1e3 - 8.0).abs() < 1e-6);
        assert!((r.epoch_seconds - 60_000.0 / r.images_per_second).abs() < 1e-6);
    }

    #[test]
    fn pgd_work_times_the_inner_maximisation_and_stays_in_the_ball() {
        let inner = InnerConfig { steps: 3, ..InnerConfig::default() };
        let mut s = spec(MethodConfig::At { inner });
        s.work = Work::Pgd;
        let r = throughput(&s).unwrap();
        assert_eq!((r.work, r.inner_steps), (Work::Pgd, 3));
        let rig = Rig::new(&s).unwrap();
        let adv = rig.pgd(3).unwrap();
        let dist = (&adv - &rig.batch.x).abs().max().double_value(&[]);
        assert!(dist <= 0.3 + 1e-6 && dist > 0.0, "{dist}");
    }

    #[test]
    fn apgd_work_attacks_the_whole_batch_against_the_models_own_labels() {
        let mut s = spec(MethodConfig::At { inner: InnerConfig::default() });
        s.work = Work::ApgdCe;
        s.steps = 1;
        let r = throughput(&s).unwrap();
        assert_eq!((r.work, r.inner_steps), (Work::ApgdCe, 100));
        assert_eq!(r.allocator, crate::alloc::tune());

        /// Counts the images the attack sends through the model.
        struct Counting<'a>(&'a Network, std::cell::Cell<i64>);
        impl Classifier for Counting<'_> {
            fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
                self.1.set(self.1.get() + x.size()[0]);
                self.0.logits(x, train)
            }
            fn device(&self) -> Device {
                self.0.device()
            }
            fn num_classes(&self) -> usize {
                10
            }
            fn freeze(&self) -> crate::models::Frozen {
                self.0.freeze()
            }
        }
        let rig = Rig::new(&s).unwrap();
        // SmallCNN's zero-initialised last layer predicts class 0 for everything: against the
        // random labels most examples would be "misclassified already" and left out.
        let own = tch::no_grad(|| rig.model.forward_t(&rig.batch.x, false)).argmax(1, false);
        assert_ne!(own, rig.batch.y, "the random labels must differ from the predictions for this test to bite");
        let counting = Counting(&rig.model, std::cell::Cell::new(0));
        let adv = attack_own_labels(&counting, &rig.batch.x, rig.eps, crate::attacks::AttackId::ApgdCe).unwrap();
        // Every example runs all 100 iterations (its input gradient is zero, so nothing breaks).
        assert!(counting.1.get() >= 8 * 100, "{} images through the model", counting.1.get());
        let dist = (&adv - &rig.batch.x).abs().max().double_value(&[]);
        assert!(dist <= 0.3 + 1e-6, "{dist}");
    }

    #[test]
    fn bench_runs_bf16_and_channels_last_on_cpu() {
        let mut s = spec(MethodConfig::At { inner: InnerConfig { steps: 1, ..InnerConfig::default() } });
        s.precision = Precision::Bf16;
        s.channels_last = true;
        let r = throughput(&s).unwrap();
        assert_eq!((r.precision, r.channels_last), (Precision::Bf16, true));
    }

    #[test]
    fn max_batch_stops_at_the_limit_and_respects_granularity() {
        let s = spec(MethodConfig::Natural);
        assert_eq!(max_batch(&s, 40, 8).unwrap(), Some(40));
    }

    #[test]
    fn channels_last_changes_neither_checkpoint_digest_nor_logits() {
        seed_torch(5);
        let mut net = Network::new(Arch::SmallCnn, Dataset::Mnist.image_shape(), 10, Device::Cpu).unwrap();
        let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        let (before, logits) = (crate::checkpoint::digest(&net).unwrap(), net.forward_t(&x, false));
        net.set_numerics(Precision::Fp32, true);
        assert!(net
            .named_tensors()
            .values()
            .filter(|t| t.dim() == 4 && t.size()[1] > 1)
            .all(precision::is_channels_last));
        assert_eq!(crate::checkpoint::digest(&net).unwrap(), before);
        let diff = (net.forward_t(&x, false) - logits).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "channels-last logits differ by {diff}");
    }

    #[test]
    fn out_of_memory_messages_are_recognised() {
        assert!(is_out_of_memory("CUDA out of memory. Tried to allocate 2.00 GiB"));
        assert!(is_out_of_memory("DefaultCPUAllocator: can't allocate memory: you tried to allocate"));
        assert!(!is_out_of_memory("shape mismatch"));
    }

    #[test]
    fn cpu_agrees_with_itself_and_bf16_differs_but_stays_close() {
        let spec = AgreementSpec {
            arch: Arch::SmallCnn,
            dataset: Dataset::Mnist,
            device: Device::Cpu,
            precision: Precision::Fp32,
            channels_last: false,
            n: 16,
            step: 0.01,
            seed: 3,
        };
        let a = agreement(&spec).unwrap();
        assert_eq!(a.logits_rel_max_diff, 0.0);
        assert_eq!((a.argmax_agreement, a.grad_sign_agreement, a.pgd_step_agreement), (1.0, 1.0, 1.0));
        let b = agreement(&AgreementSpec { precision: Precision::Bf16, channels_last: true, ..spec }).unwrap();
        assert!(b.logits_rel_max_diff > 0.0 && b.logits_rel_max_diff < 0.1, "{b:?}");
        assert!(b.grad_cosine > 0.9, "{b:?}");
    }
}
