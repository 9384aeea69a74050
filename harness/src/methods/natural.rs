//! Natural (standard) training: the cross-entropy of the clean batch, no adversary.

use super::{LossParts, Method};
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

    fn loss(&mut self, model: &mut Network, batch: &Batch) -> Result<LossParts> {
        let logits = model.forward_t(&batch.x, true);
        let total = logits.f_cross_entropy_loss::<tch::Tensor>(&batch.y, None, tch::Reduction::Mean, -100, 0.0)?;
        Ok(LossParts { total, natural_logits: logits })
    }
}
