//! Attacks on a trained model and the projected-gradient engine that training methods use
//! for their inner maximisation (SPEC §2 "Inner PGD", SPEC §3).
//!
//! Every attack runs the model in eval mode unless told otherwise, with the parameters frozen
//! (only input gradients are computed), and returns points inside the L∞ ball of radius eps
//! around the input and inside [0, 1].

mod apgd;
mod autoattack;
mod fab;
mod pgd;
mod square;

pub use apgd::{Apgd, ApgdLoss};
pub use autoattack::Cascade;
pub use fab::{project_hyperplane_box, FabT};
pub(crate) use pgd::ce_sum;
pub use pgd::{bit_depth, fgsm, maximize, project, Bpda, Cw, Fgsm, InfoPgd, Pgd, PgdPlus, PgdSpec, Start};
pub use square::{Square, SquareOutcome};

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
}

/// The evaluation attacks a preset or `infoat eval` can name (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AttackId {
    /// FGSM, one step of eps.
    Fgsm,
    /// PGD-20, step eps/4, uniform start.
    Pgd20,
    /// PGD-100, step eps/4, uniform start.
    Pgd100,
    /// PGD+: 5 restarts × 40 steps of 0.01, any-iterate.
    #[value(name = "pgd_plus")]
    PgdPlus,
    /// CW∞-20: PGD-20 on the margin loss, κ = 50.
    Cw20,
    /// CW∞-100.
    Cw100,
    /// BPDA: PGD-20 through 5-bit depth reduction, straight-through gradient.
    Bpda,
    /// InfoPGD-20: PGD-20 on paper eq. 18, λ = 2.5.
    Infopgd20,
    /// APGD-CE: 100 iterations on the cross-entropy (AutoAttack's first component).
    #[value(name = "apgd_ce")]
    ApgdCe,
    /// APGD-T: targeted DLR, 9 targets × 100 iterations.
    #[value(name = "apgd_t")]
    ApgdT,
    /// FAB-T: targeted minimal-distortion attack, 9 targets × 100 iterations.
    #[value(name = "fab_t")]
    FabT,
    /// Square: score-based random search, 5,000 queries, p_init 0.8.
    Square,
    /// AutoAttack standard: apgd_ce → apgd_t → fab_t → square on still-robust points.
    Aa,
}

impl AttackId {
    /// The attack at radius `eps`.
    pub fn build(self, eps: f64) -> Box<dyn Attack> {
        match self {
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
            AttackId::Aa => Box::new(Cascade {
                id: "aa".into(),
                components: [AttackId::ApgdCe, AttackId::ApgdT, AttackId::FabT, AttackId::Square]
                    .iter()
                    .map(|c| c.build(eps))
                    .collect(),
            }),
        }
    }

    /// The id in reports.
    pub fn name(self) -> &'static str {
        match self {
            AttackId::Fgsm => "fgsm",
            AttackId::Pgd20 => "pgd20",
            AttackId::Pgd100 => "pgd100",
            AttackId::PgdPlus => "pgd_plus",
            AttackId::Cw20 => "cw20",
            AttackId::Cw100 => "cw100",
            AttackId::Bpda => "bpda",
            AttackId::Infopgd20 => "infopgd20",
            AttackId::ApgdCe => "apgd_ce",
            AttackId::ApgdT => "apgd_t",
            AttackId::FabT => "fab_t",
            AttackId::Square => "square",
            AttackId::Aa => "aa",
        }
    }
}

#[cfg(test)]
mod tests;
