//! Presets (issue 8): the list with cost estimates, a dry run that says what the registry
//! holds, and a preset that keeps going past a failed run and says so at the end.

use infoat_tests::{infoat, stdout_json};

#[test]
fn the_list_and_a_dry_run_estimate_the_gpu_presets() {
    let dir = tempfile::tempdir().unwrap();
    let list = stdout_json(&infoat(dir.path()).args(["reproduce", "--list", "--json"]).output().unwrap());
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    // Every preset file of the repository, by its file name (which is its `name`).
    let files = std::fs::read_dir(infoat_tests::repo_root().join("fixtures/presets")).unwrap();
    let mut wanted: Vec<String> = files
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    wanted.sort();
    assert!(wanted.len() >= 12, "{wanted:?}");
    for want in &wanted {
        assert!(names.contains(&want.as_str()), "{want} missing from {names:?}");
    }
    let by = |n: &str| list.as_array().unwrap().iter().find(|p| p["name"] == n).unwrap().clone();
    assert!(by("quickstart")["estimate"].as_str().unwrap().ends_with("CPU-min"));
    assert!(by("table2")["estimate"].as_str().unwrap().ends_with("GPU-h"));
    assert_eq!(by("paper")["runs"], 95);
    assert_eq!(by("paper")["models"], 72, "tables share models: each trains once");

    let dry = stdout_json(&infoat(dir.path()).args(["reproduce", "table2", "--dry-run", "--json"]).output().unwrap());
    let runs = dry["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 18);
    assert!(runs.iter().all(|r| r["done"] == false && r["status"]["checkpoint_hash"].is_null()));
    assert!(dry["estimate_s"]["gpu"].as_f64().unwrap() > 3600.0 * 10.0, "{}", dry["estimate_s"]);
}

#[test]
fn a_failed_run_does_not_stop_the_others_and_is_reported_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let preset = r#"
name = "keep-going"
description = "one run without its data, one that trains"

[[runs]]
name = "no_data"
config = { seed = 0, device = "cpu", data = { dataset = "cifar10", train_limit = 64 }, model = { arch = "resnet18" }, method = { kind = "natural" }, train = { epochs = 1, batch_size = 32 } }

[[runs]]
name = "tiny"
eval = { attacks = ["fgsm"], limit = 20 }
config = { seed = 0, device = "cpu", data = { dataset = "mnist", train_limit = 256, test_limit = 200 }, model = { arch = "smallcnn" }, method = { kind = "natural" }, train = { epochs = 1, batch_size = 64 } }
"#;
    std::fs::write(dir.path().join("p.toml"), preset).unwrap();
    // A data folder with the real MNIST and an empty CIFAR-10.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("cifar10")).unwrap();
    std::os::unix::fs::symlink(infoat_tests::mnist_dir(), data.join("mnist")).unwrap();
    let out = infoat(dir.path())
        .env("INFOAT_DATA", &data)
        .args(["--quiet", "reproduce", "p.toml", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    assert_eq!(r["runs"].as_array().unwrap().len(), 1, "the run after the failed one went ahead");
    assert_eq!(r["runs"][0]["run"], "tiny");
    assert_eq!(r["failed"][0]["run"], "no_data");
    let err = r["failed"][0]["error"].as_str().unwrap();
    assert!(err.contains("cifar10") || err.contains("CIFAR-10"), "{err}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 2 runs failed"), "{stderr}");
}
