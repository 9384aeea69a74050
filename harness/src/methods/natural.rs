//! Natural (standard) training: the cross-entropy of the clean batch, no adversary.

use super::{losses, mean, part, LossParts, Method, StepCtx};
use crate::data::Batch;
use crate::models::Network;
use crate::Result;

/// Standard training, `CE(f(x), y)` averaged over the batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Natural;

impl Method for Natural {
    fn name(&self) -> &'static str {
        "natural"
    }

    fn loss(&mut self, model: &Network, batch: &Batch, _ctx: &StepCtx<'_>) -> Result<LossParts> {
        let logits = model.forward_t(&batch.x, true);
        let total = mean(&losses::ce(&logits, &batch.y)?)?;
        Ok(LossParts { parts: vec![part("ce", &total)?], total, logits })
    }
}
