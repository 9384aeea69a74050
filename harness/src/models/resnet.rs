//! CIFAR ResNet-18 (SPEC §4): the post-activation variant used by TRADES and MART
//! (`models/resnet.py`, after kuangliu/pytorch-cifar).
//!
//! Stem: conv1 (3x3, in->64, stride 1, padding 1, no bias), bn1, ReLU, no max-pool. Four stages
//! `layer1..layer4` of two BasicBlocks with 64/128/256/512 channels and strides 1/2/2/2. A
//! BasicBlock computes `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))` with 3x3 convolutions
//! (padding 1, no bias; conv1 carries the block's stride); its shortcut is the identity, or
//! `shortcut.0` (1x1 conv, the block's stride, no bias) then `shortcut.1` (BatchNorm) when the
//! stride is not 1 or the width changes. Then a 4x4 average pool, flatten, `linear` (512->C).
//! 11,173,962 parameters for 3 input channels and C = 10.
//!
//! Initialisation: PyTorch's defaults, drawn in construction order (convolutions
//! `kaiming_uniform_(a=sqrt(5))`, linear weight likewise and bias `U(-1/sqrt(512), 1/sqrt(512))`,
//! BatchNorm weight 1, bias 0).

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{relu, BatchNorm2d, Conv2d, Linear};

/// Widths of the four stages.
const WIDTHS: [i64; 4] = [64, 128, 256, 512];
/// Strides of the four stages (applied by their first block).
const STRIDES: [i64; 4] = [1, 2, 2, 2];
/// BasicBlocks per stage.
const BLOCKS_PER_STAGE: i64 = 2;

/// The projection shortcut of a BasicBlock: 1x1 convolution then BatchNorm.
#[derive(Debug)]
struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm2d,
}

/// A post-activation BasicBlock.
#[derive(Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Option<Shortcut>,
}

impl BasicBlock {
    fn new(p: &nn::Path, in_planes: i64, planes: i64, stride: i64) -> BasicBlock {
        let conv1 = Conv2d::new(&(p / "conv1"), in_planes, planes, 3, stride, 1, false);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), planes);
        let conv2 = Conv2d::new(&(p / "conv2"), planes, planes, 3, 1, 1, false);
        let bn2 = BatchNorm2d::new(&(p / "bn2"), planes);
        let shortcut = (stride != 1 || in_planes != planes).then(|| {
            let s = p / "shortcut";
            let conv = Conv2d::new(&(&s / 0), in_planes, planes, 1, stride, 0, false);
            let bn = BatchNorm2d::new(&(&s / 1), planes);
            Shortcut { conv, bn }
        });
        BasicBlock { conv1, bn1, conv2, bn2, shortcut }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = relu(self.bn1.forward_t(&self.conv1.forward(xs), train));
        let out = self.bn2.forward_t(&self.conv2.forward(&out), train);
        let short = match &self.shortcut {
            Some(s) => s.bn.forward_t(&s.conv.forward(xs), train),
            None => xs.shallow_clone(),
        };
        relu(out + short)
    }
}

/// The CIFAR ResNet-18; variables `conv1.weight`, `bn1.*`,
/// `layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2}.*`, `layer{2,3,4}.0.shortcut.{0,1}.*` and
/// `linear.{weight,bias}` (BatchNorm `*`: weight, bias, running_mean, running_var,
/// num_batches_tracked).
#[derive(Debug)]
pub struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    linear: Linear,
}

impl ResNet18 {
    /// Builds the network under `p` for `in_channels`-channel 32x32 images and `num_classes`
    /// classes with PyTorch's default initialisation (draws from libtorch's generator).
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> ResNet18 {
        let conv1 = Conv2d::new(&(p / "conv1"), in_channels, 64, 3, 1, 1, false);
        let bn1 = BatchNorm2d::new(&(p / "bn1"), 64);
        let mut blocks = Vec::new();
        let mut in_planes = 64;
        for (stage, (&planes, &stride)) in WIDTHS.iter().zip(STRIDES.iter()).enumerate() {
            let layer = p / format!("layer{}", stage + 1);
            for b in 0..BLOCKS_PER_STAGE {
                let s = if b == 0 { stride } else { 1 };
                blocks.push(BasicBlock::new(&(&layer / b), in_planes, planes, s));
                in_planes = planes;
            }
        }
        let linear = Linear::new(&(p / "linear"), in_planes, num_classes);
        ResNet18 { conv1, bn1, blocks, linear }
    }
}

impl ResNet18 {
    /// Logits and the output of every stage (`layer1` … `layer4`), in one pass.
    fn forward_stages(&self, xs: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let mut out = relu(self.bn1.forward_t(&self.conv1.forward(xs), train));
        let mut stages = Vec::with_capacity(WIDTHS.len());
        for (i, block) in self.blocks.iter().enumerate() {
            out = block.forward_t(&out, train);
            if (i + 1) % BLOCKS_PER_STAGE as usize == 0 {
                stages.push(out.shallow_clone());
            }
        }
        let pooled = out.avg_pool2d([4, 4], [4, 4], [0, 0], false, true, None::<i64>);
        (self.linear.forward(&pooled.flatten(1, -1)), stages)
    }
}

impl ModuleT for ResNet18 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_stages(xs, train).0
    }
}

impl super::Net for ResNet18 {
    fn forward_stage(&self, xs: &Tensor, train: bool, stage: usize) -> Option<(Tensor, Tensor)> {
        let (logits, mut stages) = self.forward_stages(xs, train);
        (1..=stages.len()).contains(&stage).then(|| (logits, stages.swap_remove(stage - 1)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tch::Kind;

    use crate::models::layers::test_support::{abs_max, batch, build};
    use crate::models::Arch;

    const BN: [&str; 5] = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"];

    /// The reference model's `state_dict` keys, generated from the structure in the module docs.
    fn expected_keys() -> BTreeSet<String> {
        let mut keys = vec!["conv1.weight".to_string(), "linear.weight".into(), "linear.bias".into()];
        let bn = |prefix: &str| BN.iter().map(move |v| format!("{prefix}.{v}")).collect::<Vec<_>>();
        keys.extend(bn("bn1"));
        for stage in 1..=4 {
            for block in 0..2 {
                let p = format!("layer{stage}.{block}");
                keys.push(format!("{p}.conv1.weight"));
                keys.push(format!("{p}.conv2.weight"));
                keys.extend(bn(&format!("{p}.bn1")));
                keys.extend(bn(&format!("{p}.bn2")));
                if stage > 1 && block == 0 {
                    keys.push(format!("{p}.shortcut.0.weight"));
                    keys.extend(bn(&format!("{p}.shortcut.1")));
                }
            }
        }
        keys.into_iter().collect()
    }

    #[test]
    fn parameter_counts() {
        assert_eq!(build(Arch::ResNet18, 10, 0).num_parameters(), 11_173_962);
        let c = 100;
        assert_eq!(build(Arch::ResNet18, 100, 0).num_parameters(), 11_173_962 + 512 * (c - 10) + (c - 10));
    }

    #[test]
    fn names_shapes_and_initialisation() {
        let net = build(Arch::ResNet18, 10, 0);
        let t = net.named_tensors();
        let got: BTreeSet<String> = t.keys().cloned().collect();
        let want = expected_keys();
        assert_eq!(want.len(), 122);
        assert_eq!(got, want);
        assert_eq!(t["conv1.weight"].size(), [64, 3, 3, 3]);
        assert_eq!(t["layer2.0.conv1.weight"].size(), [128, 64, 3, 3]);
        assert_eq!(t["layer4.0.shortcut.0.weight"].size(), [512, 256, 1, 1]);
        assert_eq!(t["linear.weight"].size(), [10, 512]);
        for (name, tensor) in &t {
            let fill = match name.rsplit('.').next().unwrap() {
                "running_mean" | "bias" if !name.starts_with("linear") => Some(0.0),
                "running_var" => Some(1.0),
                "weight" if name.contains("bn") || name.contains("shortcut.1") => Some(1.0),
                "num_batches_tracked" => {
                    assert_eq!(tensor.kind(), Kind::Int64, "{name}");
                    Some(0.0)
                }
                _ => None,
            };
            match fill {
                Some(v) => assert_eq!(abs_max(&(tensor - v)), 0.0, "{name}"),
                None => {
                    // PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                    let s = tensor.size();
                    let fan = if name == "linear.bias" { 512 } else { s[1..].iter().product::<i64>() };
                    let bound = 1.0 / (fan as f64).sqrt();
                    let m = abs_max(tensor);
                    assert!(m <= bound && m > 0.5 * bound, "{name}: max {m}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn output_shapes_and_batch_norm_tracking() {
        for classes in [10, 100] {
            let net = build(Arch::ResNet18, classes, 1);
            let x = batch(Arch::ResNet18, 2);
            assert_eq!(net.forward_t(&x, true).size(), [2, classes as i64]);
            assert_eq!(net.forward_t(&x, false).size(), [2, classes as i64]);
            // Each of the 20 BatchNorms saw exactly one train-mode batch.
            let tracked: Vec<i64> = net
                .named_tensors()
                .iter()
                .filter(|(k, _)| k.ends_with("num_batches_tracked"))
                .map(|(_, v)| v.int64_value(&[]))
                .collect();
            assert_eq!(tracked, vec![1; 20]);
        }
    }
}
