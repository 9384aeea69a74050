//! The DeepMind-style networks of RobustBench's model zoo
//! (`robustbench/model_zoo/architectures/dm_wide_resnet.py`, robustbench 1.1.1, from
//! deepmind-research `adversarial_robustness/pytorch/model_zoo.py`): `DMWideResNet` and
//! `DMPreActResNet`, as the Gowal et al. 2020/2021, Rebuffi et al. 2021 and Wang et al. 2023
//! checkpoints use them (issue 23).
//!
//! Both normalise inside the model, `(x - mean) / std` with the dataset's channel statistics
//! (CIFAR-10's, or CIFAR-100's for 100 classes: the constants RobustBench passes; not variables,
//! as RobustBench registers them `persistent=False`), and use the Swish activation
//! `x·sigmoid(x)` (RobustBench's `Swish` and `nn.SiLU` compute the same function). A strided
//! 3x3 convolution pads "SAME"-style by hand: `(1, 1, 1, 1)` at stride 1, `(0, 1, 0, 1)` (right
//! and bottom only) at stride 2, then convolves without padding.
//!
//! **DMWideResNet-d-k**: `init_conv` (3x3, 3->16, padding 1), three groups `layer.{0,1,2}` of
//! n = (d-4)/6 blocks `block.{i}` (widths 16k/32k/64k, strides 1/2/2), `batchnorm`, Swish, 8x8
//! average pool, `logits` (64k->C). A block with equal widths computes
//! `x + conv_1(σ(batchnorm_1(conv_0(pad(σ(batchnorm_0(x)))))))`; one whose widths differ first
//! replaces x by `σ(batchnorm_0(x))` and adds `shortcut(x)` (1x1, the stride, no padding).
//! **DMPreActResNet-18**: `conv_2d` (3x3, 3->64, padding 1), four stages `layer_{0..3}` of two
//! blocks (64/128/256/512, strides 1/2/2/2), `batchnorm`, Swish, 4x4 average pool, `logits`. A
//! block computes `conv_2d_2(σ(batchnorm_1(conv_2d_1(pad(σ(batchnorm_0(x))))))) + s` with `s = x`
//! or, when the stride or width changes, `shortcut(pad(x))` (a 3x3 convolution of the block's
//! input). Parameters for C = 10: DM-WRN-28-10 36,479,194, DM-WRN-70-16 266,796,506,
//! DM-PreActResNet-18 12,548,426. Initialisation: PyTorch's defaults in construction order.

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use super::layers::{BatchNorm2d, Conv2d, Linear};

/// CIFAR-10's channel means and standard deviations, as RobustBench's DM models use them.
const CIFAR10_STATS: ([f64; 3], [f64; 3]) = ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]);
/// CIFAR-100's.
const CIFAR100_STATS: ([f64; 3], [f64; 3]) = ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]);

fn swish(x: &Tensor) -> Tensor {
    x.silu()
}

/// "SAME" padding of a 3x3 convolution of `stride` (1 or 2) done by hand, as the DM models do.
fn same_pad(x: &Tensor, stride: i64) -> Tensor {
    if stride == 1 {
        x.constant_pad_nd([1, 1, 1, 1])
    } else {
        x.constant_pad_nd([0, 1, 0, 1])
    }
}

/// The in-model normalisation: the dataset's statistics as `[1, 3, 1, 1]` constants.
#[derive(Debug)]
struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    fn new(p: &nn::Path, num_classes: i64) -> Normalize {
        let (mean, std) = if num_classes == 100 { CIFAR100_STATS } else { CIFAR10_STATS };
        let opts = (Kind::Float, p.device());
        let as_tensor = |v: [f64; 3]| Tensor::from_slice(&v.map(|x| x as f32)).view([1, 3, 1, 1]).to_device(opts.1);
        Normalize { mean: as_tensor(mean), std: as_tensor(std) }
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        (x - &self.mean.to_kind(x.kind())) / &self.std.to_kind(x.kind())
    }
}

/// A DMWideResNet block.
#[derive(Debug)]
struct WideBlock {
    batchnorm_0: BatchNorm2d,
    conv_0: Conv2d,
    batchnorm_1: BatchNorm2d,
    conv_1: Conv2d,
    shortcut: Option<Conv2d>,
    stride: i64,
}

impl WideBlock {
    fn new(p: &nn::Path, in_planes: i64, out_planes: i64, stride: i64) -> WideBlock {
        let batchnorm_0 = BatchNorm2d::new(&(p / "batchnorm_0"), in_planes);
        let conv_0 = Conv2d::new(&(p / "conv_0"), in_planes, out_planes, 3, stride, 0, false);
        let batchnorm_1 = BatchNorm2d::new(&(p / "batchnorm_1"), out_planes);
        let conv_1 = Conv2d::new(&(p / "conv_1"), out_planes, out_planes, 3, 1, 1, false);
        let shortcut = (in_planes != out_planes)
            .then(|| Conv2d::new(&(p / "shortcut"), in_planes, out_planes, 1, stride, 0, false));
        WideBlock { batchnorm_0, conv_0, batchnorm_1, conv_1, shortcut, stride }
    }
}

impl ModuleT for WideBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let act = swish(&self.batchnorm_0.forward_t(xs, train));
        let out = self.conv_0.forward(&same_pad(&act, self.stride));
        let out = self.conv_1.forward(&swish(&self.batchnorm_1.forward_t(&out, train)));
        match &self.shortcut {
            Some(conv) => conv.forward(&act) + out,
            None => xs + out,
        }
    }
}

/// DMWideResNet-d-k; variables `init_conv.weight`, `layer.{g}.block.{i}.{batchnorm_0,conv_0,
/// batchnorm_1,conv_1}.*`, `layer.{g}.block.0.shortcut.weight`, `batchnorm.*`, `logits.*`.
#[derive(Debug)]
pub struct DmWideResNet {
    normalize: Normalize,
    init_conv: Conv2d,
    blocks: Vec<WideBlock>,
    batchnorm: BatchNorm2d,
    logits: Linear,
}

impl DmWideResNet {
    /// Builds DMWideResNet-`depth`-`width` under `p` for 3-channel 32x32 images and
    /// `num_classes` classes (CIFAR-100's normalisation for 100 classes, CIFAR-10's otherwise).
    ///
    /// # Panics
    /// If `depth` is not 6n+4 with n >= 1 (callers pass the fixed depths of [`super::Arch`]).
    pub fn new(p: &nn::Path, num_classes: i64, depth: i64, width: i64) -> DmWideResNet {
        assert!(depth >= 10 && (depth - 4) % 6 == 0, "DMWideResNet depth must be 6n+4, got {depth}");
        let n = (depth - 4) / 6;
        let widths = [16, 16 * width, 32 * width, 64 * width];
        let normalize = Normalize::new(p, num_classes);
        let init_conv = Conv2d::new(&(p / "init_conv"), 3, widths[0], 3, 1, 1, false);
        let mut blocks = Vec::new();
        for (g, stride) in [1, 2, 2].into_iter().enumerate() {
            let group = p / "layer" / g as i64 / "block";
            for i in 0..n {
                let (in_planes, s) = if i == 0 { (widths[g], stride) } else { (widths[g + 1], 1) };
                blocks.push(WideBlock::new(&(&group / i), in_planes, widths[g + 1], s));
            }
        }
        let batchnorm = BatchNorm2d::new(&(p / "batchnorm"), widths[3]);
        let logits = Linear::new(&(p / "logits"), widths[3], num_classes);
        DmWideResNet { normalize, init_conv, blocks, batchnorm, logits }
    }
}

impl ModuleT for DmWideResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = self.init_conv.forward(&self.normalize.apply(xs));
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        let out = swish(&self.batchnorm.forward_t(&out, train));
        let out = out.avg_pool2d([8, 8], [8, 8], [0, 0], false, true, None::<i64>);
        self.logits.forward(&out.flatten(1, -1))
    }
}

impl super::Net for DmWideResNet {}

/// A DMPreActResNet block.
#[derive(Debug)]
struct PreActBlock {
    batchnorm_0: BatchNorm2d,
    conv_2d_1: Conv2d,
    batchnorm_1: BatchNorm2d,
    conv_2d_2: Conv2d,
    shortcut: Option<Conv2d>,
    stride: i64,
}

impl PreActBlock {
    fn new(p: &nn::Path, in_planes: i64, out_planes: i64, stride: i64) -> PreActBlock {
        let batchnorm_0 = BatchNorm2d::new(&(p / "batchnorm_0"), in_planes);
        let conv_2d_1 = Conv2d::new(&(p / "conv_2d_1"), in_planes, out_planes, 3, stride, 0, false);
        let batchnorm_1 = BatchNorm2d::new(&(p / "batchnorm_1"), out_planes);
        let conv_2d_2 = Conv2d::new(&(p / "conv_2d_2"), out_planes, out_planes, 3, 1, 1, false);
        let shortcut = (stride != 1 || in_planes != out_planes)
            .then(|| Conv2d::new(&(p / "shortcut"), in_planes, out_planes, 3, stride, 0, false));
        PreActBlock { batchnorm_0, conv_2d_1, batchnorm_1, conv_2d_2, shortcut, stride }
    }
}

impl ModuleT for PreActBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let act = swish(&self.batchnorm_0.forward_t(xs, train));
        let short = match &self.shortcut {
            Some(conv) => conv.forward(&same_pad(xs, self.stride)),
            None => xs.shallow_clone(),
        };
        let out = self.conv_2d_1.forward(&same_pad(&act, self.stride));
        self.conv_2d_2.forward(&swish(&self.batchnorm_1.forward_t(&out, train))) + short
    }
}

/// DMPreActResNet-18; variables `conv_2d.weight`, `layer_{0..3}.{0,1}.{batchnorm_0,conv_2d_1,
/// batchnorm_1,conv_2d_2}.*`, `layer_{1,2,3}.0.shortcut.weight`, `batchnorm.*`, `logits.*`.
#[derive(Debug)]
pub struct DmPreActResNet18 {
    normalize: Normalize,
    conv_2d: Conv2d,
    blocks: Vec<PreActBlock>,
    batchnorm: BatchNorm2d,
    logits: Linear,
}

impl DmPreActResNet18 {
    /// Builds DMPreActResNet-18 under `p` for 3-channel 32x32 images and `num_classes` classes.
    pub fn new(p: &nn::Path, num_classes: i64) -> DmPreActResNet18 {
        let normalize = Normalize::new(p, num_classes);
        let conv_2d = Conv2d::new(&(p / "conv_2d"), 3, 64, 3, 1, 1, false);
        let mut blocks = Vec::new();
        let mut in_planes = 64;
        for (stage, (planes, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].into_iter().enumerate() {
            let layer = p / format!("layer_{stage}");
            for b in 0..2 {
                blocks.push(PreActBlock::new(&(&layer / b), in_planes, planes, if b == 0 { stride } else { 1 }));
                in_planes = planes;
            }
        }
        let batchnorm = BatchNorm2d::new(&(p / "batchnorm"), 512);
        let logits = Linear::new(&(p / "logits"), 512, num_classes);
        DmPreActResNet18 { normalize, conv_2d, blocks, batchnorm, logits }
    }
}

impl ModuleT for DmPreActResNet18 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = self.conv_2d.forward(&self.normalize.apply(xs));
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        let out = swish(&self.batchnorm.forward_t(&out, train));
        let out = out.avg_pool2d([4, 4], [4, 4], [0, 0], false, true, None::<i64>);
        self.logits.forward(&out.flatten(1, -1))
    }
}

impl super::Net for DmPreActResNet18 {}

#[cfg(test)]
mod tests {
    use tch::{Device, Tensor};

    use crate::data::ImageShape;
    use crate::models::layers::test_support::{batch, build};
    use crate::models::{Arch, Network};

    #[test]
    fn parameter_counts_names_and_output_shapes() {
        // robustbench 1.1.1: DMWideResNet(depth=28, width=10) and DMPreActResNet(depth=18).
        let wrn = build(Arch::DmWrn28x10, 10, 0);
        assert_eq!(wrn.num_parameters(), 36_479_194);
        let pre = build(Arch::DmPreActResNet18, 10, 0);
        assert_eq!(pre.num_parameters(), 12_548_426);
        let t = wrn.named_tensors();
        for key in
            ["init_conv.weight", "layer.0.block.0.shortcut.weight", "layer.2.block.3.conv_1.weight", "logits.bias"]
        {
            assert!(t.contains_key(key), "missing {key}");
        }
        assert!(!t.keys().any(|k| k.contains("mean") && !k.contains("running")), "normalisation is no variable");
        let t = pre.named_tensors();
        for key in
            ["conv_2d.weight", "layer_1.0.shortcut.weight", "layer_3.1.batchnorm_1.running_mean", "batchnorm.bias"]
        {
            assert!(t.contains_key(key), "missing {key}");
        }
        assert_eq!(t["layer_1.0.shortcut.weight"].size(), [128, 64, 3, 3], "DM shortcuts are 3x3");
        assert!(!t.contains_key("layer_0.0.shortcut.weight"));
        for net in [&wrn, &pre] {
            let y = tch::no_grad(|| net.forward_t(&batch(Arch::DmWrn28x10, 2), false));
            assert_eq!(y.size(), [2, 10]);
            assert!(y.isfinite().all().int64_value(&[]) == 1);
        }
    }

    #[test]
    fn the_normalisation_is_the_datasets() {
        // (x − mean) / std with CIFAR-10's statistics for 10 classes and CIFAR-100's for 100:
        // the mean image maps to 0 and mean + std to 1, channel by channel.
        let vs = tch::nn::VarStore::new(Device::Cpu);
        for (classes, (mean, std)) in [(10, super::CIFAR10_STATS), (100, super::CIFAR100_STATS)] {
            let norm = super::Normalize::new(&vs.root(), classes);
            let img =
                |v: [f64; 3]| Tensor::from_slice(&v.map(|x| x as f32)).view([1, 3, 1, 1]).expand([2, 3, 4, 4], false);
            let at_mean = norm.apply(&img(mean));
            assert!(f64::try_from(at_mean.abs().max()).unwrap() < 1e-6, "{classes} classes");
            let one_std = norm.apply(&img([mean[0] + std[0], mean[1] + std[1], mean[2] + std[2]]));
            assert!(f64::try_from((one_std - 1.0).abs().max()).unwrap() < 1e-5, "{classes} classes");
        }
        // Three channels only: the statistics are per colour channel.
        let grey = ImageShape { channels: 1, height: 32, width: 32 };
        let e = Network::new(Arch::DmWrn28x10, grey, 10, Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("dm_wrn28_10") && e.contains("colour"), "{e}");
    }
}
