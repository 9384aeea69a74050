//! FAB-T, the targeted L∞ Fast Adaptive Boundary attack (Croce & Hein 2020, "Minimally
//! distorted adversarial examples with a fast adaptive boundary attack", arXiv:1907.02044),
//! in the configuration AutoAttack runs it (Croce & Hein 2020, arXiv:2003.01690; SPEC §3):
//! the 9 classes ranked 2nd to 10th by the clean logits as targets, one restart of 100
//! iterations per target, α_max = 0.1, η = 1.05, β = 0.9.
//!
//! Each iteration linearises the logit difference f_t − f_y at the current point x_k, projects
//! both x_k and the original point x onto the intersection of the resulting hyperplane with the
//! box [0, 1]^d in L∞ ([`project_hyperplane_box`]), and moves to a convex combination of the two
//! extrapolated projections. Whenever the new point is misclassified, it is kept if it is the
//! closest adversarial point found so far and the iterate is pulled back towards x. The attack
//! minimises distortion: it succeeds on an example only where its closest adversarial point lies
//! within eps.

use tch::{Kind, Tensor};

use super::Attack;
use crate::models::Classifier;
use crate::{Error, Result};

/// Slack on the eps test of a found point (float32 rounding of the L∞ distance).
const DIST_TOL: f64 = 1e-7;

/// Floor on the norms of the two projection steps in the convex weight (as in the reference
/// implementation), so α stays defined when both points already lie on the hyperplane.
const NORM_FLOOR: f64 = 1e-8;

/// FAB-T in L∞ (arXiv:1907.02044, Algorithm 1 with the targeted hyperplane of arXiv:2003.01690).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FabT {
    /// L∞ radius within which a found adversarial point counts (and the radius of random
    /// restarts).
    pub eps: f64,
    /// Iterations per restart (100).
    pub iterations: usize,
    /// Number of target classes, taken in the order of the clean logits from the 2nd-ranked
    /// class on (9; at most K − 1 are used).
    pub targets: usize,
    /// Runs per target (1); the first starts at the input, later ones at a random point at L∞
    /// distance eps/2 from it (clamped to [0, 1]), as the reference implementation draws them.
    pub restarts: usize,
    /// Largest weight α of the step from the original point (0.1).
    pub alpha_max: f64,
    /// Extrapolation factor η of both projection steps (1.05).
    pub eta: f64,
    /// Backward step β towards the original point after an adversarial iterate (0.9).
    pub beta: f64,
}

impl FabT {
    /// FAB-T as AutoAttack's standard version runs it: 9 targets, 1 restart, 100 iterations,
    /// α_max = 0.1, η = 1.05, β = 0.9.
    pub fn standard(eps: f64) -> FabT {
        FabT { eps, iterations: 100, targets: 9, restarts: 1, alpha_max: 0.1, eta: 1.05, beta: 0.9 }
    }

    fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::Invalid(format!("FAB-T: eps must be a finite number ≥ 0, got {}", self.eps)));
        }
        if !(0.0..=1.0).contains(&self.alpha_max) {
            return Err(Error::Invalid(format!("FAB-T: alpha_max must lie in [0, 1], got {}", self.alpha_max)));
        }
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(Error::Invalid(format!("FAB-T: eta must be a finite number > 0, got {}", self.eta)));
        }
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(Error::Invalid(format!("FAB-T: beta must lie in [0, 1], got {}", self.beta)));
        }
        Ok(())
    }

    /// One FAB run towards target `t` for the batch `x0` (all correctly classified as `y`):
    /// the closest misclassified iterate found for each example and its L∞ distance (infinite
    /// where none was found; the point is then `x0` itself).
    fn single_run(
        &self,
        model: &dyn Classifier,
        x0: &Tensor,
        y: &Tensor,
        t: &Tensor,
        random_start: bool,
    ) -> Result<(Tensor, Tensor)> {
        let size = x0.size();
        let m = size[0];
        let kind = x0.kind();
        let mut per_example = vec![1i64; size.len()];
        per_example[0] = m;
        let flat = |v: &Tensor| v.f_reshape([m, -1]);
        let linf = |v: &Tensor| -> Result<Tensor> { Ok(flat(v)?.f_abs()?.f_amax([1i64], false)?) };
        let x0_flat = flat(x0)?;
        let y_col = y.f_unsqueeze(1)?;
        let t_col = t.f_unsqueeze(1)?;

        let mut x1 = if random_start {
            // A random point at L∞ distance eps/2 in a uniformly drawn direction, as the
            // reference implementation starts its later restarts.
            let dir = x0.f_rand_like()?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
            let scale = linf(&dir)?.f_clamp_min(1e-12)?.f_reshape(per_example.as_slice())?;
            x0.f_add(&dir.f_div(&scale)?.f_mul_scalar(self.eps / 2.0)?)?.f_clamp(0.0, 1.0)?
        } else {
            x0.copy()
        };
        let mut best = x0.copy();
        let mut best_dist = Tensor::f_full([m], f64::INFINITY, (kind, x0.device()))?;

        for _ in 0..self.iterations {
            // The logit difference f_t − f_y and its input gradient at x1 (one backward of the
            // batch sum: examples are independent in eval mode).
            let (diff, grad) = tch::with_grad(|| -> Result<(Tensor, Tensor)> {
                let xa = x1.f_detach()?.f_requires_grad_(true)?;
                let logits = model.logits(&xa, false)?;
                let diff =
                    logits.f_gather(1, &t_col, false)?.f_sub(&logits.f_gather(1, &y_col, false)?)?.f_squeeze_dim(1)?;
                let sum = diff.f_sum(diff.kind())?;
                let grad = super::input_gradient(&sum, &xa)?;
                Ok((diff.f_detach()?.f_to_kind(kind)?, grad))
            })?;
            let (x_next, is_adv) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                // The linearised boundary {z : w·z = b} with w = ∇(f_t − f_y)(x1) and
                // b = w·x1 − (f_t − f_y)(x1).
                let w = flat(&grad)?;
                let x1_flat = flat(&x1)?;
                let b = w.f_mul(&x1_flat)?.f_sum_dim_intlist(1i64, false, kind)?.f_sub(&diff)?;
                // Project x1 and x onto it (within the box) in one batch.
                let steps = project_hyperplane_box(
                    &Tensor::f_cat(&[&x1_flat, &x0_flat], 0)?,
                    &Tensor::f_cat(&[&w, &w], 0)?,
                    &Tensor::f_cat(&[&b, &b], 0)?,
                )?;
                let norms = steps.f_abs()?.f_amax([1i64], false)?.f_clamp_min(NORM_FLOOR)?;
                let (n1, n0) = (norms.f_narrow(0, 0, m)?, norms.f_narrow(0, m, m)?);
                let d1 = steps.f_narrow(0, 0, m)?.f_reshape(size.as_slice())?;
                let d0 = steps.f_narrow(0, m, m)?.f_reshape(size.as_slice())?;
                // α = min(‖δ_k‖ / (‖δ_k‖ + ‖δ_orig‖), α_max), as in the paper and its reference code.
                let alpha =
                    n1.f_div(&n1.f_add(&n0)?)?.f_clamp(0.0, self.alpha_max)?.f_reshape(per_example.as_slice())?;
                let from_current = x1.f_add(&d1.f_mul_scalar(self.eta)?)?;
                let from_orig = x0.f_add(&d0.f_mul_scalar(self.eta)?)?;
                let x_next = from_current
                    .f_mul(&alpha.f_neg()?.f_add_scalar(1.0)?)?
                    .f_add(&from_orig.f_mul(&alpha)?)?
                    .f_clamp(0.0, 1.0)?;
                let pred = model.logits(&x_next, false)?.f_argmax(-1, false)?;
                Ok((x_next, pred.f_ne_tensor(y)?))
            })?;
            // Keep the closest adversarial iterate, then step back towards x from every
            // adversarial one.
            let dist = linf(&x_next.f_sub(x0)?)?;
            let better = is_adv.f_logical_and(&dist.f_lt_tensor(&best_dist)?)?;
            best = x_next.f_where_self(&better.f_reshape(per_example.as_slice())?, &best)?;
            best_dist = dist.f_where_self(&better, &best_dist)?;
            let back = x0.f_add(&x_next.f_sub(x0)?.f_mul_scalar(self.beta)?)?;
            x1 = back.f_where_self(&is_adv.f_reshape(per_example.as_slice())?, &x_next)?;
        }
        Ok((best, best_dist))
    }
}

/// The smallest L∞ step from each row of `points` onto `{z : w·z = b} ∩ [0, 1]^d` (rows of
/// `w`, entries of `b`): FAB's projection (arXiv:1907.02044, Sec. 3, solved exactly as a
/// piecewise-linear problem, batched). Where the hyperplane misses the box, the step goes to
/// the box corner that moves `w·z` furthest towards `b` (as the paper's algorithm does).
///
/// Orienting `w` so that `c = w·p − b ≥ 0`, the optimal step moves every coordinate by
/// `−sign(w_i) min(λ, r_i)`, where `r_i` is the room left to the box in that direction, and λ is
/// the smallest value with `g(λ) = Σ |w_i| min(λ, r_i) = c`. `g` is concave piecewise linear
/// with breakpoints at the sorted rooms, so λ follows from one sort and two cumulative sums.
/// Points, weights and the returned steps are `[n, d]`; `b` is `[n]`.
pub fn project_hyperplane_box(points: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let kind = points.kind();
    let d = points.size()[1];
    if d == 0 {
        return Ok(points.f_zeros_like()?);
    }
    let c = w.f_mul(points)?.f_sum_dim_intlist(1i64, false, kind)?.f_sub(b)?;
    let orient = c.f_ge(0.0)?.f_to_kind(kind)?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
    let c = c.f_abs()?.f_unsqueeze(1)?;
    let w = w.f_mul(&orient.f_unsqueeze(1)?)?;
    // Coordinates with w_i < 0 move up (room 1 − p_i), the others down (room p_i).
    let up = w.f_lt(0.0)?;
    let room = points.f_neg()?.f_add_scalar(1.0)?.f_where_self(&up, points)?.f_clamp_min(0.0)?;
    let (rooms, order) = room.f_sort(1, false)?;
    let weights = w.f_abs()?.f_gather(1, &order, false)?;
    let saturated = weights.f_mul(&rooms)?;
    // With coordinates sorted by room, at the k-th breakpoint those before k are saturated:
    // g(r_k) = Σ_{j<k} |w_j| r_j + r_k Σ_{j≥k} |w_j|.
    let upto = saturated.f_cumsum(1, kind)?;
    let before = upto.f_sub(&saturated)?;
    let total = weights.f_sum_dim_intlist(1i64, true, kind)?;
    let from = total.f_sub(&weights.f_cumsum(1, kind)?)?.f_add(&weights)?;
    let g = before.f_add(&rooms.f_mul(&from)?)?;
    // λ lies between the breakpoints below c and the first one at or above it.
    let below = g.f_lt_tensor(&c)?.f_sum_dim_intlist(1i64, true, Kind::Int64)?.f_clamp_max(d - 1)?;
    let reachable = upto.f_narrow(1, d - 1, 1)?.f_ge_tensor(&c)?;
    let lambda = c
        .f_sub(&before.f_gather(1, &below, false)?)?
        .f_div(&from.f_gather(1, &below, false)?.f_clamp_min(1e-30)?)?
        .f_clamp_min(0.0)?
        .f_masked_fill(&reachable.f_logical_not()?, f64::INFINITY)?;
    Ok(room.f_minimum(&lambda)?.f_mul(&w.f_sign()?.f_neg()?)?)
}

impl Attack for FabT {
    fn id(&self) -> String {
        "fab_t".into()
    }

    /// Runs FAB-T on the examples the model classifies correctly, target by target and restart
    /// by restart, each run only on the examples not yet broken within eps. Returns the closest
    /// adversarial point found for each broken example (re-checked to be misclassified) and
    /// the input itself elsewhere; examples misclassified already are flagged and returned
    /// unchanged.
    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        self.validate()?;
        let n = x.size().first().copied().unwrap_or(0);
        if y.size() != [n] {
            return Err(Error::Invalid(format!(
                "FAB-T: labels must have shape [{n}] for inputs of shape {:?}, got {:?}",
                x.size(),
                y.size()
            )));
        }
        let x = x.f_detach()?;
        let y = y.f_detach()?.f_to_kind(Kind::Int64)?;
        let mut adv = x.copy();
        if n == 0 {
            return Ok((adv, Some(y.f_zeros_like()?.f_to_kind(Kind::Bool)?)));
        }
        let _frozen = model.freeze();
        let clean = tch::no_grad(|| model.logits(&x, false))?;
        let mut broken = clean.f_argmax(-1, false)?.f_ne_tensor(&y)?;
        let classes = clean.size()[1];
        let targets = (self.targets as i64).min(classes - 1);
        if targets <= 0 || self.restarts == 0 {
            return Ok((adv, Some(broken)));
        }
        // The classes ranked 2nd, 3rd, … by the clean logits (for a correctly classified
        // example, every class but y in order).
        let ranked = clean
            .f_detach()?
            .f_scatter_value(1, &y.f_unsqueeze(1)?, f64::NEG_INFINITY)?
            .f_topk(targets, 1, true, true)?
            .1;
        'targets: for rank in 0..targets {
            for restart in 0..self.restarts {
                let open = broken.f_logical_not()?.f_nonzero()?.f_squeeze_dim(1)?;
                if open.size()[0] == 0 {
                    break 'targets;
                }
                let xs = x.f_index_select(0, &open)?;
                let ys = y.f_index_select(0, &open)?;
                let ts = ranked.f_select(1, rank)?.f_index_select(0, &open)?;
                let (best, dist) = self.single_run(model, &xs, &ys, &ts, restart > 0)?;
                let within = dist.f_le(self.eps + DIST_TOL)?.f_nonzero()?.f_squeeze_dim(1)?;
                if within.size()[0] == 0 {
                    continue;
                }
                let found = best.f_index_select(0, &within)?;
                let wrong = tch::no_grad(|| model.logits(&found, false))?
                    .f_argmax(-1, false)?
                    .f_ne_tensor(&ys.f_index_select(0, &within)?)?;
                let keep = within.f_masked_select(&wrong)?;
                let rows = open.f_index_select(0, &keep)?;
                adv = adv.f_index_copy(0, &rows, &best.f_index_select(0, &keep)?)?;
                broken = broken.f_index_fill(0, &rows, 1i64)?;
            }
        }
        Ok((adv, Some(broken)))
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::attacks::Pgd;
    use crate::checkpoint::digest;
    use crate::models::layers::test_support::{rng_lock, smallcnn_random_head, Scaled};
    use crate::models::Frozen;

    fn cpu() -> (Kind, Device) {
        (Kind::Float, Device::Cpu)
    }

    fn linf_rows(a: &Tensor, b: &Tensor) -> Vec<f64> {
        let n = a.size()[0];
        Vec::<f64>::try_from((a - b).abs().reshape([n, -1]).amax([1i64], false).to_kind(Kind::Double)).unwrap()
    }

    fn flags_of(f: &Tensor) -> Vec<bool> {
        Vec::<bool>::try_from(f).unwrap()
    }

    fn predictions(model: &dyn Classifier, x: &Tensor) -> Tensor {
        tch::no_grad(|| model.logits(x, false).unwrap().argmax(-1, false))
    }

    /// FAB-T with fewer targets and iterations, to keep the SmallCNN tests quick.
    fn quick(eps: f64) -> FabT {
        FabT { iterations: 30, targets: 3, ..FabT::standard(eps) }
    }

    /// logits = W · flatten(x) + b.
    struct Affine {
        w: Tensor,
        b: Tensor,
    }

    impl Classifier for Affine {
        fn logits(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
            Ok(x.f_flatten(1, -1)?.f_matmul(&self.w.f_tr()?)?.f_add(&self.b)?)
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn num_classes(&self) -> usize {
            self.w.size()[0] as usize
        }
        fn freeze(&self) -> Frozen {
            Frozen::new(Vec::<Tensor>::new())
        }
    }

    /// Minimal L∞ step from `p` onto {w·z = b} ∩ [0,1]^d by bisection on λ in f64, or `None`
    /// where the hyperplane misses the box.
    fn brute_force(p: &[f64], w: &[f64], b: f64) -> Option<f64> {
        let c: f64 = p.iter().zip(w).map(|(p, w)| p * w).sum::<f64>() - b;
        let s = if c >= 0.0 { 1.0 } else { -1.0 };
        let room: Vec<f64> = p.iter().zip(w).map(|(p, w)| if s * w < 0.0 { 1.0 - p } else { *p }).collect();
        let g = |l: f64| -> f64 { w.iter().zip(&room).map(|(w, r)| w.abs() * l.min(*r)).sum() };
        if g(1.0) < c.abs() {
            return None;
        }
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if g(mid) < c.abs() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }

    #[test]
    fn projection_is_the_minimal_linf_step_onto_hyperplane_and_box() {
        let _g = rng_lock();
        tch::manual_seed(11);
        let (n, d) = (64i64, 20i64);
        let p = Tensor::rand([n, d], (Kind::Double, Device::Cpu));
        // Some rows hug the box edges, some weights vanish.
        let p = p.where_self(&Tensor::rand([n, d], (Kind::Double, Device::Cpu)).gt(0.2), &p.round());
        let w = Tensor::randn([n, d], (Kind::Double, Device::Cpu))
            * Tensor::rand([n, d], (Kind::Double, Device::Cpu)).gt(0.1).to_kind(Kind::Double);
        // Offsets from tiny (box inactive) to beyond reach (hyperplane misses the box).
        let reach = Tensor::rand([n], (Kind::Double, Device::Cpu)) * 12.0 - 6.0;
        let b = (&w * &p).sum_dim_intlist(1, false, Kind::Double) + reach;
        let step = project_hyperplane_box(&p, &w, &b).unwrap();
        let (pv, wv, bv, sv) = (
            Vec::<f64>::try_from(p.reshape([-1])).unwrap(),
            Vec::<f64>::try_from(w.reshape([-1])).unwrap(),
            Vec::<f64>::try_from(&b).unwrap(),
            Vec::<f64>::try_from(step.reshape([-1])).unwrap(),
        );
        let (mut feasible, mut missed) = (0, 0);
        for (i, b) in bv.iter().enumerate() {
            let r = i * d as usize..(i + 1) * d as usize;
            let (p, w, s) = (&pv[r.clone()], &wv[r.clone()], &sv[r]);
            let z: Vec<f64> = p.iter().zip(s).map(|(p, s)| p + s).collect();
            assert!(z.iter().all(|v| (-1e-12..=1.0 + 1e-12).contains(v)), "row {i} leaves the box");
            let norm = s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            match brute_force(p, w, *b) {
                Some(lambda) => {
                    feasible += 1;
                    let wz: f64 = z.iter().zip(w).map(|(z, w)| z * w).sum();
                    assert!((wz - b).abs() < 1e-9 * (1.0 + b.abs()), "row {i}: w·z = {wz}, b = {b}");
                    assert!((norm - lambda).abs() < 1e-9, "row {i}: step {norm}, minimal {lambda}");
                }
                None => {
                    missed += 1;
                    // The corner that moves w·z furthest towards b.
                    let c: f64 = p.iter().zip(w).map(|(p, w)| p * w).sum::<f64>() - b;
                    for ((p, w), z) in p.iter().zip(w).zip(&z) {
                        let corner = if *w == 0.0 {
                            *p
                        } else if (c >= 0.0) == (*w > 0.0) {
                            0.0
                        } else {
                            1.0
                        };
                        assert!((z - corner).abs() < 1e-12, "row {i}: {z} vs corner {corner}");
                    }
                }
            }
        }
        assert!(feasible > 20 && missed > 2, "cases: {feasible} feasible, {missed} out of reach");
    }

    #[test]
    fn outputs_stay_in_the_ball_and_the_model_is_untouched() {
        let _g = rng_lock();
        let model = smallcnn_random_head(1);
        tch::manual_seed(2);
        let x = Tensor::rand([6, 1, 28, 28], cpu());
        let y = Tensor::randint(10, [6], (Kind::Int64, Device::Cpu));
        let before = digest(&model).unwrap();
        for eps in [0.05, 0.3] {
            let attack = quick(eps);
            assert_eq!(attack.id(), "fab_t");
            let (adv, flags) = attack.perturb(&model, &x, &y).unwrap();
            assert_eq!(adv.size(), x.size());
            let flags = flags.unwrap();
            assert_eq!(flags.size(), [6]);
            assert_eq!(flags.kind(), Kind::Bool);
            for dist in linf_rows(&adv, &x) {
                assert!(dist <= eps + 1e-6, "L∞ distance {dist} > {eps}");
            }
            assert!(f64::try_from(adv.min()).unwrap() >= 0.0 && f64::try_from(adv.max()).unwrap() <= 1.0);
            assert!(bool::try_from(adv.isfinite().all()).unwrap());
        }
        assert_eq!(digest(&model).unwrap(), before, "FAB-T must not change the model");
        assert!(model.trainable().iter().all(|(_, p)| p.requires_grad()));
    }

    #[test]
    fn flagged_points_are_misclassified_and_the_rest_unchanged() {
        let _g = rng_lock();
        let model = smallcnn_random_head(3);
        tch::manual_seed(4);
        let x = Tensor::rand([12, 1, 28, 28], cpu());
        // The model's own labels, two of them replaced by a wrong class.
        let pred = predictions(&model, &x);
        let y = pred.copy();
        y.narrow(0, 0, 2).copy_(&((pred.narrow(0, 0, 2) + 1).remainder(10)));
        let (adv, flags) = quick(0.03).perturb(&model, &x, &y).unwrap();
        let flags = flags_of(&flags.unwrap());
        let wrong = flags_of(&predictions(&model, &adv).ne_tensor(&y));
        let dist = linf_rows(&adv, &x);
        assert!(flags[0] && flags[1] && dist[0] == 0.0 && dist[1] == 0.0, "misclassified inputs: flagged, unchanged");
        for i in 0..12 {
            if flags[i] {
                assert!(wrong[i], "example {i} flagged but classified correctly at its point");
            } else {
                assert_eq!(dist[i], 0.0, "example {i} not flagged but moved");
            }
        }
        let broken = flags.iter().filter(|f| **f).count();
        assert!(broken > 2 && broken < 12, "eps 0.03 should break some points but not all: {broken}");
    }

    /// The minimal L∞ distance from each example to any decision boundary of the affine model,
    /// and the nearest rival class.
    fn affine_distances(model: &Affine, x: &Tensor) -> Vec<f64> {
        let z = Vec::<f64>::try_from(model.logits(x, false).unwrap().to_kind(Kind::Double).reshape([-1])).unwrap();
        let w = Vec::<f64>::try_from(model.w.to_kind(Kind::Double).reshape([-1])).unwrap();
        let (k, d) = (model.w.size()[0] as usize, model.w.size()[1] as usize);
        (0..x.size()[0] as usize)
            .map(|i| {
                let zi = &z[i * k..(i + 1) * k];
                let y = (0..k).max_by(|a, b| zi[*a].total_cmp(&zi[*b])).unwrap();
                (0..k)
                    .filter(|j| *j != y)
                    .map(|j| {
                        let l1: f64 = (0..d).map(|c| (w[y * d + c] - w[j * d + c]).abs()).sum();
                        (zi[y] - zi[j]) / l1
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    fn affine_setup() -> (Affine, Tensor, Tensor, Vec<f64>) {
        tch::manual_seed(5);
        // Class 0 ahead by a clear margin, so the boundaries lie well inside the box.
        let b = Tensor::randn([10], cpu()) * 0.5 + Tensor::from_slice(&[2.0f32, 0., 0., 0., 0., 0., 0., 0., 0., 0.]);
        let model = Affine { w: Tensor::randn([10, 16], cpu()), b };
        // Points in [0.4, 0.6]: the box cannot bind for steps below 0.4.
        let x = Tensor::rand([8, 1, 4, 4], cpu()) * 0.2 + 0.4;
        let y = predictions(&model, &x);
        let dist = affine_distances(&model, &x);
        assert!(dist.iter().all(|d| *d > 0.01 && *d < 0.35), "setup: {dist:?}");
        (model, x, y, dist)
    }

    #[test]
    fn on_an_affine_model_fab_finds_the_minimal_distance() {
        let _g = rng_lock();
        let (model, x, y, minimal) = affine_setup();
        // Standard FAB-T: the overshoot η leaves the found distance slightly above the minimum.
        let (adv, flags) = FabT::standard(1.0).perturb(&model, &x, &y).unwrap();
        assert!(flags_of(&flags.unwrap()).iter().all(|f| *f));
        for (found, d) in linf_rows(&adv, &x).iter().zip(&minimal) {
            assert!(*found >= d * (1.0 - 1e-5) && *found <= d * 1.01, "found {found}, minimal {d}");
        }
        // With almost no overshoot the iterates converge onto the boundary.
        let exact = FabT { eta: 1.001, ..FabT::standard(1.0) };
        let (adv, _) = exact.perturb(&model, &x, &y).unwrap();
        for (found, d) in linf_rows(&adv, &x).iter().zip(&minimal) {
            assert!((found - d).abs() <= 1e-3 * d, "found {found}, minimal {d}");
        }
        // Success within eps: just above the minimal distance yes, below no.
        for i in [0i64, 3, 6] {
            let (xi, yi, d) = (x.narrow(0, i, 1), y.narrow(0, i, 1), minimal[i as usize]);
            let (_, above) = FabT::standard(d * 1.02).perturb(&model, &xi, &yi).unwrap();
            let (below_adv, below) = FabT::standard(d * 0.98).perturb(&model, &xi, &yi).unwrap();
            assert!(flags_of(&above.unwrap())[0], "example {i}: not broken at 1.02 × {d}");
            assert!(!flags_of(&below.unwrap())[0], "example {i}: broken at 0.98 × {d}");
            assert!(below_adv.equal(&xi));
        }
    }

    #[test]
    fn fab_breaks_what_pgd_cannot_when_the_cross_entropy_saturates() {
        let _g = rng_lock();
        let model = Scaled { net: smallcnn_random_head(6), scale: 1e4 };
        tch::manual_seed(7);
        let x = Tensor::rand([16, 1, 28, 28], cpu());
        let y = predictions(&model, &x);
        let eps = 0.1;
        let count = |adv: &Tensor| flags_of(&predictions(&model, adv).ne_tensor(&y)).iter().filter(|f| **f).count();
        let (pgd_adv, _) = Pgd::paper(eps, 20).perturb(&model, &x, &y).unwrap();
        let (fab_adv, flags) = quick(eps).perturb(&model, &x, &y).unwrap();
        let (pgd, fab) = (count(&pgd_adv), count(&fab_adv));
        assert_eq!(fab, flags_of(&flags.unwrap()).iter().filter(|f| **f).count());
        assert!(fab > pgd, "FAB-T broke {fab}/16, PGD-20 {pgd}/16");
    }

    #[test]
    fn seeded_runs_repeat_exactly() {
        let _g = rng_lock();
        let model = smallcnn_random_head(8);
        let x = Tensor::rand([4, 1, 28, 28], cpu());
        let y = predictions(&model, &x);
        let attack = FabT { iterations: 10, targets: 2, restarts: 2, ..FabT::standard(0.01) };
        let run = || {
            tch::manual_seed(9);
            let (adv, flags) = attack.perturb(&model, &x, &y).unwrap();
            (adv, flags.unwrap())
        };
        let (a1, f1) = run();
        let (a2, f2) = run();
        assert!(a1.equal(&a2) && f1.equal(&f2));
    }

    #[test]
    fn bad_requests_are_refused() {
        let model = Affine { w: Tensor::zeros([10, 4], cpu()), b: Tensor::zeros([10], cpu()) };
        let x = Tensor::zeros([2, 1, 2, 2], cpu());
        let y = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        assert!(matches!(FabT::standard(-0.1).perturb(&model, &x, &y), Err(Error::Invalid(_))));
        assert!(matches!(FabT { beta: 1.5, ..FabT::standard(0.1) }.perturb(&model, &x, &y), Err(Error::Invalid(_))));
        let y3 = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        assert!(matches!(FabT::standard(0.1).perturb(&model, &x, &y3), Err(Error::Invalid(_))));
    }

    #[test]
    fn empty_batches_and_no_targets_pass_through() {
        let model = Affine { w: Tensor::eye(10, cpu()).narrow(1, 0, 4).contiguous(), b: Tensor::zeros([10], cpu()) };
        let x = Tensor::zeros([0, 1, 2, 2], cpu());
        let y = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let (adv, flags) = FabT::standard(0.1).perturb(&model, &x, &y).unwrap();
        assert_eq!(adv.size(), [0, 1, 2, 2]);
        assert_eq!(flags.unwrap().size(), [0]);
        let x = Tensor::rand([3, 1, 2, 2], cpu());
        let y = Tensor::from_slice(&[0i64, 1, 9]);
        let (adv, flags) = FabT { targets: 0, ..FabT::standard(0.1) }.perturb(&model, &x, &y).unwrap();
        assert!(adv.equal(&x));
        assert_eq!(flags_of(&flags.unwrap()), flags_of(&predictions(&model, &x).ne_tensor(&y)));
    }
}
