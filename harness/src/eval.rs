//! Evaluation: clean accuracy of a model on a labelled set, in eval mode (BatchNorm running
//! statistics, no dropout) and without gradients.

use serde::{Deserialize, Serialize};

use crate::data::{make_batch, Augment, ImageSet};
use crate::models::Classifier;
use crate::Result;

/// Clean accuracy on a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Images evaluated.
    pub total: usize,
    /// Images classified correctly.
    pub correct: usize,
    /// `correct / total`.
    pub accuracy: f64,
}

/// Per-example clean correctness of `model` on `set`, in batches of `batch_size`.
pub fn clean_flags(model: &dyn Classifier, set: &ImageSet, batch_size: usize) -> Result<Vec<bool>> {
    let device = model.device();
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut flags = Vec::with_capacity(set.len());
    tch::no_grad(|| -> Result<()> {
        for idx in indices.chunks(batch_size.max(1)) {
            let batch = make_batch(set, idx, Augment::None, 0, device)?;
            let ok = model.logits(&batch.x, false)?.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?;
            flags.extend(Vec::<bool>::try_from(ok.f_to_device(tch::Device::Cpu)?)?);
        }
        Ok(())
    })?;
    Ok(flags)
}

/// Clean accuracy of `model` on `set`, in batches of `batch_size`.
pub fn clean_accuracy(model: &dyn Classifier, set: &ImageSet, batch_size: usize) -> Result<Accuracy> {
    Ok(accuracy_of(&clean_flags(model, set, batch_size)?))
}

/// What one attack did to a set: per-example robustness, its cost, and (for RayS) the
/// per-example distance to the decision boundary.
#[derive(Debug)]
pub struct AttackRun {
    /// Robust (correct clean and under the attack) per example.
    pub flags: Vec<bool>,
    /// Model forward passes per attacked example (images the attack sent through the model,
    /// divided by the number of examples), the attack's cost (issue 7).
    pub forward_passes: f64,
    /// L∞ distance to the decision boundary per example, for attacks that measure it.
    pub distances: Option<Vec<f64>>,
    /// The attack's returned point per example, Float32 `[N, C, H, W]` on the CPU, in the
    /// set's order, when asked for ([`robust_run_with_points`]; the witnesses are taken from it,
    /// [`crate::evidence::collect`]).
    pub adversarial: Option<tch::Tensor>,
    /// Model backward passes per attacked example: the images sent through the model with an
    /// input that tracks gradients (every attack here takes one input gradient of each such
    /// forward pass).
    pub backward_passes: f64,
    /// For a cascade, each component's examples, breaks, seconds and passes summed over the
    /// batches ([`crate::attacks::Traced::stages`]); `None` for a single attack.
    pub stages: Option<Vec<infoat_registry::StageCost>>,
    /// The attack's per-example trace, in the set's order, for attacks that keep one
    /// ([`crate::attacks::Attack::perturb_traced`]).
    pub trace: Option<RunTrace>,
}

/// An attack's [`Trace`](crate::attacks::Trace) over a whole set, on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTrace {
    /// Some point the attack evaluated was misclassified.
    pub fooled: Vec<bool>,
    /// The loss was still rising at the end of the run; `None` for attacks whose path is too
    /// short to judge.
    pub incomplete: Option<Vec<bool>>,
}

/// A classifier that counts the images sent through it.
pub(crate) struct Counting<'a> {
    inner: &'a dyn Classifier,
    images: std::cell::Cell<u64>,
    with_grad: std::cell::Cell<u64>,
}

impl<'a> Counting<'a> {
    /// Counts the passes through `inner`.
    pub(crate) fn new(inner: &'a dyn Classifier) -> Counting<'a> {
        Counting { inner, images: std::cell::Cell::new(0), with_grad: std::cell::Cell::new(0) }
    }

    /// (forward, backward) images so far.
    pub(crate) fn passes(&self) -> (u64, u64) {
        (self.images.get(), self.with_grad.get())
    }
}

impl Classifier for Counting<'_> {
    fn logits(&self, x: &tch::Tensor, train: bool) -> Result<tch::Tensor> {
        let n = x.size().first().copied().unwrap_or(0) as u64;
        self.images.set(self.images.get() + n);
        if x.requires_grad() {
            self.with_grad.set(self.with_grad.get() + n);
        }
        self.inner.logits(x, train)
    }
    fn device(&self) -> tch::Device {
        self.inner.device()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn freeze(&self) -> crate::models::Frozen {
        self.inner.freeze()
    }
}

/// Per-example robustness of `model` on `set` under `attack`: an example is robust only when
/// it is classified correctly both clean and at the attack's output (and, for attacks that
/// check every iterate, at every iterate), by the classifier the attack reports on
/// ([`Attack::verdict_logits`](crate::attacks::Attack::verdict_logits): the model, or BPDA's
/// f∘T). libtorch's generator is re-seeded from
/// `(seed, Eval, batch)` before each batch, so results do not depend on batch order.
pub fn robust_flags(
    model: &dyn Classifier,
    set: &ImageSet,
    attack: &dyn crate::attacks::Attack,
    batch_size: usize,
    seed: u64,
) -> Result<Vec<bool>> {
    Ok(robust_run(model, set, attack, batch_size, seed)?.flags)
}

/// [`robust_flags`] with the attack's cost and, for RayS, its boundary distances.
pub fn robust_run(
    model: &dyn Classifier,
    set: &ImageSet,
    attack: &dyn crate::attacks::Attack,
    batch_size: usize,
    seed: u64,
) -> Result<AttackRun> {
    attack_run(model, set, attack, batch_size, seed, false)
}

/// [`robust_run`] that also keeps the attack's returned points (copied to the CPU batch by
/// batch): what an evaluation stores its witnesses from.
pub fn robust_run_with_points(
    model: &dyn Classifier,
    set: &ImageSet,
    attack: &dyn crate::attacks::Attack,
    batch_size: usize,
    seed: u64,
) -> Result<AttackRun> {
    attack_run(model, set, attack, batch_size, seed, true)
}

fn attack_run(
    model: &dyn Classifier,
    set: &ImageSet,
    attack: &dyn crate::attacks::Attack,
    batch_size: usize,
    seed: u64,
    keep_points: bool,
) -> Result<AttackRun> {
    let device = model.device();
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut flags = Vec::with_capacity(set.len());
    let mut distances: Option<Vec<f64>> = None;
    let mut points: Vec<tch::Tensor> = Vec::new();
    let counting = Counting::new(model);
    let mut fooled: Vec<bool> = Vec::with_capacity(set.len());
    let mut incomplete: Option<Vec<bool>> = Some(Vec::with_capacity(set.len()));
    let mut traced = true;
    let mut stages: Vec<infoat_registry::StageCost> = Vec::new();
    for (b, idx) in indices.chunks(batch_size.max(1)).enumerate() {
        let batch = make_batch(set, idx, Augment::None, 0, device)?;
        crate::seed::seed_torch(crate::seed::derive(seed, crate::seed::Stream::Eval, &[b as u64]));
        let (adv, broken) = match attack.distances(&counting, &batch.x, &batch.y)? {
            Some((adv, broken, dist)) => {
                distances
                    .get_or_insert_with(Vec::new)
                    .extend(Vec::<f64>::try_from(dist.f_to_device(tch::Device::Cpu)?)?);
                (adv, Some(broken))
            }
            None => {
                let t = attack.perturb_traced(&counting, &batch.x, &batch.y)?;
                add_stages(&mut stages, &t.stages);
                match t.trace {
                    Some(trace) if traced => {
                        fooled.extend(Vec::<bool>::try_from(trace.fooled.f_to_device(tch::Device::Cpu)?)?);
                        match (trace.incomplete, incomplete.as_mut()) {
                            (Some(i), Some(all)) => {
                                all.extend(Vec::<bool>::try_from(i.f_to_device(tch::Device::Cpu)?)?)
                            }
                            _ => incomplete = None,
                        }
                    }
                    _ => traced = false,
                }
                (t.adv, t.flags)
            }
        };
        let ok = tch::no_grad(|| -> Result<tch::Tensor> {
            let judge = |x: &tch::Tensor| -> Result<tch::Tensor> {
                Ok(attack.verdict_logits(model, x)?.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?)
            };
            let (clean, robust) = (judge(&batch.x)?, judge(&adv)?);
            let mut ok = clean.f_logical_and(&robust)?;
            if let Some(broken) = broken {
                ok = ok.f_logical_and(&broken.f_logical_not()?)?;
            }
            Ok(ok)
        })?;
        flags.extend(Vec::<bool>::try_from(ok.f_to_device(tch::Device::Cpu)?)?);
        if keep_points {
            points.push(adv.f_detach()?.f_to_device(tch::Device::Cpu)?.f_to_kind(tch::Kind::Float)?);
        }
    }
    let per_example = |n: u64| if set.is_empty() { 0.0 } else { n as f64 / set.len() as f64 };
    let (forward, backward) = counting.passes();
    let (forward_passes, backward_passes) = (per_example(forward), per_example(backward));
    let trace = (traced && distances.is_none() && fooled.len() == set.len()).then_some(RunTrace { fooled, incomplete });
    let shape = set.shape;
    let adversarial = match (keep_points, points.is_empty()) {
        (false, _) => None,
        (true, true) => Some(tch::Tensor::f_zeros(
            [0, shape.channels as i64, shape.height as i64, shape.width as i64],
            (tch::Kind::Float, tch::Device::Cpu),
        )?),
        (true, false) => Some(tch::Tensor::f_cat(&points, 0)?),
    };
    let stages = (!stages.is_empty()).then_some(stages);
    Ok(AttackRun { flags, forward_passes, distances, adversarial, backward_passes, stages, trace })
}

/// Adds one batch's cascade stages to the totals, component by component (a later batch may
/// stop earlier, when every point broke).
fn add_stages(total: &mut Vec<infoat_registry::StageCost>, batch: &[infoat_registry::StageCost]) {
    for s in batch {
        match total.iter_mut().find(|t| t.attack == s.attack) {
            Some(t) => {
                t.attacked += s.attacked;
                t.broken += s.broken;
                t.seconds += s.seconds;
                t.forward_images += s.forward_images;
                t.backward_images += s.backward_images;
            }
            None => total.push(s.clone()),
        }
    }
}

/// The accuracy that per-example flags give.
pub fn accuracy_of(flags: &[bool]) -> Accuracy {
    let total = flags.len();
    let correct = flags.iter().filter(|&&f| f).count();
    Accuracy { total, correct, accuracy: if total == 0 { 0.0 } else { correct as f64 / total as f64 } }
}

/// Robust accuracy of `model` on `set` under `attack` (see [`robust_flags`]).
pub fn robust_accuracy(
    model: &dyn Classifier,
    set: &ImageSet,
    attack: &dyn crate::attacks::Attack,
    batch_size: usize,
    seed: u64,
) -> Result<Accuracy> {
    Ok(accuracy_of(&robust_flags(model, set, attack, batch_size, seed)?))
}
