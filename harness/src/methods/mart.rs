//! MART (Wang et al. 2020, "Improving adversarial robustness requires revisiting misclassified
//! examples") and the paper's MART+ (SPEC §2).

use super::{ce_adversarial, losses, mean, part, InnerConfig, LossParts, Method, StepCtx};
use crate::data::Batch;
use crate::models::Network;
use crate::Result;

/// MART: maximise CE; minimise BCE(x_adv, y) + β mean[KL(p(x) ‖ p(x_adv)) · w(x)] with
/// w = 1.0000001 − p_y(x) (MART) or w = H(p(x)) (MART+). Neither p(x) nor w is detached, as in
/// MART's code.
#[derive(Debug, Clone)]
pub struct Mart {
    /// Weight of the weighted KL term.
    pub beta: f64,
    /// MART+ (entropy weight) instead of MART.
    pub entropy_weight: bool,
    /// The inner maximisation.
    pub inner: InnerConfig,
}

impl Method for Mart {
    fn name(&self) -> &'static str {
        if self.entropy_weight {
            "mart_plus"
        } else {
            "mart"
        }
    }

    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> Result<LossParts> {
        let y = &batch.y;
        let x_adv = ce_adversarial(model, &batch.x, y, &self.inner, ctx.epochs_done)?;
        let nat = model.forward_t(&batch.x, true);
        let adv = model.forward_t(&x_adv, true);
        let bce = mean(&losses::mart_bce(&adv, y)?)?;
        let weight = if self.entropy_weight {
            losses::entropy(&nat)?
        } else {
            losses::true_prob(&nat, y)?.f_neg()?.f_add_scalar(1.0000001)?
        };
        let kl = mean(&losses::mart_kl(&nat, &adv)?.f_mul(&weight)?)?;
        let total = bce.f_add(&kl.f_mul_scalar(self.beta)?)?;
        Ok(LossParts { parts: vec![part("bce", &bce)?, part("weighted_kl", &kl)?], total, logits: nat })
    }
}
