//! Statistical helpers shared by the reports: the standard normal quantile (for noise bands
//! with a Bonferroni correction) and the noise band of a difference between two estimates of
//! the same quantity (issue 18: `regress` across numerics fingerprints).

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
}
