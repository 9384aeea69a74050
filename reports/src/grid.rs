//! Cells arranged the way the paper prints its tables: one grid per (table, dataset, arch,
//! protocol), rows = methods in the paper's order, columns = metrics in the paper's order, the
//! best value per column marked as the paper marks it in bold, and the hashes and environments
//! behind every row.

use std::collections::{BTreeMap, BTreeSet};

use infoat_registry::{Metric, PaperTable};
use serde::Serialize;

use crate::aggregate::{Cell, Tolerances, Verdict};

/// The paper's row order.
pub const METHOD_ORDER: [&str; 10] =
    ["Natural", "GanDef", "AT", "TRADES", "MART", "MART+", "UAT++", "RST", "InfoAT", ""];

fn rank<T: PartialEq>(order: &[T], x: &T) -> usize {
    order.iter().position(|o| o == x).unwrap_or(order.len())
}

/// One cell as a grid shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GridCell {
    /// The reproduced value in the paper's units (percent; ADBD as a distance), or `None`.
    pub value: Option<f64>,
    /// Standard deviation over seeds (same units), when n ≥ 2.
    pub std: Option<f64>,
    /// Seeds.
    pub n: usize,
    /// The published value (same units), when the protocol matches.
    pub published: Option<f64>,
    /// Verdict label.
    pub verdict: String,
    /// One character for the verdict in plain-text formats.
    pub mark: String,
    /// Best reproduced value of its column.
    pub best: bool,
    /// Best published value of its column.
    pub published_best: bool,
    /// Decimal places to print.
    pub decimals: usize,
    /// The exact (Clopper–Pearson) 95 % interval (same units), for a value from one evaluation.
    pub interval: Option<[f64; 2]>,
    /// `✓ k/b` (every broken example has a confirmed witness) or `✗ k/b` (some has not):
    /// witnesses `infoat verify-evidence` confirmed of the examples the attack broke; `None`
    /// when not checked.
    pub witnesses: Option<String>,
    /// Checked, and some broken example lacks a confirmed witness: the cell is marked.
    pub unconfirmed: bool,
    /// The indicators of attack failure the attack tripped, `name count` (issue 22), e.g.
    /// `silent_success 3`; empty when none tripped or none were measured.
    pub marks: Vec<String>,
}

/// A row: one method (recipe) and its cells in column order.
#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    /// Method label.
    pub method: String,
    /// Cells, one per column.
    pub cells: Vec<GridCell>,
    /// Config hashes behind the row.
    pub config_hashes: Vec<String>,
    /// Checkpoint hashes behind the row.
    pub checkpoint_hashes: Vec<String>,
    /// Sanity flags of the row's evaluations.
    pub flags: Vec<String>,
}

/// One table as the paper lays it out.
#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    /// Paper table (serialized as printed: `II`, …).
    pub table: PaperTable,
    /// Dataset label.
    pub dataset: String,
    /// Architecture label.
    pub arch: String,
    /// The evaluation protocol of the reproduced cells (empty when nothing was reproduced).
    pub protocol: String,
    /// A caption.
    pub caption: String,
    /// The metrics, in column order (serialized as their names).
    pub metrics: Vec<Metric>,
    /// Column headings.
    pub headers: Vec<String>,
    /// Rows in the paper's method order.
    pub rows: Vec<GridRow>,
    /// Environments that trained the rows' models.
    pub environments: Vec<String>,
    /// Remarks a reader needs (protocol mismatches, flags).
    pub notes: Vec<String>,
    /// Whether any cell has a published number.
    pub has_published: bool,
    /// Per column: the attack's cost as "heading: forward passes per example", for the
    /// columns that recorded one.
    pub costs: Vec<String>,
}

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Reproduced => "✓",
        Verdict::Below => "↓",
        Verdict::Above => "↑",
        Verdict::NotRun => "–",
        Verdict::Flagged => "⚠",
        Verdict::Unpublished => "",
    }
}

fn display(metric: Metric, v: f64) -> f64 {
    if metric.is_distance() {
        v
    } else {
        100.0 * v
    }
}

/// Arranges `cells` into grids. Cells of a published table that nothing reproduced join the
/// grid of the same table, dataset and architecture.
pub fn grids(cells: &[Cell], tol: &Tolerances) -> Vec<Grid> {
    type Key = (PaperTable, String, String, String);
    let mut groups: BTreeMap<Key, Vec<&Cell>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.verdict != Verdict::NotRun) {
        groups.entry((c.table, c.dataset.clone(), c.arch.clone(), c.protocol.clone())).or_default().push(c);
    }
    for c in cells.iter().filter(|c| c.verdict == Verdict::NotRun) {
        let target = groups
            .keys()
            .find(|(t, d, a, p)| {
                *t == c.table
                    && *d == c.dataset
                    && *a == c.arch
                    && groups[&(*t, d.clone(), a.clone(), p.clone())].iter().any(|x| x.published.is_some())
            })
            .cloned()
            .unwrap_or((c.table, c.dataset.clone(), c.arch.clone(), String::new()));
        groups.entry(target).or_default().push(c);
    }
    let mut out: Vec<Grid> = groups.into_iter().map(|(key, cells)| grid(key, &cells, tol)).collect();
    out.sort_by_key(|g| (g.table, g.dataset.clone(), g.arch.clone(), g.protocol.clone()));
    out
}

fn grid(
    (table, dataset, arch, protocol): (PaperTable, String, String, String),
    cells: &[&Cell],
    tol: &Tolerances,
) -> Grid {
    let mut metrics: Vec<Metric> = cells.iter().map(|c| c.metric).collect::<BTreeSet<_>>().into_iter().collect();
    metrics.sort_by_key(|m| m.rank());
    let mut methods: Vec<String> =
        cells.iter().map(|c| c.method.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let base = |m: &str| m.split(" [").next().unwrap_or(m).to_string();
    methods.sort_by_key(|m| (rank(&METHOD_ORDER, &base(m).as_str()), m.clone()));

    let find = |method: &str, metric: Metric| cells.iter().find(|c| c.method == method && c.metric == metric);
    let best = |metric: Metric, published: bool| -> Option<f64> {
        cells
            .iter()
            .filter(|c| c.metric == metric)
            .filter_map(|c| {
                if published {
                    c.published
                } else {
                    // A flagged number may overstate robustness: it is never marked best.
                    c.value.filter(|_| !matches!(c.verdict, Verdict::NotRun | Verdict::Flagged))
                }
            })
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let mut rows = Vec::new();
    let mut environments = BTreeSet::new();
    for method in &methods {
        let mut row = GridRow {
            method: method.clone(),
            cells: Vec::new(),
            config_hashes: Vec::new(),
            checkpoint_hashes: Vec::new(),
            flags: Vec::new(),
        };
        for &metric in &metrics {
            let decimals = if metric.is_distance() { 4 } else { 2 };
            let cell = match find(method, metric) {
                Some(c) => {
                    let reproduced = c.value.filter(|_| c.verdict != Verdict::NotRun);
                    for h in &c.config_hashes {
                        if !row.config_hashes.contains(h) {
                            row.config_hashes.push(h.clone());
                        }
                    }
                    for h in &c.checkpoint_hashes {
                        if !row.checkpoint_hashes.contains(h) {
                            row.checkpoint_hashes.push(h.clone());
                        }
                    }
                    for f in &c.flags {
                        if !row.flags.contains(f) {
                            row.flags.push(f.clone());
                        }
                    }
                    environments.extend(c.environments.iter().cloned());
                    GridCell {
                        value: reproduced.map(|v| display(metric, v)),
                        std: c.std.filter(|_| c.n >= 2).map(|s| display(metric, s)),
                        n: c.n,
                        published: c.published.map(|p| display(metric, p)),
                        verdict: c.verdict.label().to_string(),
                        mark: mark(c.verdict).to_string(),
                        best: c.verdict != Verdict::Flagged
                            && reproduced.is_some()
                            && reproduced == best(metric, false),
                        published_best: c.published.is_some() && c.published == best(metric, true),
                        decimals,
                        interval: c.clopper_pearson.map(|[lo, hi]| [display(metric, lo), display(metric, hi)]),
                        witnesses: c
                            .confirmed
                            .zip(c.broken)
                            .map(|(k, b)| format!("{} {k}/{b}", if c.unconfirmed() { "✗" } else { "✓" })),
                        unconfirmed: c.unconfirmed(),
                        marks: c.indicators.iter().filter(|(_, &n)| n > 0).map(|(i, n)| format!("{i} {n}")).collect(),
                    }
                }
                None => GridCell {
                    value: None,
                    std: None,
                    n: 0,
                    published: None,
                    verdict: String::new(),
                    mark: String::new(),
                    best: false,
                    published_best: false,
                    decimals,
                    interval: None,
                    witnesses: None,
                    unconfirmed: false,
                    marks: Vec::new(),
                },
            };
            row.cells.push(cell);
        }
        rows.push(row);
    }
    let has_published = cells.iter().any(|c| c.published.is_some());
    let costs = metrics
        .iter()
        .filter_map(|m| {
            let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let forward = mean(cells.iter().filter(|c| &c.metric == m).filter_map(|c| c.forward_passes).collect())?;
            let backward = mean(cells.iter().filter(|c| &c.metric == m).filter_map(|c| c.backward_passes).collect());
            Some(match backward {
                Some(b) => format!("{} {forward:.0} fwd / {b:.0} bwd", m.header()),
                None => format!("{} {forward:.0}", m.header()),
            })
        })
        .collect();
    let reproduced = cells.iter().any(|c| c.verdict != Verdict::NotRun);
    let mut notes = Vec::new();
    match tol.paper_eps.get(&dataset) {
        None if reproduced => notes.push(format!(
            "The paper evaluates no {dataset} models, so no published number is shown: this grid follows the layout \
             of the paper's Table {table} (CIFAR-10, eps 8/255), a different protocol."
        )),
        Some(_) if reproduced && !has_published => notes.push(format!(
            "These {dataset} evaluations do not use the paper's protocol (eps or table layout differ), so published \
             numbers are not shown beside them."
        )),
        _ => {}
    }
    if cells.iter().any(|c| c.verdict == Verdict::NotRun) {
        notes.push("Rows or cells marked – are published but not in the registry (verdict `not run`).".into());
    }
    if cells.iter().any(|c| !c.indicators.is_empty()) {
        notes.push(
            "⚑ name n: n of the examples the attack left robust trip that indicator of attack failure (Pintor et al. \
             2022); see the attack diagnostics."
                .into(),
        );
    }
    if cells.iter().any(|c| c.verdict == Verdict::Flagged) {
        notes.push(
            "⚠ FLAGGED: an evaluation behind the cell tripped a sanity check (see the row's flags); its number may \
             overstate robustness."
                .into(),
        );
    }
    let what = match table {
        PaperTable::III => "robust accuracy (%) under SPSA",
        PaperTable::IV => "RayS: average decision-boundary distance and robust accuracy (%)",
        PaperTable::I => "InfoAT with MINE: natural and PGD-20 accuracy (%)",
        PaperTable::II | PaperTable::V | PaperTable::VI => "clean and white-box robust accuracy (%)",
    };
    let caption = format!("Table {table}-style: {what}, {dataset}, {arch}");
    Grid {
        table,
        dataset,
        arch,
        protocol,
        caption,
        headers: metrics.iter().map(|m| m.header().to_string()).collect(),
        metrics,
        rows,
        environments: environments.into_iter().collect(),
        notes,
        has_published,
        costs,
    }
}
