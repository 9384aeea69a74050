//! Madry et al.'s PGD adversarial training (AT, arXiv:1706.06083) and TRADES (Zhang et al.
//! 2019, arXiv:1901.08573), SPEC §2.

use tch::{Kind, Tensor};

use super::{ce_adversarial, losses, mean, part, InnerConfig, LossParts, Method, StepCtx};
use crate::attacks::maximize;
use crate::data::Batch;
use crate::models::Network;
use crate::Result;

/// AT: maximise CE in the ball, minimise CE(f(x_adv), y).
#[derive(Debug, Clone)]
pub struct At {
    /// The inner maximisation.
    pub inner: InnerConfig,
}

impl Method for At {
    fn name(&self) -> &'static str {
        "at"
    }

    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> Result<LossParts> {
        let x_adv = ce_adversarial(model, &batch.x, &batch.y, &self.inner, ctx.epochs_done)?;
        At::outer(model, &x_adv, &batch.y)
    }
}

impl At {
    /// The outer loss CE(f(x_adv), y) in train mode, given the inner maximisation's result
    /// (the graphed PGD of `infoat bench --cuda-graph` computes that one elsewhere).
    pub fn outer(model: &Network, x_adv: &Tensor, y: &Tensor) -> Result<LossParts> {
        let logits = model.forward_t(x_adv, true);
        let total = mean(&losses::ce(&logits, y)?)?;
        Ok(LossParts { parts: vec![part("ce_adv", &total)?], total, logits })
    }
}

/// TRADES: maximise KL(p(x) ‖ p(x')) in the ball, minimise CE(f(x), y) + β KL(p(x) ‖ p(x_adv)).
///
/// The natural batch is forwarded once in train mode, before the adversarial one; TRADES' own
/// script forwards it a second time for the KL target, which changes only BatchNorm's running
/// statistics (batch statistics make both passes identical), so one pass is kept. p(x) is not
/// detached, as in TRADES.
#[derive(Debug, Clone)]
pub struct Trades {
    /// Weight of the robust term.
    pub beta: f64,
    /// The inner maximisation.
    pub inner: InnerConfig,
}

impl Method for Trades {
    fn name(&self) -> &'static str {
        "trades"
    }

    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> Result<LossParts> {
        let spec = self.inner.spec_at(ctx.epochs_done);
        let nat_fixed = tch::no_grad(|| model.forward_t(&batch.x, false));
        let x_adv = maximize(model, &batch.x, &spec, self.inner.attack_bn_mode, &mut |logits| {
            Ok(losses::kl(&nat_fixed, logits)?.f_sum(Kind::Float)?)
        })?;
        let nat = model.forward_t(&batch.x, true);
        let adv = model.forward_t(&x_adv, true);
        let ce = mean(&losses::ce(&nat, &batch.y)?)?;
        let kl = mean(&losses::kl(&nat, &adv)?)?;
        let total = ce.f_add(&kl.f_mul_scalar(self.beta)?)?;
        Ok(LossParts { parts: vec![part("ce", &ce)?, part("robust_kl", &kl)?], total, logits: nat })
    }
}
