//! The README's main job, `infoat reproduce quickstart`, on two of its six runs: natural
//! training and InfoAT (the paper's method) SmallCNNs on real MNIST on CPU, each evaluated under
//! the Table II attacks (AutoAttack included) and the black-box ones, must meet their targets; a
//! second run reuses everything from the registry, training and attacks alike; `ci/nightly
//! --only` on them matches the committed baseline and catches planted changes.
//!
//! Two runs, not six: a quickstart registry on this project's 2-core machine records 1,589 s
//! from the first run's start to the last evaluation's end (874 s training, 668 s attacking), and
//! all six in the debug build took 2,066 s beside the other end-to-end tests: with a cold build
//! that did not fit CI's 90 minutes. This test took about 9 minutes alone; `ci/nightly` reruns
//! all six against the baseline.

use infoat_tests::{infoat, stdout_json};

/// The quickstart's runs this test trains and attacks.
const RUNS: [&str; 2] = ["natural", "infoat"];

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn quickstart_meets_its_targets_and_reruns_for_free() {
    let dir = tempfile::tempdir().unwrap();
    let reproduce = ["--quiet", "reproduce", "quickstart", "--only", "natural,infoat", "--json"];
    let out = infoat(dir.path()).args(reproduce).output().unwrap();
    assert!(out.status.success(), "quickstart failed: {}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    let runs = r["runs"].as_array().unwrap();
    let methods: Vec<&str> = runs.iter().map(|x| x["method"].as_str().unwrap()).collect();
    assert_eq!(methods, RUNS);
    let natural = &runs[0];
    assert!(natural["accuracy"]["clean"].as_f64().unwrap() >= 0.98, "{r}");
    assert_eq!(natural["images"]["clean"], 10_000);
    for run in runs {
        assert_eq!(run["missed"].as_array().unwrap().len(), 0, "{run}");
        assert_eq!(run["reused"], false);
        for attack in ["fgsm", "pgd20", "pgd100", "pgd_plus", "cw20", "cw100", "bpda", "infopgd20", "aa"] {
            assert_eq!(run["images"][attack], 50, "{attack}: {run}");
        }
        for attack in ["spsa128", "rays"] {
            assert_eq!(run["images"][attack], 10, "{attack}: {run}");
        }
        // AutoAttack is the worst case of its components and at least as strong as PGD-20.
        let acc = |m: &str| run["accuracy"][m].as_f64().unwrap();
        assert!(acc("aa") <= acc("pgd20") + 0.02, "{run}");
        assert!(acc("pgd20") <= acc("fgsm") + 0.02, "{run}");
    }
    // Adversarial training buys robustness natural training does not have.
    let nat_pgd = natural["accuracy"]["pgd20"].as_f64().unwrap();
    for run in &runs[1..] {
        let pgd = run["accuracy"]["pgd20"].as_f64().unwrap();
        assert!(pgd > nat_pgd + 0.05, "{} PGD-20 {pgd} vs natural {nat_pgd}", run["method"]);
    }

    // It ends by writing its report: the Table II-style grid, no published CIFAR numbers beside
    // MNIST ones (a note says why), JSON cells in the documented form.
    let report: Vec<String> = r["report"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let names: Vec<&str> = report.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "quickstart.md",
            "quickstart.html",
            "quickstart.json",
            "quickstart.claims.json",
            "quickstart.diagnostics.json"
        ]
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join("out").join(name)).unwrap();
    let (md, html, json) = (read("quickstart.md"), read("quickstart.html"), read("quickstart.json"));
    assert!(md.contains("Table II-style") && md.contains("MNIST, SmallCNN"), "{md}");
    assert!(md.contains("The paper evaluates no MNIST models"), "{md}");
    assert!(html.contains("<svg") && html.contains("The paper evaluates no MNIST models"));
    let cells: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cells = cells.as_array().unwrap();
    let in_table = |t: &str| cells.iter().filter(|c| c["table"] == t).count();
    assert_eq!(in_table("II"), 2 * 10, "two methods x (natural + nine attacks)");
    assert_eq!(in_table("III"), 2, "SPSA-128");
    assert_eq!(in_table("IV"), 2 * 2, "RayS: ADBD and robust accuracy");
    assert_eq!(cells.len(), 26);
    for c in cells {
        assert_eq!((c["dataset"].as_str(), c["arch"].as_str()), (Some("MNIST"), Some("SmallCNN")));
        assert!(c["published"].is_null() && c["verdict"] == "unpublished", "{c}");
        assert_eq!(c["n"], 1);
        let run = runs.iter().find(|r| r["config_hash"] == c["config_hashes"][0]).expect("cell traces to a run");
        assert_eq!(c["checkpoint_hashes"][0], run["checkpoint_hash"]);
        let key = match c["metric"].as_str().unwrap() {
            "natural" => "clean",
            "rob_acc" => "rays",
            "adbd" => {
                let d = c["value"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&d), "{c}");
                continue;
            }
            m => m,
        };
        assert_eq!(c["value"].as_f64(), run["accuracy"][key].as_f64(), "{c}");
        if c["table"] != "II" {
            assert!(c["forward_passes"].as_f64().unwrap() > 1.0, "black-box cost recorded: {c}");
        }
    }

    let again = stdout_json(&infoat(dir.path()).args(reproduce).output().unwrap());
    assert_eq!(read("quickstart.md"), md, "the report is a function of the registry");
    assert_eq!(read("quickstart.json"), json);
    for (a, b) in again["runs"].as_array().unwrap().iter().zip(runs) {
        assert_eq!(a["reused"], true);
        assert_eq!(a["eval_reused"], true);
        assert_eq!(a["checkpoint_hash"], b["checkpoint_hash"]);
        assert_eq!(a["accuracy"], b["accuracy"], "evaluation is deterministic too");
    }

    // Issue 21: the attacks left witnesses, and verify-evidence, which runs no attack, confirms
    // every one of them.
    let v = infoat(dir.path()).args(["verify-evidence", "--all", "--json"]).output().unwrap();
    assert!(v.status.success(), "{}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));
    let (mut witnessed, mut broken) = (0, 0);
    for report in stdout_json(&v).as_array().unwrap() {
        for a in report["attacks"].as_array().unwrap() {
            assert_eq!(a["confirmed"], a["witnessed"], "{a}");
            witnessed += a["witnessed"].as_u64().unwrap();
            broken += a["broken"].as_u64().unwrap();
        }
    }
    assert!(witnessed > 0 && witnessed <= broken, "{witnessed} witnesses of {broken} breaks");
    // `reproduce` re-checked them before writing its report: every attack cell has its counts.
    for c in cells.iter().filter(|c| !matches!(c["metric"].as_str(), Some("natural" | "adbd"))) {
        let (k, b) = (c["confirmed"].as_u64(), c["broken"].as_u64());
        assert!(k.is_some() && k <= b, "confirmed counts beside every robust accuracy: {c}");
    }
    assert!(md.contains("The paper's claims, checked"), "the claims section: {md}");
    let claims: serde_json::Value = serde_json::from_str(&read("quickstart.claims.json")).unwrap();
    assert!(claims["claims"].as_array().unwrap().len() >= 6, "{claims}");
    eprintln!("quickstart evidence: {witnessed} witnesses confirmed of {broken} broken examples");

    // Issue 22: the white-box attacks examined themselves. AutoAttack found at least 95 % of the
    // planted adversarial examples of every self-test, returned no silent success and broke every
    // example once the whole box was allowed; no attack meets vanishing gradients or unstable
    // predictions on these models (nothing masks them); the report shows both curves and the pass
    // counts. (Incomplete optimization may trip: APGD-CE's loss still rises at its 100th iteration
    // on 2 of InfoAT's 13 AutoAttack-robust examples, docs/diagnostics.md.)
    let white = || cells.iter().filter(|c| c["table"] == "II" && c["metric"] != "natural");
    for c in white() {
        assert!(c["backward_passes"].as_f64().is_some(), "backward passes counted: {c}");
        for indicator in ["unavailable_gradients", "unstable_predictions"] {
            assert_eq!(c[indicator], 0, "{indicator}: {c}");
        }
    }
    for c in white().filter(|c| c["metric"] == "aa") {
        for indicator in ["silent_success", "unavailable_gradients", "unstable_predictions", "unconstrained_failure"] {
            assert_eq!(c[indicator], 0, "AutoAttack is quiet: {indicator}: {c}");
        }
        for test in ["binarization", "logit_scaled", "input_quantized"] {
            let t = &c["self_tests"][test];
            let (found, planted) = (t["found"].as_u64().unwrap(), t["planted"].as_u64().unwrap());
            assert!(planted >= 15 && found as f64 >= 0.95 * planted as f64, "AutoAttack on {test}: {c}");
        }
    }
    assert!(md.contains("## Attack diagnostics"), "{md}");
    assert!(html.contains("id=\"diagnostics\"") && html.contains("against eps") && html.contains("against its budget"));
    assert!(html.contains("fwd /") && html.contains(" bwd"), "pass counts in the report");
    let diagnostics: serde_json::Value = serde_json::from_str(&read("quickstart.diagnostics.json")).unwrap();
    let evaluations = diagnostics["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), 2, "the white-box evaluation of each model: {diagnostics}");
    for e in evaluations {
        let curves = e["curves"].as_array().unwrap();
        assert_eq!(curves.len(), 3, "PGD-20 and APGD-CE against eps, APGD-CE against its budget: {e}");
        for c in curves.iter().filter(|c| c["axis"] == "eps") {
            let last = c["points"].as_array().unwrap().last().unwrap();
            assert_eq!(last[1], 0.0, "no example survives the whole box: {c}");
        }
    }

    // The whole preset's plan sees these two done and the other four still to do.
    let dry =
        stdout_json(&infoat(dir.path()).args(["reproduce", "quickstart", "--dry-run", "--json"]).output().unwrap());
    let done: Vec<(&str, bool)> = dry["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["run"].as_str().unwrap(), x["done"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        done,
        [("natural", true), ("at", false), ("trades", false), ("mart", false), ("mart_plus", false), ("infoat", true)],
        "{dry}"
    );

    // ci/nightly against the committed baseline: every checkpoint hash and metric of this fresh
    // quickstart equals the baseline's (CPU determinism across runs and machines).
    nightly_passes_and_catches_planted_changes(dir.path(), runs);
}

/// Runs `ci/nightly` on the quickstart registry in `dir` (no retraining: the registry holds
/// it): against the committed baseline, and against a baseline written here from the same
/// registry with a planted change in a metric and in a checkpoint hash.
fn nightly_passes_and_catches_planted_changes(dir: &std::path::Path, runs: &[serde_json::Value]) {
    let root = infoat_tests::repo_root();
    let nightly = |baseline: &std::path::Path, out: &std::path::Path| {
        let o = std::process::Command::new(root.join("ci/nightly"))
            .env("INFOAT_BIN", infoat_tests::infoat_bin())
            .env("INFOAT_NIGHTLY_REGISTRY", dir.join("registry"))
            .env("INFOAT_NIGHTLY_ONLY", RUNS.join(","))
            .env("INFOAT_NIGHTLY_BASELINE", baseline)
            .env("INFOAT_NIGHTLY_OUT", out)
            .output()
            .unwrap();
        let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
        (o, summary)
    };
    // Against the committed baseline: bit-identical where this machine's numerics fingerprint
    // equals the baseline's; on another CPU generation the checkpoints are informational and
    // the metrics must stay within the seed-and-sampling noise band. Either way it passes.
    let (out, summary) = nightly(&root.join("fixtures/regress/quickstart"), &dir.join("nightly-committed"));
    if summary.contains("## Environments differ") {
        eprintln!("note: this machine's numerics differ from the committed baseline's:\n{summary}");
        assert!(summary.contains("## Noise test"), "{summary}");
    }
    assert!(
        out.status.success(),
        "ci/nightly failed against the committed baseline:\n{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains("PASSED") && summary.matches("| ok |").count() == RUNS.len(), "{summary}");

    // A baseline of this very registry, then two planted changes: InfoAT's PGD-20 accuracy and
    // the natural model's checkpoint hash.
    let fresh = dir.join("baseline-here");
    let w = infoat(dir)
        .args(["--quiet", "regress", "quickstart", "--only", &RUNS.join(","), "--write-baseline", "--baseline"])
        .arg(&fresh)
        .arg("--registry")
        .arg(dir.join("registry"))
        .output()
        .unwrap();
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let (out, summary) = nightly(&fresh, &dir.join("nightly-here"));
    assert!(out.status.success() && summary.contains("PASSED"), "{summary}");

    let by_method = |m: &str| runs.iter().find(|r| r["method"] == m).unwrap();
    let adv_config = by_method("infoat")["config_hash"].as_str().unwrap().to_string();
    let natural_checkpoint = by_method("natural")["checkpoint_hash"].as_str().unwrap().to_string();
    let planted = dir.join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::copy(fresh.join("MANIFEST.json"), planted.join("MANIFEST.json")).unwrap();
    let text = std::fs::read_to_string(fresh.join("records.jsonl")).unwrap();
    let mut planted_metric = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let is_eval = v["kind"] == "eval";
            let r = &mut v["record"];
            if is_eval && r["config_hash"] == adv_config.as_str() {
                if let Some(acc) = r["attacks"]["pgd20"]["robust_acc"].as_f64() {
                    r["attacks"]["pgd20"]["robust_acc"] = serde_json::json!(acc - 0.04);
                    planted_metric = true;
                }
            }
            serde_json::to_string(&v).unwrap().replace(&natural_checkpoint, &"0".repeat(64))
        })
        .collect();
    assert!(planted_metric && text.contains(&natural_checkpoint), "the baseline holds the runs to plant changes in");
    std::fs::write(planted.join("records.jsonl"), lines.join("\n") + "\n").unwrap();
    let (out, summary) = nightly(&planted, &dir.join("nightly-planted"));
    assert_eq!(out.status.code(), Some(1), "a planted change must fail the nightly run:\n{summary}");
    assert!(summary.contains("FAILED (2 differences)"), "{summary}");
    assert!(summary.contains("infoat: pgd20") && summary.contains("Δ +0.0400"), "{summary}");
    let short = &natural_checkpoint[..12];
    assert!(
        summary.contains(&format!("natural: checkpoint {short} on CPU, the baseline's is 000000000000")),
        "{summary}"
    );

    // The same baseline as if written on another CPU generation (its fingerprint's family
    // changed): the checkpoints become informational and the metrics go through the noise test.
    // A 2-image change of InfoAT's PGD-20 on 50 is noise; its clean accuracy down by 50 points
    // on 10,000 images and PGD-20 down to 0 are not.
    let plant = |name: &str, clean_by: f64, pgd20: Option<f64>| -> std::path::PathBuf {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(fresh.join("MANIFEST.json"), folder.join("MANIFEST.json")).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
                let kind = v["kind"].as_str().unwrap_or_default().to_string();
                let r = &mut v["record"];
                if kind == "run" {
                    let family = r["env"]["numerics"]["cpu_family"].as_u64().expect("runs carry the fingerprint");
                    r["env"]["numerics"]["cpu_family"] = serde_json::json!(family + 1);
                }
                if kind == "eval" && r["config_hash"] == adv_config.as_str() {
                    r["clean_acc"] = serde_json::json!(r["clean_acc"].as_f64().unwrap() + clean_by);
                    if let (Some(to), Some(acc)) = (pgd20, r["attacks"]["pgd20"]["robust_acc"].as_f64()) {
                        r["attacks"]["pgd20"]["robust_acc"] = serde_json::json!(to.min(acc));
                    }
                }
                serde_json::to_string(&v).unwrap().replace(&natural_checkpoint, &"0".repeat(64))
            })
            .collect();
        std::fs::write(folder.join("records.jsonl"), lines.join("\n") + "\n").unwrap();
        folder
    };
    let adv_pgd20 = by_method("infoat")["accuracy"]["pgd20"].as_f64().unwrap();
    let (out, summary) = nightly(&plant("other-cpu-noise", 0.0, Some(adv_pgd20 - 0.04)), &dir.join("nightly-noise"));
    assert!(out.status.success(), "a noise-level change on another CPU generation passes:\n{summary}");
    assert!(summary.contains("## Environments differ") && summary.contains("## Noise test"), "{summary}");
    assert!(summary.contains("(informational)") && summary.contains(" ±"), "{summary}");
    let (out, summary) = nightly(&plant("other-cpu-planted", -0.50, Some(0.0)), &dir.join("nightly-other-planted"));
    assert_eq!(out.status.code(), Some(1), "planted changes fail the noise test too:\n{summary}");
    assert!(summary.contains("infoat: clean") && summary.contains("noise band"), "{summary}");
    assert!(adv_pgd20 < 0.4 || summary.contains("infoat: pgd20"), "{summary}");
    assert!(!summary.contains("natural: checkpoint"), "checkpoints are informational there: {summary}");
}
