//! Snapshot tests of every table × format rendered from the committed fixture records
//! (`fixtures/reports/records.jsonl`, written by `fixtures/reports/generate.py`), and the
//! cell-level verdicts and JSON schema those renders rest on.

use infoat_registry::{EvalRecord, PaperTable, PublishedRecord, RunRecord};
use infoat_reports::{build, paper, render, Format, Report, Selection, Verdict};
use serde_json::Value;

mod common;

fn records() -> (Vec<RunRecord>, Vec<EvalRecord>, Vec<PublishedRecord>) {
    let (runs, evals) = common::records("records.jsonl");
    let published = paper::embedded().unwrap().iter().map(|p| p.to_record()).collect();
    (runs, evals, published)
}

fn report(selection: &Selection) -> Report {
    let (runs, evals, published) = records();
    build("Fixture report", &runs, &evals, &published, selection).unwrap()
}

fn paper_tables() -> Selection {
    Selection {
        tables: vec![PaperTable::I, PaperTable::II, PaperTable::V],
        configs: None,
        evals: None,
        include_not_run: true,
    }
}

fn cell<'a>(r: &'a Report, table: &str, dataset: &str, method: &str, metric: &str) -> &'a infoat_reports::Cell {
    r.cells
        .iter()
        .find(|c| c.table.name() == table && c.dataset == dataset && c.method == method && c.metric.name() == metric)
        .unwrap_or_else(|| panic!("no cell {table} {dataset} {method} {metric}"))
}

#[test]
fn verdicts_follow_the_interval_the_tolerance_and_the_flags() {
    let r = report(&paper_tables());
    // AT: three seeds around the published row, published inside the 95 % interval.
    let at = cell(&r, "II", "CIFAR-10", "AT", "pgd20");
    assert_eq!((at.n, at.verdict), (3, Verdict::Reproduced), "{at:?}");
    assert!((at.published.unwrap() - 0.5147).abs() < 1e-12, "{at:?}");
    assert!(at.ci95.unwrap() > 0.0 && at.std.unwrap() > 0.0);
    assert_eq!(at.config_hashes.len(), 3);
    assert_eq!(at.checkpoint_hashes.len(), 3);
    // TRADES, one seed: natural 1.21 below (inside the 1.5-point tolerance), PGD-20 1.92 below,
    // CW-20 2.19 above.
    assert_eq!(cell(&r, "II", "CIFAR-10", "TRADES", "natural").verdict, Verdict::Reproduced);
    assert_eq!(cell(&r, "II", "CIFAR-10", "TRADES", "pgd20").verdict, Verdict::Below);
    assert_eq!(cell(&r, "II", "CIFAR-10", "TRADES", "cw20").verdict, Verdict::Above);
    // InfoAT's evaluation tripped a sanity check: every cell of it says so.
    let info = cell(&r, "II", "CIFAR-10", "InfoAT", "aa");
    assert_eq!(info.verdict, Verdict::Flagged);
    assert!(info.flags[0].contains("zero_gradients"), "{info:?}");
    // MART is published and not in the registry.
    let mart = cell(&r, "II", "CIFAR-10", "MART", "aa");
    assert_eq!((mart.verdict, mart.value), (Verdict::NotRun, None));
    assert!((mart.published.unwrap() - 0.4845).abs() < 1e-12);
    // WRN-34-10 goes to Table V.
    assert!((cell(&r, "V", "CIFAR-10", "TRADES", "pgd20").published.unwrap() - 0.5648).abs() < 1e-12);
    // Table I: the MINE run lands on its published row (layer 1, λ = 0.5).
    let mine = cell(&r, "I", "CIFAR-10", "InfoAT (MINE layer 1, λ = 0.5)", "pgd20");
    assert!((mine.published.unwrap() - 0.5671).abs() < 1e-12 && mine.verdict == Verdict::Reproduced, "{mine:?}");
    assert_eq!(cell(&r, "I", "CIFAR-10", "InfoAT (MINE layer 2, λ = 1.0)", "pgd20").verdict, Verdict::NotRun);
    // MNIST has no published counterpart.
    let mnist = cell(&r, "II", "MNIST", "AT", "pgd20");
    assert_eq!((mnist.verdict, mnist.published), (Verdict::Unpublished, None));
}

#[test]
fn json_cells_follow_the_documented_schema() {
    let r = report(&paper_tables());
    let json: Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    let cells = json.as_array().unwrap();
    assert_eq!(cells.len(), r.cells.len());
    let metrics = ["natural", "fgsm", "pgd20", "pgd100", "pgd_plus", "cw20", "cw100", "bpda", "infopgd20", "aa"];
    for c in cells {
        for key in [
            "table",
            "dataset",
            "arch",
            "method",
            "metric",
            "value",
            "std",
            "n",
            "published",
            "verdict",
            "config_hashes",
            "checkpoint_hashes",
        ] {
            assert!(c.get(key).is_some(), "cell lacks {key}: {c}");
        }
        assert!(metrics.contains(&c["metric"].as_str().unwrap()), "{c}");
        for key in ["value", "published"] {
            if let Some(v) = c[key].as_f64() {
                assert!((0.0..=1.0).contains(&v), "{key} not a fraction: {c}");
            }
        }
        let verdict = c["verdict"].as_str().unwrap();
        assert!(["reproduced", "below", "above", "not run", "flagged", "unpublished"].contains(&verdict), "{c}");
        if verdict == "not run" {
            assert!(c["value"].is_null() && c["config_hashes"].as_array().unwrap().is_empty());
        } else {
            assert_eq!(c["config_hashes"].as_array().unwrap().len() as u64, c["n"].as_u64().unwrap(), "{c}");
        }
    }
}

#[test]
fn a_config_selection_keeps_only_those_runs() {
    let (runs, _, _) = records();
    let mnist: Vec<String> =
        runs.iter().filter(|r| r.config["data"]["dataset"] == "mnist").map(|r| r.config_hash.to_hex()).collect();
    let r = report(&Selection { tables: vec![], configs: Some(mnist.clone()), evals: None, include_not_run: false });
    assert!(!r.cells.is_empty());
    assert!(r.cells.iter().all(|c| c.dataset == "MNIST" && mnist.contains(&c.config_hashes[0])));
    assert_eq!(r.grids.len(), 1);
    let md = render(&r, Format::Md).unwrap();
    assert!(md.contains("The paper evaluates no MNIST models"), "{md}");
}

#[test]
fn snapshots_of_every_format() {
    let r = report(&paper_tables());
    for format in Format::ALL {
        let text = render(&r, format).unwrap();
        insta::assert_snapshot!(format!("paper_tables.{}", format.extension()), text);
    }
    let quick = report(&Selection { tables: vec![], configs: None, evals: None, include_not_run: false });
    insta::assert_snapshot!("all_reproduced.md", render(&quick, Format::Md).unwrap());
}

#[test]
fn html_is_one_self_contained_page_with_plots() {
    let r = report(&paper_tables());
    let html = render(&r, Format::Html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script") && !html.contains("http://") || html.contains("http://www.w3.org/2000/svg"));
    assert!(html.matches("<svg").count() >= 3, "bar chart and training curves expected");
    assert!(html.contains("Sensitivity to λ (Fig. 2)"), "the lambda sweep gives a Fig. 2-style curve");
    assert!(html.contains("⚠ FLAGGED"));
    assert!(html.contains(&cell(&r, "II", "CIFAR-10", "AT", "aa").config_hashes[0]));
}

#[test]
fn formats_parse_and_unknown_ones_are_named() {
    assert_eq!(Format::parse("tex").unwrap(), Format::Tex);
    let err = Format::parse("pdf").unwrap_err().to_string();
    assert!(err.contains("pdf") && err.contains("md, tex, csv, json, html"), "{err}");
}

fn comparison(candidate: &str) -> infoat_reports::Comparison {
    let (runs, evals, _) = records();
    infoat_reports::compare(candidate, &runs, &evals, &|_| Ok(None)).unwrap()
}

#[test]
fn compare_places_a_run_among_the_same_protocol() {
    let (runs, evals, _) = records();
    let trades = runs
        .iter()
        .find(|r| r.config["method"]["kind"] == "trades" && r.config["model"]["arch"] == "resnet18")
        .unwrap();
    let c = comparison(&trades.config_hash.to_hex()[..10]);
    assert!(c.rows[0].entry.candidate && c.rows[0].entry.label.starts_with("TRADES"));
    // Same protocol (dataset, ResNet-18, eps, suite, subset): AT (three seeds, one entry) and
    // InfoAT; not the WRN, not MNIST, not the external model (its architecture is unknown).
    let labels: Vec<&str> = c.rows.iter().map(|r| r.entry.label.as_str()).collect();
    assert_eq!(c.rows.len(), 3, "{labels:?}");
    let at = c.rows.iter().find(|r| r.entry.label.starts_with("AT")).unwrap();
    assert_eq!(at.entry.metrics[&infoat_registry::Metric::Natural].n, 3);
    let j = c.metrics.iter().position(|m| *m == infoat_registry::Metric::Natural).unwrap();
    // TRADES 81.00 vs AT ≈ 83.53: beyond noise; natural ranks InfoAT 84.3, AT, TRADES 81.0.
    assert!(at.cells[j].significant && at.cells[j].diff.unwrap() < -2.0, "{:?}", at.cells[j]);
    assert_eq!(c.rows[0].cells[j].rank, Some(3));
    let flagged = c.rows.iter().find(|r| r.entry.label.starts_with("InfoAT")).unwrap();
    assert!(flagged.entry.flagged);
    // An unknown candidate is an error that says what to give.
    let err = infoat_reports::compare("ffffffff", &runs, &evals, &|_| Ok(None)).unwrap_err().to_string();
    assert!(err.contains("ffffffff") && err.contains("infoat eval"), "{err}");
}

#[test]
fn compare_takes_an_external_model_by_its_evaluation_key() {
    let (_, evals, _) = records();
    let ext = evals.iter().find(|e| e.config_hash.is_none()).unwrap();
    let c = comparison(&ext.key.hash().unwrap().to_hex()[..12]);
    assert!(c.rows[0].entry.candidate && c.rows[0].entry.arch == "external");
    assert!(c.protocol.contains("any architecture"), "{}", c.protocol);
    // An external model is compared with every architecture under the protocol: the ResNet-18
    // entries and the WRN-34-10 (same data, subset and suite), not MNIST.
    assert_eq!(c.rows.len(), 5, "{:?}", c.rows.iter().map(|r| &r.entry.label).collect::<Vec<_>>());
    for format in Format::ALL {
        let text = infoat_reports::render_comparison(&c, format).unwrap();
        insta::assert_snapshot!(format!("compare_external.{}", format.extension()), text);
    }
}

/// Issue 21's paired statistics: where the candidate and a baseline each have one evaluation
/// with per-example flags, `compare` judges their difference by McNemar's exact test (here a
/// 0.90-point AA gap the unpaired noise band calls noise is significant, since the candidate
/// breaks nowhere the baseline survives), says which rankings are not significant, and gives
/// single evaluations their Clopper–Pearson interval.
#[test]
fn compare_pairs_single_evaluations_with_mcnemar() {
    use infoat_registry::records::pack_flags;
    use infoat_registry::{AttackId, EvalFlags, Metric};
    let (runs, evals, _) = records();
    let ext = evals.iter().find(|e| e.config_hash.is_none()).unwrap();
    let trades = runs
        .iter()
        .find(|r| r.config["method"]["kind"] == "trades" && r.config["model"]["arch"] == "resnet18")
        .unwrap()
        .config_hash;
    // Consistent with the records: clean 86.00 % vs 81.00 % of 10,000, AA 50.50 % vs 49.60 % of
    // 1,000, every example the baseline gets right also right for the candidate.
    let first = |n: usize, k: usize| (0..n).map(|i| i < k).collect::<Vec<bool>>();
    let flags_of = |clean: usize, aa: usize| EvalFlags {
        clean: pack_flags(&first(10_000, clean)),
        attacks: [("aa".to_string(), pack_flags(&first(1_000, aa)))].into(),
        worst_case: pack_flags(&first(1_000, aa)),
    };
    let flags = |e: &EvalRecord| -> infoat_reports::Result<Option<EvalFlags>> {
        Ok(match e.config_hash {
            None => Some(flags_of(8_600, 505)),
            Some(h) if h == trades => Some(flags_of(8_100, 496)),
            Some(_) => None,
        })
    };
    let c = infoat_reports::compare(&ext.key.hash().unwrap().to_hex()[..12], &runs, &evals, &flags).unwrap();
    let aa = c.metrics.iter().position(|m| *m == Metric::robust(AttackId::Aa)).unwrap();
    let row = |prefix: &str| c.rows.iter().find(|r| r.entry.label.starts_with(prefix)).unwrap();
    let paired = &row("TRADES [fbf88217]").cells[aa];
    assert_eq!(paired.p_value, Some(infoat_reports::stats::mcnemar_exact_p(9, 0)));
    assert!(paired.significant && (paired.diff.unwrap() - 0.9).abs() < 1e-9, "{paired:?}");
    // Entries without flags keep the unpaired band: TRADES WRN's 1.90 points are noise, said so.
    let unpaired = &row("TRADES [4b18e9b6]").cells[aa];
    assert!(unpaired.p_value.is_none() && !unpaired.significant, "{unpaired:?}");
    assert!(
        c.not_significant.iter().any(|s| s.starts_with("TRADES [4b18e9b6] ranks above the candidate under AA by 1.90")),
        "{:?}",
        c.not_significant
    );
    assert!(!c.not_significant.iter().any(|s| s.contains("fbf88217")), "{:?}", c.not_significant);
    // The candidate's single evaluation: AA 505/1000 with its exact interval.
    let (lo, hi) = c.rows[0].entry.metrics[&Metric::robust(AttackId::Aa)].interval.unwrap();
    assert!((lo - 0.4735).abs() < 5e-4 && (hi - 0.5364).abs() < 5e-4, "({lo}, {hi})");
    let md = infoat_reports::render_comparison(&c, Format::Md).unwrap();
    assert!(md.contains("Δ 0.90* p 0.00") && md.contains("Not significant at 5 %:"), "{md}");
}

/// Analysis figures (issue 10) from fixed records: Fig. 4 draws every run on one plot, Fig. 1's
/// caption carries its test and correlation, Fig. 5 is a heat map; each is one SVG document.
#[test]
fn analysis_figures_snapshot() {
    let env: infoat_registry::Environment = serde_json::from_value(serde_json::json!({
        "harness_version": "0.1.0", "git_commit": "fixture", "libtorch": "2.11.0", "device": "cpu",
        "threads": 2, "cudnn": null, "os": "linux-x86_64", "cpu": null, "hostname": "fixture"
    }))
    .unwrap();
    let record = |figure: &str, model: char, params: Value, result: Value| infoat_registry::AnalysisRecord {
        figure: figure.into(),
        model_hash: model.to_string().repeat(64).parse().unwrap(),
        config_hash: Some(model.to_string().repeat(64).parse().unwrap()),
        params,
        analysis_semver: "1.0.0".into(),
        result,
        seconds: 1.0,
        finished_unix: 0,
        env: env.clone(),
    };
    let curve = |v: [f64; 3]| serde_json::json!({ "alphas": [-1.0, 0.0, 1.0], "adv_loss": v, "clean_loss": v, "sharpness": (v[0] + v[2]) / 2.0 - v[1] });
    let records = vec![
        record("fig4", 'a', serde_json::json!({}), curve([2.0, 1.0, 2.5])),
        record("fig4", 'b', serde_json::json!({}), curve([1.4, 1.0, 1.2])),
        record(
            "fig1",
            'a',
            serde_json::json!({ "eps": 0.3, "steps": 10, "eps_hi": 0.6 }),
            serde_json::json!({
                "n": 6, "clean_correct": 5, "robust": 2, "entropy_max": std::f64::consts::LN_10, "mean_entropy_robust": 0.2,
                "mean_entropy_broken": 1.1, "test": { "u": 0.0, "z": -1.73, "p": 0.083 },
                "hist_robust": [2, 0], "hist_broken": [1, 2], "entropy": [0.1, 0.3, 0.9, 1.2, 1.2],
                "min_eps": [0.5, 0.4, 0.2, 0.1, 0.12], "censored": 0, "spearman": -0.97
            }),
        ),
        record(
            "fig5",
            'b',
            serde_json::json!({}),
            serde_json::json!({ "grid": [-1.0, 0.0, 1.0], "examples": [{ "index": 4, "label": 9,
                "loss": [[0.1, 0.2, 0.3], [0.2, 0.1, 0.2], [0.9, 1.5, 2.0]],
                "wrong": [[false, false, false], [false, false, false], [false, true, true]] }] }),
        ),
    ];
    let label = |r: &infoat_registry::AnalysisRecord| {
        if r.model_hash.to_hex().starts_with('a') {
            "AT".into()
        } else {
            "InfoAT".into()
        }
    };
    let figures = infoat_reports::analyses::figures(&records, &label).unwrap();
    let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["fig1-aaaaaaaaaaaa", "fig4", "fig5-bbbbbbbbbbbb"]);
    for f in &figures {
        assert!(f.svg.starts_with("<svg") && f.svg.trim_end().ends_with("</svg>"), "{}", f.name);
        assert_eq!(f.svg.matches("<svg").count(), f.svg.matches("</svg>").count());
    }
    assert!(figures[0].caption.contains("ρ between H(p(x)) and the smallest flipping radius: -0.970"));
    assert!(figures[1].caption.contains("AT (config aaaaaaaaaaaa) 1.2500") && figures[1].caption.contains("InfoAT"));
    assert_eq!(figures[2].svg.matches("<circle").count(), 2, "two misclassified grid points");
    for f in &figures {
        insta::assert_snapshot!(format!("analysis_{}", f.name), format!("{}\n\n{}\n\n{}", f.title, f.caption, f.svg));
    }
}

/// Fig. 3-style bars: InfoAT runs that differ only in the weighting give one bar per choice,
/// at the mean PGD-20 accuracy of each.
#[test]
fn an_ablation_of_one_design_choice_gives_fig3_bars() {
    let (mut runs, mut evals, published) = records();
    let base =
        runs.iter().find(|r| r.config.pointer("/method/lambda").and_then(Value::as_f64) == Some(2.5)).unwrap().clone();
    let base_evals: Vec<EvalRecord> =
        evals.iter().filter(|e| e.config_hash == Some(base.config_hash)).cloned().collect();
    assert!(!base_evals.is_empty());
    let mut run0 = base.clone();
    run0.config["method"]["weight"] = "entropy".into();
    runs.retain(|r| r.config_hash != base.config_hash);
    runs.push(run0);
    for (k, (weight, pgd)) in [("none", 0.40), ("misclassification", 0.45)].into_iter().enumerate() {
        let hash: infoat_registry::ContentHash = format!("{:064x}", k + 0xabc).parse().unwrap();
        let mut r = base.clone();
        r.config["method"]["weight"] = weight.into();
        r.config_hash = hash;
        r.checkpoint_hash = Some(hash);
        runs.push(r);
        for e in &base_evals {
            let mut e = e.clone();
            e.config_hash = Some(hash);
            e.key.model_hash = hash;
            if let Some(a) = e.attacks.get_mut("pgd20") {
                a.robust_acc = pgd;
            }
            evals.push(e);
        }
    }
    let r = build("Ablation", &runs, &evals, &published, &Selection::default()).unwrap();
    let html = render(&r, Format::Html).unwrap();
    assert!(html.contains("Ablation of the weighting (Fig. 3)"), "no ablation bars");
    assert!(html.contains("none: 40.00 %") && html.contains("misclassification: 45.00 %"));
    assert!(!html.contains("Ablation of the divergence"), "the divergence was not varied");
}

/// Issue 21: a checked evaluation's cells carry "✓ k/b" (every broken example confirmed) or
/// are marked "✗ k/b" (some witness missing or failed); unchecked cells carry nothing; a
/// single evaluation's accuracy carries its exact interval.
#[test]
fn witness_checks_and_exact_intervals_reach_the_cells() {
    let (runs, evals, published) = records();
    let trades = evals
        .iter()
        .find(|e| {
            let run = runs.iter().find(|r| Some(r.config_hash) == e.config_hash).unwrap();
            run.config["method"]["kind"] == "trades"
                && run.config["model"]["arch"] == "resnet18"
                && e.attacks.contains_key("pgd20")
        })
        .unwrap();
    let tally = |id: &str, missing: usize| {
        let r = &trades.attacks[id];
        let broken = r.total - r.correct;
        (id.to_string(), infoat_registry::WitnessTally { broken, witnessed: broken, confirmed: broken - missing })
    };
    let check = infoat_registry::VerificationRecord {
        eval_key: trades.key.hash().unwrap(),
        eval_attempt: trades.attempt.clone(),
        attempt: "1".into(),
        attacks: [tally("fgsm", 0), tally("pgd20", 1)].into_iter().collect(),
        verifier_semver: "1.0.0".into(),
        finished_unix: 1,
        env: trades.env.clone(),
    };
    let r = infoat_reports::build_verified("Checked", &runs, &evals, &[check], &published, &paper_tables()).unwrap();
    let fgsm = cell(&r, "II", "CIFAR-10", "TRADES", "fgsm");
    assert_eq!((fgsm.confirmed, fgsm.broken), (Some(366), Some(366)), "{fgsm:?}");
    assert!(!fgsm.unconfirmed());
    let pgd = cell(&r, "II", "CIFAR-10", "TRADES", "pgd20");
    assert_eq!((pgd.confirmed, pgd.broken), (Some(479), Some(480)));
    assert!(pgd.unconfirmed());
    // Unchecked: no counts. Several seeds: no exact interval (the t interval instead).
    assert_eq!(cell(&r, "II", "CIFAR-10", "TRADES", "cw20").confirmed, None);
    assert!(cell(&r, "II", "CIFAR-10", "AT", "pgd20").clopper_pearson.is_none());
    // One evaluation of 1,000 attacked examples, 520 robust: the exact interval around 0.52.
    let [lo, hi] = pgd.clopper_pearson.unwrap();
    assert_eq!(pgd.examples, Some(1000));
    assert!((lo - 0.4885).abs() < 5e-4 && (hi - 0.5514).abs() < 5e-4, "{lo} {hi}");
    let md = render(&r, Format::Md).unwrap();
    assert!(md.contains("✓ 366/366") && md.contains("✗ 479/480"), "{md}");
    assert!(md.contains("✗ marks the 1 cells"), "{md}");
    let html = render(&r, Format::Html).unwrap();
    assert!(html.contains("<span class=\"flag\" title=\"witnesses confirmed"), "the HTML marks it too");
}
