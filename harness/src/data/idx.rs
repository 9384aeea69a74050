//! MNIST and Fashion-MNIST in the IDX format (SPEC §5; datasets.md §2, "IDX").
//!
//! Each split is an image file (`00 00 08 03`, then big-endian u32 sizes N, 28, 28, then N·784
//! pixel bytes) and a label file (`00 00 08 01`, N, then N label bytes). Each file may be raw or
//! gzipped (`.gz` suffix); the raw file wins when both exist. The loader checks the magic, the
//! dimensions, that the data is exactly as long as the header says (neither truncated nor
//! followed by extra bytes), that both files hold the same number of items and that every label
//! is a class index.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

use super::{DataSource, Dataset, ImageSet, Split};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;
/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads MNIST-style IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or `.gz`) from one directory.
#[derive(Debug, Clone)]
pub struct IdxSource {
    dataset: Dataset,
    dir: PathBuf,
}

impl IdxSource {
    /// A reader of `dataset` (MNIST or Fashion-MNIST, which share file names and format) from
    /// the IDX files in `dir`.
    pub fn new(dataset: Dataset, dir: PathBuf) -> Self {
        debug_assert!(
            matches!(dataset, Dataset::Mnist | Dataset::FashionMnist),
            "{dataset} is not stored as IDX files"
        );
        IdxSource { dataset, dir }
    }

    /// A human name of the dataset for messages.
    fn title(&self) -> &'static str {
        match self.dataset {
            Dataset::FashionMnist => "Fashion-MNIST",
            _ => "MNIST",
        }
    }

    /// The path of `stem` in the directory, raw preferred over `.gz`.
    fn locate(&self, stem: &str, what: &str) -> Result<PathBuf> {
        let raw = self.dir.join(stem);
        if raw.is_file() {
            return Ok(raw);
        }
        let gz = self.dir.join(format!("{stem}.gz"));
        if gz.is_file() {
            return Ok(gz);
        }
        Err(Error::MissingData {
            path: raw,
            what: format!("{} {what} ({stem} or {stem}.gz)", self.title()),
            hint: self.dataset.obtain_hint(),
        })
    }
}

impl DataSource for IdxSource {
    fn dataset(&self) -> Dataset {
        self.dataset
    }

    fn load(&self, split: Split) -> Result<ImageSet> {
        let (prefix, part) = match split {
            Split::Train => ("train", "training"),
            Split::Test => ("t10k", "test"),
        };
        let shape = self.dataset.image_shape();
        let images_path = self.locate(&format!("{prefix}-images-idx3-ubyte"), &format!("{part} images"))?;
        let labels_path = self.locate(&format!("{prefix}-labels-idx1-ubyte"), &format!("{part} labels"))?;

        let (image_dims, images) = read_idx(&images_path, IMAGES_MAGIC)?;
        if image_dims[1..] != [shape.height, shape.width] {
            return Err(Error::format(
                &images_path,
                format!("images of {} x {} pixels", shape.height, shape.width),
                format!("dimensions {}", dims_text(&image_dims)),
            ));
        }
        let (label_dims, labels) = read_idx(&labels_path, LABELS_MAGIC)?;
        let (n_images, n_labels) = (image_dims[0], label_dims[0]);
        if n_images != n_labels {
            return Err(Error::format(
                &labels_path,
                format!("as many labels as {} has images ({n_images})", images_path.display()),
                format!("{n_labels} labels"),
            ));
        }
        if n_images == 0 {
            return Err(Error::format(&images_path, "at least one image", "0 images"));
        }
        let set = ImageSet { images, labels, shape, num_classes: self.dataset.num_classes() };
        set.check(&labels_path)?;
        Ok(set)
    }
}

/// `a x b x c` for messages.
fn dims_text(dims: &[usize]) -> String {
    dims.iter().map(usize::to_string).collect::<Vec<_>>().join(" x ")
}

/// Reads the whole file, inflating it when its name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, "a gzip stream", e.to_string()))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Reads an IDX file of unsigned bytes whose magic must be `magic`; returns its dimensions and
/// its data (exactly the product of the dimensions in bytes).
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut bytes = read_maybe_gz(path)?;
    let gz_note = if path.extension().is_some_and(|e| e == "gz") { " after decompression" } else { "" };
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let expected_magic =
        format!("IDX magic 0x{magic:08x} (unsigned bytes, {ndims} dimension{})", if ndims == 1 { "" } else { "s" });
    if bytes.len() < 4 {
        return Err(Error::format(path, expected_magic, format!("a file of {} bytes{gz_note}", bytes.len())));
    }
    let found_magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found_magic != magic {
        let note = if bytes.starts_with(&GZIP_MAGIC) {
            " (this looks like gzip data: name the file with a .gz suffix)"
        } else {
            ""
        };
        return Err(Error::format(path, expected_magic, format!("0x{found_magic:08x}{note}")));
    }
    if bytes.len() < header_len {
        return Err(Error::format(
            path,
            format!("a {header_len}-byte IDX header"),
            format!("{} bytes{gz_note} (truncated)", bytes.len()),
        ));
    }
    let dims: Vec<usize> =
        bytes[4..header_len].chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    let data_len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|len| len.checked_add(header_len).is_some())
        .ok_or_else(|| Error::format(path, "IDX dimensions of a plausible size", dims_text(&dims)))?;
    let expected_len = header_len + data_len;
    if bytes.len() != expected_len {
        let what = if bytes.len() < expected_len { "truncated" } else { "extra bytes after the data" };
        return Err(Error::format(
            path,
            format!("{expected_len} bytes{gz_note} ({header_len}-byte header + {} data bytes)", dims_text(&dims)),
            format!("{} bytes ({what})", bytes.len()),
        ));
    }
    bytes.drain(..header_len);
    Ok((dims, bytes))
}

#[cfg(test)]
mod tests {
    use crate::data::test_support::assert_format;
    use std::io::Write;

    use super::*;

    /// An IDX file of unsigned bytes with the given dimensions and data.
    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// `n` deterministic 28x28 images and labels `i % 10`.
    fn sample(n: usize) -> (Vec<u8>, Vec<u8>) {
        let images = (0..n * 784).map(|i| (i * 31 % 251) as u8).collect();
        let labels = (0..n).map(|i| (i % 10) as u8).collect();
        (images, labels)
    }

    /// Writes a test split (`t10k-*`) into `dir`, gzipped or raw.
    fn write_split(dir: &Path, images: &[u8], labels: &[u8], gz: bool) {
        let n = labels.len() as u32;
        let img = idx_bytes(IMAGES_MAGIC, &[n, 28, 28], images);
        let lbl = idx_bytes(LABELS_MAGIC, &[n], labels);
        let (img, lbl, suffix) = if gz { (gzip(&img), gzip(&lbl), ".gz") } else { (img, lbl, "") };
        std::fs::write(dir.join(format!("t10k-images-idx3-ubyte{suffix}")), img).unwrap();
        std::fs::write(dir.join(format!("t10k-labels-idx1-ubyte{suffix}")), lbl).unwrap();
    }

    fn load_test(dir: &Path) -> Result<ImageSet> {
        IdxSource::new(Dataset::Mnist, dir.to_path_buf()).load(Split::Test)
    }

    #[test]
    fn reads_raw_and_gz_identically() {
        let (images, labels) = sample(3);
        let raw = tempfile::tempdir().unwrap();
        write_split(raw.path(), &images, &labels, false);
        let gz = tempfile::tempdir().unwrap();
        write_split(gz.path(), &images, &labels, true);
        let a = load_test(raw.path()).unwrap();
        let b = load_test(gz.path()).unwrap();
        assert_eq!(a.images, images);
        assert_eq!(a.labels, labels);
        assert_eq!(a.shape, Dataset::Mnist.image_shape());
        assert_eq!(a.num_classes, 10);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn prefers_raw_over_gz() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(2);
        write_split(dir.path(), &images, &labels, false);
        // A different (and corrupt) gz copy next to the raw files must be ignored.
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte.gz"), b"not gzip").unwrap();
        assert_eq!(load_test(dir.path()).unwrap().labels, labels);
    }

    #[test]
    fn wrong_magic_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(2);
        write_split(dir.path(), &images, &labels, false);
        let bad = idx_bytes(0x0000_0801, &[2, 28, 28], &images);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), bad).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-images-idx3-ubyte", &["t10k-images-idx3-ubyte", "0x00000803", "0x00000801"]);
    }

    #[test]
    fn gzip_data_without_gz_suffix_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(2);
        write_split(dir.path(), &images, &labels, false);
        let img = gzip(&idx_bytes(IMAGES_MAGIC, &[2, 28, 28], &images));
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), img).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-images-idx3-ubyte", &["0x00000803", "gzip"]);
    }

    #[test]
    fn truncated_image_file_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(3);
        write_split(dir.path(), &images, &labels, false);
        let full = idx_bytes(IMAGES_MAGIC, &[3, 28, 28], &images);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &full[..full.len() - 100]).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        // 16-byte header + 3 * 784 = 2368 expected, 2268 found.
        assert_format(
            err,
            "t10k-images-idx3-ubyte",
            &["t10k-images-idx3-ubyte", "2368 bytes", "2268 bytes", "truncated"],
        );
    }

    #[test]
    fn truncated_gz_image_file_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(3);
        write_split(dir.path(), &images, &labels, true);
        let full = gzip(&idx_bytes(IMAGES_MAGIC, &[3, 28, 28], &images));
        let path = dir.path().join("t10k-images-idx3-ubyte.gz");
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-images-idx3-ubyte.gz", &["gzip stream"]);
    }

    #[test]
    fn corrupt_gzip_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(3);
        write_split(dir.path(), &images, &labels, true);
        let mut bytes = gzip(&idx_bytes(LABELS_MAGIC, &[3], &labels));
        let mid = bytes.len() / 2;
        for b in &mut bytes[10..mid] {
            *b ^= 0x5a;
        }
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), bytes).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-labels-idx1-ubyte.gz", &["t10k-labels-idx1-ubyte.gz", "expected a gzip stream"]);
    }

    #[test]
    fn truncated_label_file_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(3);
        write_split(dir.path(), &images, &labels, false);
        let lbl = idx_bytes(LABELS_MAGIC, &[3], &labels[..2]);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), lbl).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        // 8-byte header + 3 labels = 11 expected, 10 found.
        assert_format(
            err,
            "t10k-labels-idx1-ubyte",
            &["t10k-labels-idx1-ubyte", "expected 11 bytes", "found 10 bytes", "truncated"],
        );
    }

    #[test]
    fn trailing_bytes_are_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(2);
        write_split(dir.path(), &images, &labels, false);
        let mut lbl = idx_bytes(LABELS_MAGIC, &[2], &labels);
        lbl.push(0);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), lbl).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-labels-idx1-ubyte", &["expected 10 bytes", "found 11 bytes", "extra bytes"]);
    }

    #[test]
    fn wrong_image_size_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let labels = [1u8, 2];
        let img = idx_bytes(IMAGES_MAGIC, &[2, 32, 32], &[0; 2 * 1024]);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), img).unwrap();
        let lbl = idx_bytes(LABELS_MAGIC, &[2], &labels);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), lbl).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-images-idx3-ubyte", &["28 x 28", "2 x 32 x 32"]);
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(3);
        write_split(dir.path(), &images, &labels, false);
        let lbl = idx_bytes(LABELS_MAGIC, &[2], &labels[..2]);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), lbl).unwrap();
        let err = load_test(dir.path()).unwrap_err();
        assert_format(
            err,
            "t10k-labels-idx1-ubyte",
            &["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "(3)", "2 labels"],
        );
    }

    #[test]
    fn label_out_of_range_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (images, _) = sample(3);
        write_split(dir.path(), &images, &[4, 10, 2], false);
        let err = load_test(dir.path()).unwrap_err();
        assert_format(err, "t10k-labels-idx1-ubyte", &["t10k-labels-idx1-ubyte", "0..10", "label 10 at record 1"]);
    }

    #[test]
    fn missing_file_is_missing_data() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = sample(1);
        write_split(dir.path(), &images, &labels, false);
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let err = IdxSource::new(Dataset::FashionMnist, dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        let msg = err.to_string();
        match &err {
            Error::MissingData { path, what, hint } => {
                assert!(path.ends_with("t10k-labels-idx1-ubyte"), "{msg}");
                assert!(what.contains("Fashion-MNIST test labels"), "{msg}");
                assert!(what.contains("t10k-labels-idx1-ubyte.gz"), "{msg}");
                assert_eq!(hint, &Dataset::FashionMnist.obtain_hint());
            }
            other => panic!("expected Error::MissingData, got {other:?}"),
        }
        // The training split is missing altogether.
        let err = load_test_train(dir.path()).unwrap_err();
        assert!(matches!(&err, Error::MissingData { path, .. } if path.ends_with("train-images-idx3-ubyte")), "{err}");
    }

    fn load_test_train(dir: &Path) -> Result<ImageSet> {
        IdxSource::new(Dataset::Mnist, dir.to_path_buf()).load(Split::Train)
    }

    /// The full MNIST test split from the data cache, when it is there.
    #[test]
    fn real_mnist_test_split() {
        let dir = super::super::default_data_dir(Dataset::Mnist);
        let required = std::env::var("INFOAT_REQUIRE_REAL_DATA").is_ok_and(|v| v == "1");
        let present = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
            .iter()
            .all(|f| dir.join(f).is_file() || dir.join(format!("{f}.gz")).is_file());
        if !present && !required {
            eprintln!(
                "skipping real_mnist_test_split: no MNIST under {} (set INFOAT_REQUIRE_REAL_DATA=1 to fail instead)",
                dir.display()
            );
            return;
        }
        let set = Dataset::Mnist.source(&dir).load(Split::Test).unwrap();
        assert_eq!(set.len(), 10_000);
        assert_eq!(set.images.len(), 10_000 * 784);
        assert_eq!(&set.labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
        // Background is 0 and ink reaches 255.
        assert_eq!(set.image(0)[0], 0);
        assert_eq!(set.images.iter().max(), Some(&255));
    }
}
