//! SPSA (Uesato et al. 2018), the score-based black-box attack of paper Table III, as SPEC §3
//! specifies it (cleverhans' reference of the time, with its current-point bug fixed): a
//! two-sided Rademacher estimate of the gradient of the margin loss at the *current* point,
//! Adam on the perturbation, projection onto the L∞ ball and [0, 1] after each step, and a
//! per-example early stop as soon as the current point is misclassified. The attack sees the
//! model only through a [`ScoreOracle`].

use tch::{Kind, Tensor};

use super::oracle::{Oracle, ScoreOracle};
use super::Attack;
use crate::models::Classifier;
use crate::Result;

/// SPSA's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spsa {
    /// L∞ radius.
    pub eps: f64,
    /// Model evaluations per gradient estimate (the paper's "batch size": 128 … 1024), i.e.
    /// `samples / 2` antithetic pairs.
    pub samples: usize,
    /// Iterations (SPEC: 100).
    pub iterations: usize,
    /// Adam learning rate (SPEC: 0.01).
    pub lr: f64,
    /// Finite-difference radius (SPEC: 0.001).
    pub delta: f64,
    /// At most this many images per forward pass (memory).
    pub max_images: usize,
}

impl Spsa {
    /// The paper's SPSA with `samples` evaluations per estimate.
    pub fn paper(eps: f64, samples: usize) -> Spsa {
        Spsa { eps, samples, iterations: 100, lr: 0.01, delta: 0.001, max_images: 2048 }
    }
}

/// The margin loss SPSA minimises: z_y − max_{j≠y} z_j (negative once misclassified).
pub fn margin(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let zy = logits.f_gather(1, &y.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    let k = logits.size()[1];
    let mask = y.f_one_hot(k)?.f_to_kind(Kind::Bool)?;
    let others = logits.f_masked_fill(&mask, f64::NEG_INFINITY)?.f_amax([1i64].as_slice(), false)?;
    Ok(zy.f_sub(&others)?)
}

/// The SPSA gradient estimate of the margin loss of `oracle` at `x` (`[A, C, H, W]`, labels
/// `y`) from `samples` evaluations (`samples / 2` antithetic Rademacher pairs, at least one),
/// in forward passes of at most `max_images` images. Draws from libtorch's generator.
pub fn estimate_gradient(
    oracle: &dyn ScoreOracle,
    x: &Tensor,
    y: &Tensor,
    samples: usize,
    delta: f64,
    max_images: usize,
) -> Result<Tensor> {
    let pairs = (samples / 2).max(1) as i64;
    let a = x.size()[0];
    let shape = x.size();
    let per_image: Vec<i64> = shape[1..].to_vec();
    let grad = x.f_zeros_like()?;
    let budget = (max_images as i64).max(2);
    // Examples per chunk and pairs per chunk so that 2 · examples · pairs ≤ max_images.
    let ex_chunk = a.min((budget / 2).max(1));
    let pair_chunk = pairs.min((budget / (2 * ex_chunk)).max(1));
    let mut start = 0;
    while start < a {
        let n = ex_chunk.min(a - start);
        let xs = x.f_narrow(0, start, n)?;
        let ys = y.f_narrow(0, start, n)?;
        let mut g = xs.f_zeros_like()?;
        let mut done = 0;
        while done < pairs {
            let p = pair_chunk.min(pairs - done);
            let mut vshape = vec![n, p];
            vshape.extend_from_slice(&per_image);
            let v = Tensor::f_randint(2, vshape.as_slice(), (Kind::Float, x.device()))?
                .f_mul_scalar(2.0)?
                .f_sub_scalar(1.0)?;
            let base = xs.f_unsqueeze(1)?;
            let plus = base.f_add(&v.f_mul_scalar(delta)?)?;
            let minus = base.f_sub(&v.f_mul_scalar(delta)?)?;
            let mut flat_shape = vec![n * p];
            flat_shape.extend_from_slice(&per_image);
            let both =
                Tensor::f_cat(&[plus.f_reshape(flat_shape.as_slice())?, minus.f_reshape(flat_shape.as_slice())?], 0)?;
            let yy = ys.f_unsqueeze(1)?.f_expand([n, p], false)?.f_reshape([n * p])?;
            let labels = Tensor::f_cat(&[&yy, &yy], 0)?;
            let loss = margin(&oracle.scores(&both)?, &labels)?;
            let lp = loss.f_narrow(0, 0, n * p)?.f_reshape([n, p])?;
            let lm = loss.f_narrow(0, n * p, n * p)?.f_reshape([n, p])?;
            let coef = lp.f_sub(&lm)?.f_div_scalar(2.0 * delta)?;
            let mut cshape = vec![n, p];
            cshape.extend(std::iter::repeat_n(1, per_image.len()));
            g = g.f_add(&v.f_mul(&coef.f_reshape(cshape.as_slice())?)?.f_sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Float,
            )?)?;
            done += p;
        }
        grad.f_narrow(0, start, n)?.f_copy_(&g.f_div_scalar(pairs as f64)?)?;
        start += n;
    }
    Ok(grad)
}

/// Runs SPSA through `oracle`; returns the final points and per-example flags that are true
/// where some checked iterate was misclassified.
pub fn spsa(oracle: &dyn ScoreOracle, x: &Tensor, y: &Tensor, cfg: &Spsa) -> Result<(Tensor, Tensor)> {
    let (b1, b2, adam_eps) = (0.9f64, 0.999f64, 1e-8f64);
    let x = x.f_detach()?;
    let lo = x.f_sub_scalar(cfg.eps)?.f_clamp_min(0.0)?;
    let hi = x.f_add_scalar(cfg.eps)?.f_clamp_max(1.0)?;
    let start = x.f_rand_like()?.f_mul_scalar(2.0 * cfg.eps)?.f_sub_scalar(cfg.eps)?;
    let mut x_adv = x.f_add(&start)?.f_max_other(&lo)?.f_min_other(&hi)?;
    let mut m = x.f_zeros_like()?;
    let mut v = x.f_zeros_like()?;
    let mut broken = Tensor::f_zeros([x.size()[0]], (Kind::Bool, x.device()))?;
    for t in 1..=cfg.iterations + 1 {
        // Early stop: judge the current point of every still-robust example.
        let active = broken.f_logical_not()?.f_nonzero()?.f_squeeze_dim(1)?;
        if active.size()[0] == 0 {
            break;
        }
        let xa = x_adv.f_index_select(0, &active)?;
        let ya = y.f_index_select(0, &active)?;
        let wrong = oracle.scores(&xa)?.f_argmax(-1, false)?.f_ne_tensor(&ya)?;
        broken = broken.f_index_put(&[Some(&active)], &wrong, false)?;
        if t > cfg.iterations {
            break;
        }
        let still = wrong.f_logical_not()?.f_nonzero()?.f_squeeze_dim(1)?;
        if still.size()[0] == 0 {
            break;
        }
        let idx = active.f_index_select(0, &still)?;
        let xa = x_adv.f_index_select(0, &idx)?;
        let ya = y.f_index_select(0, &idx)?;
        let g = estimate_gradient(oracle, &xa, &ya, cfg.samples, cfg.delta, cfg.max_images)?;
        let mi = m.f_index_select(0, &idx)?.f_mul_scalar(b1)?.f_add(&g.f_mul_scalar(1.0 - b1)?)?;
        let vi = v.f_index_select(0, &idx)?.f_mul_scalar(b2)?.f_add(&g.f_square()?.f_mul_scalar(1.0 - b2)?)?;
        let mhat = mi.f_div_scalar(1.0 - b1.powi(t as i32))?;
        let vhat = vi.f_div_scalar(1.0 - b2.powi(t as i32))?;
        let step = mhat.f_div(&vhat.f_sqrt()?.f_add_scalar(adam_eps)?)?.f_mul_scalar(cfg.lr)?;
        // Descend on the margin, then project onto the ball and the box.
        let xi =
            xa.f_sub(&step)?.f_max_other(&lo.f_index_select(0, &idx)?)?.f_min_other(&hi.f_index_select(0, &idx)?)?;
        m = m.f_index_copy(0, &idx, &mi)?;
        v = v.f_index_copy(0, &idx, &vi)?;
        x_adv = x_adv.f_index_copy(0, &idx, &xi)?;
    }
    Ok((x_adv, broken))
}

impl Attack for Spsa {
    fn id(&self) -> String {
        format!("spsa{}", self.samples)
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let oracle = Oracle::new(model);
        let (adv, broken) = spsa(&oracle, x, y, self)?;
        Ok((adv, Some(broken)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Classifier;
    use tch::Device;

    /// A linear classifier z = W x + b over flattened inputs, as a score oracle.
    pub(crate) struct Linear {
        pub w: Tensor,
        pub b: Tensor,
    }

    impl ScoreOracle for Linear {
        fn scores(&self, x: &Tensor) -> Result<Tensor> {
            let n = x.size()[0];
            Ok(x.f_reshape([n, -1])?.f_matmul(&self.w.f_tr()?)?.f_add(&self.b)?)
        }

        fn images(&self) -> u64 {
            0
        }
    }

    #[test]
    fn estimate_aligns_with_the_true_gradient_better_with_more_samples() {
        let _g = crate::models::layers::test_support::rng_lock();
        tch::manual_seed(3);
        let (k, d) = (3i64, 64i64);
        let model = Linear {
            w: Tensor::randn([k, d], (Kind::Float, Device::Cpu)),
            b: Tensor::zeros([k], (Kind::Float, Device::Cpu)),
        };
        let x = Tensor::rand([1, 1, 8, 8], (Kind::Float, Device::Cpu));
        let z = model.scores(&x).unwrap();
        let y = z.argmax(-1, false);
        // True gradient of z_y - z_o where o is the runner-up.
        let sorted = z.argsort(-1, true);
        let (yi, oi) = (sorted.int64_value(&[0, 0]), sorted.int64_value(&[0, 1]));
        let truth = (model.w.get(yi) - model.w.get(oi)).reshape([1, 1, 8, 8]);
        let cosine = |samples: usize| {
            let mut total = 0.0;
            for _ in 0..20 {
                let g = estimate_gradient(&model, &x, &y, samples, 1e-3, 4096).unwrap();
                total += (&g * &truth).sum(Kind::Float).double_value(&[])
                    / (g.norm().double_value(&[]) * truth.norm().double_value(&[]));
            }
            total / 20.0
        };
        let (c8, c128, c1024) = (cosine(8), cosine(128), cosine(1024));
        assert!(c8 < c128 && c128 < c1024, "cosines {c8} {c128} {c1024}");
        assert!(c1024 > 0.8, "1024 samples should estimate a linear gradient well: {c1024}");
        // Chunking does not change the estimate's distribution: small chunks work too.
        let g = estimate_gradient(&model, &x, &y, 64, 1e-3, 6).unwrap();
        assert_eq!(g.size(), x.size());
    }

    struct Net(Linear);

    impl Classifier for Net {
        fn logits(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
            self.0.scores(x)
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn num_classes(&self) -> usize {
            self.0.w.size()[0] as usize
        }
        fn freeze(&self) -> crate::models::Frozen {
            crate::models::Frozen::new(Vec::<Tensor>::new())
        }
    }

    #[test]
    fn spsa_stays_in_the_ball_breaks_a_linear_model_and_never_beats_pgd_by_more_than_noise() {
        let _g = crate::models::layers::test_support::rng_lock();
        tch::manual_seed(5);
        let (k, d, n) = (4i64, 48i64, 64i64);
        let w = Tensor::randn([k, d], (Kind::Float, Device::Cpu));
        let net = Net(Linear { w: w.set_requires_grad(false), b: Tensor::zeros([k], (Kind::Float, Device::Cpu)) });
        let x = Tensor::rand([n, 3, 4, 4], (Kind::Float, Device::Cpu));
        let y = net.logits(&x, false).unwrap().argmax(-1, false);
        let eps = 0.05;
        let attack = Spsa { iterations: 30, ..Spsa::paper(eps, 128) };
        let (adv, broken) = attack.perturb(&net, &x, &y).unwrap();
        let broken = broken.expect("SPSA flags every example");
        let dist = (&adv - &x).abs().max().double_value(&[]);
        assert!(dist <= eps + 1e-6, "{dist}");
        assert!(adv.min().double_value(&[]) >= 0.0 && adv.max().double_value(&[]) <= 1.0);
        let spsa_robust = n - broken.sum(Kind::Int64).int64_value(&[]);
        let pgd = super::super::Pgd::paper(eps, 20);
        let (padv, _) = pgd.perturb(&net, &x, &y).unwrap();
        let pgd_robust =
            net.logits(&padv, false).unwrap().argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        assert!(spsa_robust < n, "SPSA broke nothing on a linear model");
        assert!(spsa_robust + 3 >= pgd_robust, "SPSA {spsa_robust} robust vs white-box PGD-20 {pgd_robust}");
        // Flags and the returned points agree: a broken example's point is misclassified.
        let wrong = net.logits(&adv, false).unwrap().argmax(-1, false).ne_tensor(&y);
        assert!(bool::try_from(broken.eq_tensor(&wrong).all()).unwrap());
    }
}
