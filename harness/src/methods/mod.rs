//! Training methods (SPEC §2): each owns its outer loss and, where it has one, its inner
//! maximiser. [`MethodConfig`] is the serde form in run configs and builds the runtime
//! [`Method`].

mod natural;

pub use natural::Natural;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::Batch;
use crate::models::Network;
use crate::Result;

/// A method as written in a config (`[method] kind = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodConfig {
    /// Standard training on clean data: CE(f(x), y).
    Natural,
}

impl MethodConfig {
    /// The method's name in tables and records.
    pub fn name(&self) -> &'static str {
        match self {
            MethodConfig::Natural => "natural",
        }
    }

    /// Checks the method's hyperparameters; the message says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            MethodConfig::Natural => Ok(()),
        }
    }

    /// Builds the runtime method.
    pub fn build(&self) -> Box<dyn Method> {
        match self {
            MethodConfig::Natural => Box::new(Natural),
        }
    }
}

/// The loss of one training batch, with its named parts for logging.
pub struct LossParts {
    /// The scalar to minimise (carries the graph).
    pub total: Tensor,
    /// Logits of the natural batch from the train-mode pass, for training accuracy.
    pub natural_logits: Tensor,
}

/// A training method: given a batch, the loss whose gradient trains the model.
pub trait Method {
    /// The method's name in tables and records.
    fn name(&self) -> &'static str;

    /// The outer loss for one batch. The model is in train mode for the outer pass; any inner
    /// maximisation runs in eval mode with frozen parameters.
    fn loss(&mut self, model: &mut Network, batch: &Batch) -> Result<LossParts>;
}
