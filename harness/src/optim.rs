//! The optimizers of SPEC §2 written over plain tensors, so their whole state (momentum
//! buffers, Adam moments, step count) can be saved with an epoch checkpoint and restored
//! exactly: a resumed run then follows the same trajectory as an uninterrupted one. (tch's
//! `nn::Optimizer` keeps its state inside libtorch with no way to read it back.)
//!
//! The update rules are PyTorch's `torch.optim.SGD` (dampening 0, coupled weight decay) and
//! `torch.optim.Adam` (coupled L2 weight decay, no amsgrad).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// An optimizer over named parameters.
pub struct Optimizer {
    cfg: OptimizerConfig,
    lr: f64,
    params: Vec<(String, Tensor)>,
    /// Per-parameter state, keyed `<param>.<slot>` (`momentum_buffer`, `exp_avg`, `exp_avg_sq`).
    state: BTreeMap<String, Tensor>,
    steps: i64,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer").field("cfg", &self.cfg).field("lr", &self.lr).field("steps", &self.steps).finish()
    }
}

impl Optimizer {
    /// An optimizer for `params` (name, trainable tensor), at the config's base rate.
    pub fn new(cfg: &OptimizerConfig, params: Vec<(String, Tensor)>) -> Optimizer {
        Optimizer { lr: cfg.lr(), cfg: cfg.clone(), params, state: BTreeMap::new(), steps: 0 }
    }

    /// Sets the learning rate for the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.steps
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// `zero_grad`, backward of `loss`, `step`.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        loss.f_backward()?;
        self.step()
    }

    /// One update from the current gradients (parameters without a gradient are skipped).
    pub fn step(&mut self) -> Result<()> {
        self.steps += 1;
        let t = self.steps;
        let lr = self.lr;
        let cfg = self.cfg.clone();
        tch::no_grad(|| -> Result<()> {
            for (name, p) in &self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                match cfg {
                    OptimizerConfig::Sgd { momentum, weight_decay, nesterov, .. } => {
                        let mut d =
                            if weight_decay != 0.0 { g.f_add(&p.f_mul_scalar(weight_decay)?)? } else { g.copy() };
                        if momentum != 0.0 {
                            let key = format!("{name}.momentum_buffer");
                            let buf = match self.state.get(&key) {
                                Some(b) => {
                                    let mut b = b.shallow_clone();
                                    let _ = b.f_mul_scalar_(momentum)?.f_add_(&d)?;
                                    b
                                }
                                None => {
                                    let b = d.copy();
                                    self.state.insert(key, b.shallow_clone());
                                    b
                                }
                            };
                            d = if nesterov { d.f_add(&buf.f_mul_scalar(momentum)?)? } else { buf };
                        }
                        let _ = p.shallow_clone().f_sub_(&d.f_mul_scalar(lr)?)?;
                    }
                    OptimizerConfig::Adam { beta1, beta2, weight_decay, .. } => {
                        let g = if weight_decay != 0.0 {
                            g.f_add(&p.f_mul_scalar(weight_decay)?)?
                        } else {
                            g.shallow_clone()
                        };
                        let m = slot(&mut self.state, name, "exp_avg", p)?;
                        let v = slot(&mut self.state, name, "exp_avg_sq", p)?;
                        let _ = m.shallow_clone().f_mul_scalar_(beta1)?.f_add_(&g.f_mul_scalar(1.0 - beta1)?)?;
                        let _ =
                            v.shallow_clone().f_mul_scalar_(beta2)?.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - beta2)?)?;
                        let bias1 = 1.0 - beta1.powi(t as i32);
                        let bias2 = 1.0 - beta2.powi(t as i32);
                        let denom = v.f_sqrt()?.f_div_scalar(bias2.sqrt())?.f_add_scalar(1e-8)?;
                        let _ = p.shallow_clone().f_sub_(&m.f_div(&denom)?.f_mul_scalar(lr / bias1)?)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The optimizer's state as named tensors (for an epoch checkpoint), the step count
    /// included as the Int64 scalar `steps`.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out: BTreeMap<String, Tensor> =
            self.state.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        out.insert("steps".to_string(), Tensor::from(self.steps));
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`].
    pub fn load_state(&mut self, mut saved: BTreeMap<String, Tensor>) -> Result<()> {
        let steps =
            saved.remove("steps").ok_or_else(|| Error::Invalid("optimizer state without its step count".into()))?;
        self.steps = steps.f_to_kind(Kind::Int64)?.int64_value(&[]);
        let device = self.params.first().map(|(_, p)| p.device()).unwrap_or(tch::Device::Cpu);
        let known: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        for (k, v) in saved {
            if !known.iter().any(|n| k.strip_prefix(n).is_some_and(|s| s.starts_with('.'))) {
                return Err(Error::Invalid(format!("optimizer state '{k}' names no parameter of this model")));
            }
            self.state.insert(k, v.f_to_device(device)?);
        }
        Ok(())
    }
}

/// The state tensor `<name>.<slot>`, created as zeros shaped like `like` on first use.
fn slot(state: &mut BTreeMap<String, Tensor>, name: &str, slot: &str, like: &Tensor) -> Result<Tensor> {
    let key = format!("{name}.{slot}");
    if let Some(t) = state.get(&key) {
        return Ok(t.shallow_clone());
    }
    let t = like.f_zeros_like()?;
    state.insert(key, t.shallow_clone());
    Ok(t)
}

/// The optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// SGD with momentum and coupled L2 weight decay on every trainable parameter.
    Sgd {
        /// Base learning rate.
        lr: f64,
        /// Momentum.
        momentum: f64,
        /// L2 weight decay.
        weight_decay: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
    },
    /// Adam (the CPU recipe of SPEC §6).
    Adam {
        /// Base learning rate.
        lr: f64,
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f64,
        /// Coupled L2 weight decay.
        #[serde(default)]
        weight_decay: f64,
    },
}

fn beta1() -> f64 {
    0.9
}

fn beta2() -> f64 {
    0.999
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Sgd { lr: 0.01, momentum: 0.9, weight_decay: 3.5e-3, nesterov: false }
    }
}

impl OptimizerConfig {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => *lr,
        }
    }
}

/// How the learning rate changes over epochs (epochs counted from 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` from each milestone epoch on (SPEC §2: milestones 75, 90, 100).
    Step {
        /// Epochs (1-based) from which the next factor applies, strictly increasing.
        milestones: Vec<usize>,
        /// The factor per milestone.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to 0 over all epochs, per batch.
    Cosine,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig::Step { milestones: vec![75, 90, 100], gamma: 0.1 }
    }
}

impl ScheduleConfig {
    /// The learning rate for `epoch` (1-based) at fraction `progress` in [0, 1) of that epoch.
    pub fn lr(&self, base: f64, epoch: usize, progress: f64, epochs: usize) -> f64 {
        match self {
            ScheduleConfig::Constant => base,
            ScheduleConfig::Step { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| epoch >= m).count();
                base * gamma.powi(passed as i32)
            }
            ScheduleConfig::Cosine => {
                let t = ((epoch - 1) as f64 + progress) / epochs as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quadratic_run(cfg: &OptimizerConfig, steps: usize, split: Option<usize>) -> Vec<f32> {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).set_requires_grad(true);
        let mut opt = Optimizer::new(cfg, vec![("w".into(), p.shallow_clone())]);
        for i in 0..steps {
            if Some(i) == split {
                // Simulate a resume: a fresh optimizer with the saved state.
                let saved = opt.state_tensors().into_iter().map(|(k, v)| (k, v.copy())).collect();
                opt = Optimizer::new(cfg, vec![("w".into(), p.shallow_clone())]);
                opt.load_state(saved).unwrap();
            }
            let loss = (&p * &p * Tensor::from_slice(&[1.0f32, 3.0, 0.5])).sum(Kind::Float);
            opt.backward_step(&loss).unwrap();
        }
        Vec::<f32>::try_from(p.detach()).unwrap()
    }

    #[test]
    fn sgd_matches_hand_computed_steps() {
        // p=1, grad of p^2 is 2p; wd 0.1 -> d = 2p + 0.1p = 2.1p; momentum 0.9, lr 0.1.
        let cfg = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.1, nesterov: false };
        let p = quadratic_run(&cfg, 2, None)[0];
        let (mut w, mut buf) = (1.0f64, 0.0f64);
        for i in 0..2 {
            let d = 2.0 * w + 0.1 * w;
            buf = if i == 0 { d } else { 0.9 * buf + d };
            w -= 0.1 * buf;
        }
        assert!((p as f64 - w).abs() < 1e-6, "{p} vs {w}");
    }

    #[test]
    fn adam_matches_hand_computed_steps() {
        let cfg = OptimizerConfig::Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, weight_decay: 0.0 };
        let p = quadratic_run(&cfg, 3, None)[1];
        let (mut w, mut m, mut v) = (-2.0f64, 0.0f64, 0.0f64);
        for t in 1..=3 {
            let g = 6.0 * w;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let denom = v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt() + 1e-8;
            w -= 0.01 / (1.0 - 0.9f64.powi(t)) * m / denom;
        }
        assert!((p as f64 - w).abs() < 1e-6, "{p} vs {w}");
    }

    #[test]
    fn resuming_from_saved_state_is_exact() {
        for cfg in [
            OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 3.5e-3, nesterov: true },
            OptimizerConfig::Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, weight_decay: 1e-4 },
        ] {
            assert_eq!(quadratic_run(&cfg, 6, None), quadratic_run(&cfg, 6, Some(3)), "{cfg:?}");
        }
    }
}
