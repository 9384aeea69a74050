//! Tests of the training methods: the inner maximiser's invariants, each method's loss, the
//! configs, and that a non-finite loss stops training (SPEC §2; issue "every training method").

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use super::*;
use crate::attacks::{maximize, BnMode};
use crate::config::RunConfig;
use crate::data::{Augment, Batch, Dataset, ImageSet};
use crate::models::layers::test_support::{rng_lock, smallcnn_random_head};
use crate::models::{Arch, Network};
use crate::train::{train_method, Progress, TrainData};

fn mnist_net(seed: i64) -> Network {
    smallcnn_random_head(seed)
}

fn cifar_resnet(seed: i64) -> Network {
    tch::manual_seed(seed);
    Network::new(Arch::ResNet18, Dataset::Cifar10.image_shape(), 10, Device::Cpu).unwrap()
}

fn batch(shape: [i64; 4], seed: i64) -> Batch {
    tch::manual_seed(seed);
    let x = Tensor::rand(shape, (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [shape[0]], (Kind::Int64, Device::Cpu));
    Batch { x, y }
}

fn tiny_set(n: usize) -> ImageSet {
    tch::manual_seed(99);
    let images: Vec<u8> =
        Vec::<u8>::try_from(Tensor::randint(256, [(n * 784) as i64], (Kind::Uint8, Device::Cpu))).unwrap();
    ImageSet {
        images,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        shape: Dataset::Mnist.image_shape(),
        num_classes: 10,
    }
}

fn ctx(set: &ImageSet) -> StepCtx<'_> {
    StepCtx { epoch: 1, batch: 0, epochs_done: 0.5, seed: 7, train_set: set, augment: Augment::None }
}

fn method_cfg(toml_method: &str) -> MethodConfig {
    let text = format!(
        "seed = 0\n[data]\ndataset = \"mnist\"\n[model]\narch = \"smallcnn\"\n{toml_method}\n[train]\nepochs = 1\n"
    );
    RunConfig::from_toml(&text, "test").unwrap().method
}

fn inner(eps: f64) -> InnerConfig {
    let mut i = InnerConfig::default();
    i.resolve(Dataset::Mnist, crate::attacks::Start::Uniform).unwrap();
    i.eps = Some(eps);
    i.step_size = Some(eps / 4.0);
    i
}

#[test]
fn inner_maximiser_stays_in_the_ball_and_raises_the_objective() {
    let _g = rng_lock();
    let model = mnist_net(1);
    let b = batch([16, 1, 28, 28], 2);
    for eps in [0.1, 0.3] {
        let spec = inner(eps).spec_at(1.0);
        let ce = |l: &Tensor| losses::ce(l, &b.y).unwrap().sum(Kind::Float);
        tch::manual_seed(5);
        let start = maximize(&model, &b.x, &PgdSpec { steps: 0, ..spec }, BnMode::Eval, &mut |l| Ok(ce(l))).unwrap();
        tch::manual_seed(5);
        let adv = maximize(&model, &b.x, &spec, BnMode::Eval, &mut |l| Ok(ce(l))).unwrap();
        let dist = f64::try_from((&adv - &b.x).abs().max()).unwrap();
        assert!(dist <= eps + 1e-6, "L∞ distance {dist} > eps {eps}");
        assert!(f64::try_from(adv.min()).unwrap() >= 0.0 && f64::try_from(adv.max()).unwrap() <= 1.0);
        assert!(!bool::try_from(adv.isnan().any()).unwrap());
        let (before, after) = tch::no_grad(|| (ce(&model.forward_t(&start, false)), ce(&model.forward_t(&adv, false))));
        assert!(f64::try_from(after).unwrap() > f64::try_from(before).unwrap(), "PGD must raise the CE");
    }
    // The parameters are tracked again and carry no gradient from the attack.
    for (name, p) in model.trainable() {
        assert!(p.requires_grad(), "{name} left frozen");
        assert!(
            !p.grad().defined() || f64::try_from(p.grad().abs().sum(Kind::Float)).unwrap() == 0.0,
            "{name} got a gradient"
        );
    }
}

#[test]
fn eval_mode_attack_leaves_batchnorm_statistics_untouched() {
    let _g = rng_lock();
    let model = cifar_resnet(3);
    let b = batch([4, 3, 32, 32], 4);
    let before: BTreeMap<String, Tensor> = model
        .named_tensors()
        .into_iter()
        .filter(|(k, _)| k.contains("running") || k.contains("num_batches"))
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let spec = inner(8.0 / 255.0).spec_at(1.0);
    let ce = |l: &Tensor| Ok(losses::ce(l, &b.y)?.sum(Kind::Float));
    let _ = maximize(&model, &b.x, &PgdSpec { steps: 2, ..spec }, BnMode::Eval, &mut |l| ce(l)).unwrap();
    let now = model.named_tensors();
    for (k, v) in &before {
        assert!(now[k].equal(v), "{k} changed in eval mode");
    }
    let _ = maximize(&model, &b.x, &PgdSpec { steps: 2, ..spec }, BnMode::Train, &mut |l| ce(l)).unwrap();
    assert!(!model.named_tensors()["bn1.running_mean"].equal(&before["bn1.running_mean"]), "train mode updates BN");
}

#[test]
fn every_method_gives_a_finite_loss_with_named_parts_and_gradients() {
    let _g = rng_lock();
    let set = tiny_set(64);
    let cases = [
        ("[method]\nkind = \"natural\"", vec!["ce"]),
        ("[method]\nkind = \"at\"", vec!["ce_adv"]),
        ("[method]\nkind = \"trades\"", vec!["ce", "robust_kl"]),
        ("[method]\nkind = \"mart\"", vec!["bce", "weighted_kl"]),
        ("[method]\nkind = \"mart_plus\"", vec!["bce", "weighted_kl"]),
        ("[method]\nkind = \"gandef\"", vec!["ce_mean", "fool", "d_loss"]),
        ("[method]\nkind = \"gandef\"\nfool_loss = \"non_saturating\"", vec!["ce_mean", "fool", "d_loss"]),
        ("[method]\nkind = \"infoat\"", vec!["ce_adv", "ib_weighted", "entropy_reg"]),
        ("[method]\nkind = \"infoat\"\ndivergence = \"js\"\nweight = \"misclassification\"\nregularizer = \"pos_h_nat\"", vec!["ce_adv", "ib_weighted", "entropy_reg"]),
        ("[method]\nkind = \"infoat\"\ndivergence = \"kl\"\nweight = \"none\"\nregularizer = \"none\"", vec!["ce_adv", "ib_weighted", "entropy_reg"]),
        ("[method]\nkind = \"infoat\"\ndivergence = \"ce\"\ndetach_nat_weight = true", vec!["ce_adv", "ib_weighted", "entropy_reg"]),
    ];
    for (text, names) in cases {
        let cfg = method_cfg(text);
        let model = mnist_net(11);
        let mut m = cfg.build(10, Device::Cpu).unwrap();
        let b = batch([8, 1, 28, 28], 12);
        tch::manual_seed(13);
        let out = m.loss(&model, &b, &ctx(&set)).unwrap();
        let total = f64::try_from(&out.total).unwrap();
        assert!(total.is_finite(), "{text}: total {total}");
        let got: Vec<&str> = out.parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(got, names, "{text}");
        out.total.backward();
        let grad: f64 =
            model.trainable().iter().map(|(_, p)| f64::try_from(p.grad().abs().sum(Kind::Float)).unwrap()).sum();
        assert!(grad > 0.0 && grad.is_finite(), "{text}: gradient {grad}");
    }
}

/// TRADES with β = 0 is natural training; InfoAT with λ = β = 0 is AT. ResNet-18 (BatchNorm
/// with batch statistics, no dropout) makes the train-mode passes independent of what ran
/// before them, so the totals must agree exactly.
#[test]
fn degenerate_hyperparameters_reduce_to_simpler_methods() {
    let _g = rng_lock();
    let set = tiny_set(16);
    let b = batch([4, 3, 32, 32], 21);
    let run = |text: &str| {
        let model = cifar_resnet(22);
        let cfg = RunConfig::from_toml(
            &format!("seed = 0\n[data]\ndataset = \"cifar10\"\n[model]\narch = \"resnet18\"\n{text}\n[method.inner]\nsteps = 3\n[train]\nepochs = 1\n"),
            "t",
        )
        .unwrap();
        let mut m = cfg.method.build(10, Device::Cpu).unwrap();
        tch::manual_seed(23);
        f64::try_from(m.loss(&model, &b, &ctx(&set)).unwrap().total).unwrap()
    };
    let natural = {
        let model = cifar_resnet(22);
        f64::try_from(losses::ce(&model.forward_t(&b.x, true), &b.y).unwrap().mean(Kind::Float)).unwrap()
    };
    let trades0 = run("[method]\nkind = \"trades\"\nbeta = 0.0");
    assert!((natural - trades0).abs() < 1e-6, "natural {natural} vs TRADES(β=0) {trades0}");
    let trades = run("[method]\nkind = \"trades\"");
    assert!(trades > trades0, "the robust KL term adds to the loss");
    let at = run("[method]\nkind = \"at\"");
    let infoat0 = run("[method]\nkind = \"infoat\"\nlambda = 0.0\nbeta = 0.0");
    assert!((at - infoat0).abs() < 1e-6, "AT {at} vs InfoAT(λ=β=0) {infoat0}");
    let infoat = run("[method]\nkind = \"infoat\"");
    assert!((at - infoat).abs() > 1e-6, "λ, β must matter");
}

#[test]
fn method_configs_resolve_defaults_and_reject_bad_values() {
    let c = method_cfg("[method]\nkind = \"trades\"");
    let i = c.inner().unwrap();
    assert_eq!(
        (i.eps, i.step_size, i.steps, i.start),
        (Some(0.3), Some(0.075), 10, Some(crate::attacks::Start::Gaussian))
    );
    let c = method_cfg("[method]\nkind = \"infoat\"");
    assert_eq!(c.inner().unwrap().start, Some(crate::attacks::Start::Uniform));
    assert!(matches!(c, MethodConfig::Infoat { lambda, beta, .. } if lambda == 2.5 && beta == 0.2));
    let base = "seed = 0\n[data]\ndataset = \"mnist\"\n[model]\narch = \"smallcnn\"\n[train]\nepochs = 1\n";
    for (method, needle) in [
        ("[method]\nkind = \"at\"\n[method.inner]\nepz = 0.1", "epz"),
        ("[method]\nkind = \"at\"\n[method.inner]\neps = 2.0", "eps"),
        ("[method]\nkind = \"infoat\"\ndivergence = \"hellinger\"", "hellinger"),
        ("[method]\nkind = \"infoat\"\nmi_estimator = { kind = \"mine\", layer = 2 }", "ResNet-18"),
        ("[method]\nkind = \"infoat\"\nlambda = -1.0", "lambda"),
        ("[method]\nkind = \"trades\"\ngamma = 1.0", "gamma"),
    ] {
        let e = RunConfig::from_toml(&format!("{base}{method}\n"), "m.toml").unwrap_err().to_string();
        assert!(e.contains(needle), "{method}: {e}");
    }
}

struct NanMethod;

impl Method for NanMethod {
    fn name(&self) -> &'static str {
        "nan"
    }
    fn loss(&mut self, model: &Network, batch: &Batch, ctx: &StepCtx<'_>) -> crate::Result<LossParts> {
        let logits = model.forward_t(&batch.x, true);
        let ce = losses::ce(&logits, &batch.y)?.mean(Kind::Float);
        let bad = if ctx.batch == 1 { ce.f_mul_scalar(f64::NAN)? } else { ce.shallow_clone() };
        Ok(LossParts { parts: vec![("ce", ce.detach()), ("exploding", bad.detach())], total: ce, logits })
    }
}

#[test]
fn a_non_finite_loss_part_stops_training_naming_epoch_batch_and_part() {
    let _g = rng_lock();
    let text = "seed = 0\n[data]\ndataset = \"mnist\"\n[model]\narch = \"smallcnn\"\n[method]\nkind = \"natural\"\n[train]\nepochs = 1\nbatch_size = 8\n";
    let cfg = RunConfig::from_toml(text, "t").unwrap();
    let mut model = mnist_net(31);
    let err = train_method(&cfg, &mut model, Box::new(NanMethod), TrainData::new(&tiny_set(32)), Progress::Quiet, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exploding") && err.contains("epoch 1") && err.contains("batch 1") && err.contains("NaN"),
        "{err}"
    );
}

/// InfoAT with MINE (Table I): the statistics network trains on every batch, its estimate is
/// logged as a loss part, and its state (network and Adam moments) survives a save/load.
#[test]
fn infoat_with_mine_trains_and_saves_its_statistics_network() {
    let _g = rng_lock();
    let set = tiny_set(8);
    let model = cifar_resnet(41);
    let text = "seed = 0\n[data]\ndataset = \"cifar10\"\n[model]\narch = \"resnet18\"\n[method]\nkind = \"infoat\"\n\
                mi_estimator = { kind = \"mine\", layer = 2 }\n[method.inner]\nsteps = 2\n[train]\nepochs = 1\n";
    let cfg = RunConfig::from_toml(text, "t").unwrap();
    let mut m = cfg.method.build(10, Device::Cpu).unwrap();
    let before: BTreeMap<String, Tensor> = m.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
    assert!(before.keys().any(|k| k.starts_with("mine.")), "{:?}", before.keys());
    let b = batch([8, 3, 32, 32], 42);
    let out = m.loss(&model, &b, &ctx(&set)).unwrap();
    assert!(f64::try_from(&out.total).unwrap().is_finite());
    assert!(out.parts.iter().any(|(n, _)| *n == "mine_mi"));
    let after: BTreeMap<String, Tensor> = m.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
    assert_eq!(after["mine_opt.steps"].int64_value(&[]), 1);
    assert!(after.iter().any(|(k, v)| k.starts_with("mine.") && !before[k].equal(v)), "T must train");

    let mut fresh = cfg.method.build(10, Device::Cpu).unwrap();
    fresh.load_state(after.iter().map(|(k, v)| (k.clone(), v.copy())).collect()).unwrap();
    for (k, v) in fresh.state() {
        assert!(after[&k].equal(&v), "{k} not restored");
    }
    // A state from another method is refused.
    let mut plain = method_cfg("[method]\nkind = \"infoat\"").build(10, Device::Cpu).unwrap();
    assert!(plain.load_state(after).is_err());
}

/// Records each batch's labels (and trains like natural training).
struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<Vec<i64>>>>);

impl Method for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn loss(&mut self, model: &Network, batch: &Batch, _: &StepCtx<'_>) -> crate::Result<LossParts> {
        self.0.borrow_mut().push(Vec::<i64>::try_from(&batch.y).unwrap());
        let logits = model.forward_t(&batch.x, true);
        let ce = losses::ce(&logits, &batch.y)?.mean(Kind::Float);
        Ok(LossParts { parts: vec![("ce", ce.detach())], total: ce, logits })
    }
}

/// Table VI mixing (RST): half of every batch comes from the extra images, drawn with
/// replacement; an epoch is one pass over the labelled images, each seen exactly once.
#[test]
fn extra_data_fills_half_of_every_batch_and_an_epoch_covers_the_labelled_set() {
    let _g = rng_lock();
    let text = "seed = 3\n[data]\ndataset = \"mnist\"\nextra = { name = \"x\", fraction = 0.5 }\n[model]\narch = \"smallcnn\"\n[method]\nkind = \"natural\"\n[train]\nepochs = 1\nbatch_size = 16\n";
    let cfg = RunConfig::from_toml(text, "t").unwrap();
    let labelled = tiny_set(40); // labels 0..9
    let mut extra = tiny_set(30);
    extra.labels = (0..30).map(|i| if i < 15 { 7 } else { 9 } as u8).collect();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let data = TrainData { train: &labelled, extra: Some(&extra), val: None };
    train_method(&cfg, &mut mnist_net(5), Box::new(Recorder(seen.clone())), data, Progress::Quiet, None).unwrap();
    let batches = seen.borrow().clone();
    assert_eq!(batches.len(), 5, "40 labelled images, 8 per batch");
    let mut labelled_seen = vec![0usize; 10];
    for b in &batches {
        assert_eq!(b.len(), 16, "8 labelled + 8 extra");
        for &y in &b[..8] {
            labelled_seen[y as usize] += 1;
        }
        assert!(b[8..].iter().all(|&y| y == 7 || y == 9), "the second half is extra images: {b:?}");
    }
    assert_eq!(labelled_seen, vec![4; 10], "every labelled image once");
    // Without the loaded images, a config with data.extra refuses to train.
    let err = train_method(
        &cfg,
        &mut mnist_net(5),
        Box::new(Recorder(seen)),
        TrainData::new(&labelled),
        Progress::Quiet,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("data.extra"), "{err}");
}

/// The config spellings serde derives (`[method] kind`, `[data] dataset`, `[model] arch`) are
/// the registry's ids, which reports read back: every method kind, dataset and architecture
/// round-trips, and `name()` is the id's.
#[test]
fn config_spellings_are_the_registry_ids() {
    use infoat_registry::{ArchId, DatasetId, MethodKind};
    for &k in MethodKind::ALL {
        let m: MethodConfig = serde_json::from_value(serde_json::json!({ "kind": k.name() }))
            .unwrap_or_else(|e| panic!("method kind {k}: {e}"));
        assert_eq!(m.kind(), k);
        assert_eq!(serde_json::to_value(&m).unwrap()["kind"], k.name());
    }
    for d in crate::data::Dataset::ALL {
        assert_eq!(serde_json::to_value(d).unwrap(), d.name());
        assert_eq!(d.name().parse::<DatasetId>(), Ok(d.id()));
    }
    assert_eq!(crate::data::Dataset::ALL.len(), DatasetId::ALL.len());
    for &a in ArchId::ALL {
        let arch: crate::models::Arch = serde_json::from_value(serde_json::json!(a.name())).unwrap();
        assert_eq!(arch.id(), a);
        assert_eq!(arch.name(), a.name());
    }
}
