//! RobustBench's external-evaluation layout (issue 21): an evaluation's worst case exported as
//! one `torch.save` tensor that PyTorch loads, imported into a fresh registry and verified with
//! the forward pass alone; someone else's images (here re-saved by PyTorch, one moved outside
//! the eps-ball) verified image by image and merged as a worst case.

use infoat_tests::{infoat, run_repo_python, stdout_json, tiny_config};

#[test]
fn the_layout_round_trips_through_pytorch_and_a_fresh_registry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(3, 256)).unwrap();
    let run =
        stdout_json(&infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let hash = run["record"]["config_hash"].as_str().unwrap();
    let args = ["eval", "--run", &hash[..16], "--limit", "40", "--eps", "0.1", "--json", "--attacks", "fgsm,pgd20"];
    let out = infoat(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = stdout_json(&out);
    let key = ev["key"].as_str().unwrap();
    let worst = ev["worst_case_acc"].as_f64().unwrap();

    // Export: the worst case over FGSM and PGD-20 as 40 images PyTorch loads.
    let out = infoat(dir.path()).args(["evidence", "export", &key[..12], "--out", "ev", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported = stdout_json(&out);
    assert_eq!(exported["evaluation"]["n_examples"], 40);
    assert_eq!(exported["evaluation"]["robust_accuracy"].as_f64(), Some(worst));
    let ev_dir = dir.path().join("ev");
    let py: serde_json::Value = serde_json::from_str(&run_repo_python(
        "ci/crosscheck/robustbench_layout.py",
        &["check", ev_dir.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(py["shape"], serde_json::json!([40, 1, 28, 28]), "{py}");
    assert_eq!(py["dtype"], "torch.float32");
    assert!(py["min"].as_f64().unwrap() >= 0.0 && py["max"].as_f64().unwrap() <= 1.0, "{py}");

    // Import into a fresh registry that never saw the model: every image verified, and the
    // robust accuracy under them is the evaluation's worst case.
    let out = infoat(dir.path()).args(["evidence", "import", "ev", "--registry", "fresh", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let imported = stdout_json(&out);
    assert_eq!(imported["rejected"], 0, "{imported}");
    assert_eq!(imported["external_acc"].as_f64(), Some(worst), "{imported}");
    assert!(imported["broken"].as_u64().unwrap() > 0, "eps 0.1 breaks something: {imported}");
    let check =
        infoat(dir.path()).args(["verify-evidence", "--all", "--registry", "fresh", "--json"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let checked = stdout_json(&check);
    assert_eq!(checked[0]["attacks"][0]["attack"], "external");
    assert_eq!(checked[0]["attacks"][0]["confirmed"], imported["broken"]);

    // Someone else's file (torch.save by PyTorch), example 0 moved outside the ball: refused
    // image by image, the rest verified and merged into the original evaluation as a worst case.
    let theirs = dir.path().join("theirs");
    run_repo_python(
        "ci/crosscheck/robustbench_layout.py",
        &["rewrite", ev_dir.to_str().unwrap(), theirs.to_str().unwrap()],
    );
    let out = infoat(dir.path()).args(["evidence", "import", "theirs", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged = stdout_json(&out);
    assert_eq!(merged["rejected"], 1, "{merged}");
    assert_eq!(merged["merged_into"].as_str(), Some(key), "{merged}");
    assert_eq!(merged["worst_case_before"].as_f64(), Some(worst));
    assert!(merged["worst_case_after"].as_f64().unwrap() <= worst, "{merged}");
    assert_ne!(merged["key"].as_str(), Some(key), "the merged evaluation has a key of its own");

    // Images made for another model are refused with the reason.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, tiny_config(4, 256)).unwrap();
    let run2 = stdout_json(
        &infoat(dir.path()).args(["--quiet", "train", "--config", "other.toml", "--json"]).output().unwrap(),
    );
    let out = infoat(dir.path())
        .args(["evidence", "import", "ev", "--run", &run2["record"]["config_hash"].as_str().unwrap()[..16]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("were made for model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
