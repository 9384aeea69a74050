//! The L∞ Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient
//! black-box adversarial attack via random search", arXiv:1912.00049), configured as in
//! AutoAttack's standard version (SPEC §3): margin loss, p_init = 0.8, 5,000 iterations after
//! the stripe start, the square-size schedule not rescaled to the budget.
//!
//! Square is score-based: it only reads the model's logits (under `tch::no_grad`, never a
//! gradient), so it is immune to gradient masking. Every perturbation it proposes lies on a
//! vertex of the L∞ ball: each pixel of each channel is `x ± eps`, clamped to [0, 1].
//!
//! The search (paper Algorithm 1 with the L∞ sampling distribution of Algorithm 2):
//!
//! 1. Start from vertical stripes: every column of every channel gets one random sign,
//!    `x + eps · sign` with a sign tensor of shape `[N, C, 1, W]`, clamped to [0, 1]
//!    (the first query).
//! 2. Each iteration, for every example not yet misclassified, draw a square of side
//!    `s = max(round(sqrt(p · H · W)), 1)` at a uniformly random position (per example), and
//!    a fresh random sign per channel (per example); the candidate sets the perturbation to
//!    `eps · sign_c` on the square's pixels of channel c and keeps the current best elsewhere.
//! 3. One query per active example; the candidate replaces the current best when its margin
//!    `z_y − max_{j≠y} z_j` is lower (or when it is misclassified). Misclassified examples stop
//!    querying.
//!
//! Decisions where the paper, its code (max-andr/square-attack) and AutoAttack's port differ:
//!
//! - **Position.** The paper draws the square's corner uniformly from `{0, …, H − s}` (and
//!   likewise for columns); both reference implementations draw from `{0, …, H − s − 1}`,
//!   which never touches the last row and column after the start. We follow the paper
//!   (all positions), so the side only needs `s ≤ min(H, W)`: the side is clamped to
//!   `[1, min(H, W)]` (AutoAttack's current clamp; the H − 1 bound of max-andr's code exists
//!   only to keep its exclusive draw non-empty). For p ≤ 0.8 the clamp never binds.
//! - **Per-example squares.** As in the paper's code (and unlike AutoAttack's port, which
//!   shares one square and one sign vector across the batch), each example draws its own
//!   position and signs; the window mask is built with tensor comparisons against per-example
//!   offsets, no loop over examples.
//! - **Resampling.** As in the paper's code, a candidate identical to the current best (the
//!   square already holds exactly the drawn sign in every channel) is not queried as is: its
//!   sign vector is redrawn uniformly among the *other* sign vectors — the distribution that
//!   the reference's rejection loop converges to — without a loop or host sync. (For inputs in
//!   [0, 1] and eps > 0, `clamp(x + eps)` ≠ `clamp(x − eps)`, so a candidate differs from the
//!   best exactly when some sign in the window changes.) With more than 62 channels the
//!   redraw is a fresh uniform draw (it repeats the old vector with probability 2^−C).
//! - **Budget.** As in AutoAttack, `n_queries` is the number of iterations after the stripe
//!   start: an example that is never broken uses `n_queries + 1` model evaluations (AutoAttack
//!   standard: 5,001).
//! - **p schedule.** `p = p_init / 2^k` with k the number of breakpoints 10, 50, 200, 500,
//!   1000, 2000, 4000, 6000, 8000 strictly below the iteration index (0 for the first query
//!   after the start). AutoAttack builds Square with `resc_schedule=False`, so with 5,000
//!   iterations p halves after iterations 10, 50, 200, 500, 1000, 2000 and 4000 (SPEC §3);
//!   `rescale_schedule` maps the index onto a 10,000-query budget first
//!   (`int(it / n_queries · 10000)`, computed in f64 like the reference), as the Square
//!   paper's code and torchattacks' `resc_schedule=True` default do. (The harness before
//!   issue 19 rescaled inside AutoAttack, halving after 5, 25, 100, …: smaller squares
//!   earlier, a different and weaker search on robust models.)
//! - **Broken.** An example is broken when the model misclassifies it (`argmax z ≠ y`; margin
//!   < 0 up to ties); the returned flags are exactly that, at the returned point.
//! - **Side rounding.** `round` is Python's (ties to even).

use tch::{Device, Kind, Tensor};

use super::Attack;
use crate::models::Classifier;
use crate::{Error, Result};

/// The L∞ Square Attack (arXiv:1912.00049) with the margin loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Square {
    /// L∞ radius.
    pub eps: f64,
    /// Iterations after the stripe start (AutoAttack's `n_queries`: 5,000 in its standard
    /// version); an unbroken example costs `n_queries + 1` model evaluations.
    pub n_queries: usize,
    /// Initial fraction of pixels a square covers (0.8).
    pub p_init: f64,
    /// Maps the iteration index onto a 10,000-query schedule (`resc_schedule`; false in
    /// AutoAttack).
    pub rescale_schedule: bool,
}

/// What a [`Square::run`] found.
#[derive(Debug)]
pub struct SquareOutcome {
    /// The adversarial inputs (the best point found per example), within the L∞ ball of
    /// radius eps around the input and in [0, 1].
    pub adv: Tensor,
    /// Per-example `Kind::Bool` flags: the model misclassifies `adv`.
    pub broken: Tensor,
    /// Per-example number of model evaluations used (1 ..= n_queries + 1; exactly
    /// n_queries + 1 for examples that were not broken).
    pub queries: Vec<i64>,
}

impl Square {
    /// AutoAttack's standard configuration: 5,000 iterations, p_init = 0.8, the schedule not
    /// rescaled.
    pub fn standard(eps: f64) -> Square {
        Square { eps, n_queries: 5000, p_init: 0.8, rescale_schedule: false }
    }

    fn check(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(format!("square attack: {what}")));
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad(format!("eps must be finite and non-negative, got {}", self.eps));
        }
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return bad(format!("p_init must be in (0, 1], got {}", self.p_init));
        }
        if model.num_classes() < 2 {
            return bad(format!("needs at least 2 classes, the model has {}", model.num_classes()));
        }
        if x.dim() != 4 {
            return bad(format!("expects NCHW inputs, got shape {:?}", x.size()));
        }
        if y.size() != [x.size()[0]] {
            return bad(format!("labels of shape {:?} for {} inputs", y.size(), x.size()[0]));
        }
        Ok(())
    }

    /// Runs the attack on `(x, y)` (images in [0, 1], NCHW; labels): only logits are queried,
    /// in eval mode with the parameters frozen. Random draws come from libtorch's generator
    /// (seeded by the caller), so the result is deterministic given the seed.
    pub fn run(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<SquareOutcome> {
        self.check(model, x, y)?;
        let _frozen = model.freeze();
        tch::no_grad(|| self.search(model, &x.f_detach()?, &y.f_detach()?.f_to_kind(Kind::Int64)?))
    }

    fn search(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<SquareOutcome> {
        let (n, c, h, w) = x.size4()?;
        let dev = x.device();
        // Every pixel of every iterate is one of these two values (a vertex of the ball,
        // clamped): the state is the sign tensor `pos` (true: + eps).
        let lo = x.f_sub_scalar(self.eps)?.f_clamp(0.0, 1.0)?;
        let hi = x.f_add_scalar(self.eps)?.f_clamp(0.0, 1.0)?;
        if n == 0 {
            return Ok(SquareOutcome {
                adv: x.copy(),
                broken: y.f_zeros_like()?.f_to_kind(Kind::Bool)?,
                queries: vec![],
            });
        }

        // Query 1: vertical stripes.
        let mut pos = Tensor::f_rand([n, c, 1, w], (Kind::Float, dev))?
            .f_lt(0.5)?
            .f_expand([n, c, h, w], false)?
            .f_contiguous()?;
        let logits = model.logits(&hi.f_where_self(&pos, &lo)?, false)?;
        let mut broken = misclassified(&logits, y)?;
        let mut queries = Tensor::f_full([n], self.n_queries as i64 + 1, (Kind::Int64, dev))?;
        queries = queries.f_masked_fill(&broken, 1)?;

        // The active (unbroken) examples, compacted; `idx` maps them back to the batch.
        let mut idx = broken.f_logical_not()?.f_nonzero()?.f_view([-1])?;
        let mut pos_a = pos.f_index_select(0, &idx)?;
        let mut lo_a = lo.f_index_select(0, &idx)?;
        let mut hi_a = hi.f_index_select(0, &idx)?;
        let mut y_a = y.f_index_select(0, &idx)?;
        let mut margin_a = margin(&logits, y)?.f_index_select(0, &idx)?;

        let rows = Tensor::f_arange(h, (Kind::Int64, dev))?.f_view([1, 1, h, 1])?;
        let cols = Tensor::f_arange(w, (Kind::Int64, dev))?.f_view([1, 1, 1, w])?;
        let bits = channel_bits(c, dev)?;
        for it in 0..self.n_queries {
            let k = idx.size()[0];
            if k == 0 {
                break;
            }
            let s = square_side(p_schedule(self.p_init, it, self.n_queries, self.rescale_schedule), h, w);
            // The square's top-left corner, uniform over all positions, per example.
            let r0 = Tensor::f_randint(h - s + 1, [k, 1, 1, 1], (Kind::Int64, dev))?;
            let c0 = Tensor::f_randint(w - s + 1, [k, 1, 1, 1], (Kind::Int64, dev))?;
            let in_rows = rows.f_ge_tensor(&r0)?.f_logical_and(&rows.f_lt_tensor(&r0.f_add_scalar(s)?)?)?;
            let in_cols = cols.f_ge_tensor(&c0)?.f_logical_and(&cols.f_lt_tensor(&c0.f_add_scalar(s)?)?)?;
            let window = in_rows.f_logical_and(&in_cols)?; // [k, 1, h, w]
            let signs = Tensor::f_rand([k, c, 1, 1], (Kind::Float, dev))?.f_lt(0.5)?;
            // A candidate equal to the current best would waste a query: redraw its signs
            // among the other sign vectors.
            let changes = pos_a.f_ne_tensor(&signs)?.f_logical_and(&window)?.f_view([k, -1])?.f_any_dim(1, false)?;
            let stuck = changes.f_logical_not()?.f_view([k, 1, 1, 1])?;
            let signs = signs.f_logical_xor(&other_sign_flips(k, c, bits.as_ref(), dev)?.f_logical_and(&stuck)?)?;
            let pos_cand = signs.f_where_self(&window, &pos_a)?;
            let cand = hi_a.f_where_self(&pos_cand, &lo_a)?;

            let logits = model.logits(&cand, false)?;
            let m = margin(&logits, &y_a)?;
            let miscl = misclassified(&logits, &y_a)?;
            let accept = m.f_lt_tensor(&margin_a)?.f_logical_or(&miscl)?;
            margin_a = m.f_where_self(&accept, &margin_a)?;
            pos_a = pos_cand.f_where_self(&accept.f_view([k, 1, 1, 1])?, &pos_a)?;

            // The one host sync per iteration: did any example break?
            if miscl.f_any()?.f_int64_value(&[])? != 0 {
                let done = miscl.f_nonzero()?.f_view([-1])?;
                let done_global = idx.f_index_select(0, &done)?;
                pos = pos.f_index_copy(0, &done_global, &pos_a.f_index_select(0, &done)?)?;
                broken = broken.f_index_fill(0, &done_global, 1)?;
                // The start plus iterations 0..=it.
                queries = queries.f_index_fill(0, &done_global, it as i64 + 2)?;
                let keep = miscl.f_logical_not()?.f_nonzero()?.f_view([-1])?;
                idx = idx.f_index_select(0, &keep)?;
                pos_a = pos_a.f_index_select(0, &keep)?;
                lo_a = lo_a.f_index_select(0, &keep)?;
                hi_a = hi_a.f_index_select(0, &keep)?;
                y_a = y_a.f_index_select(0, &keep)?;
                margin_a = margin_a.f_index_select(0, &keep)?;
            }
        }
        if idx.size()[0] > 0 {
            pos = pos.f_index_copy(0, &idx, &pos_a)?;
        }
        let adv = hi.f_where_self(&pos, &lo)?;
        let queries = Vec::<i64>::try_from(&queries.f_to_device(Device::Cpu)?)?;
        Ok(SquareOutcome { adv, broken, queries })
    }
}

impl Attack for Square {
    fn id(&self) -> String {
        "square".into()
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let out = self.run(model, x, y)?;
        Ok((out.adv, Some(out.broken)))
    }
}

/// The fraction p of pixels a square covers at iteration `it` (0-based, the start excluded)
/// of `n_queries` iterations: `p_init / 2^k`, k the number of breakpoints 10, 50, 200, 500,
/// 1000, 2000, 4000, 6000, 8000 that the iteration index exceeds — the index itself
/// (AutoAttack, `resc_schedule=False`) or, with `rescale`, the index mapped onto a 10,000-query
/// budget (`int(it / n_queries · 10000)`).
pub(crate) fn p_schedule(p_init: f64, it: usize, n_queries: usize, rescale: bool) -> f64 {
    const BREAKPOINTS: [usize; 9] = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000];
    let scaled = if rescale { (it as f64 / n_queries.max(1) as f64 * 10000.0) as usize } else { it };
    let halvings = BREAKPOINTS.iter().filter(|&&b| scaled > b).count();
    p_init / f64::from(1u32 << halvings)
}

/// The side of the square covering a fraction `p` of an `h × w` image:
/// `round(sqrt(p · h · w))` (ties to even, as Python's `round`), clamped to `[1, min(h, w)]`.
pub(crate) fn square_side(p: f64, h: i64, w: i64) -> i64 {
    let s = (p * (h * w) as f64).sqrt().round_ties_even() as i64;
    s.clamp(1, h.min(w).max(1))
}

/// `z_y − max_{j≠y} z_j` per example.
fn margin(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let yi = y.f_unsqueeze(1)?;
    let zy = logits.f_gather(1, &yi, false)?.f_squeeze_dim(1)?;
    let (others, _) = logits.f_scatter_value(1, &yi, f64::NEG_INFINITY)?.f_max_dim(1, false)?;
    Ok(zy.f_sub(&others)?)
}

/// Per-example flags: the predicted class is not `y`.
fn misclassified(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(logits.f_argmax(-1, false)?.f_ne_tensor(y)?)
}

/// The bit masks `1 << i` of the channels, `[1, c]`, for [`other_sign_flips`] (None above 62
/// channels, where patterns are drawn bit by bit).
fn channel_bits(c: i64, dev: Device) -> Result<Option<Tensor>> {
    if c > 62 {
        return Ok(None);
    }
    let bits: Vec<i64> = (0..c).map(|i| 1i64 << i).collect();
    Ok(Some(Tensor::f_from_slice(&bits)?.f_to_device(dev)?.f_view([1, c])?))
}

/// `[k, c, 1, 1]` Bool flip patterns, uniform over the non-zero patterns (for c ≤ 62, `bits`
/// from [`channel_bits`]): XORed into a sign vector they give a uniform draw among the other
/// sign vectors. For c > 62, a uniform pattern (zero with probability 2^−c).
fn other_sign_flips(k: i64, c: i64, bits: Option<&Tensor>, dev: Device) -> Result<Tensor> {
    Ok(match bits {
        Some(bits) => {
            let code = Tensor::f_randint_low(1, 1i64 << c, [k, 1], (Kind::Int64, dev))?;
            code.f_bitwise_and_tensor(bits)?.f_ne(0)?.f_view([k, c, 1, 1])?
        }
        None => Tensor::f_rand([k, c, 1, 1], (Kind::Float, dev))?.f_lt(0.5)?,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::attacks::Pgd;
    use crate::models::layers::test_support::{rng_lock, smallcnn_random_head, Scaled};
    use crate::models::{Frozen, Network};

    const EPS: f64 = 0.1;

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    fn count(flags: &Tensor) -> i64 {
        flags.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[])
    }

    fn predict(model: &dyn Classifier, x: &Tensor) -> Tensor {
        tch::no_grad(|| model.logits(x, false).unwrap().argmax(-1, false))
    }

    /// Images well inside (0, 1): 0.5 plus noise in ±0.05, so x ± 0.1 is never clamped.
    fn interior(n: i64) -> Tensor {
        Tensor::rand([n, 1, 28, 28], (Kind::Float, Device::Cpu)) * 0.1 + 0.45
    }

    fn uniform(n: i64) -> Tensor {
        Tensor::rand([n, 1, 28, 28], (Kind::Float, Device::Cpu))
    }

    /// A classifier that checks every query is gradient-free, returns detached logits (a
    /// backward pass through them would fail), and counts calls and queried rows.
    struct Probe {
        net: Network,
        calls: Cell<usize>,
        rows: Cell<i64>,
        inputs: RefCell<Vec<Tensor>>,
        keep_inputs: bool,
    }

    impl Probe {
        fn new(net: Network, keep_inputs: bool) -> Probe {
            Probe { net, calls: Cell::new(0), rows: Cell::new(0), inputs: RefCell::new(vec![]), keep_inputs }
        }
    }

    impl Classifier for Probe {
        fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
            assert!(!train, "square must query in eval mode");
            assert!(!x.requires_grad(), "square queried an input that tracks gradients");
            let leaf = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            assert!(!(&leaf * 2.0).requires_grad(), "square queried the model with grad mode on");
            self.calls.set(self.calls.get() + 1);
            self.rows.set(self.rows.get() + x.size()[0]);
            if self.keep_inputs {
                self.inputs.borrow_mut().push(x.copy());
            }
            Ok(self.net.logits(x, false)?.detach())
        }
        fn device(&self) -> Device {
            self.net.device()
        }
        fn num_classes(&self) -> usize {
            self.net.num_classes()
        }
        fn freeze(&self) -> Frozen {
            self.net.freeze()
        }
    }

    /// A classifier that ignores its input (class 0 always wins by 1) and records its queries.
    struct Constant {
        inputs: RefCell<Vec<Tensor>>,
    }

    impl Classifier for Constant {
        fn logits(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
            self.inputs.borrow_mut().push(x.copy());
            let n = x.size()[0];
            let first = Tensor::ones([n, 1], (Kind::Float, Device::Cpu));
            Ok(Tensor::cat(&[first, Tensor::zeros([n, 9], (Kind::Float, Device::Cpu))], 1))
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn num_classes(&self) -> usize {
            10
        }
        fn freeze(&self) -> Frozen {
            Frozen::new(Vec::new())
        }
    }

    #[test]
    fn stays_on_the_vertices_of_the_ball_and_leaves_the_model_alone() {
        let _g = rng_lock();
        let model = smallcnn_random_head(1);
        let before = crate::checkpoint::digest(&model).unwrap();
        let attack = Square { eps: EPS, n_queries: 100, p_init: 0.8, rescale_schedule: false };

        let x = interior(12);
        let y = predict(&model, &x);
        let out = attack.run(&model, &x, &y).unwrap();
        assert_eq!(out.adv.size(), x.size());
        assert!(!out.adv.requires_grad());
        assert_eq!(out.adv.isfinite().all().int64_value(&[]), 1);
        let delta = &out.adv - &x;
        assert!(max_abs(&delta) <= EPS + 1e-6);
        // No clamping here: every pixel is exactly at ±eps.
        assert!(max_abs(&(delta.abs() - EPS)) <= 1e-6, "a pixel is not at a vertex");

        // Inputs touching 0 and 1: in the ball, in [0, 1], each pixel at clamp(x ± eps).
        let x = uniform(12);
        let y = predict(&model, &x);
        let out = attack.run(&model, &x, &y).unwrap();
        assert_eq!(out.adv.isfinite().all().int64_value(&[]), 1);
        assert!(max_abs(&(&out.adv - &x)) <= EPS + 1e-6);
        assert!(out.adv.min().double_value(&[]) >= 0.0 && out.adv.max().double_value(&[]) <= 1.0);
        let up = (&x + EPS).clamp(0.0, 1.0);
        let down = (&x - EPS).clamp(0.0, 1.0);
        let on_vertex = (&out.adv - &up).abs().le(1e-6).logical_or(&(&out.adv - &down).abs().le(1e-6));
        assert_eq!(on_vertex.all().int64_value(&[]), 1);

        assert_eq!(crate::checkpoint::digest(&model).unwrap(), before, "the attack changed the model");
        assert!(model.trainable().iter().all(|(_, t)| t.requires_grad()), "parameters left frozen");
    }

    #[test]
    fn flags_are_misclassification_at_the_returned_point() {
        let _g = rng_lock();
        let model = smallcnn_random_head(2);
        tch::manual_seed(20);
        let x = uniform(24);
        let pred = predict(&model, &x);
        // The first four labels are wrong from the start: broken by the first query.
        let wrong = (pred.narrow(0, 0, 4) + 1).remainder(10);
        let y = Tensor::cat(&[wrong, pred.narrow(0, 4, 20)], 0);
        let attack = Square { eps: 0.02, n_queries: 150, p_init: 0.8, rescale_schedule: false };
        let out = attack.run(&model, &x, &y).unwrap();
        assert_eq!(out.broken.kind(), Kind::Bool);
        assert_eq!(out.broken.size(), [24]);
        let miscl = predict(&model, &out.adv).ne_tensor(&y);
        assert!(out.broken.equal(&miscl), "flags {:?} vs misclassified {:?}", out.broken, miscl);
        assert_eq!(&out.queries[..4], &[1, 1, 1, 1]);
        let flagged = count(&out.broken);
        assert!(flagged > 4 && flagged < 24, "{flagged} of 24 broken: the test should see both outcomes");

        // The Attack interface returns the same flags.
        tch::manual_seed(3);
        let (adv, flags) = attack.perturb(&model, &x, &y).unwrap();
        let flags = flags.expect("square reports flags");
        assert!(flags.equal(&predict(&model, &adv).ne_tensor(&y)));
        assert_eq!(attack.id(), "square");
    }

    #[test]
    fn counts_queries_within_the_budget_without_gradients() {
        let _g = rng_lock();
        let probe = Probe::new(smallcnn_random_head(3), false);
        tch::manual_seed(30);
        let x = uniform(16);
        let y = predict(&probe.net, &x);
        let iterations = 150;
        // The rescaled schedule reaches small squares within this short budget, so some
        // examples break and some do not.
        let attack = Square { eps: EPS, n_queries: iterations, p_init: 0.8, rescale_schedule: true };
        let out = attack.run(&probe, &x, &y).unwrap();
        let broken = Vec::<bool>::try_from(&out.broken).unwrap();
        assert_eq!(out.queries.len(), 16);
        let budget = iterations as i64 + 1; // the stripe start, then every iteration
        for (q, b) in out.queries.iter().zip(&broken) {
            assert!((1..=budget).contains(q), "{q} queries");
            if !b {
                assert_eq!(*q, budget, "an unbroken example must spend the whole budget");
            }
        }
        assert!(broken.iter().any(|b| *b) && !broken.iter().all(|b| *b), "{broken:?}");
        // Every model evaluation of an example is counted, and nothing else is queried.
        assert_eq!(probe.rows.get(), out.queries.iter().sum::<i64>());
        assert_eq!(probe.calls.get() as i64, *out.queries.iter().max().unwrap());
        // The start alone: one query per example.
        let probe = Probe::new(smallcnn_random_head(3), false);
        let one = Square { eps: EPS, n_queries: 0, p_init: 0.8, rescale_schedule: false }.run(&probe, &x, &y).unwrap();
        assert_eq!(one.queries, vec![1; 16]);
        assert_eq!(probe.calls.get(), 1);
    }

    #[test]
    fn p_schedule_halves_at_autoattacks_iterations_and_rescales_only_when_asked() {
        let p = 0.8;
        // AutoAttack standard: 5,000 iterations, resc_schedule=False. p halves after iterations
        // 10, 50, 200, 500, 1000, 2000 and 4000 (0-based index strictly above the breakpoint).
        let standard = Square::standard(0.3);
        assert_eq!(standard, Square { eps: 0.3, n_queries: 5000, p_init: 0.8, rescale_schedule: false });
        let halvings: Vec<usize> = (1..standard.n_queries)
            .filter(|&it| {
                p_schedule(p, it, standard.n_queries, standard.rescale_schedule)
                    < p_schedule(p, it - 1, standard.n_queries, standard.rescale_schedule)
            })
            .collect();
        assert_eq!(halvings, [11, 51, 201, 501, 1001, 2001, 4001], "first iterations at each smaller p");
        assert_eq!(p_schedule(p, 4999, 5000, false), p / 128.0);
        let at = |it, n| p_schedule(p, it, n, true);
        let expected_10k = [
            (0, 1),
            (10, 1),
            (11, 2),
            (50, 2),
            (51, 4),
            (200, 4),
            (201, 8),
            (500, 8),
            (501, 16),
            (1000, 16),
            (1001, 32),
            (2000, 32),
            (2001, 64),
            (4000, 64),
            (4001, 128),
            (6000, 128),
            (6001, 256),
            (8000, 256),
            (8001, 512),
            (9999, 512),
        ];
        for (it, div) in expected_10k {
            assert_eq!(at(it, 10000), p / div as f64, "it {it} of 10000");
        }
        // Rescaled to 5,000 iterations: the same schedule at half the iteration index.
        for (it, div) in [(5, 1), (6, 2), (25, 2), (26, 4), (100, 4), (101, 8), (2000, 64), (2001, 128), (4001, 512)] {
            assert_eq!(at(it, 5000), p / div as f64, "it {it} of 5000");
        }
        assert_eq!(square_side(0.8, 28, 28), 25);
        assert_eq!(square_side(0.8, 32, 32), 29);
        assert_eq!(square_side(0.8 / 512.0, 32, 32), 1);
        assert_eq!(square_side(1.0, 28, 28), 28);
        // Python's round: ties to even (sqrt(0.25 · 25) = 2.5 → 2; sqrt(0.0625 · 4) = 0.5 → 0 → 1).
        assert_eq!(square_side(0.25, 5, 5), 2);
        assert_eq!(square_side(0.0625, 2, 2), 1);
    }

    #[test]
    fn candidates_change_one_square_and_are_never_repeats() {
        let _g = rng_lock();
        tch::manual_seed(40);
        let model = Constant { inputs: RefCell::new(vec![]) };
        let x = interior(3);
        let y = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        // Nothing is ever accepted (the margin is constant), so the best stays the start and
        // every candidate must differ from it, inside one square of the current side.
        let iterations = 400;
        let attack = Square { eps: EPS, n_queries: iterations, p_init: 0.8, rescale_schedule: false };
        let out = attack.run(&model, &x, &y).unwrap();
        assert_eq!(out.queries, vec![iterations as i64 + 1; 3]);
        let inputs = model.inputs.borrow();
        assert_eq!(inputs.len(), iterations + 1);
        let start = &inputs[0];
        assert!(out.adv.equal(start));
        // Stripes: every column constant.
        let stripes = (start - &x).sign();
        assert!(stripes.equal(&stripes.narrow(2, 0, 1).expand_as(&stripes)));
        let mut last_row_or_col_touched = false;
        for (it, cand) in inputs[1..].iter().enumerate() {
            let s = square_side(p_schedule(0.8, it, iterations, false), 28, 28);
            let changed = cand.ne_tensor(start).squeeze_dim(1); // [3, 28, 28]
            for i in 0..3 {
                let ch = changed.get(i);
                let rows = Vec::<i64>::try_from(&ch.any_dim(1, false).nonzero().view([-1])).unwrap();
                let cols = Vec::<i64>::try_from(&ch.any_dim(0, false).nonzero().view([-1])).unwrap();
                assert!(!rows.is_empty(), "iteration {it}: candidate {i} repeats the current best");
                assert!(rows[rows.len() - 1] - rows[0] < s && cols[cols.len() - 1] - cols[0] < s);
                last_row_or_col_touched |= rows.contains(&27) || cols.contains(&27);
            }
        }
        assert!(last_row_or_col_touched, "squares never reach the last row or column");
    }

    #[test]
    fn other_sign_flips_are_uniform_over_nonzero_patterns() {
        let _g = rng_lock();
        tch::manual_seed(5);
        let one = other_sign_flips(100, 1, channel_bits(1, Device::Cpu).unwrap().as_ref(), Device::Cpu).unwrap();
        assert_eq!(one.all().int64_value(&[]), 1);
        let three = other_sign_flips(7000, 3, channel_bits(3, Device::Cpu).unwrap().as_ref(), Device::Cpu)
            .unwrap()
            .view([7000, 3])
            .to_kind(Kind::Int64);
        let code = (three.select(1, 0) + three.select(1, 1) * 2 + three.select(1, 2) * 4).bincount::<Tensor>(None, 8);
        let counts = Vec::<i64>::try_from(&code).unwrap();
        assert_eq!(counts[0], 0);
        for c in &counts[1..] {
            assert!((850..1150).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn beats_pgd_on_a_gradient_masked_model() {
        let _g = rng_lock();
        let model = Scaled { net: smallcnn_random_head(6), scale: 1e4 };
        tch::manual_seed(60);
        let x = uniform(32);
        let y = predict(&model, &x);
        let (pgd_adv, _) = Pgd::paper(EPS, 20).perturb(&model, &x, &y).unwrap();
        let pgd_broken = count(&predict(&model, &pgd_adv).ne_tensor(&y));
        let out =
            Square { eps: EPS, n_queries: 200, p_init: 0.8, rescale_schedule: false }.run(&model, &x, &y).unwrap();
        let square_broken = count(&out.broken);
        assert!(square_broken > 0 && square_broken >= pgd_broken, "square {square_broken}, pgd {pgd_broken}");
    }

    #[test]
    fn deterministic_given_the_seed() {
        let _g = rng_lock();
        let model = smallcnn_random_head(7);
        let x = uniform(8);
        let y = predict(&model, &x);
        let attack = Square { eps: EPS, n_queries: 100, p_init: 0.8, rescale_schedule: false };
        tch::manual_seed(70);
        let a = attack.run(&model, &x, &y).unwrap();
        tch::manual_seed(70);
        let b = attack.run(&model, &x, &y).unwrap();
        assert!(a.adv.equal(&b.adv));
        assert!(a.broken.equal(&b.broken));
        assert_eq!(a.queries, b.queries);
        tch::manual_seed(71);
        let c = attack.run(&model, &x, &y).unwrap();
        assert!(!a.adv.equal(&c.adv), "another seed should give another search");
    }

    #[test]
    fn rejects_bad_settings_and_handles_an_empty_batch() {
        let _g = rng_lock();
        let model = smallcnn_random_head(8);
        let x = uniform(2);
        let y = predict(&model, &x);
        for bad in [
            Square { eps: -0.1, n_queries: 10, p_init: 0.8, rescale_schedule: false },
            Square { eps: EPS, n_queries: 10, p_init: 0.0, rescale_schedule: false },
        ] {
            assert!(matches!(bad.run(&model, &x, &y), Err(Error::Invalid(_))), "{bad:?}");
        }
        let short = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        assert!(matches!(Square::standard(EPS).run(&model, &x, &short), Err(Error::Invalid(_))));
        let empty = Tensor::zeros([0, 1, 28, 28], (Kind::Float, Device::Cpu));
        let none = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let out = Square::standard(EPS).run(&model, &empty, &none).unwrap();
        assert_eq!(out.adv.size(), [0, 1, 28, 28]);
        assert!(out.queries.is_empty());
    }
}
