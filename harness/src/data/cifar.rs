//! CIFAR-10 and CIFAR-100, binary version (SPEC §5; datasets.md §2, "CIFAR-10 binary" and
//! "CIFAR-100 binary").
//!
//! The files are bare sequences of fixed-size records with no header: label byte(s), then the
//! 1,024 R, 1,024 G and 1,024 B bytes of a 32x32 image, each plane row-major. That is already
//! the CHW layout of [`ImageSet`], so the pixels are copied as they are. A file must hold a
//! whole, non-zero number of records (a partial record means a truncated file) and every label
//! must be a class index.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

use super::{DataSource, Dataset, ImageSet, Split};

/// Pixel bytes of one 32x32 RGB image.
const PIXELS: usize = 3 * 32 * 32;

/// Reads the CIFAR-10 binary version: `data_batch_1.bin` … `data_batch_5.bin` (training, in
/// that order) and `test_batch.bin`, from a directory or its `cifar-10-batches-bin/` subfolder.
#[derive(Debug, Clone)]
pub struct Cifar10Binary {
    dir: PathBuf,
}

impl Cifar10Binary {
    /// A reader of the CIFAR-10 binary files in `dir` (or in `dir/cifar-10-batches-bin`, where
    /// the official archive unpacks).
    pub fn new(dir: PathBuf) -> Self {
        Cifar10Binary { dir }
    }
}

impl DataSource for Cifar10Binary {
    fn dataset(&self) -> Dataset {
        Dataset::Cifar10
    }

    fn load(&self, split: Split) -> Result<ImageSet> {
        let files: Vec<String> = match split {
            Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Split::Test => vec!["test_batch.bin".to_owned()],
        };
        let format = RecordFormat {
            dataset: Dataset::Cifar10,
            subfolder: "cifar-10-batches-bin",
            label_bytes: &[("label", 10)],
        };
        load_files(&self.dir, &files, &format)
    }
}

/// Reads the CIFAR-100 binary version: `train.bin` and `test.bin` (fine labels), from a
/// directory or its `cifar-100-binary/` subfolder.
#[derive(Debug, Clone)]
pub struct Cifar100Binary {
    dir: PathBuf,
}

impl Cifar100Binary {
    /// A reader of the CIFAR-100 binary files in `dir` (or in `dir/cifar-100-binary`, where the
    /// official archive unpacks).
    pub fn new(dir: PathBuf) -> Self {
        Cifar100Binary { dir }
    }
}

impl DataSource for Cifar100Binary {
    fn dataset(&self) -> Dataset {
        Dataset::Cifar100
    }

    fn load(&self, split: Split) -> Result<ImageSet> {
        let file = match split {
            Split::Train => "train.bin",
            Split::Test => "test.bin",
        };
        let format = RecordFormat {
            dataset: Dataset::Cifar100,
            subfolder: "cifar-100-binary",
            label_bytes: &[("coarse label", 20), ("fine label", 100)],
        };
        load_files(&self.dir, &[file.to_owned()], &format)
    }
}

/// The layout of one flavour of CIFAR record file.
struct RecordFormat {
    dataset: Dataset,
    /// The folder the official archive unpacks to.
    subfolder: &'static str,
    /// The label bytes at the start of each record, with their number of classes; the last one
    /// is the label used.
    label_bytes: &'static [(&'static str, usize)],
}

impl RecordFormat {
    fn record_len(&self) -> usize {
        self.label_bytes.len() + PIXELS
    }
}

/// Where `file` is: `dir/file`, else `dir/<subfolder>/file`.
fn locate(dir: &Path, file: &str, format: &RecordFormat) -> Result<PathBuf> {
    let direct = dir.join(file);
    if direct.is_file() {
        return Ok(direct);
    }
    let nested = dir.join(format.subfolder).join(file);
    if nested.is_file() {
        return Ok(nested);
    }
    Err(Error::MissingData {
        path: direct,
        what: format!("{} binary version, {file} (also looked in {})", format.dataset, nested.display()),
        hint: format.dataset.obtain_hint(),
    })
}

/// Reads and concatenates the record files `files`, in order.
fn load_files(dir: &Path, files: &[String], format: &RecordFormat) -> Result<ImageSet> {
    // Locate everything first, so a missing file is reported before any large read.
    let paths = files.iter().map(|f| locate(dir, f, format)).collect::<Result<Vec<_>>>()?;
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        shape: format.dataset.image_shape(),
        num_classes: format.dataset.num_classes(),
    };
    for path in &paths {
        let part = read_record_file(path, format)?;
        set.images.extend_from_slice(&part.images);
        set.labels.extend_from_slice(&part.labels);
    }
    Ok(set)
}

/// Reads one record file, checking its size and every label byte.
fn read_record_file(path: &Path, format: &RecordFormat) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record_len = format.record_len();
    if bytes.is_empty() {
        return Err(Error::format(path, format!("at least one {record_len}-byte record"), "an empty file"));
    }
    if bytes.len() % record_len != 0 {
        return Err(Error::format(
            path,
            format!("a whole number of {record_len}-byte records"),
            format!(
                "{} bytes = {} records + {} bytes (truncated or not a {} binary file)",
                bytes.len(),
                bytes.len() / record_len,
                bytes.len() % record_len,
                format.dataset
            ),
        ));
    }
    let n = bytes.len() / record_len;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    let n_labels = format.label_bytes.len();
    for (i, record) in bytes.chunks_exact(record_len).enumerate() {
        let (head, pixels) = record.split_at(n_labels);
        for (&value, &(name, classes)) in head.iter().zip(format.label_bytes) {
            if value as usize >= classes {
                return Err(Error::format(
                    path,
                    format!("{name}s in 0..{classes}"),
                    format!("{name} {value} at record {i}"),
                ));
            }
        }
        labels.push(head[n_labels - 1]);
        images.extend_from_slice(pixels);
    }
    let set =
        ImageSet { images, labels, shape: format.dataset.image_shape(), num_classes: format.dataset.num_classes() };
    set.check(path)?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::assert_format;

    const CIFAR10_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/data/cifar10");
    const CIFAR100_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/data/cifar100");

    fn fixture(dir: &str, file: &str) -> Vec<u8> {
        std::fs::read(Path::new(dir).join(file)).unwrap()
    }

    #[test]
    fn cifar10_fixture_loads() {
        let set = Cifar10Binary::new(CIFAR10_DIR.into()).load(Split::Test).unwrap();
        assert_eq!(set.len(), 20);
        assert_eq!(set.shape, Dataset::Cifar10.image_shape());
        assert_eq!(set.num_classes, 10);
        assert_eq!(set.labels, [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]);
        // Image 0, pixel (row 0, col 0): R 158, G 112, B 49 (planes 1,024 bytes apart).
        let img = set.image(0);
        assert_eq!([img[0], img[1024], img[2048]], [158, 112, 49]);
        // The pixels are the record bytes after the label, unchanged.
        let raw = fixture(CIFAR10_DIR, "test_batch.bin");
        assert_eq!(set.image(7), &raw[7 * 3073 + 1..8 * 3073]);
    }

    #[test]
    fn cifar10_train_concatenates_batches_in_order_from_the_subfolder() {
        let raw = fixture(CIFAR10_DIR, "test_batch.bin");
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&sub).unwrap();
        // Batch i holds records 4(i-1) .. 4i of the fixture.
        for i in 1..=5 {
            let part = &raw[(i - 1) * 4 * 3073..i * 4 * 3073];
            std::fs::write(sub.join(format!("data_batch_{i}.bin")), part).unwrap();
        }
        let source = Cifar10Binary::new(dir.path().to_path_buf());
        let train = source.load(Split::Train).unwrap();
        let test = Cifar10Binary::new(CIFAR10_DIR.into()).load(Split::Test).unwrap();
        assert_eq!(train, test);
        // No test file there.
        let err = source.load(Split::Test).unwrap_err();
        match &err {
            Error::MissingData { path, what, hint } => {
                assert!(path.ends_with("test_batch.bin"), "{err}");
                assert!(what.contains("cifar-10-batches-bin"), "{err}");
                assert_eq!(hint, &Dataset::Cifar10.obtain_hint());
            }
            other => panic!("expected Error::MissingData, got {other:?}"),
        }
    }

    #[test]
    fn cifar10_missing_batch_is_missing_data() {
        let raw = fixture(CIFAR10_DIR, "test_batch.bin");
        let dir = tempfile::tempdir().unwrap();
        for i in [1, 2, 4, 5] {
            std::fs::write(dir.path().join(format!("data_batch_{i}.bin")), &raw).unwrap();
        }
        let err = Cifar10Binary::new(dir.path().to_path_buf()).load(Split::Train).unwrap_err();
        assert!(matches!(&err, Error::MissingData { path, .. } if path.ends_with("data_batch_3.bin")), "{err}");
        assert!(err.to_string().contains("data_batch_3.bin"), "{err}");
    }

    #[test]
    fn cifar10_partial_record_is_a_format_error() {
        let raw = fixture(CIFAR10_DIR, "test_batch.bin");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), &raw[..2 * 3073 + 100]).unwrap();
        let err = Cifar10Binary::new(dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        assert_format(
            err,
            "test_batch.bin",
            &[
                "test_batch.bin",
                "whole number of 3073-byte records",
                "6246 bytes",
                "2 records + 100 bytes",
                "truncated",
            ],
        );
    }

    #[test]
    fn cifar10_empty_file_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), b"").unwrap();
        let err = Cifar10Binary::new(dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        assert_format(err, "test_batch.bin", &["3073-byte record", "empty file"]);
    }

    #[test]
    fn cifar10_label_out_of_range_is_a_format_error() {
        let mut raw = fixture(CIFAR10_DIR, "test_batch.bin");
        raw[5 * 3073] = 10;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), &raw).unwrap();
        let err = Cifar10Binary::new(dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        assert_format(err, "test_batch.bin", &["labels in 0..10", "label 10 at record 5"]);
    }

    #[test]
    fn cifar100_fixture_loads_fine_labels() {
        let set = Cifar100Binary::new(CIFAR100_DIR.into()).load(Split::Test).unwrap();
        assert_eq!(set.len(), 20);
        assert_eq!(set.num_classes, 100);
        assert_eq!(set.shape, Dataset::Cifar100.image_shape());
        assert_eq!(set.labels, [49, 33, 72, 51, 71, 92, 15, 14, 23, 0, 71, 75, 81, 69, 40, 43, 92, 97, 70, 53]);
        let raw = fixture(CIFAR100_DIR, "test.bin");
        assert_eq!(set.image(0), &raw[2..3074]);
        assert_eq!(set.image(19), &raw[19 * 3074 + 2..20 * 3074]);
    }

    #[test]
    fn cifar100_subfolder_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-100-binary");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("train.bin"), fixture(CIFAR100_DIR, "test.bin")).unwrap();
        let source = Cifar100Binary::new(dir.path().to_path_buf());
        assert_eq!(source.load(Split::Train).unwrap().len(), 20);
        let err = source.load(Split::Test).unwrap_err();
        assert!(matches!(&err, Error::MissingData { path, .. } if path.ends_with("test.bin")), "{err}");
    }

    #[test]
    fn cifar100_fine_label_out_of_range_is_a_format_error() {
        let mut raw = fixture(CIFAR100_DIR, "test.bin");
        raw[3 * 3074 + 1] = 100;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.bin"), &raw).unwrap();
        let err = Cifar100Binary::new(dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        assert_format(err, "test.bin", &["fine labels in 0..100", "fine label 100 at record 3"]);
    }

    #[test]
    fn cifar100_coarse_label_out_of_range_is_a_format_error() {
        let mut raw = fixture(CIFAR100_DIR, "test.bin");
        raw[2 * 3074] = 20;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.bin"), &raw).unwrap();
        let err = Cifar100Binary::new(dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        assert_format(err, "test.bin", &["coarse labels in 0..20", "coarse label 20 at record 2"]);
    }

    #[test]
    fn cifar100_file_of_cifar10_records_is_a_format_error() {
        // 20 CIFAR-10 records (61,460 bytes) are not a whole number of 3,074-byte records.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.bin"), fixture(CIFAR10_DIR, "test_batch.bin")).unwrap();
        let err = Cifar100Binary::new(dir.path().to_path_buf()).load(Split::Test).unwrap_err();
        assert_format(err, "test.bin", &["whole number of 3074-byte records", "61460 bytes"]);
    }
}
