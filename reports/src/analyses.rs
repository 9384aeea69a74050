//! Figures of the paper's analyses (issue 10) from analysis records: Fig. 1 (entropy of
//! PGD survivors vs flipped examples, and the flipping radius against entropy), Fig. 4 (weight
//! loss landscapes of several runs on one plot) and Fig. 5 (input loss surfaces as heat maps).
//! Every figure is SVG from a template, with the numbers it rests on in its caption.

use infoat_registry::AnalysisRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plots::{line_chart, LineChart};
use crate::{Error, Result};

/// One rendered figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// A file stem (`fig1-3f2a91c07d1e`, `fig4`).
    pub name: String,
    /// Its title.
    pub title: String,
    /// The numbers it shows, in words, with the hashes behind them.
    pub caption: String,
    /// The SVG (one or more panels).
    pub svg: String,
}

/// The Fig. 1 result fields the plots need (the harness writes more).
#[derive(Debug, Deserialize)]
struct Fig1 {
    n: usize,
    clean_correct: usize,
    robust: usize,
    entropy_max: f64,
    mean_entropy_robust: f64,
    mean_entropy_broken: f64,
    test: Test,
    hist_robust: Vec<usize>,
    hist_broken: Vec<usize>,
    entropy: Vec<f64>,
    min_eps: Vec<f64>,
    censored: usize,
    spearman: f64,
}

#[derive(Debug, Deserialize)]
struct Test {
    z: f64,
    p: f64,
}

#[derive(Debug, Deserialize)]
struct Fig4 {
    alphas: Vec<f64>,
    adv_loss: Vec<f64>,
    sharpness: f64,
}

#[derive(Debug, Deserialize)]
struct Fig5 {
    grid: Vec<f64>,
    examples: Vec<Fig5Example>,
}

#[derive(Debug, Deserialize)]
struct Fig5Example {
    index: usize,
    label: u8,
    loss: Vec<Vec<f64>>,
    wrong: Vec<Vec<bool>>,
}

/// A heat map panel (`heat.svg` template).
#[derive(Debug, Clone, Serialize)]
pub struct HeatPanel {
    /// Panel title.
    pub title: String,
    /// Left edge.
    pub x: f64,
    /// Cell size.
    pub cell: f64,
    /// Cells.
    pub cells: Vec<HeatCell>,
}

/// One cell of a heat map.
#[derive(Debug, Clone, Serialize)]
pub struct HeatCell {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Fill colour.
    pub color: String,
    /// The prediction is wrong here.
    pub wrong: bool,
    /// Tooltip.
    pub title: String,
}

/// A row of heat maps with a shared colour scale.
#[derive(Debug, Clone, Serialize)]
pub struct HeatMaps {
    /// Title.
    pub title: String,
    /// Canvas width.
    pub width: f64,
    /// Canvas height.
    pub height: f64,
    /// Panels.
    pub panels: Vec<HeatPanel>,
    /// Colour-scale labels (low, high).
    pub scale: (String, String),
}

/// The method of the run an analysis was made on ("AT", "InfoAT"; "model" when its run is not
/// among `runs`), the label its figures carry.
pub fn run_method(a: &AnalysisRecord, runs: &[infoat_registry::RunRecord]) -> String {
    a.config_hash
        .and_then(|h| runs.iter().find(|r| r.config_hash == h))
        .and_then(|r| infoat_registry::MethodKind::of_config(&r.config))
        .map(|k| k.label().to_string())
        .unwrap_or_else(|| "model".into())
}

fn parse<T: for<'de> Deserialize<'de>>(r: &AnalysisRecord) -> Result<T> {
    serde_json::from_value(r.result.clone()).map_err(|e| {
        Error::Invalid(format!("analysis record {} ({}): unexpected result ({e})", r.figure, r.model_hash))
    })
}

fn short(r: &AnalysisRecord) -> String {
    r.config_hash.unwrap_or(r.model_hash).short(12)
}

/// Viridis-like ramp from dark blue (0) to yellow (1).
fn ramp(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let (i, f) = ((t.floor() as usize).min(STOPS.len() - 2), t - t.floor().min((STOPS.len() - 2) as f64));
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Renders every figure of `records`; `label` names a record's model (e.g. "AT").
pub fn figures(records: &[AnalysisRecord], label: &dyn Fn(&AnalysisRecord) -> String) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    let mut sorted: Vec<&AnalysisRecord> = records.iter().collect();
    sorted.sort_by(|a, b| (&a.figure, label(a)).cmp(&(&b.figure, label(b))));
    for r in sorted.iter().filter(|r| r.figure == "fig1") {
        out.push(fig1(r, &label(r))?);
    }
    let fig4s: Vec<&AnalysisRecord> = sorted.iter().copied().filter(|r| r.figure == "fig4").collect();
    if !fig4s.is_empty() {
        out.push(fig4(&fig4s, label)?);
    }
    for r in sorted.iter().filter(|r| r.figure == "fig5") {
        out.push(fig5(r, &label(r))?);
    }
    Ok(out)
}

/// Charts side by side in one SVG document (`row.svg` template): a figure file is one image.
#[derive(Debug, Clone, Serialize)]
struct Row {
    width: f64,
    height: f64,
    panels: Vec<RowPanel>,
}

#[derive(Debug, Clone, Serialize)]
struct RowPanel {
    x: f64,
    svg: String,
}

fn lines(charts: Vec<Option<LineChart>>) -> Result<String> {
    let charts: Vec<LineChart> = charts.into_iter().flatten().collect();
    let mut row = Row { width: 0.0, height: 0.0, panels: Vec::new() };
    for c in &charts {
        row.panels.push(RowPanel { x: row.width, svg: crate::templates::render_svg("lines.svg", c)? });
        row.width += c.width;
        row.height = row.height.max(c.height);
    }
    crate::templates::render_svg("row.svg", &row)
}

fn fig1(r: &AnalysisRecord, label: &str) -> Result<Figure> {
    let f: Fig1 = parse(r)?;
    let bins = f.hist_robust.len().max(1);
    let width = f.entropy_max / bins as f64;
    let density = |h: &[usize]| -> Vec<(f64, f64)> {
        let total = h.iter().sum::<usize>().max(1) as f64;
        h.iter().enumerate().map(|(i, &c)| ((i as f64 + 0.5) * width, c as f64 / total)).collect()
    };
    let round = |pts: Vec<(f64, f64)>| pts.into_iter().map(|(x, y)| ((x * 1000.0).round() / 1000.0, y)).collect();
    let hist = line_chart(
        "Fig. 1(a): H(p(x)), PGD survivors vs flipped",
        "H(p(x)) (bin centre)",
        &[
            (format!("survive PGD ({})", f.robust), round(density(&f.hist_robust))),
            (format!("flipped ({})", f.clean_correct - f.robust), round(density(&f.hist_broken))),
        ],
    );
    let points: Vec<(f64, f64)> = f.entropy.iter().zip(&f.min_eps).map(|(&h, &e)| (h, e)).collect();
    let mut scatter =
        line_chart("Fig. 1(b): smallest flipping radius vs H(p(x))", "H(p(x))", &[("examples".to_string(), points)]);
    if let Some(c) = scatter.as_mut() {
        // Five evenly spaced ticks: the data's own x values are irregular.
        let (lo, hi) = f.entropy.iter().fold((f64::MAX, f64::MIN), |(a, b), &h| (a.min(h), b.max(h)));
        if hi > lo {
            c.xticks = (0..5)
                .map(|k| {
                    let v = lo + (hi - lo) * k as f64 / 4.0;
                    crate::plots::XTick { x: c.left + (c.right - c.left) * k as f64 / 4.0, label: format!("{v:.2}") }
                })
                .collect();
        }
        c.series.iter_mut().for_each(|s| s.line = false);
    }
    let caption = format!(
        "{label} (config {}): {n} test images, {cc} clean-correct, {rob} survive PGD-{steps} at eps {eps}. Mean H(p(x)): \
         survivors {mr:.4}, flipped {mb:.4} (Mann–Whitney z = {z:.2}, two-sided p = {p:.2e}). Spearman's ρ between \
         H(p(x)) and the smallest flipping radius: {rho:.3} over {cc} examples ({cens} not flipped within eps {hi}). \
         The paper's claim predicts lower entropy for survivors and a negative ρ.",
        short(r),
        n = f.n,
        cc = f.clean_correct,
        rob = f.robust,
        steps = r.params.get("steps").and_then(Value::as_u64).unwrap_or(10),
        eps = r.params.get("eps").and_then(Value::as_f64).unwrap_or(f64::NAN),
        mr = f.mean_entropy_robust,
        mb = f.mean_entropy_broken,
        z = f.test.z,
        p = f.test.p,
        rho = f.spearman,
        cens = f.censored,
        hi = r.params.get("eps_hi").and_then(Value::as_f64).unwrap_or(f64::NAN),
    );
    Ok(Figure {
        name: format!("fig1-{}", short(r)),
        title: format!("Fig. 1 — entropy and vulnerability, {label}"),
        caption,
        svg: lines(vec![hist, scatter])?,
    })
}

fn fig4(records: &[&AnalysisRecord], label: &dyn Fn(&AnalysisRecord) -> String) -> Result<Figure> {
    let mut series = Vec::new();
    let mut parts = Vec::new();
    for r in records {
        let f: Fig4 = parse(r)?;
        series.push((label(r), f.alphas.iter().copied().zip(f.adv_loss.iter().copied()).collect::<Vec<_>>()));
        parts.push(format!("{} (config {}) {:.4}", label(r), short(r), f.sharpness));
    }
    let chart = line_chart("Fig. 4: adversarial loss along d in weight space", "α", &series);
    Ok(Figure {
        name: "fig4".into(),
        title: "Fig. 4 — weight loss landscape".into(),
        caption: format!(
            "Mean cross-entropy on PGD examples (found anew at each α) of the model with weights θ + α·d, d a \
             filter-normalised Gaussian direction (the same seed for every model). Sharpness (mean loss at α = ±1 \
             minus at α = 0): {}.",
            parts.join(", ")
        ),
        svg: lines(vec![chart])?,
    })
}

fn fig5(r: &AnalysisRecord, label: &str) -> Result<Figure> {
    let f: Fig5 = parse(r)?;
    let (lo, hi) = f
        .examples
        .iter()
        .flat_map(|e| e.loss.iter().flatten())
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-12);
    let k = f.grid.len().max(1);
    let cell = (160.0 / k as f64).floor().max(2.0);
    let panel_w = cell * k as f64 + 24.0;
    let panels: Vec<HeatPanel> = f
        .examples
        .iter()
        .enumerate()
        .map(|(p, e)| {
            let x0 = 12.0 + p as f64 * panel_w;
            let cells = e
                .loss
                .iter()
                .enumerate()
                .flat_map(|(i, row)| {
                    let grid = &f.grid;
                    let wrong = &e.wrong;
                    row.iter().enumerate().map(move |(j, &v)| HeatCell {
                        // d1 (along the PGD direction) to the right, d2 (random) upwards.
                        x: x0 + i as f64 * cell,
                        y: 40.0 + (k - 1 - j) as f64 * cell,
                        color: ramp((v - lo) / span),
                        wrong: wrong.get(i).and_then(|w| w.get(j)).copied().unwrap_or(false),
                        title: format!("d1 {:.2}, d2 {:.2}: loss {v:.4}", grid[i], grid[j]),
                    })
                })
                .collect();
            HeatPanel { title: format!("test #{} (label {})", e.index, e.label), x: x0, cell, cells }
        })
        .collect();
    let maps = HeatMaps {
        title: format!("Fig. 5 {label}: loss on x + d1·v (PGD, →) + d2·r (random, ↑), d in [-1, 1]"),
        width: 24.0 + panel_w * panels.len() as f64,
        height: 40.0 + cell * k as f64 + 36.0,
        panels,
        scale: (format!("{lo:.3}"), format!("{hi:.3}")),
    };
    Ok(Figure {
        name: format!("fig5-{}", short(r)),
        title: format!("Fig. 5 — input loss surfaces, {label}"),
        caption: format!(
            "{label} (config {}): cross-entropy from {lo:.3} (dark) to {hi:.3} (yellow) on a {k}×{k} grid; white \
             dots mark points the model misclassifies. v is the example's PGD perturbation scaled to L∞ norm eps, r a \
             random sign direction of the same norm.",
            short(r)
        ),
        svg: crate::templates::render_svg("heat.svg", &maps)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_runs_dark_to_yellow() {
        assert_eq!(ramp(0.0), "#440154");
        assert_eq!(ramp(1.0), "#fde725");
        assert_eq!(ramp(2.0), "#fde725");
    }
}
