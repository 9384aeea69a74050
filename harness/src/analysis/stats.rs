//! The statistics behind the analyses: means, average ranks, the Mann–Whitney U test (normal
//! approximation with tie correction), Spearman's rank correlation and histograms.

use serde::{Deserialize, Serialize};

/// Arithmetic mean (NaN for no values).
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// 1-based ranks, ties given the average of the ranks they span.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation of two equally long samples (NaN when either is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman's rank correlation: Pearson's on average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// The complementary error function: the Chebyshev-fitted exponential form with fractional
/// error below 1.2e-7 everywhere (Numerical Recipes' `erfcc`).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// A two-sample test result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of the first sample (the number of pairs in which it is the larger, ties half).
    pub u: f64,
    /// The standardised U (normal approximation, tie-corrected).
    pub z: f64,
    /// Two-sided p-value from the normal approximation.
    pub p: f64,
}

/// The Mann–Whitney U test of `a` against `b`: U of `a`, z and the two-sided p-value of the
/// normal approximation with the tie correction of the variance (fine for tens of examples
/// per side and up; the analyses use hundreds).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> MannWhitney {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let r = ranks(&all);
    let r1: f64 = r[..a.len()].iter().sum();
    let u = r1 - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    // Tie correction: Σ (t³ − t) over groups of tied values.
    let mut sorted = all.clone();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let z = if var > 0.0 { (u - n1 * n2 / 2.0) / var.sqrt() } else { 0.0 };
    MannWhitney { u, z, p: erfc(z.abs() / std::f64::consts::SQRT_2) }
}

/// Counts of `v` in `bins` equal bins over [lo, hi] (values outside go to the end bins).
pub fn histogram(v: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut h = vec![0; bins];
    for &x in v {
        let k = (((x - lo) / (hi - lo)) * bins as f64).floor();
        h[(k.max(0.0) as usize).min(bins - 1)] += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
    }

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in
            [(0.0, 1.0), (0.5, 0.479_500_122), (1.0, 0.157_299_207), (2.0, 0.004_677_735), (-1.0, 1.842_700_793)]
        {
            assert!((erfc(x) - want).abs() < 2e-7, "erfc({x}) = {} vs {want}", erfc(x));
        }
    }

    /// Two fully separated samples of five: U = 0, E[U] = 12.5, Var U = 5·5·11/12, so
    /// z = −12.5/√22.917 = −2.6112 and p = erfc(2.6112/√2) = 0.009023 (no continuity correction).
    #[test]
    fn mann_whitney_and_spearman_on_known_samples() {
        let t = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(t.u, 0.0);
        assert!((t.z + 2.611_165).abs() < 1e-5 && (t.p - 0.009_023).abs() < 1e-5, "{t:?}");
        let same = mann_whitney(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert!((same.z).abs() < 1e-12 && (same.p - 1.0).abs() < 1e-6);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 100.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(histogram(&[0.0, 0.1, 0.5, 0.99, 1.0, 2.0], 0.0, 1.0, 4), vec![2, 0, 1, 3]);
    }
}
