//! GanDef (Liu & JaJa, "GanDef: A GAN based adversarial training defense for neural network
//! classifier", 2019), as SPEC §2 reconstructs it: a discriminator D on the classifier's
//! logits learns to tell perturbed inputs from clean ones, and the classifier learns to be
//! accurate on both while fooling D.
//!
//! Per training batch: (1) one D step on a randomly drawn training batch and its PGD-10
//! adversarial version (eval mode, model frozen), D minimising ½[BCE(D(f(x)), 0) +
//! BCE(D(f(x_adv)), 1)] with Adam; (2) the classifier loss ½[CE(f(x), y) + CE(f(x_adv), y)] −
//! γ BCE(D(f(x_adv)), 1) on the current batch (`fool_loss = "minimax"`, the SPEC), or plus
//! γ BCE(D(f(x_adv)), 0) (`"non_saturating"`, see [`FoolLoss`]). D = Linear(C, 32), ReLU,
//! Linear(32, 64), ReLU, Linear(64, 1), the sigmoid inside the BCE.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use super::{ce_adversarial, losses, mean, part, InnerConfig, LossParts, Method, StepCtx};
use crate::data::{make_batch, Batch};
use crate::models::Network;
use crate::optim::Optimizer;
use crate::optim::OptimizerConfig;
use crate::seed::seed_torch;
use crate::{Error, Result};

/// The classifier's term against the discriminator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoolLoss {
    /// −γ BCE(D(f(x_adv)), 1): the min-max objective of GanDef and SPEC §2. Unbounded below:
    /// the classifier can raise D's loss without limit by scaling its logits, and with one D
    /// step per classifier step it does (on MNIST with the CPU recipe: mean CE 11.8 after one
    /// epoch, 13.9 % training accuracy).
    #[default]
    Minimax,
    /// +γ BCE(D(f(x_adv)), 0): the non-saturating form GAN practice uses instead (Goodfellow
    /// et al. 2014): the classifier makes D call its adversarial logits clean; bounded below by 0.
    NonSaturating,
}

/// GanDef.
pub struct GanDef {
    gamma: f64,
    fool_loss: FoolLoss,
    inner: InnerConfig,
    vs: nn::VarStore,
    disc: nn::Sequential,
    opt: Optimizer,
}

impl GanDef {
    /// GanDef for a `num_classes`-way classifier, D on `device` trained by Adam at `d_lr`.
    pub fn new(
        gamma: f64,
        d_lr: f64,
        fool_loss: FoolLoss,
        inner: InnerConfig,
        num_classes: usize,
        device: Device,
    ) -> Result<GanDef> {
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let disc = nn::seq()
            .add(nn::linear(&p / "fc1", num_classes as i64, 32, Default::default()))
            .add_fn(|t| t.relu())
            .add(nn::linear(&p / "fc2", 32, 64, Default::default()))
            .add_fn(|t| t.relu())
            .add(nn::linear(&p / "fc3", 64, 1, Default::default()));
        let params: Vec<(String, Tensor)> =
            vs.variables().into_iter().collect::<BTreeMap<_, _>>().into_iter().collect();
        let opt =
            Optimizer::new(&OptimizerConfig::Adam { lr: d_lr, beta1: 0.9, beta2: 0.999, weight_decay: 0.0 }, params);
        Ok(GanDef { gamma, fool_loss, inner, vs, disc, opt })
    }

    fn d(&self, logits: &Tensor) -> Tensor {
        nn::Module::forward(&self.disc, logits).squeeze_dim(-1)
    }

    /// BCE of D's logit against a constant label, batch mean.
    fn bce(d_logits: &Tensor, label: f64) -> Result<Tensor> {
        let target = d_logits.f_full_like(label)?;
        Ok(d_logits.f_binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::Mean)?)
    }

    fn adversarial(&self, model: &Network, x: &Tensor, y: &Tensor, epochs_done: f64) -> Result<Tensor> {
        ce_adversarial(model, x, y, &self.inner, epochs_done)
    }
}

impl Method for GanDef {
    fn name(&self) -> &'static str {
        "gandef"
    }

    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> Result<LossParts> {
        // (1) The discriminator step on a random batch (drawn from the step's own seed).
        let n = ctx.train_set.len();
        let size = batch.len().min(n);
        let idx: Vec<usize> = crate::data::shuffled_indices(n, ctx.seed).into_iter().take(size).collect();
        let d_batch = make_batch(ctx.train_set, &idx, ctx.augment, ctx.seed ^ 0x5eed, model.device())?;
        seed_torch(ctx.seed);
        let d_adv = self.adversarial(model, &d_batch.x, &d_batch.y, ctx.epochs_done)?;
        let (z_nat, z_adv) = tch::no_grad(|| (model.forward_t(&d_batch.x, false), model.forward_t(&d_adv, false)));
        let d_loss = Self::bce(&self.d(&z_nat), 0.0)?.f_add(&Self::bce(&self.d(&z_adv), 1.0)?)?.f_mul_scalar(0.5)?;
        self.opt.backward_step(&d_loss)?;

        // (2) The classifier's loss on the current batch; D is held fixed for it.
        let x_adv = self.adversarial(model, &batch.x, &batch.y, ctx.epochs_done)?;
        let nat = model.forward_t(&batch.x, true);
        let adv = model.forward_t(&x_adv, true);
        let ce_nat = mean(&losses::ce(&nat, &batch.y)?)?;
        let ce_adv = mean(&losses::ce(&adv, &batch.y)?)?;
        let (fool, sign) = {
            let _frozen_d = DiscFrozen::new(&self.vs);
            match self.fool_loss {
                FoolLoss::Minimax => (Self::bce(&self.d(&adv), 1.0)?, -1.0),
                FoolLoss::NonSaturating => (Self::bce(&self.d(&adv), 0.0)?, 1.0),
            }
        };
        let ce = ce_nat.f_add(&ce_adv)?.f_mul_scalar(0.5)?;
        let total = ce.f_add(&fool.f_mul_scalar(sign * self.gamma)?)?;
        Ok(LossParts {
            parts: vec![part("ce_mean", &ce)?, part("fool", &fool)?, part("d_loss", &d_loss)?],
            total,
            logits: nat,
        })
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out: BTreeMap<String, Tensor> =
            self.vs.variables().into_iter().map(|(k, v)| (format!("disc.{k}"), v)).collect();
        for (k, v) in self.opt.state_tensors() {
            out.insert(format!("disc_opt.{k}"), v);
        }
        out
    }

    fn load_state(&mut self, state: BTreeMap<String, Tensor>) -> Result<()> {
        let vars = self.vs.variables();
        let mut opt_state = BTreeMap::new();
        let mut seen = 0;
        for (k, v) in state {
            if let Some(name) = k.strip_prefix("disc.") {
                let var =
                    vars.get(name).ok_or_else(|| Error::Invalid(format!("unknown discriminator tensor '{name}'")))?;
                tch::no_grad(|| var.shallow_clone().f_copy_(&v))?;
                seen += 1;
            } else if let Some(key) = k.strip_prefix("disc_opt.") {
                opt_state.insert(key.to_string(), v);
            } else {
                return Err(Error::Invalid(format!("unknown GanDef state '{k}' in checkpoint")));
            }
        }
        if seen != vars.len() {
            return Err(Error::Invalid(format!("checkpoint has {seen} of the discriminator's {} tensors", vars.len())));
        }
        self.opt.load_state(opt_state)
    }
}

/// Stops gradients into D's parameters while the classifier's loss is built, so the
/// classifier step never leaves gradients on D.
struct DiscFrozen {
    params: Vec<Tensor>,
}

impl DiscFrozen {
    fn new(vs: &nn::VarStore) -> DiscFrozen {
        let params = vs.trainable_variables();
        for p in &params {
            let _ = p.set_requires_grad(false);
        }
        DiscFrozen { params }
    }
}

impl Drop for DiscFrozen {
    fn drop(&mut self) {
        for p in &self.params {
            let _ = p.set_requires_grad(true);
        }
    }
}
