//! Robustness curves (issue 22; Carlini et al., "On Evaluating Adversarial Robustness",
//! arXiv:1902.06705 §5.3): robust accuracy against the radius — monotone and reaching zero once
//! any image can be moved to uniform grey — and against the attack budget, which shows whether a
//! number has converged.

use infoat_registry::{AttackId, Curve, CurveAxis, CurvePoint, SanityCheck, SanityFlag};

use super::CURVE_EXAMPLES;
use crate::attacks::{Apgd, AttackBuild};
use crate::data::ImageSet;
use crate::eval::robust_flags;
use crate::models::Classifier;
use crate::Result;

/// The radius at which any image in [0, 1] can be moved to uniform grey.
pub const GREY: f64 = 0.5;

/// The attacks of the eps curves.
pub const EPS_CURVE_ATTACKS: [AttackId; 2] = [AttackId::Pgd20, AttackId::ApgdCe];

/// The budgets of APGD-CE's budget curve: (iterations, restarts).
pub const BUDGETS: [(usize, usize); 5] = [(10, 1), (20, 1), (50, 1), (100, 1), (100, 4)];

/// The radii of the eps curve around `eps`: 0, eps/4, eps/2, eps, 2 eps, 4 eps and [`GREY`], each
/// at most 1, in increasing order without repeats.
pub fn radii(eps: f64) -> Vec<f64> {
    let mut r: Vec<f64> =
        [0.0, eps / 4.0, eps / 2.0, eps, 2.0 * eps, 4.0 * eps, GREY].iter().map(|&v| v.min(1.0)).collect();
    r.sort_by(f64::total_cmp);
    r.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    r
}

fn point(x: f64, robust: &[bool]) -> CurvePoint {
    CurvePoint { x, correct: robust.iter().filter(|&&r| r).count(), total: robust.len() }
}

/// The curves on the first [`CURVE_EXAMPLES`] examples of `set`, and the sanity flags they trip;
/// `clean` is the evaluation's clean correctness on `set` (the curves' eps-0 point), `worst` the
/// suite's per-example worst case on `set`, if it has one.
pub fn measure(
    model: &dyn Classifier,
    set: &ImageSet,
    clean: &[bool],
    eps: f64,
    batch_size: usize,
    seed: u64,
    worst: Option<&[bool]>,
) -> Result<(Vec<Curve>, Vec<SanityFlag>)> {
    let set = set.take(CURVE_EXAMPLES);
    let worst_robust = worst.map(|w| w.iter().take(CURVE_EXAMPLES).filter(|&&r| r).count());
    let mut curves = Vec::new();
    if set.is_empty() {
        return Ok((curves, Vec::new()));
    }
    let clean: Vec<bool> = clean.iter().copied().take(CURVE_EXAMPLES).collect();
    for attack in EPS_CURVE_ATTACKS {
        let mut points = Vec::new();
        for r in radii(eps) {
            let robust = if r == 0.0 {
                clean.clone()
            } else {
                robust_flags(model, &set, attack.build(r).as_ref(), batch_size, seed)?
            };
            points.push(point(r, &robust));
        }
        curves.push(Curve { attack, axis: CurveAxis::Eps, points, restarts: 1 });
    }
    for (iterations, restarts) in BUDGETS {
        let apgd = Apgd { iterations, restarts, ..Apgd::ce(eps) };
        let robust = robust_flags(model, &set, &apgd, batch_size, seed)?;
        let p = point((iterations * restarts) as f64, &robust);
        match curves.last_mut().filter(|c| c.axis == CurveAxis::Iterations) {
            Some(c) => c.points.push(p),
            None => curves.push(Curve {
                attack: AttackId::ApgdCe,
                axis: CurveAxis::Iterations,
                points: vec![p],
                restarts: 1,
            }),
        }
    }
    let flags = check(&curves, worst_robust);
    Ok((curves, flags))
}

/// The sanity flags of `curves`: an eps curve that rises by more than one example or ends above
/// zero; a budget curve whose last point is more than one example below the one before *and*
/// more than one example below `worst_robust`, the suite's worst case on the same examples (the
/// reported number is then beaten by more budget; a still-falling curve above it contradicts
/// nothing reported).
pub fn check(curves: &[Curve], worst_robust: Option<usize>) -> Vec<SanityFlag> {
    let mut flags = Vec::new();
    for c in curves {
        match c.axis {
            CurveAxis::Eps => {
                for (i, a) in c.points.iter().enumerate() {
                    if let Some(b) = c.points[i + 1..].iter().find(|b| b.correct > a.correct + 1) {
                        flags.push(SanityFlag {
                            check: SanityCheck::EpsCurveNotMonotone,
                            message: format!(
                                "{} leaves {}/{} robust at eps {:.4} but {}/{} at the smaller eps {:.4}",
                                c.attack, b.correct, b.total, b.x, a.correct, a.total, a.x
                            ),
                        });
                        break;
                    }
                }
                if let Some(last) = c.points.last().filter(|p| p.correct > 0) {
                    flags.push(SanityFlag {
                        check: SanityCheck::EpsCurveNotZero,
                        message: format!(
                            "{} leaves {}/{} examples correct at eps {:.4}, where any image can be moved to grey",
                            c.attack, last.correct, last.total, last.x
                        ),
                    });
                }
            }
            CurveAxis::Iterations => {
                if let [.., prev, last] = c.points.as_slice() {
                    let beats_suite = worst_robust.is_none_or(|w| last.correct + 1 < w);
                    if last.correct + 1 < prev.correct && beats_suite {
                        flags.push(SanityFlag {
                            check: SanityCheck::BudgetNotConverged,
                            message: format!(
                                "{} at {} iterations × restarts leaves {}/{} robust, {} fewer than at {} and below \
                                 the suite's worst case{}: the number has not converged",
                                c.attack,
                                last.x,
                                last.correct,
                                last.total,
                                prev.correct - last.correct,
                                prev.x,
                                worst_robust.map(|w| format!(" ({w})")).unwrap_or_default()
                            ),
                        });
                    }
                }
            }
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(axis: CurveAxis, correct: &[usize]) -> Curve {
        let points =
            correct.iter().enumerate().map(|(i, &c)| CurvePoint { x: i as f64, correct: c, total: 50 }).collect();
        Curve { attack: AttackId::Pgd20, axis, points, restarts: 1 }
    }

    fn checks(c: &[Curve]) -> Vec<SanityCheck> {
        check(c, None).iter().map(|f| f.check).collect()
    }

    #[test]
    fn radii_cover_the_ball_and_grey_once() {
        assert_eq!(radii(0.3), vec![0.0, 0.075, 0.15, 0.3, 0.5, 0.6, 1.0]);
        let cifar = radii(8.0 / 255.0);
        assert_eq!(cifar.len(), 7);
        assert_eq!(*cifar.last().unwrap(), GREY);
        assert_eq!(radii(0.25), vec![0.0, 0.0625, 0.125, 0.25, 0.5, 1.0]);
    }

    #[test]
    fn a_rise_beyond_one_example_or_a_nonzero_end_flags_the_eps_curve() {
        assert!(checks(&[curve(CurveAxis::Eps, &[45, 30, 31, 10, 0])]).is_empty());
        assert_eq!(checks(&[curve(CurveAxis::Eps, &[45, 30, 33, 10, 0])]), vec![SanityCheck::EpsCurveNotMonotone]);
        assert_eq!(checks(&[curve(CurveAxis::Eps, &[45, 30, 20, 10, 1])]), vec![SanityCheck::EpsCurveNotZero]);
    }

    #[test]
    fn a_budget_curve_still_falling_at_its_end_has_not_converged() {
        assert!(checks(&[curve(CurveAxis::Iterations, &[30, 25, 22, 21, 20])]).is_empty());
        let falling = [curve(CurveAxis::Iterations, &[30, 25, 22, 21, 18])];
        assert_eq!(checks(&falling), vec![SanityCheck::BudgetNotConverged]);
        // The suite's worst case (e.g. AutoAttack) already at or below the curve: nothing reported is
        // contradicted.
        assert!(check(&falling, Some(17)).is_empty());
        assert!(check(&falling, Some(19)).is_empty());
        assert_eq!(check(&falling, Some(20)).len(), 1);
    }
}
