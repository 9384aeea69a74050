//! What an attack or an evaluation needs of a model: logits for images in [0, 1], the device,
//! the number of classes, and a way to stop parameter gradients while input gradients are
//! computed. The harness's own [`Network`](super::Network) and an external TorchScript module
//! ([`ScriptModel`]) both provide it, so every attack runs on either (issue 4, "Any model").

use std::path::Path;

use tch::{Device, Tensor};

use crate::{Error, Result};

/// A differentiable image classifier.
pub trait Classifier {
    /// Logits for a batch `x` in [0, 1], NCHW. `train` selects training behaviour (BatchNorm
    /// batch statistics) where the model has it; external models always run as exported.
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// The device the model's weights live on.
    fn device(&self) -> Device;

    /// Number of output classes.
    fn num_classes(&self) -> usize;

    /// Stops gradient tracking of the parameters until the guard is dropped (attacks need
    /// input gradients only).
    fn freeze(&self) -> Frozen;

    /// Runs every later forward pass in the channels-last memory format (NHWC): the 4-D
    /// parameters stored that way and each input converted on entry. The same function in
    /// float32 — only the kernels' summation order, so the rounding, differs from NCHW — and
    /// on CPUs with oneDNN much faster for convolutional models (`eval --channels-last`,
    /// issue 24). Models that cannot are refused with the reason.
    fn set_channels_last(&mut self) -> Result<()> {
        Err(Error::Invalid("this model cannot run in the channels-last memory format".into()))
    }
}

/// Restores gradient tracking of the parameters a [`Classifier::freeze`] call stopped.
#[must_use = "parameters are unfrozen when the guard is dropped"]
pub struct Frozen {
    params: Vec<Tensor>,
}

impl Frozen {
    /// Freezes those of `params` that track gradients now; re-entrant, since a nested guard
    /// sees them frozen already and leaves them to the outer one.
    pub(crate) fn new(params: impl IntoIterator<Item = Tensor>) -> Frozen {
        let params: Vec<Tensor> = params.into_iter().filter(|t| t.requires_grad()).collect();
        for p in &params {
            let _ = p.set_requires_grad(false);
        }
        Frozen { params }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for p in &self.params {
            let _ = p.set_requires_grad(true);
        }
    }
}

/// A TorchScript module (`torch.jit.script` or `torch.jit.trace`, saved with `.save()`) that
/// maps float32 NCHW images in [0, 1] to logits, evaluated in eval mode.
pub struct ScriptModel {
    module: tch::CModule,
    device: Device,
    num_classes: usize,
    channels_last: bool,
}

impl std::fmt::Debug for ScriptModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptModel").field("device", &self.device).field("num_classes", &self.num_classes).finish()
    }
}

impl ScriptModel {
    /// Loads `path` onto `device` and checks it on one example of `input_shape` (C, H, W): the
    /// output must be a `[1, K]` float tensor with K ≥ 2 classes.
    pub fn load(path: &Path, device: Device, input_shape: [i64; 3]) -> Result<ScriptModel> {
        let bad = |expected: &str, found: String| {
            Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("expected {expected}, found {found}; export the model with torch.jit.script(model).save(path) or torch.jit.trace(model, example).save(path)"),
        }
        };
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such TorchScript file"),
            });
        }
        let mut module = tch::CModule::load_on_device(path, device).map_err(|e| {
            bad(
                "a TorchScript module saved with torch.jit.save (torch.jit.script or torch.jit.trace)",
                first_line(&e.to_string()),
            )
        })?;
        module.set_eval();
        let probe = Tensor::f_zeros([1, input_shape[0], input_shape[1], input_shape[2]], (tch::Kind::Float, device))?;
        let out = tch::no_grad(|| module.forward_ts(&[probe])).map_err(|e| {
            bad(
                &format!(
                    "a module whose forward takes one [N, {}, {}, {}] float tensor",
                    input_shape[0], input_shape[1], input_shape[2]
                ),
                first_line(&e.to_string()),
            )
        })?;
        let size = out.size();
        if size.len() != 2 || size[0] != 1 || size[1] < 2 || !out.is_floating_point() {
            return Err(bad(
                "logits of shape [N, K] (K ≥ 2) as float",
                format!("an output of shape {size:?} and kind {:?}", out.kind()),
            ));
        }
        Ok(ScriptModel { module, device, num_classes: size[1] as usize, channels_last: false })
    }
}

/// The first non-empty line of a (libtorch) error message, trimmed.
pub(crate) fn first_line(s: &str) -> String {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

impl Classifier for ScriptModel {
    fn logits(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let x = if self.channels_last { crate::precision::channels_last(x) } else { x.shallow_clone() };
        Ok(self.module.forward_ts(&[x])?.f_to_kind(tch::Kind::Float)?)
    }

    fn device(&self) -> Device {
        self.device
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn freeze(&self) -> Frozen {
        Frozen::new(self.module.named_parameters().unwrap_or_default().into_iter().map(|(_, t)| t))
    }

    /// The module's 4-D parameters re-stored channels-last in place (as PyTorch's
    /// `module.to(memory_format=torch.channels_last)` does); the module's code is unchanged.
    fn set_channels_last(&mut self) -> Result<()> {
        if !self.channels_last {
            crate::precision::params_to_channels_last(self.module.named_parameters()?.into_iter().map(|(_, t)| t));
            self.channels_last = true;
        }
        Ok(())
    }
}
