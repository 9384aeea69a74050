//! Projected (sign-)gradient ascent in the L∞ ball: the inner maximiser of every adversarial
//! training method (SPEC §2) and the PGD / FGSM evaluation attacks (SPEC §3; Madry et al.
//! 2018, arXiv:1706.06083).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Attack, BnMode, PathTracer, Trace, Traced};
use crate::losses;
use crate::models::Classifier;
use crate::Result;

/// Where the ascent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    /// At the input itself.
    #[serde(rename = "none")]
    None,
    /// `x + U(-eps, eps)`, clamped to [0, 1] (SPEC §1).
    #[serde(rename = "uniform")]
    Uniform,
    /// `x + 0.001 N(0, I)` (TRADES and MART's original start; not clamped until the first step).
    #[serde(rename = "gaussian_0.001")]
    Gaussian,
}

/// The ascent's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgdSpec {
    /// L∞ radius.
    pub eps: f64,
    /// Number of steps.
    pub steps: usize,
    /// Step size (each step moves every pixel by ± step_size before projection).
    pub step_size: f64,
    /// Starting point.
    pub start: Start,
}

/// Projects `x_adv` onto the L∞ ball of radius `eps` around `x`, then onto [0, 1].
pub fn project(x_adv: &Tensor, x: &Tensor, eps: f64) -> Result<Tensor> {
    let lo = x.f_sub_scalar(eps)?;
    let hi = x.f_add_scalar(eps)?;
    Ok(x_adv.f_max_other(&lo)?.f_min_other(&hi)?.f_clamp(0.0, 1.0)?)
}

fn start_point(x: &Tensor, spec: &PgdSpec) -> Result<Tensor> {
    Ok(match spec.start {
        Start::None => x.copy(),
        Start::Uniform => {
            let noise = x.f_rand_like()?.f_mul_scalar(2.0 * spec.eps)?.f_sub_scalar(spec.eps)?;
            x.f_add(&noise)?.f_clamp(0.0, 1.0)?
        }
        Start::Gaussian => x.f_add(&x.f_randn_like()?.f_mul_scalar(0.001)?)?,
    })
}

/// Maximises `objective(logits)` (a scalar; sum over the batch so per-example gradients keep
/// their scale) over the L∞ ball around `x` by `spec.steps` signed-gradient steps, projecting
/// after each. The model runs with the parameters frozen, in eval mode unless `bn` says train.
/// Random starts draw from libtorch's generator (seeded by the caller).
pub fn maximize(
    model: &dyn Classifier,
    x: &Tensor,
    spec: &PgdSpec,
    bn: BnMode,
    objective: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    ascend(model, x, spec, bn, None, objective, None)
}

/// The transform the model sees in front of it during the ascent (BPDA's forward pass).
pub type InputTransform<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// An observer of every iterate and its logits (PGD+ counts an example broken at any iterate,
/// and keeps the iterate that broke it).
pub type IterateObserver<'a> = &'a mut dyn FnMut(&Tensor, &Tensor) -> Result<()>;

/// [`maximize`] with an optional input transform (the model sees `transform(x')`) and an
/// optional observer called with the logits at every iterate, the start and the final point
/// included.
pub(crate) fn ascend(
    model: &dyn Classifier,
    x: &Tensor,
    spec: &PgdSpec,
    bn: BnMode,
    transform: Option<InputTransform<'_>>,
    objective: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    mut observe: Option<IterateObserver<'_>>,
) -> Result<Tensor> {
    let _frozen = model.freeze();
    let x = x.f_detach()?;
    let mut x_adv = start_point(&x, spec)?.f_detach()?;
    let seen = |t: &Tensor| -> Result<Tensor> {
        match transform {
            Some(f) => f(t),
            None => Ok(t.shallow_clone()),
        }
    };
    for _ in 0..spec.steps {
        let xa = x_adv.f_detach()?.f_requires_grad_(true)?;
        let logits = model.logits(&seen(&xa)?, bn.train_flag())?;
        if let Some(obs) = observe.as_mut() {
            obs(&xa.f_detach()?, &logits.f_detach()?)?;
        }
        let loss = objective(&logits)?;
        let grad = super::input_gradient(&loss, &xa)?;
        let stepped = xa.f_detach()?.f_add(&grad.f_sign()?.f_mul_scalar(spec.step_size)?)?;
        x_adv = project(&stepped, &x, spec.eps)?;
    }
    if spec.steps == 0 && spec.start != Start::None {
        // TRADES' Gaussian start leaves the box until the first step projects it; with no step
        // the start itself must be projected.
        x_adv = project(&x_adv, &x, spec.eps)?;
    }
    if let Some(obs) = observe.as_mut() {
        let logits = tch::no_grad(|| -> Result<Tensor> { model.logits(&seen(&x_adv)?, bn.train_flag()) })?;
        obs(&x_adv, &logits)?;
    }
    Ok(x_adv)
}

/// The cross-entropy ascent objective: CE summed over the batch (per-example gradients keep
/// their scale).
pub(crate) fn ce_sum(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(losses::ce(logits, y)?.f_sum(Kind::Float)?)
}

/// The ascent of `spec` from `x` on the per-example objective `loss` (summed over the batch, as
/// [`ce_sum`] sums the cross-entropy), in eval mode, through `transform` when given; with the
/// run's [`Trace`] when `traced`. Tracing reads the logits and losses the ascent computes anyway,
/// so the points are the same either way.
fn traced_ascent(
    model: &dyn Classifier,
    x: &Tensor,
    y: &Tensor,
    spec: &PgdSpec,
    transform: Option<InputTransform<'_>>,
    loss: &dyn Fn(&Tensor) -> Result<Tensor>,
    traced: bool,
) -> Result<(Tensor, Option<Trace>)> {
    let mut tracer = traced.then(|| PathTracer::new(spec.steps));
    let adv = ascend(
        model,
        x,
        spec,
        BnMode::Eval,
        transform,
        &mut |logits| {
            let per_example = loss(logits)?;
            if let Some(t) = tracer.as_mut() {
                t.record(logits, &per_example, y)?;
            }
            Ok(per_example.f_sum(Kind::Float)?)
        },
        None,
    )?;
    let trace = match tracer {
        Some(t) => Some(t.finish(x.size().first().copied().unwrap_or(0), x.device())?),
        None => None,
    };
    Ok((adv, trace))
}

/// FGSM (Goodfellow et al. 2015): one step of size eps on the cross-entropy, no random start.
pub fn fgsm(model: &dyn Classifier, x: &Tensor, y: &Tensor, eps: f64) -> Result<Tensor> {
    let spec = PgdSpec { eps, steps: 1, step_size: eps, start: Start::None };
    maximize(model, x, &spec, BnMode::Eval, &mut |logits| ce_sum(logits, y))
}

/// The PGD evaluation attack on the cross-entropy: uniform start, final iterate (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pgd {
    /// The ascent.
    pub spec: PgdSpec,
}

impl Pgd {
    /// PGD-`steps` with step eps/4 and a uniform start, as the paper evaluates.
    pub fn paper(eps: f64, steps: usize) -> Pgd {
        Pgd { spec: PgdSpec { eps, steps, step_size: super::default_step(eps), start: Start::Uniform } }
    }
}

impl Attack for Pgd {
    fn id(&self) -> String {
        format!("pgd{}", self.spec.steps)
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let adv = maximize(model, x, &self.spec, BnMode::Eval, &mut |logits| ce_sum(logits, y))?;
        Ok((adv, None))
    }

    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let (adv, trace) = traced_ascent(model, x, y, &self.spec, None, &|logits| losses::ce(logits, y), true)?;
        Ok(Traced { adv, flags: None, trace, stages: Vec::new() })
    }
}

/// FGSM as an evaluation attack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fgsm {
    /// L∞ radius.
    pub eps: f64,
}

impl Attack for Fgsm {
    fn id(&self) -> String {
        "fgsm".into()
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((fgsm(model, x, y, self.eps)?, None))
    }

    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let spec = PgdSpec { eps: self.eps, steps: 1, step_size: self.eps, start: Start::None };
        let (adv, trace) = traced_ascent(model, x, y, &spec, None, &|logits| losses::ce(logits, y), true)?;
        Ok(Traced { adv, flags: None, trace, stages: Vec::new() })
    }
}

/// CW∞-k (SPEC §3): PGD on the margin loss −max(z_y − max_{j≠y} z_j + κ, 0), κ = 50, uniform
/// start, step eps/4, final iterate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cw {
    /// The ascent.
    pub spec: PgdSpec,
    /// The margin κ.
    pub kappa: f64,
}

impl Attack for Cw {
    fn id(&self) -> String {
        format!("cw{}", self.spec.steps)
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.perturb_traced(model, x, y)?.adv, None))
    }

    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let kappa = self.kappa;
        let (adv, trace) =
            traced_ascent(model, x, y, &self.spec, None, &|logits| losses::cw_margin(logits, y, kappa), true)?;
        Ok(Traced { adv, flags: None, trace, stages: Vec::new() })
    }
}

/// PGD+ (SPEC §3, after RST's evaluation): `restarts` × `steps` steps of `step_size` on the
/// cross-entropy from uniform starts; an example is robust only if it is classified correctly
/// at every iterate of every restart. The returned point of a broken example is the first
/// iterate that broke it (its witness, [`crate::evidence`]); of the others, the last restart's
/// final point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgdPlus {
    /// One restart's ascent.
    pub spec: PgdSpec,
    /// Number of restarts.
    pub restarts: usize,
}

impl Attack for PgdPlus {
    fn id(&self) -> String {
        "pgd_plus".into()
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let t = self.perturb_traced(model, x, y)?;
        Ok((t.adv, t.flags))
    }

    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let mut trace: Option<Trace> = None;
        let mut broken = y.f_zeros_like()?.f_to_kind(Kind::Bool)?;
        let mut found = x.f_detach()?;
        let mut last = x.shallow_clone();
        let per_example = |mask: &Tensor| -> Result<Tensor> {
            let mut shape = vec![-1i64];
            shape.extend(std::iter::repeat_n(1, x.dim().saturating_sub(1)));
            Ok(mask.f_view(shape.as_slice())?)
        };
        for _ in 0..self.restarts {
            let mut observe = |iterate: &Tensor, logits: &Tensor| -> Result<()> {
                let wrong = logits.f_argmax(-1, false)?.f_ne_tensor(y)?;
                let first = wrong.f_logical_and(&broken.f_logical_not()?)?;
                found = iterate.f_where_self(&per_example(&first)?, &found)?;
                broken = broken.f_logical_or(&wrong)?;
                Ok(())
            };
            let mut tracer = PathTracer::new(self.spec.steps);
            last = ascend(
                model,
                x,
                &self.spec,
                BnMode::Eval,
                None,
                &mut |logits| {
                    let per_example = losses::ce(logits, y)?;
                    tracer.record(logits, &per_example, y)?;
                    Ok(per_example.f_sum(Kind::Float)?)
                },
                Some(&mut observe),
            )?;
            let run = tracer.finish(y.size()[0], y.device())?;
            trace = Some(match trace {
                Some(t) => t.or(run)?,
                None => run,
            });
        }
        let out = found.f_where_self(&per_example(&broken)?, &last)?;
        Ok(Traced { adv: out, flags: Some(broken), trace, stages: Vec::new() })
    }
}

/// Reduces every value to `bits` bits: round(x · (2^bits − 1)) / (2^bits − 1).
pub fn bit_depth(x: &Tensor, bits: u32) -> Result<Tensor> {
    let levels = f64::from((1u32 << bits) - 1);
    Ok(x.f_mul_scalar(levels)?.f_round()?.f_div_scalar(levels)?)
}

/// BPDA (Athalye et al. 2018; SPEC §3 DECISION): PGD-k on the cross-entropy through a
/// non-differentiable input transform T — bit-depth reduction to `bits` bits — applied in the
/// forward pass and replaced by the identity in the backward pass (straight-through). The
/// defended classifier is g = f∘T, so the verdict ([`Attack::verdict_logits`]) judges the clean
/// and the adversarial point on g alone: the robust accuracy is g's. (Before issue 19 an example
/// counted as robust only when f(x), f(x_adv) and f(T(x_adv)) were all correct — the accuracy
/// of neither classifier.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bpda {
    /// The ascent.
    pub spec: PgdSpec,
    /// Bits kept by the transform.
    pub bits: u32,
}

impl Attack for Bpda {
    fn id(&self) -> String {
        "bpda".into()
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let bits = self.bits;
        let straight_through = move |t: &Tensor| -> Result<Tensor> {
            // t + (T(t) − t) with the difference detached: forward T(t), gradient identity.
            Ok(t.f_add(&bit_depth(t, bits)?.f_sub(t)?.f_detach()?)?)
        };
        let (adv, _) =
            traced_ascent(model, x, y, &self.spec, Some(&straight_through), &|logits| losses::ce(logits, y), false)?;
        Ok((adv, None))
    }

    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let bits = self.bits;
        let straight_through =
            move |t: &Tensor| -> Result<Tensor> { Ok(t.f_add(&bit_depth(t, bits)?.f_sub(t)?.f_detach()?)?) };
        let (adv, trace) =
            traced_ascent(model, x, y, &self.spec, Some(&straight_through), &|logits| losses::ce(logits, y), true)?;
        Ok(Traced { adv, flags: None, trace, stages: Vec::new() })
    }

    fn verdict_logits(&self, model: &dyn Classifier, x: &Tensor) -> Result<Tensor> {
        model.logits(&bit_depth(x, self.bits)?, false)
    }
}

/// InfoPGD-k (paper §IV, eq. 18 as an attack): PGD-k maximising CE(f(x'), y) + λ H(p(x))
/// ‖p(x') − p(x)‖², with p(x) and H(p(x)) from the clean input (constants), uniform start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InfoPgd {
    /// The ascent.
    pub spec: PgdSpec,
    /// λ (2.5).
    pub lambda: f64,
}

impl Attack for InfoPgd {
    fn id(&self) -> String {
        format!("infopgd{}", self.spec.steps)
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.perturb_traced(model, x, y)?.adv, None))
    }

    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let nat = tch::no_grad(|| model.logits(x, false))?;
        let weight = losses::entropy(&nat)?.f_mul_scalar(self.lambda)?;
        let loss = |logits: &Tensor| -> Result<Tensor> {
            let ib = weight.f_mul(&losses::sq_dist(&nat, logits)?)?;
            Ok(losses::ce(logits, y)?.f_add(&ib)?)
        };
        let (adv, trace) = traced_ascent(model, x, y, &self.spec, None, &loss, true)?;
        Ok(Traced { adv, flags: None, trace, stages: Vec::new() })
    }
}
