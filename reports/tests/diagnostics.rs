//! The attack diagnostics (issue 22) in reports, rendered from real records
//! (`fixtures/reports/diagnostics-records.jsonl`: the quickstart's natural and AT SmallCNNs, their
//! Table II attacks on the first 50 MNIST test images, exported from the registry of
//! `infoat eval --limit 50 --force` with the diagnostics of this issue): snapshots of the
//! Markdown section and the JSON, the marks and flags they put on the grid's cells.

use infoat_registry::{EvalRecord, PaperTable, PlantedTest, RunRecord};
use infoat_reports::render::render_diagnostics_json;
use infoat_reports::{build, render, Format, Report, Selection, Verdict};
use serde_json::Value;

mod common;

fn records() -> (Vec<RunRecord>, Vec<EvalRecord>) {
    common::records("diagnostics-records.jsonl")
}

fn report(evals: &[EvalRecord]) -> Report {
    let (runs, _) = records();
    let selection = Selection { tables: vec![PaperTable::II], ..Selection::default() };
    build("Diagnostics fixture", &runs, evals, &[], &selection).unwrap()
}

fn cell<'a>(r: &'a Report, method: &str, metric: &str) -> &'a infoat_reports::Cell {
    r.cells.iter().find(|c| c.method == method && c.metric.name() == metric).unwrap()
}

#[test]
fn the_diagnostics_render_as_markdown_and_json() {
    let (_, evals) = records();
    let r = report(&evals);
    assert_eq!(r.diagnostics.len(), 2, "both evaluations ran their diagnostics");
    let md = render(&r, Format::Md).unwrap();
    let section = &md[md.find("## Attack diagnostics").expect("the Markdown has the section")..];
    insta::assert_snapshot!("diagnostics.md", section);
    insta::assert_snapshot!("diagnostics.json", render_diagnostics_json(&r).unwrap().unwrap());
    let html = render(&r, Format::Html).unwrap();
    assert!(html.contains("id=\"diagnostics\""));
    assert_eq!(html.matches("against its budget</title>").count(), 2, "one budget chart per evaluation");
    assert!(html.matches("<svg").count() >= 4, "the eps and budget charts");
}

#[test]
fn tripped_indicators_mark_their_cells_in_every_format() {
    let (_, evals) = records();
    let r = report(&evals);
    // The AT model: PGD-100 returned its final iterate where an earlier one had broken two
    // examples (the paper's PGD keeps the last iterate).
    let pgd100 = cell(&r, "AT", "pgd100");
    assert!(pgd100.indicators[&infoat_registry::Indicator::SilentSuccess] > 0, "{pgd100:?}");
    let json: Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    let j = json.as_array().unwrap().iter().find(|c| c["method"] == "AT" && c["metric"] == "pgd100").unwrap();
    assert_eq!(j["silent_success"], pgd100.indicators[&infoat_registry::Indicator::SilentSuccess]);
    assert!(j["self_tests"]["binarization"]["planted"].as_u64().unwrap() > 0, "{j}");
    let mark = format!("silent_success {}", j["silent_success"]);
    for format in [Format::Md, Format::Html, Format::Csv] {
        let text = render(&r, format).unwrap();
        assert!(text.contains(&mark), "{format:?} shows {mark}");
    }
    assert!(render(&r, Format::Tex).unwrap().contains(&mark.replace('_', "\\_")), "LaTeX shows {mark}");
    // AutoAttack trips nothing.
    let aa = cell(&r, "AT", "aa");
    assert!(aa.indicators.values().all(|&n| n == 0), "{aa:?}");
}

#[test]
fn a_missed_self_test_flags_only_that_attacks_cells() {
    let (_, mut evals) = records();
    let at = evals.iter_mut().find(|e| e.attacks["pgd100"].correct > 0).unwrap();
    let t = at.attacks.get_mut("pgd100").unwrap().diagnostics.as_mut().unwrap();
    let b = t.self_tests.get_mut(&PlantedTest::Binarization).unwrap();
    b.found = b.planted / 2;
    let r = report(&evals);
    let pgd100 = cell(&r, "AT", "pgd100");
    assert_eq!(pgd100.verdict, Verdict::Flagged);
    assert!(pgd100.flags.iter().any(|f| f.starts_with("self_test: pgd100 found")), "{:?}", pgd100.flags);
    assert_ne!(cell(&r, "AT", "pgd20").verdict, Verdict::Flagged, "other attacks' cells stay as they were");
    let md = render(&r, Format::Md).unwrap();
    assert!(md.contains("✗"), "the section marks the miss");
}

#[test]
fn evaluations_without_diagnostics_have_no_section() {
    let (_, mut evals) = records();
    for e in &mut evals {
        e.diagnostics = None;
        for a in e.attacks.values_mut() {
            a.diagnostics = None;
        }
    }
    let r = report(&evals);
    assert!(r.diagnostics.is_empty());
    assert!(render_diagnostics_json(&r).unwrap().is_none());
    assert!(!render(&r, Format::Md).unwrap().contains("Attack diagnostics"));
    let json: Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    assert!(json.as_array().unwrap().iter().all(|c| c.get("silent_success").is_none()));
}
