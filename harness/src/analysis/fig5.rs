//! Fig. 5: the input loss surface around single test examples — the cross-entropy on the grid
//! `x + d1·v + d2·r` (clipped to [0, 1]) for d1, d2 in [-1, 1], where v is the direction PGD
//! moved the example in (its perturbation rescaled to L∞ norm eps) and r a random sign
//! direction of L∞ norm eps drawn from the analysis seed. A smooth, low surface along v is
//! what the paper shows for InfoAT.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attacks::{Attack, Pgd};
use crate::data::{make_batch, Augment, ImageSet};
use crate::losses;
use crate::models::Classifier;
use crate::seed::{derive, seed_torch, Stream};
use crate::Result;

/// What Fig. 5 is computed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig5Params {
    /// The test images (indices into the test split).
    pub examples: Vec<usize>,
    /// The radius the directions are scaled to.
    pub eps: f64,
    /// PGD steps for v.
    pub steps: usize,
    /// Grid points per axis (odd, so that (0, 0) is x itself).
    pub points: usize,
    /// Seed of r and of PGD's start.
    pub seed: u64,
}

/// One example's surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig5Example {
    /// Its index in the test split.
    pub index: usize,
    /// Its label.
    pub label: u8,
    /// Cross-entropy, `loss[i][j]` at d1 = `grid[i]` (along v), d2 = `grid[j]` (along r).
    pub loss: Vec<Vec<f64>>,
    /// Whether the prediction is wrong there.
    pub wrong: Vec<Vec<bool>>,
}

/// The numbers behind Fig. 5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fig5Result {
    /// The grid coordinates (the same on both axes).
    pub grid: Vec<f64>,
    /// Per example.
    pub examples: Vec<Fig5Example>,
}

/// Runs Fig. 5 for `p.examples` of `test`.
pub fn fig5(model: &dyn Classifier, test: &ImageSet, p: &Fig5Params) -> Result<Fig5Result> {
    let device = model.device();
    let points = p.points.max(2);
    let grid = super::grid(points);
    let g = Tensor::f_from_slice(&grid.iter().map(|&v| v as f32).collect::<Vec<_>>())?.f_to_device(device)?;
    let mut examples = Vec::new();
    for (k, &index) in p.examples.iter().enumerate() {
        if index >= test.len() {
            return Err(crate::Error::Invalid(format!(
                "example {index} is past the end of the test split ({} images)",
                test.len()
            )));
        }
        let batch = make_batch(test, &[index], Augment::None, 0, device)?;
        seed_torch(derive(p.seed, Stream::Eval, &[5, k as u64]));
        let (adv, _) = Pgd::paper(p.eps, p.steps).perturb(model, &batch.x, &batch.y)?;
        let delta = adv.f_sub(&batch.x)?;
        let top = delta.f_abs()?.f_max()?.f_double_value(&[])?;
        let v = if top > 0.0 { delta.f_mul_scalar(p.eps / top)? } else { delta };
        let r = batch.x.f_randn_like()?.f_sign()?.f_mul_scalar(p.eps)?;
        // All grid points in one batch: [P·P, C, H, W].
        let d1 = g.f_view([-1, 1, 1, 1, 1])?;
        let d2 = g.f_view([1, -1, 1, 1, 1])?;
        let x = batch.x.f_unsqueeze(0)?; // [1, 1, C, H, W]
        let pts = x.f_add(&d1.f_mul(&v.f_unsqueeze(0)?)?)?.f_add(&d2.f_mul(&r.f_unsqueeze(0)?)?)?.f_clamp(0.0, 1.0)?;
        let size = batch.x.size();
        let pts = pts.f_reshape([(points * points) as i64, size[1], size[2], size[3]])?;
        let y = batch.y.f_expand([(points * points) as i64], false)?.f_contiguous()?;
        let (loss, wrong) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
            let logits = model.logits(&pts, false)?;
            Ok((losses::ce(&logits, &y)?, logits.f_argmax(-1, false)?.f_ne_tensor(&y)?))
        })?;
        let loss: Vec<f64> = Vec::try_from(loss.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?;
        let wrong: Vec<bool> = Vec::try_from(wrong.f_to_device(tch::Device::Cpu)?)?;
        examples.push(Fig5Example {
            index,
            label: test.labels[index],
            loss: loss.chunks(points).map(<[f64]>::to_vec).collect(),
            wrong: wrong.chunks(points).map(<[bool]>::to_vec).collect(),
        });
    }
    Ok(Fig5Result { grid, examples })
}
