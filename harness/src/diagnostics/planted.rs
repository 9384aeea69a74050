//! Planted-vulnerability self-tests (after Zimmermann et al., NeurIPS 2022, "binarization
//! test"): classifiers derived from the evaluated model for which an adversarial example
//! provably lies inside every test example's ball, so an attack that does not find it has
//! failed, whatever the model's robustness.
//!
//! # The derived classifier
//! For a test example x with label y, the test draws a *planted point* p = clip(x + eps·s) at a
//! random corner of the ball (s a random sign vector) and [`REFERENCES`] = 8 other random corners
//! r₁…r₈. On the evaluated model's logits z(·) (C of them) it fits a linear readout
//! g(x') = w · z(x') − c with g = −1 at x and at every rⱼ and g = +1 at p: 10 equations in C + 1
//! unknowns, solved exactly (minimum-norm, float64) wherever the logits are in general position —
//! the example is *plantable* where the fit is exact and the float32 derived model below
//! classifies x correctly and p as adversarial (checked). The clean neighbourhood is classified
//! correctly and the planted point is not, so the test is neither trivial nor impossible, and
//! finding a point with g > 0 is maximising a fixed function of the model's logits over the ball,
//! which p shows is possible. The derived model outputs, over the dataset's classes, 0 for y, κ·g
//! for a target class t (the model's most likely wrong class at x) and κ·(g − 2) for the others:
//! it predicts t exactly where g > 0. Which example's readout applies is decided by the input
//! itself (the nearest test example in L∞; test examples are kept only when more than 2·eps
//! apart), so attacks may query any subset of a batch.
//!
//! # The three tests ([`PlantedTest`])
//! - `binarization`: κ = 4;
//! - `logit_scaled`: κ = 10⁴: the softmax saturates, so the cross-entropy's gradient is exactly
//!   zero in float32 at the start — attacks on margins (CW, APGD-T's DLR, FAB) and black-box
//!   ones still find p;
//! - `input_quantized`: the model sees its input rounded to 8 bits (the readout is fitted on the
//!   quantized points): every input gradient is zero, and only gradient-free attacks find p.
//!
//! [`expected`] says which attacks must find ≥ 95 % of the planted examples; only those pairs run
//! in an evaluation (a miss flags the attack's cells), so an attack expected to pass no test (FGSM,
//! BPDA) costs nothing here.

use std::collections::BTreeMap;

use infoat_registry::{AttackId, PlantedTest, SelfTestResult};
use tch::{Kind, Tensor};

use super::SELF_TEST_EXAMPLES;
use crate::attacks::{bit_depth, AttackBuild};
use crate::data::{make_batch, Augment, ImageSet};
use crate::eval::robust_flags;
use crate::models::{Classifier, Frozen};
use crate::seed::{derive, seed_torch, Stream};
use crate::{Error, Result};

/// Reference corners each readout must classify as clean.
pub const REFERENCES: usize = 8;

/// Bits the quantized twin keeps.
pub const QUANTIZE_BITS: u32 = 8;

/// The logit scale κ of a test.
pub fn kappa(test: PlantedTest) -> f64 {
    match test {
        PlantedTest::Binarization | PlantedTest::InputQuantized => 4.0,
        PlantedTest::LogitScaled => 1e4,
    }
}

/// Whether `attack` is expected to find ≥ 95 % of the planted examples of `test`. Every
/// multi-step attack on the model itself is expected to pass the binarization test (FGSM takes
/// one step; BPDA judges f∘T, which the planted point is not built for). Behind saturated logits
/// only attacks on margins and black-box ones are; behind a quantizer only black-box ones
/// (AutoAttack through Square).
pub fn expected(attack: AttackId, test: PlantedTest) -> bool {
    use AttackId as A;
    match test {
        PlantedTest::Binarization => !matches!(attack, A::Fgsm | A::Bpda),
        PlantedTest::LogitScaled => matches!(attack, A::Cw20 | A::Cw100 | A::ApgdT | A::FabT | A::Aa | A::Square),
        PlantedTest::InputQuantized => matches!(attack, A::Square | A::Aa),
    }
}

/// Whether the self-tests run `attack` at all: query-hungry black-box attacks (SPSA, RayS) and
/// imported images are skipped.
pub fn applies(attack: AttackId) -> bool {
    !matches!(
        attack,
        AttackId::Spsa128
            | AttackId::Spsa256
            | AttackId::Spsa512
            | AttackId::Spsa1024
            | AttackId::Rays
            | AttackId::External
    )
}

/// One test's planted examples and their readouts.
#[derive(Debug)]
pub struct Plant {
    /// The test.
    pub test: PlantedTest,
    /// The plantable examples.
    pub set: ImageSet,
    /// Their planted points `[K, C, H, W]`.
    pub points: Tensor,
    anchors: Tensor,
    w: Tensor,
    offset: Tensor,
    y: Tensor,
    target: Tensor,
}

/// The planted examples of every test.
#[derive(Debug)]
pub struct Plants {
    /// One per test, in [`PlantedTest::ALL`]'s order.
    pub tests: Vec<Plant>,
    /// The radius.
    pub eps: f64,
}

impl Plants {
    /// Examples planted into the binarization test (the count reports show).
    pub fn planted(&self) -> usize {
        self.tests.first().map_or(0, |p| p.set.len())
    }
}

/// The classifier of a test: the evaluated model behind the planted readout.
pub struct Derived<'a> {
    /// The evaluated model.
    pub model: &'a dyn Classifier,
    /// The test's examples and readouts.
    pub plant: &'a Plant,
}

impl Derived<'_> {
    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let seen = match self.plant.test {
            PlantedTest::InputQuantized => bit_depth(x, QUANTIZE_BITS)?,
            _ => x.shallow_clone(),
        };
        self.model.logits(&seen, train)
    }
}

impl Classifier for Derived<'_> {
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let p = self.plant;
        let n = x.size()[0];
        let flat = x.f_detach()?.f_flatten(1, -1)?;
        let dist = flat.f_unsqueeze(1)?.f_sub(&p.anchors.f_unsqueeze(0)?)?.f_abs()?.f_amax([2i64], false)?;
        // The examples are more than 2·eps apart, so a point of one's ball is nearest to it.
        let k = dist.f_argmin(1, false)?;
        let z = self.features(x, train)?;
        let pick = |t: &Tensor| t.f_index_select(0, &k);
        let h = z.f_mul(&pick(&p.w)?)?.f_sum_dim_intlist(1i64, false, Kind::Float)?;
        let g = h.f_sub(&pick(&p.offset)?)?.f_mul_scalar(kappa(p.test))?;
        let classes = z.size()[1];
        let one_hot = |c: &Tensor| -> Result<Tensor> {
            Ok(Tensor::f_zeros([n, classes], (Kind::Float, x.device()))?.f_scatter_value(1, &c.f_unsqueeze(1)?, 1.0)?)
        };
        let (oh_y, oh_t) = (one_hot(&pick(&p.y)?)?, one_hot(&pick(&p.target)?)?);
        let others = g.f_sub_scalar(2.0 * kappa(p.test))?.f_unsqueeze(1)?;
        let rest = oh_y.f_add(&oh_t)?.f_neg()?.f_add_scalar(1.0)?;
        Ok(others.f_mul(&rest)?.f_add(&g.f_unsqueeze(1)?.f_mul(&oh_t)?)?)
    }

    fn device(&self) -> tch::Device {
        self.model.device()
    }

    fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    fn freeze(&self) -> Frozen {
        self.model.freeze()
    }
}

/// `x + eps · s` for a random sign vector s per image, clamped to [0, 1].
fn corner(x: &Tensor, eps: f64) -> Result<Tensor> {
    let s = x.f_rand_like()?.f_gt(0.5)?.f_to_kind(Kind::Float)?.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?;
    Ok(x.f_add(&s.f_mul_scalar(eps)?)?.f_clamp(0.0, 1.0)?)
}

/// The first up to [`SELF_TEST_EXAMPLES`] examples of `set` that are classified correctly (`clean`)
/// and that lie more than 2·eps (L∞) from every example chosen before them.
fn choose(set: &ImageSet, clean: &[bool], eps: f64) -> Vec<usize> {
    let numel = set.shape.numel();
    let mut chosen: Vec<usize> = Vec::new();
    for (i, _) in clean.iter().enumerate().filter(|(_, &c)| c) {
        let far = chosen.iter().all(|&j| {
            let (a, b) = (set.image(i), set.image(j));
            (0..numel).map(|k| (a[k] as f64 - b[k] as f64).abs() / 255.0).fold(0.0, f64::max) > 2.0 * eps
        });
        if far {
            chosen.push(i);
        }
        if chosen.len() == SELF_TEST_EXAMPLES {
            break;
        }
    }
    chosen
}

/// Plants the three tests into the first suitable examples of `set`, which `model` classifies
/// correctly where `clean` says (see the module docs).
pub fn plant(model: &dyn Classifier, set: &ImageSet, clean: &[bool], eps: f64, seed: u64) -> Result<Plants> {
    let chosen = choose(set, clean, eps);
    let mut tests = Vec::new();
    for (t, test) in PlantedTest::ALL.into_iter().enumerate() {
        tests.push(plant_one(
            model,
            &set.select(&chosen),
            eps,
            test,
            derive(seed, Stream::Diagnostics, &[1, t as u64]),
        )?);
    }
    Ok(Plants { tests, eps })
}

fn plant_one(model: &dyn Classifier, set: &ImageSet, eps: f64, test: PlantedTest, seed: u64) -> Result<Plant> {
    let device = model.device();
    let idx: Vec<usize> = (0..set.len()).collect();
    let batch = make_batch(set, &idx, Augment::None, 0, device)?;
    seed_torch(seed);
    let quantize = |x: &Tensor| -> Result<Tensor> {
        match test {
            PlantedTest::InputQuantized => bit_depth(x, QUANTIZE_BITS),
            _ => Ok(x.shallow_clone()),
        }
    };
    // Logits in float64 on the CPU, where the readout is fitted.
    let z = |x: &Tensor| -> Result<Tensor> {
        Ok(tch::no_grad(|| model.logits(&quantize(x)?, false))?
            .f_to_kind(Kind::Double)?
            .f_to_device(tch::Device::Cpu)?)
    };
    let x = batch.x.shallow_clone();
    let points = corner(&x, eps)?;
    // Rows: the clean example and the reference corners (readout −1), the planted point (+1).
    let mut rows = vec![z(&x)?];
    for _ in 0..REFERENCES {
        rows.push(z(&corner(&x, eps)?)?);
    }
    rows.push(z(&points)?);
    let k = x.size()[0];
    let minus_one = Tensor::f_full([k, 1], -1.0, (Kind::Double, tch::Device::Cpu))?;
    let mut design = Vec::with_capacity(rows.len());
    for r in &rows {
        design.push(Tensor::f_cat(&[r, &minus_one], 1)?);
    }
    let a = Tensor::f_stack(&design, 1)?; // [K, R + 2, C + 1]
    let mut targets = vec![-1.0f64; REFERENCES + 1];
    targets.push(1.0);
    let t = Tensor::from_slice(&targets).f_view([1, -1, 1])?.f_expand([k, -1, 1], false)?;
    // The minimum-norm exact fit (R + 2 ≤ C + 1 equations: generically solvable).
    let v = a.f_linalg_pinv(1e-12, false)?.f_matmul(&t)?.f_squeeze_dim(2)?; // [K, C + 1]
    let classes = v.size()[1] - 1;
    let fit_error = a.f_matmul(&v.f_unsqueeze(2)?)?.f_sub(&t)?.f_abs()?.f_amax([1i64, 2], false)?;
    let w = v.f_narrow(1, 0, classes)?.f_to_kind(Kind::Float)?.f_to_device(device)?;
    let offset = v.f_select(1, classes)?.f_to_kind(Kind::Float)?.f_to_device(device)?;
    let target = {
        let z0 = rows[0].f_to_kind(Kind::Float)?.f_to_device(device)?;
        z0.f_scatter_value(1, &batch.y.f_unsqueeze(1)?, f64::NEG_INFINITY)?.f_argmax(1, false)?
    };
    let all = Plant {
        test,
        set: set.clone(),
        points,
        anchors: x.f_flatten(1, -1)?,
        w,
        offset,
        y: batch.y.shallow_clone(),
        target,
    };
    // Plantable where the fit is exact and, through the derived model in float32, the clean
    // example is classified correctly and the planted point as the target.
    let derived = Derived { model, plant: &all };
    let (clean, planted) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
        Ok((derived.logits(&x, false)?.f_argmax(1, false)?, derived.logits(&all.points, false)?.f_argmax(1, false)?))
    })?;
    let ok = clean
        .f_eq_tensor(&all.y)?
        .f_logical_and(&planted.f_eq_tensor(&all.target)?)?
        .f_to_device(tch::Device::Cpu)?
        .f_logical_and(&fit_error.f_lt(1e-3)?)?;
    let keep: Vec<usize> = Vec::<bool>::try_from(ok)?.iter().enumerate().filter(|(_, &o)| o).map(|(i, _)| i).collect();
    let keep_t = Tensor::from_slice(&keep.iter().map(|&i| i as i64).collect::<Vec<_>>()).f_to_device(device)?;
    let sel = |t: &Tensor| t.f_index_select(0, &keep_t);
    let plant = Plant {
        test,
        set: set.select(&keep),
        points: sel(&all.points)?,
        anchors: sel(&all.anchors)?,
        w: sel(&all.w)?,
        offset: sel(&all.offset)?,
        y: sel(&all.y)?,
        target: sel(&all.target)?,
    };
    let outside = sel(&x)?.f_sub(&plant.points)?.f_abs()?.f_amax([1i64, 2, 3], false)?;
    if !plant.set.is_empty() && outside.f_max()?.double_value(&[]) > eps + 1e-6 {
        return Err(Error::Invalid(format!(
            "the {test} self-test planted a point outside the eps-ball: a bug in the diagnostics, please report it"
        )));
    }
    Ok(plant)
}

/// Runs `attack` on the derived classifier of every test it is expected to pass ([`expected`]):
/// what it found, per test.
pub fn run(
    model: &dyn Classifier,
    plants: &Plants,
    attack: AttackId,
    batch_size: usize,
    rays_budget: usize,
    seed: u64,
) -> Result<BTreeMap<PlantedTest, SelfTestResult>> {
    let mut out = BTreeMap::new();
    if !applies(attack) {
        return Ok(out);
    }
    // Only the tests the attack is expected to pass run: the others would cost as much and flag
    // nothing (the unit tests show that they are not trivially passed).
    for plant in plants.tests.iter().filter(|p| expected(attack, p.test)) {
        let planted = plant.set.len();
        let found = if planted == 0 {
            0
        } else {
            let derived = Derived { model, plant };
            let a = attack.build_with(plants.eps, rays_budget);
            let robust = robust_flags(&derived, &plant.set, a.as_ref(), batch_size, seed)?;
            robust.iter().filter(|&&r| !r).count()
        };
        out.insert(plant.test, SelfTestResult { planted, found, expected: expected(attack, plant.test) });
    }
    Ok(out)
}
