//! InfoAT (the paper, eq. 17 and 18) and its ablations (paper Fig. 3, Table I; SPEC §2).
//!
//! Inner (eq. 18): maximise CE(f(x'), y) + λ w(x) D(p(x), p(x')), with p(x) and w(x) taken from
//! an eval-mode pass and held constant. Outer (eq. 17): CE(f(x_adv), y) + λ w(x) D(p(x),
//! p(x_adv)) + R, with p(x) from the train-mode natural pass. Defaults: w = H(p(x)) (eq. 15),
//! D = ‖·‖² (eq. 16), R = −β H(p(x_adv)), λ = 2.5, β = 0.2.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::{losses, mean, part, InnerConfig, LossParts, Method, StepCtx};
use crate::attacks::maximize;
use crate::data::Batch;
use crate::models::Network;
use crate::optim::Optimizer;
use crate::optim::OptimizerConfig;
use crate::{Error, Result};

/// The per-example weight of the divergence (Fig. 3(b); MINE bars in Fig. 3(a)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// The mutual-information estimate: H(p(x)) (eq. 15), or MINE's batch estimate.
    #[default]
    Entropy,
    /// 1 for every example.
    None,
    /// MART's misclassification weight 1 − p_y(x).
    Misclassification,
}

/// The surrogate of the 0-1 disagreement between p(x) and p(x') (Fig. 3(c)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Divergence {
    /// ‖p(x') − p(x)‖² (eq. 16).
    #[default]
    Mse,
    /// Jensen–Shannon divergence.
    Js,
    /// Cross-entropy −Σ p(x) ln p(x').
    Ce,
    /// KL(p(x) ‖ p(x')).
    Kl,
}

impl Divergence {
    fn eval(self, nat: &Tensor, adv: &Tensor) -> Result<Tensor> {
        match self {
            Divergence::Mse => losses::sq_dist(nat, adv),
            Divergence::Js => losses::js(nat, adv),
            Divergence::Ce => losses::soft_ce(nat, adv),
            Divergence::Kl => losses::kl(nat, adv),
        }
    }
}

/// The outer regulariser, scaled by β (Fig. 3(d)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regularizer {
    /// −β H(p(x_adv)) (eq. 17).
    #[default]
    NegHAdv,
    /// +β H(p(x_adv)).
    PosHAdv,
    /// +β H(p(x)).
    PosHNat,
    /// −β H(p(x)).
    NegHNat,
    /// No regulariser.
    None,
}

/// How the mutual information I(x; z) is estimated (Table I).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MiEstimator {
    /// Per example, by the prediction entropy H(p(x)) (eq. 15).
    #[default]
    Entropy,
    /// Per batch, by MINE (Belghazi et al. 2018) on the output of ResNet stage `layer` (eq. 19).
    Mine {
        /// The ResNet-18 stage, 1–4.
        layer: usize,
    },
}

/// MINE's statistics network T(x, z): an MLP (hidden 256, two ReLU layers) on the input
/// average-pooled to 8×8 and flattened, concatenated with the stage feature map globally
/// average-pooled (SPEC §2 DECISION), trained by Adam (lr 1e-4) to maximise the
/// Donsker–Varadhan bound E_joint[T] − ln E_marginal[e^T], marginal pairs drawn by shuffling
/// z within the batch.
struct Mine {
    layer: usize,
    vs: nn::VarStore,
    net: nn::Sequential,
    opt: Optimizer,
}

impl Mine {
    const HIDDEN: i64 = 256;

    fn new(layer: usize, device: Device) -> Result<Mine> {
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        // ResNet-18 stage widths; the input contributes C·8·8 values (C = 3 for the paper's data).
        let z_dim = [64, 128, 256, 512][layer - 1];
        let in_dim = 3 * 8 * 8 + z_dim;
        let net = nn::seq()
            .add(nn::linear(&p / "fc1", in_dim, Self::HIDDEN, Default::default()))
            .add_fn(|t| t.relu())
            .add(nn::linear(&p / "fc2", Self::HIDDEN, Self::HIDDEN, Default::default()))
            .add_fn(|t| t.relu())
            .add(nn::linear(&p / "fc3", Self::HIDDEN, 1, Default::default()));
        let params: Vec<(String, Tensor)> =
            vs.variables().into_iter().collect::<BTreeMap<_, _>>().into_iter().collect();
        let opt =
            Optimizer::new(&OptimizerConfig::Adam { lr: 1e-4, beta1: 0.9, beta2: 0.999, weight_decay: 0.0 }, params);
        Ok(Mine { layer, vs, net, opt })
    }

    fn inputs(x: &Tensor, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let xs = x.f_adaptive_avg_pool2d([8, 8])?.f_flatten(1, -1)?;
        let zs = z.f_mean_dim(&[2i64, 3][..], false, Kind::Float)?;
        Ok((xs, zs))
    }

    fn t(&self, xs: &Tensor, zs: &Tensor) -> Result<Tensor> {
        Ok(nn::Module::forward(&self.net, &Tensor::f_cat(&[xs, zs], 1)?))
    }

    /// The DV bound on (x, z) before one Adam step of T towards maximising it (the step is
    /// taken every call); returns that bound.
    fn estimate(&mut self, x: &Tensor, z: &Tensor) -> Result<f64> {
        let (xs, zs) = Self::inputs(&x.f_detach()?, &z.f_detach()?)?;
        let n = xs.size()[0];
        let perm = Tensor::f_randperm(n, (Kind::Int64, xs.device()))?;
        let joint = self.t(&xs, &zs)?.f_mean(Kind::Float)?;
        let marg = self.t(&xs, &zs.f_index_select(0, &perm)?)?;
        let log_mean_exp = marg.f_logsumexp(&[0i64][..], false)?.f_sum(Kind::Float)?.f_sub_scalar((n as f64).ln())?;
        let bound = joint.f_sub(&log_mean_exp)?;
        let value = bound.double_value(&[]);
        self.opt.backward_step(&bound.f_neg()?)?;
        Ok(value)
    }
}

/// InfoAT.
pub struct InfoAt {
    lambda: f64,
    beta: f64,
    weight: Weight,
    divergence: Divergence,
    regularizer: Regularizer,
    detach_nat_weight: bool,
    inner: InnerConfig,
    mine: Option<Mine>,
}

impl InfoAt {
    /// InfoAT with the given hyperparameters (see [`super::MethodConfig::Infoat`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lambda: f64,
        beta: f64,
        weight: Weight,
        divergence: Divergence,
        regularizer: Regularizer,
        mi_estimator: MiEstimator,
        detach_nat_weight: bool,
        inner: InnerConfig,
        device: Device,
    ) -> Result<InfoAt> {
        let mine = match mi_estimator {
            MiEstimator::Entropy => None,
            MiEstimator::Mine { layer } => Some(Mine::new(layer, device)?),
        };
        Ok(InfoAt { lambda, beta, weight, divergence, regularizer, detach_nat_weight, inner, mine })
    }

    /// The per-example weight from natural logits (entropy / misclassification / 1), or the
    /// MINE batch estimate when one is given.
    fn weight_of(&self, nat: &Tensor, y: &Tensor, mine_estimate: Option<f64>) -> Result<Tensor> {
        Ok(match (self.weight, mine_estimate) {
            (Weight::Entropy, Some(mi)) => nat.f_new_full([nat.size()[0]], mi.max(0.0), (Kind::Float, nat.device()))?,
            (Weight::Entropy, None) => losses::entropy(nat)?,
            (Weight::None, _) => nat.f_new_ones([nat.size()[0]], (Kind::Float, nat.device()))?,
            (Weight::Misclassification, _) => losses::true_prob(nat, y)?.f_neg()?.f_add_scalar(1.0)?,
        })
    }
}

impl Method for InfoAt {
    fn name(&self) -> &'static str {
        "infoat"
    }

    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> Result<LossParts> {
        let (x, y) = (&batch.x, &batch.y);
        let spec = self.inner.spec_at(ctx.epochs_done);
        // p(x) and the weight of the inner problem: an eval-mode pass, constants.
        let (nat_fixed, mine_estimate) = match self.mine.as_ref().map(|m| m.layer) {
            Some(layer) => {
                let (logits, z) = tch::no_grad(|| model.forward_stage(x, false, layer))?;
                let mi = self.mine.as_mut().expect("invariant: mine present").estimate(x, &z)?;
                (logits, Some(mi))
            }
            None => (tch::no_grad(|| model.forward_t(x, false)), None),
        };
        let w_fixed = self.weight_of(&nat_fixed, y, mine_estimate)?.f_detach()?;
        let (lambda, div) = (self.lambda, self.divergence);
        let x_adv = maximize(model, x, &spec, self.inner.attack_bn_mode, &mut |logits| {
            let d = div.eval(&nat_fixed, logits)?;
            let obj = losses::ce(logits, y)?.f_add(&w_fixed.f_mul(&d)?.f_mul_scalar(lambda)?)?;
            Ok(obj.f_sum(Kind::Float)?)
        })?;

        let nat = model.forward_t(x, true);
        let adv = model.forward_t(&x_adv, true);
        let (nat_w, nat_d) = if self.detach_nat_weight {
            (nat.f_detach()?, nat.f_detach()?)
        } else {
            (nat.shallow_clone(), nat.shallow_clone())
        };
        let w = self.weight_of(&nat_w, y, mine_estimate)?;
        let ce = mean(&losses::ce(&adv, y)?)?;
        let ib = mean(&w.f_mul(&div.eval(&nat_d, &adv)?)?)?;
        let reg = match self.regularizer {
            Regularizer::NegHAdv => mean(&losses::entropy(&adv)?)?.f_mul_scalar(-self.beta)?,
            Regularizer::PosHAdv => mean(&losses::entropy(&adv)?)?.f_mul_scalar(self.beta)?,
            Regularizer::PosHNat => mean(&losses::entropy(&nat)?)?.f_mul_scalar(self.beta)?,
            Regularizer::NegHNat => mean(&losses::entropy(&nat)?)?.f_mul_scalar(-self.beta)?,
            Regularizer::None => ce.f_zeros_like()?,
        };
        let total = ce.f_add(&ib.f_mul_scalar(self.lambda)?)?.f_add(&reg)?;
        let mut parts = vec![part("ce_adv", &ce)?, part("ib_weighted", &ib)?, part("entropy_reg", &reg)?];
        if let Some(mi) = mine_estimate {
            parts.push(("mine_mi", Tensor::from(mi as f32)));
        }
        Ok(LossParts { parts, total, logits: nat })
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        if let Some(m) = &self.mine {
            for (k, v) in m.vs.variables() {
                out.insert(format!("mine.{k}"), v);
            }
            for (k, v) in m.opt.state_tensors() {
                out.insert(format!("mine_opt.{k}"), v);
            }
        }
        out
    }

    fn load_state(&mut self, state: BTreeMap<String, Tensor>) -> Result<()> {
        let Some(m) = &mut self.mine else {
            return if state.is_empty() {
                Ok(())
            } else {
                Err(Error::Invalid("checkpoint carries MINE state but this InfoAT uses the entropy estimator".into()))
            };
        };
        let vars = m.vs.variables();
        let mut opt_state = BTreeMap::new();
        for (k, v) in state {
            if let Some(name) = k.strip_prefix("mine.") {
                let var = vars
                    .get(name)
                    .ok_or_else(|| Error::Invalid(format!("unknown MINE tensor '{name}' in checkpoint")))?;
                tch::no_grad(|| var.shallow_clone().f_copy_(&v))?;
            } else if let Some(key) = k.strip_prefix("mine_opt.") {
                opt_state.insert(key.to_string(), v);
            } else {
                return Err(Error::Invalid(format!("unknown InfoAT state '{k}' in checkpoint")));
            }
        }
        m.opt.load_state(opt_state)
    }
}
