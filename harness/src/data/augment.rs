//! Training-set augmentation (SPEC §2, "Augmentation"): random crop with zero padding and
//! random horizontal flip, drawn from a caller-supplied seeded RNG.
//!
//! tch's own augmentation helpers draw from an unseeded generator and are never used here. The
//! draws per image are fixed so that a seed reproduces a batch exactly: first the crop's row
//! offset `dy`, then its column offset `dx` (each `rng.gen_range(0..=8u32)`), then the flip bit
//! (`rng.gen_bool(0.5)`); a policy draws only what it needs.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ImageShape;

/// Zero padding added on each side of an image before a random crop.
pub(crate) const CROP_PAD: usize = 4;

/// A per-image augmentation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    /// The image as it is.
    None,
    /// A random crop of the original size from the image zero-padded by 4 pixels on each side:
    /// offsets `dy`, `dx` uniform in `0..=8`, so pixel `(r, c)` of the result is pixel
    /// `(r + dy - 4, c + dx - 4)` of the source, or 0 where that lies outside it. SVHN's policy
    /// (digits must not be mirrored).
    Crop,
    /// [`Augment::Crop`] followed by a horizontal flip with probability 1/2. The CIFAR policy.
    CropFlip,
}

impl Augment {
    /// Whether the policy crops.
    pub fn crops(self) -> bool {
        matches!(self, Augment::Crop | Augment::CropFlip)
    }

    /// Whether the policy may flip.
    pub fn flips(self) -> bool {
        matches!(self, Augment::CropFlip)
    }
}

/// Writes one image, `src` (CHW bytes of `shape`), into `dst` as `f32` values `value / 255`,
/// after applying `aug` with randomness from `rng`. Padding pixels are 0.0.
///
/// # Panics
/// If `src` or `dst` does not hold exactly `shape.numel()` values.
pub(crate) fn augment_into(src: &[u8], shape: ImageShape, aug: Augment, rng: &mut impl Rng, dst: &mut [f32]) {
    assert_eq!(src.len(), shape.numel(), "source image size");
    assert_eq!(dst.len(), shape.numel(), "destination image size");
    let to_f32 = |v: u8| f32::from(v) / 255.0;
    if !aug.crops() {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = to_f32(s);
        }
        return;
    }
    let max_offset = 2 * CROP_PAD as u32;
    let dy = rng.gen_range(0..=max_offset) as usize;
    let dx = rng.gen_range(0..=max_offset) as usize;
    let flip = aug.flips() && rng.gen_bool(0.5);

    let (h, w) = (shape.height, shape.width);
    // Source row/column of output row `r` / column `c`, when inside the image.
    let src_row = |r: usize| (r + dy).checked_sub(CROP_PAD).filter(|&y| y < h);
    let src_col = |c: usize| {
        let c = if flip { w - 1 - c } else { c };
        (c + dx).checked_sub(CROP_PAD).filter(|&x| x < w)
    };
    for (src_plane, dst_plane) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(h * w)) {
        for (r, dst_row) in dst_plane.chunks_exact_mut(w).enumerate() {
            match src_row(r) {
                None => dst_row.fill(0.0),
                Some(y) => {
                    let row = &src_plane[y * w..(y + 1) * w];
                    for (c, d) in dst_row.iter_mut().enumerate() {
                        *d = src_col(c).map_or(0.0, |x| to_f32(row[x]));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const SHAPE: ImageShape = ImageShape { channels: 3, height: 32, width: 32 };

    /// A test image whose every pixel is distinct enough to catch any misplacement.
    fn image() -> Vec<u8> {
        (0..SHAPE.numel()).map(|i| (i * 7 % 253 + 1) as u8).collect()
    }

    fn run(aug: Augment, seed: u64) -> Vec<f32> {
        let mut dst = vec![f32::NAN; SHAPE.numel()];
        augment_into(&image(), SHAPE, aug, &mut ChaCha8Rng::seed_from_u64(seed), &mut dst);
        dst
    }

    /// The expected output, recomputed from the definition with the offsets `dy`, `dx` and
    /// flip bit drawn in the documented order from an identically seeded RNG.
    fn expected(aug: Augment, seed: u64) -> (Vec<f32>, usize, usize, bool) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dy = rng.gen_range(0..=8u32) as i64;
        let dx = rng.gen_range(0..=8u32) as i64;
        let flip = aug == Augment::CropFlip && rng.gen_bool(0.5);
        let src = image();
        let mut out = Vec::with_capacity(SHAPE.numel());
        for ch in 0..3i64 {
            for r in 0..32i64 {
                for c in 0..32i64 {
                    let c = if flip { 31 - c } else { c };
                    let (y, x) = (r + dy - 4, c + dx - 4);
                    let v = if (0..32).contains(&y) && (0..32).contains(&x) {
                        src[(ch * 1024 + y * 32 + x) as usize] as f32 / 255.0
                    } else {
                        0.0
                    };
                    out.push(v);
                }
            }
        }
        (out, dy as usize, dx as usize, flip)
    }

    #[test]
    fn none_is_value_over_255() {
        let out = run(Augment::None, 1);
        let want: Vec<f32> = image().iter().map(|&v| v as f32 / 255.0).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn none_draws_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut dst = vec![0.0; SHAPE.numel()];
        augment_into(&image(), SHAPE, Augment::None, &mut rng, &mut dst);
        let mut fresh = ChaCha8Rng::seed_from_u64(5);
        assert_eq!(rng.gen::<u64>(), fresh.gen::<u64>());
    }

    #[test]
    fn crop_is_a_shifted_copy_with_zero_padding() {
        let mut offsets = std::collections::HashSet::new();
        for seed in 0..64 {
            let (want, dy, dx, flip) = expected(Augment::Crop, seed);
            assert!(!flip);
            assert_eq!(run(Augment::Crop, seed), want, "seed {seed}");
            offsets.insert((dy, dx));
        }
        // The offsets really vary, and include crops that need padding.
        assert!(offsets.len() > 20, "{offsets:?}");
        assert!(offsets.iter().any(|&(dy, dx)| dy != 4 || dx != 4));
    }

    #[test]
    fn crop_zeroes_exactly_the_padded_border() {
        // Find a seed whose crop is shifted in both directions, then check the zero region.
        let seed = (0..)
            .find(|&s| {
                let (_, dy, dx, _) = expected(Augment::Crop, s);
                dy < 4 && dx > 4
            })
            .unwrap();
        let (_, dy, dx, _) = expected(Augment::Crop, seed);
        let out = run(Augment::Crop, seed);
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    let v = out[ch * 1024 + r * 32 + c];
                    // Rows above 4 - dy and columns from 36 - dx on come from the padding.
                    let padded = r < 4 - dy || c >= 36 - dx;
                    assert_eq!(v == 0.0, padded, "seed {seed} ch {ch} r {r} c {c}");
                }
            }
        }
    }

    #[test]
    fn crop_flip_mirrors_with_probability_one_half() {
        let mut flips = 0;
        for seed in 0..200 {
            let (want, _, _, flip) = expected(Augment::CropFlip, seed);
            assert_eq!(run(Augment::CropFlip, seed), want, "seed {seed}");
            flips += usize::from(flip);
        }
        assert!((60..=140).contains(&flips), "{flips} flips in 200");
    }

    #[test]
    fn flip_without_shift_mirrors_each_row() {
        let seed = (0..)
            .find(|&s| {
                let (_, dy, dx, flip) = expected(Augment::CropFlip, s);
                dy == 4 && dx == 4 && flip
            })
            .unwrap();
        let out = run(Augment::CropFlip, seed);
        let src = image();
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    let want = src[ch * 1024 + r * 32 + (31 - c)] as f32 / 255.0;
                    assert_eq!(out[ch * 1024 + r * 32 + c], want);
                }
            }
        }
    }

    #[test]
    fn same_seed_same_output() {
        for aug in [Augment::Crop, Augment::CropFlip] {
            assert_eq!(run(aug, 42), run(aug, 42));
            assert_ne!(run(aug, 42), run(aug, 43));
        }
    }

    #[test]
    fn works_for_grey_28x28() {
        let shape = ImageShape { channels: 1, height: 28, width: 28 };
        let src = vec![255u8; shape.numel()];
        let mut dst = vec![f32::NAN; shape.numel()];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        augment_into(&src, shape, Augment::CropFlip, &mut rng, &mut dst);
        assert!(dst.iter().all(|&v| v == 0.0 || v == 1.0));
        assert!(dst.iter().all(|v| !v.is_nan()));
    }

    #[test]
    fn serde_names() {
        assert_eq!(serde_json::to_string(&Augment::CropFlip).unwrap(), "\"crop_flip\"");
        let a: Augment = serde_json::from_str("\"none\"").unwrap();
        assert_eq!(a, Augment::None);
    }
}
