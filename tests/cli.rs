//! Help, listing and config inspection.

use infoat_tests::{infoat, stdout_json};
use predicates::prelude::*;
use predicates::str::contains;

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    infoat(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("train").and(contains("eval")).and(contains("reproduce")).and(contains("config")));
    infoat(dir.path())
        .args(["train", "--help"])
        .assert()
        .success()
        .stdout(contains("--config").and(contains("--data-dir")));
}

#[test]
fn reproduce_list_names_quickstart() {
    let dir = tempfile::tempdir().unwrap();
    infoat(dir.path()).args(["reproduce", "--list"]).assert().success().stdout(contains("quickstart"));
}

#[test]
fn config_prints_resolved_defaults_and_a_stable_hash() {
    let dir = tempfile::tempdir().unwrap();
    let minimal = "seed = 1\n[data]\ndataset = \"cifar10\"\n[model]\narch = \"resnet18\"\n[method]\nkind = \"natural\"\n[train]\nepochs = 120\n";
    // The same meaning, spelled out with the SPEC §2 defaults and in another key order.
    let explicit = "[train]\nbatch_size = 128\nepochs = 120\n[method]\nkind = \"natural\"\n[model]\narch = \"resnet18\"\n\
        [data]\naugment = \"crop_flip\"\ndataset = \"cifar10\"\n[optimizer]\nkind = \"sgd\"\nmomentum = 0.9\nlr = 0.01\n\
        weight_decay = 0.0035\n[schedule]\nkind = \"step\"\nmilestones = [75, 90, 100]\ngamma = 0.1\n";
    std::fs::write(dir.path().join("a.toml"), minimal).unwrap();
    std::fs::write(dir.path().join("b.toml"), format!("seed = 1\n{explicit}")).unwrap();
    std::fs::write(dir.path().join("c.toml"), format!("seed = 2\n{explicit}")).unwrap();
    let show = |f: &str| stdout_json(&infoat(dir.path()).args(["config", f]).output().unwrap());
    let (a, b, c) = (show("a.toml"), show("b.toml"), show("c.toml"));
    assert_eq!(a["config"]["data"]["augment"], "crop_flip", "{a}");
    assert_eq!(a["config"]["optimizer"]["weight_decay"], 0.0035);
    assert_eq!(a["config_hash"], b["config_hash"]);
    assert_ne!(a["config_hash"], c["config_hash"]);
}
