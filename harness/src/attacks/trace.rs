//! The compact per-example trace a gradient attack keeps of its run (issue 22), from which the
//! evaluation reads two of Pintor et al.'s indicators of attack failure (NeurIPS 2022,
//! arXiv:2106.09947 §3): *silent success* (a point the attack evaluated was misclassified, the
//! returned point is not) and *incomplete optimization* (the loss still rising at the end).
//!
//! The trace is built from what the attack computes anyway — the logits and per-example loss at
//! every point it takes a gradient at — so tracing costs no model pass and changes no iterate.
//! Per example it keeps whether any of those points was misclassified, the loss path's minimum
//! and maximum, and the sums of the loss over its last two windows of `W` points.
//!
//! **Incomplete optimization.** The authors' test rescales the loss path to [0, 1] by its own
//! minimum and maximum, takes its running extremum, and flags a rise of more than 0.05 over the
//! last 10 points. On fixed-step sign-gradient attacks that test reads oscillation as progress:
//! on the quickstart's AT SmallCNN it flagged 25 of the 26 examples PGD-20 left robust, while
//! PGD-100 broke only 2 of them (a running maximum of an oscillating plateau keeps setting
//! records). Here the test compares the loss's *mean* over the last window of `W` points with
//! its mean over the window before: incomplete when it rose by more than [`INCOMPLETE_RISE`]
//! (0.05, the authors' figure) of the path's range — a trend, not a record. `W` is the authors'
//! [`WINDOW`] = 10, or a quarter of the path when that is shorter (PGD-20: 5); a path with
//! `W` < 2 (FGSM's single point) says nothing about convergence, and such an attack has no
//! incomplete-optimization count.

use tch::{Kind, Tensor};

use crate::Result;

/// The longest window of the convergence test, in points (the authors' 10).
pub const WINDOW: usize = 10;

/// Rise of the mean loss from the second-last to the last window, as a fraction of the path's
/// range, above which the optimization is incomplete (the authors' 0.05).
pub const INCOMPLETE_RISE: f64 = 0.05;

/// The window `W` of a path of `points` points: [`WINDOW`], or a quarter of the path when shorter;
/// `None` when that is under 2 points (the path is too short to judge).
pub fn window(points: usize) -> Option<usize> {
    Some(WINDOW.min(points / 4)).filter(|&w| w >= 2)
}

/// Per example: the mean loss rose by more than [`INCOMPLETE_RISE`] of the path's range
/// (`max − min`) from the window summing to `early` to the one summing to `late`, each of `w`
/// points.
pub fn still_rising(early: &Tensor, late: &Tensor, min: &Tensor, max: &Tensor, w: usize) -> Result<Tensor> {
    let rise = late.f_sub(early)?.f_div_scalar(w as f64)?;
    Ok(rise.f_gt_tensor(&max.f_sub(min)?.f_mul_scalar(INCOMPLETE_RISE)?)?)
}

/// What an attack's run says about each example of its batch.
#[derive(Debug)]
pub struct Trace {
    /// `[N]` bool: some point the attack evaluated was misclassified.
    pub fooled: Tensor,
    /// `[N]` bool: the loss was still rising at the end ([`still_rising`]); `None` for an attack
    /// whose path is too short to judge.
    pub incomplete: Option<Tensor>,
}

impl Trace {
    /// Per example of `self` and `other` (two runs on the same batch: restarts, targets): fooled
    /// in either, incomplete in either — more iterations of either run might have broken it.
    pub fn or(self, other: Trace) -> Result<Trace> {
        let incomplete = match (self.incomplete, other.incomplete) {
            (Some(a), Some(b)) => Some(a.f_logical_or(&b)?),
            (a, b) => a.or(b),
        };
        Ok(Trace { fooled: self.fooled.f_logical_or(&other.fooled)?, incomplete })
    }

    /// A trace of `n` examples where nothing happened (the start of an accumulation).
    pub fn empty(n: i64, device: tch::Device, judged: bool) -> Result<Trace> {
        let f = Tensor::f_zeros([n], (Kind::Bool, device))?;
        Ok(Trace { incomplete: judged.then(|| f.copy()), fooled: f })
    }

    /// Writes the trace of a run on the examples at `idx` (a subset of this batch) into this one,
    /// OR-ing with what is there.
    pub fn merge_at(&mut self, idx: &Tensor, sub: &Trace) -> Result<()> {
        let fooled = self.fooled.f_index_select(0, idx)?.f_logical_or(&sub.fooled)?;
        self.fooled = self.fooled.f_index_copy(0, idx, &fooled)?;
        match (&mut self.incomplete, &sub.incomplete) {
            (Some(mine), Some(theirs)) => {
                let merged = mine.f_index_select(0, idx)?.f_logical_or(theirs)?;
                *mine = mine.f_index_copy(0, idx, &merged)?;
            }
            (None, Some(theirs)) => {
                let all = self.fooled.f_zeros_like()?;
                self.incomplete = Some(all.f_index_copy(0, idx, theirs)?);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Records the loss path of one run, point by point.
#[derive(Debug)]
pub struct PathTracer {
    /// Points the run will evaluate.
    points: usize,
    seen: usize,
    fooled: Option<Tensor>,
    min: Option<Tensor>,
    max: Option<Tensor>,
    early: Option<Tensor>,
    late: Option<Tensor>,
}

impl PathTracer {
    /// A tracer for a run that evaluates the model at `points` points (PGD-k: k).
    pub fn new(points: usize) -> PathTracer {
        PathTracer { points, seen: 0, fooled: None, min: None, max: None, early: None, late: None }
    }

    /// Records one point: its logits `[N, K]` and per-example loss `[N]` (both may track
    /// gradients; they are detached here), against labels `y`.
    pub fn record(&mut self, logits: &Tensor, loss: &Tensor, y: &Tensor) -> Result<()> {
        let wrong = logits.f_detach()?.f_argmax(-1, false)?.f_ne_tensor(y)?;
        let loss = loss.f_detach()?.f_to_kind(Kind::Double)?;
        let or = |old: Option<Tensor>, f: &dyn Fn(Tensor) -> Result<Tensor>| -> Result<Option<Tensor>> {
            Ok(Some(match old {
                Some(o) => f(o)?,
                None => loss.copy(),
            }))
        };
        self.fooled = Some(match self.fooled.take() {
            Some(f) => f.f_logical_or(&wrong)?,
            None => wrong,
        });
        self.min = or(self.min.take(), &|m| Ok(m.f_minimum(&loss)?))?;
        self.max = or(self.max.take(), &|m| Ok(m.f_maximum(&loss)?))?;
        if let Some(w) = window(self.points) {
            let i = self.seen;
            if i + 2 * w >= self.points && i + w < self.points {
                self.early = or(self.early.take(), &|s| Ok(s.f_add(&loss)?))?;
            } else if i + w >= self.points {
                self.late = or(self.late.take(), &|s| Ok(s.f_add(&loss)?))?;
            }
        }
        self.seen += 1;
        Ok(())
    }

    /// The trace of the run (`n` examples, for a run that recorded nothing).
    pub fn finish(self, n: i64, device: tch::Device) -> Result<Trace> {
        let fooled = match self.fooled {
            Some(f) => f,
            None => Tensor::f_zeros([n], (Kind::Bool, device))?,
        };
        let incomplete = match (window(self.points), self.min, self.max, self.early, self.late) {
            (Some(w), Some(min), Some(max), Some(early), Some(late)) if self.seen == self.points => {
                Some(still_rising(&early, &late, &min, &max, w)?)
            }
            _ => None,
        };
        Ok(Trace { fooled, incomplete })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(values: &[&[f64]]) -> Trace {
        // values[point][example]
        let n = values[0].len() as i64;
        let mut t = PathTracer::new(values.len());
        let y = Tensor::from_slice(&vec![0i64; n as usize]);
        for v in values {
            // Logits favouring class 0 (never fooled) except where the loss exceeds 10.
            let wrong: Vec<f32> = v.iter().map(|&l| if l > 10.0 { 1.0 } else { -1.0 }).collect();
            let z1 = Tensor::from_slice(&wrong).unsqueeze(1);
            let logits = Tensor::cat(&[z1.zeros_like(), z1], 1);
            t.record(&logits, &Tensor::from_slice(v), &y).unwrap();
        }
        t.finish(n, tch::Device::Cpu).unwrap()
    }

    fn bools(t: &Tensor) -> Vec<bool> {
        Vec::<bool>::try_from(t).unwrap()
    }

    #[test]
    fn a_plateau_is_complete_a_late_trend_is_not_and_short_paths_are_not_judged() {
        // 20 points (windows of 5); example 0 plateaus after 5; example 1 rises steadily to the
        // end; example 2 is flat; example 3 oscillates on a plateau (setting new records late,
        // which the authors' running-maximum test would read as progress).
        let pts: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let f = i as f64;
                let osc = if i % 2 == 0 { 1.0 } else { 0.9 } + if i == 19 { 0.08 } else { 0.0 };
                vec![f.min(5.0) / 5.0, f / 19.0, 0.3, if i < 3 { f / 3.0 } else { osc }]
            })
            .collect();
        let refs: Vec<&[f64]> = pts.iter().map(Vec::as_slice).collect();
        let t = path(&refs);
        assert_eq!(bools(t.incomplete.as_ref().unwrap()), vec![false, true, false, false]);
        assert_eq!(bools(&t.fooled), vec![false; 4]);
        // FGSM-like: one point says nothing; nor do seven.
        assert!(path(&[&[0.1, 0.2]]).incomplete.is_none());
        assert_eq!(window(7), None);
        assert_eq!(window(20), Some(5));
        assert_eq!(window(101), Some(10));
    }

    #[test]
    fn fooled_is_any_point_and_traces_merge_by_or() {
        let t = path(&[&[0.1, 0.1], &[11.0, 0.2], &[0.3, 0.3]]);
        assert_eq!(bools(&t.fooled), vec![true, false]);
        let mut all = Trace::empty(4, tch::Device::Cpu, true).unwrap();
        let idx = Tensor::from_slice(&[3i64, 1]);
        all.merge_at(&idx, &t).unwrap();
        assert_eq!(bools(&all.fooled), vec![false, false, false, true]);
        assert_eq!(bools(all.incomplete.as_ref().unwrap()), vec![false; 4]);
    }
}
