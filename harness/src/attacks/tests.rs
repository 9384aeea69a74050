//! Invariants every evaluation attack keeps (SPEC §3): outputs inside the eps-ball and [0, 1],
//! finite, the model's parameters and buffers untouched; plus the semantics of PGD+'s
//! any-iterate flags and BPDA's transform.

use tch::{Device, Kind, Tensor};

use super::*;
use crate::checkpoint::digest;
use crate::data::Dataset;
use crate::eval::{clean_accuracy, robust_accuracy};
use crate::models::layers::test_support::{rng_lock, smallcnn_random_head, Scaled};
use crate::models::{Classifier, Network};

fn net(seed: i64) -> Network {
    smallcnn_random_head(seed)
}

const ALL: [AttackId; 15] = [
    AttackId::Fgsm,
    AttackId::Pgd20,
    AttackId::Pgd100,
    AttackId::PgdPlus,
    AttackId::Cw20,
    AttackId::Cw100,
    AttackId::Bpda,
    AttackId::Infopgd20,
    AttackId::ApgdCe,
    AttackId::ApgdT,
    AttackId::FabT,
    AttackId::Square,
    AttackId::Aa,
    AttackId::Spsa128,
    AttackId::Rays,
];

#[test]
fn every_attack_stays_in_the_ball_and_leaves_the_model_alone() {
    let _g = rng_lock();
    let model = net(1);
    tch::manual_seed(2);
    let x = Tensor::rand([6, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [6], (Kind::Int64, Device::Cpu));
    let before = digest(&model).unwrap();
    for id in ALL {
        for eps in [0.1, 0.3] {
            // RayS with a small budget: the invariants do not depend on it.
            let attack = id.build_with(eps, 200);
            assert_eq!(attack.id(), id.name());
            let (adv, flags) = attack.perturb(&model, &x, &y).unwrap();
            assert_eq!(adv.size(), x.size(), "{id:?}");
            let dist = f64::try_from((&adv - &x).abs().max()).unwrap();
            assert!(dist <= eps + 1e-6, "{id:?}: L∞ distance {dist} > {eps}");
            assert!(f64::try_from(adv.min()).unwrap() >= 0.0 && f64::try_from(adv.max()).unwrap() <= 1.0, "{id:?}");
            assert!(!bool::try_from(adv.isnan().any()).unwrap(), "{id:?}");
            if let Some(f) = flags {
                assert_eq!(f.size(), vec![6], "{id:?}");
                assert_eq!(f.kind(), Kind::Bool, "{id:?}");
            }
        }
    }
    assert_eq!(digest(&model).unwrap(), before, "attacks must not change the model");
    assert!(model.trainable().iter().all(|(_, p)| p.requires_grad()));
}

#[test]
fn pgd_plus_flags_every_break_and_returns_the_iterate_that_broke_it() {
    let _g = rng_lock();
    let model = net(3);
    tch::manual_seed(4);
    let x = Tensor::rand([64, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.forward_t(&x, false).argmax(-1, false));
    // A small radius, where restarts break some examples and miss them in the last restart.
    let eps = 0.05;
    let (adv, flags) = AttackId::PgdPlus.build(eps).perturb(&model, &x, &y).unwrap();
    let flags = flags.unwrap();
    let wrong_at_end = tch::no_grad(|| model.forward_t(&adv, false).argmax(-1, false).ne_tensor(&y));
    // Any-iterate: broken at the returned point implies flagged.
    let missed = wrong_at_end.logical_and(&flags.logical_not()).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(missed, 0);
    // And the converse (issue 21's witnesses): a flagged example's returned point is the
    // iterate that broke it, inside the ball.
    let silent = flags.logical_and(&wrong_at_end.logical_not()).sum(Kind::Int64).int64_value(&[]);
    assert!(flags.sum(Kind::Int64).int64_value(&[]) > 0, "the attack should break something");
    assert_eq!(silent, 0, "a broken example whose returned point is classified correctly");
    let linf = (&adv - &x).abs().max().double_value(&[]);
    assert!(linf <= eps + 1e-6, "{linf}");
}

#[test]
fn bit_depth_reduction_keeps_32_levels() {
    let x = Tensor::from_slice(&[0.0f32, 0.01, 0.5, 0.51, 0.99, 1.0]);
    let q = Vec::<f32>::try_from(bit_depth(&x, 5).unwrap()).unwrap();
    let expect: Vec<f32> = [0.0f32, 0.0, 16.0, 16.0, 31.0, 31.0].iter().map(|v| v / 31.0).collect();
    for (a, b) in q.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-6, "{q:?} vs {expect:?}");
    }
}

#[test]
fn robust_accuracy_never_exceeds_clean_accuracy() {
    let _g = rng_lock();
    let model = net(5);
    let set = crate::data::ImageSet {
        images: Vec::<u8>::try_from(Tensor::randint(256, [20 * 784], (Kind::Uint8, Device::Cpu))).unwrap(),
        labels: (0..20).map(|i| (i % 10) as u8).collect(),
        shape: Dataset::Mnist.image_shape(),
        num_classes: 10,
    };
    let clean = clean_accuracy(&model, &set, 7).unwrap();
    for id in [AttackId::Fgsm, AttackId::Pgd20, AttackId::PgdPlus] {
        let r = robust_accuracy(&model, &set, id.build(0.3).as_ref(), 7, 0).unwrap();
        assert!(r.correct <= clean.correct, "{id:?}: {} robust > {} clean", r.correct, clean.correct);
        // Deterministic given the seed.
        let again = robust_accuracy(&model, &set, id.build(0.3).as_ref(), 7, 0).unwrap();
        assert_eq!(r, again, "{id:?}");
    }
}

/// Records the batch sizes it is given and breaks the first `breaks` examples of each batch
/// (returns them with their labels' flags set).
struct Probe {
    seen: std::cell::RefCell<Vec<i64>>,
    breaks: i64,
}

impl Attack for Probe {
    fn id(&self) -> String {
        "probe".into()
    }

    fn perturb(&self, _model: &dyn Classifier, x: &Tensor, _y: &Tensor) -> crate::Result<(Tensor, Option<Tensor>)> {
        let n = x.size()[0];
        self.seen.borrow_mut().push(n);
        let flags = Tensor::arange(n, (Kind::Int64, Device::Cpu)).lt(self.breaks);
        Ok((x.copy(), Some(flags)))
    }
}

#[test]
fn the_cascade_attacks_only_still_robust_points_and_keeps_every_break() {
    let _g = rng_lock();
    let model = net(9);
    tch::manual_seed(9);
    let x = Tensor::rand([10, 1, 28, 28], (Kind::Float, Device::Cpu));
    let pred = tch::no_grad(|| model.forward_t(&x, false).argmax(-1, false));
    // Two labels wrong: those are broken before any attack runs.
    let y = pred.copy();
    let _ = y.get(0).fill_((pred.int64_value(&[0]) + 1) % 10);
    let _ = y.get(5).fill_((pred.int64_value(&[5]) + 1) % 10);
    let probes: Vec<std::rc::Rc<Probe>> =
        (0..3).map(|_| std::rc::Rc::new(Probe { seen: Default::default(), breaks: 3 })).collect();
    struct Shared(std::rc::Rc<Probe>);
    impl Attack for Shared {
        fn id(&self) -> String {
            self.0.id()
        }
        fn perturb(&self, m: &dyn Classifier, x: &Tensor, y: &Tensor) -> crate::Result<(Tensor, Option<Tensor>)> {
            self.0.perturb(m, x, y)
        }
    }
    let cascade = Cascade {
        id: "test".into(),
        components: [AttackId::ApgdCe, AttackId::ApgdT, AttackId::FabT]
            .into_iter()
            .zip(&probes)
            .map(|(id, p)| (id, Box::new(Shared(p.clone())) as Box<dyn Attack>))
            .collect(),
    };
    let traced = cascade.perturb_traced(&model, &x, &y).unwrap();
    let (adv, broken) = (traced.adv, Vec::<bool>::try_from(traced.flags.unwrap()).unwrap());
    // 8 clean-correct → the first probe sees 8 and breaks 3, the second sees 5 and breaks 3,
    // the third sees 2 and breaks both.
    let seen: Vec<Vec<i64>> = probes.iter().map(|p| p.seen.borrow().clone()).collect();
    assert_eq!(seen, vec![vec![8], vec![5], vec![2]]);
    assert!(broken.iter().all(|&b| b), "{broken:?}");
    assert_eq!(adv.size(), x.size());
    // Each stage records what it attacked and broke, and the images the component itself sent
    // through the model (none: the probes query nothing; the cascade's check of their points is
    // its own bookkeeping).
    let stages: Vec<(AttackId, usize, usize, u64)> =
        traced.stages.iter().map(|s| (s.attack, s.attacked, s.broken, s.forward_images)).collect();
    assert_eq!(stages, vec![(AttackId::ApgdCe, 8, 3, 0), (AttackId::ApgdT, 5, 3, 0), (AttackId::FabT, 2, 2, 0)]);
    assert!(traced.stages.iter().all(|s| s.backward_images == 0 && s.seconds >= 0.0));
}

#[test]
fn autoattack_sees_through_saturated_gradients_that_stop_pgd() {
    let _g = rng_lock();
    let model = Scaled { net: net(13), scale: 1e4 };
    tch::manual_seed(13);
    let x = Tensor::rand([12, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.logits(&x, false).unwrap().argmax(-1, false));
    let broken = |id: AttackId| -> i64 {
        tch::manual_seed(1);
        let (adv, flags) = id.build(0.1).perturb(&model, &x, &y).unwrap();
        let wrong = tch::no_grad(|| model.logits(&adv, false).unwrap().argmax(-1, false).ne_tensor(&y));
        let wrong = match flags {
            Some(f) => wrong.logical_or(&f),
            None => wrong,
        };
        wrong.sum(Kind::Int64).int64_value(&[])
    };
    let (pgd, aa) = (broken(AttackId::Pgd20), broken(AttackId::Aa));
    assert!(aa > pgd + 3, "AutoAttack broke {aa}, PGD-20 {pgd} of 12");
}

/// Class 1 exactly on the 5-bit grid (every pixel a multiple of 1/31), class 0 off it: the
/// undefended f and the defended g = f∘T (T the 5-bit reduction) disagree on every image off
/// the grid, and g answers class 1 everywhere.
struct OnTheGrid;

impl Classifier for OnTheGrid {
    fn logits(&self, x: &Tensor, _train: bool) -> crate::Result<Tensor> {
        // Distance to the grid (differentiable in x: the rounding has zero gradient).
        let off = x.f_sub(&bit_depth(x, 5)?)?.f_abs()?.f_flatten(1, -1)?.f_amax([1i64].as_slice(), false)?;
        let threshold = off.f_zeros_like()?.f_add_scalar(1e-6)?;
        Ok(Tensor::f_stack(&[off, threshold], 1)?.f_mul_scalar(1e4)?)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn freeze(&self) -> crate::models::Frozen {
        crate::models::Frozen::new(Vec::<Tensor>::new())
    }
}

#[test]
fn bpda_reports_the_accuracy_of_the_defended_classifier() {
    let _g = rng_lock();
    // Bytes 0..=254 scaled to [0, 1]: most are off the 5-bit grid, so f says 0 and g says 1.
    let set = |label: u8| crate::data::ImageSet {
        images: (0..8 * 784).map(|i| ((i * 7 + 3) % 255) as u8).collect(),
        labels: vec![label; 8],
        shape: Dataset::Mnist.image_shape(),
        num_classes: 2,
    };
    let bpda = AttackId::Bpda.build(0.3);
    // Labelled 1: g classifies every point correctly, whatever the attack does (f never does).
    let r = robust_accuracy(&OnTheGrid, &set(1), bpda.as_ref(), 8, 0).unwrap();
    assert_eq!((r.correct, r.total), (8, 8), "BPDA must judge g = f∘T, not f");
    // Labelled 0: f is right on the clean images, g never is; nothing is robust under g.
    let r = robust_accuracy(&OnTheGrid, &set(0), bpda.as_ref(), 8, 0).unwrap();
    assert_eq!(r.correct, 0);
    // PGD-20 attacks f itself: labelled 1, f is wrong on the clean images.
    let r = robust_accuracy(&OnTheGrid, &set(1), AttackId::Pgd20.build(0.3).as_ref(), 8, 0).unwrap();
    assert_eq!(r.correct, 0);
}

#[test]
fn cascade_stages_add_up_over_batches_and_count_each_components_passes() {
    let _g = rng_lock();
    let model = smallcnn_random_head(17);
    tch::manual_seed(17);
    let x = Tensor::rand([13, 1, 28, 28], (Kind::Float, Device::Cpu));
    let set = crate::data::test_support::self_labelled(&model, &x);
    // Small enough that FGSM leaves some examples to PGD-20 on this random head.
    let eps = 2e-3;
    let cascade = Cascade {
        id: "test".into(),
        components: vec![
            (AttackId::Fgsm, Box::new(Fgsm { eps }) as Box<dyn Attack>),
            (AttackId::Pgd20, Box::new(Pgd::paper(eps, 20))),
        ],
    };
    // Three batches (5, 5, 3): the totals are summed per component.
    let run = crate::eval::robust_run(&model, &set, &cascade, 5, 0).unwrap();
    let stages = run.stages.expect("a cascade reports its stages");
    assert_eq!(stages.iter().map(|s| s.attack).collect::<Vec<_>>(), vec![AttackId::Fgsm, AttackId::Pgd20]);
    let (fgsm, pgd) = (&stages[0], &stages[1]);
    // Every example starts correct, so FGSM sees all 13 and PGD-20 what FGSM left.
    assert_eq!(fgsm.attacked, 13);
    assert_eq!(pgd.attacked, 13 - fgsm.broken);
    assert!(fgsm.broken < 13 && pgd.attacked > 0, "{stages:?}");
    let robust = run.flags.iter().filter(|&&r| r).count();
    assert_eq!(pgd.attacked - pgd.broken, robust, "{stages:?}");
    // FGSM takes one input gradient per example; PGD-20 twenty.
    assert_eq!((fgsm.forward_images, fgsm.backward_images), (13, 13), "{fgsm:?}");
    assert_eq!(pgd.backward_images, 20 * pgd.attacked as u64, "{pgd:?}");
    assert!(pgd.forward_images >= pgd.backward_images);
    // A single attack reports none.
    assert!(crate::eval::robust_run(&model, &set, &Fgsm { eps }, 5, 0).unwrap().stages.is_none());
}
