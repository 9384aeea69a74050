//! Analyses on models whose answers are known: a linear classifier (its L∞ distance to the
//! boundary is |margin| / ‖w‖₁, and sign-gradient PGD reaches it) and a random SmallCNN.

use tch::{Device, Kind, Tensor};

use super::fig1::{fig1, Fig1Params};
use super::fig4::{fig4, Fig4Params};
use super::fig5::{fig5, Fig5Params};
use super::pgd_per_example;
use crate::data::{Dataset, ImageSet, ImageShape};
use crate::models::layers::test_support::{rng_lock, smallcnn_random_head};
use crate::models::{Classifier, Frozen};
use crate::Result;

/// Two-class linear model on 4x4 grey images: class 0 scores s = u·x + c, class 1 scores −s.
struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Classifier for Linear {
    fn logits(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let n = x.size()[0];
        Ok(x.f_reshape([n, -1])?.f_matmul(&self.w.f_tr()?)?.f_add(&self.b)?)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn freeze(&self) -> Frozen {
        Frozen::new(Vec::new())
    }
}

/// Pixels near 0.5 (so clipping to [0, 1] never binds below eps 0.3), u = ±1 per pixel and
/// per-example margins chosen so that the distances spread over (0, 0.2).
fn linear_case() -> (Linear, ImageSet, Vec<f64>) {
    let u: Vec<f32> = (0..16).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    let ut = Tensor::from_slice(&u);
    let (n, mut images, mut labels, mut dist) = (24usize, Vec::new(), Vec::new(), Vec::new());
    let c = 0.0f64;
    for k in 0..n {
        // Shift every pixel by ±delta along sign(u): s = u·x = Σ|u|·delta + u·0.5.
        let target = 0.005 + 0.18 * k as f64 / n as f64; // L∞ distance wanted
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        let base: f64 = u.iter().map(|&v| v as f64 * 0.5).sum::<f64>() + c;
        // s = base + Σ |u_i|·sign·delta_i with one delta for all: s = base + 16·sign·delta.
        let delta = (sign * target * 16.0 - base) / 16.0;
        let px: Vec<u8> =
            u.iter().map(|&v| ((0.5 + v as f64 * delta) * 255.0).round().clamp(0.0, 255.0) as u8).collect();
        let x: Vec<f64> = px.iter().map(|&p| p as f64 / 255.0).collect();
        let s: f64 = x.iter().zip(&u).map(|(a, b)| a * *b as f64).sum::<f64>() + c;
        dist.push(s.abs() / 16.0);
        labels.push(if s > 0.0 { 0 } else { 1 });
        images.extend(px);
    }
    let w = Tensor::stack(&[ut.shallow_clone(), ut.f_neg().unwrap()], 0);
    let b = Tensor::from_slice(&[c as f32, -c as f32]);
    let set = ImageSet { images, labels, shape: ImageShape { channels: 1, height: 4, width: 4 }, num_classes: 2 };
    (Linear { w, b }, set, dist)
}

#[test]
fn bisection_finds_the_linear_models_distance_and_part_a_splits_at_eps() {
    let _g = rng_lock();
    let (model, set, dist) = linear_case();
    let p = Fig1Params { n: 100, eps: 0.1, steps: 10, eps_hi: 0.2, iterations: 12, bins: 10, seed: 3 };
    let r = fig1(&model, &set, &p, 7).unwrap();
    assert_eq!(r.clean_correct, set.len(), "every example is classified by its own margin");
    assert_eq!(r.censored, 0);
    for (k, (&found, &want)) in r.min_eps.iter().zip(&dist).enumerate() {
        assert!((found - want).abs() < 1e-3, "example {k}: bisection {found}, analytic {want}");
    }
    assert_eq!(r.robust, dist.iter().filter(|&&d| d > 0.1).count(), "{:?}", dist);
    assert_eq!(r.hist_robust.iter().sum::<usize>() + r.hist_broken.iter().sum::<usize>(), set.len());
    // Entropy falls as the margin grows, so it ranks exactly against the radius: ρ = −1.
    assert!((r.spearman + 1.0).abs() < 1e-9, "ρ = {}", r.spearman);
    assert!(r.mean_entropy_robust < r.mean_entropy_broken && r.test.p < 0.05, "{:?}", r.test);
}

#[test]
fn per_example_radius_is_respected() {
    let _g = rng_lock();
    tch::manual_seed(1);
    let net = smallcnn_random_head(2);
    let x =
        Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu)).f_mul_scalar(0.5).unwrap().f_add_scalar(0.25).unwrap();
    let y = Tensor::from_slice(&[1i64, 2, 3]);
    let eps = Tensor::from_slice(&[0.0f32, 0.05, 0.2]);
    let adv = pgd_per_example(&net, &x, &y, &eps, 5).unwrap();
    let dev: Vec<f64> =
        Vec::try_from(adv.f_sub(&x).unwrap().abs().amax([1, 2, 3].as_slice(), false).to_kind(Kind::Double)).unwrap();
    assert_eq!(dev[0], 0.0);
    assert!(dev[1] <= 0.05 + 1e-6 && dev[1] > 0.04, "{dev:?}");
    assert!(dev[2] <= 0.2 + 1e-6 && dev[2] > 0.15, "{dev:?}");
}

fn mnist_like(n: usize) -> ImageSet {
    let images: Vec<u8> = (0..n * 784).map(|i| ((i * 37 + i / 784 * 11) % 256) as u8).collect();
    ImageSet {
        images,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        shape: Dataset::Mnist.image_shape(),
        num_classes: 10,
    }
}

#[test]
fn weight_landscape_restores_the_weights_and_is_centred_on_the_model() {
    let _g = rng_lock();
    let net = smallcnn_random_head(4);
    let before: Vec<(String, Tensor)> = net.named_tensors().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let p = Fig4Params { n: 8, eps: 0.3, steps: 2, points: 5, seed: 1 };
    let r = fig4(&net, &mnist_like(8), &p, 4).unwrap();
    assert_eq!(r.alphas, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
    assert!(r.adv_loss.iter().chain(&r.clean_loss).all(|v| v.is_finite()));
    for (k, v) in &before {
        assert!(net.named_tensors()[k].equal(v), "{k} changed");
    }
    // At α = 0 the clean loss is the model's own.
    let set = mnist_like(8);
    let batch =
        crate::data::make_batch(&set, &(0..8).collect::<Vec<_>>(), crate::data::Augment::None, 0, Device::Cpu).unwrap();
    let (ce, _, _) = super::loss_and_entropy(&net, &batch.x, &batch.y).unwrap();
    let own = ce.mean(Kind::Double).double_value(&[]);
    assert!((r.clean_loss[2] - own).abs() < 1e-6, "{} vs {own}", r.clean_loss[2]);
    assert!(r.adv_loss[2] >= r.clean_loss[2] - 1e-6, "PGD raises the loss");
}

#[test]
fn input_surface_grid_has_the_example_at_its_centre() {
    let _g = rng_lock();
    let net = smallcnn_random_head(5);
    let set = mnist_like(3);
    let p = Fig5Params { examples: vec![2, 0], eps: 0.3, steps: 3, points: 5, seed: 2 };
    let r = fig5(&net, &set, &p).unwrap();
    assert_eq!(r.grid.len(), 5);
    assert_eq!(r.examples.len(), 2);
    let e = &r.examples[0];
    assert_eq!((e.index, e.label), (2, 2));
    assert_eq!((e.loss.len(), e.loss[0].len()), (5, 5));
    let batch = crate::data::make_batch(&set, &[2], crate::data::Augment::None, 0, Device::Cpu).unwrap();
    let (ce, _, _) = super::loss_and_entropy(&net, &batch.x, &batch.y).unwrap();
    assert!((e.loss[2][2] - ce.double_value(&[0])).abs() < 1e-5);
    let e = fig5(&net, &set, &Fig5Params { examples: vec![9], ..p }).unwrap_err().to_string();
    assert!(e.contains("past the end"), "{e}");
}
