//! Preset workflow: what of a preset run the registry holds, and one run reproduced (trained
//! and evaluated, or both reused) with its verdict against the preset's targets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use infoat_registry::{ContentHash, EvalRecord, Registry};
use serde::Serialize;

use super::evaluate::{evaluate, EvalReport, EvalRequest, ModelSource};
use super::suite::SuiteRequest;
use super::train::STATE;
use super::train::{train_run, work_dir};
use super::{EVAL_SEMVER, TRAINING_SEMVER};
use crate::data::Dataset;
use crate::models::Arch;
use crate::preset::PresetRun;
use crate::sanity::SanityFlag;
use crate::train::{latest_state_epoch, Progress};
use crate::{Error, Result};

/// What of a preset run the registry already holds (`reproduce --dry-run`, `sweep`).
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    /// The run's config hash.
    pub config_hash: ContentHash,
    /// Its complete run's checkpoint, when trained.
    pub checkpoint_hash: Option<ContentHash>,
    /// Epochs an interrupted attempt has saved (training resumes after them).
    pub resume_after_epoch: Option<usize>,
    /// The white-box evaluation (clean accuracy and `eval.attacks`) is recorded.
    pub evaluated: bool,
    /// The black-box evaluation is recorded (`None`: the run has none).
    pub black_box_evaluated: Option<bool>,
}

impl PlanStatus {
    /// True when nothing is left to do.
    pub fn done(&self) -> bool {
        self.checkpoint_hash.is_some() && self.evaluated && self.black_box_evaluated != Some(false)
    }
}

/// Looks up, without loading data or models, what of `run` the registry holds. An evaluation
/// counts as recorded when one of the run's checkpoint has the planned suite, seed and number
/// of attacked images. `evals` are the registry's evaluation records, read once by the caller
/// for all of a preset's runs.
pub fn plan_status(run: &PresetRun, registry: &Registry, evals: &[EvalRecord]) -> Result<PlanStatus> {
    let cfg = &run.config;
    let hash = cfg.hash()?;
    let checkpoint_hash = registry.complete_run(&hash, TRAINING_SEMVER)?.and_then(|r| r.checkpoint_hash);
    let resume_after_epoch = match checkpoint_hash {
        Some(_) => None,
        None => latest_state_epoch(&work_dir(registry, &hash).join(STATE)),
    };
    let white = SuiteRequest::white_box(run).resolve(cfg.data.dataset)?;
    let black = SuiteRequest::black_box(run).map(|b| b.resolve(cfg.data.dataset)).transpose()?;
    let (mut evaluated, mut black_box_evaluated) = (false, black.as_ref().map(|_| false));
    if let Some(model) = checkpoint_hash {
        // The number of test images the evaluation will classify, known without the data.
        let (_, test_n) = crate::cost::split_sizes(cfg.data.dataset);
        let test_n = cfg.data.test_limit.map_or(test_n, |n| n.min(test_n));
        for e in evals.iter().filter(|e| e.eval_semver == EVAL_SEMVER) {
            evaluated |= white.matches(&e.key, model, white.subset(test_n).attacked)?;
            if let (Some(b), Some(done)) = (&black, black_box_evaluated.as_mut()) {
                *done |= b.matches(&e.key, model, b.subset(test_n).attacked)?;
            }
        }
    }
    Ok(PlanStatus { config_hash: hash, checkpoint_hash, resume_after_epoch, evaluated, black_box_evaluated })
}

/// One preset run, trained (or reused) and evaluated, with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PresetOutcome {
    /// The run's name in the preset.
    pub run: String,
    /// The method.
    pub method: String,
    /// The architecture.
    pub arch: Arch,
    /// The dataset.
    pub dataset: Dataset,
    /// The config hash.
    pub config_hash: ContentHash,
    /// The checkpoint hash.
    pub checkpoint_hash: ContentHash,
    /// The evaluation's registry key.
    pub eval_key: ContentHash,
    /// Its black-box evaluation's key, when the preset has one.
    pub black_box_eval_key: Option<ContentHash>,
    /// The checkpoint file (a registry blob).
    pub checkpoint: PathBuf,
    /// True when training was skipped because a complete run existed.
    pub reused: bool,
    /// True when the evaluation was found in the registry.
    pub eval_reused: bool,
    /// Training seconds (of the original run when reused).
    pub train_seconds: f64,
    /// Evaluation seconds (of the original evaluation when reused).
    pub eval_seconds: f64,
    /// Accuracy per metric: `clean` and each attack id.
    pub accuracy: BTreeMap<String, f64>,
    /// Images each metric was computed on.
    pub images: BTreeMap<String, usize>,
    /// Seconds each attack took.
    pub seconds: BTreeMap<String, f64>,
    /// The preset's targets.
    pub expect: BTreeMap<String, f64>,
    /// Metrics below their targets.
    pub missed: Vec<String>,
    /// The sanity checks the evaluation tripped ([`crate::sanity`]); non-empty means flagged.
    pub sanity: Vec<SanityFlag>,
}

/// Trains (or reuses) and evaluates (or reuses) one preset run.
pub fn reproduce_run(run: &PresetRun, registry: &Registry, force: bool, progress: Progress) -> Result<PresetOutcome> {
    let out = train_run(&run.config, None, registry, force, progress)?;
    let checkpoint_hash =
        out.record.checkpoint_hash.ok_or_else(|| Error::Invalid("a complete run has a checkpoint".into()))?;
    let white_box = EvalRequest {
        source: ModelSource::Run { hash: out.record.config_hash.to_hex() },
        dataset: Some(run.config.data.dataset),
        data_dir: out.data_dir(),
        device: run.config.device.device()?,
        limit: run.config.data.test_limit,
        suite: SuiteRequest::white_box(run),
        force,
    };
    let report = evaluate(&white_box, Some(registry))?;
    let clean = report.clean();
    let mut accuracy = BTreeMap::from([("clean".to_string(), clean.accuracy)]);
    let mut images = BTreeMap::from([("clean".to_string(), clean.total)]);
    let mut seconds = BTreeMap::new();
    let mut add = |r: &EvalReport| {
        for (id, a) in r.attacks() {
            accuracy.insert(id.clone(), a.robust.accuracy);
            images.insert(id.clone(), a.robust.total);
            seconds.insert(id, a.seconds);
        }
    };
    add(&report);
    let mut black_box_key = None;
    let mut black_box_reused = true;
    let mut sanity = report.sanity().to_vec();
    if let Some(suite) = SuiteRequest::black_box(run) {
        let request = EvalRequest { suite, ..white_box };
        let bb_report = evaluate(&request, Some(registry))?;
        add(&bb_report);
        sanity.extend(bb_report.sanity().iter().cloned());
        black_box_key = Some(bb_report.key);
        black_box_reused = bb_report.reused;
    }
    let missed = run
        .expect
        .iter()
        .filter(|(m, min)| accuracy.get(*m).is_none_or(|a| a < *min))
        .map(|(m, _)| m.clone())
        .collect();
    Ok(PresetOutcome {
        run: run.name.clone(),
        method: run.config.method.name().to_string(),
        arch: run.config.model.arch,
        dataset: run.config.data.dataset,
        config_hash: out.record.config_hash,
        checkpoint_hash,
        eval_key: report.key,
        black_box_eval_key: black_box_key,
        checkpoint: out.checkpoint_path,
        reused: out.reused,
        eval_reused: report.reused && black_box_reused,
        train_seconds: out.record.seconds,
        eval_seconds: report.seconds(),
        accuracy,
        images,
        seconds,
        expect: run.expect.clone(),
        missed,
        sanity,
    })
}

/// A preset run that failed: its name and the error with its whole cause chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunFailure {
    /// The run's name in the preset.
    pub run: String,
    /// `error: cause: cause …`, as the binary prints errors.
    pub error: String,
}

/// An error and its causes, outermost first, joined by ": " (how `infoat` prints an error).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Runs `each` on every run of a preset in order and keeps going past a failure — one missing
/// dataset or diverged run must not cost the others; `reproduce` and `regress` both use it.
/// Returns the results of the runs that succeeded, in order, and the failures, in order;
/// `on_failure` sees each failure as it happens.
pub fn keep_going<T>(
    runs: &[PresetRun],
    mut each: impl FnMut(&PresetRun) -> Result<T>,
    mut on_failure: impl FnMut(&RunFailure),
) -> (Vec<T>, Vec<RunFailure>) {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for run in runs {
        match each(run) {
            Ok(t) => done.push(t),
            Err(e) => {
                let failure = RunFailure { run: run.name.clone(), error: error_chain(&e) };
                on_failure(&failure);
                failed.push(failure);
            }
        }
    }
    (done, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::Preset;

    /// A one-run preset on a copy of the 20-image CIFAR-10 fixture (its test batch doubling as
    /// the training batches), small enough to train and attack in seconds.
    fn tiny_cifar_run(dir: &std::path::Path) -> PresetRun {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/data/cifar10/test_batch.bin");
        std::fs::create_dir_all(dir).unwrap();
        for name in [
            "test_batch.bin",
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ] {
            std::fs::copy(fixture, dir.join(name)).unwrap();
        }
        let toml = r#"
name = "tiny"
description = "pipeline test"
[[runs]]
name = "natural"
eval = { attacks = ["fgsm"], limit = 8, black_box = { attacks = ["rays"], limit = 4, rays_budget = 40 } }
[runs.config]
seed = 3
device = "cpu"
data = { dataset = "cifar10", train_limit = 20, test_limit = 20 }
model = { arch = "resnet18" }
method = { kind = "natural" }
train = { epochs = 1, batch_size = 10, eval_batch_size = 10 }
optimizer = { kind = "sgd", lr = 0.01, momentum = 0.9, weight_decay = 0.0 }
schedule = { kind = "constant" }
"#;
        Preset::from_toml(toml, "pipeline test").unwrap().runs.remove(0)
    }

    #[test]
    #[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
    fn the_plan_finds_exactly_the_evaluations_evaluate_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("cifar10");
        let run = tiny_cifar_run(&data);
        let registry = Registry::open(tmp.path().join("registry")).unwrap();
        let status = plan_status(&run, &registry, &registry.evals().unwrap()).unwrap();
        assert!(status.checkpoint_hash.is_none() && !status.evaluated && status.black_box_evaluated == Some(false));

        let out = train_run(&run.config, Some(&data), &registry, false, Progress::Quiet).unwrap();
        let status = plan_status(&run, &registry, &registry.evals().unwrap()).unwrap();
        assert_eq!(status.checkpoint_hash, out.record.checkpoint_hash);
        assert!(!status.evaluated && !status.done());

        let white = EvalRequest {
            source: ModelSource::Run { hash: out.record.config_hash.to_hex() },
            dataset: None,
            data_dir: None,
            device: tch::Device::Cpu,
            limit: run.config.data.test_limit,
            suite: SuiteRequest::white_box(&run),
            force: false,
        };
        let report = evaluate(&white, Some(&registry)).unwrap();
        let suite = white.suite.resolve(report.data.dataset).unwrap();
        assert_eq!(suite.key(report.model.hash, &report.data).unwrap().hash().unwrap(), report.key);
        assert_eq!(
            registry.evals().unwrap().iter().map(|e| e.key.hash().unwrap()).collect::<Vec<_>>(),
            vec![report.key]
        );
        // Read back from the registry, the evaluation is the report that wrote it.
        let again = evaluate(&white, Some(&registry)).unwrap();
        assert!(again.reused && !report.reused);
        assert!(!report.record.attacks.is_empty());
        let mut fresh = serde_json::to_value(&report).unwrap();
        let mut stored = serde_json::to_value(&again).unwrap();
        fresh["reused"] = serde_json::json!(true);
        // Wall-clock seconds come back from the registry's JSON to within the last bit
        // (serde_json's default float parser); every other field is exact.
        let seconds = |v: &mut serde_json::Value| -> Vec<f64> {
            let mut out = vec![v["seconds"].take().as_f64().unwrap()];
            for a in v["attacks"].as_object_mut().unwrap().values_mut() {
                out.push(a["seconds"].take().as_f64().unwrap());
            }
            out
        };
        for (a, b) in seconds(&mut fresh).into_iter().zip(seconds(&mut stored)) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        }
        assert_eq!(fresh, stored);
        let status = plan_status(&run, &registry, &registry.evals().unwrap()).unwrap();
        assert!(status.evaluated, "the plan finds the white-box evaluation");
        assert_eq!(status.black_box_evaluated, Some(false), "and knows the black-box one is still to do");

        let black = EvalRequest { suite: SuiteRequest::black_box(&run).unwrap(), ..white.clone() };
        let bb = evaluate(&black, Some(&registry)).unwrap();
        assert_ne!(bb.key, report.key);
        let status = plan_status(&run, &registry, &registry.evals().unwrap()).unwrap();
        assert!(status.done(), "{status:?}");

        // Another number of attacked images is another evaluation, not this one.
        let mut other = run.clone();
        other.eval.limit = Some(7);
        assert!(!plan_status(&other, &registry, &registry.evals().unwrap()).unwrap().evaluated);
    }

    #[test]
    fn keep_going_runs_every_run_past_a_failure_in_order() {
        let preset = Preset::find("quickstart").unwrap();
        assert!(preset.runs.len() >= 3, "the test needs three runs");
        let (first, third) = (preset.runs[0].name.clone(), preset.runs[2].name.clone());
        let mut seen = Vec::new();
        let mut reported = Vec::new();
        let (done, failed) = keep_going(
            &preset.runs,
            |run| {
                seen.push(run.name.clone());
                if run.name == first || run.name == third {
                    let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
                    return Err(Error::io(std::path::Path::new("/nowhere/train-images"), io));
                }
                Ok(run.name.len())
            },
            |f| reported.push(f.run.clone()),
        );
        let names: Vec<String> = preset.runs.iter().map(|r| r.name.clone()).collect();
        assert_eq!(seen, names, "every run was tried, in order");
        assert_eq!(done.len(), names.len() - 2);
        assert_eq!(failed.iter().map(|f| f.run.clone()).collect::<Vec<_>>(), vec![first, third]);
        assert_eq!(reported, failed.iter().map(|f| f.run.clone()).collect::<Vec<_>>(), "reported as they happened");
        assert!(failed[0].error.contains("/nowhere/train-images") && failed[0].error.contains("no such file"));
    }

    #[test]
    fn the_error_chain_names_every_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "reading the config")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(error_chain(&e), "reading the config: disk on fire");
    }
}
