//! Layers shared by the architectures of SPEC §4, built so that variable names, shapes and
//! initial values follow PyTorch (`torch.nn.Conv2d`, `torch.nn.Linear`, `torch.nn.BatchNorm2d`
//! and `torch.nn.init`, PyTorch 2.x).
//!
//! Initialisation mirrors PyTorch's `reset_parameters` draw for draw: a layer's weight is drawn
//! before its bias, each with one in-place `uniform_`/`normal_` call on libtorch's generator and
//! bounds computed with the same floating-point expressions as `torch/nn/init.py`. The
//! architectures create their layers in the reference `__init__` order and then apply the
//! reference's re-initialisation loop, so with the same seed and libtorch version a CPU-built
//! network should hold the same initial values as the PyTorch reference model.

use tch::{nn, Kind, Tensor};

/// BatchNorm momentum (PyTorch default).
pub const BN_MOMENTUM: f64 = 0.1;
/// BatchNorm epsilon (PyTorch default).
pub const BN_EPS: f64 = 1e-5;

/// Runs `f` on a mutable handle to `t` (sharing its storage) with gradient tracking off, the
/// equivalent of PyTorch's `with torch.no_grad(): t.op_(...)`.
pub(crate) fn in_place(t: &Tensor, f: impl FnOnce(&mut Tensor)) {
    let mut handle = t.shallow_clone();
    tch::no_grad(|| f(&mut handle));
}

/// ReLU computed in the buffer of `t`, which must be a fresh layer output no other tensor
/// aliases (a convolution, batch norm, linear, max-pool or sum result). Saves one
/// activation-sized buffer per ReLU; autograd is unaffected (ReLU's backward reads its output,
/// and none of those layers' backwards reads their output: max-pool's reads its input and the
/// argmax indices).
pub(crate) fn relu(mut t: Tensor) -> Tensor {
    t.relu_()
}

/// Fan-in of a weight of shape `dims` (`torch.nn.init._calculate_fan_in_and_fan_out`): the
/// second dimension times the receptive-field size.
pub(crate) fn fan_in(dims: &[i64]) -> i64 {
    assert!(dims.len() >= 2, "fan-in needs a weight with at least two dimensions, got {dims:?}");
    dims[1] * dims[2..].iter().product::<i64>()
}

/// The bound `b` of PyTorch's default weight initialisation of `Conv2d` and `Linear`,
/// `kaiming_uniform_(w, a=sqrt(5))`: `U(-b, b)` with `b = sqrt(3) * gain / sqrt(fan_in)` and
/// `gain = sqrt(2 / (1 + a^2))`, i.e. `b = 1/sqrt(fan_in)` up to rounding (computed exactly as
/// `torch/nn/init.py` does).
pub(crate) fn default_weight_bound(fan_in: i64) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

/// The bound of PyTorch's default bias initialisation of `Conv2d` and `Linear`:
/// `1/sqrt(fan_in)` (0 when `fan_in` is 0).
pub(crate) fn default_bias_bound(fan_in: i64) -> f64 {
    if fan_in > 0 {
        1.0 / (fan_in as f64).sqrt()
    } else {
        0.0
    }
}

/// Creates a trainable variable `name` under `p` of shape `dims`, drawn from `U(-bound, bound)`
/// with one `uniform_` call.
fn uniform_var(p: &nn::Path, name: &str, dims: &[i64], bound: f64) -> Tensor {
    let mut t = Tensor::empty(dims, (p.kind(), p.device()));
    let _ = t.uniform_(-bound, bound);
    p.add(name, t, true)
}

/// A 2-D convolution (`torch.nn.Conv2d`, dilation 1, one group, zero padding) with variables
/// `weight` (`[out, in, k, k]`) and, optionally, `bias` (`[out]`).
#[derive(Debug)]
pub struct Conv2d {
    /// The kernel, `[out_channels, in_channels, k, k]`.
    pub weight: Tensor,
    /// The bias, `[out_channels]`, when the layer has one.
    pub bias: Option<Tensor>,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    /// A `k`x`k` convolution from `in_channels` to `out_channels` with PyTorch's default
    /// initialisation (weight `kaiming_uniform_(a=sqrt(5))`, then bias `U(-1/sqrt(fan_in),
    /// 1/sqrt(fan_in))`).
    pub fn new(
        p: &nn::Path,
        in_channels: i64,
        out_channels: i64,
        k: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    ) -> Conv2d {
        let dims = [out_channels, in_channels, k, k];
        let fan = fan_in(&dims);
        let weight = uniform_var(p, "weight", &dims, default_weight_bound(fan));
        let bias = bias.then(|| uniform_var(p, "bias", &[out_channels], default_bias_bound(fan)));
        Conv2d { weight, bias, stride, padding }
    }

    /// `k*k*out_channels`, the `n` of the WideResNet initialisation `N(0, sqrt(2/n))`.
    pub fn fan_out(&self) -> i64 {
        let s = self.weight.size();
        s[0] * s[2] * s[3]
    }

    /// Redraws the weight from `N(0, std)` with one `normal_` call.
    pub fn normal_weight(&self, std: f64) {
        in_place(&self.weight, |w| {
            let _ = w.normal_(0.0, std);
        });
    }

    /// Redraws the weight as PyTorch's `kaiming_normal_(w)` does (defaults: `a = 0`, fan-in,
    /// `leaky_relu` gain `sqrt(2)`): `N(0, sqrt(2)/sqrt(fan_in))`.
    pub fn kaiming_normal_weight(&self) {
        let gain = (2.0f64 / (1.0 + 0.0)).sqrt();
        let std = gain / (fan_in(&self.weight.size()) as f64).sqrt();
        self.normal_weight(std);
    }

    /// Sets the bias (if any) to zero.
    pub fn zero_bias(&self) {
        if let Some(b) = &self.bias {
            in_place(b, |b| {
                let _ = b.zero_();
            });
        }
    }
}

impl nn::Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(&self.weight, self.bias.as_ref(), [self.stride, self.stride], [self.padding, self.padding], [1, 1], 1)
    }
}

/// A fully connected layer (`torch.nn.Linear`) with variables `weight` (`[out, in]`) and `bias`
/// (`[out]`).
#[derive(Debug)]
pub struct Linear {
    /// The weight, `[out_features, in_features]`.
    pub weight: Tensor,
    /// The bias, `[out_features]`.
    pub bias: Tensor,
}

impl Linear {
    /// A layer from `in_features` to `out_features` with PyTorch's default initialisation
    /// (weight `kaiming_uniform_(a=sqrt(5))`, then bias `U(-1/sqrt(in), 1/sqrt(in))`).
    pub fn new(p: &nn::Path, in_features: i64, out_features: i64) -> Linear {
        let dims = [out_features, in_features];
        let fan = fan_in(&dims);
        let weight = uniform_var(p, "weight", &dims, default_weight_bound(fan));
        let bias = uniform_var(p, "bias", &[out_features], default_bias_bound(fan));
        Linear { weight, bias }
    }

    /// Sets the weight to zero.
    pub fn zero_weight(&self) {
        in_place(&self.weight, |w| {
            let _ = w.zero_();
        });
    }

    /// Sets the bias to zero.
    pub fn zero_bias(&self) {
        in_place(&self.bias, |b| {
            let _ = b.zero_();
        });
    }
}

impl nn::Module for Linear {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }
}

/// `torch.nn.BatchNorm2d(num_features)` with PyTorch's defaults (eps 1e-5, momentum 0.1, affine,
/// tracking running statistics).
///
/// Variables: `weight` (ones) and `bias` (zeros), trainable; the buffers `running_mean` (zeros),
/// `running_var` (ones) and `num_batches_tracked` (an `Int64` scalar, 0), not trainable. All five
/// are in the `VarStore`, so a checkpoint carries them as PyTorch's `state_dict` does. A forward
/// pass in train mode normalises with the batch statistics, updates the running statistics
/// (momentum 0.1, unbiased variance) and adds 1 to `num_batches_tracked`; in eval mode it uses the
/// running statistics and changes nothing.
#[derive(Debug)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
}

impl BatchNorm2d {
    /// A BatchNorm over `num_features` channels, its variables created under `p`.
    pub fn new(p: &nn::Path, num_features: i64) -> BatchNorm2d {
        let (kind, device) = (p.kind(), p.device());
        let dims = [num_features];
        let weight = p.add("weight", Tensor::ones(dims, (kind, device)), true);
        let bias = p.add("bias", Tensor::zeros(dims, (kind, device)), true);
        let running_mean = p.add("running_mean", Tensor::zeros(dims, (kind, device)), false);
        let running_var = p.add("running_var", Tensor::ones(dims, (kind, device)), false);
        let num_batches_tracked =
            p.add("num_batches_tracked", Tensor::zeros([] as [i64; 0], (Kind::Int64, device)), false);
        BatchNorm2d { weight, bias, running_mean, running_var, num_batches_tracked }
    }

    /// The scale `weight` (`[C]`).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift `bias` (`[C]`).
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The running mean buffer (`[C]`).
    pub fn running_mean(&self) -> &Tensor {
        &self.running_mean
    }

    /// The running (unbiased) variance buffer (`[C]`).
    pub fn running_var(&self) -> &Tensor {
        &self.running_var
    }

    /// The number of train-mode forward passes so far (an `Int64` scalar).
    pub fn num_batches_tracked(&self) -> &Tensor {
        &self.num_batches_tracked
    }
}

impl nn::ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        assert_eq!(xs.dim(), 4, "BatchNorm2d expects NCHW input, got shape {:?}", xs.size());
        if train {
            in_place(&self.num_batches_tracked, |n| {
                let _ = n.g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

/// Helpers shared by the models' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Mutex, MutexGuard};

    use tch::{Device, Kind, Tensor};

    use crate::data::ImageShape;
    use crate::models::{Arch, Classifier, Frozen, Network};

    /// A network whose logits are multiplied by `scale`: with a large scale the softmax
    /// saturates and the cross-entropy input gradient underflows to zero at confidently
    /// classified points, while logit differences (DLR, FAB, the margin) keep their shape — the
    /// classic gradient-masking case for attack tests.
    pub(crate) struct Scaled {
        pub(crate) net: Network,
        pub(crate) scale: f64,
    }

    impl Classifier for Scaled {
        fn logits(&self, x: &Tensor, train: bool) -> crate::Result<Tensor> {
            Ok(self.net.logits(x, train)?.f_mul_scalar(self.scale)?)
        }
        fn device(&self) -> Device {
            self.net.device()
        }
        fn num_classes(&self) -> usize {
            self.net.num_classes()
        }
        fn freeze(&self) -> Frozen {
            self.net.frozen()
        }
    }

    /// Serialises the tests that draw from libtorch's global generator, so a seeded construction
    /// is not interleaved with another test's draws.
    static TORCH_RNG: Mutex<()> = Mutex::new(());

    /// A SmallCNN for MNIST built after seeding libtorch with `seed`, its zero-initialised last
    /// layer given random weights so its outputs (and input gradients) are not constant.
    pub(crate) fn smallcnn_random_head(seed: i64) -> Network {
        tch::manual_seed(seed);
        let net = Network::new(Arch::SmallCnn, shape(Arch::SmallCnn), 10, Device::Cpu).unwrap();
        tch::no_grad(|| {
            let w = &net.named_tensors()["classifier.fc3.weight"];
            w.shallow_clone().copy_(&(w.randn_like() * 0.1));
        });
        net
    }

    /// Takes the generator lock (ignoring poisoning by a failed test).
    pub(crate) fn rng_lock() -> MutexGuard<'static, ()> {
        TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds `arch` on the CPU for `classes` classes after seeding libtorch with `seed`, holding
    /// the generator lock.
    pub(crate) fn build(arch: Arch, classes: usize, seed: i64) -> Network {
        let _guard = rng_lock();
        tch::manual_seed(seed);
        Network::new(arch, shape(arch), classes, Device::Cpu).unwrap()
    }

    /// The input shape of `arch` (1x28x28 for SmallCNN, 3x32x32 otherwise).
    pub(crate) fn shape(arch: Arch) -> ImageShape {
        match arch {
            Arch::SmallCnn => ImageShape { channels: 1, height: 28, width: 28 },
            _ => ImageShape { channels: 3, height: 32, width: 32 },
        }
    }

    /// A deterministic batch of `b` images of `arch`'s shape with values in [0, 1].
    pub(crate) fn batch(arch: Arch, b: i64) -> Tensor {
        let s = shape(arch);
        let dims = [b, s.channels as i64, s.height as i64, s.width as i64];
        let n: i64 = dims.iter().product();
        (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.618_034).frac().view(dims)
    }

    /// The value of a one-element tensor.
    pub(crate) fn scalar(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    /// Population standard deviation of all elements of `t`.
    pub(crate) fn std(t: &Tensor) -> f64 {
        scalar(&t.to_kind(Kind::Double).std(false))
    }

    /// Largest absolute value in `t`.
    pub(crate) fn abs_max(t: &Tensor) -> f64 {
        scalar(&t.abs().max())
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::ModuleT;
    use tch::{nn, Device, Kind, Tensor};

    use super::test_support::{abs_max, rng_lock, scalar};
    use super::*;

    #[test]
    fn default_bounds_are_one_over_sqrt_fan_in() {
        for fan in [9, 27, 576, 1024] {
            let want = 1.0 / (fan as f64).sqrt();
            assert!((default_weight_bound(fan) - want).abs() < 1e-12);
            assert_eq!(default_bias_bound(fan), want);
        }
        assert_eq!(default_bias_bound(0), 0.0);
        assert_eq!(fan_in(&[64, 32, 3, 3]), 288);
        assert_eq!(fan_in(&[10, 200]), 200);
    }

    #[test]
    fn conv_and_linear_names_and_default_init() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (conv, lin) = {
            let _g = rng_lock();
            tch::manual_seed(1);
            (Conv2d::new(&(vs.root() / "c"), 16, 32, 3, 1, 1, true), Linear::new(&(vs.root() / "l"), 100, 7))
        };
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, ["c.bias", "c.weight", "l.bias", "l.weight"]);
        assert_eq!(conv.weight.size(), [32, 16, 3, 3]);
        assert_eq!(lin.weight.size(), [7, 100]);
        let b = 1.0 / 144f64.sqrt();
        assert!(abs_max(&conv.weight) <= b && abs_max(&conv.weight) > 0.95 * b);
        assert!(abs_max(conv.bias.as_ref().unwrap()) <= b);
        assert!(abs_max(&lin.weight) <= 0.1 && abs_max(&lin.bias) <= 0.1);
        let x = Tensor::ones([1, 16, 8, 8], (Kind::Float, Device::Cpu));
        assert_eq!(nn::Module::forward(&conv, &x).size(), [1, 32, 8, 8]);
        conv.zero_bias();
        lin.zero_weight();
        assert_eq!(abs_max(conv.bias.as_ref().unwrap()), 0.0);
        assert_eq!(abs_max(&lin.weight), 0.0);
        assert_eq!(vs.trainable_variables().len(), 4);
    }

    #[test]
    fn batch_norm_variables_and_initial_values() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(&(vs.root() / "bn"), 3);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, ["bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var", "bn.weight"]);
        assert_eq!(vs.trainable_variables().len(), 2);
        assert_eq!(Vec::<f32>::try_from(bn.weight()).unwrap(), [1.0; 3]);
        assert_eq!(Vec::<f32>::try_from(bn.bias()).unwrap(), [0.0; 3]);
        assert_eq!(Vec::<f32>::try_from(bn.running_mean()).unwrap(), [0.0; 3]);
        assert_eq!(Vec::<f32>::try_from(bn.running_var()).unwrap(), [1.0; 3]);
        let nbt = bn.num_batches_tracked();
        assert_eq!(nbt.kind(), Kind::Int64);
        assert_eq!(nbt.size(), Vec::<i64>::new());
        assert_eq!(nbt.int64_value(&[]), 0);
        assert!(!nbt.requires_grad() && !bn.running_mean().requires_grad());
        assert!(bn.weight().requires_grad() && bn.bias().requires_grad());
    }

    #[test]
    fn batch_norm_updates_statistics_in_train_mode_only() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(&vs.root(), 2);
        // Channel 0 holds 1..=8, channel 1 holds 10 * (1..=8): means 4.5 / 45.
        let base = Tensor::arange_start(1, 9, (Kind::Float, Device::Cpu)).view([2, 1, 2, 2]);
        let x = Tensor::cat(&[&base, &(&base * 10.0)], 1);
        let y = bn.forward_t(&x, true);
        assert_eq!(bn.num_batches_tracked().int64_value(&[]), 1);
        let mean = Vec::<f32>::try_from(bn.running_mean()).unwrap();
        assert!((mean[0] - 0.45).abs() < 1e-5 && (mean[1] - 4.5).abs() < 1e-4, "{mean:?}");
        // Unbiased variance of 1..=8 is 6, so running_var = 0.9 + 0.1 * 6 (and * 100).
        let var = Vec::<f32>::try_from(bn.running_var()).unwrap();
        assert!((var[0] - 1.5).abs() < 1e-5 && (var[1] - 60.9).abs() < 1e-3, "{var:?}");
        // Batch statistics normalise each channel to mean 0.
        assert!(scalar(&y.mean_dim(&[0, 2, 3][..], false, Kind::Float).abs().max()) < 1e-5);

        let rm = bn.running_mean().copy();
        let rv = bn.running_var().copy();
        let y = bn.forward_t(&x, false);
        assert_eq!(bn.num_batches_tracked().int64_value(&[]), 1);
        assert!(bn.running_mean().equal(&rm) && bn.running_var().equal(&rv));
        let want = (&x - rm.view([1, 2, 1, 1])) / (rv.view([1, 2, 1, 1]) + BN_EPS).sqrt();
        assert!(y.allclose(&want, 1e-5, 1e-5, false));

        let _ = bn.forward_t(&x, true);
        assert_eq!(bn.num_batches_tracked().int64_value(&[]), 2);
    }
}
