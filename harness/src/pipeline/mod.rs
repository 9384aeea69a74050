//! The pipeline: config → data → model → training → checkpoint → evaluation, every result
//! kept in the registry ([`infoat_registry::Registry`], issue 5) so that a second run of the
//! same config or evaluation costs nothing. One workflow per module:
//!
//! - [`train`]: a run config trained, resumed or reused ([`train_run`]);
//! - [`mod@evaluate`]: a model loaded and evaluated under an attack suite ([`evaluate()`]);
//! - [`suite`]: the attack suite as hashed into an evaluation's key;
//! - [`preset`]: a preset's runs planned ([`plan_status`]) and reproduced ([`reproduce_run`]);
//! - [`report`]: the registry's tables rendered to files ([`write_report`]);
//! - [`mod@analyze`]: the paper's analysis figures ([`analyze()`]);
//! - [`mod@logits`]: a model's logits on the first test images ([`logits::logits`]).
//!
//! A training attempt is recorded as `running` when it starts and after every epoch; its
//! resumable state lives in `<registry>/work/<config hash>/state/`. Only once the final
//! checkpoint is a verified blob in the store does the record say `complete`. An evaluation is
//! keyed by (model hash, attack-suite hash, data identity and subset, seed).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use infoat_registry::ContentHash;
use serde::{Deserialize, Serialize};

use crate::data::{default_data_dir, Dataset, ImageSet, Split};
use crate::{Error, Result};

pub mod analyze;
pub mod evaluate;
pub mod evidence;
pub mod external;
pub mod logits;
pub mod preset;
pub mod report;
pub mod suite;
pub mod train;

pub use analyze::{analyze, AnalysisRequest, Figure};
pub use evaluate::{evaluate, AttackReport, EvalReport, EvalRequest, ModelIdentity, ModelSource};
pub use preset::{plan_status, reproduce_run, PlanStatus, PresetOutcome};
pub use report::{build_report, write_report};
pub use suite::{outdated_attacks, recorded_version, EvalSuite, Subset, SuiteRequest};
pub use train::{build_network, check_resumable, find_run, recorded_setup, train_run, work_dir, TrainOutcome};

/// Version of the training code's semantics: bump when a change alters what a config trains.
pub const TRAINING_SEMVER: &str = "1.0.0";

/// Version of the evaluation code's semantics: bump when a change alters an attack's numbers.
pub const EVAL_SEMVER: &str = "1.0.0";

/// The registry folder when neither `--registry` nor `INFOAT_REGISTRY` names one.
pub const DEFAULT_REGISTRY: &str = "infoat-registry";

/// The data a run or an evaluation used: which dataset, where from, and what it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataIdentity {
    /// The dataset.
    pub dataset: Dataset,
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The split.
    pub split: Split,
    /// Images used.
    pub images: usize,
    /// sha256 of the images and labels used (see [`ImageSet::fingerprint`]).
    pub fingerprint: ContentHash,
}

/// Loads a split, resolving the default data directory; returns the set and the directory.
pub fn load_split(dataset: Dataset, dir: Option<&Path>, split: Split) -> Result<(ImageSet, PathBuf)> {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| default_data_dir(dataset));
    let set = dataset.source(&dir).load(split)?;
    Ok((set, dir))
}

fn identity_of(dataset: Dataset, dir: &Path, split: Split, set: &ImageSet) -> DataIdentity {
    DataIdentity { dataset, dir: dir.to_path_buf(), split, images: set.len(), fingerprint: set.fingerprint() }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// sha256 of a file's bytes.
fn file_hash(path: &Path) -> Result<ContentHash> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut h = infoat_registry::Hasher::new("infoat.file.v1");
    h.bytes(&bytes);
    Ok(h.finish())
}
