//! Content addressing and the result registry of the InfoAT harness.
//!
//! This crate never links libtorch: it hashes *meaning*, not files. A config is hashed as its
//! canonical JSON ([`canonical`]), a checkpoint as its tensors sorted by name ([`digest`]), so
//! the same model or the same config always gets the same [`ContentHash`] whatever the file
//! layout, map order or TOML spelling that carried it. The [`Registry`] keeps run and
//! evaluation records in sled and checkpoints as content-addressed blobs ([`blobs`]), with
//! export, import and merge of portable bundles ([`bundle`]).

pub mod blobs;
pub mod bundle;
pub mod canonical;
pub mod digest;
mod error;
pub mod ids;
mod lock;
pub mod records;
mod store;

pub use blobs::Blobs;
pub use bundle::ImportReport;
pub use canonical::{canonical_json, config_hash};
pub use digest::{checkpoint_digest, ContentHash, Hasher, TensorEntry};
pub use error::{Error, Result};
pub use ids::{ArchId, AttackId, DatasetId, Indicator, MethodKind, Metric, PaperTable, PlantedTest, SanityCheck};
pub use lock::Lock;
pub use records::{
    AnalysisRecord, AttackDiagnostics, AttackResult, Curve, CurveAxis, CurvePoint, Environment, EpochRecord,
    EvalDiagnostics, EvalFlags, EvalKey, EvalRecord, Numerics, PublishedRecord, RunRecord, RunStatus, SanityFlag,
    SelfTestResult, StageCost, VerificationRecord, WitnessTally,
};
pub use store::{GcReport, Registry, VerifyReport};
