//! Cost estimates for presets and sweeps (issue 8): `reproduce --list`, `--dry-run` and the
//! time limits of `sweep --emit slurm`.
//!
//! Work is counted in *passes*: one forward + backward pass of one image. Training a method
//! costs passes per image (natural 1, PGD-k methods k + 1 or k + 2); an attack costs passes per
//! attacked image, from the forward passes the registry recorded for each attack on the
//! quickstart models (`forward_passes` in eval records), forward-only queries (clean accuracy,
//! SPSA, RayS) at a third of a pass. Passes per second come from measured throughput per
//! (architecture, device) in `fixtures/costs/throughput.toml`, each with the measurement it
//! rests on. The quickstart, estimated so, comes to 8 minutes on the 2-core VM it was timed on
//! at 7 min 52 s.

use serde::Deserialize;

use crate::attacks::AttackId;
use crate::config::{DeviceChoice, RunConfig};
use crate::data::Dataset;
use crate::methods::MethodConfig;
use crate::models::Arch;
use crate::pipeline::SuiteRequest;
use crate::preset::PresetRun;
use crate::{Error, Result};

const THROUGHPUT: &str = include_str!("../../fixtures/costs/throughput.toml");

/// A forward-only query costs this fraction of a forward + backward pass.
const FORWARD_ONLY: f64 = 1.0 / 3.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThroughputFile {
    entry: Vec<Throughput>,
}

/// Measured (or derived, as `basis` says) passes per second of one architecture on one device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throughput {
    /// The architecture.
    pub arch: Arch,
    /// `cuda` or `cpu`.
    pub device: DeviceChoice,
    /// Forward + backward passes of one image per second.
    pub passes_per_s: f64,
    /// Where the figure comes from.
    pub basis: String,
}

/// The device kind a cost is counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostDevice {
    /// A GPU (configs with `device = "cuda"` or `"auto"`).
    Gpu,
    /// The CPU.
    Cpu,
}

impl CostDevice {
    /// The device a config is costed on: `auto` counts as a GPU (the GPU presets use it).
    pub fn of(cfg: &RunConfig) -> CostDevice {
        match cfg.device {
            DeviceChoice::Cpu => CostDevice::Cpu,
            DeviceChoice::Cuda | DeviceChoice::Auto => CostDevice::Gpu,
        }
    }
}

/// Seconds of work on one device kind, split into training and evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Training seconds.
    pub train_s: f64,
    /// Evaluation seconds.
    pub eval_s: f64,
}

impl Cost {
    /// Training plus evaluation.
    pub fn total_s(&self) -> f64 {
        self.train_s + self.eval_s
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.train_s += o.train_s;
        self.eval_s += o.eval_s;
    }
}

/// The throughput table.
pub fn throughputs() -> Result<&'static [Throughput]> {
    // Parsed once: every run of every preset asks for its rate.
    static TABLE: std::sync::OnceLock<std::result::Result<Vec<Throughput>, String>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| toml::from_str::<ThroughputFile>(THROUGHPUT).map(|f| f.entry).map_err(|e| e.to_string()))
        .as_deref()
        .map_err(|e| Error::Config { origin: "fixtures/costs/throughput.toml".into(), message: e.clone() })
}

/// Passes per second for `arch` on `device`.
pub fn passes_per_s(arch: Arch, device: CostDevice) -> Result<Throughput> {
    let want = match device {
        CostDevice::Gpu => DeviceChoice::Cuda,
        CostDevice::Cpu => DeviceChoice::Cpu,
    };
    throughputs()?.iter().find(|t| t.arch == arch && t.device == want).cloned().ok_or_else(|| {
        Error::Invalid(format!(
            "no throughput for {} on {device:?} in fixtures/costs/throughput.toml: add a measured entry",
            arch.name()
        ))
    })
}

/// The standard split sizes (train, test) of a dataset.
pub fn split_sizes(dataset: Dataset) -> (usize, usize) {
    match dataset {
        Dataset::Mnist | Dataset::FashionMnist => (60_000, 10_000),
        Dataset::Cifar10 | Dataset::Cifar100 => (50_000, 10_000),
        Dataset::Svhn => (73_257, 26_032),
    }
}

/// Passes per training image of a method (its inner maximisation plus the update; the methods
/// with a clean term add one more forward).
pub fn train_passes_per_image(method: &MethodConfig) -> f64 {
    match method {
        MethodConfig::Natural => 1.0,
        MethodConfig::At { inner } => inner.steps as f64 + 1.0,
        m => m.inner().map_or(1.0, |i| i.steps as f64 + 2.0),
    }
}

/// Passes per attacked image of an attack. Gradient attacks: one per step (PGD+ 5 × 41, BPDA
/// and InfoPGD-20 21, as recorded). AutoAttack: 2,500, the most recorded on the quickstart
/// models (1,100–2,500; it grows with robustness). SPSA: 80 % of 100 iterations × its samples,
/// forward only (early stop; 5,500–10,700 recorded at 128). RayS: its budget, forward only.
pub fn attack_passes(id: AttackId, rays_budget: usize) -> f64 {
    match id {
        AttackId::Fgsm => 1.0,
        AttackId::Pgd20 | AttackId::Cw20 => 20.0,
        AttackId::Bpda | AttackId::Infopgd20 => 21.0,
        AttackId::Pgd100 | AttackId::Cw100 | AttackId::ApgdCe => 100.0,
        AttackId::PgdPlus => 205.0,
        AttackId::ApgdT | AttackId::FabT => 900.0,
        AttackId::Square => 5_000.0 * FORWARD_ONLY,
        AttackId::Aa => 2_500.0,
        AttackId::Spsa128 => 0.8 * 100.0 * 128.0 * FORWARD_ONLY,
        AttackId::Spsa256 => 0.8 * 100.0 * 256.0 * FORWARD_ONLY,
        AttackId::Spsa512 => 0.8 * 100.0 * 512.0 * FORWARD_ONLY,
        AttackId::Spsa1024 => 0.8 * 100.0 * 1024.0 * FORWARD_ONLY,
        AttackId::Rays => rays_budget as f64 * FORWARD_ONLY,
        AttackId::External => FORWARD_ONLY,
    }
}

/// Passes of an evaluation's diagnostics (issue 22, [`crate::diagnostics`]) over `attacked`
/// images: the self-tests, curves and unconstrained reruns work on at most 50 examples (measured
/// on the quickstart's AT SmallCNN, `infoat eval --limit 50 --force`: 1,434 forward passes per
/// attacked example, about 72,000 in all), the model probes on every attacked example (two
/// gradients and 16 forward-only noise draws).
pub fn diagnostics_passes(attacked: f64) -> f64 {
    72_000.0 + attacked * (2.0 + 16.0 * FORWARD_ONLY)
}

/// Training images per epoch of a config.
pub fn train_images_per_epoch(cfg: &RunConfig) -> f64 {
    let (train, _) = split_sizes(cfg.data.dataset);
    let labelled = cfg.data.train_limit.map_or(train, |n| n.min(train)).saturating_sub(cfg.data.val_holdout);
    // With extra data, every batch is half labelled, half extra: twice the images per epoch.
    let mix = if cfg.data.extra.is_some() { 2.0 } else { 1.0 };
    labelled as f64 * mix
}

/// Training passes of a config.
pub fn train_passes(cfg: &RunConfig) -> f64 {
    cfg.train.epochs as f64 * train_images_per_epoch(cfg) * train_passes_per_image(&cfg.method)
}

/// Evaluation passes of a preset run's plan (clean accuracy, white-box and black-box suites).
pub fn eval_passes(run: &PresetRun) -> Result<f64> {
    let cfg = &run.config;
    let (_, test) = split_sizes(cfg.data.dataset);
    let test = cfg.data.test_limit.map_or(test, |n| n.min(test));
    let suites = std::iter::once(SuiteRequest::white_box(run)).chain(SuiteRequest::black_box(run));
    let mut passes = 0.0;
    for s in suites {
        let suite = s.resolve(cfg.data.dataset)?;
        passes += test as f64 * FORWARD_ONLY + suite.forward_passes(suite.subset(test).attacked as f64);
    }
    Ok(passes)
}

/// The estimated cost of a preset run: training (unless `trained`) and evaluation (unless
/// `evaluated`), on the run's device kind.
pub fn estimate(run: &PresetRun, trained: bool, evaluated: bool) -> Result<(CostDevice, Cost)> {
    let device = CostDevice::of(&run.config);
    let rate = passes_per_s(run.config.model.arch, device)?.passes_per_s;
    let train_s = if trained { 0.0 } else { train_passes(&run.config) / rate };
    let eval_s = if evaluated { 0.0 } else { eval_passes(run)? / rate };
    Ok((device, Cost { train_s, eval_s }))
}

/// "3.2 GPU-h" / "14 CPU-min": a cost the way `--list` prints it.
pub fn human(device: CostDevice, seconds: f64) -> String {
    match device {
        CostDevice::Gpu if seconds >= 3600.0 => format!("{:.1} GPU-h", seconds / 3600.0),
        CostDevice::Gpu => format!("{:.0} GPU-min", (seconds / 60.0).ceil()),
        CostDevice::Cpu if seconds >= 3.0 * 3600.0 => format!("{:.1} CPU-h", seconds / 3600.0),
        CostDevice::Cpu => format!("{:.0} CPU-min", (seconds / 60.0).ceil()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::Preset;

    #[test]
    fn every_architecture_has_a_throughput_on_both_devices() {
        for arch in [Arch::SmallCnn, Arch::ResNet18, Arch::Wrn34x10, Arch::Wrn28x10] {
            for device in [CostDevice::Gpu, CostDevice::Cpu] {
                let t = passes_per_s(arch, device).unwrap();
                assert!(t.passes_per_s > 0.0 && !t.basis.is_empty(), "{arch:?} {device:?}");
            }
        }
    }

    /// The quickstart was timed at 471.6 s (README); the estimate must land near it, or the
    /// model (attack passes, throughput) has drifted from what was measured.
    #[test]
    fn quickstart_estimate_is_near_its_measured_time() {
        let q = Preset::find("quickstart").unwrap();
        let total: f64 = q.runs.iter().map(|r| estimate(r, false, false).unwrap().1.total_s()).sum();
        assert!((300.0..700.0).contains(&total), "quickstart estimate {total:.0} s, measured 472 s");
    }

    #[test]
    fn at_costs_eleven_passes_per_image_and_reuse_costs_nothing() {
        let q = Preset::find("quickstart").unwrap();
        let at = q.runs.iter().find(|r| r.name == "at").unwrap();
        assert_eq!(train_passes_per_image(&at.config.method), 11.0);
        assert_eq!(train_passes(&at.config), 2.0 * 8000.0 * 11.0);
        let (_, c) = estimate(at, true, true).unwrap();
        assert_eq!(c.total_s(), 0.0);
        assert_eq!(human(CostDevice::Gpu, 7200.0), "2.0 GPU-h");
        assert_eq!(human(CostDevice::Cpu, 61.0), "2 CPU-min");
    }
}
