//! The paper's architectures (SPEC §4), with PyTorch-compatible parameter names so a checkpoint
//! loads into the reference PyTorch models with `load_state_dict`.
//!
//! [`Arch`] names an architecture; [`Network::new`] builds it in a fresh `VarStore` with the
//! SPEC's initialisation, drawing from libtorch's generator (seed it first with
//! `tch::manual_seed`).

mod classifier;
pub(crate) mod layers;
mod resnet;
mod small_cnn;
mod wide_resnet;

pub use classifier::{Classifier, Frozen, ScriptModel};
pub use layers::BatchNorm2d;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::data::ImageShape;
use crate::precision::{Autocast, Precision};
use crate::{Error, Result};

/// The architectures of the paper and of the CPU presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Arch {
    /// TRADES' SmallCNN for 28x28 grey images (312,202 parameters).
    #[serde(rename = "smallcnn")]
    #[value(name = "smallcnn")]
    SmallCnn,
    /// CIFAR ResNet-18, post-activation (11,173,962 parameters for 10 classes).
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    /// WideResNet-34-10 (46,160,474 parameters for 10 classes).
    #[serde(rename = "wrn34_10")]
    #[value(name = "wrn34_10")]
    Wrn34x10,
    /// WideResNet-28-10 (36,479,194 parameters for 10 classes).
    #[serde(rename = "wrn28_10")]
    #[value(name = "wrn28_10")]
    Wrn28x10,
}

impl Arch {
    /// The architecture's id, as records and reports know it.
    pub fn id(self) -> infoat_registry::ArchId {
        use infoat_registry::ArchId;
        match self {
            Arch::SmallCnn => ArchId::SmallCnn,
            Arch::ResNet18 => ArchId::ResNet18,
            Arch::Wrn34x10 => ArchId::Wrn34x10,
            Arch::Wrn28x10 => ArchId::Wrn28x10,
        }
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        self.id().name()
    }

    /// Checks that this architecture accepts images of `shape`.
    pub fn check_input(self, shape: ImageShape) -> Result<()> {
        let ok = match self {
            Arch::SmallCnn => shape.height == 28 && shape.width == 28,
            _ => shape.height == 32 && shape.width == 32,
        };
        if ok {
            Ok(())
        } else {
            let want = if self == Arch::SmallCnn {
                "28x28 images (MNIST, Fashion-MNIST)"
            } else {
                "32x32 images (CIFAR-10/100, SVHN)"
            };
            Err(Error::Invalid(format!(
                "architecture {} takes {want}, but the dataset has {}x{}x{} images",
                self.name(),
                shape.channels,
                shape.height,
                shape.width
            )))
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A network's forward function, with access to intermediate stages where it has them.
pub(crate) trait Net: nn::ModuleT {
    /// Logits and the output of stage `stage` (1-based; ResNet-18's `layer1` … `layer4`), or
    /// `None` when the architecture has no such stage.
    fn forward_stage(&self, _xs: &Tensor, _train: bool, _stage: usize) -> Option<(Tensor, Tensor)> {
        None
    }
}

/// A built model: its variables (parameters and BatchNorm buffers) and its forward function.
pub struct Network {
    arch: Arch,
    num_classes: usize,
    vs: nn::VarStore,
    net: Box<dyn Net>,
    precision: Precision,
    channels_last: bool,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("arch", &self.arch).field("num_classes", &self.num_classes).finish()
    }
}

impl Network {
    /// Builds `arch` for `input` images and `num_classes` classes on `device`, initialised as
    /// SPEC §4 says (draws from libtorch's global generator).
    pub fn new(arch: Arch, input: ImageShape, num_classes: usize, device: Device) -> Result<Network> {
        arch.check_input(input)?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let c = input.channels as i64;
        let k = num_classes as i64;
        let net: Box<dyn Net> = match arch {
            Arch::SmallCnn => Box::new(small_cnn::SmallCnn::new(&root, c, k)),
            Arch::ResNet18 => Box::new(resnet::ResNet18::new(&root, c, k)),
            Arch::Wrn34x10 => Box::new(wide_resnet::WideResNet::new(&root, c, k, 34, 10)),
            Arch::Wrn28x10 => Box::new(wide_resnet::WideResNet::new(&root, c, k, 28, 10)),
        };
        Ok(Network { arch, num_classes, vs, net, precision: Precision::Fp32, channels_last: false })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The device holding the variables.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Sets the numerics of every later forward pass ([`crate::precision`]): `precision`
    /// (bf16 autocast where asked) and, with `channels_last`, converts the 4-D parameters to
    /// channels-last storage and feeds inputs that way. Values and names are unchanged, so
    /// checkpoints and their hashes do not depend on the memory format.
    pub fn set_numerics(&mut self, precision: Precision, channels_last: bool) {
        self.precision = precision;
        if channels_last && !self.channels_last {
            tch::no_grad(|| {
                for (_, mut t) in self.vs.variables() {
                    if t.dim() == 4 {
                        let cl = crate::precision::channels_last(&t);
                        t.set_data(&cl);
                    }
                }
            });
        }
        self.channels_last = channels_last;
    }

    /// The floating-point precision of forward passes.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs `f` on `x` in this network's numerics: input in channels-last when asked, bf16
    /// autocast when asked, logits (the first output) returned as float32.
    fn with_numerics<T>(&self, x: &Tensor, f: impl FnOnce(&Tensor) -> T) -> T {
        let x = if self.channels_last { crate::precision::channels_last(x) } else { x.shallow_clone() };
        let _autocast = Autocast::enter(self.precision, self.vs.device());
        f(&x)
    }

    /// Logits for a batch `x` in [0, 1], NCHW. `train` selects training behaviour (BatchNorm
    /// batch statistics and running-stat updates, dropout).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let logits = self.with_numerics(x, |x| self.net.forward_t(x, train));
        if logits.kind() == Kind::Float {
            logits
        } else {
            logits.to_kind(Kind::Float)
        }
    }

    /// Logits and the output of stage `stage` in one pass (ResNet-18 stages 1–4; MINE in
    /// paper Table I reads them).
    pub fn forward_stage(&self, x: &Tensor, train: bool, stage: usize) -> Result<(Tensor, Tensor)> {
        let out = self.with_numerics(x, |x| self.net.forward_stage(x, train, stage));
        let (logits, z) = out.ok_or_else(|| {
            Error::Invalid(format!("architecture {} has no stage {stage} to read features from", self.arch))
        })?;
        Ok((logits.to_kind(Kind::Float), z.to_kind(Kind::Float)))
    }

    /// The variable store (for optimizers).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Number of trainable parameters (BatchNorm buffers excluded), as PyTorch counts them.
    pub fn num_parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Every variable, parameters and buffers, by its PyTorch `state_dict` key.
    pub fn named_tensors(&self) -> BTreeMap<String, Tensor> {
        self.vs.variables().into_iter().collect()
    }

    /// The trainable parameters by name (BatchNorm buffers excluded), for optimizers.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
    }

    /// Stops gradient tracking of the trainable parameters until the guard is dropped, so an
    /// attack or inner maximisation makes libtorch compute input gradients only (SPEC §6: a
    /// third less work per step). Re-entrant: a nested guard leaves tracking to the outer one.
    pub fn frozen(&self) -> Frozen {
        Frozen::new(self.vs.trainable_variables())
    }
}

impl Classifier for Network {
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_t(x, train))
    }

    fn device(&self) -> Device {
        self.vs.device()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn freeze(&self) -> Frozen {
        self.frozen()
    }
}
