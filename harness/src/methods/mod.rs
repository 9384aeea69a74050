//! Training methods (SPEC §2): each owns its outer loss and, where it has one, its inner
//! maximiser. [`MethodConfig`] is the serde form in run configs (`[method] kind = "..."`) and
//! builds the runtime [`Method`].
//!
//! | kind | inner objective | outer loss |
//! |---|---|---|
//! | `natural` | – | CE(f(x), y) |
//! | `at` | CE | CE(f(x_adv), y) |
//! | `trades` | KL(p(x) ‖ p(x')) | CE(f(x), y) + β KL(p(x) ‖ p(x_adv)) |
//! | `mart` | CE | BCE(x_adv, y) + β KL(p(x) ‖ p(x_adv)) (1 − p_y(x)) |
//! | `mart_plus` | CE | as MART with (1 − p_y(x)) replaced by H(p(x)) |
//! | `gandef` | CE | ½[CE(x) + CE(x_adv)] − γ BCE(D(f(x_adv)), 1), D trained alternately |
//! | `infoat` | CE + λ H(p(x)) ‖p(x') − p(x)‖² (eq. 18) | CE(x_adv) + λ H(p(x)) ‖p(x_adv) − p(x)‖² − β H(p(x_adv)) (eq. 17) |

mod adversarial;
mod gandef;
mod infoat;
use crate::losses;
mod mart;
mod natural;

pub use adversarial::{At, Trades};
pub use gandef::{FoolLoss, GanDef};
pub use infoat::{Divergence, InfoAt, MiEstimator, Regularizer, Weight};
pub use mart::Mart;
pub use natural::Natural;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::attacks::{BnMode, PgdSpec, Start};
use crate::data::{Augment, Batch, Dataset, ImageSet};
use crate::models::Network;
use crate::{Error, Result};

/// The inner maximisation of an adversarial method (SPEC §2 "Inner PGD"): 10 steps of eps/4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerConfig {
    /// L∞ radius; default per dataset: 8/255 (CIFAR, SVHN), 0.3 (MNIST), 0.1 (Fashion-MNIST).
    #[serde(default)]
    pub eps: Option<f64>,
    /// Steps.
    #[serde(default = "ten")]
    pub steps: usize,
    /// Step size; default eps/4.
    #[serde(default)]
    pub step_size: Option<f64>,
    /// Start; default `uniform`, `gaussian_0.001` for TRADES and MART (their original code).
    #[serde(default)]
    pub start: Option<Start>,
    /// BatchNorm mode while crafting (SPEC §1 `attack_bn_mode`).
    #[serde(default)]
    pub attack_bn_mode: BnMode,
    /// Grow eps linearly from 0 to its value over this many epochs (0 = full eps from the
    /// first batch; the CPU recipe of SPEC §6 uses 1).
    #[serde(default)]
    pub eps_warmup_epochs: f64,
}

fn ten() -> usize {
    10
}

impl Default for InnerConfig {
    fn default() -> Self {
        InnerConfig {
            eps: None,
            steps: 10,
            step_size: None,
            start: None,
            attack_bn_mode: BnMode::Eval,
            eps_warmup_epochs: 0.0,
        }
    }
}

impl InnerConfig {
    fn resolve(&mut self, dataset: Dataset, start: Start) -> std::result::Result<(), String> {
        let eps = *self.eps.get_or_insert(dataset.default_eps());
        let step = *self.step_size.get_or_insert(crate::attacks::default_step(eps));
        self.start.get_or_insert(start);
        crate::attacks::check_eps(eps).map_err(|e| format!("method.inner.eps: {e}"))?;
        if !(step.is_finite() && step > 0.0) {
            return Err(format!("method.inner.step_size must be positive, got {step}"));
        }
        if self.steps == 0 {
            return Err("method.inner.steps must be at least 1".into());
        }
        if !(self.eps_warmup_epochs.is_finite() && self.eps_warmup_epochs >= 0.0) {
            return Err(format!("method.inner.eps_warmup_epochs must be >= 0, got {}", self.eps_warmup_epochs));
        }
        Ok(())
    }

    /// The ascent at training progress `epochs_done` (fractional epochs completed), with the
    /// warm-up applied to eps and, proportionally, to the step size.
    pub fn spec_at(&self, epochs_done: f64) -> PgdSpec {
        let eps = self.eps.expect("invariant: resolved");
        let step = self.step_size.expect("invariant: resolved");
        let scale = if self.eps_warmup_epochs > 0.0 { (epochs_done / self.eps_warmup_epochs).min(1.0) } else { 1.0 };
        PgdSpec {
            eps: eps * scale,
            steps: self.steps,
            step_size: step * scale,
            start: self.start.expect("invariant: resolved"),
        }
    }
}

fn six() -> f64 {
    6.0
}

/// A method as written in a config (`[method] kind = "..."`, with `[method.inner]` for the
/// inner maximisation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodConfig {
    /// Standard training on clean data: CE(f(x), y).
    Natural,
    /// Madry et al. PGD adversarial training.
    At {
        /// The inner maximisation.
        #[serde(default)]
        inner: InnerConfig,
    },
    /// TRADES (Zhang et al. 2019).
    Trades {
        /// Weight of the robust KL term (SPEC: 6).
        #[serde(default = "six")]
        beta: f64,
        /// The inner maximisation.
        #[serde(default)]
        inner: InnerConfig,
    },
    /// MART (Wang et al. 2020).
    Mart {
        /// Weight of the weighted KL term (SPEC: 6; MART's ResNet-18 script uses 5).
        #[serde(default = "six")]
        beta: f64,
        /// The inner maximisation.
        #[serde(default)]
        inner: InnerConfig,
    },
    /// MART+ (the paper): MART weighted by H(p(x)) instead of 1 − p_y(x).
    MartPlus {
        /// Weight of the weighted KL term.
        #[serde(default = "six")]
        beta: f64,
        /// The inner maximisation.
        #[serde(default)]
        inner: InnerConfig,
    },
    /// GanDef (Liu & JaJa): a discriminator on logits, trained alternately.
    Gandef {
        /// Weight of the adversarial (discriminator-fooling) term (SPEC: 2).
        #[serde(default = "gamma")]
        gamma: f64,
        /// Adam learning rate of the discriminator (SPEC: 1e-3).
        #[serde(default = "d_lr")]
        d_lr: f64,
        /// How the classifier fools D (SPEC: `minimax`).
        #[serde(default)]
        fool_loss: FoolLoss,
        /// The inner maximisation.
        #[serde(default)]
        inner: InnerConfig,
    },
    /// InfoAT (the paper, eq. 17/18) with its ablations (Fig. 3, Table I).
    Infoat {
        /// λ, weight of the information-weighted divergence (SPEC: 2.5).
        #[serde(default = "lambda")]
        lambda: f64,
        /// β, weight of the outer regulariser (SPEC: 0.2).
        #[serde(default = "beta_infoat")]
        beta: f64,
        /// The per-example weight.
        #[serde(default)]
        weight: Weight,
        /// The divergence between p(x) and p(x').
        #[serde(default)]
        divergence: Divergence,
        /// The outer regulariser.
        #[serde(default)]
        regularizer: Regularizer,
        /// How the mutual information is estimated.
        #[serde(default)]
        mi_estimator: MiEstimator,
        /// Detach H(p(x)) and p(x) in the outer loss (SPEC DECISION: false).
        #[serde(default)]
        detach_nat_weight: bool,
        /// The inner maximisation.
        #[serde(default)]
        inner: InnerConfig,
    },
}

fn gamma() -> f64 {
    2.0
}

fn d_lr() -> f64 {
    1e-3
}

fn lambda() -> f64 {
    2.5
}

fn beta_infoat() -> f64 {
    0.2
}

impl MethodConfig {
    /// The method's kind, the id records and reports know it by.
    pub fn kind(&self) -> infoat_registry::MethodKind {
        use infoat_registry::MethodKind;
        match self {
            MethodConfig::Natural => MethodKind::Natural,
            MethodConfig::At { .. } => MethodKind::At,
            MethodConfig::Trades { .. } => MethodKind::Trades,
            MethodConfig::Mart { .. } => MethodKind::Mart,
            MethodConfig::MartPlus { .. } => MethodKind::MartPlus,
            MethodConfig::Gandef { .. } => MethodKind::Gandef,
            MethodConfig::Infoat { .. } => MethodKind::Infoat,
        }
    }

    /// The method's name in configs, tables and records (`[method] kind`).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The inner maximisation, for adversarial methods.
    pub fn inner(&self) -> Option<&InnerConfig> {
        match self {
            MethodConfig::Natural => None,
            MethodConfig::At { inner }
            | MethodConfig::Trades { inner, .. }
            | MethodConfig::Mart { inner, .. }
            | MethodConfig::MartPlus { inner, .. }
            | MethodConfig::Gandef { inner, .. }
            | MethodConfig::Infoat { inner, .. } => Some(inner),
        }
    }

    /// Writes the dataset-dependent defaults out and checks every hyperparameter; the message
    /// says what is wrong.
    pub fn resolve(&mut self, dataset: Dataset) -> std::result::Result<(), String> {
        let finite_nonneg = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("method.{name} must be a finite number >= 0, got {v}"))
            }
        };
        match self {
            MethodConfig::Natural => Ok(()),
            MethodConfig::At { inner } => inner.resolve(dataset, Start::Uniform),
            MethodConfig::Trades { beta, inner }
            | MethodConfig::Mart { beta, inner }
            | MethodConfig::MartPlus { beta, inner } => {
                finite_nonneg("beta", *beta)?;
                inner.resolve(dataset, Start::Gaussian)
            }
            MethodConfig::Gandef { gamma, d_lr, inner, .. } => {
                finite_nonneg("gamma", *gamma)?;
                if !(*d_lr > 0.0 && d_lr.is_finite()) {
                    return Err(format!("method.d_lr must be positive, got {d_lr}"));
                }
                inner.resolve(dataset, Start::Uniform)
            }
            MethodConfig::Infoat { lambda, beta, mi_estimator, inner, .. } => {
                finite_nonneg("lambda", *lambda)?;
                finite_nonneg("beta", *beta)?;
                if let MiEstimator::Mine { layer } = mi_estimator {
                    if !(1..=4).contains(layer) {
                        return Err(format!("method.mi_estimator.layer must be 1, 2, 3 or 4, got {layer}"));
                    }
                }
                inner.resolve(dataset, Start::Uniform)
            }
        }
    }

    /// Checks that the method can train `arch` (MINE needs ResNet-18's stages).
    pub fn check_arch(&self, arch: crate::models::Arch) -> std::result::Result<(), String> {
        if let MethodConfig::Infoat { mi_estimator: MiEstimator::Mine { .. }, .. } = self {
            if arch != crate::models::Arch::ResNet18 {
                return Err(format!(
                    "method.mi_estimator = mine reads a ResNet-18 stage (paper Table I); arch is {arch}"
                ));
            }
        }
        Ok(())
    }

    /// Builds the runtime method for a model on `device`.
    pub fn build(&self, num_classes: usize, device: tch::Device) -> Result<Box<dyn Method>> {
        Ok(match self {
            MethodConfig::Natural => Box::new(Natural),
            MethodConfig::At { inner } => Box::new(At { inner: inner.clone() }),
            MethodConfig::Trades { beta, inner } => Box::new(Trades { beta: *beta, inner: inner.clone() }),
            MethodConfig::Mart { beta, inner } => {
                Box::new(Mart { beta: *beta, entropy_weight: false, inner: inner.clone() })
            }
            MethodConfig::MartPlus { beta, inner } => {
                Box::new(Mart { beta: *beta, entropy_weight: true, inner: inner.clone() })
            }
            MethodConfig::Gandef { gamma, d_lr, fool_loss, inner } => {
                Box::new(GanDef::new(*gamma, *d_lr, *fool_loss, inner.clone(), num_classes, device)?)
            }
            MethodConfig::Infoat {
                lambda,
                beta,
                weight,
                divergence,
                regularizer,
                mi_estimator,
                detach_nat_weight,
                inner,
            } => Box::new(InfoAt::new(
                *lambda,
                *beta,
                *weight,
                *divergence,
                *regularizer,
                *mi_estimator,
                *detach_nat_weight,
                inner.clone(),
                device,
            )?),
        })
    }
}

/// What a method may need to know about the step it is computing.
pub struct StepCtx<'a> {
    /// The epoch, from 1.
    pub epoch: usize,
    /// The batch index within the epoch.
    pub batch: usize,
    /// Epochs completed so far, fractional (for eps warm-up).
    pub epochs_done: f64,
    /// A seed for the method's own draws in this step (GanDef's discriminator batch).
    pub seed: u64,
    /// The training set (GanDef draws its discriminator batch from it).
    pub train_set: &'a ImageSet,
    /// Its augmentation.
    pub augment: Augment,
}

/// The loss of one training batch, with its named parts for logging.
pub struct LossParts {
    /// The scalar to minimise (carries the graph).
    pub total: Tensor,
    /// Named scalar terms (detached) whose weighted sum is `total`, e.g. `ce`, `robust_kl`.
    pub parts: Vec<(&'static str, Tensor)>,
    /// Logits whose accuracy the training log shows: of the natural batch, or of the
    /// adversarial batch for methods that never forward the natural one in train mode.
    pub logits: Tensor,
}

/// A training method: given a batch, the loss whose gradient trains the model.
pub trait Method {
    /// The method's name in tables and records.
    fn name(&self) -> &'static str;

    /// The outer loss for one batch. The model is in train mode for the outer pass; any inner
    /// maximisation runs with frozen parameters (and eval-mode BatchNorm unless configured).
    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> Result<LossParts>;

    /// State the method owns beyond the model (GanDef's discriminator and its optimizer,
    /// MINE's statistics network), saved with every epoch checkpoint.
    fn state(&self) -> BTreeMap<String, Tensor> {
        BTreeMap::new()
    }

    /// Restores what [`Method::state`] saved.
    fn load_state(&mut self, state: BTreeMap<String, Tensor>) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "method {} keeps no state, but the checkpoint has {} tensors for it",
                self.name(),
                state.len()
            )))
        }
    }
}

/// The inner maximisation on the cross-entropy (AT, MART, MART+, GanDef) at training progress
/// `epochs_done`.
pub(crate) fn ce_adversarial(
    model: &Network,
    x: &Tensor,
    y: &Tensor,
    inner: &InnerConfig,
    epochs_done: f64,
) -> Result<Tensor> {
    let spec = inner.spec_at(epochs_done);
    crate::attacks::maximize(model, x, &spec, inner.attack_bn_mode, &mut |logits| crate::attacks::ce_sum(logits, y))
}

/// Batch mean of a per-example loss.
pub(crate) fn mean(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_mean(tch::Kind::Float)?)
}

/// A detached copy of a scalar for logging.
pub(crate) fn part(name: &'static str, t: &Tensor) -> Result<(&'static str, Tensor)> {
    Ok((name, t.f_detach()?))
}
