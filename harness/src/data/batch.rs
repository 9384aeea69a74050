//! Seeded shuffling and batch assembly (SPEC §2, "Augmentation" and the note on exact resume;
//! SPEC §1: images are float32 in [0, 1], NCHW, never normalized).
//!
//! All randomness comes from `ChaCha8Rng` seeded by the caller, so a (seed, indices) pair
//! always yields the same batch; callers derive the seed from (run seed, epoch, batch index)
//! so a resumed run replays exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

use super::augment::{augment_into, Augment};
use super::ImageSet;

/// A permutation of `0..n` drawn by Fisher–Yates with `ChaCha8Rng::seed_from_u64(seed)`.
///
/// For `i` from `n - 1` down to 1, `j = rng.gen_range(0..=i as u64)` and elements `i` and `j`
/// are swapped; drawing `u64`s keeps the result the same on every platform.
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.gen_range(0..=i as u64) as usize;
        v.swap(i, j);
    }
    v
}

/// One training or evaluation batch.
#[derive(Debug)]
pub struct Batch {
    /// Images, `Float` `[B, C, H, W]`, values in [0, 1], on the requested device.
    pub x: Tensor,
    /// Labels, `Int64` `[B]`, on the same device.
    pub y: Tensor,
}

impl Batch {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.size()[0] as usize
    }

    /// True when the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds the batch of the images `indices` of `set` (in that order), each augmented by
/// `augment` with randomness from one `ChaCha8Rng` seeded with `seed` for the whole batch
/// (drawn image after image, see [`Augment`]), and moves it to `device`. With
/// [`Augment::None`] every value is exactly `byte / 255`.
///
/// # Errors
/// [`Error::Invalid`] for an index past the end of `set`; [`Error::Torch`] when libtorch
/// cannot build or move the tensors.
pub fn make_batch(set: &ImageSet, indices: &[usize], augment: Augment, seed: u64, device: Device) -> Result<Batch> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
        return Err(Error::Invalid(format!("batch index {bad} is out of range for a set of {} images", set.len())));
    }
    let shape = set.shape;
    let numel = shape.numel();
    let mut x = vec![0f32; indices.len() * numel];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (&i, dst) in indices.iter().zip(x.chunks_exact_mut(numel)) {
        augment_into(set.image(i), shape, augment, &mut rng, dst);
    }
    let y: Vec<i64> = indices.iter().map(|&i| i64::from(set.labels[i])).collect();
    let dims = [indices.len() as i64, shape.channels as i64, shape.height as i64, shape.width as i64];
    let x = Tensor::f_from_slice(&x)?.f_view(dims)?.f_to_device(device)?;
    let y = Tensor::f_from_slice(&y)?.f_to_device(device)?;
    debug_assert_eq!(x.kind(), Kind::Float);
    debug_assert_eq!(y.kind(), Kind::Int64);
    Ok(Batch { x, y })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Cifar10Binary, DataSource, Dataset, ImageShape, Split};

    fn cifar10_fixture() -> ImageSet {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/data/cifar10");
        Cifar10Binary::new(dir.into()).load(Split::Test).unwrap()
    }

    /// A small set whose image `i` is filled with the byte `i` and labelled `i % 10`.
    fn tiny_set(n: usize) -> ImageSet {
        let shape = ImageShape { channels: 1, height: 2, width: 2 };
        ImageSet {
            images: (0..n).flat_map(|i| [i as u8; 4]).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            shape,
            num_classes: 10,
        }
    }

    fn to_vec_f32(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn shuffled_indices_is_a_deterministic_permutation() {
        for n in [0, 1, 2, 10, 1000] {
            let p = shuffled_indices(n, 7);
            let mut sorted = p.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            assert_eq!(p, shuffled_indices(n, 7));
        }
        let a = shuffled_indices(1000, 1);
        let b = shuffled_indices(1000, 2);
        assert_ne!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn make_batch_none_is_exactly_value_over_255() {
        let set = cifar10_fixture();
        let idx = [3, 0, 19];
        let batch = make_batch(&set, &idx, Augment::None, 9, Device::Cpu).unwrap();
        assert_eq!(batch.x.size(), [3, 3, 32, 32]);
        assert_eq!(batch.x.kind(), Kind::Float);
        assert_eq!(batch.y.kind(), Kind::Int64);
        assert_eq!(batch.len(), 3);
        let got = to_vec_f32(&batch.x);
        let want: Vec<f32> = idx.iter().flat_map(|&i| set.image(i).iter().map(|&v| v as f32 / 255.0)).collect();
        assert_eq!(got, want);
        // Image 0's top-left pixel: R 158, G 112, B 49.
        let i0 = &got[3072..];
        assert_eq!([i0[0], i0[1024], i0[2048]], [158.0 / 255.0, 112.0 / 255.0, 49.0 / 255.0]);
        assert_eq!(Vec::<i64>::try_from(&batch.y).unwrap(), [0, 3, 6]);
    }

    #[test]
    fn make_batch_augments_with_one_rng_in_index_order() {
        let set = cifar10_fixture();
        let idx = [5, 1, 12, 1];
        let batch = make_batch(&set, &idx, Augment::CropFlip, 77, Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(77);
        let mut want = vec![0f32; idx.len() * 3072];
        for (&i, dst) in idx.iter().zip(want.chunks_exact_mut(3072)) {
            augment_into(set.image(i), set.shape, Augment::CropFlip, &mut rng, dst);
        }
        assert_eq!(to_vec_f32(&batch.x), want);
        // Deterministic per seed; another seed gives another batch.
        let again = make_batch(&set, &idx, Augment::CropFlip, 77, Device::Cpu).unwrap();
        assert_eq!(to_vec_f32(&again.x), want);
        let other = make_batch(&set, &idx, Augment::CropFlip, 78, Device::Cpu).unwrap();
        assert_ne!(to_vec_f32(&other.x), want);
        // Values stay in [0, 1].
        assert!(want.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn make_batch_rejects_out_of_range_index() {
        let set = tiny_set(4);
        let err = make_batch(&set, &[0, 4], Augment::None, 0, Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains("index 4"), "{err}");
    }

    #[test]
    fn make_batch_empty() {
        let set = tiny_set(4);
        let batch = make_batch(&set, &[], Augment::None, 0, Device::Cpu).unwrap();
        assert_eq!(batch.x.size(), [0, 1, 2, 2]);
        assert!(batch.is_empty());
    }

    #[test]
    fn make_batch_on_cuda_when_available() {
        crate::cuda_library::load();
        if !tch::Cuda::is_available() {
            eprintln!("skipping make_batch_on_cuda_when_available: no CUDA device");
            return;
        }
        let set = cifar10_fixture();
        let cpu = make_batch(&set, &[0, 1], Augment::Crop, 3, Device::Cpu).unwrap();
        let gpu = make_batch(&set, &[0, 1], Augment::Crop, 3, Device::Cuda(0)).unwrap();
        assert_eq!(gpu.x.device(), Device::Cuda(0));
        assert_eq!(gpu.y.device(), Device::Cuda(0));
        assert_eq!(to_vec_f32(&gpu.x.to_device(Device::Cpu)), to_vec_f32(&cpu.x));
    }

    #[test]
    fn split_holdout_sizes_and_disjointness() {
        let set = tiny_set(50);
        let (train, val) = set.split_holdout(12, 5).unwrap();
        assert_eq!((train.len(), val.len()), (38, 12));
        // Image i is filled with byte i, so the first byte identifies it.
        let ids = |s: &ImageSet| (0..s.len()).map(|k| s.image(k)[0] as usize).collect::<Vec<_>>();
        let (t, v) = (ids(&train), ids(&val));
        // Original relative order kept, and the labels follow their images.
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        for (k, &i) in t.iter().enumerate() {
            assert_eq!(train.labels[k] as usize, i % 10);
        }
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        // Deterministic per seed, different across seeds.
        assert_eq!(set.split_holdout(12, 5).unwrap().1, val);
        assert_ne!(set.split_holdout(12, 6).unwrap().1, val);
        // Holding out everything is refused.
        assert!(matches!(set.split_holdout(50, 5), Err(Error::Invalid(_))));
        assert_eq!(Dataset::Cifar10.default_augment(), Augment::CropFlip);
    }
}
