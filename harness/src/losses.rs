//! Per-example loss building blocks of the training methods (SPEC §2) and of the evaluation
//! attacks (SPEC §3): pure tensor functions, no model and no state.
//!
//! Conventions shared by every function:
//! - `logits` are `[B, C]` floating-point tensors (any float dtype, any device); labels and
//!   targets are `[B]` Int64 tensors with values in `0..C`. The result is a `[B]` tensor of the
//!   logits' dtype, one value per example: callers reduce (SPEC §1 averages over the batch).
//! - p = softmax(z) along the class dimension; ln is the natural logarithm.
//! - Every ln p is computed as `log_softmax(z)`, never as `ln(softmax(z))` (SPEC §1): an
//!   underflowed probability then enters a sum `p · ln p` as `0 · finite = 0`, not `0 · -inf = NaN`,
//!   and gradients stay finite.
//! - Nothing is detached: gradients flow into every argument (TRADES and MART detach neither p(x)
//!   nor the MART weight, SPEC §2); callers detach where a method's objective says so.
//!
//! The golden values of `fixtures/golden/losses.json` are computed independently with plain
//! PyTorch by `fixtures/golden/losses.py`; the tests below compare against them.

use std::f64::consts::LN_2;

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// The `1e-12` that MART adds inside its logarithms and AutoAttack to its DLR denominators.
const TINY: f64 = 1e-12;

/// MART's offset inside the boosted-CE logarithm, `ln(1.0001 - max_{k≠y} p_k)` [MART mart.py].
const MART_BCE_OFFSET: f64 = 1.0001;

/// Checks that `logits` is a `[B, C]` floating-point tensor with at least `min_classes` classes;
/// returns `(B, C)`.
fn logits_shape(what: &str, name: &str, logits: &Tensor, min_classes: i64) -> Result<(i64, i64)> {
    let size = logits.size();
    let floating = logits.f_is_floating_point()?;
    let (b, c) = match size.as_slice() {
        &[b, c] if floating => (b, c),
        _ => {
            return Err(Error::Invalid(format!(
                "{what}: `{name}` must be [B, C] logits of a floating-point dtype, found shape {size:?} and dtype {:?}",
                logits.f_kind()?
            )))
        }
    };
    if c < min_classes {
        return Err(Error::Invalid(format!(
            "{what}: needs at least {min_classes} classes, but `{name}` has {c} (shape {size:?})"
        )));
    }
    Ok((b, c))
}

/// Checks that `labels` is a `[batch]` Int64 tensor.
fn check_labels(what: &str, name: &str, labels: &Tensor, batch: i64) -> Result<()> {
    let size = labels.size();
    let kind = labels.f_kind()?;
    if size.as_slice() != [batch] || kind != Kind::Int64 {
        return Err(Error::Invalid(format!(
            "{what}: `{name}` must be [{batch}] Int64 class indices, found shape {size:?} and dtype {kind:?}"
        )));
    }
    Ok(())
}

/// Checks that two logit tensors have the same `[B, C]` shape (at least `min_classes` classes).
fn check_pair(what: &str, p_logits: &Tensor, q_logits: &Tensor) -> Result<()> {
    logits_shape(what, "p_logits", p_logits, 1)?;
    logits_shape(what, "q_logits", q_logits, 1)?;
    if p_logits.size() != q_logits.size() {
        return Err(Error::Invalid(format!(
            "{what}: the two logit tensors must have the same shape, found {:?} and {:?}",
            p_logits.size(),
            q_logits.size()
        )));
    }
    Ok(())
}

/// ln p = log_softmax(z) over the class dimension.
fn log_probs(logits: &Tensor) -> Result<Tensor> {
    Ok(logits.f_log_softmax(1, None::<Kind>)?)
}

/// p = softmax(z) over the class dimension.
fn probs(logits: &Tensor) -> Result<Tensor> {
    Ok(logits.f_softmax(1, None::<Kind>)?)
}

/// Sum over the class dimension: `[B, C] -> [B]`.
fn class_sum(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_sum_dim_intlist(1, false, None::<Kind>)?)
}

/// `t[i, y_i]` for every row: `[B, C] -> [B]`.
fn pick(t: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(t.f_gather(1, &y.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?)
}

/// `[B, C]` Bool mask, true at `(i, y_i)`. Built by comparison with `arange(C)` (no host
/// synchronisation, unlike `one_hot`'s range check on CUDA).
fn label_mask(y: &Tensor, classes: i64) -> Result<Tensor> {
    let arange = Tensor::f_arange(classes, (Kind::Int64, y.device()))?;
    Ok(arange.f_unsqueeze(0)?.f_eq_tensor(&y.f_unsqueeze(1)?)?)
}

/// `max_{k≠y_i} t[i, k]` for every row (needs at least two classes): `[B, C] -> [B]`. Like
/// `torch.max(dim)`, the gradient goes to one maximising entry.
fn max_other(t: &Tensor, y: &Tensor, classes: i64) -> Result<Tensor> {
    let others = t.f_masked_fill(&label_mask(y, classes)?, f64::NEG_INFINITY)?;
    Ok(others.f_max_dim(1, false)?.0)
}

/// Per-example cross-entropy `CE(z, y) = -ln p_y = -log_softmax(z)_y` (SPEC §2 table, the
/// outer loss of natural training and AT; PyTorch `F.cross_entropy(z, y, reduction='none')`).
pub fn ce(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (b, _) = logits_shape("ce", "logits", logits, 1)?;
    check_labels("ce", "y", y, b)?;
    Ok(pick(&log_probs(logits)?, y)?.f_neg()?)
}

/// Shannon entropy of the predictive distribution, `H(p) = -Σ_k p_k ln p_k` with p = softmax(z),
/// computed as `-Σ softmax(z) · log_softmax(z)` (SPEC §1; InfoAT's weight H(p(x)) and its
/// regulariser H(p(x_adv)), paper eq. 17/18). An underflowed p_k contributes 0; the gradient is
/// finite for any finite logits.
pub fn entropy(logits: &Tensor) -> Result<Tensor> {
    logits_shape("entropy", "logits", logits, 1)?;
    Ok(class_sum(&probs(logits)?.f_mul(&log_probs(logits)?)?)?.f_neg()?)
}

/// Kullback–Leibler divergence `KL(p ‖ q) = Σ_k p_k (ln p_k - ln q_k)`, p = softmax(p_logits),
/// q = softmax(q_logits), both logarithms from log_softmax (SPEC §2 "Details"; TRADES' robust
/// term with p = p(x), q = p(x_adv), and the `kl` divergence of the InfoAT ablation).
pub fn kl(p_logits: &Tensor, q_logits: &Tensor) -> Result<Tensor> {
    check_pair("kl", p_logits, q_logits)?;
    let lp = log_probs(p_logits)?;
    let lq = log_probs(q_logits)?;
    class_sum(&probs(p_logits)?.f_mul(&lp.f_sub(&lq)?)?)
}

/// Jensen–Shannon divergence `JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m)`, m = (p + q) / 2 (SPEC §2,
/// InfoAT ablation `divergence = js`). ln m is computed as `logaddexp(ln p, ln q) - ln 2` from
/// the two log_softmax, so it stays finite even where both probabilities underflow. In float32
/// the result for p = q can differ from 0 by rounding (about 1e-7), not by more.
pub fn js(p_logits: &Tensor, q_logits: &Tensor) -> Result<Tensor> {
    check_pair("js", p_logits, q_logits)?;
    let lp = log_probs(p_logits)?;
    let lq = log_probs(q_logits)?;
    let lm = lp.f_logaddexp(&lq)?.f_sub_scalar(LN_2)?;
    let kl_pm = class_sum(&probs(p_logits)?.f_mul(&lp.f_sub(&lm)?)?)?;
    let kl_qm = class_sum(&probs(q_logits)?.f_mul(&lq.f_sub(&lm)?)?)?;
    Ok(kl_pm.f_add(&kl_qm)?.f_mul_scalar(0.5)?)
}

/// Soft cross-entropy `-Σ_k p_k ln q_k`, p = softmax(p_logits), ln q = log_softmax(q_logits)
/// (SPEC §2, InfoAT ablation `divergence = ce`; PyTorch `F.cross_entropy(q_logits, p)` with
/// class-probability targets). Equals H(p) + KL(p ‖ q).
pub fn soft_ce(p_logits: &Tensor, q_logits: &Tensor) -> Result<Tensor> {
    check_pair("soft_ce", p_logits, q_logits)?;
    Ok(class_sum(&probs(p_logits)?.f_mul(&log_probs(q_logits)?)?)?.f_neg()?)
}

/// Squared L2 distance between the probability vectors, `‖softmax(p_logits) - softmax(q_logits)‖²
/// = Σ_k (p_k - q_k)²` (paper eq. 16: the MSE surrogate of the 0-1 disagreement; InfoAT's default
/// divergence, SPEC §2).
pub fn sq_dist(p_logits: &Tensor, q_logits: &Tensor) -> Result<Tensor> {
    check_pair("sq_dist", p_logits, q_logits)?;
    class_sum(&probs(p_logits)?.f_sub(&probs(q_logits)?)?.f_square()?)
}

/// Probability of the true class, `p_y = softmax(z)_y` (MART's `true_probs`; the weight
/// `1 - p_y(x)` of MART and of InfoAT's `weight = misclassification` ablation, SPEC §2).
pub fn true_prob(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (b, _) = logits_shape("true_prob", "logits", logits, 1)?;
    check_labels("true_prob", "y", y, b)?;
    pick(&probs(logits)?, y)
}

/// MART's boosted cross-entropy (SPEC §2 "Details", [MART mart.py]):
/// `BCE(z_adv, y) = CE(z_adv, y) - ln(1.0001 - max_{k≠y} p_k + 1e-12)`, p = softmax(z_adv).
///
/// The top non-true class is taken from the probabilities, as mart.py's
/// `argsort(adv_probs)[:, -2:]` does, and the logarithm is mart.py's literal
/// `log(1.0001 - adv_probs + 1e-12)` (SPEC writes it without the `+ 1e-12`, which changes the
/// value by at most about 1e-8 since the argument is at least 1e-4). Needs at least two classes.
pub fn mart_bce(adv_logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (b, c) = logits_shape("mart_bce", "adv_logits", adv_logits, 2)?;
    check_labels("mart_bce", "y", y, b)?;
    let top_other = max_other(&probs(adv_logits)?, y, c)?;
    let margin = top_other.f_neg()?.f_add_scalar(MART_BCE_OFFSET)?.f_add_scalar(TINY)?.f_log()?;
    Ok(ce(adv_logits, y)?.f_sub(&margin)?)
}

/// MART's per-example KL term (SPEC §2 "Details", [MART mart.py]):
/// `Σ_k p_nat,k (ln p_nat,k - ln(p_adv,k + 1e-12))`, as PyTorch's
/// `KLDivLoss(reduction='none')(log(p_adv + 1e-12), p_nat).sum(1)` computes it
/// (`target · (ln target - input)`, 0 where the target is 0). Here ln p_nat comes from
/// log_softmax, so an underflowed p_nat,k gives 0; ln(p_adv + 1e-12) ≥ ln 1e-12 is always
/// finite. Because of the 1e-12 the value for p_nat = p_adv is about -C·1e-12 in float64, not 0.
/// The caller multiplies by MART's weight `1.0000001 - p_y(x)`.
pub fn mart_kl(nat_logits: &Tensor, adv_logits: &Tensor) -> Result<Tensor> {
    check_pair("mart_kl", nat_logits, adv_logits)?;
    let log_adv = probs(adv_logits)?.f_add_scalar(TINY)?.f_log()?;
    let diff = log_probs(nat_logits)?.f_sub(&log_adv)?;
    class_sum(&probs(nat_logits)?.f_mul(&diff)?)
}

/// The CW∞ attack loss of SPEC §3, `-max(z_y - max_{j≠y} z_j + κ, 0)` (κ = 50 in the paper's
/// CW-k attacks). Maximising it drives the true logit below the best other one by a margin up
/// to κ; it is 0 (written -0) once the margin is reached. Needs at least two classes.
pub fn cw_margin(logits: &Tensor, y: &Tensor, kappa: f64) -> Result<Tensor> {
    let (b, c) = logits_shape("cw_margin", "logits", logits, 2)?;
    check_labels("cw_margin", "y", y, b)?;
    let margin = pick(logits, y)?.f_sub(&max_other(logits, y, c)?)?.f_add_scalar(kappa)?;
    Ok(margin.f_clamp_min(0.0)?.f_neg()?)
}

/// Column `k` of the logits sorted in descending order: z_π(k+1).
fn sorted_column(sorted: &Tensor, k: i64) -> Result<Tensor> {
    Ok(sorted.f_select(1, k)?)
}

/// AutoAttack's difference-of-logits-ratio loss (SPEC §3 "APGD details", [fra31/auto-attack]):
/// `DLR(z, y) = -(z_y - max_{i≠y} z_i) / (z_π1 - z_π3 + 1e-12)`, π the classes sorted by
/// descending logit. Needs at least three classes ([`Error::Invalid`] otherwise).
pub fn dlr(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (b, c) = logits_shape("dlr", "logits", logits, 3)?;
    check_labels("dlr", "y", y, b)?;
    let (sorted, _) = logits.f_sort(1, true)?;
    let numerator = pick(logits, y)?.f_sub(&max_other(logits, y, c)?)?;
    let denominator = sorted_column(&sorted, 0)?.f_sub(&sorted_column(&sorted, 2)?)?.f_add_scalar(TINY)?;
    Ok(numerator.f_div(&denominator)?.f_neg()?)
}

/// AutoAttack's targeted DLR loss (SPEC §3 "APGD details", [fra31/auto-attack]):
/// `-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)`, t = `target`, π the classes sorted by
/// descending logit. Needs at least four classes ([`Error::Invalid`] otherwise).
pub fn dlr_targeted(logits: &Tensor, y: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (b, _) = logits_shape("dlr_targeted", "logits", logits, 4)?;
    check_labels("dlr_targeted", "y", y, b)?;
    check_labels("dlr_targeted", "target", target, b)?;
    let (sorted, _) = logits.f_sort(1, true)?;
    let numerator = pick(logits, y)?.f_sub(&pick(logits, target)?)?;
    let low = sorted_column(&sorted, 2)?.f_add(&sorted_column(&sorted, 3)?)?.f_mul_scalar(0.5)?;
    let denominator = sorted_column(&sorted, 0)?.f_sub(&low)?.f_add_scalar(TINY)?;
    Ok(numerator.f_div(&denominator)?.f_neg()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use tch::{Device, Kind, Tensor};

    use super::*;

    /// Written by `fixtures/golden/losses.py` (independent PyTorch definitions, float64).
    const GOLDEN: &str = include_str!("../../fixtures/golden/losses.json");

    /// Every public function of the module, by its name in the golden file.
    const FUNCTIONS: [&str; 12] = [
        "ce",
        "entropy",
        "kl",
        "js",
        "soft_ce",
        "sq_dist",
        "true_prob",
        "mart_bce",
        "mart_kl",
        "cw_margin",
        "dlr",
        "dlr_targeted",
    ];

    #[derive(Deserialize)]
    struct Tol {
        rtol: f64,
        atol: f64,
    }

    #[derive(Deserialize)]
    struct Tolerances {
        float64: Tol,
        float32: Tol,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        p_logits: Vec<Vec<f64>>,
        q_logits: Vec<Vec<f64>>,
        y: Vec<i64>,
        target: Vec<i64>,
        kappa: f64,
        expected: BTreeMap<String, Vec<f64>>,
    }

    #[derive(Deserialize)]
    struct Golden {
        tolerance: Tolerances,
        cases: Vec<Case>,
    }

    fn golden() -> Golden {
        serde_json::from_str(GOLDEN).expect("fixtures/golden/losses.json parses")
    }

    /// `[B, C]` logits of `kind` from rows of (exactly float32-representable) values.
    fn matrix(rows: &[Vec<f64>], kind: Kind) -> Tensor {
        let c = rows[0].len() as i64;
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, c]).to_kind(kind)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t).unwrap()
    }

    /// Evaluates the function `name` on a case (see the golden file's conventions).
    fn eval(name: &str, p: &Tensor, q: &Tensor, case: &Case) -> Result<Tensor> {
        let y = Tensor::from_slice(&case.y);
        let t = Tensor::from_slice(&case.target);
        match name {
            "ce" => ce(p, &y),
            "entropy" => entropy(p),
            "kl" => kl(p, q),
            "js" => js(p, q),
            "soft_ce" => soft_ce(p, q),
            "sq_dist" => sq_dist(p, q),
            "true_prob" => true_prob(p, &y),
            "mart_bce" => mart_bce(p, &y),
            "mart_kl" => mart_kl(p, q),
            "cw_margin" => cw_margin(p, &y, case.kappa),
            "dlr" => dlr(p, &y),
            "dlr_targeted" => dlr_targeted(p, &y, &t),
            other => panic!("unknown function {other:?} in losses.json"),
        }
    }

    /// Extreme logits in float32: probabilities exp(-200) and exp(-2e4) underflow to 0.
    fn extreme(kind: Kind) -> (Tensor, Tensor, Tensor) {
        let mut p = vec![0f32; 4 * 10];
        let mut q = vec![0f32; 4 * 10];
        for (i, v) in [(0usize, 100f32), (1, -100.), (2, 1e4), (3, -1e4)] {
            for k in 0..10 {
                p[i * 10 + k] = if k == i { v } else { -v };
                q[i * 10 + k] = if k == 9 - i { v } else { -v };
            }
        }
        let p = Tensor::from_slice(&p).view([4, 10]).to_kind(kind);
        let q = Tensor::from_slice(&q).view([4, 10]).to_kind(kind);
        (p, q, Tensor::from_slice(&[0i64, 1, 5, 3]))
    }

    #[test]
    fn matches_pytorch_goldens() {
        let g = golden();
        for f in FUNCTIONS {
            assert!(g.cases.iter().any(|c| c.expected.contains_key(f)), "no golden case covers {f}");
        }
        for (kind, tol) in [(Kind::Double, &g.tolerance.float64), (Kind::Float, &g.tolerance.float32)] {
            for case in &g.cases {
                let p = matrix(&case.p_logits, kind);
                let q = matrix(&case.q_logits, kind);
                let batch = case.p_logits.len() as i64;
                for (name, want) in &case.expected {
                    let out = eval(name, &p, &q, case).unwrap_or_else(|e| panic!("{}/{name}: {e}", case.name));
                    assert_eq!(out.size(), [batch], "{}/{name}: output shape", case.name);
                    assert_eq!(out.kind(), kind, "{}/{name}: output dtype", case.name);
                    let got = values(&out);
                    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                        assert!(g.is_finite(), "{}/{name}[{i}] ({kind:?}): {g} is not finite", case.name);
                        assert!(
                            (g - w).abs() <= tol.atol + tol.rtol * w.abs(),
                            "{}/{name}[{i}] ({kind:?}): got {g}, PyTorch golden {w}",
                            case.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_logits_give_finite_values() {
        for kind in [Kind::Float, Kind::Double] {
            let (p, q, y) = extreme(kind);
            let t = Tensor::from_slice(&[9i64, 8, 7, 6]);
            let outs = [
                ("ce", ce(&p, &y)),
                ("entropy", entropy(&p)),
                ("kl", kl(&p, &q)),
                ("kl_rev", kl(&q, &p)),
                ("js", js(&p, &q)),
                ("soft_ce", soft_ce(&p, &q)),
                ("sq_dist", sq_dist(&p, &q)),
                ("true_prob", true_prob(&p, &y)),
                ("mart_bce", mart_bce(&p, &y)),
                ("mart_kl", mart_kl(&p, &q)),
                ("cw_margin", cw_margin(&p, &y, 50.0)),
                ("dlr", dlr(&p, &y)),
                ("dlr_targeted", dlr_targeted(&p, &y, &t)),
            ];
            for (name, out) in outs {
                let v = values(&out.unwrap());
                assert!(v.iter().all(|x| x.is_finite()), "{name} ({kind:?}): {v:?}");
            }
        }
    }

    #[test]
    fn entropy_of_uniform_is_ln_c_and_of_one_hot_is_zero() {
        for c in [2i64, 3, 10, 100, 1000] {
            for kind in [Kind::Float, Kind::Double] {
                let h = values(&entropy(&Tensor::zeros([2, c], (kind, Device::Cpu))).unwrap());
                let ln_c = (c as f64).ln();
                for v in h {
                    assert!((v - ln_c).abs() <= 1e-6 * ln_c, "C = {c} ({kind:?}): H = {v}, ln C = {ln_c}");
                }
            }
        }
        for kind in [Kind::Float, Kind::Double] {
            let one_hot =
                Tensor::from_slice(&[200.0f32, 0.0, 0.0, 0.0, 1e4, -1e4, -1e4, -1e4]).view([2, 4]).to_kind(kind);
            for v in values(&entropy(&one_hot).unwrap()) {
                assert!((0.0..1e-30).contains(&v), "one-hot entropy ({kind:?}) = {v}");
            }
        }
    }

    #[test]
    fn divergences_are_nonnegative_and_zero_for_equal_inputs() {
        tch::manual_seed(0);
        for kind in [Kind::Float, Kind::Double] {
            let p = (Tensor::randn([64, 10], (kind, Device::Cpu)) * 5.0).to_kind(kind);
            let q = (&p + Tensor::randn([64, 10], (kind, Device::Cpu)) * 2.0).to_kind(kind);
            let (xp, xq, _) = extreme(kind);
            for (p, q) in [(&p, &q), (&q, &p), (&xp, &xq), (&xq, &xp)] {
                for (name, v) in [("kl", kl(p, q)), ("js", js(p, q)), ("sq_dist", sq_dist(p, q))] {
                    let v = values(&v.unwrap());
                    assert!(v.iter().all(|&x| x >= 0.0), "{name} ({kind:?}) negative: {v:?}");
                }
                // MART's KL: the 1e-12 inside its logarithm can only push it below 0 by C·1e-12.
                let v = values(&mart_kl(p, q).unwrap());
                assert!(v.iter().all(|&x| x >= -10.0 * 1e-12), "mart_kl ({kind:?}): {v:?}");
                // soft CE = H(p) + KL(p ‖ q).
                let lhs = values(&soft_ce(p, q).unwrap());
                let rhs = values(&(entropy(p).unwrap() + kl(p, q).unwrap()));
                for (a, b) in lhs.iter().zip(&rhs) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "soft_ce {a} vs H + KL {b} ({kind:?})");
                }
            }
            for p in [&p, &xp] {
                let same = p.copy();
                assert!(values(&kl(p, &same).unwrap()).iter().all(|&x| x == 0.0), "kl(p, p) != 0");
                assert!(values(&sq_dist(p, &same).unwrap()).iter().all(|&x| x == 0.0), "sq_dist(p, p) != 0");
                let v = values(&js(p, &same).unwrap());
                assert!(v.iter().all(|&x| x.abs() <= 1e-6), "js(p, p) ({kind:?}) = {v:?}");
                let v = values(&mart_kl(p, &same).unwrap());
                assert!(v.iter().all(|&x| x.abs() <= 1e-6), "mart_kl(p, p) ({kind:?}) = {v:?}");
                let lhs = values(&soft_ce(p, &same).unwrap());
                let rhs = values(&entropy(p).unwrap());
                for (a, b) in lhs.iter().zip(&rhs) {
                    assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "soft_ce(p, p) {a} vs H(p) {b}");
                }
            }
        }
    }

    #[test]
    fn gradients_are_finite_for_extreme_logits() {
        let (p0, q0, y) = extreme(Kind::Float);
        let t = Tensor::from_slice(&[9i64, 8, 7, 6]);
        type Loss<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a>;
        let losses: Vec<(&str, Loss)> = vec![
            ("entropy", Box::new(|p, _| entropy(p))),
            ("ce", Box::new(|p, _| ce(p, &y))),
            ("kl", Box::new(kl)),
            ("js", Box::new(js)),
            ("soft_ce", Box::new(soft_ce)),
            ("sq_dist", Box::new(sq_dist)),
            ("true_prob", Box::new(|p, _| true_prob(p, &y))),
            ("mart_bce", Box::new(|p, _| mart_bce(p, &y))),
            ("mart_kl", Box::new(mart_kl)),
            ("cw_margin", Box::new(|p, _| cw_margin(p, &y, 50.0))),
            ("dlr", Box::new(|p, _| dlr(p, &y))),
            ("dlr_targeted", Box::new(|p, _| dlr_targeted(p, &y, &t))),
        ];
        for (name, loss) in losses {
            let mut p = p0.copy();
            let mut q = q0.copy();
            let _ = p.requires_grad_(true);
            let _ = q.requires_grad_(true);
            loss(&p, &q).unwrap().sum(Kind::Float).backward();
            for (which, x) in [("p", &p), ("q", &q)] {
                let grad = x.grad();
                if grad.defined() {
                    let all_finite = grad.isfinite().all().int64_value(&[]) == 1;
                    assert!(all_finite, "{name}: gradient w.r.t. {which} not finite: {grad:?}");
                }
            }
            assert!(p.grad().defined(), "{name}: no gradient w.r.t. the logits");
        }
    }

    #[test]
    fn reference_points() {
        // Hand-computed values, independent of the golden file.
        let z = Tensor::from_slice(&[1.0f32, 5.0, 5.0, 2.0]).view([1, 4]);
        let y = Tensor::from_slice(&[0i64]);
        // z_y - max_other = -4; kappa 10 -> -(6); kappa 1 -> clamp at 0.
        assert_eq!(values(&cw_margin(&z, &y, 10.0).unwrap()), [-6.0]);
        assert_eq!(values(&cw_margin(&z, &y, 1.0).unwrap()), [0.0]);
        // DLR: -(1 - 5) / (5 - 2) = 4/3; targeted at class 3: -(1 - 2) / (5 - (2 + 1) / 2) = 1/3.5.
        assert!((values(&dlr(&z, &y).unwrap())[0] - 4.0 / 3.0).abs() < 1e-6);
        let t = Tensor::from_slice(&[3i64]);
        assert!((values(&dlr_targeted(&z, &y, &t).unwrap())[0] - 1.0 / 3.5).abs() < 1e-6);
        // Uniform over 4: CE = ln 4, p_y = 1/4, MART BCE = ln 4 - ln(1.0001 - 1/4 + 1e-12).
        let u = Tensor::zeros([1, 4], (Kind::Double, Device::Cpu));
        assert!((values(&ce(&u, &y).unwrap())[0] - 4f64.ln()).abs() < 1e-12);
        assert!((values(&true_prob(&u, &y).unwrap())[0] - 0.25).abs() < 1e-12);
        let bce = 4f64.ln() - (1.0001f64 - 0.25 + 1e-12).ln();
        assert!((values(&mart_bce(&u, &y).unwrap())[0] - bce).abs() < 1e-12);
    }

    #[test]
    fn invalid_inputs_are_rejected_with_a_message() {
        let two = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let three = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let invalid = |r: Result<Tensor>, needle: &str| match r {
            Err(Error::Invalid(msg)) => assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}"),
            Err(e) => panic!("expected Error::Invalid, got {e}"),
            Ok(_) => panic!("expected Error::Invalid ({needle}), got a value"),
        };
        invalid(dlr(&two, &y), "at least 3 classes");
        invalid(dlr_targeted(&three, &y, &y), "at least 4 classes");
        let one = Tensor::zeros([3, 1], (Kind::Float, Device::Cpu));
        invalid(cw_margin(&one, &y, 50.0), "at least 2 classes");
        invalid(mart_bce(&one, &y), "at least 2 classes");
        invalid(ce(&three, &Tensor::zeros([2], (Kind::Int64, Device::Cpu))), "Int64 class indices");
        invalid(ce(&three, &Tensor::zeros([3], (Kind::Int, Device::Cpu))), "Int64 class indices");
        invalid(entropy(&Tensor::zeros([3], (Kind::Float, Device::Cpu))), "[B, C] logits");
        invalid(entropy(&Tensor::zeros([3, 3], (Kind::Int64, Device::Cpu))), "floating-point");
        invalid(kl(&two, &three), "same shape");
        invalid(js(&two, &three), "same shape");
    }
}
