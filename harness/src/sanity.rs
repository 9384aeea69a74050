//! Sanity checks on an evaluation, in the spirit of AutoAttack's flags (Croce & Hein 2020) and
//! Carlini et al.'s checklist "On Evaluating Adversarial Robustness" (arXiv:1902.06705 §5):
//! a result that trips one is reported as *flagged* wherever it is shown.
//!
//! - `iterative_weaker_than_fgsm`: an iterative attack leaves more examples robust than FGSM;
//! - `more_steps_weaker`: PGD-100 / CW-100 leave more examples robust than PGD-20 / CW-20;
//! - `large_eps_not_broken`: PGD-20 at eps = 0.5 (any image can be moved halfway to grey)
//!   leaves more than 10 % of the examples correct;
//! - `randomized_outputs`: two forward passes on the same inputs differ;
//! - `zero_gradients`: the cross-entropy input gradient is exactly zero for more than 10 % of
//!   the correctly classified examples (saturated softmax, a non-differentiable layer).
//!
//! "Weaker" allows one example of noise, since random starts differ between attacks.

use std::collections::BTreeMap;

pub use infoat_registry::SanityFlag;
use infoat_registry::{AttackId, SanityCheck};
use tch::{Kind, Tensor};

use crate::attacks::{ce_sum, Attack, Pgd};
use crate::data::{make_batch, Augment, ImageSet};
use crate::eval::{accuracy_of, robust_flags};
use crate::models::Classifier;
use crate::Result;

/// The radius of the large-eps check.
pub const LARGE_EPS: f64 = 0.5;
/// Accuracy above which the large-eps check trips.
pub const LARGE_EPS_MAX_ACC: f64 = 0.10;
/// Fraction of zero-gradient examples above which the gradient check trips.
pub const ZERO_GRAD_MAX_FRACTION: f64 = 0.10;
/// Examples the model-probing checks look at.
pub const PROBE_EXAMPLES: usize = 100;

/// The white-box attacks of more than one gradient step on the model itself, which should never
/// leave more examples robust than FGSM (BPDA attacks another classifier; Square and the
/// black-box attacks use no gradient).
const ITERATIVE: [AttackId; 10] = [
    AttackId::Pgd20,
    AttackId::Pgd100,
    AttackId::PgdPlus,
    AttackId::Cw20,
    AttackId::Cw100,
    AttackId::Infopgd20,
    AttackId::ApgdCe,
    AttackId::ApgdT,
    AttackId::FabT,
    AttackId::Aa,
];

/// (more steps, fewer steps) of one attack: the first should never be the weaker.
const MORE_STEPS: [(AttackId, AttackId); 2] = [(AttackId::Pgd100, AttackId::Pgd20), (AttackId::Cw100, AttackId::Cw20)];

/// Checks that compare the attacks' results: `robust` maps attack ids to (robust, total) counts.
pub fn compare_attacks(robust: &BTreeMap<AttackId, (usize, usize)>) -> Vec<SanityFlag> {
    let mut flags = Vec::new();
    let weaker = |a: AttackId, b: AttackId| -> Option<String> {
        let (ra, na) = *robust.get(&a)?;
        let (rb, nb) = *robust.get(&b)?;
        (na == nb && ra > rb + 1).then(|| format!("{a} leaves {ra}/{na} robust, more than {b}'s {rb}/{nb}"))
    };
    for it in ITERATIVE {
        if let Some(m) = weaker(it, AttackId::Fgsm) {
            flags.push(SanityFlag { check: SanityCheck::IterativeWeakerThanFgsm, message: m });
        }
    }
    for (more, fewer) in MORE_STEPS {
        if let Some(m) = weaker(more, fewer) {
            flags.push(SanityFlag { check: SanityCheck::MoreStepsWeaker, message: m });
        }
    }
    flags
}

/// Checks that probe the model on the first [`PROBE_EXAMPLES`] examples of `set`.
pub fn probe_model(model: &dyn Classifier, set: &ImageSet, batch_size: usize, seed: u64) -> Result<Vec<SanityFlag>> {
    let mut flags = Vec::new();
    let n = set.len().min(PROBE_EXAMPLES);
    if n == 0 {
        return Ok(flags);
    }
    let probe = set.take(n);
    let idx: Vec<usize> = (0..n).collect();
    let batch = make_batch(&probe, &idx, Augment::None, 0, model.device())?;

    let (a, b) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
        Ok((model.logits(&batch.x, false)?, model.logits(&batch.x, false)?))
    })?;
    let diff = a.f_sub(&b)?.f_abs()?.f_max()?.double_value(&[]);
    let scale = a.f_abs()?.f_max()?.double_value(&[]).max(1.0);
    if diff.is_nan() || diff > 1e-5 * scale {
        flags.push(SanityFlag {
            check: SanityCheck::RandomizedOutputs,
            message: format!(
                "two forward passes on the same {n} inputs differ by up to {diff:.3e} in the logits; \
                 use an expectation over the randomness (EOT) before trusting these numbers"
            ),
        });
    }

    let zero = {
        let _frozen = model.freeze();
        let x = batch.x.f_detach()?.f_requires_grad_(true)?;
        let logits = model.logits(&x, false)?;
        let correct = logits.f_argmax(-1, false)?.f_eq_tensor(&batch.y)?;
        let loss = ce_sum(&logits, &batch.y)?;
        let grad = crate::attacks::input_gradient(&loss, &x)?;
        let per_example = grad.f_abs()?.f_flatten(1, -1)?.f_amax(&[1i64][..], false)?;
        let zero = per_example.f_eq(0.0)?.f_logical_and(&correct)?.f_sum(Kind::Int64)?.int64_value(&[]);
        let correct = correct.f_sum(Kind::Int64)?.int64_value(&[]);
        (zero, correct)
    };
    if zero.1 > 0 && zero.0 as f64 > ZERO_GRAD_MAX_FRACTION * zero.1 as f64 {
        flags.push(SanityFlag {
            check: SanityCheck::ZeroGradients,
            message: format!(
                "the cross-entropy input gradient is exactly zero for {}/{} correctly classified examples \
                 (gradient masking: prefer apgd_t, fab_t, square or aa)",
                zero.0, zero.1
            ),
        });
    }

    let large = Pgd::paper(LARGE_EPS, 20);
    let acc = accuracy_of(&robust_flags(model, &probe, &large as &dyn Attack, batch_size, seed)?);
    if acc.accuracy > LARGE_EPS_MAX_ACC {
        flags.push(SanityFlag {
            check: SanityCheck::LargeEpsNotBroken,
            message: format!(
                "PGD-20 at eps {LARGE_EPS} leaves {}/{} examples correct (expected at most {:.0} %)",
                acc.correct,
                acc.total,
                100.0 * LARGE_EPS_MAX_ACC
            ),
        });
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::test_support::{rng_lock, smallcnn_random_head, Scaled};
    use crate::models::Frozen;

    /// A network whose logits get fresh Gaussian noise on every call (a randomized defense).
    struct Noisy(Scaled);

    impl Classifier for Noisy {
        fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
            let z = self.0.logits(x, train)?;
            Ok(z.f_add(&z.f_randn_like()?.f_mul_scalar(0.1)?)?)
        }
        fn device(&self) -> tch::Device {
            self.0.device()
        }
        fn num_classes(&self) -> usize {
            self.0.num_classes()
        }
        fn freeze(&self) -> Frozen {
            self.0.freeze()
        }
    }

    /// Random images labelled by the model itself, so every example starts correct.
    fn self_labelled(model: &dyn Classifier, n: usize) -> ImageSet {
        let x = Tensor::rand([n as i64, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
        crate::data::test_support::self_labelled(model, &x)
    }

    fn checks(flags: &[SanityFlag]) -> Vec<SanityCheck> {
        flags.iter().map(|f| f.check).collect()
    }

    #[test]
    fn probing_flags_saturated_and_randomized_models_but_not_a_plain_one() {
        let _g = rng_lock();
        tch::manual_seed(11);
        let plain = Scaled { net: smallcnn_random_head(11), scale: 1.0 };
        let set = self_labelled(&plain, 40);
        let f = probe_model(&plain, &set, 20, 0).unwrap();
        assert!(f.is_empty(), "{f:?}");

        let saturated = Scaled { net: smallcnn_random_head(11), scale: 1e6 };
        let f = probe_model(&saturated, &set, 20, 0).unwrap();
        assert!(checks(&f).contains(&SanityCheck::ZeroGradients), "{f:?}");

        let noisy = Noisy(Scaled { net: smallcnn_random_head(11), scale: 1.0 });
        let f = probe_model(&noisy, &set, 20, 0).unwrap();
        assert!(checks(&f).contains(&SanityCheck::RandomizedOutputs), "{f:?}");
    }

    fn counts(v: &[(&str, usize)]) -> BTreeMap<AttackId, (usize, usize)> {
        v.iter().map(|(k, r)| (k.parse().unwrap(), (*r, 100))).collect()
    }

    #[test]
    fn flags_iterative_attacks_weaker_than_fgsm_beyond_one_example() {
        assert!(compare_attacks(&counts(&[("fgsm", 50), ("pgd20", 51)])).is_empty());
        let f = compare_attacks(&counts(&[("fgsm", 50), ("pgd20", 52), ("aa", 10)]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, SanityCheck::IterativeWeakerThanFgsm);
        assert!(f[0].message.contains("pgd20"), "{}", f[0].message);
    }

    #[test]
    fn flags_more_steps_weaker_than_fewer() {
        let f = compare_attacks(&counts(&[("pgd20", 40), ("pgd100", 45), ("cw20", 40), ("cw100", 40)]));
        assert_eq!(checks(&f), vec![SanityCheck::MoreStepsWeaker]);
    }

    #[test]
    fn different_subsets_are_not_compared() {
        let mut c = counts(&[("fgsm", 10)]);
        c.insert(AttackId::Pgd20, (20, 50));
        assert!(compare_attacks(&c).is_empty());
    }
}
