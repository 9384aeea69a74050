//! The registry (issue 5): a folder holding a sled database of records, the content-addressed
//! checkpoint blobs and a lock file.
//!
//! ```text
//! <registry>/LOCK            who holds it (one process at a time)
//! <registry>/db/             sled: trees `runs`, `evals`, `eval_flags`, `published`, `analyses`,
//!                            `verifications`
//! <registry>/blobs/aa/<sha256>.safetensors
//! ```
//!
//! Writes are flushed before they return. A run record only says `complete` once its final
//! checkpoint blob is in the store (written atomically first), so a crash at any moment leaves
//! either no claim or a claim whose blob exists; a `running` record left by a killed process is
//! an interrupted run that the next attempt resumes.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::blobs::Blobs;
use crate::lock::Lock;
use crate::records::{EvalFlags, EvalRecord, PublishedRecord, RunRecord};
use crate::{ContentHash, Error, Result};

/// An open registry (holds its lock until dropped).
pub struct Registry {
    root: PathBuf,
    db: sled::Db,
    runs: sled::Tree,
    evals: sled::Tree,
    eval_flags: sled::Tree,
    published: sled::Tree,
    analyses: sled::Tree,
    verifications: sled::Tree,
    blobs: Blobs,
    _lock: Lock,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("root", &self.root).finish()
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Records read.
    pub records: usize,
    /// Blobs re-hashed and intact.
    pub blobs_ok: usize,
    /// Problems, one line each (nothing is deleted).
    pub problems: Vec<String>,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// Blobs kept (referenced by a record).
    pub kept: usize,
    /// Unreferenced blobs removed.
    pub removed: Vec<ContentHash>,
}

/// The trees records live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Run,
    Eval,
    EvalFlags,
    Published,
    Analysis,
    Verification,
}

impl Registry {
    /// Opens (creating if needed) the registry at `root`, taking its lock.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder when another process has it open.
    pub fn open(root: impl AsRef<Path>) -> Result<Registry> {
        let root = root.as_ref().to_path_buf();
        let lock = Lock::acquire(&root)?;
        let db_err = |e: sled::Error| Error::Db { path: root.clone(), message: e.to_string() };
        let db = sled::Config::new().path(root.join("db")).open().map_err(db_err)?;
        let tree = |name: &str| db.open_tree(name).map_err(db_err);
        Ok(Registry {
            runs: tree("runs")?,
            evals: tree("evals")?,
            eval_flags: tree("eval_flags")?,
            published: tree("published")?,
            analyses: tree("analyses")?,
            verifications: tree("verifications")?,
            blobs: Blobs::new(root.join("blobs")),
            db,
            root,
            _lock: lock,
        })
    }

    /// The registry folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The checkpoint blob store.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn db_err(&self, e: sled::Error) -> Error {
        Error::Db { path: self.root.clone(), message: e.to_string() }
    }

    pub(crate) fn tree(&self, kind: Kind) -> &sled::Tree {
        match kind {
            Kind::Run => &self.runs,
            Kind::Eval => &self.evals,
            Kind::EvalFlags => &self.eval_flags,
            Kind::Published => &self.published,
            Kind::Analysis => &self.analyses,
            Kind::Verification => &self.verifications,
        }
    }

    pub(crate) fn put_raw(&self, kind: Kind, key: &str, json: &[u8]) -> Result<()> {
        self.tree(kind).insert(key.as_bytes(), json).map_err(|e| self.db_err(e))?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    pub(crate) fn get_raw(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.tree(kind).get(key.as_bytes()).map_err(|e| self.db_err(e))?.map(|v| v.to_vec()))
    }

    fn put<T: Serialize>(&self, kind: Kind, key: &str, value: &T) -> Result<()> {
        self.put_raw(kind, key, &serde_json::to_vec(value)?)
    }

    fn decode<T: DeserializeOwned>(&self, key: &[u8], value: &[u8]) -> Result<T> {
        serde_json::from_slice(value).map_err(|e| Error::Corrupt {
            path: self.root.join("db"),
            problem: format!("record {} does not parse ({e})", String::from_utf8_lossy(key)),
        })
    }

    pub(crate) fn scan<T: DeserializeOwned>(&self, kind: Kind, prefix: &str) -> Result<Vec<(String, T)>> {
        self.tree(kind)
            .scan_prefix(prefix.as_bytes())
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.db_err(e))?;
                Ok((String::from_utf8_lossy(&k).to_string(), self.decode(&k, &v)?))
            })
            .collect()
    }

    /// Stores an analysis result under its key (replacing an earlier one with that key).
    pub fn put_analysis(&self, a: &crate::AnalysisRecord) -> Result<()> {
        self.put(Kind::Analysis, &a.key()?.to_hex(), a)
    }

    /// The analysis stored under `key`.
    pub fn find_analysis(&self, key: &ContentHash) -> Result<Option<crate::AnalysisRecord>> {
        let k = key.to_hex();
        self.get_raw(Kind::Analysis, &k)?.map(|v| self.decode(k.as_bytes(), &v)).transpose()
    }

    /// Every analysis result.
    pub fn analyses(&self) -> Result<Vec<crate::AnalysisRecord>> {
        Ok(self.scan(Kind::Analysis, "")?.into_iter().map(|(_, r)| r).collect())
    }

    /// Stores a run record under `<config hash>/<attempt>`, replacing that attempt's earlier
    /// state. A record that claims completeness must name a final checkpoint whose blob is in
    /// the store and verifies.
    pub fn put_run(&self, run: &RunRecord) -> Result<()> {
        if run.status == crate::RunStatus::Complete {
            let hash = run.checkpoint_hash.ok_or_else(|| Error::Corrupt {
                path: self.root.clone(),
                problem: format!("run {} claims completeness without a checkpoint", run.key()),
            })?;
            self.blobs.verify(&hash)?;
        }
        self.put(Kind::Run, &run.key(), run)
    }

    /// Every run record, ordered by config hash then attempt.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        Ok(self.scan(Kind::Run, "")?.into_iter().map(|(_, r)| r).collect())
    }

    /// The attempts at one config, oldest first.
    pub fn runs_of(&self, config_hash: &ContentHash) -> Result<Vec<RunRecord>> {
        Ok(self.scan(Kind::Run, &format!("{config_hash}/"))?.into_iter().map(|(_, r)| r).collect())
    }

    /// The newest complete attempt at `config_hash` under training code `semver` whose
    /// checkpoint blob still verifies.
    pub fn complete_run(&self, config_hash: &ContentHash, semver: &str) -> Result<Option<RunRecord>> {
        for run in self.runs_of(config_hash)?.into_iter().rev() {
            if run.is_complete() && run.training_semver == semver {
                if let Some(h) = run.checkpoint_hash {
                    if self.blobs.verify(&h).is_ok() {
                        return Ok(Some(run));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The runs whose config hash starts with `prefix` (at least 4 hex digits).
    pub fn runs_with_prefix(&self, prefix: &str) -> Result<Vec<RunRecord>> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!(
                "'{prefix}': expected at least 4 hex digits of a config hash (see `infoat registry ls`)"
            )));
        }
        Ok(self.scan(Kind::Run, &prefix)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Stores an evaluation and its per-example flags (flags first: a record never exists
    /// without them).
    pub fn put_eval(&self, eval: &EvalRecord, flags: &EvalFlags) -> Result<()> {
        self.insert_eval(eval, flags)?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Inserts an evaluation's flags, then the record, without flushing.
    fn insert_eval(&self, eval: &EvalRecord, flags: &EvalFlags) -> Result<()> {
        let key = eval.key_string()?;
        self.eval_flags.insert(key.as_bytes(), serde_json::to_vec(flags)?).map_err(|e| self.db_err(e))?;
        self.evals.insert(key.as_bytes(), serde_json::to_vec(eval)?).map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Stores many evaluations with one flush at the end (imports, benchmarks).
    pub fn put_evals_bulk(&self, items: impl IntoIterator<Item = (EvalRecord, EvalFlags)>) -> Result<usize> {
        let mut n = 0;
        for (eval, flags) in items {
            self.insert_eval(&eval, &flags)?;
            n += 1;
        }
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(n)
    }

    /// Every evaluation record (without flags), ordered by key.
    pub fn evals(&self) -> Result<Vec<EvalRecord>> {
        Ok(self.scan(Kind::Eval, "")?.into_iter().map(|(_, r)| r).collect())
    }

    /// The newest evaluation with key hash `key` under evaluation code `semver`.
    pub fn find_eval(&self, key: &ContentHash, semver: &str) -> Result<Option<EvalRecord>> {
        Ok(self
            .scan::<EvalRecord>(Kind::Eval, &format!("{key}/"))?
            .into_iter()
            .map(|(_, r)| r)
            .rfind(|r| r.eval_semver == semver))
    }

    /// The per-example flags of an evaluation.
    pub fn eval_flags(&self, eval: &EvalRecord) -> Result<Option<EvalFlags>> {
        let key = eval.key_string()?;
        self.get_raw(Kind::EvalFlags, &key)?.map(|v| self.decode(key.as_bytes(), &v)).transpose()
    }

    /// Stores what `infoat verify-evidence` found for an evaluation, under
    /// `<eval key hash>/<eval attempt>/<verification attempt>` (earlier checks are kept).
    pub fn put_verification(&self, v: &crate::VerificationRecord) -> Result<()> {
        self.put(Kind::Verification, &v.key(), v)
    }

    /// Every verification record, ordered by key (so the latest check of an evaluation comes
    /// last among its own).
    pub fn verifications(&self) -> Result<Vec<crate::VerificationRecord>> {
        Ok(self.scan(Kind::Verification, "")?.into_iter().map(|(_, r)| r).collect())
    }

    /// Stores a published number (idempotent: same key, same record).
    pub fn put_published(&self, p: &PublishedRecord) -> Result<()> {
        self.put(Kind::Published, &p.key(), p)
    }

    /// Stores published numbers with one flush; returns how many were new or changed.
    pub fn put_published_bulk(&self, items: &[PublishedRecord]) -> Result<usize> {
        let mut changed = 0;
        for p in items {
            let bytes = serde_json::to_vec(p)?;
            let old = self.published.insert(p.key().as_bytes(), bytes.as_slice()).map_err(|e| self.db_err(e))?;
            if old.as_deref() != Some(bytes.as_slice()) {
                changed += 1;
            }
        }
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(changed)
    }

    /// Every published number.
    pub fn published(&self) -> Result<Vec<PublishedRecord>> {
        Ok(self.scan(Kind::Published, "")?.into_iter().map(|(_, r)| r).collect())
    }

    /// Blob digests the records reference: final and per-epoch checkpoints of runs.
    pub fn referenced_blobs(&self) -> Result<Vec<ContentHash>> {
        let mut out = Vec::new();
        for run in self.runs()? {
            out.extend(run.checkpoint_hash);
            out.extend(run.epochs.iter().filter_map(|e| e.checkpoint_hash).filter(|h| self.blobs.contains(h)));
        }
        for eval in self.evals()? {
            out.extend(eval.witnesses.values().copied());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Re-hashes every blob and re-reads every record; reports problems, deletes nothing.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for kind in [Kind::Run, Kind::Eval, Kind::EvalFlags, Kind::Published, Kind::Analysis, Kind::Verification] {
            for kv in self.tree(kind).iter() {
                let (k, v) = kv.map_err(|e| self.db_err(e))?;
                report.records += 1;
                let ok = match kind {
                    Kind::Run => self.decode::<RunRecord>(&k, &v).map(|_| ()),
                    Kind::Eval => self.decode::<EvalRecord>(&k, &v).map(|_| ()),
                    Kind::EvalFlags => self.decode::<EvalFlags>(&k, &v).map(|_| ()),
                    Kind::Published => self.decode::<PublishedRecord>(&k, &v).map(|_| ()),
                    Kind::Analysis => self.decode::<crate::AnalysisRecord>(&k, &v).map(|_| ()),
                    Kind::Verification => self.decode::<crate::VerificationRecord>(&k, &v).map(|_| ()),
                };
                if let Err(e) = ok {
                    report.problems.push(e.to_string());
                }
            }
        }
        for run in self.runs().unwrap_or_default() {
            if run.is_complete() && run.checkpoint_hash.is_some_and(|h| !self.blobs.contains(&h)) {
                report.problems.push(format!(
                    "run {} is complete but its checkpoint blob {} is missing",
                    run.key(),
                    run.checkpoint_hash.map(|h| h.to_hex()).unwrap_or_default()
                ));
            }
        }
        for hash in self.blobs.list()? {
            match self.blobs.verify(&hash) {
                Ok(()) => report.blobs_ok += 1,
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        Ok(report)
    }

    /// Removes blobs no record references.
    pub fn gc(&self) -> Result<GcReport> {
        let keep = self.referenced_blobs()?;
        let mut report = GcReport::default();
        for hash in self.blobs.list()? {
            if keep.binary_search(&hash).is_ok() {
                report.kept += 1;
            } else {
                self.blobs.remove(&hash)?;
                report.removed.push(hash);
            }
        }
        Ok(report)
    }
}
