//! Seed derivation: every random draw of a run comes from the run's seed, split into
//! independent named streams by a counter-based mix, so a draw depends only on
//! (seed, stream, epoch, batch) and never on how many draws happened before it. That makes an
//! interrupted run resumable exactly, and keeps libtorch's generator (re-seeded per batch) and
//! our own ChaCha streams (shuffling, augmentation) apart.

/// The independent random streams of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Model initialisation (libtorch generator).
    Init,
    /// The validation hold-out permutation.
    Holdout,
    /// The order of training images in an epoch.
    Shuffle,
    /// Crops and flips of one batch.
    Augment,
    /// libtorch's generator during one training batch (dropout, attack starts).
    Torch,
    /// libtorch's generator during evaluation.
    Eval,
    /// A training method's own draws in one batch (GanDef's discriminator batch).
    Method,
    /// Which extra (pseudo-labelled) images join one batch.
    Extra,
    /// Crops and flips of those extra images.
    ExtraAugment,
    /// An evaluation's diagnostics: planted points, noise draws (issue 22).
    Diagnostics,
}

impl Stream {
    fn tag(self) -> u64 {
        match self {
            Stream::Init => 1,
            Stream::Holdout => 2,
            Stream::Shuffle => 3,
            Stream::Augment => 4,
            Stream::Torch => 5,
            Stream::Eval => 6,
            Stream::Method => 7,
            Stream::Extra => 8,
            Stream::ExtraAugment => 9,
            Stream::Diagnostics => 10,
        }
    }
}

/// SplitMix64's finaliser: a bijective mix with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of `stream` at position `parts` (e.g. `[epoch, batch]`) of a run seeded `seed`.
pub fn derive(seed: u64, stream: Stream, parts: &[u64]) -> u64 {
    let mut h = mix(seed ^ mix(stream.tag()));
    for &p in parts {
        h = mix(h ^ mix(p.wrapping_add(0x5851_F42D_4C95_7F2D)));
    }
    h
}

/// Seeds libtorch's global generators (CPU and CUDA) from a derived seed.
pub fn seed_torch(seed: u64) {
    // libtorch takes an i64; reinterpreting the bits keeps all 64 of them.
    tch::manual_seed(seed as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_positions_are_distinct_and_stable() {
        let a = derive(0, Stream::Shuffle, &[1]);
        assert_eq!(a, derive(0, Stream::Shuffle, &[1]));
        assert_ne!(a, derive(0, Stream::Augment, &[1]));
        assert_ne!(a, derive(0, Stream::Shuffle, &[2]));
        assert_ne!(a, derive(1, Stream::Shuffle, &[1]));
        assert_ne!(derive(0, Stream::Torch, &[1, 2]), derive(0, Stream::Torch, &[2, 1]));
        // Pinned: a change here changes every run's randomness (and checkpoint hashes).
        assert_eq!(derive(0, Stream::Init, &[]), 0x5e41_ab08_7439_611e, "{:#x}", derive(0, Stream::Init, &[]));
    }

    /// `ci/crosscheck/common.py` transcribes `derive` to seed official AutoAttack per batch as
    /// `eval` seeds libtorch (`official.py --harness-starts`: bit-identical APGD starts); it
    /// checks the same two values at import.
    #[test]
    fn eval_seeds_match_the_crosschecks_transcription() {
        assert_eq!(derive(0, Stream::Eval, &[0]), 13_227_923_862_947_999_477);
        assert_eq!(derive(7, Stream::Eval, &[3]), 11_159_919_908_865_059_751);
    }
}
