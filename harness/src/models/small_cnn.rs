//! SmallCNN for 28x28 grey images (SPEC §4), the MNIST/Fashion-MNIST network of TRADES
//! (`models/small_cnn.py`).
//!
//! `feature_extractor`: conv1 (in->32, 3x3), ReLU, conv2 (32->32), ReLU, max-pool 2, conv3
//! (32->64), ReLU, conv4 (64->64), ReLU, max-pool 2 (no padding anywhere: 28 -> 26 -> 24 -> 12 ->
//! 10 -> 8 -> 4); flatten to 64*4*4; `classifier`: fc1 (1024->200), ReLU, dropout 0.5, fc2
//! (200->200), ReLU, fc3 (200->C). 312,202 parameters for one input channel and C = 10.
//!
//! Initialisation as the reference: every layer first gets PyTorch's default initialisation in
//! construction order, then each convolution's weight is redrawn Kaiming-normal
//! (`N(0, sqrt(2/fan_in))`) and its bias set to 0, and fc3's weight and bias are set to 0.

use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{relu, Conv2d, Linear};

/// Dropout probability after fc1.
const DROPOUT: f64 = 0.5;

/// The SmallCNN; variables `feature_extractor.conv{1,2,3,4}.{weight,bias}` and
/// `classifier.fc{1,2,3}.{weight,bias}`.
#[derive(Debug)]
pub struct SmallCnn {
    convs: [Conv2d; 4],
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl SmallCnn {
    /// Builds the network under `p` for `in_channels`-channel 28x28 images and `num_classes`
    /// classes, initialised as SPEC §4 says (draws from libtorch's generator).
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> SmallCnn {
        let fe = p / "feature_extractor";
        let conv = |name: &str, i: i64, o: i64| Conv2d::new(&(&fe / name), i, o, 3, 1, 0, true);
        let convs =
            [conv("conv1", in_channels, 32), conv("conv2", 32, 32), conv("conv3", 32, 64), conv("conv4", 64, 64)];
        let cl = p / "classifier";
        let fc1 = Linear::new(&(&cl / "fc1"), 64 * 4 * 4, 200);
        let fc2 = Linear::new(&(&cl / "fc2"), 200, 200);
        let fc3 = Linear::new(&(&cl / "fc3"), 200, num_classes);
        for c in &convs {
            c.kaiming_normal_weight();
            c.zero_bias();
        }
        fc3.zero_weight();
        fc3.zero_bias();
        SmallCnn { convs, fc1, fc2, fc3 }
    }
}

impl nn::ModuleT for SmallCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let [c1, c2, c3, c4] = &self.convs;
        // ReLU after the pool: max-pooling commutes with the (monotone) ReLU, so values and
        // input gradients are bit-identical to the reference's ReLU-then-pool, and the ReLU and
        // its backward touch a quarter of the elements.
        let x = relu(c2.forward(&relu(c1.forward(xs))).max_pool2d_default(2));
        let x = relu(c4.forward(&relu(c3.forward(&x))).max_pool2d_default(2));
        let x = x.flatten(1, -1);
        let x = relu(self.fc1.forward(&x)).dropout(DROPOUT, train);
        let x = relu(self.fc2.forward(&x));
        self.fc3.forward(&x)
    }
}

impl super::Net for SmallCnn {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::models::layers::test_support::{abs_max, batch, build, std};
    use crate::models::Arch;

    #[test]
    fn parameter_counts() {
        assert_eq!(build(Arch::SmallCnn, 10, 0).num_parameters(), 312_202);
        let c = 100;
        assert_eq!(build(Arch::SmallCnn, 100, 0).num_parameters(), 312_202 + 200 * (c - 10) + (c - 10));
    }

    #[test]
    fn names_are_the_pytorch_state_dict_keys() {
        let net = build(Arch::SmallCnn, 10, 0);
        let got: BTreeSet<String> = net.named_tensors().into_keys().collect();
        let want: BTreeSet<String> = [
            "feature_extractor.conv1.weight",
            "feature_extractor.conv1.bias",
            "feature_extractor.conv2.weight",
            "feature_extractor.conv2.bias",
            "feature_extractor.conv3.weight",
            "feature_extractor.conv3.bias",
            "feature_extractor.conv4.weight",
            "feature_extractor.conv4.bias",
            "classifier.fc1.weight",
            "classifier.fc1.bias",
            "classifier.fc2.weight",
            "classifier.fc2.bias",
            "classifier.fc3.weight",
            "classifier.fc3.bias",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
        let t = net.named_tensors();
        assert_eq!(t["feature_extractor.conv1.weight"].size(), [32, 1, 3, 3]);
        assert_eq!(t["feature_extractor.conv4.weight"].size(), [64, 64, 3, 3]);
        assert_eq!(t["classifier.fc1.weight"].size(), [200, 1024]);
        assert_eq!(t["classifier.fc3.weight"].size(), [10, 200]);
    }

    #[test]
    fn output_shapes_in_train_and_eval_mode() {
        for classes in [10, 100] {
            let net = build(Arch::SmallCnn, classes, 1);
            let x = batch(Arch::SmallCnn, 2);
            for train in [true, false] {
                let _guard = crate::models::layers::test_support::rng_lock();
                assert_eq!(net.forward_t(&x, train).size(), [2, classes as i64]);
            }
        }
    }

    #[test]
    fn initialisation() {
        let net = build(Arch::SmallCnn, 10, 3);
        let t = net.named_tensors();
        assert_eq!(abs_max(&t["classifier.fc3.weight"]), 0.0);
        assert_eq!(abs_max(&t["classifier.fc3.bias"]), 0.0);
        for i in 1..=4 {
            assert_eq!(abs_max(&t[&format!("feature_extractor.conv{i}.bias")]), 0.0);
        }
        // Kaiming-normal: std sqrt(2/fan_in) (288 samples for conv1, 36,864 for conv4).
        let s1 = std(&t["feature_extractor.conv1.weight"]);
        assert!((s1 / (2.0f64 / 9.0).sqrt() - 1.0).abs() < 0.2, "conv1 std {s1}");
        let s4 = std(&t["feature_extractor.conv4.weight"]);
        assert!((s4 / (2.0f64 / 576.0).sqrt() - 1.0).abs() < 0.03, "conv4 std {s4}");
        // fc1/fc2: PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias included.
        for (name, fan) in [("fc1", 1024.0f64), ("fc2", 200.0)] {
            let bound = 1.0 / fan.sqrt();
            let w = &t[&format!("classifier.{name}.weight")];
            assert!(abs_max(w) <= bound && abs_max(w) > 0.99 * bound);
            let s = std(w);
            assert!((s / (bound / 3f64.sqrt()) - 1.0).abs() < 0.05, "{name} std {s}");
            let b = abs_max(&t[&format!("classifier.{name}.bias")]);
            assert!(b <= bound && b > 0.5 * bound);
        }
    }

    /// The reference's order (ReLU, then max-pool) written out with functional ops on the
    /// network's own tensors: logits and input gradients must be bit-identical to the network's
    /// pool-then-ReLU forward, in both memory formats.
    #[test]
    fn relu_after_the_pool_is_bit_identical_to_the_reference_order() {
        use tch::{Kind, Tensor};
        let net = {
            let _guard = crate::models::layers::test_support::rng_lock();
            crate::models::layers::test_support::smallcnn_random_head(11)
        };
        let t = net.named_tensors();
        tch::no_grad(|| {
            // Biases of both signs, so that some pooling windows are all negative, some mixed.
            for i in 1..=4 {
                let b = &t[&format!("feature_extractor.conv{i}.bias")];
                b.shallow_clone().copy_(&(b.randn_like() * 0.05));
            }
        });
        let conv = |x: &Tensor, i: usize| {
            let p = format!("feature_extractor.conv{i}");
            x.conv2d(&t[&format!("{p}.weight")], Some(&t[&format!("{p}.bias")]), [1, 1], [0, 0], [1, 1], 1)
        };
        let fc = |x: &Tensor, name: &str| {
            x.linear(&t[&format!("classifier.{name}.weight")], Some(&t[&format!("classifier.{name}.bias")]))
        };
        let reference = |x: &Tensor| {
            let x = conv(&conv(x, 1).relu(), 2).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            let x = conv(&conv(&x, 3).relu(), 4).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            fc(&fc(&fc(&x.flatten(1, -1), "fc1").relu(), "fc2").relu(), "fc3")
        };
        for channels_last in [false, true] {
            let x = Tensor::rand([16, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
            let x = if channels_last { crate::precision::channels_last(&x) } else { x };
            let grad = |f: &dyn Fn(&Tensor) -> Tensor| {
                let xa = x.detach().set_requires_grad(true);
                let logits = f(&xa);
                let loss = logits.log_softmax(-1, Kind::Float).select(1, 3).sum(Kind::Float);
                let g = Tensor::run_backward(&[&loss], &[&xa], false, false).remove(0);
                (logits.detach(), g)
            };
            let (want_logits, want_grad) = grad(&reference);
            let (got_logits, got_grad) = grad(&|x: &Tensor| net.forward_t(x, false));
            assert!(got_logits.equal(&want_logits), "logits differ (channels-last {channels_last})");
            assert!(got_grad.equal(&want_grad), "input gradients differ (channels-last {channels_last})");
            assert!(abs_max(&got_grad) > 0.0, "the gradient is not all zero");
        }
    }

    #[test]
    fn construction_is_deterministic_given_the_seed() {
        let a = build(Arch::SmallCnn, 10, 7).named_tensors();
        let b = build(Arch::SmallCnn, 10, 7).named_tensors();
        let c = build(Arch::SmallCnn, 10, 8).named_tensors();
        for (name, ta) in &a {
            assert!(ta.equal(&b[name]), "{name} differs under the same seed");
        }
        assert!(!a["feature_extractor.conv1.weight"].equal(&c["feature_extractor.conv1.weight"]));
        assert!(!a["classifier.fc1.weight"].equal(&c["classifier.fc1.weight"]));
    }
}
