//! RobustBench interop (issue 23): a candidate evaluated under RobustBench's protocol placed on
//! the shipped leaderboard (snapshot-tested), its model card in RobustBench's conventions, and
//! the protocol's refusals, from `fixtures/reports/robustbench-bundle/`
//! (`generate_robustbench.py`).

use infoat_registry::EvalRecord;
use infoat_reports::robustbench::{self, CardDetails};
use infoat_reports::Format;
use serde_json::Value;

mod common;

fn evals() -> Vec<EvalRecord> {
    common::records("robustbench-bundle/records.jsonl").1
}

fn full(evals: &[EvalRecord]) -> &EvalRecord {
    evals.iter().find(|e| e.key.subset == "10000/10000").unwrap()
}

#[test]
fn compare_ranks_a_conforming_candidate_among_the_leaderboard() {
    let evals = evals();
    let cand = full(&evals);
    let key = cand.key.hash().unwrap().to_hex();
    let c = infoat_reports::compare(&key[..12], &[], &evals, &|_| Ok(None)).unwrap();
    let lb = c.leaderboard.as_ref().expect("a conforming CIFAR-10 candidate is placed");
    // The rank, recomputed from the shipped cards themselves as RobustBench's leaderboard sorts
    // them (by `external` where a card has it, else `autoattack_acc`): one more than the entries
    // that beat 59.12 %.
    let file: Value =
        serde_json::from_str(include_str!("../../fixtures/published/robustbench/cifar10-Linf.json")).unwrap();
    let entries = file["entries"].as_array().unwrap();
    let better = entries
        .iter()
        .filter(|e| {
            let card = &e["card"];
            let acc = card.get("external").unwrap_or(&card["autoattack_acc"]);
            acc.as_str().unwrap().parse::<f64>().unwrap() > 59.12
        })
        .count();
    assert_eq!((lb.rank, lb.of), (better + 1, entries.len() + 1));
    assert!(lb.source.contains(file["commit"].as_str().unwrap().get(..12).unwrap()), "{}", lb.source);
    // Every difference is candidate − entry; the noise band is 1.96·√(2p(1−p)/10,000).
    let p = 0.5912f64;
    assert!((lb.noise - 100.0 * 1.96 * (2.0 * p * (1.0 - p) / 1e4).sqrt()).abs() < 1e-9);
    let gowal = lb.rows.iter().find(|r| r.model == "Gowal2020Uncovering_70_16").unwrap();
    assert!((gowal.diff.unwrap() - (59.12 - 57.14)).abs() < 1e-9 && gowal.exceeds_noise, "ranked by external");
    assert_eq!(gowal.external, Some(57.14));
    let close = lb.rows.iter().filter(|r| !r.candidate && r.diff.unwrap().abs() < 1.0).collect::<Vec<_>>();
    assert!(!close.is_empty() && close.iter().all(|r| !r.exceeds_noise), "within a point is noise");
    assert!(lb.rows.iter().any(|r| r.unreliable));
    // Ranks never decrease down the table, and the candidate's row is the one marked.
    assert!(lb.rows.windows(2).all(|w| w[0].rank <= w[1].rank));
    assert_eq!(lb.rows.iter().filter(|r| r.candidate).count(), 1);
    for format in [Format::Md, Format::Html, Format::Json] {
        let text = infoat_reports::render_comparison(&c, format).unwrap();
        assert!(text.contains("Gowal2020Uncovering_70_16") && text.contains("59.12"), "{format:?}");
        if format == Format::Md {
            insta::assert_snapshot!("leaderboard.md", text);
        }
    }
}

#[test]
fn a_departing_candidate_is_not_placed_and_says_why() {
    let evals = evals();
    let part = evals.iter().find(|e| e.key.subset == "1000/1000").unwrap();
    let c = infoat_reports::compare(&part.key.hash().unwrap().to_hex()[..12], &[], &evals, &|_| Ok(None)).unwrap();
    assert!(c.leaderboard.is_none());
    let why = c.leaderboard_departures.join(" | ");
    assert_eq!(c.leaderboard_departures.len(), 3, "{why}");
    assert!(why.contains("10000 test images") && why.contains("AutoAttack") && why.contains("8/255"), "{why}");
    let md = infoat_reports::render_comparison(&c, Format::Md).unwrap();
    assert!(md.contains("Not placed on RobustBench's leaderboard"), "{md}");
}

#[test]
fn model_cards_use_robustbench_fields_and_strings() {
    let evals = evals();
    let cand = full(&evals);
    let details = CardDetails {
        name: Some("Better Diffusion Models Further Improve Adversarial Training".into()),
        authors: Some("A. Author, B. Author".into()),
        link: Some("https://arxiv.org/abs/2302.04638".into()),
        venue: Some("ICML 2023".into()),
        reported: Some(59.2),
        additional_data: true,
    };
    let card = robustbench::model_card(cand, "Wang2023Better_WRN-28-10.pt", &details).unwrap();
    let json: Value = serde_json::to_value(&card).unwrap();
    let obj = json.as_object().unwrap();
    // Exactly the fields of robustbench.utils.ModelInfo that RobustBench's L∞ cards carry, in
    // their types: strings for eps and accuracies, a bool, an int.
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = vec![
        "link",
        "name",
        "authors",
        "additional_data",
        "number_forward_passes",
        "dataset",
        "venue",
        "architecture",
        "eps",
        "clean_acc",
        "reported",
        "autoattack_acc",
        "footnote",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(json["eps"], "8/255");
    assert_eq!(json["clean_acc"], "87.50");
    assert_eq!(json["autoattack_acc"], "59.12");
    assert_eq!(json["reported"], "59.20");
    assert_eq!(json["dataset"], "cifar10");
    assert_eq!(json["architecture"], "WideResNet-28-10");
    assert_eq!(json["number_forward_passes"], 1);
    assert_eq!(json["additional_data"], true);
    let foot = json["footnote"].as_str().unwrap();
    assert!(
        foot.contains(&cand.key.hash().unwrap().to_hex()) && foot.contains(&cand.key.model_hash.to_hex()),
        "{foot}"
    );
    // The card reads back into the same struct.
    let back: robustbench::ModelCard = serde_json::from_value(json).unwrap();
    assert_eq!(back, card);

    // A partial evaluation is refused with every reason.
    let part = evals.iter().find(|e| e.key.subset == "1000/1000").unwrap();
    let err = robustbench::model_card(part, "x", &CardDetails::default()).unwrap_err().to_string();
    assert!(
        err.contains("not exported") && err.contains("10000") && err.contains("aa") && err.contains("8/255"),
        "{err}"
    );
}
