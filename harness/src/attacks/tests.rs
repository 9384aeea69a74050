//! Invariants every evaluation attack keeps (SPEC §3): outputs inside the eps-ball and [0, 1],
//! finite, the model's parameters and buffers untouched; plus the semantics of PGD+'s
//! any-iterate flags and BPDA's transform.

use tch::{Device, Kind, Tensor};

use super::*;
use crate::checkpoint::digest;
use crate::data::Dataset;
use crate::eval::{clean_accuracy, robust_accuracy};
use crate::models::layers::test_support::{rng_lock, smallcnn_random_head};
use crate::models::Network;

fn net(seed: i64) -> Network {
    smallcnn_random_head(seed)
}

const ALL: [AttackId; 8] = [
    AttackId::Fgsm,
    AttackId::Pgd20,
    AttackId::Pgd100,
    AttackId::PgdPlus,
    AttackId::Cw20,
    AttackId::Cw100,
    AttackId::Bpda,
    AttackId::Infopgd20,
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
            let attack = id.build(eps);
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
fn pgd_plus_flags_every_point_its_final_iterate_breaks() {
    let _g = rng_lock();
    let model = net(3);
    tch::manual_seed(4);
    let x = Tensor::rand([16, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.forward_t(&x, false).argmax(-1, false));
    let (adv, flags) = AttackId::PgdPlus.build(0.3).perturb(&model, &x, &y).unwrap();
    let flags = flags.unwrap();
    let wrong_at_end = tch::no_grad(|| model.forward_t(&adv, false).argmax(-1, false).ne_tensor(&y));
    // Any-iterate: broken at the final point of the last restart implies flagged.
    let missed = wrong_at_end.logical_and(&flags.logical_not()).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(missed, 0);
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
