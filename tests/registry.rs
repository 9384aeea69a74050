//! The registry through the binary (issue 5): crash safety under real SIGKILLs at several
//! moments, one writer at a time, and bundles moving results between registries.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infoat_tests::{infoat, infoat_bin, stdout_json, tiny_config};

fn spawn(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(infoat_bin())
        .current_dir(dir)
        .env("INFOAT_REGISTRY", dir.join("registry"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn ls(dir: &std::path::Path) -> serde_json::Value {
    let out = infoat(dir).args(["registry", "ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "the registry must open after a kill: {}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

/// Kills training at several moments (while loading data, mid-epoch, right after an epoch's
/// state is written) and an evaluation mid-attack. After every kill the registry opens,
/// verifies clean, holds no record claiming completeness without its blob, and the next run
/// finishes on the same checkpoint hash as an uninterrupted one.
#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn sigkill_at_any_moment_loses_nothing_and_claims_nothing() {
    let whole_dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(41, 6000).replace("epochs = 1", "epochs = 2");
    std::fs::write(whole_dir.path().join("c.toml"), &cfg).unwrap();
    let whole = stdout_json(
        &infoat(whole_dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap(),
    );
    let expect = whole["record"]["checkpoint_hash"].clone();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), &cfg).unwrap();
    for delay_ms in [150u64, 1500, 4000] {
        let mut child = spawn(dir.path(), &["--quiet", "train", "--config", "c.toml"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let l = ls(dir.path());
        for r in l["runs"].as_array().unwrap() {
            if r["status"]["state"] == "complete" {
                assert_eq!(r["checkpoint_hash"], expect, "a complete record must be the finished run: {l}");
            }
        }
        infoat(dir.path()).args(["registry", "verify"]).assert().success();
    }
    // Kill right after the first epoch's state is on disk.
    let work = dir.path().join("registry/work").join(whole["record"]["config_hash"].as_str().unwrap());
    if ls(dir.path())["runs"].as_array().unwrap().iter().all(|r| r["status"]["state"] != "complete") {
        let mut child = spawn(dir.path(), &["--quiet", "train", "--config", "c.toml"]);
        let deadline = Instant::now() + Duration::from_secs(300);
        while !work.join("state/epoch-0001.safetensors").exists() && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no epoch state after 300 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().unwrap();
        infoat(dir.path()).args(["registry", "verify"]).assert().success();
    }
    let done =
        stdout_json(&infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    assert_eq!(done["record"]["checkpoint_hash"], expect);
    let complete: Vec<_> = ls(dir.path())["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"]["state"] == "complete")
        .cloned()
        .collect();
    assert_eq!(complete.len(), 1, "{complete:?}");

    // An evaluation killed mid-attack records nothing; the next one runs in full.
    let config = whole["record"]["config_hash"].as_str().unwrap();
    let eval = ["eval", "--run", config, "--limit", "300", "--attacks", "pgd100", "--eps", "0.3", "--json"];
    let mut child = spawn(dir.path(), &eval);
    std::thread::sleep(Duration::from_millis(2500));
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(ls(dir.path())["evals"].as_array().unwrap().len(), 0);
    let r = stdout_json(&infoat(dir.path()).args(eval).output().unwrap());
    assert_eq!(r["reused"], false);
    assert_eq!(ls(dir.path())["evals"].as_array().unwrap().len(), 1);
}

#[test]
fn a_second_process_is_told_who_holds_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(43, 20_000)).unwrap();
    let mut child = spawn(dir.path(), &["--quiet", "train", "--config", "c.toml"]);
    let lock = dir.path().join("registry/LOCK");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&lock).map(|s| s.is_empty()).unwrap_or(true) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = infoat(dir.path()).args(["registry", "ls"]).output().unwrap();
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", child.id())) && err.contains("train"), "{err}");
}

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn bundles_move_results_between_registries_idempotently() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("c.toml"), tiny_config(45, 640)).unwrap();
    let run =
        stdout_json(&infoat(a.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let config = run["record"]["config_hash"].as_str().unwrap();
    let eval = ["eval", "--run", config, "--limit", "100", "--attacks", "fgsm", "--json"];
    let first = stdout_json(&infoat(a.path()).args(eval).output().unwrap());
    let bundle = b.path().join("bundle");
    infoat(a.path()).args(["registry", "export"]).arg(&bundle).assert().success();
    let imported = stdout_json(&infoat(b.path()).args(["registry", "import", "--json"]).arg(&bundle).output().unwrap());
    // The run, the eval and its flags; the paper's published numbers are in both already.
    assert_eq!(imported["added"], 3, "{imported}");
    assert_eq!(imported["rejected"].as_array().unwrap().len(), 0, "{imported}");
    let published = imported["identical"].as_u64().unwrap();
    assert!(published > 100, "{imported}");
    // The checkpoint and the FGSM witnesses (issue 21).
    assert_eq!(imported["blobs_added"], 2, "{imported}");
    let again = stdout_json(&infoat(b.path()).args(["registry", "import", "--json"]).arg(&bundle).output().unwrap());
    assert_eq!(again["added"], 0);
    assert_eq!(again["identical"].as_u64().unwrap(), published + 3);
    // The imported registry answers the same evaluation without attacking, and reuses the run.
    std::fs::write(b.path().join("c.toml"), tiny_config(45, 640)).unwrap();
    let reused =
        stdout_json(&infoat(b.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    assert_eq!(reused["reused"], true);
    let second = stdout_json(&infoat(b.path()).args(eval).output().unwrap());
    assert_eq!(second["reused"], true);
    assert_eq!(second["attacks"], first["attacks"]);
    infoat(b.path()).args(["registry", "verify"]).assert().success();
    // The witnesses travelled with the bundle and are confirmed there.
    infoat(b.path()).args(["verify-evidence", "--all"]).assert().success();
}
