//! AutoAttack's cascade (Croce & Hein 2020, arXiv:2003.01690; SPEC §3 "AA"): each component
//! attack runs only on the points every earlier one left robust, and a point is robust only if
//! it survives them all — the per-example worst case, at the cost of attacking each point only
//! until it breaks.

use std::time::Instant;

use infoat_registry::{AttackId, StageCost};
use tch::{Kind, Tensor};

use super::{Attack, Trace, Traced};
use crate::eval::Counting;
use crate::models::Classifier;
use crate::Result;

/// Attacks run in order on the still-robust points.
pub struct Cascade {
    /// The cascade's id in reports (`aa`).
    pub id: String,
    /// The components, in order, with their ids (for the per-component costs, [`StageCost`]).
    pub components: Vec<(AttackId, Box<dyn Attack>)>,
}

impl Attack for Cascade {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn perturb(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let t = self.perturb_traced(model, x, y)?;
        Ok((t.adv, t.flags))
    }

    /// The cascade's trace ORs its components' traces, each on the points it attacked: an
    /// example the cascade leaves robust failed every component, and a silent success or an
    /// unfinished run in any of them is a reason it may have failed.
    fn perturb_traced(&self, model: &dyn Classifier, x: &Tensor, y: &Tensor) -> Result<Traced> {
        let _frozen = model.freeze();
        let mut trace: Option<Trace> = None;
        let wrong = |adv: &Tensor, y: &Tensor| -> Result<Tensor> {
            tch::no_grad(|| -> Result<Tensor> { Ok(model.logits(adv, false)?.f_argmax(-1, false)?.f_ne_tensor(y)?) })
        };
        let mut adv = x.copy();
        let mut stages = Vec::with_capacity(self.components.len());
        // Clean-misclassified points are broken before any attack runs.
        let mut broken = wrong(x, y)?;
        for (id, component) in &self.components {
            let idx = broken.f_logical_not()?.f_nonzero()?.f_squeeze_dim(1)?;
            if idx.size()[0] == 0 {
                break;
            }
            let start = Instant::now();
            let counting = Counting::new(model);
            let (xs, ys) = (x.f_index_select(0, &idx)?, y.f_index_select(0, &idx)?);
            let Traced { adv: a, flags, trace: sub, .. } = component.perturb_traced(&counting, &xs, &ys)?;
            if let Some(sub) = sub {
                let all = match trace.as_mut() {
                    Some(t) => t,
                    None => trace.insert(Trace::empty(y.size()[0], y.device(), false)?),
                };
                all.merge_at(&idx, &sub)?;
            }
            let mut now = wrong(&a, &ys)?;
            if let Some(f) = flags {
                now = now.f_logical_or(&f)?;
            }
            let hit = idx.f_masked_select(&now)?;
            if hit.size()[0] > 0 {
                let a_hit = a.f_index_select(0, &now.f_nonzero()?.f_squeeze_dim(1)?)?;
                adv = adv.f_index_copy(0, &hit, &a_hit)?;
                broken = broken.f_index_fill(0, &hit, 1)?;
            }
            let (forward_images, backward_images) = counting.passes();
            stages.push(StageCost {
                attack: *id,
                attacked: idx.size()[0] as usize,
                broken: hit.size()[0] as usize,
                seconds: start.elapsed().as_secs_f64(),
                forward_images,
                backward_images,
            });
        }
        Ok(Traced { adv, flags: Some(broken.f_to_kind(Kind::Bool)?), trace, stages })
    }
}
