//! Evaluation: clean accuracy of a model on a labelled set, in eval mode (BatchNorm running
//! statistics, no dropout) and without gradients.

use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::data::{make_batch, Augment, ImageSet};
use crate::models::Network;
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

/// Clean accuracy of `model` on `set`, in batches of `batch_size`.
pub fn clean_accuracy(model: &Network, set: &ImageSet, batch_size: usize) -> Result<Accuracy> {
    let device = model.device();
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut correct = 0i64;
    tch::no_grad(|| -> Result<()> {
        for idx in indices.chunks(batch_size.max(1)) {
            let batch = make_batch(set, idx, Augment::None, 0, device)?;
            let pred = model.forward_t(&batch.x, false).f_argmax(-1, false)?;
            correct += pred.f_eq_tensor(&batch.y)?.f_sum(Kind::Int64)?.int64_value(&[]);
        }
        Ok(())
    })?;
    let total = set.len();
    let correct = correct as usize;
    Ok(Accuracy { total, correct, accuracy: if total == 0 { 0.0 } else { correct as f64 / total as f64 } })
}
