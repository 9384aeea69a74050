//! RayS (Chen & Gu, KDD 2020), the hard-label black-box attack of paper Table IV, as SPEC §3
//! specifies it: a search over sign directions d ∈ {−1, +1}^D for the one whose ray
//! x + r·d (clamped to [0, 1]) leaves the correct class at the smallest r, flipping the signs
//! of ever smaller blocks of coordinates (halves, quarters, … single coordinates, then again)
//! and keeping a flip when the ray at the current best distance is already misclassified, with
//! a binary search for the new distance. It runs the whole query budget (no early stop), so the
//! distance is the attack's best estimate of the L∞ distance to the decision boundary; the
//! average over the attacked examples is ADBD. The model is seen only through a
//! [`LabelOracle`].

use tch::{Kind, Tensor};

use super::oracle::{LabelOracle, Oracle};
use super::Attack;
use crate::models::Classifier;
use crate::Result;

/// RayS's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rays {
    /// L∞ radius for the robust-accuracy verdict (distance > eps ⇒ robust).
    pub eps: f64,
    /// Label queries per example (SPEC: a config field; RayS leaderboard 40,000; default
    /// 10,000).
    pub budget: usize,
    /// Binary-search tolerance on the distance.
    pub tol: f64,
}

impl Rays {
    /// RayS with `budget` queries per example and the default tolerance 1e-3.
    pub fn new(eps: f64, budget: usize) -> Rays {
        Rays { eps, budget, tol: 1e-3 }
    }
}

/// Per-example outcome of RayS.
#[derive(Debug)]
pub struct RaysOutcome {
    /// L∞ distance `[N]` (Float64) from each input to the closest misclassified point found
    /// (0 for a misclassified input; 1, the largest distance in [0, 1]^D, when none was found).
    pub distance: Tensor,
    /// Queries spent per example `[N]` (Int64), never above the budget.
    pub queries: Tensor,
    /// The misclassified point at `distance` (the input itself when none was found).
    pub boundary: Tensor,
}

/// `[-1, 1, 1, 1]` for a batch like `x`: reshapes a per-example value to broadcast over images.
fn per_example(x: &Tensor) -> Vec<i64> {
    let mut shape = vec![-1i64];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    shape
}

/// `[-1, C, H, W]` for a batch like `x`: reshapes flat directions back to images.
fn images_like(x: &Tensor) -> Vec<i64> {
    let mut shape = x.size();
    shape[0] = -1;
    shape
}

fn ray(x: &Tensor, d: &Tensor, r: &Tensor) -> Result<Tensor> {
    Ok(x.f_add(&d.f_mul(&r.f_to_kind(Kind::Float)?.f_reshape(per_example(x).as_slice())?)?)?.f_clamp(0.0, 1.0)?)
}

/// Runs RayS through `oracle` on `x` (`[N, C, H, W]`) with labels `y`.
pub fn rays(oracle: &dyn LabelOracle, x: &Tensor, y: &Tensor, budget: usize, tol: f64) -> Result<RaysOutcome> {
    let device = x.device();
    let n = x.size()[0];
    let dim: i64 = x.size()[1..].iter().product();
    let budget = budget.max(1) as i64;
    let x = x.f_detach()?;
    let mut queries = Tensor::f_ones([n], (Kind::Int64, device))?;
    let wrong = oracle.labels(&x)?.f_ne_tensor(y)?;
    // Best distance per example (+inf: none yet), its direction and the flat directions.
    let mut best = Tensor::f_full([n], f64::INFINITY, (Kind::Double, device))?;
    best = best.f_masked_fill(&wrong, 0.0)?;
    let mut dir = Tensor::f_ones([n, dim], (Kind::Float, device))?;
    let (mut stage, mut block) = (0u32, 0i64);
    let mut first = true;
    loop {
        // Examples still searching: correctly classified, budget left.
        let active = wrong.f_logical_not()?.f_logical_and(&queries.f_lt(budget)?)?;
        let idx = active.f_nonzero()?.f_squeeze_dim(1)?;
        if idx.size()[0] == 0 {
            break;
        }
        // The candidate: the current direction with one block flipped (the first round checks
        // the all-ones start itself).
        let blocks = 1i64 << stage.min(62);
        let size = (dim + blocks - 1) / blocks;
        let cand = dir.f_index_select(0, &idx)?;
        let cand = if first {
            cand
        } else {
            let lo = block * size;
            let len = size.min(dim - lo);
            let flipped = cand.f_narrow(1, lo, len)?.f_neg()?;
            cand.f_slice_scatter(&flipped, 1, Some(lo), Some(lo + len), 1)?
        };
        let xb = x.f_index_select(0, &idx)?;
        let yb = y.f_index_select(0, &idx)?;
        let best_b = best.f_index_select(0, &idx)?;
        let hi0 = best_b.f_clamp_max(1.0)?;
        let cand_img = cand.f_reshape(images_like(&x).as_slice())?;
        let succ = oracle.labels(&ray(&xb, &cand_img, &hi0)?)?.f_ne_tensor(&yb)?;
        queries = queries.f_index_add(0, &idx, &Tensor::f_ones([idx.size()[0]], (Kind::Int64, device))?)?;
        // Binary search on the examples whose candidate ray is misclassified at the current
        // best distance: `hi` is always misclassified, `lo` was not (or is 0).
        let s_local = succ.f_nonzero()?.f_squeeze_dim(1)?;
        if s_local.size()[0] > 0 {
            let sidx = idx.f_index_select(0, &s_local)?;
            let sx = xb.f_index_select(0, &s_local)?;
            let sy = yb.f_index_select(0, &s_local)?;
            let sd = cand_img.f_index_select(0, &s_local)?;
            let mut hi = hi0.f_index_select(0, &s_local)?;
            let mut lo = hi.f_zeros_like()?;
            loop {
                let q = queries.f_index_select(0, &sidx)?;
                let open = hi.f_sub(&lo)?.f_gt(tol)?.f_logical_and(&q.f_lt(budget)?)?;
                let o = open.f_nonzero()?.f_squeeze_dim(1)?;
                if o.size()[0] == 0 {
                    break;
                }
                let (ho, lw) = (hi.f_index_select(0, &o)?, lo.f_index_select(0, &o)?);
                let mid = ho.f_add(&lw)?.f_div_scalar(2.0)?;
                let adv = oracle
                    .labels(&ray(&sx.f_index_select(0, &o)?, &sd.f_index_select(0, &o)?, &mid)?)?
                    .f_ne_tensor(&sy.f_index_select(0, &o)?)?;
                queries = queries.f_index_add(
                    0,
                    &sidx.f_index_select(0, &o)?,
                    &Tensor::f_ones([o.size()[0]], (Kind::Int64, device))?,
                )?;
                hi = hi.f_index_copy(0, &o, &mid.f_where_self(&adv, &ho)?)?;
                lo = lo.f_index_copy(0, &o, &mid.f_where_self(&adv.f_logical_not()?, &lw)?)?;
            }
            // Keep the flip where it found a shorter (or a first) misclassified distance.
            let old = best.f_index_select(0, &sidx)?;
            let better = hi.f_lt_tensor(&old)?;
            let take = better.f_nonzero()?.f_squeeze_dim(1)?;
            if take.size()[0] > 0 {
                let tidx = sidx.f_index_select(0, &take)?;
                best = best.f_index_copy(0, &tidx, &hi.f_index_select(0, &take)?)?;
                let flat = sd.f_index_select(0, &take)?.f_reshape([-1, dim])?;
                dir = dir.f_index_copy(0, &tidx, &flat)?;
            }
        }
        if first {
            first = false;
        } else {
            block += 1;
            if block * size >= dim {
                block = 0;
                stage = if size <= 1 { 0 } else { stage + 1 };
            }
        }
    }
    // Distances as realised (clamping to [0, 1] can only shorten the ray).
    let found = best.f_isfinite()?;
    let r = best.f_where_self(&found, &best.f_zeros_like()?)?;
    let point = ray(&x, &dir.f_reshape(images_like(&x).as_slice())?, &r)?;
    let keep = found.f_reshape(per_example(&x).as_slice())?;
    let boundary = point.f_where_self(&keep, &x)?;
    let realised =
        boundary.f_sub(&x)?.f_abs()?.f_reshape([n, dim])?.f_amax([1i64].as_slice(), false)?.f_to_kind(Kind::Double)?;
    let distance = realised.f_where_self(&found, &realised.f_ones_like()?)?;
    Ok(RaysOutcome { distance, queries, boundary })
}

impl Attack for Rays {
    fn id(&self) -> String {
        "rays".into()
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let (adv, broken, _) = self.distances(model, x, y)?.expect("invariant: RayS measures distances");
        Ok((adv, Some(broken)))
    }

    fn distances(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let out = rays(&Oracle::new(model), x, y, self.budget, self.tol)?;
        let broken = out.distance.f_le(self.eps)?;
        let adv = out.boundary.f_where_self(&broken.f_reshape(per_example(x).as_slice())?, x)?;
        Ok(Some((adv, broken, out.distance)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Two-class linear classifier on flattened inputs, as a label oracle with a query count.
    struct Linear {
        w: Tensor,
        b: Tensor,
        seen: std::cell::Cell<u64>,
    }

    impl LabelOracle for Linear {
        fn labels(&self, x: &Tensor) -> Result<Tensor> {
            let n = x.size()[0];
            self.seen.set(self.seen.get() + n as u64);
            Ok(x.f_reshape([n, -1])?.f_matmul(&self.w.f_tr()?)?.f_add(&self.b)?.f_argmax(-1, false)?)
        }
        fn images(&self) -> u64 {
            self.seen.get()
        }
    }

    #[test]
    fn finds_the_analytic_linf_distance_of_a_linear_classifier_within_budget() {
        // Fixed pseudo-random data (not libtorch's generator, which other tests share).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let d = 16i64;
        let n = 8i64;
        let wv: Vec<f32> = (0..2 * d).map(|_| 2.0 * uniform() - 1.0).collect();
        let xv: Vec<f32> = (0..n * d).map(|_| 0.4 + 0.2 * uniform()).collect();
        let w = Tensor::from_slice(&wv).reshape([2, d]);
        let b = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        // Inputs near the middle of the box, on both sides of the boundary.
        let x = Tensor::from_slice(&xv).reshape([n, 1, 4, 4]);
        let oracle = Linear { w: w.shallow_clone(), b, seen: std::cell::Cell::new(0) };
        let y = oracle.labels(&x).unwrap();
        let before = oracle.images();
        let budget = 3000;
        let out = rays(&oracle, &x, &y, budget, 1e-4).unwrap();
        // Analytic L∞ distance to the hyperplane (w_y − w_o)·x' = −(b_y − b_o): margin / ‖w_y − w_o‖₁.
        let flat = x.reshape([n, d]);
        let mut checked = 0;
        for i in 0..n {
            let yi = y.int64_value(&[i]);
            let dw = w.get(yi) - w.get(1 - yi);
            let margin = (flat.get(i) * &dw).sum(Kind::Float).double_value(&[]);
            let analytic = margin / dw.abs().sum(Kind::Float).double_value(&[]);
            let found = out.distance.double_value(&[i]);
            // The box may keep the analytic point out of reach only if it needs moves > 0.4.
            if analytic < 0.35 {
                assert!((found - analytic).abs() < 1e-3, "example {i}: found {found}, analytic {analytic}");
                checked += 1;
            }
            assert!(found >= analytic - 1e-6, "example {i}: {found} below the true distance {analytic}");
        }
        assert!(checked >= n / 2, "only {checked} of {n} examples had a reachable analytic distance");
        let q = out.queries;
        assert!(q.max().int64_value(&[]) <= budget as i64, "budget exceeded: {q:?}");
        assert_eq!((oracle.images() - before) as i64, q.sum(Kind::Int64).int64_value(&[]), "every query counted once");
        // Where a point was found, it is misclassified and at the reported distance; where none
        // was (distance 1), the input itself is returned.
        let pred = oracle.labels(&out.boundary).unwrap();
        for i in 0..n {
            let dist = (out.boundary.get(i) - x.get(i)).abs().max().double_value(&[]);
            if out.distance.double_value(&[i]) < 1.0 {
                assert_ne!(pred.int64_value(&[i]), y.int64_value(&[i]), "example {i}");
                assert!((dist - out.distance.double_value(&[i])).abs() < 1e-6, "example {i}");
            } else {
                assert_eq!(dist, 0.0, "example {i}");
            }
        }
    }

    #[test]
    fn misclassified_inputs_cost_one_query_and_have_distance_zero() {
        let w = Tensor::from_slice(&[1.0f32, -1.0]).reshape([2, 1]);
        let oracle = Linear { w, b: Tensor::zeros([2], (Kind::Float, Device::Cpu)), seen: std::cell::Cell::new(0) };
        let x = Tensor::from_slice(&[0.9f32]).reshape([1, 1, 1, 1]);
        let wrong_label = Tensor::from_slice(&[1i64]);
        let out = rays(&oracle, &x, &wrong_label, 100, 1e-3).unwrap();
        assert_eq!(out.distance.double_value(&[0]), 0.0);
        assert_eq!(out.queries.int64_value(&[0]), 1);
    }
}
