//! The benchmark scripts of `ci/bench/` (issue 9) run and say what they claim: the PyTorch peer
//! times a step, and the kernel-ceiling script orders the works and reads a committed results
//! file. Tiny settings: these check the scripts, not the machine.

use infoat_tests::{repo_root, torch_python};
use serde_json::Value;

fn script(name: &str, args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(torch_python())
        .arg(repo_root().join("ci/bench").join(name))
        .args(args)
        .output()
        .expect("run the script with the torch venv's python");
    assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name} printed a non-JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn pytorch_peer_times_a_pgd_step() {
    let lines = script(
        "pytorch_peer.py",
        &[
            "--arch",
            "smallcnn",
            "--work",
            "pgd",
            "--batch-size",
            "4",
            "--warmup",
            "0",
            "--steps",
            "1",
            "--threads",
            "1",
        ],
    );
    assert_eq!(lines.len(), 1);
    let r = &lines[0];
    assert_eq!(r["work"], "pgd");
    assert_eq!(r["batch_size"], 4);
    assert!(r["images_per_second"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn conv_bound_orders_the_works_and_reads_committed_results() {
    let results = repo_root().join("docs/cpu/2026-11-26-dev-vm-pool/throughput.jsonl");
    let lines = script(
        "conv_bound.py",
        &["--repeats", "1", "--calls", "1", "--threads", "1", "--results", results.to_str().unwrap()],
    );
    let works: Vec<&str> = lines.iter().map(|l| l["work"].as_str().unwrap()).collect();
    assert_eq!(works, ["pgd", "at", "trades", "infoat"]);
    let bound: Vec<f64> = lines.iter().map(|l| l["bound_ms_per_step"].as_f64().unwrap()).collect();
    // AT adds one training pass to the attack; TRADES and InfoAT a clean pass and two training
    // passes; both have the same passes.
    assert!(0.0 < bound[0] && bound[0] < bound[1] && bound[1] < bound[2], "{bound:?}");
    assert_eq!(bound[2], bound[3]);
    for l in &lines {
        let ceiling = l["ceiling_images_per_second"].as_f64().unwrap();
        assert!((ceiling - 128.0 * 1e3 / l["bound_ms_per_step"].as_f64().unwrap()).abs() < 1e-6 * ceiling, "{l}");
        // The committed run measured every work: reference, tuned, both harness layouts.
        let m = &l["measured_images_per_second"];
        for who in ["reference", "tuned", "tuned + heap", "harness NCHW", "harness channels-last"] {
            assert!(m[who].as_f64().unwrap() > 0.0, "{who} missing for {}: {m}", l["work"]);
        }
        let best = m["harness NCHW"].as_f64().unwrap().max(m["harness channels-last"].as_f64().unwrap());
        assert_eq!(m["harness"].as_f64().unwrap(), best);
        let over = l["ceiling_over_reference"].as_f64().unwrap();
        assert!((over - ceiling / m["reference"].as_f64().unwrap()).abs() < 1e-9, "{l}");
    }
}
