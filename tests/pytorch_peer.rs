//! Cross-checks against an independent PyTorch implementation (`ci/peers/pytorch_reference.py`):
//! the reference SmallCNN must load our checkpoints with `load_state_dict(strict=True)` and
//! agree on accuracy, and its seeded initialisation must hash to our golden initial digest.

use infoat_tests::{infoat, mnist_dir, repo_root, stdout_json, tiny_config, torch_python};

fn peer(args: &[&str]) -> String {
    let out = std::process::Command::new(torch_python())
        .arg(repo_root().join("ci/peers/pytorch_reference.py"))
        .args(args)
        .output()
        .expect("run the PyTorch peer");
    assert!(out.status.success(), "peer failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pytorch_initialisation_hashes_to_our_golden_digest() {
    let golden = std::fs::read_to_string(repo_root().join("fixtures/golden/smallcnn_quickstart_init.txt")).unwrap();
    // The quickstart preset's seed is 0.
    assert_eq!(peer(&["init-digest", "0"]).trim(), golden.trim());
}

#[test]
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
