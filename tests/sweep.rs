//! `infoat sweep --emit slurm` on a real Slurm (issue 8): a single-node cluster on localhost
//! (ci/bootstrap-slurm installs Debian's Slurm and munge, ci/slurm-local runs it), a three-run
//! CPU preset as a job array, each task into its own registry shard, `merge.sh` into one
//! registry; the merged registry must hold every run, with the checkpoints a local run gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use infoat_tests::{infoat, infoat_bin, repo_root, stdout_json};

const PRESET: &str = r#"
name = "tiny-sweep"
description = "three tiny MNIST runs for the Slurm e2e test"

[[runs]]
name = "natural_s0"
eval = { attacks = ["fgsm"], limit = 50 }
config = { seed = 0, device = "cpu", data = { dataset = "mnist", train_limit = 512, test_limit = 500 }, model = { arch = "smallcnn" }, method = { kind = "natural" }, train = { epochs = 1, batch_size = 64 } }

[[runs]]
name = "natural_s1"
eval = { attacks = ["fgsm"], limit = 50 }
config = { seed = 1, device = "cpu", data = { dataset = "mnist", train_limit = 512, test_limit = 500 }, model = { arch = "smallcnn" }, method = { kind = "natural" }, train = { epochs = 1, batch_size = 64 } }

[[runs]]
name = "at_s0"
eval = { attacks = ["fgsm", "pgd20"], limit = 50 }
config = { seed = 0, device = "cpu", data = { dataset = "mnist", train_limit = 256, test_limit = 500 }, model = { arch = "smallcnn" }, method = { kind = "at", inner = { steps = 3 } }, train = { epochs = 1, batch_size = 64 } }
"#;

/// Stops the cluster however the test ends.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("ci/slurm-local")).arg("stop").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn runs_in(registry: &Path, dir: &Path) -> Vec<serde_json::Value> {
    let out = infoat(dir).args(["registry", "ls", "--json", "--registry"]).arg(registry).output().unwrap();
    stdout_json(&out)["runs"].as_array().cloned().unwrap_or_default()
}

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn a_preset_sweeps_as_a_slurm_job_array_and_the_shards_merge() {
    let root = repo_root();
    run(&mut Command::new(root.join("ci/bootstrap-slurm")));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = run(Command::new(root.join("ci/slurm-local")).arg("start").arg(d.join("slurm")));
    let _cluster = Cluster(d.join("slurm"));
    let conf = conf.trim().to_string();
    std::fs::write(d.join("tiny.toml"), PRESET).unwrap();

    let out = infoat(d)
        .args(["sweep", "tiny.toml", "--emit", "slurm", "--out", "sweep", "--registry", "main"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = String::from_utf8(out.stdout).unwrap();
    let script = PathBuf::from(script.trim());
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-2") && text.contains("#SBATCH --time=0:10:00"), "{text}");
    assert!(!text.contains("--gres"), "a CPU preset asks for no GPU: {text}");
    assert!(text.contains(&infoat_bin().display().to_string()), "tasks run this binary: {text}");
    let tsv = std::fs::read_to_string(d.join("sweep/runs.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 4, "{tsv}");

    let job = run(Command::new("sbatch").arg("--parsable").arg(&script).env("SLURM_CONF", &conf).current_dir(d));
    let job = job.trim().split(';').next().unwrap().to_string();
    let states = run(Command::new(root.join("ci/slurm-local")).args(["wait", &job, "900"]).env("SLURM_CONF", &conf));
    for task in 0..3 {
        let err = std::fs::read_to_string(d.join(format!("sweep/logs/{task}.err"))).unwrap_or_default();
        assert!(d.join(format!("sweep/shards/{task}")).is_dir(), "task {task} left no shard ({states}): {err}");
    }
    assert!(!states.contains("FAILED"), "{states}");

    run(Command::new("sh").arg(d.join("sweep/merge.sh")).current_dir(d));
    let merged = runs_in(&d.join("main"), d);
    let complete: Vec<_> = merged.iter().filter(|r| r["status"]["state"] == "complete").collect();
    assert_eq!(complete.len(), 3, "{merged:?}");
    // Merging again adds nothing.
    run(Command::new("sh").arg(d.join("sweep/merge.sh")).current_dir(d));
    assert_eq!(runs_in(&d.join("main"), d).len(), merged.len());

    // The merged registry holds everything the preset asks for, evaluations included ...
    let dry = stdout_json(
        &infoat(d).args(["reproduce", "tiny.toml", "--dry-run", "--json", "--registry", "main"]).output().unwrap(),
    );
    for r in dry["runs"].as_array().unwrap() {
        assert_eq!(r["done"], true, "{r}");
    }
    // ... and a task's checkpoint is the one the same run gives here, outside Slurm.
    let local = stdout_json(
        &infoat(d)
            .args(["--quiet", "reproduce", "tiny.toml", "--only", "at_s0", "--json", "--registry", "local"])
            .output()
            .unwrap(),
    );
    let at = &local["runs"][0];
    let swept = complete.iter().find(|r| r["config_hash"] == at["config_hash"]).expect("at_s0 in the merged registry");
    assert_eq!(swept["checkpoint_hash"], at["checkpoint_hash"]);
}
