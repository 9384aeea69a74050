//! The paper's experiment configs (`fixtures/experiments/<group>/*.toml`, written by
//! `fixtures/experiments/generate.py`): every one parses and resolves, each group holds one config
//! per trained model of its table or figure, each says in its first line which paper cell it
//! reproduces, the recipes are the paper's (SPEC §2), and no two configs are the same run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use infoat_harness::config::{DeviceChoice, RunConfig};
use infoat_harness::data::Dataset;
use infoat_harness::methods::{Divergence, MethodConfig, MiEstimator, Regularizer, Weight};
use infoat_harness::models::Arch;
use infoat_harness::optim::{OptimizerConfig, ScheduleConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures")
}

fn experiments_dir() -> PathBuf {
    fixtures().join("experiments")
}

/// One experiment config file, parsed and resolved.
struct Experiment {
    path: PathBuf,
    group: String,
    name: String,
    text: String,
    config: RunConfig,
}

impl Experiment {
    fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "toml") {
            out.push(path);
        }
    }
}

/// Every config under `fixtures/experiments`, in path order; panics naming the first that does
/// not parse or resolve.
fn experiments() -> Vec<Experiment> {
    let root = experiments_dir();
    let mut paths = Vec::new();
    toml_files(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).expect("under the root").to_path_buf();
            let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            assert_eq!(parts.len(), 2, "{}: configs live in fixtures/experiments/<group>/<name>.toml", rel.display());
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let config = RunConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = parts[1].trim_end_matches(".toml").to_string();
            Experiment { path, group: parts[0].clone(), name, text, config }
        })
        .collect()
}

/// The data rows of a transcribed paper table, as (column -> value) maps.
fn paper_csv(name: &str) -> Vec<BTreeMap<String, String>> {
    let path = fixtures().join("paper").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(str::to_string)).collect()).collect()
}

fn group<'a>(all: &'a [Experiment], name: &str) -> Vec<&'a Experiment> {
    all.iter().filter(|e| e.group == name).collect()
}

fn infoat_fields(e: &Experiment) -> (f64, f64, Weight, Divergence, Regularizer, MiEstimator) {
    match &e.config.method {
        MethodConfig::Infoat { lambda, beta, weight, divergence, regularizer, mi_estimator, .. } => {
            (*lambda, *beta, *weight, *divergence, *regularizer, *mi_estimator)
        }
        other => panic!("{}: expected an infoat method, got {}", e.path.display(), other.name()),
    }
}

/// The beta of TRADES, MART and MART+ (None for the other methods).
fn baseline_beta(method: &MethodConfig) -> Option<f64> {
    match method {
        MethodConfig::Trades { beta, .. } | MethodConfig::Mart { beta, .. } | MethodConfig::MartPlus { beta, .. } => {
            Some(*beta)
        }
        _ => None,
    }
}

const PAPER_METHODS: [&str; 6] = ["gandef", "at", "trades", "mart", "mart_plus", "infoat"];

#[test]
fn every_config_resolves_and_each_group_has_one_per_trained_model() {
    let all = experiments();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &all {
        *counts.entry(e.group.as_str()).or_default() += 1;
    }
    let table1_rows = paper_csv("table1_mine_lambda.csv").len();
    assert_eq!(table1_rows, 19, "Table I has 19 (layer, lambda) rows");
    // fig2: lambda in {0, 1, 2, 3, 4, 6, 8} and beta in {0.1, 0.5, 1, 1.5, 2}; fig3: 2 weights,
    // 3 divergences, 4 regularisers. The paper's default InfoAT point of both figures is the
    // Table II CIFAR-10 config, not repeated there.
    let expected: BTreeMap<&str, usize> =
        [("table1", table1_rows), ("table2", 18), ("table5", 12), ("table6", 2), ("fig2", 12), ("fig3", 9)]
            .into_iter()
            .collect();
    assert_eq!(counts, expected);
}

#[test]
fn every_config_starts_by_naming_its_paper_cell() {
    for e in experiments() {
        let first = e.first_line();
        assert!(
            first.starts_with('#') && (first.contains("Table") || first.contains("Fig.")),
            "{}: the first line must be a comment naming the paper table or figure, got {first:?}",
            e.path.display()
        );
        let prefix = match e.group.as_str() {
            "table1" => "# Table I,",
            "table2" => "# Table II,",
            "table5" => "# Table V,",
            "table6" => "# Table VI,",
            "fig2" => "# Fig. 2",
            "fig3" => "# Fig. 3",
            other => panic!("{}: unknown group {other}", e.path.display()),
        };
        assert!(first.starts_with(prefix), "{}: first line {first:?} should start with {prefix:?}", e.path.display());
    }
}

#[test]
fn headers_quote_the_published_numbers() {
    let all = experiments();
    for (group_name, csv) in [("table2", "table2_whitebox_resnet18.csv"), ("table5", "table5_whitebox_wrn34_10.csv")] {
        for row in paper_csv(csv) {
            let dataset = match row["dataset"].as_str() {
                "CIFAR-10" => "cifar10",
                "CIFAR-100" => "cifar100",
                "SVHN" => "svhn",
                other => panic!("{csv}: unknown dataset {other}"),
            };
            let method = row["method"].to_lowercase().replace('+', "_plus");
            let name = format!("{dataset}_{method}");
            let e = group(&all, group_name)
                .into_iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("{group_name}/{name}.toml is missing"));
            let first = e.first_line();
            for col in ["natural", "pgd20", "aa"] {
                assert!(first.contains(&row[col]), "{}: first line should quote {col} {}", e.path.display(), row[col]);
            }
        }
    }
    for e in group(&all, "table6") {
        assert!(
            e.text.contains("500K") && e.text.contains("ci/convert-rst-extra"),
            "{}: must say where the 500K extra data comes from",
            e.path.display()
        );
    }
    let default_point = all.iter().find(|e| e.group == "table2" && e.name == "cifar10_infoat").expect("the default");
    for cell in ["Fig. 2(a)", "Fig. 2(b)", "Fig. 3(a)", "3(b)", "3(c)", "3(d)"] {
        assert!(default_point.text.contains(cell), "the default InfoAT config should say it is also {cell}");
    }
}

#[test]
fn configs_follow_the_papers_recipe() {
    let all = experiments();
    let eps = 8.0 / 255.0;
    for e in &all {
        let c = &e.config;
        let at = e.path.display();
        assert_eq!(c.seed, 0, "{at}");
        assert_eq!(c.device, DeviceChoice::Auto, "{at}");
        let inner = c.method.inner().unwrap_or_else(|| panic!("{at}: every paper model is adversarially trained"));
        assert_eq!(inner.eps, Some(eps), "{at}");
        assert_eq!(inner.steps, 10, "{at}");
        assert_eq!(inner.step_size, Some(eps / 4.0), "{at}");
        if e.group == "table6" {
            assert_eq!((c.train.epochs, c.train.batch_size), (200, 256), "{at}");
            assert_eq!(
                c.optimizer,
                OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: true },
                "{at}"
            );
            assert_eq!(c.schedule, ScheduleConfig::Cosine, "{at}");
        } else {
            assert_eq!((c.train.epochs, c.train.batch_size), (120, 128), "{at}");
            assert_eq!(
                c.optimizer,
                OptimizerConfig::Sgd { lr: 0.01, momentum: 0.9, weight_decay: 3.5e-3, nesterov: false },
                "{at}"
            );
            assert_eq!(c.schedule, ScheduleConfig::Step { milestones: vec![75, 90, 100], gamma: 0.1 }, "{at}");
        }
    }
}

#[test]
fn tables_cover_every_method_dataset_and_architecture() {
    let all = experiments();
    for (group_name, arch, datasets) in [
        ("table2", Arch::ResNet18, vec![Dataset::Cifar10, Dataset::Cifar100, Dataset::Svhn]),
        ("table5", Arch::Wrn34x10, vec![Dataset::Cifar10, Dataset::Cifar100]),
    ] {
        let mut cells = BTreeSet::new();
        for e in group(&all, group_name) {
            let c = &e.config;
            assert_eq!(c.model.arch, arch, "{}", e.path.display());
            assert!(datasets.contains(&c.data.dataset), "{}: dataset {:?}", e.path.display(), c.data.dataset);
            assert!(PAPER_METHODS.contains(&c.method.name()), "{}", e.path.display());
            assert_eq!(e.name, format!("{}_{}", c.data.dataset.name(), c.method.name()), "{}", e.path.display());
            cells.insert((c.data.dataset.name(), c.method.name()));
            // MART's own scripts: beta 5 on ResNet-18, 6 on WideResNet; TRADES 6.
            let expected_beta = match (c.method.name(), arch) {
                ("trades", _) => Some(6.0),
                ("mart" | "mart_plus", Arch::ResNet18) => Some(5.0),
                ("mart" | "mart_plus", _) => Some(6.0),
                _ => None,
            };
            assert_eq!(baseline_beta(&c.method), expected_beta, "{}", e.path.display());
            if c.method.name() == "infoat" {
                let (lambda, beta, weight, divergence, regularizer, mi) = infoat_fields(e);
                assert_eq!((lambda, beta), (2.5, 0.2), "{}", e.path.display());
                assert_eq!(
                    (weight, divergence, regularizer, mi),
                    Default::default(),
                    "{}: the paper's InfoAT",
                    e.path.display()
                );
            }
        }
        assert_eq!(cells.len(), datasets.len() * PAPER_METHODS.len(), "{group_name}: one config per cell");
    }
    let table6 = group(&all, "table6");
    let methods: BTreeSet<&str> = table6.iter().map(|e| e.config.method.name()).collect();
    assert_eq!(methods, BTreeSet::from(["infoat", "mart"]));
    for e in table6 {
        assert_eq!(e.config.model.arch, Arch::Wrn28x10, "{}", e.path.display());
        assert_eq!(e.config.data.dataset, Dataset::Cifar10, "{}", e.path.display());
        // RST's mixing: half of every batch from the 500K pseudo-labelled images.
        let extra = e.config.data.extra.as_ref().unwrap_or_else(|| panic!("{}: no data.extra", e.path.display()));
        assert_eq!((extra.name.as_str(), extra.fraction), ("ti_500K_pseudo_labeled", 0.5));
        assert_eq!(extra.split(e.config.train.batch_size), (128, 128));
    }
}

#[test]
fn table1_configs_use_mine_at_the_layer_of_their_row() {
    let all = experiments();
    let mut seen = BTreeSet::new();
    for e in group(&all, "table1") {
        let at = e.path.display();
        let layer_in_name: usize = e
            .name
            .strip_prefix("mine_l")
            .and_then(|rest| rest.split('_').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{at}: name should be mine_l<layer>_lambda<lambda>"));
        let (lambda, beta, weight, divergence, regularizer, mi) = infoat_fields(e);
        assert_eq!(mi, MiEstimator::Mine { layer: layer_in_name }, "{at}");
        assert!(e.first_line().contains(&format!("layer #{layer_in_name}")), "{at}: the header names the layer");
        assert_eq!(beta, 0.2, "{at}: Table I is at beta = 0.2");
        assert_eq!((weight, divergence, regularizer), Default::default(), "{at}");
        assert_eq!(e.config.model.arch, Arch::ResNet18, "{at}");
        assert_eq!(e.config.data.dataset, Dataset::Cifar10, "{at}");
        assert!(seen.insert((layer_in_name, lambda.to_string())), "{at}: (layer, lambda) repeated");
    }
    let rows: BTreeSet<(usize, String)> = paper_csv("table1_mine_lambda.csv")
        .iter()
        .map(|r| (r["layer"].parse().expect("layer"), r["lambda"].parse::<f64>().expect("lambda").to_string()))
        .collect();
    assert_eq!(seen, rows, "table1/ holds exactly the rows of Table I");
}

#[test]
fn figure_configs_vary_one_thing_from_the_default_infoat() {
    let all = experiments();
    let mut lambdas = BTreeSet::new();
    let mut betas = BTreeSet::new();
    for e in group(&all, "fig2") {
        let at = e.path.display();
        assert_eq!((e.config.model.arch, e.config.data.dataset), (Arch::ResNet18, Dataset::Cifar10), "{at}");
        let (lambda, beta, weight, divergence, regularizer, mi) = infoat_fields(e);
        assert_eq!((weight, divergence, regularizer, mi), Default::default(), "{at}");
        match (lambda == 2.5, beta == 0.2) {
            (false, true) => assert!(lambdas.insert(lambda.to_string()), "{at}"),
            (true, false) => assert!(betas.insert(beta.to_string()), "{at}"),
            _ => panic!("{at}: a Fig. 2 point moves exactly one of lambda (from 2.5) and beta (from 0.2)"),
        }
        assert!((0.0..=8.0).contains(&lambda) && (0.1..=2.0).contains(&beta), "{at}: outside the paper's range");
    }
    assert!(lambdas.len() >= 3 && betas.len() >= 3, "Fig. 2 sweeps both parameters: {lambdas:?} {betas:?}");
    for e in group(&all, "fig3") {
        let at = e.path.display();
        assert_eq!((e.config.model.arch, e.config.data.dataset), (Arch::ResNet18, Dataset::Cifar10), "{at}");
        let (lambda, beta, weight, divergence, regularizer, mi) = infoat_fields(e);
        assert_eq!((lambda, beta, mi), (2.5, 0.2, MiEstimator::Entropy), "{at}");
        let changed =
            [weight != Weight::default(), divergence != Divergence::default(), regularizer != Regularizer::default()];
        assert_eq!(changed.iter().filter(|&&c| c).count(), 1, "{at}: a Fig. 3 ablation changes exactly one field");
    }
}

#[test]
fn no_two_configs_are_the_same_run() {
    let mut by_hash: HashMap<String, PathBuf> = HashMap::new();
    for e in experiments() {
        let hash = e.config.hash().unwrap_or_else(|err| panic!("{}: {err}", e.path.display())).to_hex();
        if let Some(previous) = by_hash.insert(hash, e.path.clone()) {
            panic!("{} and {} are the same run (equal config hashes)", previous.display(), e.path.display());
        }
    }
}
