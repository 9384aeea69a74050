//! Statistical helpers shared by the reports: the standard normal quantile (for noise bands
//! with a Bonferroni correction), the noise band of a difference between two estimates of
//! the same quantity (issue 18: `regress` across numerics fingerprints), and the exact tests of
//! issue 21: the Clopper–Pearson interval of an accuracy on N examples and McNemar's exact test
//! of two classifiers on the same examples.

/// The standard normal quantile Φ⁻¹(p) for p in (0, 1), by Acklam's rational approximation
/// (relative error below 1.2e-9 over the whole range).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "normal_quantile({p}): p must lie in (0, 1)");
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// The two-sided critical value for `m` simultaneous tests at family-wise level `alpha`
/// (Bonferroni): Φ⁻¹(1 − α / 2m).
pub fn bonferroni_z(alpha: f64, m: usize) -> f64 {
    normal_quantile(1.0 - alpha / (2.0 * m.max(1) as f64))
}

/// The standard deviation of the difference of two independent draws of a proportion measured
/// on `n` examples each, when each draw scatters by sampling (binomial, at the pooled rate
/// `p`) and by the training's seed (`seed_sd`, the spread of the model's accuracy between
/// seeds): √(2 · (p(1−p)/n + seed_sd²)).
pub fn proportion_difference_sd(p: f64, n: usize, seed_sd: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    let sampling = if n == 0 { 0.0 } else { p * (1.0 - p) / n as f64 };
    (2.0 * (sampling + seed_sd * seed_sd)).sqrt()
}

/// ln C(n, k) + k ln p + (n − k) ln(1 − p): the log-probability of k successes in n trials.
fn ln_binomial_pmf(n: usize, k: usize, p: f64) -> f64 {
    let ln_choose = ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let term = |count: usize, q: f64| if count == 0 { 0.0 } else { count as f64 * q.ln() };
    ln_choose + term(k, p) + term(n - k, 1.0 - p)
}

/// ln n!, summed exactly for small n and by Stirling's series (error below 1e-12) above.
fn ln_factorial(n: usize) -> f64 {
    if n < 64 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x.powi(3))
        + 1.0 / (1260.0 * x.powi(5))
}

/// P(X ≤ k) for X ~ Binomial(n, p).
pub fn binomial_cdf(k: usize, n: usize, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    (0..=k).map(|i| ln_binomial_pmf(n, i, p).exp()).sum::<f64>().min(1.0)
}

/// The exact (Clopper–Pearson) two-sided interval of a proportion with `k` successes in `n`
/// trials at confidence 1 − `alpha`: the p whose binomial tails at k are α/2, found by bisection
/// to 1e-12. `(0, 1)` for n = 0.
pub fn clopper_pearson(k: usize, n: usize, alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let bisect = |f: &dyn Fn(f64) -> bool| {
        // f is true below the root and false above it.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if f(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    // Lower: P(X ≥ k | p) = α/2, i.e. 1 − P(X ≤ k − 1 | p) = α/2 (0 when k = 0).
    let lower = if k == 0 { 0.0 } else { bisect(&|p| 1.0 - binomial_cdf(k - 1, n, p) < alpha / 2.0) };
    // Upper: P(X ≤ k | p) = α/2 (1 when k = n).
    let upper = if k >= n { 1.0 } else { bisect(&|p| binomial_cdf(k, n, p) > alpha / 2.0) };
    (lower, upper)
}

/// McNemar's exact two-sided p-value for `b` and `c` discordant pairs (examples only the first,
/// resp. only the second classifier gets right): 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c,
/// ½), at most 1; 1 when there is no discordant pair.
pub fn mcnemar_exact_p(b: usize, c: usize) -> f64 {
    let m = b + c;
    if m == 0 {
        return 1.0;
    }
    (2.0 * binomial_cdf(b.min(c), m, 0.5)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_the_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_985),
            (0.995, 2.575_829_304),
            (0.999_5, 3.290_526_731),
            (0.025, -1.959_963_985),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-6, "Φ⁻¹({p}) = {} vs {z}", normal_quantile(p));
        }
        // Far tail: Φ⁻¹(1 − 1e-9) = 5.997807…
        assert!((normal_quantile(1.0 - 1e-9) - 5.997_807_015).abs() < 1e-5);
    }

    #[test]
    fn bonferroni_widens_with_the_number_of_tests() {
        assert!((bonferroni_z(0.05, 1) - 1.959_964).abs() < 1e-5);
        assert!((bonferroni_z(0.01, 100) - normal_quantile(1.0 - 0.000_05)).abs() < 1e-12);
        assert!(bonferroni_z(0.01, 100) > bonferroni_z(0.01, 10));
    }

    #[test]
    fn the_difference_sd_adds_sampling_and_seed_noise() {
        // 50 examples at 30 %: √(2 · 0.21 / 50) = 0.0917.
        assert!((proportion_difference_sd(0.3, 50, 0.0) - 0.091_65).abs() < 1e-4);
        assert!((proportion_difference_sd(1.0, 50, 0.0)).abs() < 1e-12);
        assert!((proportion_difference_sd(1.0, 50, 0.01) - 2f64.sqrt() * 0.01).abs() < 1e-12);
        assert!(proportion_difference_sd(0.3, 10_000, 0.0) < proportion_difference_sd(0.3, 50, 0.0));
    }

    #[test]
    fn clopper_pearson_matches_published_values() {
        // R's binom.test(k, n)$conf.int for the first three; the others by exact summation of
        // the binomial terms (Python's math.comb) and bisection, independently of this code.
        for (k, n, lo, hi) in [
            (0, 10, 0.0, 0.308_497_1),
            (5, 10, 0.187_086_0, 0.812_914_0),
            (10, 10, 0.691_502_9, 1.0),
            (36, 50, 0.575_094_6, 0.837_689_4),
            (180, 500, 0.317_863_0, 0.403_803_4),
        ] {
            let (l, h) = clopper_pearson(k, n, 0.05);
            assert!((l - lo).abs() < 1e-6 && (h - hi).abs() < 1e-6, "{k}/{n}: ({l}, {h}) vs ({lo}, {hi})");
        }
        assert_eq!(clopper_pearson(0, 0, 0.05), (0.0, 1.0));
        let (l, h) = clopper_pearson(9_000, 10_000, 0.05);
        assert!(l < 0.9 && 0.9 < h && h - l < 0.012, "({l}, {h})");
    }

    #[test]
    fn mcnemar_is_exact_and_symmetric() {
        // 15 vs 8 discordant examples (docs/evaluation.md, APGD-CE): p = 0.2100.
        assert!((mcnemar_exact_p(15, 8) - 0.210_039).abs() < 1e-5, "{}", mcnemar_exact_p(15, 8));
        assert_eq!(mcnemar_exact_p(8, 15), mcnemar_exact_p(15, 8));
        assert_eq!(mcnemar_exact_p(0, 0), 1.0);
        assert_eq!(mcnemar_exact_p(3, 3), 1.0);
        // 0 vs 6: 2 / 64.
        assert!((mcnemar_exact_p(0, 6) - 0.031_25).abs() < 1e-12);
        assert!(binomial_cdf(2, 5, 0.0) == 1.0 && binomial_cdf(5, 5, 0.3) == 1.0);
    }
}
