//! The `infoat` command line (clap): argument definitions only; `main.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::attacks::AttackId;
use crate::config::DeviceChoice;
use crate::data::Dataset;
use crate::models::Arch;

/// Reproduce adversarial-training research (InfoAT, TNNLS) with every result traceable to a
/// config hash and a checkpoint hash.
#[derive(Debug, Parser)]
#[command(name = "infoat", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// No progress bars or per-epoch lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model from a TOML run config and save its checkpoint.
    Train(TrainArgs),
    /// Report a checkpoint's clean test accuracy.
    Eval(EvalArgs),
    /// Run every config of a preset (train, then evaluate) and check its targets.
    Reproduce(ReproduceArgs),
    /// Print a config as resolved (every default written out) with its content hash.
    Config(ConfigArgs),
    /// Print the datasets an invocation reads from the default data cache (used by ./infoat to
    /// fetch them first).
    #[command(hide = true)]
    Needs {
        /// The arguments of the invocation, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Where runs go.
#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// Folder holding one subfolder per config hash.
    #[arg(long, env = "INFOAT_RUNS", default_value = "infoat-runs")]
    pub runs_dir: PathBuf,
    /// Train again even when a complete run of the same config exists.
    #[arg(long)]
    pub force: bool,
}

/// `infoat train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run config (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Folder with the dataset's original files [default: the cache folder ci/fetch-data fills].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Override the config's device (part of the config hash).
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Run folders and reuse.
    #[command(flatten)]
    pub runs: RunsArgs,
    /// Require an interrupted run of this config to continue from (an error when there is
    /// none); without it an interrupted run is resumed anyway when one exists.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Print the run record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The checkpoint (.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture [default: the one recorded in the checkpoint].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Dataset [default: the one recorded in the checkpoint].
    #[arg(long, value_enum)]
    pub dataset: Option<Dataset>,
    /// Folder with the dataset's original files [default: the cache folder ci/fetch-data fills].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Evaluate only the first N test images.
    #[arg(long, visible_alias = "n")]
    pub limit: Option<usize>,
    /// Attacks to run, comma-separated (e.g. `fgsm,pgd20`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub attacks: Vec<AttackId>,
    /// L∞ radius of the attacks [default: the dataset's: 0.3 MNIST, 0.1 Fashion-MNIST, 8/255 otherwise].
    #[arg(long)]
    pub eps: Option<f64>,
    /// Seed of the attacks' random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// A preset name (see --list) or a path to a preset .toml file.
    #[arg(required_unless_present = "list")]
    pub preset: Option<String>,
    /// List the presets and exit.
    #[arg(long)]
    pub list: bool,
    /// Run folders and reuse.
    #[command(flatten)]
    pub runs: RunsArgs,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The run config (TOML).
    pub config: PathBuf,
}
