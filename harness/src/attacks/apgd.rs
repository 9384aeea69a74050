//! Auto-PGD (APGD) in the L∞ threat model (SPEC §3; Croce & Hein 2020, "Reliable evaluation of
//! adversarial robustness with an ensemble of diverse parameter-free attacks", arXiv:2003.01690,
//! Algorithm 1 and §3): signed-gradient ascent with momentum whose step size halves at
//! checkpoints when the ascent stalls, restarting from the best point found. Two variants, as
//! AutoAttack runs them: APGD-CE (cross-entropy) and APGD-T (the targeted DLR loss against each
//! of the nine runner-up classes in turn).
//!
//! Everything is batched: each run works on the examples that are not broken yet, with
//! per-example step sizes, best losses and best points, and drops an example from the run as
//! soon as one of its iterates is misclassified (its later iterates could not change the
//! outcome, and the runs of the other examples do not depend on it).

use tch::{Kind, Tensor};

use super::trace::{still_rising, window};
use super::{project, Attack, Trace, Traced};
use crate::losses;
use crate::models::Classifier;
use crate::{Error, Result};

/// The momentum weight α of the update (paper §3.2: α = 0.75; α = 1 on the first step).
const MOMENTUM: f64 = 0.75;

/// The denominator guard of the normalised random start, as in the DLR loss.
const TINY: f64 = 1e-12;

/// The objective APGD ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApgdLoss {
    /// Cross-entropy with the true label (APGD-CE).
    Ce,
    /// The targeted DLR loss `-(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2 + 1e-12)` (APGD-T), one
    /// run per target t over the classes ranked 2nd, 3rd, … by the clean logits: `targets` of
    /// them (at most K - 1).
    DlrTargeted {
        /// Number of target classes (9 in AutoAttack's standard version).
        targets: usize,
    },
}

/// APGD in the L∞ ball (Croce & Hein 2020, Algorithm 1).
///
/// Each run starts at `x + eps · t / ‖t‖∞`, t ~ U(-1, 1)ⁿ per example (clamped to [0, 1]), with
/// step size η = 2·eps, and iterates
/// `z = P(x_k + η sign ∇f(x_k))`, `x_{k+1} = P(x_k + α (z - x_k) + (1 - α)(x_k - x_{k-1}))`
/// (α = 1 on the first step, 0.75 afterwards; P the projection onto the ball and [0, 1]). At the
/// checkpoints (paper §3.1, `checkpoints`) the step of an example is halved, and its
/// iterate reset to its best point so far, when (1) its loss increased in at most `rho` of the
/// steps since the previous checkpoint, or (2) its step was not halved at the previous
/// checkpoint and its best loss has not improved since then. Where the paper leaves room, the
/// official `autopgd_base.py` (fra31/auto-attack) decides: increases are counted along the
/// trace of iterate losses (the first step against 0, the step after a restart against the
/// iterate before it), and condition (2) is not applied at the first checkpoint.
///
/// An example counts as broken when any iterate of any run (the random start included) is
/// misclassified; the returned point is then that first misclassified iterate. Examples the
/// model misclassifies already are returned unchanged and flagged. For the others the returned
/// point is the highest-loss point found over all runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Apgd {
    /// L∞ radius.
    pub eps: f64,
    /// Iterations N per run (100 in AutoAttack).
    pub iterations: usize,
    /// The objective.
    pub loss: ApgdLoss,
    /// ρ of the step-size condition (1) (0.75).
    pub rho: f64,
    /// Runs from fresh random starts (per target for APGD-T); 1 in AutoAttack's standard version.
    pub restarts: usize,
}

impl Apgd {
    /// APGD-CE with AutoAttack's standard settings: 100 iterations, ρ = 0.75, one run.
    pub fn ce(eps: f64) -> Apgd {
        Apgd { eps, iterations: 100, loss: ApgdLoss::Ce, rho: 0.75, restarts: 1 }
    }

    /// APGD-T with AutoAttack's standard settings: 9 target classes, 100 iterations and one run
    /// per target, ρ = 0.75.
    pub fn targeted(eps: f64) -> Apgd {
        Apgd { eps, iterations: 100, loss: ApgdLoss::DlrTargeted { targets: 9 }, rho: 0.75, restarts: 1 }
    }

    /// Per-example loss values (not detached).
    fn loss_values(&self, logits: &Tensor, y: &Tensor, target: Option<&Tensor>) -> Result<Tensor> {
        match target {
            None => losses::ce(logits, y),
            Some(t) => losses::dlr_targeted(logits, y, t),
        }
    }

    /// Loss, input gradient (when `need_grad`) and misclassification flags at `xk`.
    fn evaluate(
        &self,
        model: &dyn Classifier,
        xk: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        need_grad: bool,
    ) -> Result<(Tensor, Option<Tensor>, Tensor)> {
        if need_grad {
            let xa = xk.f_detach()?.f_requires_grad_(true)?;
            let logits = model.logits(&xa, false)?;
            let loss = self.loss_values(&logits, y, target)?;
            let total = loss.f_sum(loss.f_kind()?)?;
            let grad = super::input_gradient(&total, &xa)?;
            // A NaN gradient entry would make the iterate NaN; it carries no direction anyway.
            let grad = grad.f_nan_to_num(0.0, None, None)?;
            let wrong = logits.f_detach()?.f_argmax(-1, false)?.f_ne_tensor(y)?;
            Ok((loss.f_detach()?, Some(grad), wrong))
        } else {
            tch::no_grad(|| {
                let logits = model.logits(xk, false)?;
                let loss = self.loss_values(&logits, y, target)?;
                let wrong = logits.f_argmax(-1, false)?.f_ne_tensor(y)?;
                Ok((loss, None, wrong))
            })
        }
    }

    /// One run of Algorithm 1 on the examples `active` (indices into the batch), against
    /// `target` (per batch example) or on the cross-entropy; updates `acc`.
    fn run(
        &self,
        model: &dyn Classifier,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        active: &Tensor,
        acc: &mut Accumulator,
    ) -> Result<()> {
        let n_iter = self.iterations;
        let xa = x.f_index_select(0, active)?;
        let ya = y.f_index_select(0, active)?;
        let ta = match target {
            Some(t) => Some(t.f_index_select(0, active)?),
            None => None,
        };
        let n = active.size()[0];

        // Random start x + eps t / ‖t‖∞, t ~ U(-1, 1), clamped to [0, 1].
        let t = xa.f_rand_like()?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
        let norm = per_example(&t.f_abs()?.f_flatten(1, -1)?.f_amax([1], false)?.f_add_scalar(TINY)?, x.dim())?;
        let x0 = project(&xa.f_add(&t.f_div(&norm)?.f_mul_scalar(self.eps)?)?, &xa, self.eps)?;

        let (f0, g0, wrong0) = self.evaluate(model, &x0, &ya, ta.as_ref(), n_iter > 0)?;
        let g0 = match g0 {
            Some(g) => g,
            None => x0.f_zeros_like()?,
        };
        let mut s = RunState {
            idx: active.shallow_clone(),
            x: xa,
            y: ya,
            target: ta,
            xprev: x0.shallow_clone(),
            xk: x0.shallow_clone(),
            grad: g0.shallow_clone(),
            xmax: x0,
            gmax: g0,
            step: Tensor::f_full([n], 2.0 * self.eps, (x.f_kind()?, x.device()))?,
            window: window(n_iter + 1),
            ctl: StepControl::new(&f0)?,
        };
        if !acc.retire(&mut s, &wrong0)? {
            return Ok(());
        }

        let schedule = checkpoints(n_iter);
        let mut next_check = 1;
        for k in 1..=n_iter {
            let alpha = if k == 1 { 1.0 } else { MOMENTUM };
            let step = per_example(&s.step, x.dim())?;
            let z = project(&s.xk.f_add(&s.grad.f_sign()?.f_mul(&step)?)?, &s.x, self.eps)?;
            let moved =
                s.xk.f_add(&z.f_sub(&s.xk)?.f_mul_scalar(alpha)?)?
                    .f_add(&s.xk.f_sub(&s.xprev)?.f_mul_scalar(1.0 - alpha)?)?;
            let xnew = project(&moved, &s.x, self.eps)?;

            let (f, g, wrong) = self.evaluate(model, &xnew, &s.y, s.target.as_ref(), k < n_iter)?;
            let better = s.ctl.record(&f)?;
            // The convergence windows over the path's points 0..=n_iter (point k is iterate k).
            let points = n_iter + 1;
            if let Some(w) = window(points) {
                if k + 2 * w >= points && k + w < points {
                    s.ctl.early = s.ctl.early.f_add(&f)?;
                } else if k + w >= points {
                    s.ctl.late = s.ctl.late.f_add(&f)?;
                }
            }
            let better_x = per_example(&better, x.dim())?;
            s.xmax = xnew.f_where_self(&better_x, &s.xmax)?;
            if let Some(g) = g {
                s.gmax = g.f_where_self(&better_x, &s.gmax)?;
                s.grad = g;
            }
            s.xprev = std::mem::replace(&mut s.xk, xnew);
            if !acc.retire(&mut s, &wrong)? {
                return Ok(());
            }

            if next_check < schedule.len() && k == schedule[next_check] {
                let window = (schedule[next_check] - schedule[next_check - 1]) as f64;
                next_check += 1;
                let halve = s.ctl.checkpoint(window, self.rho)?;
                let halve_x = per_example(&halve, x.dim())?;
                s.step = s.step.f_mul_scalar(0.5)?.f_where_self(&halve, &s.step)?;
                // Restart from the best point with its gradient.
                s.xk = s.xmax.f_where_self(&halve_x, &s.xk)?;
                s.grad = s.gmax.f_where_self(&halve_x, &s.grad)?;
            }
        }
        acc.keep_best(&s)
    }
}

/// The iterations after which APGD checks its step size, as `autopgd_base.py` schedules them
/// (the paper's `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`, in whole iterations): the
/// first window is `max(⌊0.22 N⌋, 1)` iterations, each next one `max(⌊0.03 N⌋, 1)` shorter down
/// to `max(⌊0.06 N⌋, 1)`; checkpoints at the windows' ends up to N. N = 100 gives
/// 0, 22, 41, 57, 70, 80, 87, 93, 99.
pub(crate) fn checkpoints(iterations: usize) -> Vec<usize> {
    // In f64 and truncated, as Python's `int(0.22 * n_iter)`.
    let part = |f: f64| ((f * iterations as f64) as usize).max(1);
    let (first, shrink, shortest) = (part(0.22), part(0.03), part(0.06));
    let (mut w, mut window) = (vec![0], first);
    while w[w.len() - 1] + window <= iterations {
        w.push(w[w.len() - 1] + window);
        window = window.saturating_sub(shrink).max(shortest);
    }
    w
}

/// The step-size decision at a checkpoint (paper §3.1), per example: halve when (1) the loss
/// increased in at most `rho · window` of the `window` steps since the previous checkpoint
/// (`increases` counts them), or (2) the step was not halved at the previous checkpoint and the
/// best loss `fmax` has not improved on its value `fmax_last` there.
fn halve_step(
    increases: &Tensor,
    window: f64,
    rho: f64,
    halved_last: &Tensor,
    fmax: &Tensor,
    fmax_last: &Tensor,
) -> Result<Tensor> {
    let oscillating = increases.f_le(rho * window)?;
    let stalled = halved_last.f_logical_not()?.f_logical_and(&fmax.f_le_tensor(fmax_last)?)?;
    Ok(oscillating.f_logical_or(&stalled)?)
}

/// The per-example loss bookkeeping of APGD's step-size rule, as `autopgd_base.py` keeps it.
struct StepControl {
    /// The previous iterate's loss, which the next one is compared with. It starts at 0: the
    /// reference's first oscillation count compares `loss_steps[0]` with `loss_steps[-1]`, a
    /// slot still at 0 then. A restart from the best point does not reset it: increases are
    /// counted along the trace of iterate losses.
    fk: Tensor,
    /// Steps since the last checkpoint at which the loss increased.
    increases: Tensor,
    /// The best loss so far.
    fmax: Tensor,
    /// `fmax` at the last checkpoint.
    fmax_last: Tensor,
    /// Whether the step was halved at the last checkpoint: true at the start, as the
    /// reference's `reduced_last_check` starts at ones, so condition (2) never applies at the
    /// first checkpoint.
    halved_last: Tensor,
    /// The lowest loss of the path and the loss summed over the path's last two windows: the
    /// run's convergence, read by the incomplete-optimization indicator ([`super::trace`]).
    fmin: Tensor,
    early: Tensor,
    late: Tensor,
}

impl StepControl {
    /// The state after the start point, whose losses are `f0`.
    fn new(f0: &Tensor) -> Result<StepControl> {
        Ok(StepControl {
            fk: f0.f_zeros_like()?,
            increases: f0.f_zeros_like()?,
            fmax: f0.shallow_clone(),
            fmax_last: f0.shallow_clone(),
            halved_last: f0.f_ones_like()?.f_to_kind(Kind::Bool)?,
            fmin: f0.shallow_clone(),
            early: f0.f_zeros_like()?,
            late: f0.f_zeros_like()?,
        })
    }

    /// Records the losses `f` of a new iterate; returns where they beat the best so far.
    fn record(&mut self, f: &Tensor) -> Result<Tensor> {
        let up = f.f_gt_tensor(&self.fk)?;
        self.increases = self.increases.f_add(&up.f_to_kind(self.increases.f_kind()?)?)?;
        let better = f.f_gt_tensor(&self.fmax)?;
        self.fmax = f.f_where_self(&better, &self.fmax)?;
        self.fmin = self.fmin.f_minimum(f)?;
        self.fk = f.shallow_clone();
        Ok(better)
    }

    /// The decision at a checkpoint `window` steps after the previous one: where to halve.
    fn checkpoint(&mut self, window: f64, rho: f64) -> Result<Tensor> {
        let halve = halve_step(&self.increases, window, rho, &self.halved_last, &self.fmax, &self.fmax_last)?;
        self.halved_last = halve.shallow_clone();
        self.fmax_last = self.fmax.shallow_clone();
        self.increases = self.increases.f_zeros_like()?;
        Ok(halve)
    }

    /// Keeps the examples at positions `keep`.
    fn keep(&mut self, keep: &Tensor) -> Result<()> {
        for t in [
            &mut self.fk,
            &mut self.increases,
            &mut self.fmax,
            &mut self.fmax_last,
            &mut self.halved_last,
            &mut self.fmin,
            &mut self.early,
            &mut self.late,
        ] {
            *t = t.f_index_select(0, keep)?;
        }
        Ok(())
    }
}

/// `[n]` → `[n, 1, …, 1]` with `dims` dimensions in all, to broadcast over images.
fn per_example(t: &Tensor, dims: usize) -> Result<Tensor> {
    let mut shape = vec![-1i64];
    shape.resize(dims.max(1), 1);
    Ok(t.f_view(shape.as_slice())?)
}

/// The per-example state of one run, over the examples still in it.
struct RunState {
    /// Their indices in the batch.
    idx: Tensor,
    /// Clean inputs, labels and targets.
    x: Tensor,
    y: Tensor,
    target: Option<Tensor>,
    /// x_{k-1}, x_k and ∇f(x_k) (the point the next step starts from).
    xprev: Tensor,
    xk: Tensor,
    grad: Tensor,
    /// The best point so far and its gradient.
    xmax: Tensor,
    gmax: Tensor,
    /// Step sizes η.
    step: Tensor,
    /// The convergence test's window ([`window`]) over this run's points.
    window: Option<usize>,
    /// The losses the step-size rule reads.
    ctl: StepControl,
}

impl RunState {
    /// Keeps the examples at positions `keep`.
    fn keep(&mut self, keep: &Tensor) -> Result<()> {
        for t in [
            &mut self.idx,
            &mut self.x,
            &mut self.y,
            &mut self.xprev,
            &mut self.xk,
            &mut self.grad,
            &mut self.xmax,
            &mut self.gmax,
            &mut self.step,
        ] {
            *t = t.f_index_select(0, keep)?;
        }
        self.ctl.keep(keep)?;
        if let Some(t) = self.target.as_mut() {
            *t = t.f_index_select(0, keep)?;
        }
        Ok(())
    }
}

/// What the runs produce for the whole batch.
struct Accumulator {
    /// The returned points: the breaking iterate, else the best point so far.
    out: Tensor,
    /// True once an example is broken (or misclassified clean).
    broken: Tensor,
    /// The best loss so far of the unbroken examples (float32, -∞ before any run).
    best: Tensor,
    /// Examples whose loss was still rising at the end of a run ([`super::trace`]).
    incomplete: Tensor,
}

impl Accumulator {
    /// Records the examples of `s` misclassified at `s.xk` (per `wrong`) as broken at that
    /// point and drops them from the run; false when none is left.
    fn retire(&mut self, s: &mut RunState, wrong: &Tensor) -> Result<bool> {
        if wrong.f_any()?.int64_value(&[]) == 0 {
            return Ok(true);
        }
        let hit = wrong.f_nonzero()?.f_squeeze_dim(1)?;
        let orig = s.idx.f_index_select(0, &hit)?;
        let _ = self.out.f_index_copy_(0, &orig, &s.xk.f_index_select(0, &hit)?)?;
        let _ = self.broken.f_index_fill_(0, &orig, 1i64)?;
        let keep = wrong.f_logical_not()?.f_nonzero()?.f_squeeze_dim(1)?;
        s.keep(&keep)?;
        Ok(s.idx.size()[0] > 0)
    }

    /// At the end of a run: keeps, per surviving example, its best point if its loss beats the
    /// best of the earlier runs.
    fn keep_best(&mut self, s: &RunState) -> Result<()> {
        if let Some(w) = s.window {
            let rising = still_rising(&s.ctl.early, &s.ctl.late, &s.ctl.fmin, &s.ctl.fmax, w)?;
            let was = self.incomplete.f_index_select(0, &s.idx)?;
            let _ = self.incomplete.f_index_copy_(0, &s.idx, &was.f_logical_or(&rising)?)?;
        }
        let fmax = s.ctl.fmax.f_to_kind(Kind::Float)?;
        let old = self.best.f_index_select(0, &s.idx)?;
        let better = fmax.f_gt_tensor(&old)?;
        let _ = self.best.f_index_copy_(0, &s.idx, &fmax.f_where_self(&better, &old)?)?;
        let old_x = self.out.f_index_select(0, &s.idx)?;
        let new_x = s.xmax.f_where_self(&per_example(&better, s.xmax.dim())?, &old_x)?;
        let _ = self.out.f_index_copy_(0, &s.idx, &new_x)?;
        Ok(())
    }
}

impl Attack for Apgd {
    fn id(&self) -> String {
        match self.loss {
            ApgdLoss::Ce => "apgd_ce".into(),
            ApgdLoss::DlrTargeted { .. } => "apgd_t".into(),
        }
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let t = self.perturb_traced(model, x, y)?;
        Ok((t.adv, t.flags))
    }

    /// APGD returns an example's breaking iterate as soon as one is found, so its trace's
    /// `fooled` is its broken flags; `incomplete` ORs the convergence test over its runs.
    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        if let ApgdLoss::DlrTargeted { .. } = self.loss {
            let k = model.num_classes();
            if k < 4 {
                return Err(Error::Invalid(format!(
                    "apgd_t: the targeted DLR loss needs at least 4 classes (it normalises by \
                     z_π1 - (z_π3 + z_π4)/2), but the model has {k}; use apgd_ce instead"
                )));
            }
        }
        let _frozen = model.freeze();
        let x = x.f_detach()?;
        let y = y.f_detach()?;
        let b = x.size().first().copied().unwrap_or(0);
        let clean = tch::no_grad(|| model.logits(&x, false))?;
        let broken = clean.f_argmax(-1, false)?.f_ne_tensor(&y)?;
        let mut acc = Accumulator {
            out: x.copy(),
            broken,
            best: Tensor::f_full([b], f64::NEG_INFINITY, (Kind::Float, x.device()))?,
            incomplete: Tensor::f_zeros([b], (Kind::Bool, x.device()))?,
        };
        let targets: Vec<Option<Tensor>> = match self.loss {
            ApgdLoss::Ce => (0..self.restarts).map(|_| None).collect(),
            ApgdLoss::DlrTargeted { targets } => {
                let classes = clean.size().get(1).copied().unwrap_or(0);
                let ranked = clean.f_argsort(1, true)?;
                let mut runs = Vec::new();
                for rank in 1..=(targets as i64).min(classes - 1) {
                    let t = ranked.f_select(1, rank)?;
                    for _ in 0..self.restarts {
                        runs.push(Some(t.shallow_clone()));
                    }
                }
                runs
            }
        };
        for target in &targets {
            let active = acc.broken.f_logical_not()?.f_nonzero()?.f_squeeze_dim(1)?;
            if active.size()[0] == 0 {
                break;
            }
            self.run(model, &x, &y, target.as_ref(), &active, &mut acc)?;
        }
        let trace = Trace {
            fooled: acc.broken.shallow_clone(),
            incomplete: window(self.iterations + 1).map(|_| acc.incomplete),
        };
        Ok(Traced { adv: acc.out, flags: Some(acc.broken), trace: Some(trace), stages: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::attacks::Pgd;
    use crate::checkpoint::digest;
    use crate::models::layers::test_support::{build, rng_lock, smallcnn_random_head, Scaled};
    use crate::models::Arch;

    fn inputs(seed: i64, b: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::rand([b, 1, 28, 28], (Kind::Float, Device::Cpu))
    }

    fn predictions(model: &dyn Classifier, x: &Tensor) -> Tensor {
        tch::no_grad(|| model.logits(x, false).unwrap().argmax(-1, false))
    }

    /// Examples classified correctly at `adv` and not flagged.
    fn robust(model: &dyn Classifier, adv: &Tensor, flags: Option<&Tensor>, y: &Tensor) -> i64 {
        let mut ok = predictions(model, adv).eq_tensor(y);
        if let Some(f) = flags {
            ok = ok.logical_and(&f.logical_not());
        }
        ok.sum(Kind::Int64).int64_value(&[])
    }

    fn check_output(x: &Tensor, adv: &Tensor, eps: f64, what: &str) {
        assert_eq!(adv.size(), x.size(), "{what}");
        assert!(bool::try_from(adv.isfinite().all()).unwrap(), "{what}: not finite");
        let dist = f64::try_from((adv - x).abs().max()).unwrap();
        assert!(dist <= eps + 1e-6, "{what}: L∞ distance {dist} > {eps}");
        let (lo, hi) = (f64::try_from(adv.min()).unwrap(), f64::try_from(adv.max()).unwrap());
        assert!(lo >= 0.0 && hi <= 1.0, "{what}: values in [{lo}, {hi}]");
    }

    #[test]
    fn checkpoints_follow_the_paper() {
        assert_eq!(checkpoints(100), [0, 22, 41, 57, 70, 80, 87, 93, 99]);
        // ⌈p_j · 200⌉: the p_j are exact hundredths.
        assert_eq!(checkpoints(200), [0, 44, 82, 114, 140, 160, 174, 186, 198]);
        let short = checkpoints(5);
        assert_eq!(short[0], 0);
        assert!(short.windows(2).all(|w| w[0] < w[1]) && *short.last().unwrap() <= 5, "{short:?}");
    }

    /// `autopgd_base.py`'s step-size bookkeeping, transcribed for one example's loss trace
    /// (`f0` at the start, `trace[i]` after step i + 1): the iterations (1-based) at which it
    /// halves the step.
    fn reference_halvings(f0: f32, trace: &[f32], n_iter: usize) -> Vec<usize> {
        let n_iter_2 = ((0.22 * n_iter as f64) as usize).max(1);
        let n_iter_min = ((0.06 * n_iter as f64) as usize).max(1);
        let size_decr = ((0.03 * n_iter as f64) as usize).max(1);
        let mut loss_steps = vec![0.0f32; n_iter];
        let (mut loss_best, mut loss_best_last_check, mut reduced_last_check) = (f0, f0, true);
        let (mut k, mut counter3, mut out) = (n_iter_2, 0, vec![]);
        for i in 0..n_iter {
            let y1 = trace[i];
            loss_steps[i] = y1;
            if y1 > loss_best {
                loss_best = y1;
            }
            counter3 += 1;
            if counter3 == k {
                // check_oscillation: t = Σ_{c < k} [loss_steps[i − c] > loss_steps[i − c − 1]],
                // a negative index wrapping around as in Python.
                let at = |j: isize| loss_steps[j.rem_euclid(n_iter as isize) as usize];
                let t = (0..k).filter(|&c| at(i as isize - c as isize) > at(i as isize - c as isize - 1)).count();
                let oscillation = (t as f64) <= k as f64 * 0.75;
                let no_improvement = !reduced_last_check && loss_best_last_check >= loss_best;
                let reduce = oscillation || no_improvement;
                reduced_last_check = reduce;
                loss_best_last_check = loss_best;
                if reduce {
                    out.push(i + 1);
                }
                k = k.saturating_sub(size_decr).max(n_iter_min);
                counter3 = 0;
            }
        }
        out
    }

    #[test]
    fn the_step_size_rule_halves_where_autopgd_base_does() {
        // Loss traces that exercise each difference from the paper's wording: a first step
        // compared with 0 (negative DLR-like losses never "increase" there), a stall at the
        // first checkpoint (not halved: condition (2) starts disabled), and restarts (increases
        // still counted from the previous iterate).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let n_iter = 100;
        let mut traces: Vec<(f32, Vec<f32>)> = vec![];
        // Flat at the start value: at most one increase per window, halved at every checkpoint.
        traces.push((0.5, vec![0.5; n_iter]));
        // The first step is compared with 0, not with the start: from −1 to −0.5 is no
        // increase, so the first window has 16 of 22 (≤ 16.5: halve), not 17.
        traces.push((
            -1.0,
            (0..n_iter)
                .map(|i| match i {
                    0 => -0.5,
                    1..=16 => -0.5 + 0.01 * i as f32,
                    _ => -0.34 - 0.01 * (i as f32 - 16.0),
                })
                .collect(),
        ));
        // Below the start for the whole first window yet rising: condition (1) does not hold and
        // condition (2), "best loss not improved", is not applied at the first checkpoint.
        traces.push((1.0, (0..n_iter).map(|i| (0.04 * i as f32).min(0.95) + 0.0001 * i as f32).collect()));
        // Noisy random walks around different trends.
        for trend in [-0.01f32, 0.0, 0.004, 0.02] {
            let mut v = next();
            let f0 = v;
            let trace = (0..n_iter)
                .map(|_| {
                    v += trend + 0.1 * (next() - 0.5);
                    v
                })
                .collect();
            traces.push((f0, trace));
        }
        let schedule = checkpoints(n_iter);
        let f0 = Tensor::from_slice(&traces.iter().map(|t| t.0).collect::<Vec<f32>>());
        let mut ctl = StepControl::new(&f0).unwrap();
        let mut ours: Vec<Vec<usize>> = vec![vec![]; traces.len()];
        let mut next_check = 1;
        for k in 1..=n_iter {
            let f = Tensor::from_slice(&traces.iter().map(|t| t.1[k - 1]).collect::<Vec<f32>>());
            let _ = ctl.record(&f).unwrap();
            if next_check < schedule.len() && k == schedule[next_check] {
                let window = (schedule[next_check] - schedule[next_check - 1]) as f64;
                next_check += 1;
                let halve = Vec::<bool>::try_from(&ctl.checkpoint(window, 0.75).unwrap()).unwrap();
                for (e, h) in halve.iter().enumerate() {
                    if *h {
                        ours[e].push(k);
                    }
                }
            }
        }
        for (e, (f0, trace)) in traces.iter().enumerate() {
            assert_eq!(ours[e], reference_halvings(*f0, trace, n_iter), "trace {e}");
        }
        assert_eq!(ours[0], &schedule[1..]);
        assert!(ours[1].contains(&22), "{:?}", ours[1]);
        assert!(!ours[2].contains(&22), "{:?}", ours[2]);
    }

    #[test]
    fn step_halves_on_oscillation_or_stall() {
        let f = |v: &[f32]| Tensor::from_slice(v);
        let b = |v: &[bool]| Tensor::from_slice(v);
        // Window of 22 steps: condition (1) holds up to 16.5 increases.
        let increases = f(&[16.0, 17.0, 22.0, 22.0, 20.0]);
        let halved_last = b(&[false, false, false, true, false]);
        let fmax = f(&[1.0, 1.0, 1.0, 1.0, 2.0]);
        let fmax_last = f(&[1.0, 0.5, 1.0, 1.0, 1.0]);
        let halve = halve_step(&increases, 22.0, 0.75, &halved_last, &fmax, &fmax_last).unwrap();
        // 0: oscillating; 1: improving often and overall; 2: stalled, not halved last time;
        // 3: stalled but halved last time; 4: improving.
        assert_eq!(Vec::<bool>::try_from(&halve).unwrap(), [true, false, true, false, false]);
    }

    #[test]
    fn outputs_stay_in_the_ball_flags_match_and_the_model_is_untouched() {
        let _g = rng_lock();
        let model = smallcnn_random_head(11);
        let x = inputs(12, 12);
        // Half the labels are the model's predictions, half are shifted (misclassified clean).
        let pred = predictions(&model, &x);
        let shift = Tensor::from_slice(&[0i64, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
        let y = (&pred + &shift).remainder(10);
        let before = digest(&model).unwrap();
        for eps in [0.03, 0.3] {
            let attacks = [
                Apgd { iterations: 25, ..Apgd::ce(eps) },
                Apgd { iterations: 25, loss: ApgdLoss::DlrTargeted { targets: 3 }, ..Apgd::targeted(eps) },
            ];
            for attack in attacks {
                let what = format!("{} eps {eps}", attack.id());
                let (adv, flags) = attack.perturb(&model, &x, &y).unwrap();
                check_output(&x, &adv, eps, &what);
                let flags = flags.expect("APGD returns flags");
                assert_eq!(flags.kind(), Kind::Bool, "{what}");
                assert_eq!(flags.size(), [12], "{what}");
                let wrong = predictions(&model, &adv).ne_tensor(&y);
                // Misclassified at the returned point ⇔ flagged (the breaking iterate is returned).
                assert_eq!(Vec::<bool>::try_from(&wrong).unwrap(), Vec::<bool>::try_from(&flags).unwrap(), "{what}");
                // Clean-misclassified examples are flagged.
                let clean_wrong = pred.ne_tensor(&y);
                assert!(bool::try_from(flags.logical_or(&clean_wrong.logical_not()).all()).unwrap(), "{what}");
            }
        }
        assert_eq!(digest(&model).unwrap(), before, "APGD must not change the model");
        assert!(model.trainable().iter().all(|(_, p)| p.requires_grad()));
    }

    #[test]
    fn apgd_t_breaks_more_than_pgd_where_ce_gradients_vanish() {
        let _g = rng_lock();
        let scaled = Scaled { net: smallcnn_random_head(21), scale: 1e4 };
        let x = inputs(22, 24);
        let eps = 0.1;
        let y = predictions(&scaled, &x);
        let started = Instant::now();
        tch::manual_seed(23);
        let (adv, _) = Pgd::paper(eps, 20).perturb(&scaled, &x, &y).unwrap();
        let pgd = robust(&scaled, &adv, None, &y);
        tch::manual_seed(23);
        let (adv, flags) = Apgd::targeted(eps).perturb(&scaled, &x, &y).unwrap();
        check_output(&x, &adv, eps, "apgd_t scaled");
        let apgd_t = robust(&scaled, &adv, flags.as_ref(), &y);
        eprintln!(
            "logits x 1e4: PGD-20 robust {pgd}, APGD-T robust {apgd_t} of 24 ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        assert!(apgd_t < pgd, "APGD-T should break more than PGD-20 on saturated logits: robust {apgd_t} vs {pgd}");
    }

    #[test]
    fn apgd_ce_is_at_least_as_strong_as_pgd20() {
        let _g = rng_lock();
        let net = smallcnn_random_head(21);
        let x = inputs(22, 24);
        let y = predictions(&net, &x);
        // A radius at which PGD-20 leaves some examples robust.
        let eps = 0.005;
        let started = Instant::now();
        tch::manual_seed(24);
        let (adv, _) = Pgd::paper(eps, 20).perturb(&net, &x, &y).unwrap();
        let pgd = robust(&net, &adv, None, &y);
        tch::manual_seed(24);
        let (adv, flags) = Apgd::ce(eps).perturb(&net, &x, &y).unwrap();
        check_output(&x, &adv, eps, "apgd_ce");
        let apgd_ce = robust(&net, &adv, flags.as_ref(), &y);
        eprintln!("PGD-20 robust {pgd}, APGD-CE robust {apgd_ce} of 24 ({:.1} s)", started.elapsed().as_secs_f64());
        assert!(pgd > 0, "the radius should leave PGD-20 something to miss");
        assert!(apgd_ce <= pgd + 1, "APGD-CE robust {apgd_ce} vs PGD-20 robust {pgd}");
    }

    #[test]
    fn deterministic_given_the_seed() {
        let _g = rng_lock();
        let model = smallcnn_random_head(31);
        let x = inputs(32, 8);
        let y = predictions(&model, &x);
        for attack in [
            Apgd { iterations: 20, ..Apgd::ce(0.05) },
            Apgd { iterations: 20, loss: ApgdLoss::DlrTargeted { targets: 2 }, ..Apgd::targeted(0.05) },
        ] {
            let mut outs = Vec::new();
            for _ in 0..2 {
                tch::manual_seed(33);
                outs.push(attack.perturb(&model, &x, &y).unwrap());
            }
            assert!(outs[0].0.equal(&outs[1].0), "{}: outputs differ", attack.id());
            assert!(outs[0].1.as_ref().unwrap().equal(outs[1].1.as_ref().unwrap()), "{}", attack.id());
        }
    }

    #[test]
    fn ids_and_standard_settings() {
        let ce = Apgd::ce(8.0 / 255.0);
        let t = Apgd::targeted(8.0 / 255.0);
        assert_eq!((ce.id().as_str(), t.id().as_str()), ("apgd_ce", "apgd_t"));
        assert_eq!((ce.iterations, ce.rho, ce.restarts), (100, 0.75, 1));
        assert_eq!((t.iterations, t.loss, t.restarts), (100, ApgdLoss::DlrTargeted { targets: 9 }, 1));
    }

    #[test]
    fn apgd_t_needs_four_classes() {
        let model = build(Arch::SmallCnn, 3, 41);
        let _g = rng_lock();
        let x = Tensor::full([2, 1, 28, 28], 0.5, (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        match Apgd::targeted(0.1).perturb(&model, &x, &y) {
            Err(Error::Invalid(msg)) => assert!(msg.contains("at least 4 classes"), "{msg}"),
            Err(e) => panic!("expected Error::Invalid, got {e}"),
            Ok(_) => panic!("APGD-T on 3 classes must fail"),
        }
        // APGD-CE works on any number of classes.
        let (adv, _) = Apgd { iterations: 3, ..Apgd::ce(0.1) }.perturb(&model, &x, &y).unwrap();
        check_output(&x, &adv, 0.1, "apgd_ce 3 classes");
    }
}
