//! Run configs: what to train, on what, how (SPEC §2).
//!
//! A config is read from TOML with unknown keys rejected, then [`RunConfig::resolve`]d: every
//! default is written out (the augmentation policy of the dataset, the SPEC's optimizer and
//! schedule), values are validated, and the result is what gets hashed and recorded. Paths are
//! not part of a config: where the data lives is the machine's business, what the data *is*
//! is recorded as a fingerprint with the run.

use serde::{Deserialize, Serialize};

use crate::data::{Augment, Dataset};
use crate::methods::MethodConfig;
use crate::models::Arch;
use crate::optim::{OptimizerConfig, ScheduleConfig};
use crate::precision::Precision;
use crate::{Error, Result};

/// The version of the config schema; part of every config hash.
pub const SCHEMA_VERSION: u32 = 1;

/// One training run: method × dataset × architecture × seed, and the recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Config schema version; defaults to the current one.
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// Every random draw of the run (init, shuffling, augmentation, dropout, attack starts)
    /// derives from this seed.
    pub seed: u64,
    /// Where to compute.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Floating-point precision (`fp32`, `tf32`, `bf16`; see [`crate::precision`]). Omitted
    /// when `fp32`, so configs written before the field existed keep their hashes.
    #[serde(default, skip_serializing_if = "Precision::is_default")]
    pub precision: Precision,
    /// Channels-last memory format for parameters and inputs. Omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channels_last: bool,
    /// The data.
    pub data: DataConfig,
    /// The architecture.
    pub model: ModelConfig,
    /// The training method (outer loss and inner maximiser).
    pub method: MethodConfig,
    /// Epochs and batch size.
    pub train: TrainConfig,
    /// The optimizer; SPEC §2 default: SGD, lr 0.01, momentum 0.9, weight decay 3.5e-3.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule; SPEC §2 default: ×0.1 at epochs 75, 90, 100.
    #[serde(default)]
    pub schedule: ScheduleConfig,
}

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// Where tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA device; an error when none is available.
    Cuda,
}

impl DeviceChoice {
    /// The tch device this choice selects on this machine.
    pub fn device(self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => {
                let library = crate::cuda_library::load();
                // With its CUDA library loaded, libtorch's own reason (no driver, no device).
                let why = match library {
                    crate::cuda_library::CudaLibrary::Loaded(_) => {
                        tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(0))).err().map(|e| {
                            let line = crate::models::first_line(&e.to_string());
                            format!("{}; ", line.trim_start_matches("Internal torch error: "))
                        })
                    }
                    _ => None,
                };
                Err(Error::Invalid(format!(
                    "device = \"cuda\" but libtorch sees no CUDA device ({}libtorch's CUDA library: {library}); use \
                     device = \"cpu\" or \"auto\"",
                    why.unwrap_or_default()
                )))
            }
        }
    }
}

/// Which data, which part of it, and how it is augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset.
    pub dataset: Dataset,
    /// Augmentation; omitted means the dataset's SPEC §2 policy.
    #[serde(default)]
    pub augment: Option<Augment>,
    /// Training images held out (by a seeded permutation) as a validation split.
    #[serde(default)]
    pub val_holdout: usize,
    /// Train on only the first N training images (smoke tests); omitted means all.
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images; omitted means all.
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// Pseudo-labelled extra training images mixed into every batch (Table VI, RST; SPEC §2).
    /// Omitted when absent, so configs without it keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<crate::data::extra::ExtraData>,
}

/// The architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Which network.
    pub arch: Arch,
}

/// Epochs and batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of epochs (SPEC §2: 120 for the paper).
    pub epochs: usize,
    /// Training batch size (SPEC §2: 128).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Batch size for evaluation passes.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
}

fn default_batch() -> usize {
    128
}

fn default_eval_batch() -> usize {
    500
}

impl RunConfig {
    /// Parses a TOML config; `origin` names it in errors (a path or a preset).
    pub fn from_toml(text: &str, origin: &str) -> Result<RunConfig> {
        let cfg: RunConfig =
            toml::from_str(text).map_err(|e| Error::Config { origin: origin.to_string(), message: e.to_string() })?;
        cfg.resolve(origin)
    }

    /// Reads and resolves a TOML config file.
    pub fn from_file(path: &std::path::Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunConfig::from_toml(&text, &path.display().to_string())
    }

    /// Writes every default out and checks every value; the result is what is hashed.
    pub fn resolve(mut self, origin: &str) -> Result<RunConfig> {
        let bad = |message: String| Error::Config { origin: origin.to_string(), message };
        if self.schema_version != SCHEMA_VERSION {
            return Err(bad(format!(
                "schema_version = {} is not supported; this build reads schema_version = {SCHEMA_VERSION}",
                self.schema_version
            )));
        }
        if self.data.augment.is_none() {
            self.data.augment = Some(self.data.dataset.default_augment());
        }
        self.model.arch.check_input(self.data.dataset.image_shape()).map_err(|e| bad(e.to_string()))?;
        if self.train.epochs == 0 {
            return Err(bad("train.epochs must be at least 1".into()));
        }
        if self.train.batch_size == 0 || self.train.eval_batch_size == 0 {
            return Err(bad("train.batch_size and train.eval_batch_size must be at least 1".into()));
        }
        if let Some(extra) = &self.data.extra {
            extra.validate(self.train.batch_size).map_err(bad)?;
        }
        if self.data.train_limit == Some(0) || self.data.test_limit == Some(0) {
            return Err(bad("data.train_limit and data.test_limit must be at least 1 when given".into()));
        }
        let lr = self.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(bad(format!("optimizer.lr must be a positive number, got {lr}")));
        }
        match &self.optimizer {
            OptimizerConfig::Sgd { momentum, weight_decay, .. } => {
                if !((0.0..1.0).contains(momentum) && (0.0..f64::INFINITY).contains(weight_decay)) {
                    return Err(bad(format!(
                        "optimizer: momentum must be in [0, 1) and weight_decay >= 0, got {momentum} and {weight_decay}"
                    )));
                }
            }
            OptimizerConfig::Adam { beta1, beta2, weight_decay, .. } => {
                if !((0.0..1.0).contains(beta1)
                    && (0.0..1.0).contains(beta2)
                    && (0.0..f64::INFINITY).contains(weight_decay))
                {
                    return Err(bad(format!(
                        "optimizer: beta1 and beta2 must be in [0, 1) and weight_decay >= 0, got {beta1}, {beta2}, {weight_decay}"
                    )));
                }
            }
        }
        if let ScheduleConfig::Step { milestones, gamma } = &self.schedule {
            if milestones.windows(2).any(|w| w[0] >= w[1]) || milestones.first() == Some(&0) {
                return Err(bad(format!(
                    "schedule.milestones must be strictly increasing epochs >= 1, got {milestones:?}"
                )));
            }
            if !(*gamma > 0.0 && gamma.is_finite()) {
                return Err(bad(format!("schedule.gamma must be positive, got {gamma}")));
            }
        }
        self.method.resolve(self.data.dataset).map_err(bad)?;
        self.method.check_arch(self.model.arch).map_err(bad)?;
        Ok(self)
    }

    /// The augmentation policy after resolution.
    pub fn augment(&self) -> Augment {
        self.data.augment.unwrap_or(self.data.dataset.default_augment())
    }

    /// The config's content hash (canonical JSON of the resolved config).
    pub fn hash(&self) -> Result<infoat_registry::ContentHash> {
        Ok(infoat_registry::config_hash("run-config", &self.canonical_view())?)
    }

    /// The resolved config as hashed: optional limits written out as explicit values
    /// ("all" for no limit) so the canonical form has no nulls.
    pub fn canonical_view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("invariant: RunConfig serialises");
        let data = v.get_mut("data").and_then(|d| d.as_object_mut()).expect("invariant: data is an object");
        for key in ["train_limit", "test_limit"] {
            if data.get(key).is_some_and(|x| x.is_null()) {
                data.insert(key.to_string(), serde_json::Value::String("all".into()));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
seed = 3
[data]
dataset = "mnist"
[model]
arch = "smallcnn"
[method]
kind = "natural"
[train]
epochs = 2
"#;

    #[test]
    fn defaults_are_written_out() {
        let c = RunConfig::from_toml(MINIMAL, "t").unwrap();
        assert_eq!(c.data.augment, Some(Augment::None));
        assert_eq!(c.train.batch_size, 128);
        assert_eq!(
            c.optimizer,
            OptimizerConfig::Sgd { lr: 0.01, momentum: 0.9, weight_decay: 3.5e-3, nesterov: false }
        );
        assert_eq!(c.schedule, ScheduleConfig::Step { milestones: vec![75, 90, 100], gamma: 0.1 });
        let json = infoat_registry::canonical_json(&c.canonical_view()).unwrap();
        assert!(json.contains(r#""augment":"none""#), "{json}");
        assert!(json.contains(r#""train_limit":"all""#), "{json}");
    }

    #[test]
    fn same_meaning_same_hash() {
        let a = RunConfig::from_toml(MINIMAL, "a").unwrap();
        let explicit = format!(
            "{MINIMAL}batch_size = 128\n[optimizer]\nkind = \"sgd\"\nlr = 0.01\nmomentum = 0.9\nweight_decay = 0.0035\n[data.x]\n"
        );
        // The stray [data.x] table is an unknown key and must be rejected...
        assert!(RunConfig::from_toml(&explicit, "b").is_err());
        // ...without it, spelling the defaults out gives the same hash.
        let explicit = explicit.replace("[data.x]\n", "");
        let b = RunConfig::from_toml(&explicit, "b").unwrap();
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        let c = RunConfig::from_toml(&MINIMAL.replace("seed = 3", "seed = 4"), "c").unwrap();
        assert_ne!(a.hash().unwrap(), c.hash().unwrap());
    }

    #[test]
    fn numerics_fields_are_hashed_only_when_not_default() {
        let plain = RunConfig::from_toml(MINIMAL, "a").unwrap();
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("precision").is_none() && json.get("channels_last").is_none(), "{json}");
        let explicit_default =
            RunConfig::from_toml(&format!("precision = \"fp32\"\nchannels_last = false\n{MINIMAL}"), "b").unwrap();
        assert_eq!(plain.hash().unwrap(), explicit_default.hash().unwrap());
        let bf16 = RunConfig::from_toml(&format!("precision = \"bf16\"\n{MINIMAL}"), "c").unwrap();
        assert_eq!(bf16.precision, Precision::Bf16);
        assert_ne!(plain.hash().unwrap(), bf16.hash().unwrap());
        let cl = RunConfig::from_toml(&format!("channels_last = true\n{MINIMAL}"), "d").unwrap();
        assert_ne!(plain.hash().unwrap(), cl.hash().unwrap());
        assert_ne!(bf16.hash().unwrap(), cl.hash().unwrap());
        let err = RunConfig::from_toml(&format!("precision = \"fp16\"\n{MINIMAL}"), "e").unwrap_err().to_string();
        assert!(err.contains("precision") || err.contains("fp16"), "{err}");
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            (MINIMAL.replace("epochs = 2", "epochs = 2\nepochz = 3"), "epochz"),
            (MINIMAL.replace("natural", "bogus"), "bogus"),
            (MINIMAL.replace("\"mnist\"", "\"imagenet\""), "imagenet"),
            (MINIMAL.replace("epochs = 2", "epochs = 0"), "epochs"),
            (MINIMAL.replace("smallcnn", "resnet18"), "32x32"),
            (MINIMAL.replace("epochs = 2", "epochs = \"two\""), "epochs"),
            (format!("{MINIMAL}[schedule]\nkind = \"step\"\nmilestones = [5, 3]\ngamma = 0.1\n"), "milestones"),
            (format!("{MINIMAL}[optimizer]\nkind = \"sgd\"\nlr = -1.0\nmomentum = 0.9\nweight_decay = 0.0\n"), "lr"),
        ];
        for (text, needle) in cases {
            let err = RunConfig::from_toml(&text, "cfg.toml").unwrap_err().to_string();
            assert!(err.contains("cfg.toml") && err.contains(needle), "error {err:?} should name {needle:?}");
        }
    }

    #[test]
    fn step_schedule_counts_epochs_from_one() {
        let s = ScheduleConfig::default();
        assert_eq!(s.lr(0.01, 74, 0.0, 120), 0.01);
        assert!((s.lr(0.01, 75, 0.0, 120) - 0.001).abs() < 1e-15);
        assert!((s.lr(0.01, 90, 0.0, 120) - 0.0001).abs() < 1e-15);
        assert!((s.lr(0.01, 120, 0.0, 120) - 0.00001).abs() < 1e-15);
        assert!((ScheduleConfig::Cosine.lr(1.0, 1, 0.0, 10) - 1.0).abs() < 1e-12);
        assert!((ScheduleConfig::Cosine.lr(1.0, 6, 0.0, 10) - 0.5).abs() < 1e-12);
    }
}
