//! The README's main job: `infoat reproduce quickstart` trains natural, AT, TRADES, MART, MART+
//! and InfoAT SmallCNNs on real MNIST on CPU, evaluates each under the Table II attacks
//! (AutoAttack included), must meet its targets; a second run reuses everything from the
//! registry, training and attacks alike.

use infoat_tests::{infoat, stdout_json};

#[test]
fn quickstart_meets_its_targets_and_reruns_for_free() {
    let dir = tempfile::tempdir().unwrap();
    let out = infoat(dir.path()).args(["--quiet", "reproduce", "quickstart", "--json"]).output().unwrap();
    assert!(out.status.success(), "quickstart failed: {}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    let runs = r["runs"].as_array().unwrap();
    let methods: Vec<&str> = runs.iter().map(|x| x["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["natural", "at", "trades", "mart", "mart_plus", "infoat"]);
    let natural = &runs[0];
    assert!(natural["accuracy"]["clean"].as_f64().unwrap() >= 0.98, "{r}");
    assert_eq!(natural["images"]["clean"], 10_000);
    for run in runs {
        assert_eq!(run["missed"].as_array().unwrap().len(), 0, "{run}");
        assert_eq!(run["reused"], false);
        for attack in ["fgsm", "pgd20", "pgd100", "pgd_plus", "cw20", "cw100", "bpda", "infopgd20", "aa"] {
            assert_eq!(run["images"][attack], 50, "{attack}: {run}");
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

    let again =
        stdout_json(&infoat(dir.path()).args(["--quiet", "reproduce", "quickstart", "--json"]).output().unwrap());
    for (a, b) in again["runs"].as_array().unwrap().iter().zip(runs) {
        assert_eq!(a["reused"], true);
        assert_eq!(a["eval_reused"], true);
        assert_eq!(a["checkpoint_hash"], b["checkpoint_hash"]);
        assert_eq!(a["accuracy"], b["accuracy"], "evaluation is deterministic too");
    }
}
