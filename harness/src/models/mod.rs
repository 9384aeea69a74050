//! The paper's architectures (SPEC §4) and RobustBench's model-zoo ones (issue 23), with
//! PyTorch-compatible parameter names so a checkpoint loads into the reference PyTorch models
//! with `load_state_dict`, and a PyTorch `state_dict` into these.
//!
//! [`Arch`] names an architecture; [`Network::new`] builds it in a fresh `VarStore` with the
//! SPEC's initialisation, drawing from libtorch's generator (seed it first with
//! `tch::manual_seed`).

mod classifier;
mod dm_resnet;
pub(crate) mod layers;
mod preact_resnet;
mod resnet;
mod small_cnn;
mod wide_resnet;

pub(crate) use classifier::first_line;
pub use classifier::{Classifier, Frozen, ScriptModel};
pub use layers::BatchNorm2d;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::data::ImageShape;
use crate::precision::{Autocast, Precision};
use crate::{Error, Result};

/// The architectures: the paper's and the CPU presets' (SPEC §4), and the model zoo's
/// (RobustBench 1.1.1's definitions, for its checkpoints; issue 23). The serde and command-line
/// spelling of each is its [`infoat_registry::ArchId`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Arch {
    /// TRADES' SmallCNN for 28x28 grey images (312,202 parameters).
    #[serde(rename = "smallcnn")]
    #[value(name = "smallcnn")]
    SmallCnn,
    /// CIFAR ResNet-18, post-activation (11,173,962 parameters for 10 classes); also
    /// RobustBench's `ResNet18`.
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    /// WideResNet-34-10 (46,160,474 parameters for 10 classes); also RobustBench's
    /// `WideResNet(34, 10)`.
    #[serde(rename = "wrn34_10")]
    #[value(name = "wrn34_10")]
    Wrn34x10,
    /// WideResNet-28-10 (36,479,194 parameters for 10 classes).
    #[serde(rename = "wrn28_10")]
    #[value(name = "wrn28_10")]
    Wrn28x10,
    /// RobustBench's PreActResNet-18 (11,171,146 parameters for 10 classes).
    #[serde(rename = "preact_resnet18")]
    #[value(name = "preact_resnet18")]
    PreActResNet18,
    /// WideResNet-34-15 (103,819,674 parameters for 10 classes).
    #[serde(rename = "wrn34_15")]
    #[value(name = "wrn34_15")]
    Wrn34x15,
    /// WideResNet-34-20 (184,531,674 parameters for 10 classes).
    #[serde(rename = "wrn34_20")]
    #[value(name = "wrn34_20")]
    Wrn34x20,
    /// WideResNet-70-16 (266,796,506 parameters for 10 classes).
    #[serde(rename = "wrn70_16")]
    #[value(name = "wrn70_16")]
    Wrn70x16,
    /// DeepMind-style WideResNet-28-10: Swish, normalisation inside (36,479,194 parameters).
    #[serde(rename = "dm_wrn28_10")]
    #[value(name = "dm_wrn28_10")]
    DmWrn28x10,
    /// DeepMind-style WideResNet-34-20 (184,531,674 parameters).
    #[serde(rename = "dm_wrn34_20")]
    #[value(name = "dm_wrn34_20")]
    DmWrn34x20,
    /// DeepMind-style WideResNet-70-16 (266,796,506 parameters).
    #[serde(rename = "dm_wrn70_16")]
    #[value(name = "dm_wrn70_16")]
    DmWrn70x16,
    /// DeepMind-style WideResNet-106-16 (415,475,162 parameters).
    #[serde(rename = "dm_wrn106_16")]
    #[value(name = "dm_wrn106_16")]
    DmWrn106x16,
    /// DeepMind-style PreActResNet-18: Swish, normalisation inside (12,548,426 parameters).
    #[serde(rename = "dm_preact_resnet18")]
    #[value(name = "dm_preact_resnet18")]
    DmPreActResNet18,
}

/// The network an [`Arch`] builds, with its size parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// TRADES' SmallCNN.
    SmallCnn,
    /// The post-activation CIFAR ResNet-18.
    ResNet18,
    /// RobustBench's PreActResNet-18.
    PreActResNet18,
    /// The TRADES/RobustBench WideResNet-depth-width (ReLU, no normalisation inside).
    WideResNet {
        /// 6n+4.
        depth: i64,
        /// The widen factor.
        width: i64,
    },
    /// The DeepMind-style WideResNet-depth-width (Swish, normalisation inside).
    DmWideResNet {
        /// 6n+4.
        depth: i64,
        /// The widen factor.
        width: i64,
    },
    /// The DeepMind-style PreActResNet-18.
    DmPreActResNet18,
}

impl Arch {
    /// Every architecture, the paper's first.
    pub const ALL: [Arch; 13] = [
        Arch::SmallCnn,
        Arch::ResNet18,
        Arch::Wrn34x10,
        Arch::Wrn28x10,
        Arch::PreActResNet18,
        Arch::Wrn34x15,
        Arch::Wrn34x20,
        Arch::Wrn70x16,
        Arch::DmWrn28x10,
        Arch::DmWrn34x20,
        Arch::DmWrn70x16,
        Arch::DmWrn106x16,
        Arch::DmPreActResNet18,
    ];

    /// The architecture's id, as records and reports know it.
    pub fn id(self) -> infoat_registry::ArchId {
        use infoat_registry::ArchId;
        match self {
            Arch::SmallCnn => ArchId::SmallCnn,
            Arch::ResNet18 => ArchId::ResNet18,
            Arch::Wrn34x10 => ArchId::Wrn34x10,
            Arch::Wrn28x10 => ArchId::Wrn28x10,
            Arch::PreActResNet18 => ArchId::PreActResNet18,
            Arch::Wrn34x15 => ArchId::Wrn34x15,
            Arch::Wrn34x20 => ArchId::Wrn34x20,
            Arch::Wrn70x16 => ArchId::Wrn70x16,
            Arch::DmWrn28x10 => ArchId::DmWrn28x10,
            Arch::DmWrn34x20 => ArchId::DmWrn34x20,
            Arch::DmWrn70x16 => ArchId::DmWrn70x16,
            Arch::DmWrn106x16 => ArchId::DmWrn106x16,
            Arch::DmPreActResNet18 => ArchId::DmPreActResNet18,
        }
    }

    /// The network this architecture builds.
    pub fn family(self) -> Family {
        let wide = |depth, width| Family::WideResNet { depth, width };
        let dm = |depth, width| Family::DmWideResNet { depth, width };
        match self {
            Arch::SmallCnn => Family::SmallCnn,
            Arch::ResNet18 => Family::ResNet18,
            Arch::PreActResNet18 => Family::PreActResNet18,
            Arch::Wrn34x10 => wide(34, 10),
            Arch::Wrn28x10 => wide(28, 10),
            Arch::Wrn34x15 => wide(34, 15),
            Arch::Wrn34x20 => wide(34, 20),
            Arch::Wrn70x16 => wide(70, 16),
            Arch::DmWrn28x10 => dm(28, 10),
            Arch::DmWrn34x20 => dm(34, 20),
            Arch::DmWrn70x16 => dm(70, 16),
            Arch::DmWrn106x16 => dm(106, 16),
            Arch::DmPreActResNet18 => Family::DmPreActResNet18,
        }
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        self.id().name()
    }

    /// State-dict entries a checkpoint of this architecture may carry that the forward pass
    /// never reads, by key prefix: RobustBench's `WideResNet(..., sub_block1=True)` (most of its
    /// TRADES-style entries) registers an unused `sub_block1` group, saved with the weights.
    pub fn unused_prefixes(self) -> &'static [&'static str] {
        match self.family() {
            Family::WideResNet { .. } => &["sub_block1."],
            _ => &[],
        }
    }

    /// Checks that this architecture accepts images of `shape`.
    pub fn check_input(self, shape: ImageShape) -> Result<()> {
        let family = self.family();
        let ok = match family {
            Family::SmallCnn => shape.height == 28 && shape.width == 28,
            Family::DmWideResNet { .. } | Family::DmPreActResNet18 => {
                shape.channels == 3 && shape.height == 32 && shape.width == 32
            }
            _ => shape.height == 32 && shape.width == 32,
        };
        if ok {
            Ok(())
        } else {
            let want = match family {
                Family::SmallCnn => "28x28 images (MNIST, Fashion-MNIST)",
                Family::DmWideResNet { .. } | Family::DmPreActResNet18 => {
                    "32x32 colour images (CIFAR-10/100, SVHN; it normalises 3 channels inside)"
                }
                _ => "32x32 images (CIFAR-10/100, SVHN)",
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
        let net: Box<dyn Net> = match arch.family() {
            Family::SmallCnn => Box::new(small_cnn::SmallCnn::new(&root, c, k)),
            Family::ResNet18 => Box::new(resnet::ResNet18::new(&root, c, k)),
            Family::PreActResNet18 => Box::new(preact_resnet::PreActResNet18::new(&root, c, k)),
            Family::WideResNet { depth, width } => Box::new(wide_resnet::WideResNet::new(&root, c, k, depth, width)),
            Family::DmWideResNet { depth, width } => Box::new(dm_resnet::DmWideResNet::new(&root, k, depth, width)),
            Family::DmPreActResNet18 => Box::new(dm_resnet::DmPreActResNet18::new(&root, k)),
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
            crate::precision::params_to_channels_last(self.vs.variables().into_values());
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

    fn set_channels_last(&mut self) -> Result<()> {
        self.set_numerics(self.precision, true);
        Ok(())
    }
}
