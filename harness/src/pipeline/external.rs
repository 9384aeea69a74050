//! Evidence in RobustBench's external-evaluation layout (issue 21): RobustBench accepts an
//! outside evaluation of a zoo model as one `.pt` tensor of adversarial images the size of the
//! evaluated set, and recomputes the robust accuracy from it with the model's forward pass.
//!
//! A folder in this layout holds
//! - `adversarial.pt`: Float32 `[N, C, H, W]` in `torch.save`'s format ([`torch_file`]), the
//!   attack's image for every evaluated example — the clean image where the example stayed
//!   robust;
//! - `evaluation.json` ([`ExternalEvaluation`]): model, dataset, threat model, eps, accuracies,
//!   the attack and its source;
//! - `model.safetensors` when the model is the registry's (so a registry that never saw it can
//!   import the folder).
//!
//! [`export`] writes an evaluation's worst case over its attacks (each broken example's witness,
//! first attack in the suite's order) in that layout; [`import`] verifies every image of such a
//! folder — someone else's attack included — with the same check as `verify-evidence`
//! ([`crate::evidence::check`]: inside the eps-ball, in [0, 1], misclassified) and records it as
//! the attack [`AttackId::External`], merged as a worst case into the evaluation of the same
//! model, data and eps when the registry has one (an example counts as broken when any verified
//! image breaks it). The merged evaluation gets a key of its own, naming the imported file's
//! sha256: the earlier evaluation's numbers are never replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use infoat_registry::records::{new_attempt, pack_flags, unpack_flags};
use infoat_registry::{
    AttackId, AttackResult, ContentHash, EvalFlags, EvalKey, EvalRecord, Hasher, Registry, VerificationRecord,
    WitnessTally,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use super::evaluate::{load_model, ModelIdentity, ModelSource};
use super::evidence::VERIFIER_SEMVER;
use super::{load_split, now_unix, DataIdentity, Subset, EVAL_SEMVER};
use crate::data::{make_batch, Augment, Dataset, ImageSet, Split};
use crate::evidence::{check, Witnesses};
use crate::interop::torch_file;
use crate::{Error, Result};

/// The adversarial-image file of the layout.
pub const IMAGES_FILE: &str = "adversarial.pt";
/// The description of the layout.
pub const JSON_FILE: &str = "evaluation.json";
/// The model file, when the folder carries it.
pub const MODEL_FILE: &str = "model.safetensors";

/// `evaluation.json`: RobustBench's external-evaluation facts (model, dataset, threat model,
/// eps, accuracy) plus what lets another registry check the images against the same model and
/// test images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalEvaluation {
    /// The model's name (a file name, or the run's config hash).
    pub model: String,
    /// The model's digest (checkpoint digest, or a TorchScript file's sha256).
    pub model_hash: Option<ContentHash>,
    /// The architecture, when the model is a harness architecture (`smallcnn`, `resnet18`, …).
    #[serde(default)]
    pub arch: Option<String>,
    /// Dataset name (`mnist`, `cifar10`, …).
    pub dataset: String,
    /// `Linf` (the only threat model here).
    pub threat_model: String,
    /// The L∞ radius.
    pub eps: f64,
    /// Images in `adversarial.pt`: the first N test images.
    pub n_examples: usize,
    /// Clean accuracy on those images (fraction).
    pub clean_accuracy: Option<f64>,
    /// Robust accuracy the attack claims on them (fraction).
    pub robust_accuracy: Option<f64>,
    /// What produced the images (attacks, tool and version, paper or authors).
    pub attack: String,
    /// Where the images come from (an evaluation key, a URL, a person).
    pub source: String,
    /// sha256 of the N test images and labels (the harness's test-set fingerprint), when known.
    #[serde(default)]
    pub data_fingerprint: Option<ContentHash>,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The files.
    pub files: Vec<PathBuf>,
    /// The description.
    pub evaluation: ExternalEvaluation,
}

/// What [`import`] found and recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// Images in the file.
    pub images: usize,
    /// Images outside the eps-ball or [0, 1]: refused (they count as not breaking anything).
    pub rejected: usize,
    /// Examples a verified image breaks (of clean-correct ones).
    pub broken: usize,
    /// Robust accuracy under the imported images alone.
    pub external_acc: f64,
    /// The evaluation it was merged into, when there was one.
    pub merged_into: Option<ContentHash>,
    /// Worst case before the merge (that evaluation's), when there was one.
    pub worst_case_before: Option<f64>,
    /// Worst case after it.
    pub worst_case_after: f64,
    /// The new evaluation's key.
    pub key: ContentHash,
}

fn invalid(message: String) -> Error {
    Error::Invalid(message)
}

/// A dataset or architecture id as configs spell it (`mnist`, `smallcnn`).
fn parse_id<T: serde::de::DeserializeOwned>(name: &str, origin: &Path) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| invalid(format!("{}: '{name}': {e}", origin.display())))
}

/// Every example of `set` as one CPU batch `[N, C, H, W]` with its labels.
fn whole(set: &ImageSet) -> Result<(Tensor, Tensor)> {
    let idx: Vec<usize> = (0..set.len()).collect();
    let b = make_batch(set, &idx, Augment::None, 0, tch::Device::Cpu)?;
    Ok((b.x, b.y))
}

/// Writes `record`'s worst case over its attacks in the external-evaluation layout into `dir`.
pub fn export(registry: &Registry, record: &EvalRecord, dir: &Path) -> Result<Exported> {
    let key = record.key.hash()?;
    let identity: ModelIdentity = serde_json::from_value(record.model.clone())
        .map_err(|e| invalid(format!("evaluation {}: unreadable model identity ({e})", key.short(12))))?;
    let data: DataIdentity = serde_json::from_value(record.data.clone())
        .map_err(|e| invalid(format!("evaluation {}: unreadable data identity ({e})", key.short(12))))?;
    if record.witnesses.is_empty() {
        return Err(invalid(format!(
            "evaluation {} stored no witnesses (evaluated before they were kept): run `infoat eval --force` first",
            key.short(12)
        )));
    }
    let subset: Subset = record.key.subset.parse().map_err(invalid)?;
    let (test, _) = load_split(data.dataset, Some(&data.dir), Split::Test)?;
    let attacked = test.take(data.images).take(subset.attacked);
    let (images, _) = whole(&attacked)?;
    let mut replaced = vec![false; attacked.len()];
    let eps = record.attacks.values().map(|a| a.eps).next().unwrap_or(0.0);
    let mut attacks = Vec::new();
    for id in AttackId::ALL {
        let Some(blob) = record.witnesses.get(id.name()) else { continue };
        attacks.push(id.name());
        let bytes = registry.blobs().read_verified(blob)?;
        let w = Witnesses::from_bytes(&bytes, &registry.blobs().path(blob))?;
        for (j, &i) in w.indices.iter().enumerate() {
            let i = usize::try_from(i)
                .ok()
                .filter(|&i| i < replaced.len())
                .ok_or_else(|| invalid(format!("witness index {i} of {} is outside the attacked set", id.name())))?;
            if !replaced[i] {
                replaced[i] = true;
                images.f_narrow(0, i as i64, 1)?.f_copy_(&w.images.f_narrow(0, j as i64, 1)?)?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = vec![dir.join(IMAGES_FILE)];
    torch_file::save_tensor(&images, &files[0])?;
    if identity.source != "torchscript" {
        let path = dir.join(MODEL_FILE);
        if crate::checkpoint::format_of(&identity.path)? == crate::checkpoint::Format::TorchSave {
            // The layout's model file is safetensors: a torch.save state dict's weights are
            // written as one (the same digest: the loaded weights').
            let (model, ..) =
                super::evaluate::load_checkpoint(&identity.path, identity.arch, Some(data.dataset), tch::Device::Cpu)?;
            crate::checkpoint::save(&model, &path, &Default::default())?;
        } else {
            let bytes = std::fs::read(&identity.path).map_err(|e| Error::io(&identity.path, e))?;
            infoat_registry::blobs::write_atomic(&path, &bytes)?;
        }
        files.push(path);
    }
    let worst = robust_share(registry, record, subset.attacked)?;
    let evaluation = ExternalEvaluation {
        model: identity.config_hash.map_or_else(
            || identity.path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            |h| format!("infoat run {}", h.to_hex()),
        ),
        model_hash: Some(identity.hash),
        arch: identity.arch.map(|a| a.id().name().to_string()),
        dataset: data.dataset.name().to_string(),
        threat_model: "Linf".into(),
        eps,
        n_examples: attacked.len(),
        clean_accuracy: Some(record.clean_acc),
        robust_accuracy: worst,
        attack: format!("worst case of {} (infoat)", attacks.join(", ")),
        source: format!("infoat {} evaluation {}", env!("CARGO_PKG_VERSION"), key.to_hex()),
        data_fingerprint: Some(attacked.fingerprint()),
    };
    let json_path = dir.join(JSON_FILE);
    infoat_registry::blobs::write_atomic(&json_path, &(serde_json::to_vec_pretty(&evaluation)?))?;
    files.push(json_path);
    Ok(Exported { files, evaluation })
}

/// The share of the first `n` attacked examples robust under every attack of `record`.
fn robust_share(registry: &Registry, record: &EvalRecord, n: usize) -> Result<Option<f64>> {
    let Some(flags) = registry.eval_flags(record)? else { return Ok(record.worst_case_acc) };
    Ok(unpack_flags(&flags.worst_case)
        .filter(|w| w.len() == n && n > 0)
        .map(|w| w.iter().filter(|&&r| r).count() as f64 / n as f64)
        .or(record.worst_case_acc))
}

/// Where the model of an imported folder comes from.
#[derive(Debug, Clone)]
pub enum ImportModel {
    /// The folder's `model.safetensors` (the default).
    Folder,
    /// Another source (`--run`, `--checkpoint`, `--torchscript`).
    Source(ModelSource),
}

/// Verifies the images of the folder `dir` against the model and the test images, and records
/// them (module docs). `data_dir` overrides where the test images are read from.
pub fn import(
    registry: &Registry,
    dir: &Path,
    model: ImportModel,
    data_dir: Option<&Path>,
    device: tch::Device,
) -> Result<Imported> {
    // Absolute, so that the record names a model file `verify-evidence` finds from anywhere.
    let dir = &dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let json_path = dir.join(JSON_FILE);
    let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
    let ext: ExternalEvaluation = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{}: not an external evaluation ({e})", json_path.display())))?;
    if ext.threat_model != "Linf" {
        return Err(invalid(format!(
            "{}: threat model '{}': only Linf evaluations can be imported",
            json_path.display(),
            ext.threat_model
        )));
    }
    crate::attacks::check_eps(ext.eps).map_err(|e| invalid(format!("{}: eps: {e}", json_path.display())))?;
    let dataset: Dataset = parse_id(&ext.dataset, &json_path)?;
    let images_path = dir.join(IMAGES_FILE);
    let file_bytes = std::fs::read(&images_path).map_err(|e| Error::io(&images_path, e))?;
    let images = torch_file::load_tensor(&images_path)?.f_to_kind(Kind::Float)?;
    let source = match model {
        ImportModel::Folder => {
            let arch = ext.arch.as_deref().map(|a| parse_id::<crate::models::Arch>(a, &json_path)).transpose()?;
            ModelSource::Checkpoint { path: dir.join(MODEL_FILE), arch }
        }
        ImportModel::Source(s) => s,
    };
    let (net, identity, dataset, _) = load_model(&source, Some(registry), Some(dataset), device)?;
    if let Some(want) = ext.model_hash.filter(|h| *h != identity.hash) {
        return Err(invalid(format!(
            "the images were made for model {} but {} hashes to {}: import them against that model",
            want.short(16),
            identity.path.display(),
            identity.hash.short(16)
        )));
    }
    let (test, data_dir) = load_split(dataset, data_dir, Split::Test)?;
    let n = ext.n_examples;
    let shape = dataset.image_shape();
    let want = [n as i64, shape.channels as i64, shape.height as i64, shape.width as i64];
    if images.size() != want || n == 0 || n > test.len() {
        return Err(invalid(format!(
            "{}: images of shape {:?}, expected {want:?} (n_examples {n} of the {} test images of {})",
            images_path.display(),
            images.size(),
            test.len(),
            dataset.name()
        )));
    }
    let full = test;
    let test = full.take(n);
    if let Some(fp) = ext.data_fingerprint.filter(|fp| *fp != test.fingerprint()) {
        return Err(invalid(format!(
            "the first {n} test images in {} are not the ones the images were made for (fingerprint {} ≠ {})",
            data_dir.display(),
            test.fingerprint().short(12),
            fp.short(12)
        )));
    }
    let start = std::time::Instant::now();
    // Clean correctness, then every image checked as a witness of example i.
    let (x, y) = whole(&test)?;
    let clean_ok: Vec<bool> = tch::no_grad(|| -> Result<Vec<bool>> {
        let mut ok = Vec::with_capacity(n);
        for c in 0..n.div_ceil(crate::evidence::CHUNK) {
            let (s, len) = (
                (c * crate::evidence::CHUNK) as i64,
                crate::evidence::CHUNK.min(n - c * crate::evidence::CHUNK) as i64,
            );
            let xs = x.f_narrow(0, s, len)?.f_to_device(device)?;
            let pred = net.logits(&xs, false)?.f_argmax(-1, false)?.f_to_device(tch::Device::Cpu)?;
            ok.extend(Vec::<bool>::try_from(pred.f_eq_tensor(&y.f_narrow(0, s, len)?)?)?);
        }
        Ok(ok)
    })?;
    let all = Witnesses { indices: (0..n as i64).collect(), images: images.shallow_clone() };
    let checks = check(net.as_ref(), AttackId::External, &test, &all, ext.eps)?;
    let rejected = checks.iter().filter(|c| c.linf > ext.eps + crate::evidence::LINF_TOLERANCE || !c.in_box).count();
    let external_ok: Vec<bool> = checks.iter().zip(&clean_ok).map(|(c, &ok)| ok && !c.confirmed).collect();
    let broken: Vec<i64> = (0..n).filter(|&i| clean_ok[i] && checks[i].confirmed).map(|i| i as i64).collect();
    let witnesses = Witnesses {
        indices: broken.clone(),
        images: if broken.is_empty() {
            images.f_narrow(0, 0, 0)?
        } else {
            images.f_index_select(0, &Tensor::from_slice(&broken))?
        },
    };
    let (blob_bytes, _) = witnesses.to_bytes(AttackId::External, ext.eps)?;
    let blob_hash = registry.blobs().put_bytes(&blob_bytes, Path::new("witnesses of external"))?;

    // The evaluation of the same model, data and eps to merge into: the latest that attacked
    // exactly these n examples.
    let data_key = format!("{}/test/{}", dataset.name(), test.fingerprint().to_hex());
    let base = registry
        .evals()?
        .into_iter()
        .filter(|e| {
            e.key.model_hash == identity.hash
                && e.key.subset.parse::<Subset>().is_ok_and(|s| s.attacked == n)
                && e.attacks.values().all(|a| (a.eps - ext.eps).abs() < 1e-9)
                && e.data.get("fingerprint").and_then(|f| f.as_str()).is_some()
                && e.eval_semver == EVAL_SEMVER
                && !e.attacks.contains_key(AttackId::External.name())
        })
        .filter(|e| base_covers(e, &full, &test))
        .max_by(|a, b| (a.finished_unix, &a.attempt).cmp(&(b.finished_unix, &b.attempt)));
    let base_flags = match &base {
        Some(b) => registry.eval_flags(b)?,
        None => None,
    };
    let ext_correct = external_ok.iter().filter(|&&r| r).count();
    let file_sha = format!("{:x}", Sha256::digest(&file_bytes));
    let mut h = Hasher::new("infoat-external-evidence-v1");
    h.str(&base.as_ref().map_or(String::new(), |b| b.key.suite_hash.to_hex()))
        .str(&file_sha)
        .str(&format!("{}", ext.eps));
    let suite_hash = h.finish();
    let base_worst: Option<Vec<bool>> = base_flags.as_ref().and_then(|f| {
        unpack_flags(&f.worst_case)
            .filter(|w| w.len() == n)
            .or_else(|| unpack_flags(&f.clean).map(|c| c[..n.min(c.len())].to_vec()))
    });
    let worst: Vec<bool> = match &base_worst {
        Some(w) => w.iter().zip(&external_ok).map(|(a, b)| *a && *b).collect(),
        None => external_ok.clone(),
    };
    let worst_acc = worst.iter().filter(|&&r| r).count() as f64 / n as f64;
    let result = AttackResult {
        robust_acc: ext_correct as f64 / n as f64,
        correct: ext_correct,
        total: n,
        eps: ext.eps,
        seconds: start.elapsed().as_secs_f64(),
        forward_passes: Some(2.0),
        adbd: None,
        witnessed: Some(broken.len()),
        backward_passes: None,
        diagnostics: None,
        stages: None,
    };
    let provenance = serde_json::json!({
        "file_sha256": file_sha,
        "evaluation": ext,
        "base_eval": base.as_ref().map(|b| b.key.hash().map(|k| k.to_hex())).transpose()?,
        "imported_unix": now_unix(),
    });
    let data_identity =
        DataIdentity { dataset, dir: data_dir.clone(), split: Split::Test, images: n, fingerprint: test.fingerprint() };
    let (mut record, mut flags) = match (&base, base_flags) {
        (Some(b), Some(f)) => (b.clone(), f),
        _ => {
            let clean_correct = clean_ok.iter().filter(|&&c| c).count();
            let record = EvalRecord {
                key: EvalKey {
                    model_hash: identity.hash,
                    suite_hash,
                    data: data_key,
                    subset: format!("{n}/{n}"),
                    seed: 0,
                },
                attempt: String::new(),
                eval_semver: EVAL_SEMVER.to_string(),
                model: serde_json::to_value(&identity)?,
                config_hash: identity.config_hash,
                suite: serde_json::json!({ "eps": ext.eps }),
                data: serde_json::to_value(&data_identity)?,
                n,
                clean_acc: clean_correct as f64 / n as f64,
                attacks: BTreeMap::new(),
                worst_case_acc: None,
                sanity: Vec::new(),
                witnesses: BTreeMap::new(),
                diagnostics: None,
                seconds: 0.0,
                finished_unix: 0,
                env: crate::env::fingerprint(device),
            };
            let flags = EvalFlags { clean: pack_flags(&clean_ok), attacks: BTreeMap::new(), worst_case: String::new() };
            (record, flags)
        }
    };
    let merged_into = base.as_ref().map(|b| b.key.hash()).transpose()?;
    record.key.suite_hash = suite_hash;
    record.attempt = new_attempt();
    record.suite = serde_json::json!({
        "eps": ext.eps,
        "base": record.suite,
        "external": provenance,
    });
    record.attacks.insert(AttackId::External.name().to_string(), result);
    record.worst_case_acc = Some(worst_acc);
    record.witnesses.insert(AttackId::External.name().to_string(), blob_hash);
    record.seconds += start.elapsed().as_secs_f64();
    record.finished_unix = now_unix();
    record.env = crate::env::fingerprint(device);
    flags.attacks.insert(AttackId::External.name().to_string(), pack_flags(&external_ok));
    flags.worst_case = pack_flags(&worst);
    registry.put_eval(&record, &flags)?;
    let key = record.key.hash()?;
    registry.put_verification(&VerificationRecord {
        eval_key: key,
        eval_attempt: record.attempt.clone(),
        attempt: new_attempt(),
        attacks: BTreeMap::from([(
            AttackId::External.name().to_string(),
            WitnessTally { broken: n - ext_correct, witnessed: broken.len(), confirmed: broken.len() },
        )]),
        verifier_semver: VERIFIER_SEMVER.to_string(),
        finished_unix: now_unix(),
        env: crate::env::fingerprint(device),
    })?;
    Ok(Imported {
        images: n,
        rejected,
        broken: broken.len(),
        external_acc: ext_correct as f64 / n as f64,
        merged_into,
        worst_case_before: base_worst.map(|w| w.iter().filter(|&&r| r).count() as f64 / n as f64),
        worst_case_after: worst_acc,
        key,
    })
}

/// True when `e` evaluated the first images of `full` (the test split, read once by the
/// caller) and those begin with `test`.
fn base_covers(e: &EvalRecord, full: &ImageSet, test: &ImageSet) -> bool {
    let Ok(data) = serde_json::from_value::<DataIdentity>(e.data.clone()) else { return false };
    data.images >= test.len() && full.take(data.images).fingerprint() == data.fingerprint
}
