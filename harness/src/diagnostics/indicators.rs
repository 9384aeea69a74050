//! Pintor et al.'s indicators of attack failure, counted per attack over the examples it left
//! robust (definitions and thresholds in the [module docs](super)).

use std::collections::BTreeMap;

use infoat_registry::{AttackDiagnostics, AttackId, Indicator};
use tch::{Kind, Tensor};

use super::{gradient_loss, LossFamily, Outcome, PROBE_EXAMPLES, UNSTABLE_DRAWS, UNSTABLE_MAX, UNSTABLE_RADIUS};
use crate::attacks::AttackBuild;
use crate::data::{make_batch, Augment, ImageSet};
use crate::eval::robust_flags;
use crate::losses;
use crate::models::Classifier;
use crate::seed::{derive, seed_torch, Stream};
use crate::Result;

/// The radius of the unconstrained rerun: the whole [0, 1] box.
pub const UNCONSTRAINED_EPS: f64 = 1.0;

/// What probing the model at every attacked example found, independent of the attacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The cross-entropy's input gradient is zero or not finite.
    pub ce_unavailable: Vec<bool>,
    /// The DLR loss's input gradient is zero or not finite.
    pub margin_unavailable: Vec<bool>,
    /// The mean absolute change of the DLR loss under noise (clipped at 1).
    pub variation: Vec<f64>,
}

impl Probe {
    /// Unstable: variation above [`UNSTABLE_MAX`].
    pub fn unstable(&self, i: usize) -> bool {
        self.variation[i] > UNSTABLE_MAX
    }

    /// Gradients unavailable to an attack of `family` at example `i`.
    pub fn unavailable(&self, family: LossFamily, i: usize) -> bool {
        match family {
            LossFamily::CrossEntropy => self.ce_unavailable[i],
            LossFamily::Margin => self.margin_unavailable[i],
            LossFamily::Both => self.ce_unavailable[i] && self.margin_unavailable[i],
        }
    }
}

/// Per example of a batch: the input gradient of `loss` is all zero or has a non-finite entry.
fn gradient_unavailable(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    loss: fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Vec<bool>> {
    let _frozen = model.freeze();
    let xa = x.f_detach()?.f_requires_grad_(true)?;
    let logits = model.logits(&xa, false)?;
    let total = loss(&logits, y)?.f_sum(Kind::Float)?;
    let grad = crate::attacks::input_gradient(&total, &xa)?.f_flatten(1, -1)?;
    let zero = grad.f_abs()?.f_amax([1i64], false)?.f_eq(0.0)?;
    let not_finite = grad.f_isfinite()?.f_logical_not()?.f_any_dim(1, false)?;
    Ok(Vec::<bool>::try_from(zero.f_logical_or(&not_finite)?.f_to_device(tch::Device::Cpu)?)?)
}

/// Probes `model` at every example of `set`: gradient availability of both loss families and
/// the DLR loss's variation under uniform noise of width `eps` × [`UNSTABLE_RADIUS`].
pub fn probe(model: &dyn Classifier, set: &ImageSet, eps: f64, batch_size: usize, seed: u64) -> Result<Probe> {
    let mut out = Probe { ce_unavailable: Vec::new(), margin_unavailable: Vec::new(), variation: Vec::new() };
    let indices: Vec<usize> = (0..set.len()).collect();
    for (b, idx) in indices.chunks(batch_size.max(1)).enumerate() {
        let batch = make_batch(set, idx, Augment::None, 0, model.device())?;
        out.ce_unavailable.extend(gradient_unavailable(model, &batch.x, &batch.y, losses::ce)?);
        out.margin_unavailable.extend(gradient_unavailable(model, &batch.x, &batch.y, losses::dlr)?);
        seed_torch(derive(seed, Stream::Diagnostics, &[0, b as u64]));
        let variation = tch::no_grad(|| -> Result<Tensor> {
            let l0 = losses::dlr(&model.logits(&batch.x, false)?, &batch.y)?.f_to_kind(Kind::Double)?;
            let mut sum = l0.f_zeros_like()?;
            for _ in 0..UNSTABLE_DRAWS {
                let noise = batch.x.f_rand_like()?.f_sub_scalar(0.5)?.f_mul_scalar(eps * UNSTABLE_RADIUS)?;
                let xn = batch.x.f_add(&noise)?.f_clamp(0.0, 1.0)?;
                let l = losses::dlr(&model.logits(&xn, false)?, &batch.y)?.f_to_kind(Kind::Double)?;
                sum = sum.f_add(&l0.f_sub(&l)?.f_abs()?)?;
            }
            // A NaN loss (a broken model) is as unstable as it gets.
            Ok(sum.f_div_scalar(UNSTABLE_DRAWS as f64)?.f_nan_to_num(1.0, None, None)?.f_clamp_max(1.0)?)
        })?;
        out.variation.extend(Vec::<f64>::try_from(variation.f_to_device(tch::Device::Cpu)?)?);
    }
    Ok(out)
}

/// The indicator counts of one attack (without its self-tests): over the examples of `set` it
/// left robust, from its trace, the probe, and an unconstrained rerun on the first
/// [`PROBE_EXAMPLES`] of them.
#[allow(clippy::too_many_arguments)]
pub fn count(
    model: &dyn Classifier,
    set: &ImageSet,
    outcome: &Outcome<'_>,
    probe: &Probe,
    batch_size: usize,
    rays_budget: usize,
    seed: u64,
) -> Result<AttackDiagnostics> {
    let robust: Vec<usize> = outcome.robust.iter().enumerate().filter(|(_, &r)| r).map(|(i, _)| i).collect();
    let tally = |f: &dyn Fn(usize) -> bool| robust.iter().filter(|&&i| f(i)).count();
    let mut indicators = BTreeMap::new();
    if let Some(trace) = outcome.trace {
        indicators.insert(Indicator::SilentSuccess, tally(&|i| trace.fooled[i]));
        if let Some(incomplete) = &trace.incomplete {
            indicators.insert(Indicator::IncompleteOptimization, tally(&|i| incomplete[i]));
        }
    }
    if let Some(family) = gradient_loss(outcome.id) {
        indicators.insert(Indicator::UnavailableGradients, tally(&|i| probe.unavailable(family, i)));
    }
    let measures_distance = matches!(outcome.id, AttackId::Rays | AttackId::External);
    let mut probed = 0;
    if !measures_distance {
        indicators.insert(Indicator::UnstablePredictions, tally(&|i| probe.unstable(i)));
        let first: Vec<usize> = robust.iter().copied().take(PROBE_EXAMPLES).collect();
        probed = first.len();
        let failed = if first.is_empty() {
            0
        } else {
            let attack = outcome.id.build_with(UNCONSTRAINED_EPS, rays_budget);
            let flags = robust_flags(model, &set.select(&first), attack.as_ref(), batch_size, seed)?;
            flags.iter().filter(|&&r| r).count()
        };
        indicators.insert(Indicator::UnconstrainedFailure, failed);
    }
    Ok(AttackDiagnostics { indicators, unconstrained_probed: probed, ..AttackDiagnostics::default() })
}
