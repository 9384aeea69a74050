//! Projected (sign-)gradient ascent in the L∞ ball: the inner maximiser of every adversarial
//! training method (SPEC §2) and the PGD / FGSM evaluation attacks (SPEC §3; Madry et al.
//! 2018, arXiv:1706.06083).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{Attack, BnMode};
use crate::methods::losses;
use crate::models::Network;
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
    model: &Network,
    x: &Tensor,
    spec: &PgdSpec,
    bn: BnMode,
    objective: &mut dyn FnMut(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let _frozen = model.frozen();
    let x = x.f_detach()?;
    let mut x_adv = start_point(&x, spec)?.f_detach()?;
    for _ in 0..spec.steps {
        let xa = x_adv.f_detach()?.f_requires_grad_(true)?;
        let logits = model.forward_t(&xa, bn.train_flag());
        let loss = objective(&logits, &xa)?;
        let grad = Tensor::f_run_backward(&[&loss], &[&xa], false, false)?.remove(0);
        let stepped = xa.f_detach()?.f_add(&grad.f_sign()?.f_mul_scalar(spec.step_size)?)?;
        x_adv = project(&stepped, &x, spec.eps)?;
    }
    if spec.steps == 0 && spec.start != Start::None {
        x_adv = project(&x_adv, &x, spec.eps)?;
    }
    Ok(x_adv)
}

/// FGSM (Goodfellow et al. 2015): one step of size eps on the cross-entropy, no random start.
pub fn fgsm(model: &Network, x: &Tensor, y: &Tensor, eps: f64) -> Result<Tensor> {
    let spec = PgdSpec { eps, steps: 1, step_size: eps, start: Start::None };
    maximize(model, x, &spec, BnMode::Eval, &mut |logits, _| Ok(losses::ce(logits, y)?.f_sum(Kind::Float)?))
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
        Pgd { spec: PgdSpec { eps, steps, step_size: eps / 4.0, start: Start::Uniform } }
    }
}

impl Attack for Pgd {
    fn id(&self) -> String {
        format!("pgd{}", self.spec.steps)
    }

    fn perturb(&self, model: &Network, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let adv = maximize(model, x, &self.spec, BnMode::Eval, &mut |logits, _| {
            Ok(losses::ce(logits, y)?.f_sum(Kind::Float)?)
        })?;
        Ok((adv, None))
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

    fn perturb(&self, model: &Network, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((fgsm(model, x, y, self.eps)?, None))
    }
}
