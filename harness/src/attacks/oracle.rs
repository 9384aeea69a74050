//! What black-box attacks may see of a model (issue 7): a score oracle (logits, no gradient)
//! for SPSA and a label oracle (the top-1 class only) for RayS. The attacks receive these
//! traits, not a [`Classifier`], so using anything else is a type error rather than a
//! convention; every image passed through an oracle is counted.

use std::cell::Cell;

use tch::{Kind, Tensor};

use crate::models::Classifier;
use crate::Result;

/// Logits of a batch, without gradients: what a score-based attack sees.
pub trait ScoreOracle {
    /// Logits `[N, K]` of `x` (`[N, C, H, W]` in [0, 1]), detached.
    fn scores(&self, x: &Tensor) -> Result<Tensor>;
    /// Images evaluated so far.
    fn images(&self) -> u64;
}

/// The predicted class of a batch: what a hard-label attack sees.
pub trait LabelOracle {
    /// Predicted classes `[N]` (Int64) of `x`.
    fn labels(&self, x: &Tensor) -> Result<Tensor>;
    /// Images evaluated so far.
    fn images(&self) -> u64;
}

/// Both oracles over a classifier in eval mode, counting the images it evaluates.
pub struct Oracle<'a> {
    model: &'a dyn Classifier,
    images: Cell<u64>,
}

impl<'a> Oracle<'a> {
    /// Wraps `model` (used in eval mode, under `no_grad`).
    pub fn new(model: &'a dyn Classifier) -> Oracle<'a> {
        Oracle { model, images: Cell::new(0) }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.images.set(self.images.get() + x.size().first().copied().unwrap_or(0) as u64);
        tch::no_grad(|| -> Result<Tensor> { Ok(self.model.logits(&x.f_detach()?, false)?.f_detach()?) })
    }
}

impl ScoreOracle for Oracle<'_> {
    fn scores(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }

    fn images(&self) -> u64 {
        self.images.get()
    }
}

impl LabelOracle for Oracle<'_> {
    fn labels(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward(x)?.f_argmax(-1, false)?.f_to_kind(Kind::Int64)?)
    }

    fn images(&self) -> u64 {
        self.images.get()
    }
}
