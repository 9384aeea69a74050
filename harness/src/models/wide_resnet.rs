//! WideResNet-d-k (SPEC §4): the TRADES/MART `models/wideresnet.py` network without its unused
//! `sub_block1` (as TRADES' `wideresnet_update.py`), dropout rate 0.
//!
//! Stem: conv1 (3x3, in->16, padding 1, no bias). Three groups `block1..block3`, each a
//! `layer` of n = (d-4)/6 pre-activation BasicBlocks, widths 16k/32k/64k, strides 1/2/2 (applied
//! by a group's first block). A BasicBlock whose input and output widths are equal computes
//! `x + conv2(relu(bn2(conv1(relu(bn1(x))))))`; one whose widths differ (the first of every
//! group) computes `a = relu(bn1(x))`, then `convShortcut(a) + conv2(relu(bn2(conv1(a))))` with a
//! 1x1 `convShortcut` carrying the stride. Convolutions are 3x3 with padding 1 and no bias (conv1
//! carries the stride). Then bn1, ReLU, an 8x8 average pool, flatten and `fc` (64k->C).
//! WRN-34-10: 46,160,474 parameters, WRN-28-10: 36,479,194 (3 input channels, C = 10).
//!
//! Initialisation as the reference: PyTorch defaults drawn in construction order, then every
//! convolution's weight redrawn from `N(0, sqrt(2/(k*k*out_channels)))` (in module order), BatchNorm
//! weight 1 and bias 0, fc bias 0 (fc weight keeps PyTorch's default `kaiming_uniform_(a=sqrt(5))`).

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{relu, BatchNorm2d, Conv2d, Linear};

/// A pre-activation BasicBlock.
#[derive(Debug)]
struct BasicBlock {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
    /// Present exactly when the input and output widths differ.
    conv_shortcut: Option<Conv2d>,
}

impl BasicBlock {
    fn new(p: &nn::Path, in_planes: i64, out_planes: i64, stride: i64) -> BasicBlock {
        let bn1 = BatchNorm2d::new(&(p / "bn1"), in_planes);
        let conv1 = Conv2d::new(&(p / "conv1"), in_planes, out_planes, 3, stride, 1, false);
        let bn2 = BatchNorm2d::new(&(p / "bn2"), out_planes);
        let conv2 = Conv2d::new(&(p / "conv2"), out_planes, out_planes, 3, 1, 1, false);
        let conv_shortcut = (in_planes != out_planes)
            .then(|| Conv2d::new(&(p / "convShortcut"), in_planes, out_planes, 1, stride, 0, false));
        BasicBlock { bn1, conv1, bn2, conv2, conv_shortcut }
    }

    /// The block's convolutions in PyTorch module-registration order.
    fn convs(&self) -> impl Iterator<Item = &Conv2d> {
        [&self.conv1, &self.conv2].into_iter().chain(self.conv_shortcut.as_ref())
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let act = relu(self.bn1.forward_t(xs, train));
        let out = relu(self.bn2.forward_t(&self.conv1.forward(&act), train));
        let out = self.conv2.forward(&out);
        match &self.conv_shortcut {
            Some(short) => short.forward(&act) + out,
            None => xs + out,
        }
    }
}

/// WideResNet-d-k; variables `conv1.weight`, `block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2}.*`,
/// `block{1,2,3}.layer.0.convShortcut.weight`, `bn1.*` and `fc.{weight,bias}`.
#[derive(Debug)]
pub struct WideResNet {
    conv1: Conv2d,
    blocks: Vec<BasicBlock>,
    bn1: BatchNorm2d,
    fc: Linear,
}

impl WideResNet {
    /// Builds WRN-`depth`-`widen` under `p` for `in_channels`-channel 32x32 images and
    /// `num_classes` classes, initialised as SPEC §4 says (draws from libtorch's generator).
    ///
    /// # Panics
    /// If `depth` is not 6n+4 with n >= 1, or `widen` < 1 (callers pass 34/10 or 28/10).
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64, depth: i64, widen: i64) -> WideResNet {
        assert!(
            depth >= 10 && (depth - 4) % 6 == 0,
            "WideResNet depth must be 6n+4 with n >= 1 (e.g. 28, 34), got {depth}"
        );
        assert!(widen >= 1, "WideResNet widen factor must be at least 1, got {widen}");
        let n = (depth - 4) / 6;
        let widths = [16, 16 * widen, 32 * widen, 64 * widen];
        let conv1 = Conv2d::new(&(p / "conv1"), in_channels, widths[0], 3, 1, 1, false);
        let mut blocks = Vec::new();
        for (g, stride) in [1, 2, 2].into_iter().enumerate() {
            let layer = p / format!("block{}", g + 1) / "layer";
            for i in 0..n {
                let (in_planes, s) = if i == 0 { (widths[g], stride) } else { (widths[g + 1], 1) };
                blocks.push(BasicBlock::new(&(&layer / i), in_planes, widths[g + 1], s));
            }
        }
        let bn1 = BatchNorm2d::new(&(p / "bn1"), widths[3]);
        let fc = Linear::new(&(p / "fc"), widths[3], num_classes);
        for conv in std::iter::once(&conv1).chain(blocks.iter().flat_map(BasicBlock::convs)) {
            conv.normal_weight((2.0 / conv.fan_out() as f64).sqrt());
        }
        fc.zero_bias();
        WideResNet { conv1, blocks, bn1, fc }
    }
}

impl ModuleT for WideResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = self.conv1.forward(xs);
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        let out = relu(self.bn1.forward_t(&out, train));
        let out = out.avg_pool2d([8, 8], [8, 8], [0, 0], false, true, None::<i64>);
        self.fc.forward(&out.flatten(1, -1))
    }
}

impl super::Net for WideResNet {}

#[cfg(test)]
mod tests {
    use tch::nn;

    use crate::models::layers::test_support::{batch, build, std};
    use crate::models::Arch;

    use super::WideResNet;

    #[test]
    fn parameter_counts() {
        let extra = |c: i64| 640 * (c - 10) + (c - 10);
        assert_eq!(build(Arch::Wrn34x10, 10, 0).num_parameters(), 46_160_474);
        assert_eq!(build(Arch::Wrn34x10, 100, 0).num_parameters(), 46_160_474 + extra(100));
        assert_eq!(build(Arch::Wrn28x10, 10, 0).num_parameters(), 36_479_194);
        assert_eq!(build(Arch::Wrn28x10, 100, 0).num_parameters(), 36_479_194 + extra(100));
    }

    #[test]
    fn names_initialisation_and_output_shape() {
        let net = build(Arch::Wrn34x10, 10, 0);
        let t = net.named_tensors();
        // conv1 + 3 groups x 5 blocks x (2 convs + 2 BNs x 5) + 3 shortcuts + bn1 (5) + fc (2).
        assert_eq!(t.len(), 1 + 3 * 5 * 12 + 3 + 5 + 2);
        for key in [
            "conv1.weight",
            "block1.layer.0.convShortcut.weight",
            "block2.layer.0.convShortcut.weight",
            "block3.layer.0.convShortcut.weight",
            "block1.layer.0.bn1.num_batches_tracked",
            "block3.layer.4.conv2.weight",
            "block2.layer.1.bn2.running_var",
            "bn1.running_mean",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(t.contains_key(key), "missing {key}");
        }
        for key in
            ["block2.layer.1.convShortcut.weight", "block1.layer.5.conv1.weight", "sub_block1.layer.0.conv1.weight"]
        {
            assert!(!t.contains_key(key), "unexpected {key}");
        }
        assert!(!t.keys().any(|k| k.contains("conv") && k.ends_with(".bias")), "a convolution has a bias");
        assert_eq!(t["block1.layer.0.conv1.weight"].size(), [160, 16, 3, 3]);
        assert_eq!(t["block1.layer.0.convShortcut.weight"].size(), [160, 16, 1, 1]);
        assert_eq!(t["block3.layer.0.conv1.weight"].size(), [640, 320, 3, 3]);
        assert_eq!(t["fc.weight"].size(), [10, 640]);
        // Convolutions N(0, sqrt(2/(k*k*out))), BN 1/0, fc bias 0.
        for (key, n) in [("block2.layer.1.conv1.weight", 9.0 * 320.0), ("block3.layer.0.convShortcut.weight", 640.0)] {
            let s = std(&t[key]);
            assert!((s / (2.0f64 / n).sqrt() - 1.0).abs() < 0.02, "{key}: std {s}");
        }
        assert_eq!(f64::try_from(t["fc.bias"].abs().max()).unwrap(), 0.0);
        assert_eq!(f64::try_from((&t["bn1.weight"] - 1.0).abs().max()).unwrap(), 0.0);

        let x = batch(Arch::Wrn34x10, 2);
        let y = tch::no_grad(|| net.forward_t(&x, false));
        assert_eq!(y.size(), [2, 10]);
        assert_eq!(t["bn1.num_batches_tracked"].int64_value(&[]), 0);
    }

    #[test]
    #[should_panic(expected = "6n+4")]
    fn rejects_a_bad_depth() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = WideResNet::new(&vs.root(), 3, 10, 30, 10);
    }
}
