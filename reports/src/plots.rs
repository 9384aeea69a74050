//! Plot geometry for the HTML report (SVG rendered by the `bars.svg` and `lines.svg`
//! templates): robust accuracy per attack per method, and training curves per run.

use serde::Serialize;

use crate::grid::Grid;

/// A qualitative palette (Okabe–Ito, colour-blind safe).
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

/// A y-axis tick.
#[derive(Debug, Clone, Serialize)]
pub struct YTick {
    /// Pixel y.
    pub y: f64,
    /// Label.
    pub label: String,
}

/// An x-axis tick.
#[derive(Debug, Clone, Serialize)]
pub struct XTick {
    /// Pixel x.
    pub x: f64,
    /// Label.
    pub label: String,
}

/// A legend entry.
#[derive(Debug, Clone, Serialize)]
pub struct LegendEntry {
    /// Pixel x.
    pub x: f64,
    /// Pixel y (text baseline).
    pub y: f64,
    /// Colour.
    pub color: String,
    /// Label.
    pub label: String,
}

/// One bar.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
    /// Fill.
    pub color: String,
    /// Tooltip.
    pub title: String,
}

/// The bars of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct BarGroup {
    /// Centre x of the group (label position).
    pub x: f64,
    /// Metric heading.
    pub label: String,
    /// One bar per method.
    pub bars: Vec<Bar>,
}

/// A grouped bar chart.
#[derive(Debug, Clone, Serialize)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Canvas width.
    pub width: f64,
    /// Canvas height.
    pub height: f64,
    /// Plot area left edge.
    pub left: f64,
    /// Plot area right edge.
    pub right: f64,
    /// Plot area bottom (the axis).
    pub bottom: f64,
    /// Y ticks.
    pub yticks: Vec<YTick>,
    /// Groups.
    pub groups: Vec<BarGroup>,
    /// Legend.
    pub legend: Vec<LegendEntry>,
}

/// Legend entries from `top` down, wrapping at `max_x`; returns them and the y below the last.
fn legend(labels: &[String], left: f64, top: f64, max_x: f64) -> (Vec<LegendEntry>, f64) {
    let (mut x, mut y) = (left, top);
    let entries = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let w = 24.0 + 7.0 * l.chars().count() as f64;
            if x > left && x + w > max_x {
                x = left;
                y += 15.0;
            }
            let e = LegendEntry { x, y, color: PALETTE[i % PALETTE.len()].into(), label: l.clone() };
            x += w;
            e
        })
        .collect();
    (entries, y + 8.0)
}

/// Robust accuracy per metric (groups) per method (bars) of a grid's reproduced values, in
/// percent on a 0–100 axis. `None` when the grid has no reproduced accuracy.
pub fn accuracy_bars(grid: &Grid) -> Option<BarChart> {
    let metrics: Vec<usize> = (0..grid.metrics.len()).filter(|&j| !grid.metrics[j].is_distance()).collect();
    let rows: Vec<usize> =
        (0..grid.rows.len()).filter(|&i| grid.rows[i].cells.iter().any(|c| c.value.is_some())).collect();
    if metrics.is_empty() || rows.is_empty() {
        return None;
    }
    let (left, top) = (44.0, 28.0);
    let bar_w = 10.0f64;
    let group_w = bar_w * rows.len() as f64 + 14.0;
    let width = (left + group_w * metrics.len() as f64 + 16.0).max(360.0);
    let bottom = top + 200.0;
    let y = |pct: f64| bottom - 200.0 * pct.clamp(0.0, 100.0) / 100.0;
    let yticks = (0..=4).map(|k| YTick { y: y(25.0 * k as f64), label: format!("{}", 25 * k) }).collect();
    let groups = metrics
        .iter()
        .enumerate()
        .map(|(g, &j)| {
            let x0 = left + 7.0 + group_w * g as f64;
            let bars = rows
                .iter()
                .enumerate()
                .filter_map(|(k, &i)| {
                    let c = &grid.rows[i].cells[j];
                    let v = c.value?;
                    Some(Bar {
                        x: x0 + bar_w * k as f64,
                        y: y(v),
                        w: bar_w - 1.0,
                        h: bottom - y(v),
                        color: PALETTE[k % PALETTE.len()].into(),
                        title: format!("{} {}: {v:.2} %", grid.rows[i].method, grid.headers[j]),
                    })
                })
                .collect();
            BarGroup { x: x0 + bar_w * rows.len() as f64 / 2.0, label: grid.headers[j].clone(), bars }
        })
        .collect();
    let labels: Vec<String> = rows.iter().map(|&i| grid.rows[i].method.clone()).collect();
    let (legend, height) = legend(&labels, left, bottom + 40.0, width - 8.0);
    Some(BarChart {
        title: format!("Accuracy per attack (%), {} {}", grid.dataset, grid.arch),
        width,
        height,
        left,
        right: width - 8.0,
        bottom,
        yticks,
        groups,
        legend,
    })
}

/// One bar per labelled value, in percent on a 0–100 axis (Fig. 3-style ablation bars).
/// `None` for no values.
pub fn value_bars(title: &str, items: &[(String, f64)]) -> Option<BarChart> {
    if items.is_empty() {
        return None;
    }
    let (left, top, bar_w) = (44.0, 28.0, 28.0);
    let group_w = bar_w + 40.0;
    let width = (left + group_w * items.len() as f64 + 16.0).max(300.0);
    let bottom = top + 200.0;
    let y = |pct: f64| bottom - 200.0 * pct.clamp(0.0, 100.0) / 100.0;
    let yticks = (0..=4).map(|k| YTick { y: y(25.0 * k as f64), label: format!("{}", 25 * k) }).collect();
    let groups = items
        .iter()
        .enumerate()
        .map(|(k, (label, v))| {
            let x0 = left + 20.0 + group_w * k as f64;
            let bar = Bar {
                x: x0,
                y: y(*v),
                w: bar_w,
                h: bottom - y(*v),
                color: PALETTE[k % PALETTE.len()].into(),
                title: format!("{label}: {v:.2} %"),
            };
            BarGroup { x: x0 + bar_w / 2.0, label: label.clone(), bars: vec![bar] }
        })
        .collect();
    Some(BarChart {
        title: title.into(),
        width,
        height: bottom + 32.0,
        left,
        right: width - 8.0,
        bottom,
        yticks,
        groups,
        legend: Vec::new(),
    })
}

/// A dot on a line.
#[derive(Debug, Clone, Serialize)]
pub struct Dot {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// Tooltip.
    pub title: String,
}

/// One line.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Label.
    pub label: String,
    /// Colour.
    pub color: String,
    /// SVG polyline points.
    pub points: String,
    /// The points as dots with tooltips.
    pub dots: Vec<Dot>,
    /// Draw the line through them (false: a scatter plot).
    pub line: bool,
}

/// A line chart.
#[derive(Debug, Clone, Serialize)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub xlabel: String,
    /// Canvas width.
    pub width: f64,
    /// Canvas height.
    pub height: f64,
    /// Plot area left.
    pub left: f64,
    /// Plot area right.
    pub right: f64,
    /// Plot area bottom.
    pub bottom: f64,
    /// Y ticks.
    pub yticks: Vec<YTick>,
    /// X ticks.
    pub xticks: Vec<XTick>,
    /// Lines.
    pub series: Vec<Series>,
    /// Legend.
    pub legend: Vec<LegendEntry>,
}

/// A line chart of `(label, points)` series; `None` when no series has a point.
pub fn line_chart(title: &str, xlabel: &str, series: &[(String, Vec<(f64, f64)>)]) -> Option<LineChart> {
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|(_, y)| y.is_finite()).collect();
    if all.is_empty() {
        return None;
    }
    let (xmin, xmax) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (ymin, ymax) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    let (ymin, ymax) = if (ymax - ymin).abs() < 1e-12 { (ymin - 0.5, ymax + 0.5) } else { (ymin, ymax) };
    let (xmin, xmax) = if (xmax - xmin).abs() < 1e-12 { (xmin - 0.5, xmax + 0.5) } else { (xmin, xmax) };
    let (left, top, w, h) = (52.0, 28.0, 300.0, 170.0);
    let (bottom, right) = (top + h, left + w);
    let px = |x: f64| left + w * (x - xmin) / (xmax - xmin);
    let py = |y: f64| bottom - h * (y - ymin) / (ymax - ymin);
    let yticks = (0..=4)
        .map(|k| {
            let v = ymin + (ymax - ymin) * k as f64 / 4.0;
            YTick { y: py(v), label: format!("{v:.3}") }
        })
        .collect();
    let mut xs: Vec<f64> = all.iter().map(|(x, _)| *x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let step = xs.len().div_ceil(8).max(1);
    let xticks = xs.iter().step_by(step).map(|&x| XTick { x: px(x), label: format!("{x}") }).collect();
    let lines: Vec<Series> = series
        .iter()
        .enumerate()
        .map(|(i, (label, pts))| {
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|(_, y)| y.is_finite()).collect();
            Series {
                label: label.clone(),
                color: PALETTE[i % PALETTE.len()].into(),
                points: pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect::<Vec<_>>().join(" "),
                dots: pts
                    .iter()
                    .map(|&(x, y)| Dot { x: px(x), y: py(y), title: format!("{label}: {xlabel} {x}, {y:.4}") })
                    .collect(),
                line: true,
            }
        })
        .collect();
    let labels: Vec<String> = series.iter().map(|(l, _)| l.clone()).collect();
    let (legend, height) = legend(&labels, left, bottom + 48.0, right + 8.0);
    Some(LineChart {
        title: title.into(),
        xlabel: xlabel.into(),
        width: right + 16.0,
        height,
        left,
        right,
        bottom,
        yticks,
        xticks,
        series: lines,
        legend,
    })
}
