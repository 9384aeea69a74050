//! Training and evaluation runs: determinism, reuse, JSON output, evaluation on real fixtures.

use infoat_tests::{infoat, stdout_json, tiny_config};

fn train_json(dir: &std::path::Path, config: &str, extra: &[&str]) -> serde_json::Value {
    std::fs::write(dir.join("c.toml"), config).unwrap();
    let out = infoat(dir).args(["--quiet", "train", "--config", "c.toml", "--json"]).args(extra).output().unwrap();
    assert!(out.status.success(), "train failed: {}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

/// Same config on CPU => same checkpoint hash, from two separate processes and folders; another
/// seed => another hash; a rerun reuses the complete run without training.
#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn same_config_same_checkpoint_hash_and_reruns_are_free() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = tiny_config(11, 640);
    let ra = train_json(a.path(), &cfg, &[]);
    let rb = train_json(b.path(), &cfg, &[]);
    assert_eq!(ra["reused"], false);
    assert_eq!(ra["record"]["config_hash"], rb["record"]["config_hash"]);
    assert_eq!(ra["record"]["checkpoint_hash"], rb["record"]["checkpoint_hash"], "CPU training must be deterministic");
    assert_eq!(ra["record"]["epochs"][0]["metrics"]["loss"], rb["record"]["epochs"][0]["metrics"]["loss"]);
    assert_eq!(ra["record"]["epochs"][0]["checkpoint_hash"], ra["record"]["checkpoint_hash"], "one epoch");
    assert_eq!(ra["record"]["data"]["images"], 640);
    assert_eq!(ra["record"]["status"]["state"], "complete");

    let rc = train_json(a.path(), &tiny_config(12, 640), &[]);
    assert_ne!(ra["record"]["checkpoint_hash"], rc["record"]["checkpoint_hash"], "the seed must matter");

    let again = train_json(a.path(), &cfg, &[]);
    assert_eq!(again["reused"], true);
    assert_eq!(again["record"]["checkpoint_hash"], ra["record"]["checkpoint_hash"]);

    // --force trains again and, deterministically, lands on the same hash.
    let forced = train_json(a.path(), &cfg, &["--force"]);
    assert_eq!(forced["reused"], false);
    assert_eq!(forced["record"]["checkpoint_hash"], ra["record"]["checkpoint_hash"]);

    // The record carries the environment and the data fingerprint.
    let rec = &ra["record"];
    assert_eq!(rec["env"]["device"], "cpu");
    assert_eq!(rec["env"]["libtorch"], "2.11.0");
    assert_eq!(rec["data"]["fingerprint"].as_str().unwrap().len(), 64);

    // Both attempts are in the registry; a checkpoint blob that rots is not reused: the run
    // is trained again, and `registry verify` reports the damage.
    let ls = stdout_json(&infoat(a.path()).args(["registry", "ls", "--json"]).output().unwrap());
    let hash = ra["record"]["config_hash"].as_str().unwrap();
    let attempts = ls["runs"].as_array().unwrap().iter().filter(|r| r["config_hash"] == hash).count();
    assert_eq!(attempts, 2, "{ls}");
    let blob = std::path::PathBuf::from(ra["checkpoint_path"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    let verify = infoat(a.path()).args(["registry", "verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("corrupt"));
    let redo = train_json(a.path(), &cfg, &[]);
    assert_eq!(redo["reused"], false);
    assert_eq!(redo["record"]["checkpoint_hash"], ra["record"]["checkpoint_hash"]);
    infoat(a.path()).args(["registry", "verify"]).assert().success();
}

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn eval_reports_clean_accuracy_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_json(dir.path(), &tiny_config(3, 4096).replace("epochs = 1", "epochs = 2"), &[]);
    let ckpt = run["checkpoint_path"].as_str().unwrap();
    let out = infoat(dir.path()).args(["eval", "--checkpoint", ckpt, "--json", "--limit", "1000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    assert_eq!(r["clean"]["total"], 1000);
    let acc = r["clean"]["accuracy"].as_f64().unwrap();
    // 4,096 real MNIST images for two epochs: far above chance, not yet converged.
    assert!(acc > 0.8 && acc < 1.0, "accuracy {acc}");
    assert_eq!(r["model"]["hash"], run["record"]["checkpoint_hash"]);
    assert_eq!(r["reused"], false);
    assert_eq!(r["model"]["source"], "checkpoint");
    assert_eq!(r["model"]["arch"], "smallcnn");
    assert_eq!(r["data"]["dataset"], "mnist");

    // Attacks: the JSON shape, and worst case <= every attack <= clean.
    let out = infoat(dir.path())
        .args(["eval", "--checkpoint", ckpt, "--json", "--limit", "200", "--attacks", "fgsm,pgd20", "--eps", "0.3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    assert_eq!(r["n"], 200);
    let clean = r["clean_acc"].as_f64().unwrap();
    let fgsm = r["attacks"]["fgsm"]["robust_acc"].as_f64().unwrap();
    let pgd = r["attacks"]["pgd20"]["robust_acc"].as_f64().unwrap();
    let worst = r["worst_case_acc"].as_f64().unwrap();
    assert!(r["attacks"]["pgd20"]["seconds"].as_f64().unwrap() > 0.0);
    assert!(worst <= fgsm.min(pgd) && fgsm <= clean && pgd <= clean, "{r}");
    assert!(pgd < clean, "PGD-20 at eps 0.3 must break a naturally trained model: {r}");

    // The human-readable form says the same.
    let text = infoat(dir.path()).args(["eval", "--checkpoint", ckpt, "--limit", "1000"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("{:.2}%", 100.0 * acc)), "{text}");
}

/// A run killed (SIGKILL) after its first epoch checkpoint resumes from it and ends with the
/// same checkpoint hash as an uninterrupted run; the killed run is never recorded as complete.
#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn a_killed_run_resumes_to_the_same_checkpoint() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Momentum SGD, so the optimizer state must survive the restart too.
    let cfg = tiny_config(21, 6_000).replace("epochs = 1", "epochs = 3");
    let whole = train_json(a.path(), &cfg, &[]);

    std::fs::write(b.path().join("c.toml"), &cfg).unwrap();
    let mut child = std::process::Command::new(infoat_tests::infoat_bin())
        .current_dir(b.path())
        .env("INFOAT_REGISTRY", b.path().join("registry"))
        .args(["--quiet", "train", "--config", "c.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let work = b.path().join("registry/work").join(whole["record"]["config_hash"].as_str().unwrap());
    let first_state = work.join("state").join("epoch-0001.safetensors");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !first_state.exists() {
        assert!(std::time::Instant::now() < deadline, "no epoch state after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The registry opens (the lock died with the process) and holds the attempt as running.
    let ls = stdout_json(&infoat(b.path()).args(["registry", "ls", "--json"]).output().unwrap());
    let states: Vec<&str> =
        ls["runs"].as_array().unwrap().iter().map(|r| r["status"]["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running"], "a killed run must not be recorded as complete: {ls}");

    std::fs::write(b.path().join("c.toml"), &cfg).unwrap();
    let out = infoat(b.path()).args(["train", "--config", "c.toml", "--resume", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming after epoch"), "{stderr}");
    let resumed = stdout_json(&out);
    assert_eq!(resumed["record"]["checkpoint_hash"], whole["record"]["checkpoint_hash"]);
    assert_eq!(resumed["record"]["epochs"].as_array().unwrap().len(), 3);
    // The resumed attempt is the interrupted one, now complete: one record, not two.
    let ls = stdout_json(&infoat(b.path()).args(["registry", "ls", "--json"]).output().unwrap());
    assert_eq!(ls["runs"].as_array().unwrap().len(), 1, "{ls}");
    assert!(!work.exists(), "the work folder is cleared once the run is complete");

    // Now complete, and a config never started: --resume refuses both.
    let again = infoat(b.path()).args(["train", "--config", "c.toml", "--resume"]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("complete run"));
    std::fs::write(b.path().join("d.toml"), tiny_config(22, 64)).unwrap();
    let fresh = infoat(b.path()).args(["train", "--config", "d.toml", "--resume"]).output().unwrap();
    assert_eq!(fresh.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fresh.stderr).contains("nothing to resume"));
}
