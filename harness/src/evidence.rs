//! Evidence anyone can re-check (issue 21): for every example an attack breaks, the point that
//! breaks it — a *witness* — kept in a content-addressed safetensors blob per evaluation and
//! attack, and the check that confirms a witness with nothing but the model's forward pass.
//!
//! A blob holds `indices` (Int64 `[k]`, the examples' positions in the evaluated test set) and
//! `adversarial` (Float32 `[k, C, H, W]`, in [0, 1]), plus metadata naming the attack and eps.
//! Float32 is the attacks' own precision, so re-predicting a stored point is exact on the
//! machine that stored it (the check runs in the same fixed chunks, [`CHUNK`], both times).
//!
//! A witness is confirmed when (1) its L∞ distance to the clean image is at most eps +
//! [`LINF_TOLERANCE`] (float32 rounding of x + δ), (2) every pixel lies in [0, 1] (up to the
//! same tolerance) and (3) the verdict classifier's prediction differs from the label: the model
//! itself, or for BPDA the defended g = f∘T with T the 5-bit depth reduction, written here
//! independently of the attack (`round(x · 31) / 31`, round half to even). Nothing here calls
//! an attack.

use std::collections::BTreeMap;
use std::path::Path;

use infoat_registry::{AttackId, ContentHash};
use tch::{Kind, Tensor};

use crate::data::{make_batch, Augment, ImageSet};
use crate::models::Classifier;
use crate::{Error, Result};

/// Slack on the L∞ bound and the [0, 1] box: float32 rounding of x + δ near 1.
pub const LINF_TOLERANCE: f64 = 1e-6;
/// Images per forward pass of the check (fixed, so that a point's logits are computed the
/// same way when stored and when verified).
pub const CHUNK: usize = 256;
/// Bit depth of BPDA's input transform T (SPEC §3's default, the harness's `bpda`).
pub const BPDA_BITS: u32 = 5;

/// The witnesses of one attack on one evaluation.
#[derive(Debug)]
pub struct Witnesses {
    /// Positions of the broken examples in the evaluated test set, ascending.
    pub indices: Vec<i64>,
    /// Their adversarial images, Float32 `[k, C, H, W]` on the CPU.
    pub images: Tensor,
}

/// What the check found for one witness.
#[derive(Debug, Clone, PartialEq)]
pub struct WitnessCheck {
    /// The example's position in the test set.
    pub index: usize,
    /// L∞ distance to the clean image.
    pub linf: f64,
    /// Every pixel in [0, 1].
    pub in_box: bool,
    /// The verdict classifier's prediction differs from the label.
    pub fools: bool,
    /// All three conditions hold.
    pub confirmed: bool,
}

impl Witnesses {
    /// Number of witnesses.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The safetensors bytes of the blob and their content hash.
    pub fn to_bytes(&self, attack: AttackId, eps: f64) -> Result<(Vec<u8>, ContentHash)> {
        let mut tensors = BTreeMap::new();
        tensors.insert("indices".to_string(), Tensor::from_slice(&self.indices));
        tensors.insert("adversarial".to_string(), self.images.f_to_kind(Kind::Float)?.f_contiguous()?);
        let meta = BTreeMap::from([
            ("content".to_string(), "infoat witnesses v1".to_string()),
            ("attack".to_string(), attack.name().to_string()),
            ("eps".to_string(), format!("{eps}")),
        ]);
        crate::checkpoint::serialize_named(&tensors, Path::new(&format!("witnesses of {attack}")), &meta)
    }

    /// Reads a blob's bytes (`origin` names it in errors).
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Witnesses> {
        let (tensors, _) = crate::checkpoint::deserialize_named(bytes, origin)?;
        let bad = |what: String| Error::Checkpoint { path: origin.to_path_buf(), message: what };
        let indices = tensors.get("indices").ok_or_else(|| bad("no tensor 'indices' in a witness blob".into()))?;
        let images =
            tensors.get("adversarial").ok_or_else(|| bad("no tensor 'adversarial' in a witness blob".into()))?;
        let indices: Vec<i64> = Vec::try_from(indices.f_to_kind(Kind::Int64)?)?;
        if images.size().first().copied() != Some(indices.len() as i64) {
            return Err(bad(format!("{} indices but adversarial images of shape {:?}", indices.len(), images.size())));
        }
        Ok(Witnesses { indices, images: images.f_to_kind(Kind::Float)? })
    }
}

/// Per example of a chunk: L∞ distance, lowest and highest pixel, misclassified.
type ChunkChecks = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<bool>);

/// Logits of the classifier `attack`'s verdict is about: the model, or BPDA's f∘T.
fn verdict_logits(model: &dyn Classifier, attack: AttackId, x: &Tensor) -> Result<Tensor> {
    if attack == AttackId::Bpda {
        let levels = f64::from((1u32 << BPDA_BITS) - 1);
        let t = x.f_mul_scalar(levels)?.f_round()?.f_div_scalar(levels)?;
        return model.logits(&t, false);
    }
    model.logits(x, false)
}

/// Checks every witness of `attack` against the clean test set `clean` (the evaluated images,
/// in order) at radius `eps`.
pub fn check(
    model: &dyn Classifier,
    attack: AttackId,
    clean: &ImageSet,
    witnesses: &Witnesses,
    eps: f64,
) -> Result<Vec<WitnessCheck>> {
    let mut out = Vec::with_capacity(witnesses.len());
    let idx: Vec<usize> = witnesses
        .indices
        .iter()
        .map(|&i| {
            usize::try_from(i).ok().filter(|&i| i < clean.len()).ok_or_else(|| {
                Error::Invalid(format!("witness index {i} is outside the {} evaluated test images", clean.len()))
            })
        })
        .collect::<Result<_>>()?;
    let device = model.device();
    for (c, chunk) in idx.chunks(CHUNK).enumerate() {
        let batch = make_batch(clean, chunk, Augment::None, 0, device)?;
        let start = (c * CHUNK) as i64;
        let adv = witnesses.images.f_narrow(0, start, chunk.len() as i64)?.f_to_device(device)?;
        let (linf, low, high, fools) = tch::no_grad(|| -> Result<ChunkChecks> {
            let flat = |t: &Tensor| t.f_flatten(1, -1);
            let diff = flat(&adv.f_sub(&batch.x)?)?.f_abs()?.f_amax(&[1i64][..], false)?;
            let low = flat(&adv)?.f_amin(&[1i64][..], false)?;
            let high = flat(&adv)?.f_amax(&[1i64][..], false)?;
            let pred = verdict_logits(model, attack, &adv)?.f_argmax(-1, false)?;
            let fools = pred.f_ne_tensor(&batch.y)?;
            let host = |t: Tensor| -> Result<Vec<f64>> {
                Ok(Vec::try_from(t.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?)
            };
            Ok((host(diff)?, host(low)?, host(high)?, Vec::try_from(fools.f_to_device(tch::Device::Cpu)?)?))
        })?;
        for (j, &index) in chunk.iter().enumerate() {
            let in_ball = linf[j] <= eps + LINF_TOLERANCE;
            let in_box = low[j] >= -LINF_TOLERANCE && high[j] <= 1.0 + LINF_TOLERANCE;
            out.push(WitnessCheck {
                index,
                linf: linf[j],
                in_box,
                fools: fools[j],
                confirmed: in_ball && in_box && fools[j],
            });
        }
    }
    Ok(out)
}

/// The witnesses an attack run leaves: of the examples `flags` marks not robust, those whose
/// returned point (`adversarial`, `[N, C, H, W]` on the CPU, in test-set order) [`check`]
/// confirms. Examples broken only at an earlier iterate, or whose returned point does not fool
/// the verdict classifier, leave none.
pub fn collect(
    model: &dyn Classifier,
    attack: AttackId,
    attacked: &ImageSet,
    adversarial: &Tensor,
    flags: &[bool],
    eps: f64,
) -> Result<Witnesses> {
    let broken: Vec<i64> = flags.iter().enumerate().filter(|(_, &robust)| !robust).map(|(i, _)| i as i64).collect();
    if broken.is_empty() {
        let shape: Vec<i64> = std::iter::once(0).chain(adversarial.size().into_iter().skip(1)).collect();
        return Ok(Witnesses {
            indices: Vec::new(),
            images: Tensor::f_zeros(&shape, (Kind::Float, tch::Device::Cpu))?,
        });
    }
    let mut candidates =
        Witnesses { indices: broken.clone(), images: adversarial.f_index_select(0, &Tensor::from_slice(&broken))? };
    let mut checks = check(model, attack, attacked, &candidates, eps)?;
    // An example the model gets wrong on its clean image is broken by the zero perturbation:
    // where the attack's returned point does not fool, the clean image is the witness.
    let rows: Vec<i64> = checks.iter().enumerate().filter(|(_, c)| !c.confirmed).map(|(j, _)| j as i64).collect();
    if !rows.is_empty() {
        let at: Vec<usize> = rows.iter().map(|&j| broken[j as usize] as usize).collect();
        let clean = make_batch(attacked, &at, Augment::None, 0, tch::Device::Cpu)?.x;
        candidates.images = candidates.images.f_index_copy(0, &Tensor::from_slice(&rows), &clean)?;
        checks = check(model, attack, attacked, &candidates, eps)?;
    }
    let keep: Vec<i64> = checks.iter().zip(&broken).filter(|(c, _)| c.confirmed).map(|(_, &i)| i).collect();
    let rows: Vec<i64> = checks.iter().enumerate().filter(|(_, c)| c.confirmed).map(|(j, _)| j as i64).collect();
    Ok(Witnesses { indices: keep, images: candidates.images.f_index_select(0, &Tensor::from_slice(&rows))? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::test_support::rng_lock;

    /// A classifier whose label is the nearest of ten grey levels to the image's mean pixel.
    struct MeanBins;

    impl Classifier for MeanBins {
        fn logits(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
            let m = x.f_flatten(1, -1)?.f_mean_dim(&[1i64][..], true, Kind::Float)?;
            let centers = Tensor::from_slice(&(0..10).map(|k| k as f32 / 9.0).collect::<Vec<_>>()).f_view([1, 10])?;
            Ok(m.f_sub(&centers)?.f_square()?.f_mul_scalar(-100.0)?)
        }
        fn device(&self) -> tch::Device {
            tch::Device::Cpu
        }
        fn num_classes(&self) -> usize {
            10
        }
        fn freeze(&self) -> crate::models::Frozen {
            crate::models::Frozen::new(Vec::<Tensor>::new())
        }
    }

    /// Images at grey levels spread over [0, 1] (so the labels differ), labelled by the model.
    fn self_labelled(model: &dyn Classifier, n: usize) -> ImageSet {
        let level = Tensor::linspace(0.0, 1.0, n as i64, (Kind::Float, tch::Device::Cpu)).view([n as i64, 1, 1, 1]);
        let x =
            (Tensor::rand([n as i64, 1, 28, 28], (Kind::Float, tch::Device::Cpu)) * 0.2 + level * 0.8).clamp(0.0, 1.0);
        crate::data::test_support::self_labelled(model, &x)
    }

    #[test]
    fn witnesses_round_trip_and_planted_bad_ones_are_caught() {
        let _g = rng_lock();
        tch::manual_seed(5);
        let model = MeanBins;
        let set = self_labelled(&model, 24);
        let idx: Vec<usize> = (0..set.len()).collect();
        let clean = make_batch(&set, &idx, Augment::None, 0, tch::Device::Cpu).unwrap().x;
        // An "attack" certain to succeed at eps 0.5: the first half of the examples shifted by
        // 0.45 towards the other end of the grey scale (their mean moves by several bins); the
        // rest left clean (robust).
        let eps = 0.5;
        let mut rows = Vec::new();
        let mut flags = Vec::new();
        for i in 0..set.len() {
            let x = clean.get(i as i64);
            if i < set.len() / 2 {
                let shift = if x.mean(Kind::Float).double_value(&[]) < 0.5 { 0.45 } else { -0.45 };
                rows.push((x + shift).clamp(0.0, 1.0));
                flags.push(false);
            } else {
                rows.push(x);
                flags.push(true);
            }
        }
        let adv = Tensor::stack(&rows, 0);
        let broken = flags.iter().filter(|f| !**f).count();
        let w = collect(&model, AttackId::Pgd20, &set, &adv, &flags, eps).unwrap();
        assert_eq!(w.len(), broken, "every returned point that fools the model is a witness");
        let (bytes, hash) = w.to_bytes(AttackId::Pgd20, eps).unwrap();
        let back = Witnesses::from_bytes(&bytes, Path::new("w")).unwrap();
        assert_eq!(back.indices, w.indices);
        assert!(back.images.equal(&w.images));
        assert_eq!(w.to_bytes(AttackId::Pgd20, eps).unwrap().1, hash, "the blob is content-addressed");
        let checks = check(&model, AttackId::Pgd20, &set, &back, eps).unwrap();
        assert!(checks.iter().all(|c| c.confirmed), "{checks:?}");
        // At a smaller radius the same points lie outside the ball.
        assert!(check(&model, AttackId::Pgd20, &set, &back, 0.1).unwrap().iter().all(|c| !c.confirmed));

        // Planted: one witness moved outside the ball, one replaced by its clean image (which the
        // model classifies correctly), one pixel pushed out of [0, 1].
        let planted = back.images.copy();
        let row = |i: i64| planted.get(i);
        let _ = row(0)
            .f_sub_(&clean.get(back.indices[0]))
            .unwrap()
            .f_mul_scalar_(1.6)
            .unwrap()
            .f_add_(&clean.get(back.indices[0]))
            .unwrap();
        let c1 = clean.get(back.indices[1]);
        row(1).copy_(&c1);
        let _ = row(2).view([-1]).get(0).f_fill_(1.5).unwrap();
        let bad = Witnesses { indices: back.indices.clone(), images: planted };
        let checks = check(&model, AttackId::Pgd20, &set, &bad, eps).unwrap();
        assert!(!checks[0].confirmed && checks[0].linf > eps, "{:?}", checks[0]);
        assert!(!checks[1].confirmed && !checks[1].fools, "{:?}", checks[1]);
        assert!(!checks[2].confirmed && !checks[2].in_box, "{:?}", checks[2]);
        assert!(checks[3..].iter().all(|c| c.confirmed));
        // An index outside the evaluated set is an error that names it.
        let out = Witnesses { indices: vec![99], images: back.images.narrow(0, 0, 1) };
        let e = check(&model, AttackId::Pgd20, &set, &out, eps).unwrap_err().to_string();
        assert!(e.contains("99") && e.contains("24 evaluated"), "{e}");
    }

    /// An example the model gets wrong on its clean image counts as broken; when the attack's
    /// returned point for it does not fool the model, the clean image is its witness.
    #[test]
    fn a_misclassified_clean_image_is_its_own_witness() {
        let _g = rng_lock();
        tch::manual_seed(6);
        let model = MeanBins;
        let mut set = self_labelled(&model, 12);
        // Example 3 relabelled: the model is now wrong on its clean image.
        set.labels[3] = (set.labels[3] + 5) % 10;
        let idx: Vec<usize> = (0..set.len()).collect();
        let clean = make_batch(&set, &idx, Augment::None, 0, tch::Device::Cpu).unwrap().x;
        // The "attack" returned the clean images, except for example 3 a point far outside the
        // ball; only example 3 is counted broken.
        let adv = clean.copy();
        let _ = adv.get(3).f_fill_(1.0).unwrap();
        let flags: Vec<bool> = (0..set.len()).map(|i| i != 3).collect();
        let w = collect(&model, AttackId::Pgd20, &set, &adv, &flags, 0.05).unwrap();
        assert_eq!(w.indices, [3]);
        assert!(w.images.get(0).equal(&clean.get(3)), "the clean image is the witness");
        assert!(check(&model, AttackId::Pgd20, &set, &w, 0.05).unwrap()[0].confirmed);
    }
}
