//! RobustBench interop (issue 23): its model-zoo architectures checked against its own PyTorch
//! definitions, a `torch.save` checkpoint of one evaluated end to end on the real CIFAR-10 test
//! images the project ships, and model cards read back as RobustBench reads its own.

use infoat_tests::{infoat, infoat_bin, repo_root, robustbench_dir, run_repo_python, stdout_json};

/// Every listed architecture, built by robustbench 1.1.1 with random weights and calibrated
/// BatchNorm statistics, saved by `torch.save` in RobustBench's wrappers, gives the same logits
/// in the harness (`infoat logits`) on real CIFAR-10/100 images: max |Δ| ≤ 1e-4 in float32.
#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored); about 3 minutes on 2 cores"]
fn robustbench_architectures_give_pytorchs_logits() {
    let rb = robustbench_dir();
    let bin = infoat_bin();
    let out = run_repo_python(
        "ci/crosscheck/robustbench_archs.py",
        &["check", "--robustbench", rb.to_str().unwrap(), "--infoat", bin.to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    let archs = report["architectures"].as_object().unwrap();
    for name in [
        "resnet18",
        "preact_resnet18",
        "wrn28_10",
        "wrn34_10",
        "wrn34_20",
        "wrn70_16",
        "dm_wrn28_10",
        "dm_wrn34_20",
        "dm_wrn70_16",
        "dm_preact_resnet18",
        "dm_preact_resnet18@cifar100",
    ] {
        let r = &archs[name];
        let diff = r["max_abs_diff"].as_f64().unwrap_or_else(|| panic!("{name}: {r}"));
        assert!(diff <= 1e-4 && r["agree"] == true, "{name}: {r}");
        assert!(r["max_abs_logit"].as_f64().unwrap() > 0.1, "{name}: logits too small to compare: {r}");
    }
    // Every checkpoint variant RobustBench ships was read.
    let variants: std::collections::BTreeSet<&str> = archs.values().filter_map(|r| r["variant"].as_str()).collect();
    assert_eq!(variants.len(), 6, "{variants:?}");
}

/// A zoo checkpoint (robustbench's PreActResNet-18, `{"state_dict": …}`) evaluated end to end by
/// `infoat eval --checkpoint` under the paper's white-box suite, AutoAttack included, with its
/// sanity checks and diagnostics, on the shipped CIFAR-10 images, with no Python in the loop;
/// the evaluation is refused as a model card (20 images are not RobustBench's protocol); the
/// wrong architecture is a named error.
#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored); about 3 minutes on 2 cores"]
fn a_zoo_checkpoint_evaluates_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let rb = robustbench_dir();
    let ckpt = dir.path().join("zoo.pt");
    run_repo_python(
        "ci/crosscheck/robustbench_archs.py",
        &["save", "--robustbench", rb.to_str().unwrap(), "preact_resnet18", ckpt.to_str().unwrap()],
    );
    let data = repo_root().join("fixtures/data/cifar10");
    let data = data.to_str().unwrap();
    let out = infoat(dir.path())
        .args(["eval", "--checkpoint", "zoo.pt", "--arch", "preact_resnet18", "--dataset", "cifar10"])
        .args(["--data-dir", data, "--device", "cpu", "--json", "--attacks"])
        .arg("fgsm,pgd20,pgd100,pgd_plus,cw20,cw100,bpda,infopgd20,aa")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = stdout_json(&out);
    assert_eq!(ev["model"]["source"], "checkpoint");
    assert_eq!(ev["model"]["arch"], "preact_resnet18");
    assert_eq!(ev["n"], 20, "{ev}");
    assert_eq!(ev["attacks"].as_object().unwrap().len(), 9, "{ev}");
    let aa = &ev["attacks"]["aa"];
    assert!(aa["robust_acc"].as_f64().unwrap() <= ev["clean_acc"].as_f64().unwrap(), "{ev}");
    // AutoAttack's planted self-tests ran on the zoo model's twins and passed.
    let tests = aa["diagnostics"]["self_tests"].as_object().unwrap_or_else(|| panic!("{aa}"));
    assert_eq!(tests.len(), 3, "{aa}");
    for (name, t) in tests {
        assert_eq!(t["found"], t["planted"], "{name}: {t}");
    }
    let key = ev["key"].as_str().unwrap();

    // The evaluation leaves in RobustBench's external-evaluation layout with the zoo weights as
    // safetensors, and a fresh registry verifies every image from that folder alone.
    let out = infoat(dir.path()).args(["evidence", "export", &key[..12], "--out", "ev"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head = std::fs::read(dir.path().join("ev/model.safetensors")).unwrap();
    assert_ne!(&head[..2], b"PK", "the layout's model file is safetensors, not the torch.save zip");
    let out = infoat(dir.path())
        .args(["evidence", "import", "ev", "--registry", "fresh", "--data-dir", data, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_json(&out)["rejected"], 0);

    let out = infoat(dir.path()).args(["export", "robustbench", &key[..12]]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not exported") && err.contains("20 clean"), "{err}");

    let out = infoat(dir.path())
        .args(["logits", "--checkpoint", "zoo.pt", "--arch", "dm_preact_resnet18", "--dataset", "cifar10"])
        .args(["--data-dir", data])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zoo.pt") && err.contains("dm_preact_resnet18") && err.contains("missing"), "{err}");
}

/// A model card exported from the fixture registry (an evaluation under RobustBench's protocol)
/// is read by robustbench 1.1.1's own `ModelInfo` with the field types RobustBench's cards use,
/// and sorted into the shipped leaderboard by its template's sort key at the rank `infoat
/// compare` gives it.
#[test]
fn model_cards_read_back_as_robustbench_reads_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = repo_root().join("fixtures/reports/robustbench-bundle");
    let out = infoat(dir.path()).args(["registry", "import", bundle.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ls = infoat(dir.path()).args(["registry", "ls"]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    let line = ls.lines().find(|l| l.contains("on 10000")).unwrap_or_else(|| panic!("{ls}"));
    let key = line.split_whitespace().nth(1).unwrap();
    let out = infoat(dir.path())
        .args(["export", "robustbench", key, "--name", "A defense", "--authors", "A. Author", "--venue", "arXiv"])
        .args(["--link", "https://arxiv.org/abs/0000.00000", "--out", "model_info/cifar10/Linf/Author2026A.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let card = dir.path().join("model_info/cifar10/Linf/Author2026A.json");
    let rb = robustbench_dir();
    let py: serde_json::Value = serde_json::from_str(&run_repo_python(
        "ci/crosscheck/robustbench_card.py",
        &["--robustbench", rb.to_str().unwrap(), card.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(py["problems"], serde_json::json!([]), "{py}");
    assert_eq!(py["model_info"]["autoattack_acc"], "59.12");
    assert_eq!(py["model_info"]["name"], "A defense");

    let out = infoat(dir.path()).args(["compare", key, "--format", "json", "--out", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = stdout_json(&out);
    assert_eq!(c["leaderboard"]["rank"], py["rank"], "infoat compare and RobustBench's sort agree");
    assert_eq!(c["leaderboard"]["of"], py["of"]);
}
