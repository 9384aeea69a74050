//! Content-addressed checkpoint blobs: `blobs/<aa>/<sha256>.safetensors`, named by the
//! checkpoint digest (sha256 over the tensors sorted by name, [`crate::checkpoint_digest`]),
//! written atomically (temporary file, fsync, rename, fsync of the folder) and re-hashed on
//! every read. Blobs are only ever parsed as safetensors, never as pickles.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{checkpoint_digest, ContentHash, Error, Result, TensorEntry};

/// The checkpoint digest of a safetensors file's contents.
///
/// # Errors
/// [`Error::Corrupt`] naming `origin` when the bytes are not a valid safetensors file.
pub fn safetensors_digest(bytes: &[u8], origin: &Path) -> Result<ContentHash> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Corrupt {
        path: origin.to_path_buf(),
        problem: format!("not a valid safetensors file ({e:?})"),
    })?;
    let tensors = st.tensors();
    let dtypes: Vec<String> = tensors.iter().map(|(_, v)| format!("{:?}", v.dtype())).collect();
    checkpoint_digest(tensors.iter().zip(&dtypes).map(|((name, view), dtype)| TensorEntry {
        name,
        dtype,
        shape: view.shape(),
        data: view.data(),
    }))
}

/// Writes `bytes` to `path` through a temporary file in the same folder: write, fsync, rename,
/// fsync the folder. A crash leaves either the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The blob store of a registry.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// The store rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Blobs {
        Blobs { dir: dir.into() }
    }

    /// Where the blob `hash` lives.
    pub fn path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(format!("{hex}.safetensors"))
    }

    /// True when a blob file for `hash` exists (not verified).
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.path(hash).is_file()
    }

    /// Stores a safetensors file's bytes under their digest (no-op when already present and
    /// intact); returns the digest.
    pub fn put_bytes(&self, bytes: &[u8], origin: &Path) -> Result<ContentHash> {
        let hash = safetensors_digest(bytes, origin)?;
        if self.verify(&hash).is_err() {
            write_atomic(&self.path(&hash), bytes)?;
        }
        Ok(hash)
    }

    /// The bytes of blob `hash`, re-hashed: a blob whose contents no longer match its name is
    /// an [`Error::Corrupt`], a missing one an [`Error::MissingBlob`].
    pub fn read_verified(&self, hash: &ContentHash) -> Result<Vec<u8>> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::MissingBlob { hash: *hash, path }),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let found = safetensors_digest(&bytes, &path)?;
        if &found != hash {
            return Err(Error::Corrupt {
                path,
                problem: format!("contents hash to {found}, not the {hash} the file is named after"),
            });
        }
        Ok(bytes)
    }

    /// Re-hashes blob `hash` (see [`Blobs::read_verified`]).
    pub fn verify(&self, hash: &ContentHash) -> Result<()> {
        self.read_verified(hash).map(|_| ())
    }

    /// Every blob the store holds, by the hash its file name claims.
    pub fn list(&self) -> Result<Vec<ContentHash>> {
        let mut out = Vec::new();
        let Ok(shards) = std::fs::read_dir(&self.dir) else { return Ok(out) };
        for shard in shards.flatten() {
            let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if let Some(h) = name.strip_suffix(".safetensors").and_then(|h| h.parse::<ContentHash>().ok()) {
                    out.push(h);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes blob `hash` (garbage collection only).
    pub fn remove(&self, hash: &ContentHash) -> Result<()> {
        let path = self.path(hash);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::{Dtype, TensorView};

    use super::*;

    /// A small valid safetensors file whose one tensor holds `values`.
    pub(crate) fn checkpoint_bytes(values: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![values.len()], &data).unwrap();
        safetensors::tensor::serialize(vec![("w".to_string(), view)], &Some(HashMap::new())).unwrap()
    }

    #[test]
    fn blobs_are_named_by_their_checkpoint_digest_and_verified_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path().join("blobs"));
        let bytes = checkpoint_bytes(&[1.0, 2.0]);
        let h = blobs.put_bytes(&bytes, Path::new("a.safetensors")).unwrap();
        // The digest is of the tensors, so it equals checkpoint_digest of the same entry.
        let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let expect = checkpoint_digest([TensorEntry { name: "w", dtype: "F32", shape: &[2], data: &data }]).unwrap();
        assert_eq!(h, expect);
        assert_eq!(blobs.read_verified(&h).unwrap(), bytes);
        assert_eq!(blobs.list().unwrap(), vec![h]);

        // Flip one data byte on disk: reading reports corruption, naming the file.
        let path = blobs.path(&h);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = blobs.read_verified(&h).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&h.to_hex()[..16]), "{err}");
        // Putting the good bytes again repairs it.
        blobs.put_bytes(&bytes, Path::new("a.safetensors")).unwrap();
        blobs.verify(&h).unwrap();

        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(blobs.verify(&h), Err(Error::Corrupt { .. })));
        blobs.remove(&h).unwrap();
        assert!(matches!(blobs.verify(&h), Err(Error::MissingBlob { .. })));
    }

    #[test]
    fn non_safetensors_input_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path());
        let err = blobs.put_bytes(b"\x80\x02pickle", Path::new("model.pt")).unwrap_err();
        assert!(err.to_string().contains("model.pt") && err.to_string().contains("safetensors"), "{err}");
    }
}
