//! The CPU path of `infoat bench --cuda-graph` (issue 24, goal 4): the graphed PGD's buffers,
//! run eagerly, give exactly what the eager code gives. Its own process, and one test at a time
//! (a lock), because the comparisons draw from libtorch's global generator (the random start,
//! dropout), which a test running beside them in the same process would advance.

use std::sync::Mutex;

use infoat_harness::attacks::{default_step, maximize, BnMode, GraphCheck, GraphedPgd, PgdSpec, Start};
use infoat_harness::bench::{BenchSpec, Rig, Work};
use infoat_harness::data::Dataset;
use infoat_harness::losses;
use infoat_harness::methods::{InnerConfig, MethodConfig};
use infoat_harness::models::{Arch, Network};
use infoat_harness::precision::Precision;
use tch::{Device, Kind, Tensor};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ce_sum(logits: &Tensor, y: &Tensor) -> infoat_harness::Result<Tensor> {
    Ok(losses::ce(logits, y)?.f_sum(Kind::Float)?)
}

/// A SmallCNN whose zero-initialised last layer got random weights, so its input gradients are
/// not zero and the ascent's steps (not only its random start) decide where it ends.
fn smallcnn(seed: i64) -> Network {
    tch::manual_seed(seed);
    let net = Network::new(Arch::SmallCnn, Dataset::Mnist.image_shape(), 10, Device::Cpu).unwrap();
    tch::no_grad(|| {
        let w = &net.named_tensors()["classifier.fc3.weight"];
        w.shallow_clone().copy_(&(w.randn_like() * 0.1));
    });
    net
}

/// The buffered ascent equals `maximize` on the batch itself, bit for bit, for the batch it was
/// prepared with and a later one; the labels in the buffers steer it.
#[test]
fn buffered_ascent_equals_the_direct_one_bit_for_bit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = smallcnn(3);
    let spec = PgdSpec { eps: 0.3, steps: 3, step_size: default_step(0.3), start: Start::Uniform };
    tch::manual_seed(11);
    let x0 = Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y0 = Tensor::randint(10, [8], (Kind::Int64, Device::Cpu));
    let x1 = Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y1 = Tensor::randint(10, [8], (Kind::Int64, Device::Cpu));
    let graphed = GraphedPgd::new(&net, &x0, &y0, spec, BnMode::Eval).unwrap();
    assert!(!graphed.is_graph(), "no graph on the CPU");
    for (x, y) in [(&x0, &y0), (&x1, &y1)] {
        tch::manual_seed(5);
        let got = graphed.run(&net, x, y).unwrap();
        tch::manual_seed(5);
        let want = maximize(&net, x, &spec, BnMode::Eval, &mut |l| ce_sum(l, y)).unwrap();
        assert!(got.equal(&want), "buffered ascent differs from the direct one");
        assert!(got.f_sub(x).unwrap().abs().max().double_value(&[]) <= 0.3 + 1e-6);
    }
    // The labels steer the ascent (fails if the buffers' labels were not read, or the model
    // gave no gradient and the random start alone decided the result).
    let other_labels = y1.f_add_scalar(1).unwrap().f_remainder(10).unwrap();
    tch::manual_seed(5);
    let a = graphed.run(&net, &x1, &y1).unwrap();
    tch::manual_seed(5);
    let b = graphed.run(&net, &x1, &other_labels).unwrap();
    assert!(!a.equal(&b), "the labels did not change the ascent");
    // The check a GPU bench runs before timing a graph compares the same two ascents: on the
    // CPU, where both are eager, they agree exactly.
    let check = graphed.check_against_eager(&net, 7).unwrap();
    assert_eq!(check, GraphCheck { equal_fraction: 1.0, max_abs_diff: 0.0, eager_repeat_equal_fraction: 1.0 });
}

/// What the bench runs: SmallCNN on MNIST in fp32 NCHW, or (`gpu_like`) the configuration
/// `ci/gpu-check` times on a GPU — ResNet-18 (BatchNorm: eval mode in the attack, train mode in
/// the outer loss) on CIFAR-10-shaped data, bf16 autocast, channels-last.
fn bench_spec(gpu_like: bool, cuda_graph: bool, work: Work) -> BenchSpec {
    let (arch, dataset, precision, batch_size) = match gpu_like {
        false => (Arch::SmallCnn, Dataset::Mnist, Precision::Fp32, 8),
        true => (Arch::ResNet18, Dataset::Cifar10, Precision::Bf16, 4),
    };
    BenchSpec {
        arch,
        dataset,
        method: MethodConfig::At { inner: InnerConfig { steps: 3, ..InnerConfig::default() } },
        batch_size,
        device: Device::Cpu,
        precision,
        channels_last: gpu_like,
        warmup: 0,
        steps: 1,
        seed: 1,
        work,
        cuda_graph,
    }
}

/// Three AT training steps through the graphed path (batch copied into its buffers, the ascent
/// run on them, the result copied out, `At::outer`) leave every parameter exactly where AT's own
/// step leaves it; `--work pgd` through it gives `Rig::pgd`'s ascent. For SmallCNN in fp32 and
/// for the GPU check's configuration (ResNet-18, bf16, channels-last).
#[test]
fn graphed_pgd_path_trains_exactly_as_the_method_step() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for gpu_like in [false, true] {
        graphed_path_matches(gpu_like);
    }
}

fn graphed_path_matches(gpu_like: bool) {
    let what = if gpu_like { "ResNet-18 bf16 channels-last" } else { "SmallCNN fp32" };
    let train = |cuda_graph: bool| {
        let mut rig = Rig::new(&bench_spec(gpu_like, cuda_graph, Work::TrainStep)).unwrap();
        assert_eq!(rig.is_graphed(), cuda_graph);
        let start = rig.trainable().into_iter().map(|(n, t)| (n, t.copy())).collect::<Vec<_>>();
        for i in 0..3 {
            rig.step(i).unwrap();
        }
        (start, rig.trainable())
    };
    let (start, plain) = train(false);
    let (graph_start, graphed) = train(true);
    let mut moved = false;
    assert_eq!(plain.len(), graphed.len());
    for (((name, a), (_, b)), ((_, s), (_, gs))) in plain.iter().zip(&graphed).zip(start.iter().zip(&graph_start)) {
        assert!(s.equal(gs), "{what}: {name}: the two rigs did not start alike");
        assert!(a.equal(b), "{what}: {name} differs between the graphed path and AT's step");
        moved |= !a.equal(s);
    }
    assert!(moved, "{what}: the steps did not train");

    let pgd = |cuda_graph: bool| {
        let rig = Rig::new(&bench_spec(gpu_like, cuda_graph, Work::Pgd)).unwrap();
        assert_eq!(rig.is_graphed(), cuda_graph);
        tch::manual_seed(9);
        rig.pgd(3).unwrap()
    };
    assert!(pgd(false).equal(&pgd(true)), "{what}: the graphed --work pgd differs from Rig::pgd");
}
