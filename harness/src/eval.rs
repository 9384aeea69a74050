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

/// Per-example robustness of `model` on `set` under `attack`: an example is robust only when
/// it is classified correctly both clean and at the attack's output (and, for attacks that
/// check every iterate, at every iterate). libtorch's generator is re-seeded from
/// `(seed, Eval, batch)` before each batch, so results do not depend on batch order.
pub fn robust_flags(
    model: &dyn Classifier,
    set: &ImageSet,
    attack: &dyn crate::attacks::Attack,
    batch_size: usize,
    seed: u64,
) -> Result<Vec<bool>> {
    let device = model.device();
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut flags = Vec::with_capacity(set.len());
    for (b, idx) in indices.chunks(batch_size.max(1)).enumerate() {
        let batch = make_batch(set, idx, Augment::None, 0, device)?;
        crate::seed::seed_torch(crate::seed::derive(seed, crate::seed::Stream::Eval, &[b as u64]));
        let (adv, broken) = attack.perturb(model, &batch.x, &batch.y)?;
        let ok = tch::no_grad(|| -> Result<tch::Tensor> {
            let clean = model.logits(&batch.x, false)?.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?;
            let robust = model.logits(&adv, false)?.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?;
            let mut ok = clean.f_logical_and(&robust)?;
            if let Some(broken) = broken {
                ok = ok.f_logical_and(&broken.f_logical_not()?)?;
            }
            Ok(ok)
        })?;
        flags.extend(Vec::<bool>::try_from(ok.f_to_device(tch::Device::Cpu)?)?);
    }
    Ok(flags)
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
