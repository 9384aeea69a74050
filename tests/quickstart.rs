//! The README's main job: `infoat reproduce quickstart` trains SmallCNN on the full real MNIST
//! on CPU and must reach its 98 % target; a second run reuses everything.

use infoat_tests::{infoat, stdout_json};

#[test]
fn quickstart_reaches_its_target_and_reruns_for_free() {
    let dir = tempfile::tempdir().unwrap();
    let out = infoat(dir.path()).args(["--quiet", "reproduce", "quickstart", "--json"]).output().unwrap();
    assert!(out.status.success(), "quickstart failed: {}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    let run = &r["runs"][0];
    assert_eq!(run["pass"], true, "{r}");
    assert_eq!(run["test_images"], 10_000);
    assert!(run["clean_accuracy"].as_f64().unwrap() >= 0.98, "{r}");
    assert_eq!(run["reused"], false);

    let again =
        stdout_json(&infoat(dir.path()).args(["--quiet", "reproduce", "quickstart", "--json"]).output().unwrap());
    assert_eq!(again["runs"][0]["reused"], true);
    assert_eq!(again["runs"][0]["checkpoint_hash"], run["checkpoint_hash"]);
    assert_eq!(again["runs"][0]["clean_accuracy"], run["clean_accuracy"]);
}
