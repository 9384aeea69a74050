//! Cross-checks against an independent PyTorch implementation (`ci/peers/pytorch_reference.py`):
//! the reference SmallCNN must load our checkpoints with `load_state_dict(strict=True)` and
//! agree on accuracy, and its seeded initialisation must hash to our golden initial digest.

use infoat_tests::{infoat, mnist_dir, repo_root, run_repo_python, stdout_json, tiny_config};

fn peer(args: &[&str]) -> String {
    run_repo_python("ci/peers/pytorch_reference.py", args)
}

#[test]
fn pytorch_initialisation_hashes_to_our_golden_digest() {
    let golden = std::fs::read_to_string(repo_root().join("fixtures/golden/smallcnn_quickstart_init.txt")).unwrap();
    // The quickstart preset's seed is 0.
    assert_eq!(peer(&["init-digest", "0"]).trim(), golden.trim());
}

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn pytorch_loads_our_checkpoint_and_agrees_on_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(5, 2048).replace("epochs = 1", "epochs = 2")).unwrap();
    let run =
        stdout_json(&infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let ckpt = run["checkpoint_path"].as_str().expect("checkpoint path");
    let ours = stdout_json(
        &infoat(dir.path()).args(["eval", "--checkpoint", ckpt, "--limit", "2000", "--json"]).output().unwrap(),
    );
    let theirs: serde_json::Value =
        serde_json::from_str(&peer(&["eval", ckpt, mnist_dir().to_str().unwrap(), "2000"])).unwrap();
    assert_eq!(theirs["total"], 2000);
    assert_eq!(ours["clean"]["correct"], theirs["correct"], "ours {ours}, PyTorch {theirs}");
    assert!(theirs["accuracy"].as_f64().unwrap() > 0.8, "{theirs}");
}

/// One model, three ways in: `--run HASH`, `--checkpoint FILE` and the same weights exported by
/// PyTorch as TorchScript give the same clean and robust accuracy on the same examples.
#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn run_checkpoint_and_torchscript_sources_agree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(7, 2048)).unwrap();
    let run =
        stdout_json(&infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let ckpt = run["checkpoint_path"].as_str().expect("checkpoint path");
    let hash = run["record"]["config_hash"].as_str().unwrap();
    let script = dir.path().join("model.pt");
    peer(&["torchscript", ckpt, script.to_str().unwrap()]);
    let common = ["--dataset", "mnist", "--limit", "300", "--attacks", "fgsm,pgd20", "--eps", "0.3", "--json"];
    let eval = |source: &[&str]| {
        let out = infoat(dir.path()).arg("eval").args(source).args(common).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stdout_json(&out)
    };
    let by_run = eval(&["--run", &hash[..12]]);
    let by_ckpt = eval(&["--checkpoint", ckpt]);
    let by_script = eval(&["--torchscript", script.to_str().unwrap()]);
    assert_eq!(by_run["model"]["source"], "run");
    assert_eq!(by_run["model"]["config_hash"], run["record"]["config_hash"]);
    assert_eq!(by_run["model"]["hash"], by_ckpt["model"]["hash"]);
    assert_eq!(by_script["model"]["source"], "torchscript");
    assert!(by_script["model"]["arch"].is_null());
    for key in ["n", "clean_acc"] {
        assert_eq!(by_run[key], by_ckpt[key]);
        assert_eq!(by_script[key], by_ckpt[key], "{by_script} vs {by_ckpt}");
    }
    for attack in ["fgsm", "pgd20"] {
        let c = by_ckpt["attacks"][attack]["robust"]["correct"].as_i64().unwrap();
        assert_eq!(by_run["attacks"][attack]["robust"]["correct"].as_i64().unwrap(), c, "{attack}");
        // TorchScript may fuse operations differently: allow one example of float noise.
        let s = by_script["attacks"][attack]["robust"]["correct"].as_i64().unwrap();
        assert!((s - c).abs() <= 1, "{attack}: TorchScript {s} vs checkpoint {c}");
    }
    assert_eq!(by_ckpt["flagged"], false, "{by_ckpt}");

    // Channels-last (issue 24): the same model and attacks under their own key, the same clean
    // verdicts, robust counts within one example of float noise of the NCHW evaluation's.
    for (source, nchw) in
        [(vec!["--checkpoint", ckpt], &by_ckpt), (vec!["--torchscript", script.to_str().unwrap()], &by_script)]
    {
        let mut args = source.clone();
        args.push("--channels-last");
        let cl = eval(&args);
        assert_ne!(cl["key"], nchw["key"], "channels-last is keyed apart");
        assert_eq!(cl["model"]["hash"], nchw["model"]["hash"]);
        assert_eq!(cl["clean_acc"], nchw["clean_acc"], "{source:?}");
        for attack in ["fgsm", "pgd20"] {
            let (a, b) = (
                cl["attacks"][attack]["robust"]["correct"].as_i64().unwrap(),
                nchw["attacks"][attack]["robust"]["correct"].as_i64().unwrap(),
            );
            assert!((a - b).abs() <= 1, "{source:?} {attack}: channels-last {a} vs NCHW {b}");
        }
    }

    // A model with a saturated softmax (logits × 1e4) has zero cross-entropy gradients: flagged.
    let masked = dir.path().join("masked.pt");
    peer(&["torchscript", ckpt, masked.to_str().unwrap(), "10000"]);
    let m = eval(&["--torchscript", masked.to_str().unwrap()]);
    assert_eq!(m["flagged"], true, "{m}");
    let checks: Vec<&str> = m["sanity"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    assert!(checks.contains(&"zero_gradients"), "{m}");

    // Bad input: not TorchScript, no dataset, wrong class count.
    std::fs::write(dir.path().join("junk.pt"), b"not a module").unwrap();
    let out = infoat(dir.path()).args(["eval", "--torchscript", "junk.pt", "--dataset", "mnist"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.pt") && err.contains("torch.jit") && !err.contains("panicked"), "{err}");
    let out = infoat(dir.path()).args(["eval", "--torchscript", script.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dataset"));
    let out = infoat(dir.path())
        .args(["eval", "--torchscript", script.to_str().unwrap(), "--dataset", "cifar100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
