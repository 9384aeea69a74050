//! Attacks on a trained model and the projected-gradient engine that training methods use
//! for their inner maximisation (SPEC §2 "Inner PGD", SPEC §3).
//!
//! Every attack runs the model in eval mode unless told otherwise, with the parameters frozen
//! (only input gradients are computed), and returns points inside the L∞ ball of radius eps
//! around the input and inside [0, 1].

mod apgd;
mod autoattack;
mod fab;
mod graphed_pgd;
pub mod oracle;
mod pgd;
mod rays;
mod spsa;
mod square;
pub mod trace;

pub use apgd::{Apgd, ApgdLoss};
pub use autoattack::Cascade;
pub use fab::{project_hyperplane_box, FabT};
pub use graphed_pgd::{GraphCheck, GraphedPgd};
pub(crate) use pgd::ce_sum;
pub use pgd::{bit_depth, fgsm, maximize, project, Bpda, Cw, Fgsm, InfoPgd, Pgd, PgdPlus, PgdSpec, Start};
pub use rays::{rays, Rays, RaysOutcome};
pub use spsa::{estimate_gradient, margin, spsa, Spsa};
pub use square::{Square, SquareOutcome};
pub use trace::{PathTracer, Trace};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::models::Classifier;
use crate::Result;

/// BatchNorm behaviour while crafting adversarial examples (SPEC §1, `attack_bn_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BnMode {
    /// Running statistics, nothing updated (TRADES, MART).
    #[default]
    Eval,
    /// Batch statistics, running statistics updated (Madry-style scripts).
    Train,
}

impl BnMode {
    /// The `train` flag of the forward pass.
    pub fn train_flag(self) -> bool {
        self == BnMode::Train
    }
}

/// An evaluation attack: adversarial versions of a batch.
pub trait Attack {
    /// The attack's id in reports (`fgsm`, `pgd20`, …).
    fn id(&self) -> String;

    /// Adversarial inputs for `(x, y)`, within the threat model, and per-example flags that
    /// are true where the attack succeeded at *some* iterate it checked (for attacks that
    /// count any iterate) — attacks that judge only their final point return `None`.
    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)>;

    /// [`Attack::perturb`] with the run's per-example [`Trace`] (issue 22), for attacks that
    /// keep one; the default keeps none. The points and flags are the same as `perturb`'s.
    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let (adv, flags) = self.perturb(model, x, y)?;
        Ok(Traced { adv, flags, trace: None, stages: Vec::new() })
    }

    /// For attacks that measure the distance to the decision boundary (RayS): the adversarial
    /// batch, the success flags and the per-example L∞ distance `[N]` (Float64). `None` (the
    /// default) for attacks that only try to cross it within eps.
    fn distances(&self, _model: &dyn Classifier, _x: &Tensor, _y: &Tensor) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        Ok(None)
    }

    /// Logits of the classifier whose robustness this attack reports, at `x` (eval mode): the
    /// model itself, or for an attack on a defended model its defence — BPDA's g = f∘T (SPEC
    /// §3). The evaluation judges the clean and the adversarial point with it.
    fn verdict_logits(&self, model: &dyn Classifier, x: &Tensor) -> Result<Tensor> {
        model.logits(x, false)
    }
}

/// What [`Attack::perturb_traced`] returns.
#[derive(Debug)]
pub struct Traced {
    /// The adversarial points.
    pub adv: Tensor,
    /// Success at some iterate, for attacks that count any iterate (see [`Attack::perturb`]).
    pub flags: Option<Tensor>,
    /// The run's trace, for attacks that keep one.
    pub trace: Option<Trace>,
    /// For a cascade, what each component did and cost on this batch, in order (empty for a
    /// single attack).
    pub stages: Vec<infoat_registry::StageCost>,
}

/// The gradient of the scalar `loss` with respect to `x` (a leaf that tracks gradients), or
/// zeros where the graph from `x` to `loss` is interrupted — a model that detaches its input, or
/// whose output does not depend on it. libtorch's engine crashes the process on such a root
/// rather than failing, and an attack then has no gradient to follow (Pintor et al.'s
/// "unavailable gradients", which the diagnostics count).
pub(crate) fn input_gradient(loss: &Tensor, x: &Tensor) -> Result<Tensor> {
    if !loss.requires_grad() {
        return Ok(x.f_detach()?.f_zeros_like()?);
    }
    let grad = Tensor::f_run_backward(&[loss], &[x], false, false)?.remove(0);
    if grad.defined() {
        Ok(grad)
    } else {
        Ok(x.f_detach()?.f_zeros_like()?)
    }
}

/// RayS's default query budget per example (SPEC §3: a config field; the leaderboard used
/// 40,000).
pub const RAYS_DEFAULT_BUDGET: usize = 10_000;

/// The PGD step size where a config or attack names none: eps/4 (SPEC §1, paper §4.1), for the
/// training attack as for PGD-20/100 and CW in evaluation.
pub fn default_step(eps: f64) -> f64 {
    eps / 4.0
}

/// Checks an L∞ radius on images in [0, 1]: finite and in (0, 1] (0 is no threat, and at 1 the
/// ball already holds every image). The error says what was expected; the caller names where
/// the radius came from.
pub fn check_eps(eps: f64) -> std::result::Result<f64, String> {
    if eps.is_finite() && eps > 0.0 && eps <= 1.0 {
        Ok(eps)
    } else {
        Err(format!("expected a radius in (0, 1] (e.g. 0.3 on MNIST, 0.031372549 = 8/255 on CIFAR), got {eps}"))
    }
}

pub use infoat_registry::ids::AttackId;

/// What the harness adds to the shared [`AttackId`]: the attack object and the version of
/// its implementation.
pub trait AttackBuild {
    /// The attack at radius `eps` (RayS with its default budget).
    fn build(self, eps: f64) -> Box<dyn Attack>;
    /// The attack at radius `eps`, RayS with `rays_budget` queries per example.
    fn build_with(self, eps: f64, rays_budget: usize) -> Box<dyn Attack>;
    /// The version of this attack's implementation (see the impl).
    fn version(self) -> u32;
}

impl AttackBuild for AttackId {
    fn build(self, eps: f64) -> Box<dyn Attack> {
        self.build_with(eps, RAYS_DEFAULT_BUDGET)
    }

    fn build_with(self, eps: f64, rays_budget: usize) -> Box<dyn Attack> {
        match self {
            AttackId::Spsa128 => Box::new(Spsa::paper(eps, 128)),
            AttackId::Spsa256 => Box::new(Spsa::paper(eps, 256)),
            AttackId::Spsa512 => Box::new(Spsa::paper(eps, 512)),
            AttackId::Spsa1024 => Box::new(Spsa::paper(eps, 1024)),
            AttackId::Rays => Box::new(Rays::new(eps, rays_budget)),
            AttackId::Fgsm => Box::new(Fgsm { eps }),
            AttackId::Pgd20 => Box::new(Pgd::paper(eps, 20)),
            AttackId::Pgd100 => Box::new(Pgd::paper(eps, 100)),
            AttackId::PgdPlus => Box::new(PgdPlus {
                spec: PgdSpec { eps, steps: 40, step_size: 0.01, start: Start::Uniform },
                restarts: 5,
            }),
            AttackId::Cw20 => Box::new(Cw { spec: Pgd::paper(eps, 20).spec, kappa: 50.0 }),
            AttackId::Cw100 => Box::new(Cw { spec: Pgd::paper(eps, 100).spec, kappa: 50.0 }),
            AttackId::Bpda => Box::new(Bpda { spec: Pgd::paper(eps, 20).spec, bits: 5 }),
            AttackId::Infopgd20 => Box::new(InfoPgd { spec: Pgd::paper(eps, 20).spec, lambda: 2.5 }),
            AttackId::ApgdCe => Box::new(Apgd::ce(eps)),
            AttackId::ApgdT => Box::new(Apgd::targeted(eps)),
            AttackId::FabT => Box::new(FabT::standard(eps)),
            AttackId::Square => Box::new(Square::standard(eps)),
            AttackId::External => Box::new(Imported),
            AttackId::Aa => Box::new(Cascade {
                id: "aa".into(),
                components: [AttackId::ApgdCe, AttackId::ApgdT, AttackId::FabT, AttackId::Square]
                    .into_iter()
                    .map(|c| (c, c.build(eps)))
                    .collect(),
            }),
        }
    }

    /// The version of this attack's implementation. It is raised whenever a change can change
    /// the attack's numbers, and every evaluation's key carries the versions of its attacks, so
    /// an evaluation computed by an older implementation is never returned as the current
    /// one's (`registry ls` marks it outdated; `reproduce` and `eval` recompute it).
    ///
    /// - 2 (issue 19): `rays` bisects along the L2-normalised direction with `RayS.py`'s
    ///   tolerance and follows its block schedule; `square` uses AutoAttack's un-rescaled size
    ///   schedule and 5,000 iterations after the start; `bpda` is judged on g = f∘T;
    ///   `apgd_ce`/`apgd_t` keep `autopgd_base.py`'s step-size bookkeeping; `aa` through its
    ///   components.
    fn version(self) -> u32 {
        match self {
            AttackId::Rays | AttackId::Square | AttackId::Bpda | AttackId::ApgdCe | AttackId::ApgdT | AttackId::Aa => 2,
            _ => 1,
        }
    }
}

/// The stand-in for [`AttackId::External`]: imported adversarial images are verified, never
/// computed, so running it is an error that says where they come from.
struct Imported;

impl Attack for Imported {
    fn id(&self) -> String {
        AttackId::External.name().to_string()
    }

    fn perturb(&self, _model: &dyn Classifier, _x: &Tensor, _y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Err(crate::Error::Invalid(
            "'external' names adversarial images imported with `infoat evidence import`; it is not an attack that \
             runs: choose another attack"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests;
