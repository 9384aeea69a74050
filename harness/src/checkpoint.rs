//! Checkpoints as safetensors files whose tensor names are the PyTorch `state_dict` keys of the
//! reference architectures (BatchNorm running statistics included), so
//! `model.load_state_dict(safetensors.torch.load_file(path))` works in PyTorch.
//!
//! A checkpoint's identity is [`digest`]: sha256 over its tensors sorted by name (name, dtype,
//! shape, bytes; `infoat_registry::checkpoint_digest`), never over file bytes. The file carries
//! that digest and the run's resolved config in its `__metadata__`, is written atomically
//! (temporary file, fsync, rename) and is re-hashed on every load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use infoat_registry::{checkpoint_digest, ContentHash, TensorEntry};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Device, Kind, Tensor};

use crate::models::Network;
use crate::{Error, Result};

/// Metadata key holding the checkpoint digest.
pub const META_DIGEST: &str = "infoat.checkpoint_sha256";
/// Metadata key holding the resolved run config (canonical JSON).
pub const META_CONFIG: &str = "infoat.config";

/// One tensor as bytes on the host.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => return Err(Error::Invalid(format!("cannot store a tensor of kind {other:?} in a checkpoint"))),
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

fn to_host(t: &Tensor) -> Result<HostTensor> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let dtype = dtype_of(t.kind())?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * dtype.size()];
    t.f_copy_data_u8(&mut data, numel)?;
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok(HostTensor { dtype, shape, data })
}

fn host_tensors(tensors: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, HostTensor>> {
    tensors.iter().map(|(name, t)| Ok((name.clone(), to_host(t)?))).collect()
}

fn digest_of(tensors: &BTreeMap<String, HostTensor>) -> Result<ContentHash> {
    let names: Vec<String> = tensors.values().map(|t| dtype_name(t.dtype)).collect();
    Ok(checkpoint_digest(tensors.iter().zip(&names).map(|((name, t), dtype)| TensorEntry {
        name,
        dtype,
        shape: &t.shape,
        data: &t.data,
    }))?)
}

/// The canonical digest of `model`'s current variables.
pub fn digest(model: &Network) -> Result<ContentHash> {
    digest_of(&host_tensors(&model.named_tensors())?)
}

/// Writes `model` to `path` (atomically) with `metadata` plus the digest; returns the digest.
pub fn save(model: &Network, path: &Path, metadata: &BTreeMap<String, String>) -> Result<ContentHash> {
    save_tensors(&model.named_tensors(), path, metadata)
}

/// Writes named tensors to a safetensors file at `path` (atomically) with `metadata` plus
/// their digest; returns the digest.
pub fn save_tensors(
    tensors: &BTreeMap<String, Tensor>,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<ContentHash> {
    let (bytes, hash) = serialize_tensors(tensors, path, metadata)?;
    infoat_registry::blobs::write_atomic(path, &bytes)?;
    Ok(hash)
}

/// `model` as safetensors bytes with `metadata` plus the digest, and the digest; `origin`
/// names the checkpoint in errors.
pub fn serialize(
    model: &Network,
    origin: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, ContentHash)> {
    serialize_tensors(&model.named_tensors(), origin, metadata)
}

/// Named tensors (any device) as safetensors bytes with `metadata` plus their digest, and the
/// digest: the format of checkpoints, also used for witness blobs ([`crate::evidence`]).
pub fn serialize_named(
    tensors: &BTreeMap<String, Tensor>,
    origin: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, ContentHash)> {
    serialize_tensors(tensors, origin, metadata)
}

fn serialize_tensors(
    tensors: &BTreeMap<String, Tensor>,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, ContentHash)> {
    let tensors = host_tensors(tensors)?;
    let hash = digest_of(&tensors)?;
    let mut meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    meta.insert(META_DIGEST.to_string(), hash.to_hex());
    meta.insert("format".to_string(), "pt".to_string());
    let views = tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Checkpoint { path: path.to_path_buf(), message: format!("{e:?}") })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| Error::Checkpoint { path: path.to_path_buf(), message: format!("cannot serialise: {e:?}") })?;
    Ok((bytes, hash))
}

/// A checkpoint read from disk.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The digest recomputed from the tensors.
    pub hash: ContentHash,
    /// The file's metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Reads only the metadata of a checkpoint file.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(path, e))?;
    Ok(meta.metadata().clone().unwrap_or_default().into_iter().collect())
}

fn not_safetensors(path: &Path, e: safetensors::SafeTensorError) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("not a readable safetensors file ({e:?}); it may be truncated or corrupted, re-create it"),
    }
}

/// Reads every tensor of a safetensors file onto the CPU, checking the digest it claims.
pub fn read_tensors(path: &Path) -> Result<(BTreeMap<String, Tensor>, Loaded)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    deserialize_named(&bytes, path)
}

/// Every tensor of safetensors `bytes` onto the CPU, checking the digest they claim; `path`
/// names their origin in errors.
pub fn deserialize_named(bytes: &[u8], path: &Path) -> Result<(BTreeMap<String, Tensor>, Loaded)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| not_safetensors(path, e))?;
    let metadata: BTreeMap<String, String> = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    let views: BTreeMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    let hash = verify_digest(path, &views, &metadata)?;
    let mut out = BTreeMap::new();
    for (name, view) in &views {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let kind = kind_of(view.dtype()).ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("tensor {name} has unsupported dtype {:?}", view.dtype()),
        })?;
        out.insert(name.clone(), Tensor::f_from_data_size(view.data(), &shape, kind)?);
    }
    Ok((out, Loaded { hash, metadata }))
}

fn verify_digest(
    path: &Path,
    views: &BTreeMap<String, TensorView<'_>>,
    metadata: &BTreeMap<String, String>,
) -> Result<ContentHash> {
    let dtypes: Vec<String> = views.values().map(|v| dtype_name(v.dtype())).collect();
    let hash = checkpoint_digest(views.iter().zip(&dtypes).map(|((name, v), dtype)| TensorEntry {
        name,
        dtype,
        shape: v.shape(),
        data: v.data(),
    }))?;
    if let Some(claimed) = metadata.get(META_DIGEST) {
        if claimed != &hash.to_hex() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "content digest {hash} differs from the digest {claimed} recorded in the file: the tensors were altered or corrupted"
                ),
            });
        }
    }
    Ok(hash)
}

/// The file formats a checkpoint is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// safetensors, as the harness writes checkpoints.
    Safetensors,
    /// `torch.save(state_dict)` (a zip archive, or the legacy format of PyTorch < 1.6), as
    /// RobustBench and the reference repositories ship checkpoints (`.pt`, `.pth`).
    TorchSave,
}

/// The format of the file at `path`, from its first bytes: a zip archive, or the legacy
/// format's magic number, is a `torch.save` file; anything else is read as safetensors, whose
/// reader names what is wrong with it.
pub fn format_of(path: &Path) -> Result<Format> {
    use std::io::Read;
    let mut head = [0u8; 14];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head == crate::interop::torch_file::LEGACY_MAGIC {
        Ok(Format::TorchSave)
    } else {
        Ok(Format::Safetensors)
    }
}

/// Loads a checkpoint into `model`: a safetensors file ([`load_safetensors_into`]) or a
/// `torch.save` state dict ([`load_state_dict_into`]), told apart by [`format_of`].
pub fn load_into(model: &mut Network, path: &Path) -> Result<Loaded> {
    match format_of(path)? {
        Format::Safetensors => load_safetensors_into(model, path),
        Format::TorchSave => load_state_dict_into(model, path),
    }
}

/// Loads a `torch.save` state dict (read by the restricted unpickler of
/// [`crate::interop::torch_file`]) into `model`, as RobustBench's loader does: a
/// `{"state_dict": …}` or `{"model": …}` wrapper is unwrapped, a `module.` prefix (DataParallel)
/// dropped, and the architecture's unused entries ([`crate::models::Arch::unused_prefixes`])
/// skipped; then every name and shape must be the model's. A missing BatchNorm
/// `num_batches_tracked` (checkpoints from before PyTorch 0.4.1) keeps 0: the forward pass
/// never reads it. Floating-point tensors of another precision are converted to the model's.
/// The identity is [`digest`] of the loaded model, so the same weights hash alike whichever
/// format carried them; the file has no metadata.
pub fn load_state_dict_into(model: &mut Network, path: &Path) -> Result<Loaded> {
    let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
    let arch = model.arch();
    let mut theirs: BTreeMap<String, Tensor> = BTreeMap::new();
    for (key, t) in crate::interop::torch_file::load_state_dict(path)? {
        let key = key.strip_prefix("module.").map_or_else(|| key.clone(), str::to_string);
        if arch.unused_prefixes().iter().any(|p| key.starts_with(p)) {
            continue;
        }
        if theirs.insert(key.clone(), t).is_some() {
            return Err(bad(format!("tensor {key} appears twice, with and without a module. prefix")));
        }
    }
    let ours = model.named_tensors();
    let optional = |k: &str| k.ends_with(".num_batches_tracked");
    let missing: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k) && !optional(k)).collect();
    let extra: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(bad(format!(
            "does not fit a {arch} with {} classes: missing {} tensor(s) {:?}, unexpected {} tensor(s) {:?}; \
             pass the --arch the checkpoint was saved from (`infoat eval --help` lists them; RobustBench's \
             model_zoo/<dataset>.py names each entry's architecture)",
            model.num_classes(),
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(5).collect::<Vec<_>>()
        )));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in &ours {
            let Some(src) = theirs.get(name) else { continue };
            if src.size() != var.size() {
                let classes = var.dim() <= 2 && var.size().first() == Some(&(model.num_classes() as i64));
                let hint = if classes {
                    format!(
                        " (the classifier: the checkpoint has {} outputs, the dataset {} classes; pass its --dataset)",
                        src.size()[0],
                        model.num_classes()
                    )
                } else {
                    format!("; pass the --arch the checkpoint was saved from (not {arch})")
                };
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, {arch} expects {:?}{hint}",
                    src.size(),
                    var.size()
                )));
            }
            if src.is_floating_point() != var.is_floating_point() {
                return Err(bad(format!(
                    "tensor {name} has dtype {:?}, the model expects {:?}",
                    src.kind(),
                    var.kind()
                )));
            }
            let src = src.f_to_kind(var.kind())?.f_to_device(var.device())?;
            var.shallow_clone().f_copy_(&src)?;
        }
        Ok(())
    })?;
    Ok(Loaded { hash: digest(model)?, metadata: BTreeMap::new() })
}

/// Loads the safetensors checkpoint at `path` into `model`, after checking that its tensor
/// names, dtypes and shapes are exactly the model's and that its content matches the digest it
/// claims.
pub fn load_safetensors_into(model: &mut Network, path: &Path) -> Result<Loaded> {
    let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(path, e))?;
    let metadata: BTreeMap<String, String> = meta.metadata().clone().unwrap_or_default().into_iter().collect();

    let ours = model.named_tensors();
    let theirs: BTreeMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    let missing: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let extra: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(bad(format!(
            "does not fit a {} with {} classes: missing {} tensor(s) {:?}, unexpected {} tensor(s) {:?}; \
             pass the --arch/--dataset the checkpoint was trained with",
            model.arch(),
            model.num_classes(),
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(5).collect::<Vec<_>>()
        )));
    }

    let hash = verify_digest(path, &theirs, &metadata)?;

    tch::no_grad(|| -> Result<()> {
        for (name, var) in &ours {
            let view = &theirs[name];
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                return Err(bad(format!("tensor {name} has shape {shape:?}, the model expects {:?}", var.size())));
            }
            let kind = kind_of(view.dtype())
                .ok_or_else(|| bad(format!("tensor {name} has unsupported dtype {:?}", view.dtype())))?;
            if kind != var.kind() {
                return Err(bad(format!(
                    "tensor {name} has dtype {:?}, the model expects {:?}",
                    view.dtype(),
                    var.kind()
                )));
            }
            let src = Tensor::f_from_data_size(view.data(), &shape, kind)?.f_to_device(var.device())?;
            var.shallow_clone().f_copy_(&src)?;
        }
        Ok(())
    })?;
    Ok(Loaded { hash, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::test_support::rng_lock;
    use crate::preset::Preset;

    fn quickstart_network() -> Network {
        let cfg = Preset::find("quickstart").unwrap().runs[0].config.clone();
        crate::pipeline::build_network(&cfg, Device::Cpu).unwrap()
    }

    /// The quickstart's initial SmallCNN (seed 0) has a pinned digest: a change means the
    /// initialisation, the seed derivation or the digest layout changed, and with it every
    /// checkpoint hash of every run.
    #[test]
    fn golden_initial_smallcnn_digest() {
        let _g = rng_lock();
        let model = quickstart_network();
        assert_eq!(
            digest(&model).unwrap().to_hex(),
            include_str!("../../fixtures/golden/smallcnn_quickstart_init.txt").trim()
        );
    }

    #[test]
    fn save_load_roundtrip_keeps_digest_and_outputs() {
        let _g = rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let model = quickstart_network();
        // Move BatchNorm-free SmallCNN away from init so zero-initialised fc3 is not trivially equal.
        tch::no_grad(|| {
            for (_, t) in model.named_tensors() {
                let _ = t.shallow_clone().f_add_(&(t.randn_like() * 0.01)).unwrap();
            }
        });
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let h = save(&model, &path, &meta).unwrap();
        assert_eq!(h, digest(&model).unwrap());
        assert_eq!(read_metadata(&path).unwrap().get("k").map(String::as_str), Some("v"));

        let mut other = Network::new(model.arch(), crate::data::Dataset::Mnist.image_shape(), 10, Device::Cpu).unwrap();
        assert_ne!(digest(&other).unwrap(), h);
        let loaded = load_into(&mut other, &path).unwrap();
        assert_eq!(loaded.hash, h);
        assert_eq!(digest(&other).unwrap(), h);
        let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        let (a, b) = (model.forward_t(&x, false), other.forward_t(&x, false));
        assert_eq!(f64::try_from((a - b).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn truncated_and_tampered_files_are_refused() {
        let _g = rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut model = quickstart_network();
        save(&model, &path, &BTreeMap::new()).unwrap();
        let bytes = std::fs::read(&path).unwrap();

        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 16]).unwrap();
        let e = load_into(&mut model, &cut).unwrap_err().to_string();
        assert!(e.contains("cut.safetensors") && e.contains("truncated"), "{e}");

        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 3] ^= 1;
        let bad = dir.path().join("bad.safetensors");
        std::fs::write(&bad, &flipped).unwrap();
        let e = load_into(&mut model, &bad).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors") && e.contains("digest"), "{e}");
    }
    /// A `torch.save` state dict, as RobustBench ships them, loads into the architecture it was
    /// saved from: `module.` prefixes dropped, missing `num_batches_tracked` tolerated, the
    /// weights and outputs identical, the digest that of the weights whatever the format.
    #[test]
    fn torch_save_state_dicts_load_with_robustbench_conventions() {
        use crate::interop::torch_file::save_state_dict;
        use crate::models::layers::test_support::{batch, build};
        use crate::models::Arch;
        let dir = tempfile::tempdir().unwrap();
        let src = build(Arch::PreActResNet18, 10, 5);
        // Running statistics away from their defaults, so eval-mode outputs depend on them.
        tch::no_grad(|| {
            for (name, t) in src.named_tensors() {
                if name.ends_with("running_var") {
                    let _ = t.shallow_clone().f_fill_(1.7).unwrap();
                }
            }
        });
        let entries: Vec<(String, Tensor)> = src
            .named_tensors()
            .into_iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, t)| (format!("module.{k}"), t))
            .collect();
        let path = dir.path().join("zoo.pt");
        save_state_dict(&entries, &path).unwrap();
        assert_eq!(format_of(&path).unwrap(), Format::TorchSave);
        let mut dst = build(Arch::PreActResNet18, 10, 6);
        let loaded = load_into(&mut dst, &path).unwrap();
        assert_eq!(loaded.hash, digest(&src).unwrap());
        let x = batch(Arch::PreActResNet18, 3);
        let (a, b) = tch::no_grad(|| (src.forward_t(&x, false), dst.forward_t(&x, false)));
        assert_eq!(f64::try_from((a - b).abs().max()).unwrap(), 0.0);

        // The wrong architecture names what is missing and what is unexpected.
        let mut wrong = build(Arch::ResNet18, 10, 0);
        let e = load_into(&mut wrong, &path).unwrap_err().to_string();
        assert!(
            e.contains("zoo.pt") && e.contains("resnet18") && e.contains("missing") && e.contains("bn1.weight"),
            "{e}"
        );
        // The wrong class count names the classifier's shape.
        let mut hundred = build(Arch::PreActResNet18, 100, 0);
        let e = load_into(&mut hundred, &path).unwrap_err().to_string();
        assert!(e.contains("tensor linear.") && e.contains("10 outputs") && e.contains("100 classes"), "{e}");
        // RobustBench's WideResNet(sub_block1=True) saves an unused group: skipped.
        let wrn = build(Arch::Wrn28x10, 10, 1);
        let mut with_sub: Vec<(String, Tensor)> = wrn.named_tensors().into_iter().collect();
        with_sub.push((
            "sub_block1.layer.0.conv1.weight".into(),
            Tensor::zeros([160, 16, 3, 3], (Kind::Float, Device::Cpu)),
        ));
        let wpath = dir.path().join("wrn.pth");
        save_state_dict(&with_sub, &wpath).unwrap();
        let mut wdst = build(Arch::Wrn28x10, 10, 2);
        assert_eq!(load_into(&mut wdst, &wpath).unwrap().hash, digest(&wrn).unwrap());
        // A legacy-format file cut after its magic number is a named error.
        let legacy = dir.path().join("old.pt");
        std::fs::write(&legacy, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
        assert_eq!(format_of(&legacy).unwrap(), Format::TorchSave);
        let e = load_into(&mut wdst, &legacy).unwrap_err().to_string();
        assert!(e.contains("old.pt") && e.contains("ends early"), "{e}");
    }
}
