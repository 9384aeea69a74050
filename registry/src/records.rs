//! The registry's record kinds (issue 5, "Records"): training runs, evaluations and the
//! paper's published numbers. Records are JSON; the parts that belong to the harness (the
//! resolved config, the attack suite, the data identity) are kept as JSON values so this
//! crate stays free of libtorch and of the harness's types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{canonical_json, AttackId, ContentHash, Hasher, Indicator, PlantedTest, Result, SanityCheck};

/// Where and with what a result was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The harness crate version.
    pub harness_version: String,
    /// The git commit the binary was built from (`-dirty` when the tree had changes).
    pub git_commit: String,
    /// The libtorch version.
    pub libtorch: String,
    /// The device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// libtorch intra-op threads.
    pub threads: i32,
    /// cuDNN version when CUDA is in use.
    pub cudnn: Option<String>,
    /// GPU model and driver when CUDA is in use (absent in records made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Operating system and architecture.
    pub os: String,
    /// CPU model name, when readable.
    pub cpu: Option<String>,
    /// Host name.
    pub hostname: String,
    /// What decides which floating-point kernels run on the CPU (absent in records made before
    /// it existed: such a record's numerics are unknown, never assumed equal to another's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerics: Option<Numerics>,
}

impl Environment {
    /// True when `self` and `other` are known to compute the same floating-point results: same
    /// libtorch, device, thread count, GPU and cuDNN, and equal numerics fingerprints. A record
    /// without a fingerprint is never the same as another (its CPU generation is unknown).
    pub fn same_numerics(&self, other: &Environment) -> bool {
        let key = |e: &Environment| (e.libtorch.clone(), e.device.clone(), e.threads, e.gpu.clone(), e.cudnn.clone());
        key(self) == key(other) && self.numerics.is_some() && self.numerics == other.numerics
    }
}

/// The numerics fingerprint: the CPU (vendor, family, model, stepping, the instruction-set
/// extensions kernels dispatch on, cache sizes, which set oneDNN's blocking) and what libtorch
/// chose on it (ATen's CPU capability, oneDNN's ISA, the oneDNN and MKL builds), plus the
/// environment variables that override those choices. Two CPU runs with equal fingerprints,
/// libtorch and thread counts compute bit-identical checkpoints; across fingerprints they need
/// not (issue 18; docs/numerics.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numerics {
    /// CPU vendor id (`AuthenticAMD`, `GenuineIntel`), or `unknown`.
    pub cpu_vendor: String,
    /// CPU family, model and stepping as /proc/cpuinfo reports them (decimal).
    pub cpu_family: Option<u32>,
    /// See `cpu_family`.
    pub cpu_model: Option<u32>,
    /// See `cpu_family`.
    pub cpu_stepping: Option<u32>,
    /// The vector and matrix extensions present that ATen, oneDNN or MKL dispatch on, sorted.
    pub isa_flags: Vec<String>,
    /// Cache sizes of CPU 0 (`L1d 48K`, `L2 1024K`, …), in the kernel's notation.
    pub caches: Vec<String>,
    /// ATen's CPU capability as libtorch reports it (`DEFAULT`, `AVX2`, `AVX512`).
    pub aten_cpu_capability: String,
    /// The ISA oneDNN runs on: the best this CPU has, capped by `ONEDNN_MAX_CPU_ISA` /
    /// `DNNL_MAX_CPU_ISA` (derived from the CPU flags; libtorch does not export oneDNN's query).
    pub onednn_isa: String,
    /// The oneDNN build in libtorch.
    pub onednn_version: String,
    /// The MKL build in libtorch (BLAS for matrix products).
    pub mkl_version: String,
    /// Dispatch overrides in force (`ATEN_CPU_CAPABILITY`, `DNNL_MAX_CPU_ISA`, `MKL_CBWR`, …;
    /// `onednn = off` when libtorch's oneDNN convolutions are switched off).
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

/// Where a training run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished: still going, or interrupted (resumable).
    Running,
    /// Finished; the final checkpoint blob is in the store.
    Complete,
    /// Stopped by an error.
    Failed {
        /// The error, as the user saw it.
        error: String,
    },
}

/// One epoch of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// The epoch's metrics (loss parts, accuracies, learning rate, seconds).
    pub metrics: BTreeMap<String, f64>,
    /// The digest of the model at the end of the epoch.
    pub checkpoint_hash: Option<ContentHash>,
}

/// A training run: one attempt at one config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The config's content hash.
    pub config_hash: ContentHash,
    /// This attempt's id, unique per config (`--force` starts a new attempt).
    pub attempt: String,
    /// The resolved config (canonical view).
    pub config: Value,
    /// Semantic version of the training code.
    pub training_semver: String,
    /// Running, complete or failed.
    pub status: RunStatus,
    /// Per-epoch metrics and checkpoint digests.
    pub epochs: Vec<EpochRecord>,
    /// The final checkpoint's digest (its blob is in the store) once complete.
    pub checkpoint_hash: Option<ContentHash>,
    /// The training data's identity.
    pub data: Value,
    /// Unix time the attempt started.
    pub started_unix: u64,
    /// Unix time it finished, if it did.
    pub finished_unix: Option<u64>,
    /// Wall-clock seconds of training so far.
    pub seconds: f64,
    /// Where it ran.
    pub env: Environment,
}

impl RunRecord {
    /// The record's key: `<config hash>/<attempt>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.config_hash, self.attempt)
    }

    /// True when complete with a final checkpoint.
    pub fn is_complete(&self) -> bool {
        self.status == RunStatus::Complete && self.checkpoint_hash.is_some()
    }
}

/// What identifies an evaluation: same key ⇒ same numbers (up to the code's semantic version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalKey {
    /// The model: a checkpoint digest, or a TorchScript file's sha256.
    pub model_hash: ContentHash,
    /// sha256 of the canonical attack-suite description (attack ids, eps, their settings).
    pub suite_hash: ContentHash,
    /// The evaluated data: dataset name, split and sha256 of the images and labels used.
    pub data: String,
    /// Number of examples evaluated clean and attacked (`clean/attacked`).
    pub subset: String,
    /// The attacks' seed.
    pub seed: u64,
}

impl EvalKey {
    /// sha256 of the key's canonical JSON.
    pub fn hash(&self) -> Result<ContentHash> {
        let mut h = Hasher::new("infoat-eval-key-v1");
        h.str(&canonical_json(self)?);
        Ok(h.finish())
    }
}

/// One attack's result in an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    /// Robust accuracy, a fraction in [0, 1].
    pub robust_acc: f64,
    /// Examples still correct.
    pub correct: usize,
    /// Examples attacked.
    pub total: usize,
    /// L∞ radius.
    pub eps: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Model forward passes per attacked example (the attack's cost; absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_passes: Option<f64>,
    /// Average L∞ distance to the decision boundary (RayS's ADBD), for attacks that measure it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adbd: Option<f64>,
    /// Of the `total - correct` examples the attack broke, how many left a witness — a point in
    /// the threat model the verdict classifier gets wrong — in the evaluation's witness blob
    /// (issue 21); absent in records from before witnesses were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<usize>,
    /// Model backward passes per attacked example (input gradients taken; absent in older
    /// records and for attacks that take none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backward_passes: Option<f64>,
    /// Why the attack may have failed where it did, and how it fares where success is known to
    /// be possible (issue 22); absent in records from before diagnostics and in suites that do
    /// not run them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<AttackDiagnostics>,
    /// For a cascade (AutoAttack), what each component did and cost, in order (issue 24);
    /// absent for single attacks and in older records. Timing only: the result is the same
    /// with or without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageCost>>,
}

/// One component of a cascade in an evaluation: the examples it attacked (those every earlier
/// component left robust), how many it broke, its wall-clock time and the images it sent
/// through the model (issue 24's per-component profile; AutoAttack's own log prints the same
/// robust accuracy and time after each component).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCost {
    /// The component.
    pub attack: AttackId,
    /// Examples it attacked.
    pub attacked: usize,
    /// Of those, examples it broke.
    pub broken: usize,
    /// Wall-clock seconds, its bookkeeping in the cascade included.
    pub seconds: f64,
    /// Images it sent through the model.
    pub forward_images: u64,
    /// Of those, images sent with an input that tracks gradients (one input gradient each).
    pub backward_images: u64,
}

/// One attack's diagnostics in an evaluation (issue 22).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackDiagnostics {
    /// Per indicator of attack failure, how many of the examples the attack left robust trip
    /// it; an indicator that does not apply to the attack (no loss path for a one-step or
    /// gradient-free attack, no gradient for a black-box one) is absent.
    pub indicators: BTreeMap<Indicator, usize>,
    /// How many of the robust examples the unconstrained rerun attacked (the first ones; the
    /// count of `unconstrained_failure` is out of these).
    #[serde(default)]
    pub unconstrained_probed: usize,
    /// Per planted-vulnerability self-test, what the attack found.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub self_tests: BTreeMap<PlantedTest, SelfTestResult>,
    /// Model forward and backward passes the diagnostics of this attack cost, per attacked
    /// example (the self-tests and the unconstrained rerun).
    #[serde(default)]
    pub forward_passes: f64,
    /// Backward passes, per attacked example.
    #[serde(default)]
    pub backward_passes: f64,
}

impl AttackDiagnostics {
    /// The indicators with a non-zero count, in report order.
    pub fn tripped(&self) -> Vec<(Indicator, usize)> {
        Indicator::ALL.iter().filter_map(|i| self.indicators.get(i).filter(|&&n| n > 0).map(|&n| (*i, n))).collect()
    }

    /// The self-tests the attack was expected to pass and did not.
    pub fn failed_self_tests(&self) -> Vec<(PlantedTest, SelfTestResult)> {
        self.self_tests.iter().filter(|(_, r)| r.expected && !r.passed()).map(|(t, r)| (*t, *r)).collect()
    }
}

/// What one attack found on one planted-vulnerability self-test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestResult {
    /// Examples with a planted adversarial example inside their ball.
    pub planted: usize,
    /// Of them, how many the attack broke.
    pub found: usize,
    /// Whether the attack is expected to find them (a gradient attack on the cross-entropy is
    /// not, behind saturated logits or a quantizer); a miss of an expected test flags the
    /// attack's cells.
    pub expected: bool,
}

impl SelfTestResult {
    /// The pass mark: the fraction of planted examples an attack must find.
    pub const PASS_FRACTION: f64 = 0.95;

    /// The fraction found (1 when nothing was planted).
    pub fn fraction(&self) -> f64 {
        if self.planted == 0 {
            1.0
        } else {
            self.found as f64 / self.planted as f64
        }
    }

    /// Found at least [`SelfTestResult::PASS_FRACTION`] of the planted examples.
    pub fn passed(&self) -> bool {
        self.fraction() >= Self::PASS_FRACTION
    }
}

/// What a robustness curve varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveAxis {
    /// The L∞ radius.
    Eps,
    /// The attack's iterations.
    Iterations,
}

/// One point of a robustness curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The radius or the iteration budget.
    pub x: f64,
    /// Examples still correct.
    pub correct: usize,
    /// Examples attacked.
    pub total: usize,
}

impl CurvePoint {
    /// Robust accuracy at this point.
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// Robust accuracy of one attack as its radius or its budget grows (issue 22; Carlini et al.,
/// arXiv:1902.06705 §5.3: accuracy against eps must fall monotonically and reach zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The attack.
    pub attack: AttackId,
    /// What varies.
    pub axis: CurveAxis,
    /// The points, in increasing `x`.
    pub points: Vec<CurvePoint>,
    /// Restarts at each point of an iterations curve (1 for an eps curve).
    #[serde(default = "one")]
    pub restarts: usize,
}

fn one() -> usize {
    1
}

/// The evaluation-wide part of the diagnostics (issue 22).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalDiagnostics {
    /// The version of the diagnostics code that computed them.
    pub version: u32,
    /// Examples the self-tests planted a vulnerability into (the first of the attacked ones).
    pub self_test_examples: usize,
    /// Examples the curves were measured on (the first of the attacked ones).
    pub curve_examples: usize,
    /// Accuracy against eps and against the attack budget.
    pub curves: Vec<Curve>,
    /// Wall-clock seconds the diagnostics took.
    pub seconds: f64,
    /// Model forward passes they cost, per attacked example of the evaluation.
    pub forward_passes: f64,
    /// Model backward passes they cost, per attacked example.
    pub backward_passes: f64,
}

/// Per-example results of an evaluation, packed with [`pack_flags`]; stored apart from the
/// [`EvalRecord`] so that listing records for a report does not read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalFlags {
    /// Clean correctness.
    pub clean: String,
    /// Robustness per attack id.
    pub attacks: BTreeMap<String, String>,
    /// Robustness under the whole suite.
    pub worst_case: String,
}

/// A sanity check an evaluation tripped, as the harness reports it and the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanityFlag {
    /// The check.
    pub check: SanityCheck,
    /// What was observed.
    pub message: String,
}

/// An evaluation of one model under one attack suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// What identifies it.
    pub key: EvalKey,
    /// This attempt's id (`--force` keeps earlier attempts).
    pub attempt: String,
    /// Semantic version of the evaluation code.
    pub eval_semver: String,
    /// The model's source: `run` (with its config hash), `checkpoint` or `torchscript`, path, arch.
    pub model: Value,
    /// The run's config hash, when the model is a harness run.
    pub config_hash: Option<ContentHash>,
    /// The attack suite as run (ids, eps, batch size).
    pub suite: Value,
    /// The test data's identity.
    pub data: Value,
    /// Examples evaluated clean.
    pub n: usize,
    /// Clean accuracy.
    pub clean_acc: f64,
    /// Each attack's result, by attack id.
    pub attacks: BTreeMap<String, AttackResult>,
    /// Per-example worst case over the suite.
    pub worst_case_acc: Option<f64>,
    /// The sanity checks that tripped; non-empty means the record is flagged.
    pub sanity: Vec<SanityFlag>,
    /// Per attack id, the content hash of its witness blob (safetensors: the broken examples'
    /// test-set `indices` and their `adversarial` images), which `infoat verify-evidence`
    /// re-checks with the model's forward pass alone; empty in records from before witnesses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub witnesses: BTreeMap<String, ContentHash>,
    /// The evaluation-wide diagnostics: curves, what they cost (issue 22); absent in records from
    /// before diagnostics and in suites that do not run them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<EvalDiagnostics>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Unix time it finished.
    pub finished_unix: u64,
    /// Where it ran.
    pub env: Environment,
}

impl EvalRecord {
    /// The record's key: `<eval key hash>/<attempt>`.
    pub fn key_string(&self) -> Result<String> {
        Ok(format!("{}/{}", self.key.hash()?, self.attempt))
    }
}

/// What re-checking one attack's witnesses found (issue 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessTally {
    /// Examples the attack broke (`total − correct`).
    pub broken: usize,
    /// Of those, how many had a stored witness.
    pub witnessed: usize,
    /// Witnesses confirmed: within eps, in [0, 1], misclassified by the verdict classifier.
    pub confirmed: usize,
}

impl WitnessTally {
    /// Every broken example has a confirmed witness.
    pub fn all_confirmed(&self) -> bool {
        self.confirmed == self.broken
    }
}

/// One run of `infoat verify-evidence` over one evaluation: per attack, its broken examples and
/// how many of their stored witnesses the model's forward pass confirmed. Reports print the
/// confirmed counts beside the robust accuracies they back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// The evaluation's key hash.
    pub eval_key: ContentHash,
    /// The evaluation's attempt (its witnesses belong to that attempt).
    pub eval_attempt: String,
    /// This check's attempt id.
    pub attempt: String,
    /// Per attack id; attacks evaluated before witnesses were kept are absent.
    pub attacks: BTreeMap<String, WitnessTally>,
    /// Semantic version of the checking code.
    pub verifier_semver: String,
    /// Unix time it finished.
    pub finished_unix: u64,
    /// Where it ran.
    pub env: Environment,
}

impl VerificationRecord {
    /// The record's key: `<eval key hash>/<eval attempt>/<attempt>`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.eval_key, self.eval_attempt, self.attempt)
    }
}

/// A number the paper publishes (fixtures/paper), with its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedRecord {
    /// The paper (`infoat-tnnls`).
    pub paper: String,
    /// Table number or name (`II`, `III`, …).
    pub table: String,
    /// Row label as printed.
    pub row: String,
    /// Column label as printed.
    pub column: String,
    /// Dataset.
    pub dataset: String,
    /// Architecture.
    pub arch: String,
    /// Method.
    pub method: String,
    /// Metric (an attack id or `clean`).
    pub metric: String,
    /// The value as published: accuracies in percent, ADBD as an L∞ distance.
    pub value: f64,
}

impl PublishedRecord {
    /// The record's key: `<paper>/<table>/<row>/<column>`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}/{}", self.paper, self.table, self.row, self.column)
    }
}

/// Packs per-example booleans as hex, four examples per digit, first example in the high bit
/// of the first digit, prefixed by the count: `"<n>:<hex>"`.
pub fn pack_flags(flags: &[bool]) -> String {
    let mut out = format!("{}:", flags.len());
    for chunk in flags.chunks(4) {
        let mut v = 0u8;
        for (i, &f) in chunk.iter().enumerate() {
            if f {
                v |= 8 >> i;
            }
        }
        out.push(char::from_digit(u32::from(v), 16).unwrap_or('0'));
    }
    out
}

/// The inverse of [`pack_flags`]; `None` for a malformed string.
pub fn unpack_flags(s: &str) -> Option<Vec<bool>> {
    let (n, hex) = s.split_once(':')?;
    let n: usize = n.parse().ok()?;
    if hex.len() != n.div_ceil(4) {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for c in hex.chars() {
        let v = c.to_digit(16)?;
        for i in 0..4 {
            if out.len() < n {
                out.push(v & (8 >> i) != 0);
            }
        }
    }
    Some(out)
}

/// A fresh attempt id: unix nanoseconds and the process id, so attempts sort by start time.
pub fn new_attempt() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:024}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_compactly() {
        for n in [0usize, 1, 3, 4, 5, 17, 1000] {
            let flags: Vec<bool> = (0..n).map(|i| (i * 7 + i / 3) % 3 == 0).collect();
            let s = pack_flags(&flags);
            assert!(s.len() <= 6 + n.div_ceil(4), "{s}");
            assert_eq!(unpack_flags(&s), Some(flags));
        }
        assert_eq!(pack_flags(&[true, false, false, true, true]), "5:98");
        assert_eq!(unpack_flags("5:9"), None);
        assert_eq!(unpack_flags("x:9"), None);
        assert_eq!(unpack_flags("4:g"), None);
    }

    #[test]
    fn eval_keys_hash_their_meaning() {
        let k = EvalKey {
            model_hash: "ab".repeat(32).parse().unwrap(),
            suite_hash: "cd".repeat(32).parse().unwrap(),
            data: "mnist/test/ef".into(),
            subset: "10000/500".into(),
            seed: 0,
        };
        let h = k.hash().unwrap();
        assert_eq!(h, k.clone().hash().unwrap());
        assert_ne!(h, EvalKey { seed: 1, ..k.clone() }.hash().unwrap());
        assert_ne!(h, EvalKey { subset: "10000/501".into(), ..k }.hash().unwrap());
    }

    #[test]
    fn attempts_sort_by_start_time() {
        let a = new_attempt();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(new_attempt() > a);
    }
}

/// The result of one of the paper's analyses (issue 10: Fig. 1, 4, 5) on one model: its
/// parameters and the numbers behind the plot. Keyed by (figure, model hash, canonical
/// parameters), so an analysis run twice is found, not recomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// `fig1`, `fig4` or `fig5`.
    pub figure: String,
    /// The analysed model's checkpoint digest.
    pub model_hash: ContentHash,
    /// Its run's config hash.
    pub config_hash: Option<ContentHash>,
    /// What the analysis was asked (eps, examples, grid, seed, …), as JSON.
    pub params: Value,
    /// Semantic version of the analysis code.
    pub analysis_semver: String,
    /// The numbers (means, tests, curves, grids), as JSON.
    pub result: Value,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Unix time it finished.
    pub finished_unix: u64,
    /// Where it ran.
    pub env: Environment,
}

impl AnalysisRecord {
    /// The registry key: sha256 of (figure, model hash, canonical params, semver).
    pub fn key_for(figure: &str, model_hash: &ContentHash, params: &Value, semver: &str) -> Result<ContentHash> {
        let mut h = Hasher::new("infoat-analysis-key-v1");
        h.str(figure).str(&model_hash.to_hex()).str(&canonical_json(params)?).str(semver);
        Ok(h.finish())
    }

    /// This record's key.
    pub fn key(&self) -> Result<ContentHash> {
        AnalysisRecord::key_for(&self.figure, &self.model_hash, &self.params, &self.analysis_semver)
    }
}
