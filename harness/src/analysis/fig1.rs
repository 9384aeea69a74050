//! Fig. 1: is an example's entropy H(p(x)) (paper eq. 17) related to its vulnerability?
//!
//! (a) Among the clean-correct examples, H(p(x)) of those that survive PGD-10 (at the
//! dataset's eps, the paper's evaluation PGD with step eps/4 and a uniform start) against those
//! that do not: two histograms over [0, ln C], the means and a Mann–Whitney U test.
//! (b) Per clean-correct example, the smallest L∞ radius at which PGD-10 flips its label,
//! found by bisection on [0, `eps_hi`] (`iterations` halvings; an example PGD cannot flip
//! even at `eps_hi` is *censored* and kept at `eps_hi`), against H(p(x)): Spearman's rank
//! correlation. The paper's claim predicts survivors with lower entropy (a) and a negative
//! correlation (b).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::stats::{histogram, mann_whitney, mean, spearman, MannWhitney};
use super::{loss_and_entropy, pgd_per_example};
use crate::attacks::Pgd;
use crate::data::{make_batch, Augment, ImageSet};
use crate::eval::robust_run;
use crate::models::Classifier;
use crate::seed::{derive, seed_torch, Stream};
use crate::Result;

/// What Fig. 1 is computed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig1Params {
    /// Test images analysed (the first N).
    pub n: usize,
    /// PGD radius of part (a).
    pub eps: f64,
    /// PGD steps (both parts).
    pub steps: usize,
    /// Upper end of the bisection of part (b).
    pub eps_hi: f64,
    /// Bisection halvings.
    pub iterations: usize,
    /// Histogram bins.
    pub bins: usize,
    /// Seed of the attacks' random starts.
    pub seed: u64,
}

/// The numbers behind Fig. 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig1Result {
    /// Examples analysed.
    pub n: usize,
    /// Of them, classified correctly clean.
    pub clean_correct: usize,
    /// Of those, still correct under PGD.
    pub robust: usize,
    /// ln C, the largest possible entropy.
    pub entropy_max: f64,
    /// Mean H(p(x)) of the clean-correct examples that survive PGD.
    pub mean_entropy_robust: f64,
    /// Mean H(p(x)) of the clean-correct examples PGD flips.
    pub mean_entropy_broken: f64,
    /// Survivors' entropies against the flipped ones'.
    pub test: MannWhitney,
    /// Histogram counts over `bins` equal bins of [0, ln C]: survivors.
    pub hist_robust: Vec<usize>,
    /// The same for the flipped examples.
    pub hist_broken: Vec<usize>,
    /// H(p(x)) per clean-correct example.
    pub entropy: Vec<f64>,
    /// The smallest flipping radius per clean-correct example (same order).
    pub min_eps: Vec<f64>,
    /// Examples PGD could not flip within `eps_hi`.
    pub censored: usize,
    /// Spearman's rank correlation of `entropy` and `min_eps`.
    pub spearman: f64,
}

/// Runs Fig. 1 on the first `p.n` images of `test`.
pub fn fig1(model: &dyn Classifier, test: &ImageSet, p: &Fig1Params, batch_size: usize) -> Result<Fig1Result> {
    let set = test.take(p.n.min(test.len()));
    let device = model.device();
    let robust = robust_run(model, &set, &Pgd::paper(p.eps, p.steps), batch_size, p.seed)?.flags;
    let indices: Vec<usize> = (0..set.len()).collect();
    let (mut entropy, mut min_eps, mut survived) = (Vec::new(), Vec::new(), Vec::new());
    let (mut clean_correct, mut censored) = (0, 0);
    for (b, idx) in indices.chunks(batch_size.max(1)).enumerate() {
        let batch = make_batch(&set, idx, Augment::None, 0, device)?;
        let (_, h, correct) = loss_and_entropy(model, &batch.x, &batch.y)?;
        let keep: Vec<bool> = Vec::try_from(correct.f_to_device(tch::Device::Cpu)?)?;
        let h: Vec<f64> = Vec::try_from(h.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?;
        // Bisection per example: lo is known not to flip, hi flips (or is the censoring bound).
        let n = idx.len() as i64;
        let mut lo = Tensor::f_zeros([n], (Kind::Float, device))?;
        let mut hi = Tensor::f_full([n], p.eps_hi, (Kind::Float, device))?;
        let mut flipped_at_hi = Tensor::f_zeros([n], (Kind::Bool, device))?;
        for it in 0..=p.iterations {
            // Iteration 0 probes eps_hi itself (censoring); the others the midpoint.
            let probe = if it == 0 { hi.shallow_clone() } else { lo.f_add(&hi)?.f_div_scalar(2.0)? };
            seed_torch(derive(p.seed, Stream::Eval, &[b as u64, it as u64, 1]));
            let adv = pgd_per_example(model, &batch.x, &batch.y, &probe, p.steps)?;
            let flips = tch::no_grad(|| -> Result<Tensor> {
                Ok(model.logits(&adv, false)?.f_argmax(-1, false)?.f_ne_tensor(&batch.y)?)
            })?;
            if it == 0 {
                flipped_at_hi = flips;
            } else {
                hi = probe.f_where_self(&flips, &hi)?;
                lo = probe.f_where_self(&flips.f_logical_not()?, &lo)?;
            }
        }
        let flipped: Vec<bool> = Vec::try_from(flipped_at_hi.f_to_device(tch::Device::Cpu)?)?;
        let found: Vec<f64> = Vec::try_from(hi.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?;
        for (k, &i) in idx.iter().enumerate() {
            if !keep[k] {
                continue;
            }
            clean_correct += 1;
            censored += usize::from(!flipped[k]);
            entropy.push(h[k]);
            survived.push(robust[i]);
            min_eps.push(if flipped[k] { found[k] } else { p.eps_hi });
        }
    }
    let pick = |want: bool| -> Vec<f64> {
        entropy.iter().zip(&survived).filter(|(_, s)| **s == want).map(|(h, _)| *h).collect()
    };
    let (h_robust, h_broken) = (pick(true), pick(false));
    let entropy_max = (model.num_classes() as f64).ln();
    Ok(Fig1Result {
        n: set.len(),
        clean_correct,
        robust: h_robust.len(),
        entropy_max,
        mean_entropy_robust: mean(&h_robust),
        mean_entropy_broken: mean(&h_broken),
        test: mann_whitney(&h_robust, &h_broken),
        hist_robust: histogram(&h_robust, 0.0, entropy_max, p.bins),
        hist_broken: histogram(&h_broken, 0.0, entropy_max, p.bins),
        spearman: spearman(&entropy, &min_eps),
        entropy,
        min_eps,
        censored,
    })
}
