//! The attacks' self-examination in reports (issue 22): per evaluation behind a report, each
//! attack's indicators of attack failure (Pintor et al., NeurIPS 2022), its results on the
//! planted-vulnerability self-tests (after Zimmermann et al., NeurIPS 2022), what it and its
//! diagnostics cost in model passes, and the robustness curves (accuracy against eps and against
//! the attack budget; Carlini et al., arXiv:1902.06705 §5.3), drawn in the HTML report.

use std::collections::BTreeMap;

use infoat_registry::{
    AttackId, ContentHash, CurveAxis, EvalRecord, Indicator, Metric, PlantedTest, SanityCheck, SelfTestResult,
};
use serde::Serialize;

use crate::observations::Observation;
use crate::plots::line_chart;
use crate::templates::render_svg;
use crate::Result;

/// One indicator's cell in an attack's row: its count, or `None` where it does not apply.
#[derive(Debug, Clone, Serialize)]
pub struct IndicatorCell {
    /// The indicator's name.
    pub name: &'static str,
    /// The count over the examples the attack left robust.
    pub count: Option<usize>,
}

/// One self-test's cell in an attack's row.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTestCell {
    /// The test's name.
    pub name: &'static str,
    /// What the attack found; `None` when the test did not run it.
    pub result: Option<SelfTestResult>,
    /// Found / planted in percent.
    pub percent: Option<f64>,
    /// Expected and missed: the attack's cells are flagged.
    pub failed: bool,
}

/// One attack of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct AttackRow {
    /// The attack's column header.
    pub attack: String,
    /// Examples left robust, of those attacked.
    pub robust: usize,
    /// Examples attacked.
    pub total: usize,
    /// The indicators, in [`Indicator::ALL`]'s order.
    pub indicators: Vec<IndicatorCell>,
    /// How many robust examples the unconstrained rerun attacked.
    pub unconstrained_probed: usize,
    /// The self-tests, in [`PlantedTest::ALL`]'s order.
    pub self_tests: Vec<SelfTestCell>,
    /// The attack's forward and backward passes per attacked example.
    pub forward_passes: Option<f64>,
    /// Backward passes per attacked example.
    pub backward_passes: Option<f64>,
    /// What its diagnostics cost, per attacked example (forward, backward).
    pub diagnostics_passes: [f64; 2],
    /// Some indicator tripped or an expected self-test was missed.
    pub marked: bool,
}

/// One evaluation's diagnostics.
#[derive(Debug, Clone, Serialize)]
pub struct EvalDiagnosticsView {
    /// The row label of the model (method, as the tables print it).
    pub method: String,
    /// Dataset and architecture labels.
    pub dataset: String,
    /// Architecture label.
    pub arch: String,
    /// The radius.
    pub eps: f64,
    /// The evaluation's key hash.
    pub eval_key: String,
    /// The diagnostics' version.
    pub version: u32,
    /// Examples the self-tests planted (per test, the plantable ones may be fewer).
    pub self_test_examples: usize,
    /// Examples the curves were measured on.
    pub curve_examples: usize,
    /// Seconds the diagnostics took.
    pub seconds: f64,
    /// Forward and backward passes of all diagnostics, per attacked example.
    pub passes: [f64; 2],
    /// Each attack.
    pub attacks: Vec<AttackRow>,
    /// The curves as recorded: `(attack, axis, [(x, correct, total)])`.
    pub curves: Vec<CurveView>,
    /// Sanity flags the curves tripped (`check: message`).
    pub curve_flags: Vec<String>,
    /// The eps and budget charts (SVG) for the HTML report.
    pub charts: Vec<String>,
}

/// A curve as a report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CurveView {
    /// The attack's column header.
    pub attack: String,
    /// `eps` or `iterations`.
    pub axis: CurveAxis,
    /// `(x, robust accuracy in %)`, in increasing x.
    pub points: Vec<(f64, f64)>,
    /// `correct/total` at each point.
    pub counts: Vec<String>,
}

fn header(attack: &str) -> String {
    attack.parse::<AttackId>().map_or_else(|_| attack.to_string(), |a| Metric::Attack(a).header().to_string())
}

/// The diagnostics of the evaluations behind `obs` (each once, labelled by its first
/// observation), for those that ran them; `evals` are searched for their records (the latest
/// attempt of each key, as the observations use).
pub fn collect(obs: &[Observation], evals: &[EvalRecord]) -> Result<Vec<EvalDiagnosticsView>> {
    let mut wanted: BTreeMap<String, &Observation> = BTreeMap::new();
    for o in obs {
        wanted.entry(o.eval_key.clone()).or_insert(o);
    }
    let mut latest: BTreeMap<ContentHash, &EvalRecord> = BTreeMap::new();
    for e in evals {
        let k = e.key.hash()?;
        if wanted.contains_key(&k.to_hex()) && latest.get(&k).is_none_or(|old| old.attempt < e.attempt) {
            latest.insert(k, e);
        }
    }
    let mut out = Vec::new();
    for (key, e) in latest {
        let Some(d) = &e.diagnostics else { continue };
        let o = wanted[&key.to_hex()];
        let mut attacks = Vec::new();
        for (name, r) in &e.attacks {
            let Some(a) = &r.diagnostics else { continue };
            let indicators = Indicator::ALL
                .iter()
                .map(|i| IndicatorCell { name: i.name(), count: a.indicators.get(i).copied() })
                .collect();
            let self_tests: Vec<SelfTestCell> = PlantedTest::ALL
                .iter()
                .map(|t| {
                    let result = a.self_tests.get(t).copied();
                    SelfTestCell {
                        name: t.name(),
                        result,
                        percent: result.map(|r| 100.0 * r.fraction()),
                        failed: result.is_some_and(|r| r.expected && !r.passed()),
                    }
                })
                .collect();
            let marked = !a.tripped().is_empty() || self_tests.iter().any(|s| s.failed);
            let rank = name.parse::<Metric>().map_or(usize::MAX, |m| m.rank());
            attacks.push((
                rank,
                AttackRow {
                    attack: header(name),
                    robust: r.correct,
                    total: r.total,
                    indicators,
                    unconstrained_probed: a.unconstrained_probed,
                    self_tests,
                    forward_passes: r.forward_passes,
                    backward_passes: r.backward_passes,
                    diagnostics_passes: [a.forward_passes, a.backward_passes],
                    marked,
                },
            ));
        }
        attacks.sort_by_key(|(rank, a)| (*rank, a.attack.clone()));
        let attacks: Vec<AttackRow> = attacks.into_iter().map(|(_, a)| a).collect();
        let curves: Vec<CurveView> = d
            .curves
            .iter()
            .map(|c| CurveView {
                attack: Metric::Attack(c.attack).header().to_string(),
                axis: c.axis,
                points: c.points.iter().map(|p| (p.x, 100.0 * p.accuracy())).collect(),
                counts: c.points.iter().map(|p| format!("{}/{}", p.correct, p.total)).collect(),
            })
            .collect();
        let mut charts = Vec::new();
        for (axis, title, xlabel) in [
            (CurveAxis::Eps, "robust % against eps", "eps"),
            (CurveAxis::Iterations, "APGD-CE against its budget", "iterations × restarts"),
        ] {
            let series: Vec<(String, Vec<(f64, f64)>)> =
                curves.iter().filter(|c| c.axis == axis).map(|c| (c.attack.clone(), c.points.clone())).collect();
            if let Some(chart) = line_chart(&format!("{}: {title}", o.method), xlabel, &series) {
                charts.push(render_svg("lines.svg", &chart)?);
            }
        }
        let curve_checks =
            [SanityCheck::EpsCurveNotMonotone, SanityCheck::EpsCurveNotZero, SanityCheck::BudgetNotConverged];
        let curve_flags = e
            .sanity
            .iter()
            .filter(|f| curve_checks.contains(&f.check))
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect();
        out.push(EvalDiagnosticsView {
            method: o.method.clone(),
            dataset: o.dataset.clone(),
            arch: o.arch.clone(),
            eps: o.eps,
            eval_key: key.to_hex(),
            version: d.version,
            self_test_examples: d.self_test_examples,
            curve_examples: d.curve_examples,
            seconds: d.seconds,
            passes: [d.forward_passes, d.backward_passes],
            attacks,
            curves,
            curve_flags,
            charts,
        });
    }
    out.sort_by(|a, b| {
        (&a.dataset, &a.arch, &a.method, &a.eval_key).cmp(&(&b.dataset, &b.arch, &b.method, &b.eval_key))
    });
    Ok(out)
}
