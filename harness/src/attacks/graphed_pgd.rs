//! The cross-entropy PGD ascent of [`maximize`] (SPEC §2 "Inner PGD", AT's inner problem)
//! recorded once as a CUDA graph and replayed for every batch (issue 24, goal 4).
//!
//! A graph reads and writes fixed tensors, so the batch is copied into input buffers the graph
//! was captured on, and the adversarial batch is copied out of the tensor the capture produced.
//! Each replay reads the model's parameters and BatchNorm statistics where they are, so the
//! optimizer's in-place updates between replays are seen; the random start is drawn anew at every
//! replay (libtorch registers its CUDA generator with the graph).
//!
//! On the CPU there is no graph: every [`GraphedPgd::run`] runs the same ascent eagerly on the
//! same buffers. That is the path the CPU tests (`harness/tests/graphed_pgd.rs`) compare, bit for
//! bit, with [`maximize`] on the batch itself and with AT's own training step, so the buffer
//! handling a GPU run depends on is checked on every machine.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::{ce_sum, maximize, BnMode, PgdSpec};
use crate::cuda_graph::CudaGraph;
use crate::models::Network;
use crate::{Error, Result};

/// Untimed eager ascents on the capture stream before capturing (PyTorch's recipe: cuDNN's and
/// cuBLAS's lazy set-up must not happen inside the capture).
pub const WARMUP_RUNS: usize = 3;

/// How the graph's ascent compares with the eager ascent from the same generator state
/// ([`GraphedPgd::check_against_eager`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GraphCheck {
    /// Share of the adversarial batch's elements that are bit-for-bit equal.
    pub equal_fraction: f64,
    /// The largest absolute difference of an element.
    pub max_abs_diff: f64,
    /// Share of elements bit-for-bit equal between two eager ascents from the same seed: what
    /// the kernels' own nondeterminism leaves (cuDNN may pick algorithms that sum with
    /// atomics), so that a graph share below 1 can be told apart from a graph that records
    /// another computation. 1 on the CPU.
    pub eager_repeat_equal_fraction: f64,
}

/// The ascent as a replayable graph on CUDA, or eagerly on the same buffers elsewhere.
#[derive(Debug)]
pub struct GraphedPgd {
    spec: PgdSpec,
    bn: BnMode,
    /// The input buffers the ascent reads: images and labels.
    x: Tensor,
    y: Tensor,
    /// The tensor the captured ascent writes and the graph (dropped in that order, so the
    /// output leaves the graph's memory pool before the graph goes); `None` on the CPU.
    graph: Option<(Tensor, CudaGraph)>,
    /// Where the model's trainable parameters were at capture: a replay on another model
    /// would silently attack the captured one.
    params: Vec<usize>,
}

fn param_ptrs(model: &Network) -> Vec<usize> {
    model.trainable().iter().map(|(_, t)| t.data_ptr() as usize).collect()
}

impl GraphedPgd {
    /// Prepares the ascent of `spec` (objective: CE summed over the batch; BatchNorm as `bn`)
    /// on `model` for batches shaped like `x` and `y`, which also fill the buffers. On CUDA
    /// it runs `WARMUP_RUNS` (3) eager ascents on the capture stream, then captures one.
    pub fn new(model: &Network, x: &Tensor, y: &Tensor, spec: PgdSpec, bn: BnMode) -> Result<GraphedPgd> {
        let mut me = GraphedPgd {
            spec,
            bn,
            x: x.f_detach()?.copy(),
            y: y.f_detach()?.copy(),
            graph: None,
            params: param_ptrs(model),
        };
        if let device @ Device::Cuda(_) = x.device() {
            let mut graph = CudaGraph::new(device)?;
            graph.on_side_stream(|| (0..WARMUP_RUNS).try_for_each(|_| me.eager(model).map(drop)))?;
            let out = graph.capture(|| me.eager(model))?;
            me.graph = Some((out, graph));
        }
        Ok(me)
    }

    /// Refuses a model other than the one captured (a replay would attack the captured one).
    fn same_model(&self, model: &Network) -> Result<()> {
        if param_ptrs(model) != self.params {
            return Err(Error::Invalid("the graphed PGD runs on the model it was captured with, not another".into()));
        }
        Ok(())
    }

    /// The ascent on the buffers, op by op (what a graph records).
    fn eager(&self, model: &Network) -> Result<Tensor> {
        maximize(model, &self.x, &self.spec, self.bn, &mut |logits| ce_sum(logits, &self.y))
    }

    /// The ascent on the buffers as `run` gives it: a replay, its output copied out (the next
    /// replay overwrites the buffer), on CUDA; the eager ascent elsewhere.
    fn ascend(&self, model: &Network) -> Result<Tensor> {
        match &self.graph {
            Some((out, graph)) => {
                graph.replay()?;
                Ok(out.copy())
            }
            None => self.eager(model),
        }
    }

    /// The adversarial batch for `x`, `y` (shaped as at capture) on `model` (the one captured):
    /// one graph replay on CUDA, one eager ascent elsewhere. The result is a fresh tensor, not
    /// the graph's output buffer, so the next replay leaves it alone.
    pub fn run(&self, model: &Network, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        for (name, given, want) in [("images", x, &self.x), ("labels", y, &self.y)] {
            if given.size() != want.size() || given.device() != want.device() {
                return Err(Error::Invalid(format!(
                    "the graphed PGD was captured for {name} of shape {:?} on {:?}, got {:?} on {:?}: capture \
                     another one for this batch shape",
                    want.size(),
                    want.device(),
                    given.size(),
                    given.device()
                )));
            }
        }
        self.same_model(model)?;
        tch::no_grad(|| -> Result<()> {
            self.x.shallow_clone().f_copy_(x)?;
            self.y.shallow_clone().f_copy_(y)?;
            Ok(())
        })?;
        self.ascend(model)
    }

    /// Runs the ascent on the batch in the buffers three times, each from libtorch's generator
    /// seeded with `seed`: as [`GraphedPgd::run`] does (a replay on CUDA) and twice eagerly with
    /// [`maximize`], and compares the replay with the first eager ascent, and the two eager
    /// ascents with each other. libtorch draws a graph's random start from the generator's
    /// state at replay as an eager draw would, so a graph that records the attack faithfully
    /// agrees with the eager ascent as well as the eager ascent agrees with itself (exactly, with
    /// deterministic kernels); a lower share says the timing of the graph is not of the same
    /// computation. Leaves the generator seeded from `seed`.
    pub fn check_against_eager(&self, model: &Network, seed: i64) -> Result<GraphCheck> {
        self.same_model(model)?;
        tch::manual_seed(seed);
        let graphed = self.ascend(model)?;
        tch::manual_seed(seed);
        let eager = self.eager(model)?;
        tch::manual_seed(seed);
        let again = self.eager(model)?;
        let share = |a: &Tensor, b: &Tensor| -> Result<f64> {
            Ok(a.f_eq_tensor(b)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?.double_value(&[]))
        };
        let diff = graphed.f_sub(&eager)?.f_abs()?.f_max()?.double_value(&[]);
        Ok(GraphCheck {
            equal_fraction: share(&graphed, &eager)?,
            max_abs_diff: diff,
            eager_repeat_equal_fraction: share(&eager, &again)?,
        })
    }

    /// Whether the ascent runs as a captured CUDA graph (false on the CPU).
    pub fn is_graph(&self) -> bool {
        self.graph.is_some()
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::attacks::{default_step, Start};
    use crate::models::layers::test_support::{rng_lock, smallcnn_random_head};

    fn spec() -> PgdSpec {
        PgdSpec { eps: 0.3, steps: 3, step_size: default_step(0.3), start: Start::Uniform }
    }

    #[test]
    fn another_shape_or_model_is_refused_with_the_reason() {
        let _rng = rng_lock();
        let net = smallcnn_random_head(3);
        let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let graphed = GraphedPgd::new(&net, &x, &y, spec(), BnMode::Eval).unwrap();
        let x3 = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
        let y3 = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let err = graphed.run(&net, &x3, &y3).unwrap_err().to_string();
        assert!(err.contains("captured for images of shape [4, 1, 28, 28]") && err.contains("[3, 1, 28, 28]"), "{err}");
        let other = smallcnn_random_head(4);
        let err = graphed.run(&other, &x, &y).unwrap_err().to_string();
        assert!(err.contains("the model it was captured with"), "{err}");
    }

    #[test]
    fn a_cpu_device_is_refused_by_the_graph_itself() {
        let err = CudaGraph::new(Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("need a CUDA device"), "{err}");
    }
}
