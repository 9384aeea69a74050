//! Extra pseudo-labelled training images mixed into every batch: the paper's Table VI trains
//! on CIFAR-10 plus RST's 500K TinyImages with their pseudo-labels (SPEC §2 "Table VI", §5).
//!
//! Format (documented in docs/extra-data.md): two IDX files in the data folder,
//! `<name>-images-idx4-ubyte` (magic `00 00 08 04`, big-endian u32 N, H, W, C, then N·H·W·C
//! bytes, HWC per image as RST's pickle stores them) and `<name>-labels-idx1-ubyte` (`00 00 08
//! 01`, N, N label bytes), each raw or `.gz`. `ci/convert-rst-extra` writes them from RST's
//! pickle (`data` uint8 (N, 32, 32, 3), `extrapolated_targets`) and prints their digest: the
//! SHA-256 of the uncompressed image file followed by the uncompressed label file. The config
//! names the files (and may pin the digest); the digest found is recorded with the run like
//! every dataset's fingerprint, while the files' location stays the machine's business.
//!
//! Mixing (RST): a fraction of every batch (RST: half) is drawn *with replacement* from the
//! extra images, the rest are the epoch's next labelled images; an epoch is one pass over the
//! labelled images. The draws derive from (seed, epoch, batch), so a resumed run replays them.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

use super::{Dataset, ImageSet, ImageShape};

/// Magic of an IDX file of unsigned bytes with four dimensions (N, H, W, C).
const IMAGES4_MAGIC: u32 = 0x0000_0804;
/// Magic of an IDX file of unsigned bytes with one dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The `data.extra` table of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraData {
    /// The files' stem in the data folder (`ti_500K` → `ti_500K-images-idx4-ubyte[.gz]`,
    /// `ti_500K-labels-idx1-ubyte[.gz]`).
    pub name: String,
    /// SHA-256 (64 hex digits) of the uncompressed image file followed by the uncompressed
    /// label file, as `ci/convert-rst-extra` prints it. Optional: the digest found is always
    /// recorded with the run (like every dataset's fingerprint); when given, it is also checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Fraction of every training batch drawn from the extra images (RST: 0.5).
    #[serde(default = "half")]
    pub fraction: f64,
}

fn half() -> f64 {
    0.5
}

impl ExtraData {
    /// Checks the fields; the message says what is wrong.
    pub fn validate(&self, batch_size: usize) -> std::result::Result<(), String> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(format!("data.extra.name '{}': expected a file stem without folders", self.name));
        }
        if let Some(d) = &self.sha256 {
            if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(format!(
                    "data.extra.sha256 '{d}': expected 64 lower-case hex digits, as ci/convert-rst-extra prints"
                ));
            }
        }
        if !(self.fraction > 0.0 && self.fraction < 1.0) {
            return Err(format!("data.extra.fraction {}: expected a number in (0, 1), e.g. 0.5", self.fraction));
        }
        let (labelled, extra) = self.split(batch_size);
        if labelled == 0 || extra == 0 {
            return Err(format!(
                "data.extra.fraction {} of batch {batch_size} leaves {labelled} labelled and {extra} extra images per batch; both must be ≥ 1",
                self.fraction
            ));
        }
        Ok(())
    }

    /// (labelled, extra) images per training batch of `batch_size`.
    pub fn split(&self, batch_size: usize) -> (usize, usize) {
        let extra = (batch_size as f64 * self.fraction).round() as usize;
        (batch_size.saturating_sub(extra), extra.min(batch_size))
    }

    /// Loads (and, with `sha256`, verifies) the extra images from `dir` for training on
    /// `dataset`; returns them and their digest.
    pub fn load(&self, dir: &Path, dataset: Dataset) -> Result<(ImageSet, String)> {
        let images_path = locate(dir, &format!("{}-images-idx4-ubyte", self.name))?;
        let labels_path = locate(dir, &format!("{}-labels-idx1-ubyte", self.name))?;
        let images = read_maybe_gz(&images_path)?;
        let labels = read_maybe_gz(&labels_path)?;
        let digest = hex(&Sha256::new().chain_update(&images).chain_update(&labels).finalize());
        if let Some(want) = self.sha256.as_ref().filter(|w| **w != digest) {
            return Err(Error::Format {
                path: images_path,
                expected: format!("extra data with digest {want} (data.extra.sha256; images then labels, uncompressed)"),
                found: format!(
                    "digest {digest}: these are not the files the config names; convert them again or fix data.extra.sha256"
                ),
            });
        }
        Ok((parse(&images, &labels, dataset, &images_path, &labels_path)?, digest))
    }
}

/// Draws the extra images of one batch: `count` indices into `0..n`, with replacement.
pub fn draw(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| rng.gen_range(0..n as u64) as usize).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn locate(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::MissingData {
        path: dir.join(stem),
        what: format!("extra training data ({stem} or {stem}.gz)"),
        hint: "convert RST's ti_500K_pseudo_labeled.pickle with `ci/convert-rst-extra PICKLE DIR` and pass that \
               folder as --data-dir (docs/extra-data.md)"
            .into(),
    })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            expected: "a complete gzip stream".into(),
            found: format!("a broken one ({e})"),
        })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses the two files (see the module docs) into CHW images of `dataset`'s shape.
fn parse(images: &[u8], labels: &[u8], dataset: Dataset, ip: &Path, lp: &Path) -> Result<ImageSet> {
    let bad = |path: &Path, problem: String| {
        let (expected, found) = problem.split_once(" | ").unwrap_or((problem.as_str(), "something else"));
        Error::Format { path: path.to_path_buf(), expected: expected.to_string(), found: found.to_string() }
    };
    let shape: ImageShape = dataset.image_shape();
    if images.len() < 20 || be_u32(images, 0) != IMAGES4_MAGIC {
        return Err(bad(
            ip,
            "an IDX file of bytes with 4 dimensions (magic 00 00 08 04, N, H, W, C) | another header".into(),
        ));
    }
    let (n, h, w, c) = (
        be_u32(images, 4) as usize,
        be_u32(images, 8) as usize,
        be_u32(images, 12) as usize,
        be_u32(images, 16) as usize,
    );
    if (h, w, c) != (shape.height, shape.width, shape.channels) {
        return Err(bad(
            ip,
            format!(
                "{}x{}x{} images as {} has | {h}x{w}x{c} images",
                shape.height,
                shape.width,
                shape.channels,
                dataset.name()
            ),
        ));
    }
    let numel = h * w * c;
    if images.len() != 20 + n * numel {
        return Err(bad(
            ip,
            format!("{} bytes, as the header says {n} images | {} bytes", 20 + n * numel, images.len()),
        ));
    }
    if labels.len() < 8 || be_u32(labels, 0) != LABELS_MAGIC || be_u32(labels, 4) as usize != n || labels.len() != 8 + n
    {
        return Err(bad(
            lp,
            format!(
                "an IDX label file (magic 00 00 08 01) of exactly {n} labels, one per image | another header or length"
            ),
        ));
    }
    let labels = labels[8..].to_vec();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= dataset.num_classes()) {
        return Err(bad(
            lp,
            format!(
                "labels below {} (the classes of {}) | label {l} at image {i}",
                dataset.num_classes(),
                dataset.name()
            ),
        ));
    }
    // HWC → CHW.
    let mut chw = vec![0u8; n * numel];
    for (src, dst) in images[20..].chunks_exact(numel).zip(chw.chunks_exact_mut(numel)) {
        for p in 0..h * w {
            for ch in 0..c {
                dst[ch * h * w + p] = src[p * c + ch];
            }
        }
    }
    Ok(ImageSet { images: chw, labels, shape, num_classes: dataset.num_classes() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` MNIST-shaped (28x28x1) extra images and labels; returns their digest.
    fn write(dir: &Path, name: &str, n: usize, gz: bool) -> String {
        let mut images = Vec::new();
        for v in [IMAGES4_MAGIC, n as u32, 28, 28, 1] {
            images.extend_from_slice(&v.to_be_bytes());
        }
        images.extend((0..n * 784).map(|i| (i % 251) as u8));
        let mut labels = Vec::new();
        for v in [LABELS_MAGIC, n as u32] {
            labels.extend_from_slice(&v.to_be_bytes());
        }
        labels.extend((0..n).map(|i| (i % 10) as u8));
        let digest = hex(&Sha256::new().chain_update(&images).chain_update(&labels).finalize());
        let write = |stem: String, bytes: &[u8]| {
            if gz {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, bytes).unwrap();
                std::fs::write(dir.join(format!("{stem}.gz")), e.finish().unwrap()).unwrap();
            } else {
                std::fs::write(dir.join(stem), bytes).unwrap();
            }
        };
        write(format!("{name}-images-idx4-ubyte"), &images);
        write(format!("{name}-labels-idx1-ubyte"), &labels);
        digest
    }

    #[test]
    fn loads_verified_files_raw_or_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        for gz in [false, true] {
            let name = if gz { "z" } else { "r" };
            let sha256 = write(dir.path(), name, 5, gz);
            let extra = ExtraData { name: name.into(), sha256: Some(sha256.clone()), fraction: 0.5 };
            let (set, digest) = extra.load(dir.path(), Dataset::Mnist).unwrap();
            assert_eq!(digest, sha256);
            let unpinned = ExtraData { sha256: None, ..extra };
            assert_eq!(unpinned.load(dir.path(), Dataset::Mnist).unwrap().1, sha256);
            assert_eq!(set.len(), 5);
            assert_eq!(set.labels, vec![0, 1, 2, 3, 4]);
            assert_eq!(set.image(1)[0], (784 % 251) as u8);
        }
    }

    #[test]
    fn wrong_digest_shape_or_length_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sha256 = write(dir.path(), "x", 3, false);
        let wrong = ExtraData { name: "x".into(), sha256: Some("0".repeat(64)), fraction: 0.5 };
        let e = wrong.load(dir.path(), Dataset::Mnist).unwrap_err().to_string();
        assert!(e.contains("x-images-idx4-ubyte") && e.contains("digest"), "{e}");
        let good = ExtraData { name: "x".into(), sha256: Some(sha256), fraction: 0.5 };
        let e = good.load(dir.path(), Dataset::Cifar10).unwrap_err().to_string();
        assert!(e.contains("28x28x1") && e.contains("32x32x3"), "{e}");
        // Truncated: drop the last byte and re-digest, so the length check is what fails.
        let p = dir.path().join("x-images-idx4-ubyte");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.pop();
        std::fs::write(&p, &bytes).unwrap();
        let labels = std::fs::read(dir.path().join("x-labels-idx1-ubyte")).unwrap();
        let sha256 = hex(&Sha256::new().chain_update(&bytes).chain_update(&labels).finalize());
        let e = ExtraData { sha256: Some(sha256), ..good }.load(dir.path(), Dataset::Mnist).unwrap_err().to_string();
        assert!(e.contains("header says 3 images"), "{e}");
        let e = good_missing(dir.path());
        assert!(e.contains("convert-rst-extra"), "{e}");
    }

    fn good_missing(dir: &Path) -> String {
        let extra = ExtraData { name: "absent".into(), sha256: None, fraction: 0.5 };
        extra.load(dir, Dataset::Mnist).unwrap_err().to_string()
    }

    #[test]
    fn half_batches_and_seeded_draws_with_replacement() {
        let extra = ExtraData { name: "x".into(), sha256: Some("a".repeat(64)), fraction: 0.5 };
        assert_eq!(extra.split(256), (128, 128));
        assert!(extra.validate(256).is_ok());
        assert!(extra.validate(1).is_err(), "a batch of one cannot be split");
        assert!(ExtraData { fraction: 1.0, ..extra.clone() }.validate(256).is_err());
        assert!(ExtraData { sha256: Some("A".repeat(64)), ..extra.clone() }.validate(256).is_err());
        let a = draw(10, 1000, 7);
        assert_eq!(a, draw(10, 1000, 7));
        assert_ne!(a, draw(10, 1000, 8));
        assert!(a.iter().all(|&i| i < 10));
        let mut seen = a.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10, "1,000 draws from 10 hit every index");
    }
}
