//! Fig. 4: the weight loss landscape — adversarial loss along one random direction in weight
//! space, `L(θ + α·d)` for α in [-1, 1] (Wu et al. 2020, Fig. 1, after Li et al. 2018).
//!
//! d is Gaussian, drawn from the analysis seed, and *filter-normalised*: for every weight
//! tensor of a convolution or linear layer, each filter (slice along the output dimension) of
//! d is rescaled to the norm of the same filter of θ; one-dimensional parameters (biases,
//! BatchNorm scales and shifts) get d = 0 and BatchNorm running statistics stay as trained.
//! At every α the adversarial examples are found anew by PGD on the perturbed model (the
//! paper's evaluation PGD at the dataset's eps), and the mean cross-entropy on them (and on
//! the clean images) is recorded. A flatter curve is the property the paper credits.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attacks::{Attack, Pgd};
use crate::data::{make_batch, Augment, ImageSet};
use crate::losses;
use crate::models::{Classifier, Network};
use crate::seed::{derive, seed_torch, Stream};
use crate::Result;

/// What Fig. 4 is computed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig4Params {
    /// Test images (the first N).
    pub n: usize,
    /// PGD radius.
    pub eps: f64,
    /// PGD steps.
    pub steps: usize,
    /// Points on [-1, 1] (odd, so that α = 0 is one of them).
    pub points: usize,
    /// Seed of the direction and of the attacks' starts.
    pub seed: u64,
}

/// The numbers behind one curve of Fig. 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig4Result {
    /// α, the step along the direction.
    pub alphas: Vec<f64>,
    /// Mean adversarial cross-entropy at each α.
    pub adv_loss: Vec<f64>,
    /// Mean clean cross-entropy at each α.
    pub clean_loss: Vec<f64>,
    /// Adversarial loss at α = ±1 minus at α = 0, averaged: one number for "how sharp".
    pub sharpness: f64,
}

/// Draws the filter-normalised direction for `model`'s trainable weights.
fn direction(model: &Network, seed: u64) -> Result<Vec<(Tensor, Tensor)>> {
    seed_torch(derive(seed, Stream::Eval, &[4, 0]));
    let mut out = Vec::new();
    for (_, w) in model.trainable() {
        let d = if w.dim() >= 2 {
            let d = w.f_randn_like()?;
            let flat_w = w.f_detach()?.f_flatten(1, -1)?;
            let flat_d = d.f_flatten(1, -1)?;
            let wn = flat_w.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?;
            let dn = flat_d.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-10)?;
            flat_d.f_mul(&wn.f_div(&dn)?)?.f_view(w.size().as_slice())?
        } else {
            w.f_zeros_like()?
        };
        out.push((w.shallow_clone(), d));
    }
    Ok(out)
}

/// Runs Fig. 4 on the first `p.n` images of `test`; the model's weights are restored after.
pub fn fig4(model: &Network, test: &ImageSet, p: &Fig4Params, batch_size: usize) -> Result<Fig4Result> {
    let set = test.take(p.n.min(test.len()));
    let device = model.device();
    let dir = direction(model, p.seed)?;
    let original: Vec<Tensor> = dir.iter().map(|(w, _)| w.detach().copy()).collect();
    let points = p.points.max(2);
    let alphas = super::grid(points);
    let attack = Pgd::paper(p.eps, p.steps);
    let indices: Vec<usize> = (0..set.len()).collect();
    let (mut adv_loss, mut clean_loss) = (Vec::new(), Vec::new());
    let mut run = || -> Result<()> {
        for (a, &alpha) in alphas.iter().enumerate() {
            tch::no_grad(|| -> Result<()> {
                for ((w, d), w0) in dir.iter().zip(&original) {
                    let mut w = w.shallow_clone();
                    w.f_copy_(&w0.f_add(&d.f_mul_scalar(alpha)?)?)?;
                }
                Ok(())
            })?;
            let (mut adv_sum, mut clean_sum) = (0.0, 0.0);
            for (b, idx) in indices.chunks(batch_size.max(1)).enumerate() {
                let batch = make_batch(&set, idx, Augment::None, 0, device)?;
                seed_torch(derive(p.seed, Stream::Eval, &[4, 1, a as u64, b as u64]));
                let (adv, _) = attack.perturb(model, &batch.x, &batch.y)?;
                tch::no_grad(|| -> Result<()> {
                    let ce = |x: &Tensor| -> Result<f64> {
                        Ok(losses::ce(&model.logits(x, false)?, &batch.y)?.f_sum(Kind::Double)?.f_double_value(&[])?)
                    };
                    adv_sum += ce(&adv)?;
                    clean_sum += ce(&batch.x)?;
                    Ok(())
                })?;
            }
            adv_loss.push(adv_sum / set.len() as f64);
            clean_loss.push(clean_sum / set.len() as f64);
        }
        Ok(())
    };
    let outcome = run();
    // Put the trained weights back whatever happened.
    tch::no_grad(|| -> Result<()> {
        for ((w, _), w0) in dir.iter().zip(&original) {
            w.shallow_clone().f_copy_(w0)?;
        }
        Ok(())
    })?;
    outcome?;
    let mid = adv_loss[points / 2];
    let sharpness = (adv_loss[0] + adv_loss[points - 1]) / 2.0 - mid;
    Ok(Fig4Result { alphas, adv_loss, clean_loss, sharpness })
}
