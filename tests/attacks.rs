//! The white-box suite on a model trained on real MNIST: the orderings the attacks must keep
//! (issue 4, "Strength tests") and the suite's reuse through the registry.

use infoat_tests::{infoat, stdout_json, tiny_config};

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn stronger_attacks_leave_fewer_robust_examples_on_a_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(31, 4096)).unwrap();
    let run =
        stdout_json(&infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let hash = run["record"]["config_hash"].as_str().unwrap();
    let args = [
        "eval",
        "--run",
        &hash[..16],
        "--limit",
        "40",
        "--eps",
        "0.05",
        "--json",
        "--attacks",
        "fgsm,pgd20,pgd100,apgd_ce,aa",
    ];
    let out = infoat(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    let robust = |id: &str| r["attacks"][id]["robust"]["correct"].as_i64().unwrap_or_else(|| panic!("{id}: {r}"));
    let clean = r["clean"]["correct"].as_i64().unwrap();
    let (fgsm, pgd20, pgd100, apgd, aa) =
        (robust("fgsm"), robust("pgd20"), robust("pgd100"), robust("apgd_ce"), robust("aa"));
    // Something to measure: eps 0.05 neither leaves the natural model intact nor breaks it all.
    assert!(aa > 0 && fgsm < clean, "{r}");
    assert!(pgd20 <= fgsm, "PGD-20 {pgd20} vs FGSM {fgsm}");
    assert!(pgd100 <= pgd20 + 1, "PGD-100 {pgd100} vs PGD-20 {pgd20}");
    assert!(apgd <= pgd20 + 1, "APGD-CE {apgd} vs PGD-20 {pgd20}");
    assert!(aa <= apgd + 1, "AA {aa} vs APGD-CE {apgd}");
    assert!(r["worst_case_acc"].as_f64().unwrap() <= r["attacks"]["aa"]["robust_acc"].as_f64().unwrap());
    assert_eq!(r["flagged"], false, "{r}");
    assert_eq!(r["reused"], false);

    // The same evaluation again comes from the registry, identical, without attacking.
    let again = stdout_json(&infoat(dir.path()).args(args).output().unwrap());
    assert_eq!(again["reused"], true);
    assert_eq!(again["key"], r["key"]);
    assert_eq!(again["attacks"], r["attacks"]);
    assert_eq!(again["worst_case_flags"], r["worst_case_flags"]);
    // Another seed is another evaluation.
    let other =
        stdout_json(&infoat(dir.path()).args(&args[..8]).args(["--seed", "1", "--attacks", "fgsm"]).output().unwrap());
    assert_eq!(other["attacks"].as_object().unwrap().len(), 1);
    assert_eq!(other["reused"], false);
    assert_ne!(other["key"], r["key"]);
}

/// Issue 21's evidence: an evaluation stores a witness for every example its attacks break at
/// the returned point, and `verify-evidence` confirms each in a process that runs no attack;
/// a key that names nothing is an error.
#[test]
fn verify_evidence_confirms_the_witnesses_an_evaluation_stored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(3, 256)).unwrap();
    let run =
        stdout_json(&infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let hash = run["record"]["config_hash"].as_str().unwrap();
    let args = [
        "eval",
        "--run",
        &hash[..16],
        "--limit",
        "24",
        "--eps",
        "0.1",
        "--json",
        "--attacks",
        "fgsm,pgd20,pgd_plus,bpda",
    ];
    let out = infoat(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    let key = r["key"].as_str().unwrap();
    let mut broken_total = 0;
    for id in ["fgsm", "pgd20", "pgd_plus", "bpda"] {
        let a = &r["attacks"][id];
        let broken = a["robust"]["total"].as_u64().unwrap() - a["robust"]["correct"].as_u64().unwrap();
        // Every broken example's returned point is its witness (PGD+: the iterate that broke it).
        assert_eq!(a["witnessed"].as_u64(), Some(broken), "{id}: {a}");
        broken_total += broken;
    }
    assert!(broken_total > 0, "eps 0.1 should break something: {r}");

    let out = infoat(dir.path()).args(["verify-evidence", &key[..12], "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = stdout_json(&out);
    let attacks = v[0]["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 4);
    for a in attacks {
        assert_eq!(a["confirmed"], a["witnessed"], "{a}");
        assert_eq!(a["failed"].as_array().unwrap().len(), 0, "{a}");
        assert_eq!(a["confirmed"], a["broken"], "{a}");
    }
    let text = infoat(dir.path()).args(["verify-evidence", "--all"]).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("pgd20") && text.contains("confirmed") && !text.contains("FAILED"), "{text}");

    // The checks are recorded: the report prints the confirmed counts beside each robust
    // accuracy, and every single-evaluation accuracy carries its exact interval.
    let out = infoat(dir.path()).args(["report", "--format", "json", "--out", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cells = stdout_json(&out);
    for id in ["fgsm", "pgd20", "pgd_plus", "bpda"] {
        let c = cells.as_array().unwrap().iter().find(|c| c["metric"] == id).unwrap();
        assert_eq!(c["confirmed"], c["broken"], "{c}");
        assert_eq!(
            c["broken"],
            r["attacks"][id]["robust"]["total"].as_u64().unwrap()
                - r["attacks"][id]["robust"]["correct"].as_u64().unwrap()
        );
        let [lo, hi] = [c["clopper_pearson"][0].as_f64().unwrap(), c["clopper_pearson"][1].as_f64().unwrap()];
        assert!(lo <= c["value"].as_f64().unwrap() && c["value"].as_f64().unwrap() <= hi, "{c}");
    }

    let out = infoat(dir.path()).args(["verify-evidence", "ffffffff"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ffffffff"));
}
