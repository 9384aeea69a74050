//! Criterion benchmarks of the inner loop everything here repeats (issue 9): one PGD-10 inner
//! maximisation, one full training step of AT, TRADES and InfoAT, and APGD-CE, on random data
//! of the datasets' shapes. CPU always; the CUDA variants run only when libtorch sees a GPU
//! (each measured call synchronises the device before the clock is read).
//!
//!     cargo bench -p infoat-harness --bench pgd              # everything
//!     cargo bench -p infoat-harness --bench pgd -- pgd10     # a filter
//!
//! `ci/bench/run` compares the same work with PyTorch eager and prints the ratios.
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use infoat_harness::attacks::AttackId;
use infoat_harness::bench::{BenchSpec, Rig, Work};
use infoat_harness::cli::BenchMethod;
use infoat_harness::data::Dataset;
use infoat_harness::models::Arch;
use infoat_harness::precision::Precision;
use tch::Device;

fn devices() -> Vec<Device> {
    // libtorch's CUDA library where a driver is (src/cuda_library.rs), and the heap settings
    // the `infoat` binary runs with (src/alloc.rs).
    infoat_harness::cuda_library::load();
    infoat_harness::alloc::tune();
    let mut d = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        d.push(Device::Cuda(0));
    }
    d
}

fn spec(arch: Arch, dataset: Dataset, method: BenchMethod, batch: usize, device: Device, cl: bool) -> BenchSpec {
    BenchSpec {
        arch,
        dataset,
        method: method.config(10),
        batch_size: batch,
        device,
        precision: Precision::Fp32,
        channels_last: cl,
        warmup: 0,
        steps: 1,
        seed: 0,
        work: Work::TrainStep,
        cuda_graph: false,
    }
}

/// (arch, dataset, batch on CPU, batch on CUDA): ResNet-18's CPU batch is reduced so a sample
/// takes seconds, not minutes, on a 2-core machine.
const MODELS: [(Arch, Dataset, usize, usize); 2] =
    [(Arch::SmallCnn, Dataset::Mnist, 128, 128), (Arch::ResNet18, Dataset::Cifar10, 16, 128)];

fn label(arch: Arch, device: Device, batch: usize, cl: bool) -> String {
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    format!("{}/{dev}/b{batch}{}", arch.name(), if cl { "/channels_last" } else { "" })
}

fn pgd10(c: &mut Criterion) {
    let mut g = c.benchmark_group("pgd10");
    g.sample_size(10);
    for device in devices() {
        for (arch, dataset, cpu_batch, gpu_batch) in MODELS {
            let batch = if device == Device::Cpu { cpu_batch } else { gpu_batch };
            for cl in [false, true] {
                let rig = Rig::new(&spec(arch, dataset, BenchMethod::At, batch, device, cl)).unwrap();
                g.bench_function(BenchmarkId::from_parameter(label(arch, device, batch, cl)), |b| {
                    b.iter(|| {
                        let adv = rig.pgd(10).unwrap();
                        rig.sync();
                        adv
                    })
                });
            }
        }
    }
    g.finish();
}

fn train_steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    for device in devices() {
        for (arch, dataset, cpu_batch, gpu_batch) in MODELS {
            let batch = if device == Device::Cpu { cpu_batch } else { gpu_batch };
            for method in [BenchMethod::At, BenchMethod::Trades, BenchMethod::Infoat] {
                let mut rig = Rig::new(&spec(arch, dataset, method, batch, device, false)).unwrap();
                let id = format!("{method:?}/{}", label(arch, device, batch, false)).to_lowercase();
                let mut i = 0;
                g.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.iter(|| {
                        rig.step(i).unwrap();
                        rig.sync();
                        i += 1;
                    })
                });
            }
        }
    }
    g.finish();
}

fn apgd_ce(c: &mut Criterion) {
    let mut g = c.benchmark_group("apgd_ce");
    g.sample_size(10);
    for device in devices() {
        let batch = if device == Device::Cpu { 32 } else { 128 };
        let rig = Rig::new(&spec(Arch::SmallCnn, Dataset::Mnist, BenchMethod::At, batch, device, false)).unwrap();
        g.bench_function(BenchmarkId::from_parameter(label(Arch::SmallCnn, device, batch, false)), |b| {
            b.iter(|| {
                let adv = rig.attack(AttackId::ApgdCe).unwrap();
                rig.sync();
                adv
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pgd10, train_steps, apgd_ce);
criterion_main!(benches);
