//! A report: the grids built from the registry, and its renderings (issue 6 "Rendering") in
//! Markdown, LaTeX (booktabs), CSV, JSON and a standalone HTML page with SVG plots. Every
//! table goes through a tera template embedded in the binary; CSV and JSON are serialisations
//! of the cells.

use std::collections::BTreeMap;

use infoat_registry::{AttackId, EvalRecord, Metric, PaperTable, PublishedRecord, RunRecord, VerificationRecord};
use serde::Serialize;

use crate::aggregate::{cells, Cell, Tolerances, Verdict};
use crate::grid::{grids, Grid};
use crate::observations::collect;
use crate::plots;
use crate::templates::render_template;
use crate::{Error, Result};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// GitHub-flavoured Markdown.
    Md,
    /// LaTeX with booktabs.
    Tex,
    /// CSV, one line per cell.
    Csv,
    /// JSON, a list of cells.
    Json,
    /// A standalone HTML page with SVG plots.
    Html,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] = [Format::Md, Format::Tex, Format::Csv, Format::Json, Format::Html];

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Tex => "tex",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Html => "html",
        }
    }

    /// Parses an extension-like name (`md`, `tex`, `csv`, `json`, `html`).
    pub fn parse(s: &str) -> Result<Format> {
        s.parse().map_err(Error::Invalid)
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    /// The extension-like name, as `--format` takes it.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.extension() == s.trim())
            .ok_or_else(|| format!("unknown report format '{s}': expected one of md, tex, csv, json, html"))
    }
}

/// Which records a report covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these paper tables; all when empty.
    pub tables: Vec<PaperTable>,
    /// Only runs with these config hashes (full hex); all when `None`.
    pub configs: Option<Vec<String>>,
    /// Only evaluations with these key hashes (full hex); all when `None`.
    pub evals: Option<Vec<String>>,
    /// Add `not run` cells for published numbers nothing reproduces (of the selected tables).
    pub include_not_run: bool,
}

/// One grid with its plots.
#[derive(Debug, Clone, Serialize)]
pub struct GridView {
    /// The table.
    pub grid: Grid,
    /// Bar chart SVG (empty when there is nothing to plot).
    pub bars: String,
    /// Training-curve SVGs.
    pub curves: Vec<String>,
}

/// A rendered-ready report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Page title.
    pub title: String,
    /// One paragraph on what the report holds.
    pub summary: String,
    /// The grids with their plots.
    pub grids: Vec<GridView>,
    /// Every cell (the JSON form).
    pub cells: Vec<Cell>,
    /// The reports crate version.
    pub version: String,
    /// Figures of the paper's analyses (issue 10), when analysis records are selected
    /// ([`add_analyses`]).
    pub analyses: Vec<crate::analyses::Figure>,
    /// The paper's claims checked against the selected runs ([`add_claims`]).
    pub claims: Option<ClaimsSection>,
    /// The attacks' diagnostics of the evaluations behind the cells (issue 22).
    pub diagnostics: Vec<crate::diagnostics::EvalDiagnosticsView>,
}

/// The claims section of a report (issue 21).
#[derive(Debug, Clone, Serialize)]
pub struct ClaimsSection {
    /// The level of every test.
    pub alpha: f64,
    /// Each claim with its verdict and comparisons.
    pub claims: Vec<crate::claims::ClaimResult>,
}

/// Builds the report of `selection` from registry records (no witness checks: see
/// [`build_verified`]).
pub fn build(
    title: &str,
    runs: &[RunRecord],
    evals: &[EvalRecord],
    published: &[PublishedRecord],
    selection: &Selection,
) -> Result<Report> {
    build_verified(title, runs, evals, &[], published, selection)
}

/// Builds the report of `selection` from registry records; every robust accuracy carries the
/// confirmed witness counts of the latest of `verifications` that checked its evaluation.
pub fn build_verified(
    title: &str,
    runs: &[RunRecord],
    evals: &[EvalRecord],
    verifications: &[VerificationRecord],
    published: &[PublishedRecord],
    selection: &Selection,
) -> Result<Report> {
    let tol = Tolerances::embedded()?;
    let mut obs = collect(runs, evals, verifications)?;
    if let Some(keep) = &selection.configs {
        obs.retain(|o| keep.contains(&o.config_hash));
    }
    if let Some(keep) = &selection.evals {
        obs.retain(|o| keep.contains(&o.eval_key));
    }
    if !selection.tables.is_empty() {
        obs.retain(|o| selection.tables.contains(&o.table));
    }
    let not_run_tables: Vec<PaperTable> = if selection.include_not_run {
        if selection.tables.is_empty() {
            PaperTable::ALL.to_vec()
        } else {
            selection.tables.clone()
        }
    } else {
        Vec::new()
    };
    let cells = cells(&obs, published, &tol, &not_run_tables)?;
    let diagnostics = crate::diagnostics::collect(&obs, evals)?;
    let runs_by_hash: BTreeMap<String, &RunRecord> =
        runs.iter().filter(|r| r.is_complete()).map(|r| (r.config_hash.to_hex(), r)).collect();
    let mut views = Vec::new();
    for grid in grids(&cells, &tol) {
        let bars = match plots::accuracy_bars(&grid) {
            Some(chart) => render_template("bars.svg", "p", &chart)?,
            None => String::new(),
        };
        let mut curves = sensitivity_curves(&grid, &obs, &runs_by_hash)?;
        curves.extend(ablation_bars(&grid, &obs, &runs_by_hash)?);
        curves.extend(training_curves(&grid, &runs_by_hash)?);
        views.push(GridView { grid, bars, curves });
    }
    let n_runs: usize = obs.iter().map(|o| &o.config_hash).collect::<std::collections::BTreeSet<_>>().len();
    let counts = |v: Verdict| cells.iter().filter(|c| c.verdict == v).count();
    let summary = format!(
        "{} cells from {n_runs} trained models: {} reproduced, {} below, {} above, {} flagged, {} without a published \
         counterpart under the same protocol, {} published but not run. Values are accuracies in percent (mean over \
         seeds, ± standard deviation when there are several); “paper” is the published number.",
        cells.len(),
        counts(Verdict::Reproduced),
        counts(Verdict::Below),
        counts(Verdict::Above),
        counts(Verdict::Flagged),
        counts(Verdict::Unpublished),
        counts(Verdict::NotRun),
    );
    let mut summary = summary;
    if cells.iter().any(|c| c.clopper_pearson.is_some()) {
        summary.push_str(
            " A value from one evaluation carries its exact 95 % (Clopper–Pearson) interval over the examples behind it, \
             in small type.",
        );
    }
    if cells.iter().any(|c| c.confirmed.is_some()) {
        let marked = cells.iter().filter(|c| c.unconfirmed()).count();
        summary.push_str(&format!(
            " ✓ k/b beside a robust accuracy: of the b examples the attack broke, k have a witness that `infoat \
             verify-evidence` confirmed with the model's forward pass alone (inside the eps-ball, in [0, 1], \
             misclassified); ✗ marks the {marked} cells where some broken example has none."
        ));
    }
    if !diagnostics.is_empty() {
        let marked: usize = diagnostics.iter().map(|d| d.attacks.iter().filter(|a| a.marked).count()).sum();
        summary.push_str(&format!(
            " The attacks of {} evaluations examined themselves (indicators of attack failure, planted-vulnerability \
             self-tests, robustness curves; see the attack diagnostics): {marked} attack results are marked.",
            diagnostics.len()
        ));
    }
    Ok(Report {
        title: title.to_string(),
        summary,
        grids: views,
        cells,
        version: env!("CARGO_PKG_VERSION").into(),
        analyses: Vec::new(),
        claims: None,
        diagnostics,
    })
}

/// Fig. 2-style sensitivity curves: where InfoAT runs of a grid differ only in `lambda` (or
/// only in `beta`) and at least three values are in the registry, natural and PGD-20 accuracy
/// (mean over seeds) against the parameter.
fn sensitivity_curves(
    grid: &Grid,
    obs: &[crate::observations::Observation],
    runs: &BTreeMap<String, &RunRecord>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (param, symbol) in [("lambda", "λ"), ("beta", "β")] {
        // (rest-of-recipe hash) -> metric -> parameter value (as bits, for ordering) -> values
        type Sweep = BTreeMap<String, BTreeMap<Metric, BTreeMap<u64, Vec<f64>>>>;
        let mut sweeps: Sweep = BTreeMap::new();
        for o in obs.iter().filter(|o| {
            o.table == grid.table
                && o.dataset == grid.dataset
                && o.arch == grid.arch
                && o.protocol == grid.protocol
                && matches!(o.metric, Metric::Natural | Metric::Attack(AttackId::Pgd20))
        }) {
            let Some(run) = runs.get(&o.config_hash) else { continue };
            let c = &run.config;
            if infoat_registry::MethodKind::of_config(c) != Some(infoat_registry::MethodKind::Infoat) {
                continue;
            }
            let Some(v) = c.pointer(&format!("/method/{param}")).and_then(serde_json::Value::as_f64) else { continue };
            let mut rest = c.clone();
            if let Some(m) = rest.get_mut("method").and_then(serde_json::Value::as_object_mut) {
                m.remove(param);
            }
            let key = crate::observations::recipe_hash(&rest)?;
            sweeps.entry(key).or_default().entry(o.metric).or_default().entry(v.to_bits()).or_default().push(o.value);
        }
        for metrics in sweeps.values() {
            let points = |m: Metric| -> Vec<(f64, f64)> {
                let mut p: Vec<(f64, f64)> = metrics
                    .get(&m)
                    .map(|by| {
                        by.iter()
                            .map(|(k, v)| (f64::from_bits(*k), 100.0 * v.iter().sum::<f64>() / v.len() as f64))
                            .collect()
                    })
                    .unwrap_or_default();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                p
            };
            let (pgd, nat) = (points(Metric::Attack(AttackId::Pgd20)), points(Metric::Natural));
            if pgd.len() < 3 {
                continue;
            }
            let title = format!("Sensitivity to {symbol} (Fig. 2): accuracy (%), {} {}", grid.dataset, grid.arch);
            let series = vec![("PGD-20".to_string(), pgd), ("Natural".to_string(), nat)];
            if let Some(chart) = plots::line_chart(&title, symbol, &series) {
                out.push(render_template("lines.svg", "p", &chart)?);
            }
        }
    }
    Ok(out)
}

/// Fig. 3-style ablation bars: where InfoAT runs of a grid differ only in one design choice —
/// the weighting (`weight`), the `divergence`, the outer `regularizer` or the MI estimator
/// (`mi_estimator`: entropy vs MINE at a layer) — and at least two choices are in the
/// registry, PGD-20 accuracy (mean over seeds) per choice.
fn ablation_bars(
    grid: &Grid,
    obs: &[crate::observations::Observation],
    runs: &BTreeMap<String, &RunRecord>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (field, what) in [
        ("weight", "weighting"),
        ("divergence", "divergence"),
        ("regularizer", "regulariser"),
        ("mi_estimator", "MI estimator"),
    ] {
        // (rest-of-recipe hash) -> choice -> PGD-20 values
        let mut sweeps: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
        for o in obs.iter().filter(|o| {
            o.table == grid.table
                && o.dataset == grid.dataset
                && o.arch == grid.arch
                && o.protocol == grid.protocol
                && o.metric == Metric::Attack(AttackId::Pgd20)
        }) {
            let Some(run) = runs.get(&o.config_hash) else { continue };
            let c = &run.config;
            if infoat_registry::MethodKind::of_config(c) != Some(infoat_registry::MethodKind::Infoat) {
                continue;
            }
            let Some(choice) = c.pointer(&format!("/method/{field}")) else { continue };
            let label = match choice {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(m) => match (m.get("kind").and_then(|k| k.as_str()), m.get("layer")) {
                    (Some(kind), Some(layer)) => format!("{kind} #{layer}"),
                    (Some(kind), None) => kind.to_string(),
                    _ => choice.to_string(),
                },
                other => other.to_string(),
            };
            let mut rest = c.clone();
            if let Some(m) = rest.get_mut("method").and_then(serde_json::Value::as_object_mut) {
                m.remove(field);
            }
            let key = crate::observations::recipe_hash(&rest)?;
            sweeps.entry(key).or_default().entry(label).or_default().push(o.value);
        }
        for choices in sweeps.values().filter(|c| c.len() >= 2) {
            let items: Vec<(String, f64)> = choices
                .iter()
                .map(|(label, v)| (label.clone(), 100.0 * v.iter().sum::<f64>() / v.len() as f64))
                .collect();
            let title = format!("Ablation of the {what} (Fig. 3): PGD-20 (%), {} {}", grid.dataset, grid.arch);
            if let Some(chart) = plots::value_bars(&title, &items) {
                out.push(render_template("bars.svg", "p", &chart)?);
            }
        }
    }
    Ok(out)
}

fn training_curves(grid: &Grid, runs: &BTreeMap<String, &RunRecord>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (metric, title) in [("loss", "Training loss per epoch"), ("train_accuracy", "Training accuracy per epoch")] {
        let mut series = Vec::new();
        for row in &grid.rows {
            for (k, h) in row.config_hashes.iter().enumerate() {
                let Some(run) = runs.get(h) else { continue };
                let pts: Vec<(f64, f64)> =
                    run.epochs.iter().filter_map(|e| e.metrics.get(metric).map(|v| (e.epoch as f64, *v))).collect();
                if !pts.is_empty() {
                    let label = if row.config_hashes.len() > 1 {
                        format!("{} #{}", row.method, k + 1)
                    } else {
                        row.method.clone()
                    };
                    series.push((label, pts));
                }
            }
        }
        if let Some(chart) = plots::line_chart(title, "epoch", &series) {
            out.push(render_template("lines.svg", "p", &chart)?);
        }
    }
    Ok(out)
}

/// Adds the figures of the analysis records among `analyses` whose run the selection keeps
/// (every one without a config filter; none when the selection names tables), each labelled
/// with its run's method.
pub fn add_analyses(
    report: &mut Report,
    analyses: &[infoat_registry::AnalysisRecord],
    runs: &[RunRecord],
    selection: &Selection,
) -> Result<()> {
    if !selection.tables.is_empty() {
        return Ok(());
    }
    let kept: Vec<_> = analyses
        .iter()
        .filter(|a| match (&selection.configs, a.config_hash) {
            (Some(keep), Some(h)) => keep.contains(&h.to_hex()),
            (Some(_), None) => false,
            (None, _) => true,
        })
        .cloned()
        .collect();
    report.analyses = crate::analyses::figures(&kept, &|a| crate::analyses::run_method(a, runs))?;
    Ok(())
}

/// Checks `claims` against the runs and evaluations `selection` keeps, with their per-example
/// flags from `flags`, and adds the claims section to `report`.
pub fn add_claims(
    report: &mut Report,
    claims: &crate::claims::ClaimFile,
    runs: &[RunRecord],
    evals: &[EvalRecord],
    flags: &crate::compare::FlagSource<'_>,
    selection: &Selection,
) -> Result<()> {
    let runs: Vec<RunRecord> = runs
        .iter()
        .filter(|r| selection.configs.as_ref().is_none_or(|keep| keep.contains(&r.config_hash.to_hex())))
        .cloned()
        .collect();
    let mut kept = Vec::new();
    for e in evals {
        let key = e.key.hash()?.to_hex();
        if selection.evals.as_ref().is_none_or(|keep| keep.contains(&key)) {
            kept.push(e.clone());
        }
    }
    let results = crate::claims::check(claims, &runs, &kept, flags)?;
    report.claims = Some(ClaimsSection { alpha: crate::claims::ALPHA, claims: results });
    Ok(())
}

/// The attack diagnostics as JSON (`<stem>.diagnostics.json`; the `json` format's cells carry
/// the indicator counts and self-tests of each attack cell); `None` when no evaluation behind
/// the report ran them.
pub fn render_diagnostics_json(report: &Report) -> Result<Option<String>> {
    if report.diagnostics.is_empty() {
        return Ok(None);
    }
    // The charts are SVG for the HTML report; the JSON keeps the numbers.
    let evaluations = report
        .diagnostics
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("charts");
            }
            // Per attack, the indicators as fields named after them (those that apply) and the
            // self-tests by name (those that ran), as the cells' JSON has them.
            for a in v.get_mut("attacks").and_then(|a| a.as_array_mut()).into_iter().flatten() {
                let Some(a) = a.as_object_mut() else { continue };
                let by_name =
                    |list: Option<serde_json::Value>, field: &str| -> serde_json::Map<String, serde_json::Value> {
                        list.and_then(|l| l.as_array().cloned())
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|x| {
                                let value = x.get(field).filter(|v| !v.is_null())?.clone();
                                Some((x.get("name")?.as_str()?.to_string(), value))
                            })
                            .collect()
                    };
                let indicators = by_name(a.remove("indicators"), "count");
                let tests = by_name(a.remove("self_tests"), "result");
                a.insert("indicators".into(), indicators.into());
                a.insert("self_tests".into(), tests.into());
            }
            Ok(v)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(serde_json::to_string_pretty(&serde_json::json!({ "evaluations": evaluations }))? + "\n"))
}

/// The claims section as JSON (the `json` format's cells list stays as it was).
pub fn render_claims_json(report: &Report) -> Result<Option<String>> {
    report.claims.as_ref().map(|c| Ok(serde_json::to_string_pretty(c)? + "\n")).transpose()
}

/// The Markdown summary of a regression check (`infoat regress`, issue 8).
pub fn render_regress(r: &crate::regress::RegressReport) -> Result<String> {
    render_template("regress.md", "r", r)
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format) -> Result<String> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(&report.cells)? + "\n"),
        Format::Csv => csv(&report.cells),
        Format::Html => render_template("report.html", "report", report),
        Format::Md | Format::Tex => {
            let name = if format == Format::Md { "grid.md" } else { "grid.tex" };
            let mut parts = Vec::new();
            if format == Format::Md {
                parts.push(format!("# {}\n\n{}\n", report.title, report.summary));
            }
            for g in &report.grids {
                parts.push(render_template(name, "grid", &g.grid)?);
            }
            if format == Format::Md && !report.diagnostics.is_empty() {
                parts.push(render_template("diagnostics.md", "d", &report.diagnostics)?);
            }
            if let (Format::Md, Some(claims)) = (format, &report.claims) {
                parts.push(render_template("claims.md", "s", claims)?);
            }
            Ok(parts.join("\n"))
        }
    }
}

fn csv(cells: &[Cell]) -> Result<String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record([
        "table",
        "dataset",
        "arch",
        "method",
        "metric",
        "value",
        "std",
        "n",
        "ci95",
        "examples",
        "cp_low",
        "cp_high",
        "broken",
        "confirmed",
        "published",
        "delta",
        "verdict",
        "protocol",
        "config_hashes",
        "checkpoint_hashes",
        "flags",
        "backward_passes",
        "indicators",
        "self_tests",
    ])?;
    let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    for c in cells {
        w.write_record([
            c.table.name().to_string(),
            c.dataset.clone(),
            c.arch.clone(),
            c.method.clone(),
            c.metric.name().to_string(),
            num(c.value),
            num(c.std),
            c.n.to_string(),
            num(c.ci95),
            c.examples.map(|n| n.to_string()).unwrap_or_default(),
            num(c.clopper_pearson.map(|i| i[0])),
            num(c.clopper_pearson.map(|i| i[1])),
            c.broken.map(|n| n.to_string()).unwrap_or_default(),
            c.confirmed.map(|n| n.to_string()).unwrap_or_default(),
            num(c.published),
            num(c.delta),
            c.verdict.label().to_string(),
            c.protocol.clone(),
            c.config_hashes.join(";"),
            c.checkpoint_hashes.join(";"),
            c.flags.join(";"),
            num(c.backward_passes),
            c.indicators.iter().map(|(i, n)| format!("{i} {n}")).collect::<Vec<_>>().join(";"),
            c.self_tests.iter().map(|(t, r)| format!("{t} {}/{}", r.found, r.planted)).collect::<Vec<_>>().join(";"),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Invalid(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Invalid(format!("csv: {e}")))
}

/// Renders a comparison of a candidate with the registry in `format`.
pub fn render_comparison(c: &crate::compare::Comparison, format: Format) -> Result<String> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(c)? + "\n"),
        Format::Md => render_template("compare.md", "c", c),
        Format::Tex => render_template("compare.tex", "c", c),
        Format::Html => render_template("compare.html", "c", c),
        Format::Csv => {
            let mut w = ::csv::Writer::from_writer(Vec::new());
            w.write_record([
                "model",
                "arch",
                "candidate",
                "metric",
                "value",
                "rank",
                "diff",
                "significant",
                "model_hashes",
            ])?;
            for row in &c.rows {
                for (m, cell) in c.metrics.iter().zip(&row.cells) {
                    let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
                    w.write_record([
                        row.entry.label.clone(),
                        row.entry.arch.clone(),
                        row.entry.candidate.to_string(),
                        m.name().to_string(),
                        num(cell.value),
                        cell.rank.map(|r| r.to_string()).unwrap_or_default(),
                        num(cell.diff),
                        cell.significant.to_string(),
                        row.entry.model_hashes.join(";"),
                    ])?;
                }
            }
            let bytes = w.into_inner().map_err(|e| Error::Invalid(format!("csv: {e}")))?;
            String::from_utf8(bytes).map_err(|e| Error::Invalid(format!("csv: {e}")))
        }
    }
}
