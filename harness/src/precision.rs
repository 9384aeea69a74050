//! Numerics of a run (issue 9 "GPU path"): floating-point precision and memory format.
//!
//! Both change the numbers a run produces, so both are config fields recorded (and hashed)
//! with the run; the defaults (`fp32`, NCHW) leave every existing config hash unchanged.
//!
//! - `fp32`: IEEE float32 everywhere. On CUDA this *disables* TF32 for cuDNN convolutions and
//!   cuBLAS matmuls (PyTorch enables it for convolutions by default), so CPU and CUDA runs
//!   compute the same function up to summation order.
//! - `tf32`: float32 storage, TF32 tensor-core math for convolutions and matmuls (Ampere+).
//! - `bf16`: autocast to bfloat16 for the forward pass (convolutions, matmuls; reductions and
//!   losses stay float32, PyTorch's autocast op lists), float32 parameters and optimizer state,
//!   logits returned as float32. On CPU this uses oneDNN's bf16 kernels where the CPU has them.
//! - `channels_last`: 4-D parameters and inputs stored NHWC (logical shape NCHW), which cuDNN
//!   and oneDNN run without layout conversions.
//!
//! tch 0.24 binds autocast only for CUDA with its default dtype (float16) and binds neither the
//! TF32 switches nor the autocast dtype. This module declares the few libtorch 2.11 functions
//! it needs by their C++ symbol names (`unsafe` code, confined here).
//! Each symbol is a plain function (or a member function taking `this` first) with integer
//! and bool arguments, so the C ABI matches the Itanium C++ ABI used by libtorch on Linux.
#![allow(unsafe_code)]

use std::ffi::c_void;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Floating-point precision of training and attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// IEEE float32 (TF32 off on CUDA).
    #[default]
    Fp32,
    /// float32 storage with TF32 tensor-core math on CUDA (same as fp32 on CPU).
    Tf32,
    /// bfloat16 autocast for forward passes, float32 parameters.
    Bf16,
}

impl Precision {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// True for the default (omitted from serialized configs so their hashes stay put).
    pub fn is_default(&self) -> bool {
        *self == Precision::Fp32
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// c10::DeviceType and c10::ScalarType values (c10/core/DeviceType.h, ScalarType.h), stable
// across libtorch releases.
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
const SCALAR_BFLOAT16: i8 = 15;

unsafe extern "C" {
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut c_void;
    #[link_name = "_ZN2at7Context17setAllowTF32CuDNNEb"]
    fn at_context_set_allow_tf32_cudnn(ctx: *mut c_void, allow: bool);
    #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
    fn at_context_set_allow_tf32_cublas(ctx: *mut c_void, allow: bool);
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn at_is_autocast_enabled(device: i8) -> bool;
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn at_set_autocast_enabled(device: i8, enabled: bool);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn at_get_autocast_dtype(device: i8) -> i8;
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast17increment_nestingEv"]
    fn at_autocast_increment_nesting() -> i32;
    #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
    fn at_autocast_decrement_nesting() -> i32;
    #[link_name = "_ZN2at8autocast11clear_cacheEv"]
    fn at_autocast_clear_cache();
}

/// Sets libtorch's process-wide TF32 switches for `precision`: on for `tf32`, off otherwise
/// (so `fp32` and the float32 remainder of `bf16` are IEEE). Call before any CUDA work; it
/// has no effect on CPU kernels.
pub fn configure_backends(precision: Precision) {
    let tf32 = precision == Precision::Tf32;
    // SAFETY: at::globalContext() returns a reference to a process-lifetime singleton; the
    // setters take `this` and a bool and only store the flag.
    unsafe {
        let ctx = at_global_context();
        at_context_set_allow_tf32_cudnn(ctx, tf32);
        at_context_set_allow_tf32_cublas(ctx, tf32);
    }
}

/// Autocast to bfloat16 on one device type while alive, as `torch.autocast(device, bf16)`
/// does: the previous state is restored on drop and the cast cache cleared when the outermost
/// region ends. Autocast state is thread-local in libtorch, like this guard's use.
#[must_use = "autocast ends when the guard is dropped"]
pub struct Autocast {
    device: i8,
    was_enabled: bool,
    prev_dtype: i8,
}

impl Autocast {
    /// Starts autocast for `precision` on `device`; `None` when `precision` is not `bf16`.
    pub fn enter(precision: Precision, device: Device) -> Option<Autocast> {
        if precision != Precision::Bf16 {
            return None;
        }
        let device = match device {
            Device::Cuda(_) => DEVICE_CUDA,
            _ => DEVICE_CPU,
        };
        // SAFETY: plain functions over thread-local autocast state with enum-valued integer
        // arguments that name a valid device type and scalar type.
        unsafe {
            let was_enabled = at_is_autocast_enabled(device);
            let prev_dtype = at_get_autocast_dtype(device);
            at_set_autocast_enabled(device, true);
            at_set_autocast_dtype(device, SCALAR_BFLOAT16);
            at_autocast_increment_nesting();
            Some(Autocast { device, was_enabled, prev_dtype })
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; restores the state read there.
        unsafe {
            if at_autocast_decrement_nesting() == 0 {
                at_autocast_clear_cache();
            }
            at_set_autocast_enabled(self.device, self.was_enabled);
            at_set_autocast_dtype(self.device, self.prev_dtype);
        }
    }
}

/// `t` with channels-last strides `(H·W·C, 1, W·C, C)` (logical shape unchanged) when it is 4-D,
/// else `t` itself. The strides are set explicitly, as PyTorch's `.to(memory_format=...)` does:
/// for one channel a permute-and-copy would leave the NCHW strides in place, libtorch would
/// treat the tensor as NCHW, and a one-channel first convolution would keep the whole network
/// converting between layouts (measured: channels-last then gained 5 % instead of 40 %).
/// Differentiable: gradients flow back to `t`.
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 || is_channels_last(t) {
        return t.shallow_clone();
    }
    let s = t.size();
    let (c, h, w) = (s[1], s[2], s[3]);
    let mut out = Tensor::empty_strided(&s, [h * w * c, 1, w * c, c], (t.kind(), t.device()));
    out.copy_(t);
    out
}

/// Re-stores the 4-D tensors among `params` channels-last in place ([`channels_last`]): what
/// PyTorch's `module.to(memory_format=torch.channels_last)` does to a module's parameters. Values
/// and names are unchanged.
pub fn params_to_channels_last(params: impl IntoIterator<Item = Tensor>) {
    tch::no_grad(|| {
        for mut t in params {
            if t.dim() == 4 {
                let cl = channels_last(&t);
                t.set_data(&cl);
            }
        }
    });
}

/// True when a 4-D tensor has channels-last strides (stride of C is 1, of W is C).
pub fn is_channels_last(t: &Tensor) -> bool {
    if t.dim() != 4 {
        return false;
    }
    let (st, sz) = (t.stride(), t.size());
    st[1] == 1 && st[3] == sz[1] && st[2] == sz[1] * sz[3]
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    #[test]
    fn bf16_autocast_runs_convolutions_in_bf16_and_restores_state() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let plain = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert_eq!(plain.kind(), Kind::Float);
        let cast = {
            let _g = Autocast::enter(Precision::Bf16, Device::Cpu).unwrap();
            x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
        };
        assert_eq!(cast.kind(), Kind::BFloat16, "autocast did not cast the convolution");
        let rel =
            (cast.to_kind(Kind::Float) - &plain).abs().max().double_value(&[]) / plain.abs().max().double_value(&[]);
        assert!(rel > 0.0 && rel < 0.05, "bf16 result off by {rel} relative");
        let after = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert_eq!(after.kind(), Kind::Float, "autocast leaked past its guard");
        assert!(Autocast::enter(Precision::Fp32, Device::Cpu).is_none());
        assert!(Autocast::enter(Precision::Tf32, Device::Cpu).is_none());
    }

    #[test]
    fn channels_last_keeps_values_and_shape() {
        let x = Tensor::randn([2, 3, 5, 5], (Kind::Float, Device::Cpu));
        let y = channels_last(&x);
        assert_eq!(y.size(), x.size());
        assert!(is_channels_last(&y) && !is_channels_last(&x));
        // One channel: explicit NHWC strides, as PyTorch's `.to(memory_format=channels_last)`.
        let one = Tensor::randn([4, 1, 3, 3], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&one).stride(), vec![9, 1, 3, 1]);
        assert_eq!((channels_last(&one) - &one).abs().max().double_value(&[]), 0.0);
        // Gradients flow through the conversion.
        let leaf = Tensor::ones([1, 2, 2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let g = Tensor::run_backward(&[channels_last(&leaf).sum(Kind::Float)], &[&leaf], false, false);
        assert_eq!(g[0].sum(Kind::Float).double_value(&[]), 8.0);
        assert_eq!((&y - &x).abs().max().double_value(&[]), 0.0);
        assert_eq!(channels_last(&Tensor::ones([3], (Kind::Float, Device::Cpu))).dim(), 1);
    }

    #[test]
    fn configure_backends_is_callable_on_cpu() {
        for p in [Precision::Tf32, Precision::Bf16, Precision::Fp32] {
            configure_backends(p);
        }
    }
}
