//! The claims section (issue 21) rendered from fixture records with per-example flags
//! (`fixtures/reports/claims-records.jsonl`, written by `fixtures/reports/generate_claims.py`):
//! snapshot tests of the Markdown, HTML and JSON, and the verdicts they rest on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use infoat_registry::{EvalFlags, EvalRecord, PaperTable, RunRecord};
use infoat_reports::claims::{ClaimFile, ClaimVerdict};
use infoat_reports::render::{add_claims, render_claims_json};
use infoat_reports::{build, render, Format, Report, Selection};
use serde_json::Value;

fn records() -> (Vec<RunRecord>, Vec<EvalRecord>, BTreeMap<String, EvalFlags>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reports/claims-records.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let (mut runs, mut evals, mut flags) = (Vec::new(), Vec::new(), BTreeMap::new());
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["kind"].as_str().unwrap() {
            "run" => runs.push(serde_json::from_value(v["record"].clone()).unwrap()),
            "eval" => evals.push(serde_json::from_value(v["record"].clone()).unwrap()),
            "flags" => {
                // The generator writes an evaluation's flags right after it.
                let e: &EvalRecord = evals.last().unwrap();
                flags.insert(e.key.hash().unwrap().to_hex(), serde_json::from_value(v["record"].clone()).unwrap());
            }
            other => panic!("unexpected record kind {other}"),
        }
    }
    (runs, evals, flags)
}

fn report() -> Report {
    let (runs, evals, flags) = records();
    let selection = Selection { tables: vec![PaperTable::II], ..Selection::default() };
    let mut r = build("Claims fixture", &runs, &evals, &[], &selection).unwrap();
    let source = |e: &EvalRecord| Ok(flags.get(&e.key.hash()?.to_hex()).cloned());
    add_claims(&mut r, &ClaimFile::embedded().unwrap(), &runs, &evals, &source, &selection).unwrap();
    r
}

fn verdict(r: &Report, id: &str) -> ClaimVerdict {
    r.claims.as_ref().unwrap().claims.iter().find(|c| c.claim.id == id).unwrap().verdict
}

#[test]
fn every_verdict_comes_from_the_paired_flags() {
    let r = report();
    let claims = &r.claims.as_ref().unwrap().claims;
    // InfoAT beats GanDef, TRADES and MART+ but not AT and MART significantly.
    assert_eq!(verdict(&r, "infoat_most_robust_white_box"), ClaimVerdict::NotSignificant);
    let best = claims.iter().find(|c| c.claim.id == "infoat_most_robust_white_box").unwrap();
    assert_eq!(best.comparisons.len(), 10, "5 baselines x 2 attacks");
    let vs = |worse: &str| {
        best.comparisons.iter().find(|c| c.claimed_worse == worse && c.attack_header == "PGD-20").unwrap()
    };
    assert_eq!(vs("TRADES").verdict, ClaimVerdict::Supported);
    assert_eq!(vs("AT").verdict, ClaimVerdict::NotSignificant);
    assert_eq!((vs("AT").pairs, vs("AT").examples), (3, 3000), "three seed pairs of 1,000 examples");
    // MART+ is below MART: contradicted.
    assert_eq!(verdict(&r, "mart_plus_improves_mart"), ClaimVerdict::Contradicted);
    // Entropy over MINE: one seed pair, supported.
    assert_eq!(verdict(&r, "entropy_beats_mine"), ClaimVerdict::Supported);
    // MSE over KL supported; JS and CE have no runs and are listed as untested.
    let mse = claims.iter().find(|c| c.claim.id == "mse_beats_other_divergences").unwrap();
    assert_eq!(mse.verdict, ClaimVerdict::Supported);
    assert_eq!(mse.untested, ["InfoAT (JS)", "InfoAT (CE)"]);
    // Black box: InfoAT vs AT under SPSA on 100 images, not significant; the other methods have
    // no black-box evaluation, so they are listed as untested.
    assert_eq!(verdict(&r, "infoat_most_robust_black_box"), ClaimVerdict::NotSignificant);
    let black = claims.iter().find(|c| c.claim.id == "infoat_most_robust_black_box").unwrap();
    assert_eq!(black.untested, ["GanDef", "TRADES", "MART", "MART+"]);
    // PGD-20 breaks more than SPSA on InfoAT: no sign of gradient masking.
    assert_eq!(verdict(&r, "infoat_not_gradient_masking"), ClaimVerdict::Supported);
    let mask = claims.iter().find(|c| c.claim.id == "infoat_not_gradient_masking").unwrap();
    assert_eq!(mask.comparisons[0].attack_header, "PGD-20 vs SPSA-128");
    assert_eq!(mask.comparisons[0].examples, 300);
}

#[test]
fn without_flags_every_claim_is_not_run() {
    let (runs, evals, _) = records();
    let mut r = build("No flags", &runs, &evals, &[], &Selection::default()).unwrap();
    add_claims(&mut r, &ClaimFile::embedded().unwrap(), &runs, &evals, &|_| Ok(None), &Selection::default()).unwrap();
    assert!(r.claims.unwrap().claims.iter().all(|c| c.verdict == ClaimVerdict::NotRun));
}

#[test]
fn a_selection_limits_the_runs_a_claim_uses() {
    let (runs, evals, flags) = records();
    let mart: Vec<String> = runs
        .iter()
        .filter(|r| r.config["method"]["kind"] == "mart" || r.config["method"]["kind"] == "mart_plus")
        .map(|r| r.config_hash.to_hex())
        .collect();
    let selection = Selection { configs: Some(mart), ..Selection::default() };
    let mut r = build("MART only", &runs, &evals, &[], &selection).unwrap();
    let source = |e: &EvalRecord| Ok(flags.get(&e.key.hash()?.to_hex()).cloned());
    add_claims(&mut r, &ClaimFile::embedded().unwrap(), &runs, &evals, &source, &selection).unwrap();
    assert_eq!(verdict(&r, "mart_plus_improves_mart"), ClaimVerdict::Contradicted);
    assert_eq!(verdict(&r, "infoat_most_robust_white_box"), ClaimVerdict::NotRun);
}

#[test]
fn claims_render_as_markdown_html_and_json() {
    let r = report();
    let md = render(&r, Format::Md).unwrap();
    let section = &md[md.find("## The paper's claims, checked").expect("a claims section")..];
    insta::assert_snapshot!("claims.md", section);
    let html = render(&r, Format::Html).unwrap();
    let start = html.find("<h2 id=\"claims\">").expect("a claims section");
    let end = html.find("<p class=\"provenance\">Generated by").unwrap();
    insta::assert_snapshot!("claims.html", &html[start..end]);
    let json = render_claims_json(&r).unwrap().unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["alpha"], 0.05);
    assert_eq!(v["claims"][1]["verdict"], "contradicted");
    insta::assert_snapshot!("claims.json", json);
}
