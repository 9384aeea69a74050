//! A model's logits on the first test images: what someone who converted a checkpoint (a
//! RobustBench model-zoo `torch.save` state dict, a TorchScript export) compares with the logits
//! of the model they trust in PyTorch before trusting any robustness number the harness reports
//! for it (`infoat logits`; the architecture cross-check `ci/crosscheck/robustbench_archs.py`,
//! issue 23).

use std::path::PathBuf;

use tch::Tensor;

use super::evaluate::{load_model, ModelIdentity, ModelSource};
use super::load_split;
use crate::data::{make_batch, Augment, Dataset, Split};
use crate::{Error, Result};

/// What to compute logits of.
#[derive(Debug, Clone)]
pub struct LogitsRequest {
    /// The model.
    pub source: ModelSource,
    /// The dataset; the run's or checkpoint's recorded one when `None`.
    pub dataset: Option<Dataset>,
    /// Data directory; the dataset's default cache folder when `None`.
    pub data_dir: Option<PathBuf>,
    /// Device.
    pub device: tch::Device,
    /// The first `n` test images.
    pub n: usize,
}

/// Logits of the first test images.
#[derive(Debug)]
pub struct Logits {
    /// The model, as an evaluation would record it.
    pub model: ModelIdentity,
    /// The dataset.
    pub dataset: Dataset,
    /// `[n, classes]` float32 logits on the CPU, in eval mode.
    pub logits: Tensor,
    /// The images' labels.
    pub labels: Vec<u8>,
}

/// Computes the model's logits (eval mode, no gradient, IEEE float32) on the first `n` test
/// images, in one batch.
pub fn logits(req: &LogitsRequest, registry: Option<&infoat_registry::Registry>) -> Result<Logits> {
    if req.n == 0 {
        return Err(Error::Invalid("--n 0: logits of no image; give a positive count".into()));
    }
    crate::precision::configure_backends(crate::precision::Precision::Fp32);
    let (model, identity, dataset, run_dir) = load_model(&req.source, registry, req.dataset, req.device)?;
    let dir = req.data_dir.clone().or(run_dir);
    let (test, _) = load_split(dataset, dir.as_deref(), Split::Test)?;
    let test = test.take(req.n);
    let idx: Vec<usize> = (0..test.len()).collect();
    let batch = make_batch(&test, &idx, Augment::None, 0, req.device)?;
    let logits = tch::no_grad(|| model.logits(&batch.x, false))?.f_to_device(tch::Device::Cpu)?;
    Ok(Logits { model: identity, dataset, logits, labels: test.labels })
}
