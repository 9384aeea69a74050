//! RobustBench's PreActResNet-18 (`robustbench/model_zoo/architectures/resnet.py`,
//! `PreActResNet18()`, robustbench 1.1.1; after kuangliu/pytorch-cifar), for model-zoo
//! checkpoints such as Rice2020Overfitting (issue 23).
//!
//! Stem: conv1 (3x3, in->64, stride 1, padding 1, no bias), no BatchNorm. Four stages
//! `layer1..layer4` of two pre-activation blocks with 64/128/256/512 channels and strides
//! 1/2/2/2. A block computes `a = relu(bn1(x))`, then `conv2(relu(bn2(conv1(a)))) + s` where `s`
//! is `x`, or `shortcut.0(x)` (1x1 conv carrying the stride, no bias) when the stride is not 1
//! or the width changes — RobustBench's default `out_shortcut=False` feeds the shortcut the
//! block's input, not its activation. Then (no final BatchNorm: `bn_before_fc=False`) a 4x4
//! average pool, flatten and `linear` (512->C). 11,171,146 parameters for 3 input channels and
//! C = 10. Initialisation: PyTorch's defaults, drawn in construction order.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{relu, BatchNorm2d, Conv2d, Linear};

/// Widths of the four stages.
const WIDTHS: [i64; 4] = [64, 128, 256, 512];
/// Strides of the four stages (applied by their first block).
const STRIDES: [i64; 4] = [1, 2, 2, 2];

/// A pre-activation block.
#[derive(Debug)]
struct PreActBlock {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl PreActBlock {
    fn new(p: &nn::Path, in_planes: i64, planes: i64, stride: i64) -> PreActBlock {
        let bn1 = BatchNorm2d::new(&(p / "bn1"), in_planes);
        let conv1 = Conv2d::new(&(p / "conv1"), in_planes, planes, 3, stride, 1, false);
        let bn2 = BatchNorm2d::new(&(p / "bn2"), planes);
        let conv2 = Conv2d::new(&(p / "conv2"), planes, planes, 3, 1, 1, false);
        let shortcut = (stride != 1 || in_planes != planes)
            .then(|| Conv2d::new(&(p / "shortcut" / 0), in_planes, planes, 1, stride, 0, false));
        PreActBlock { bn1, conv1, bn2, conv2, shortcut }
    }
}

impl ModuleT for PreActBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let act = relu(self.bn1.forward_t(xs, train));
        let short = match &self.shortcut {
            Some(conv) => conv.forward(xs),
            None => xs.shallow_clone(),
        };
        let out = self.conv1.forward(&act);
        self.conv2.forward(&relu(self.bn2.forward_t(&out, train))) + short
    }
}

/// PreActResNet-18; variables `conv1.weight`, `layer{1..4}.{0,1}.{bn1,conv1,bn2,conv2}.*`,
/// `layer{2,3,4}.0.shortcut.0.weight` and `linear.{weight,bias}`.
#[derive(Debug)]
pub struct PreActResNet18 {
    conv1: Conv2d,
    blocks: Vec<PreActBlock>,
    linear: Linear,
}

impl PreActResNet18 {
    /// Builds the network under `p` for `in_channels`-channel 32x32 images and `num_classes`
    /// classes with PyTorch's default initialisation (draws from libtorch's generator).
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> PreActResNet18 {
        let conv1 = Conv2d::new(&(p / "conv1"), in_channels, 64, 3, 1, 1, false);
        let mut blocks = Vec::new();
        let mut in_planes = 64;
        for (stage, (&planes, &stride)) in WIDTHS.iter().zip(STRIDES.iter()).enumerate() {
            let layer = p / format!("layer{}", stage + 1);
            for b in 0..2 {
                blocks.push(PreActBlock::new(&(&layer / b), in_planes, planes, if b == 0 { stride } else { 1 }));
                in_planes = planes;
            }
        }
        let linear = Linear::new(&(p / "linear"), in_planes, num_classes);
        PreActResNet18 { conv1, blocks, linear }
    }
}

impl ModuleT for PreActResNet18 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = self.conv1.forward(xs);
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        let pooled = out.avg_pool2d([4, 4], [4, 4], [0, 0], false, true, None::<i64>);
        self.linear.forward(&pooled.flatten(1, -1))
    }
}

impl super::Net for PreActResNet18 {}

#[cfg(test)]
mod tests {
    use crate::models::layers::test_support::{batch, build};
    use crate::models::Arch;

    #[test]
    fn parameter_count_names_and_output_shape() {
        // robustbench 1.1.1: sum(p.numel() for p in PreActResNet18().parameters()).
        assert_eq!(build(Arch::PreActResNet18, 10, 0).num_parameters(), 11_171_146);
        let net = build(Arch::PreActResNet18, 100, 0);
        assert_eq!(net.num_parameters(), 11_171_146 + 90 * 513);
        let t = net.named_tensors();
        for key in ["conv1.weight", "layer1.0.bn1.running_var", "layer2.0.shortcut.0.weight", "linear.bias"] {
            assert!(t.contains_key(key), "missing {key}");
        }
        // No stem BatchNorm, no final BatchNorm, no shortcut where the shape is kept.
        for key in ["bn1.weight", "bn.weight", "layer1.0.shortcut.0.weight", "layer2.1.shortcut.0.weight"] {
            assert!(!t.contains_key(key), "unexpected {key}");
        }
        let y = tch::no_grad(|| net.forward_t(&batch(Arch::PreActResNet18, 2), false));
        assert_eq!(y.size(), [2, 100]);
    }
}
