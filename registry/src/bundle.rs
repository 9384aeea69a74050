//! Portable bundles and merges (issue 5): `export` writes `records.jsonl` plus the referenced
//! checkpoint blobs; `import` and `merge` take them into a registry idempotently.
//!
//! A bundle from someone else is untrusted input. Import accepts only regular files named
//! `<64 hex>.safetensors` under `blobs/` (no links, no other names), re-hashes each blob and
//! drops it when its contents do not match its name, drops a record claiming completeness
//! whose blob is not there, and never overwrites an existing record with a different one: the
//! incoming record is kept beside it under a `~conflict-…` key and the conflict is reported.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blobs::write_atomic;
use crate::records::RunRecord;
use crate::store::Kind;
use crate::{ContentHash, Error, Hasher, Registry, Result};

/// The bundle format tag.
pub const BUNDLE_FORMAT: &str = "infoat-bundle-v1";

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    kind: String,
    key: String,
    record: Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    records: usize,
    blobs: usize,
}

/// What an import or merge did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// Records added.
    pub added: usize,
    /// Records already present, identical.
    pub identical: usize,
    /// Blobs added (verified).
    pub blobs_added: usize,
    /// Records that differ from an existing one with the same key: both kept, the incoming one
    /// under the key given here.
    pub conflicts: Vec<String>,
    /// Things refused, with the reason.
    pub rejected: Vec<String>,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Run => "run",
        Kind::Eval => "eval",
        Kind::EvalFlags => "eval_flags",
        Kind::Published => "published",
        Kind::Analysis => "analysis",
        Kind::Verification => "verification",
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    Some(match name {
        "run" => Kind::Run,
        "eval" => Kind::Eval,
        "eval_flags" => Kind::EvalFlags,
        "published" => Kind::Published,
        "analysis" => Kind::Analysis,
        "verification" => Kind::Verification,
        _ => return None,
    })
}

const KINDS: [Kind; 6] = [Kind::Run, Kind::EvalFlags, Kind::Eval, Kind::Published, Kind::Analysis, Kind::Verification];

impl Registry {
    /// Writes every record and every blob the records reference into `dir` (created; must be
    /// empty or absent).
    pub fn export(&self, dir: &Path) -> Result<(usize, usize)> {
        start_bundle(dir)?;
        let mut text = Vec::new();
        let mut records = 0;
        for kind in KINDS {
            for (key, record) in self.scan::<Value>(kind, "")? {
                serde_json::to_writer(&mut text, &Line { kind: kind_name(kind).into(), key, record })?;
                text.push(b'\n');
                records += 1;
            }
        }
        self.finish_bundle(dir, &text, records, &self.referenced_blobs()?)
    }

    /// Writes `blobs`, the record lines and the manifest of a bundle begun by [`start_bundle`].
    fn finish_bundle(&self, dir: &Path, text: &[u8], records: usize, blobs: &[ContentHash]) -> Result<(usize, usize)> {
        for h in blobs {
            let bytes = self.blobs().read_verified(h)?;
            write_atomic(&dir.join("blobs").join(format!("{}.safetensors", h.to_hex())), &bytes)?;
        }
        write_atomic(&dir.join("records.jsonl"), text)?;
        let manifest = Manifest { format: BUNDLE_FORMAT.into(), records, blobs: blobs.len() };
        write_atomic(&dir.join("MANIFEST.json"), &serde_json::to_vec_pretty(&manifest)?)?;
        Ok((records, blobs.len()))
    }

    /// Takes in a bundle written by [`Registry::export`] (see the module docs for what is
    /// refused). Idempotent: importing the same bundle twice adds nothing the second time.
    pub fn import(&self, dir: &Path) -> Result<ImportReport> {
        read_manifest(dir)?;
        let mut report = ImportReport::default();
        let blob_dir = dir.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blob_dir) {
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&blob_dir, e))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
                let claimed = name.strip_suffix(".safetensors").and_then(|h| h.parse::<ContentHash>().ok());
                let Some(claimed) = claimed.filter(|h| h.to_hex() == name[..64.min(name.len())]) else {
                    report.rejected.push(format!("{}: not named <sha256>.safetensors", path.display()));
                    continue;
                };
                if !meta.file_type().is_file() {
                    report.rejected.push(format!("{}: not a regular file (links are refused)", path.display()));
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                match crate::blobs::safetensors_digest(&bytes, &path) {
                    Ok(h) if h == claimed => {
                        if self.blobs().verify(&h).is_err() {
                            write_atomic(&self.blobs().path(&h), &bytes)?;
                            report.blobs_added += 1;
                        }
                    }
                    Ok(h) => report.rejected.push(format!("{}: contents hash to {h}", path.display())),
                    Err(e) => report.rejected.push(e.to_string()),
                }
            }
        }
        let records_path = dir.join("records.jsonl");
        let file = std::fs::File::open(&records_path).map_err(|e| Error::io(&records_path, e))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(&records_path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let where_ = format!("{} line {}", records_path.display(), i + 1);
            let Ok(line) = serde_json::from_str::<Line>(&line) else {
                report.rejected.push(format!("{where_}: not a record line"));
                continue;
            };
            let Some(kind) = kind_of(&line.kind) else {
                report.rejected.push(format!("{where_}: unknown record kind '{}'", line.kind));
                continue;
            };
            self.absorb(kind, &line.key, &line.record, &where_, &mut report)?;
        }
        Ok(report)
    }

    /// Takes in every record and blob of the registry at `other` (opened, and so locked, for
    /// the duration), with the same checks as [`Registry::import`].
    pub fn merge(&self, other: &Path) -> Result<ImportReport> {
        if other.canonicalize().ok() == self.root().canonicalize().ok() {
            return Err(Error::NotFound("cannot merge a registry into itself".into()));
        }
        let src = Registry::open(other)?;
        let tmp = tempdir_in(self.root())?;
        let bundle = tmp.join("bundle");
        src.export(&bundle)?;
        drop(src);
        let report = self.import(&bundle);
        let _ = std::fs::remove_dir_all(&tmp);
        report
    }

    fn absorb(&self, kind: Kind, key: &str, record: &Value, where_: &str, report: &mut ImportReport) -> Result<()> {
        // Shape and consistency checks per kind.
        let valid = match kind {
            Kind::Run => match serde_json::from_value::<RunRecord>(record.clone()) {
                Ok(run) if run.key() != key => Err(format!("key {key} does not match the record's {}", run.key())),
                Ok(run) if run.is_complete() => match run.checkpoint_hash.map(|h| self.blobs().verify(&h)) {
                    Some(Ok(())) => Ok(()),
                    _ => Err(format!("run {key} claims completeness but its checkpoint blob is missing or corrupt")),
                },
                Ok(_) => Ok(()),
                Err(e) => Err(format!("not a run record ({e})")),
            },
            Kind::Eval => serde_json::from_value::<crate::EvalRecord>(record.clone())
                .map_err(|e| format!("not an eval record ({e})"))
                .and_then(|r| match r.key_string() {
                    Ok(k) if k == key => Ok(()),
                    _ => Err(format!("key {key} does not match the record's key")),
                }),
            Kind::EvalFlags => {
                serde_json::from_value::<crate::EvalFlags>(record.clone()).map(|_| ()).map_err(|e| e.to_string())
            }
            Kind::Published => serde_json::from_value::<crate::PublishedRecord>(record.clone())
                .map_err(|e| e.to_string())
                .and_then(|p| if p.key() == key { Ok(()) } else { Err(format!("key {key} does not match")) }),
            Kind::Analysis => serde_json::from_value::<crate::AnalysisRecord>(record.clone())
                .map_err(|e| format!("not an analysis record ({e})"))
                .and_then(|a| match a.key() {
                    Ok(k) if k.to_hex() == key => Ok(()),
                    _ => Err(format!("key {key} does not match the record's key")),
                }),
            Kind::Verification => serde_json::from_value::<crate::VerificationRecord>(record.clone())
                .map_err(|e| format!("not a verification record ({e})"))
                .and_then(|v| if v.key() == key { Ok(()) } else { Err(format!("key {key} does not match")) }),
        };
        if let Err(why) = valid {
            report.rejected.push(format!("{where_}: {why}"));
            return Ok(());
        }
        let bytes = serde_json::to_vec(record)?;
        match self.get_raw(kind, key)? {
            None => {
                self.put_raw(kind, key, &bytes)?;
                report.added += 1;
            }
            Some(existing) => {
                let same = serde_json::from_slice::<Value>(&existing).is_ok_and(|v| &v == record);
                if same {
                    report.identical += 1;
                } else {
                    let mut h = Hasher::new("infoat-conflict-v1");
                    h.bytes(&bytes);
                    let alt = format!("{key}~conflict-{}", h.finish().short(12));
                    if self.get_raw(kind, &alt)?.is_none() {
                        self.put_raw(kind, &alt, &bytes)?;
                        report.conflicts.push(format!(
                            "{} {key}: differs from the existing record; kept as {alt}",
                            kind_name(kind)
                        ));
                    } else {
                        report.identical += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The run and evaluation records of a bundle, read without importing them (blobs are neither
/// needed nor checked: `infoat regress` compares hashes and numbers only).
#[derive(Debug, Clone, Default)]
pub struct BundleRecords {
    /// Run records.
    pub runs: Vec<RunRecord>,
    /// Evaluation records.
    pub evals: Vec<crate::EvalRecord>,
}

/// Reads the run and eval records of the bundle in `dir`; a line that is not a valid record is
/// an error naming the file and line (a baseline must be read whole or not at all).
pub fn read_records(dir: &Path) -> Result<BundleRecords> {
    let bad = |path: PathBuf, problem: String| Error::BadBundle { path, problem };
    let manifest = read_manifest(dir)?;
    let records_path = dir.join("records.jsonl");
    let text = std::fs::read_to_string(&records_path).map_err(|e| Error::io(&records_path, e))?;
    let mut out = BundleRecords::default();
    let mut count = 0;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |problem: String| bad(records_path.clone(), format!("line {}: {problem}", i + 1));
        let line: Line = serde_json::from_str(line).map_err(|e| at(format!("not a record line ({e})")))?;
        count += 1;
        match line.kind.as_str() {
            "run" => {
                out.runs.push(serde_json::from_value(line.record).map_err(|e| at(format!("bad run record ({e})")))?)
            }
            "eval" => {
                out.evals.push(serde_json::from_value(line.record).map_err(|e| at(format!("bad eval record ({e})")))?)
            }
            k if kind_of(k).is_some() => {}
            k => return Err(at(format!("unknown record kind '{k}'"))),
        }
    }
    if count != manifest.records {
        return Err(bad(
            records_path,
            format!(
                "{count} records, but MANIFEST.json says {}: the bundle is truncated or was edited",
                manifest.records
            ),
        ));
    }
    Ok(out)
}

impl Registry {
    /// Writes a bundle of the given runs (every attempt of each config hash) and evaluations
    /// (by key) into `dir` (new or empty), with their checkpoint blobs unless `blobs` is false
    /// (a records-only bundle serves as a regression baseline, not for import).
    pub fn export_selected(
        &self,
        dir: &Path,
        configs: &[ContentHash],
        evals: &[ContentHash],
        blobs: bool,
    ) -> Result<(usize, usize)> {
        start_bundle(dir)?;
        let mut text = Vec::new();
        let mut records = 0;
        let mut blob_set = std::collections::BTreeSet::new();
        for run in self.runs()? {
            if configs.contains(&run.config_hash) {
                if blobs {
                    blob_set.extend(run.checkpoint_hash);
                    blob_set.extend(
                        run.epochs.iter().filter_map(|e| e.checkpoint_hash).filter(|h| self.blobs().contains(h)),
                    );
                }
                let value = serde_json::to_value(&run)?;
                write_line(&mut text, "run", &run.key(), &value)?;
                records += 1;
            }
        }
        for eval in self.evals()? {
            if evals.contains(&eval.key.hash()?) {
                if let Some(flags) = self.eval_flags(&eval)? {
                    write_line(&mut text, "eval_flags", &eval.key_string()?, &serde_json::to_value(&flags)?)?;
                    records += 1;
                }
                write_line(&mut text, "eval", &eval.key_string()?, &serde_json::to_value(&eval)?)?;
                records += 1;
            }
        }
        self.finish_bundle(dir, &text, records, &blob_set.into_iter().collect::<Vec<_>>())
    }
}

/// Checks that `dir` is new or empty and creates it with its `blobs/` folder.
fn start_bundle(dir: &Path) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.next().is_some() {
        return Err(Error::BadBundle {
            path: dir.to_path_buf(),
            problem: "the export folder is not empty; give a new folder".into(),
        });
    }
    std::fs::create_dir_all(dir.join("blobs")).map_err(|e| Error::io(dir, e))
}

/// Reads and checks a bundle's `MANIFEST.json`.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("MANIFEST.json");
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::BadBundle {
            path: dir.to_path_buf(),
            problem: "no MANIFEST.json: not a bundle; give a folder written by `infoat registry export` or \
                      `infoat regress --write-baseline`"
                .into(),
        },
        _ => Error::io(&path, e),
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| Error::BadBundle { path: path.clone(), problem: format!("not a bundle manifest ({e})") })?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(Error::BadBundle {
            path,
            problem: format!("format '{}', expected '{BUNDLE_FORMAT}'", manifest.format),
        });
    }
    Ok(manifest)
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let p = dir.join(format!(".merge-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    Ok(p)
}

/// Writes a bundle's lines to `out` (used by tests that plant faults).
#[doc(hidden)]
pub fn write_line(out: &mut impl Write, kind: &str, key: &str, record: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, &Line { kind: kind.into(), key: key.into(), record: record.clone() })?;
    out.write_all(b"\n").map_err(|e| Error::io("<bundle>", e))
}
