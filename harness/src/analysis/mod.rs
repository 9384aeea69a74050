//! The paper's analyses as commands (issue 10): each reads a trained run from the registry,
//! computes the numbers behind one of the paper's figures, records them in the registry as an
//! analysis record (found, not recomputed, when asked again) and `infoat report` draws them.
//!
//! - [`fig1`]: Fig. 1 — the entropy H(p(x)) (paper eq. 17) of examples that survive PGD-10
//!   against those that do not, and the smallest L∞ radius PGD needs per example against
//!   H(p(x)): the paper's claim that high-entropy examples are the vulnerable ones.
//! - [`fig4`]: Fig. 4 — the weight loss landscape along a filter-normalised random direction
//!   (Li et al. 2018, as Wu et al. 2020 use it for adversarial training).
//! - [`fig5`]: Fig. 5 — the input loss surface around single examples.

pub mod fig1;
pub mod fig4;
pub mod fig5;
pub mod stats;

use tch::{Kind, Tensor};

use crate::losses;
use crate::models::Classifier;
use crate::Result;

/// Semantic version of the analysis code (part of every analysis key).
pub const ANALYSIS_SEMVER: &str = "1.0.0";

/// PGD with a radius per example (`eps`: `[B]`), step eps/4 and a uniform start, on the
/// summed cross-entropy; the final iterate. Parameters are frozen for the ascent.
pub fn pgd_per_example(model: &dyn Classifier, x: &Tensor, y: &Tensor, eps: &Tensor, steps: usize) -> Result<Tensor> {
    let _frozen = model.freeze();
    let x = x.f_detach()?;
    let e = eps.f_to_kind(Kind::Float)?.f_view([-1, 1, 1, 1])?;
    let (lo, hi) = (e.f_neg()?, e.shallow_clone());
    let step = e.f_div_scalar(4.0)?;
    let project = |t: &Tensor| -> Result<Tensor> {
        let d = t.f_sub(&x)?.f_maximum(&lo)?.f_minimum(&hi)?;
        Ok(x.f_add(&d)?.f_clamp(0.0, 1.0)?)
    };
    let start = x.f_rand_like()?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?.f_mul(&e)?;
    let mut adv = project(&x.f_add(&start)?)?;
    for _ in 0..steps {
        let a = adv.f_detach()?.f_requires_grad_(true)?;
        let loss = losses::ce(&model.logits(&a, false)?, y)?.f_sum(Kind::Float)?;
        let grad = Tensor::f_run_backward(&[&loss], &[&a], false, false)?.remove(0);
        adv = project(&a.f_detach()?.f_add(&grad.f_sign()?.f_mul(&step)?)?)?;
    }
    Ok(adv)
}

/// `points` evenly spaced values from −1 to 1, rounded to 1e-9 (so 0.1 prints as 0.1).
pub fn grid(points: usize) -> Vec<f64> {
    let points = points.max(2);
    (0..points).map(|i| ((-1.0 + 2.0 * i as f64 / (points - 1) as f64) * 1e9).round() / 1e9).collect()
}

/// Per-example cross-entropy, H(p(x)) and whether the prediction is right, from one forward
/// pass of `x` (no gradients).
pub fn loss_and_entropy(model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    tch::no_grad(|| {
        let logits = model.logits(x, false)?;
        let correct = logits.f_argmax(-1, false)?.f_eq_tensor(y)?;
        Ok((losses::ce(&logits, y)?, losses::entropy(&logits)?, correct))
    })
}

#[cfg(test)]
mod tests;
