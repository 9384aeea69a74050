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
    /// Evaluate a model (a run, a checkpoint or a TorchScript module) under white-box attacks.
    Eval(EvalArgs),
    /// Run every config of a preset (train, then evaluate) and check its targets.
    Reproduce(ReproduceArgs),
    /// Print a config as resolved (every default written out) with its content hash.
    Config(ConfigArgs),
    /// Inspect and maintain the result registry: list, show, verify, export, import, merge, gc.
    Registry(RegistryCmd),
    /// Render the paper's tables from the registry (reproduced beside published, with
    /// verdicts and the hashes behind every cell) as Markdown, LaTeX, CSV, JSON and HTML.
    Report(ReportArgs),
    /// Place a run or an evaluated external model among every registry entry evaluated under
    /// the same protocol: ranks per attack, differences and whether they exceed noise.
    Compare(CompareArgs),
    /// The paper's analyses on trained runs: Fig. 1 (entropy vs vulnerability), Fig. 4 (weight
    /// loss landscape), Fig. 5 (input loss surface); recorded in the registry, drawn as SVG.
    Analyze(AnalyzeArgs),
    /// Rerun a preset in a fresh registry and compare it with a baseline bundle: on the same
    /// machine every checkpoint must match bit for bit; elsewhere every metric within the noise
    /// that seeds and sampling explain (nightly CI).
    Regress(RegressArgs),
    /// Write a preset as a Slurm job array (one task per run, each into its own registry shard)
    /// and the script that merges the shards.
    Sweep(SweepArgs),
    /// Measure one adversarial-training step (images/s), the largest batch that fits, or
    /// CPU-vs-device agreement, on random data of a dataset's shape.
    Bench(BenchArgs),
    /// Re-check every stored witness of evaluations with the model's forward pass alone: each
    /// adversarial point within eps of its clean image, in [0, 1], and misclassified.
    VerifyEvidence(VerifyEvidenceArgs),
    /// Adversarial images in RobustBench's external-evaluation layout: export an evaluation's
    /// worst case, or import (verify and merge) someone else's.
    Evidence(EvidenceCmd),
    /// A model's logits on the first test images (JSON, or a torch.save tensor): check that a
    /// converted or zoo checkpoint computes what it computes in PyTorch.
    Logits(LogitsArgs),
    /// An evaluation in another project's format: a RobustBench model card.
    Export(ExportCmd),
    /// Print the datasets an invocation reads from the default data cache (used by ./infoat to
    /// fetch them first).
    #[command(hide = true)]
    Needs {
        /// The arguments of the invocation, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The result registry and reuse.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// The result registry (records, checkpoint blobs, interrupted runs' state).
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// Do the work again even when the registry holds a complete result for it (both records
    /// are kept; on CPU a different checkpoint is reported as a determinism failure).
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
    /// Registry and reuse.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Require an interrupted run of this config to continue from (an error when there is
    /// none); without it an interrupted run is resumed anyway when one exists.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Print the run record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The model a command reads: exactly one of a run, a checkpoint or a TorchScript module.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["run", "checkpoint", "torchscript"])))]
pub struct ModelArgs {
    /// A harness run, by config hash (a unique prefix of at least 4 hex digits).
    #[arg(long, value_name = "HASH")]
    pub run: Option<String>,
    /// A checkpoint with PyTorch state_dict names: safetensors (as `infoat train` writes), or
    /// a `torch.save` state dict (`.pt`/`.pth`, as RobustBench and the reference repositories
    /// ship them; `{"state_dict": …}`/`{"model": …}` wrappers and `module.` prefixes accepted).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// A TorchScript module mapping [0, 1] NCHW float32 images to logits (needs --dataset).
    #[arg(long, value_name = "FILE")]
    pub torchscript: Option<PathBuf>,
    /// Architecture of --checkpoint [default: the one recorded in an `infoat train`
    /// checkpoint]. RobustBench's model zoo: resnet18, preact_resnet18, wrn28_10/wrn34_10/
    /// wrn34_15/wrn34_20/wrn70_16 (its `WideResNet`), dm_wrn28_10/dm_wrn34_20/dm_wrn70_16/
    /// dm_wrn106_16 (`DMWideResNet`, Swish), dm_preact_resnet18 (`DMPreActResNet`, Swish).
    #[arg(long, value_enum, requires = "checkpoint")]
    pub arch: Option<Arch>,
}

/// `infoat eval`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat eval --run 3f2a91 --attacks fgsm,pgd20,aa --n 1000\n  \
    infoat eval --checkpoint model.safetensors --arch smallcnn --dataset mnist --attacks pgd20\n  \
    infoat eval --checkpoint Rice2020Overfitting.pt --arch preact_resnet18 --dataset cifar10 --attacks aa\n  \
    infoat eval --torchscript model.pt --dataset mnist --eps 0.3 --attacks pgd20,apgd_ce,aa --n 500 --json\n\n\
    A TorchScript model maps float32 NCHW images in [0, 1] to logits:\n  \
    torch.jit.script(model.eval()).save('model.pt')\n\
    Check a converted or zoo checkpoint first: `infoat logits` prints what it computes.")]
pub struct EvalArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Registry (where --run is looked up and the evaluation is recorded) and reuse.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Dataset [default: the one recorded with the run or checkpoint].
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
    /// Attacks to run, comma-separated (e.g. `fgsm,pgd20,aa`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub attacks: Vec<AttackId>,
    /// L∞ radius of the attacks [default: the dataset's: 0.3 MNIST, 0.1 Fashion-MNIST, 8/255 otherwise].
    #[arg(long)]
    pub eps: Option<f64>,
    /// Seed of the attacks' random draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// RayS queries per example [default: 10000; the RayS leaderboard used 40000].
    #[arg(long)]
    pub rays_budget: Option<usize>,
    /// Skip the model-probing sanity checks (repeated forward passes, zero gradients, PGD at
    /// eps 0.5 on 100 examples) and the attacks' diagnostics (indicators of attack failure,
    /// planted self-tests, robustness curves; docs/diagnostics.md); the checks that compare
    /// attacks always run.
    #[arg(long)]
    pub no_sanity: bool,
    /// Run the model in the channels-last memory format (NHWC): the same attacks in float32,
    /// faster for convolutional models on CPUs with oneDNN (AutoAttack on a SmallCNN 1.5× here:
    /// docs/performance.md). The kernels sum in another order, so a verdict on the edge can
    /// differ from an NCHW evaluation's; it is recorded under its own key.
    #[arg(long)]
    pub channels_last: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat logits`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat logits --checkpoint model.pt --arch dm_wrn28_10 --dataset cifar10 --data-dir fixtures/data/cifar10\n  \
    infoat logits --run 3f2a91 --n 5 --out logits.pt\n\n\
    The file --out writes is a torch.save tensor: torch.load('logits.pt', weights_only=True).")]
pub struct LogitsArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Registry (where --run is looked up).
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// Dataset [default: the one recorded with the run or checkpoint].
    #[arg(long, value_enum)]
    pub dataset: Option<Dataset>,
    /// Folder with the dataset's original files [default: the cache folder ci/fetch-data fills].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// The first N test images.
    #[arg(long, visible_alias = "limit", default_value_t = 20)]
    pub n: usize,
    /// Write the `[N, classes]` float32 logits as a torch.save file here instead of printing
    /// them as JSON.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `infoat export`.
#[derive(Debug, Args)]
pub struct ExportCmd {
    /// The format.
    #[command(subcommand)]
    pub format: ExportFormat,
}

/// What `infoat export` writes.
#[derive(Debug, Subcommand)]
pub enum ExportFormat {
    /// A RobustBench model card (`model_info/<dataset>/Linf/<Name>.json`) of an evaluation that
    /// followed RobustBench's protocol: the full test set, AutoAttack standard, the
    /// leaderboard's eps (8/255 on CIFAR-10/100). Anything else is refused with the reason.
    Robustbench(ExportRobustbenchArgs),
}

/// `infoat export robustbench`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    infoat export robustbench 9c1e77 --name 'My defense' --authors 'A. Author' --link https://arxiv.org/abs/… \\\n    \
    --venue 'arXiv, Dec 2026' --out model_info/cifar10/Linf/Author2026My.json")]
pub struct ExportRobustbenchArgs {
    /// The evaluation, by key (a unique prefix of at least 4 hex digits; `infoat registry ls`).
    pub eval_key: String,
    /// The registry holding the evaluation.
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// The paper's title (`name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The authors, comma-separated (`authors`).
    #[arg(long)]
    pub authors: Option<String>,
    /// Where the paper is (`link`).
    #[arg(long)]
    pub link: Option<String>,
    /// Where and when it appeared, e.g. "NeurIPS 2021" (`venue`).
    #[arg(long)]
    pub venue: Option<String>,
    /// The accuracy under attack the paper reports, in percent (`reported`) [default: the
    /// AutoAttack accuracy measured].
    #[arg(long)]
    pub reported: Option<f64>,
    /// The model was trained with data beyond the training set (`additional_data`).
    #[arg(long)]
    pub additional_data: bool,
    /// Write the card here instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `infoat reproduce`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat reproduce quickstart\n  \
    infoat reproduce --list\n  \
    infoat reproduce table2 --dry-run\n  \
    infoat reproduce paper --only table2/cifar10_at --registry shard-0\n\n\
    A run that fails (missing data, divergence, …) is reported and the next one starts; an \
    interrupted run resumes from its last finished epoch when started again.\n\
    Exit status: 0 every run complete and at its targets; 1 some run below its targets or \
    flagged; 2 some run failed.")]
pub struct ReproduceArgs {
    /// A preset name (see --list) or a path to a preset .toml file.
    #[arg(required_unless_present = "list")]
    pub preset: Option<String>,
    /// List the presets with their runs and estimated cost, and exit.
    #[arg(long)]
    pub list: bool,
    /// Print every run's config hash, what the registry already holds and the estimated cost
    /// of the rest; train and evaluate nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these runs of the preset, by name, comma-separated (a sweep's array task runs one).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Registry and reuse.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Where the preset's report goes (`<out>/<preset>.{md,html,json}`).
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat analyze`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat analyze fig1 --run 80a5ce\n  \
    infoat analyze fig4 --run 80a5ce,3b128f --n 200\n  \
    infoat analyze fig5 --run 3b128f --examples 0,7,42\n\n\
    Every result is an analysis record in the registry (asked again, it is reused; --force \
    recomputes) and `infoat report` includes its figures.")]
pub struct AnalyzeArgs {
    /// Which figure.
    #[arg(value_enum)]
    pub figure: crate::pipeline::Figure,
    /// Runs: config hashes or unique prefixes, comma-separated (Fig. 4 draws them on one plot).
    #[arg(long, value_delimiter = ',', required = true)]
    pub run: Vec<String>,
    /// Test images analysed, the first N [fig1: 1000, fig4: 500].
    #[arg(long)]
    pub n: Option<usize>,
    /// L∞ radius [default: the dataset's, 0.3 MNIST, 0.1 Fashion-MNIST, 8/255 otherwise].
    #[arg(long)]
    pub eps: Option<f64>,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Grid points per axis [fig4, fig5: 21].
    #[arg(long)]
    pub points: Option<usize>,
    /// Fig. 5: the test images, comma-separated [default: 0,1,2,3].
    #[arg(long, value_delimiter = ',')]
    pub examples: Vec<usize>,
    /// Seed of the random directions and attack starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder with the dataset's original files [default: the run's].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the SVG and JSON go.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Registry and reuse (`--force` recomputes).
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print the records as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat regress`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat regress quickstart --baseline fixtures/regress/quickstart\n  \
    infoat regress quickstart --baseline new-baseline --write-baseline\n  \
    infoat regress quickstart --only natural,infoat --baseline fixtures/regress/quickstart\n\n\
    \"Same machine\" means same numerics: both on CPU with the same libtorch, thread count and \
    numerics fingerprint (CPU vendor, family, model and stepping, the ISA extensions and caches, \
    ATen's CPU capability, oneDNN's ISA, the oneDNN and MKL builds, dispatch overrides such as \
    ATEN_CPU_CAPABILITY or INFOAT_PORTABLE_NUMERICS). There every checkpoint must be \
    bit-identical and every metric within the preset's [regress] tolerance (exact unless set). \
    Elsewhere (another CPU generation, a baseline recorded without a fingerprint, CUDA) the \
    checkpoints are shown for information and each metric difference must stay within z·sd, \
    sd = sqrt(2·(p(1-p)/n + seed_sd²)) for an accuracy p on n examples, z the two-sided \
    Bonferroni critical value at the preset's family-wise level [regress] alpha (default 0.01) \
    over the metrics compared; the summary shows each band.\n\n\
    Exit status: 0 no difference; 1 some difference (listed in the summary); 2 an error.")]
pub struct RegressArgs {
    /// A preset name or a path to a preset .toml file.
    pub preset: String,
    /// The baseline: a bundle folder (`infoat registry export`, or `--write-baseline`).
    #[arg(long)]
    pub baseline: PathBuf,
    /// Only these runs of the preset, by name, comma-separated: rerun and compare those alone
    /// (the baseline's other runs are left out of the comparison).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Registry for the rerun [default: a fresh temporary one, removed afterwards]. Give an
    /// existing one to compare what it holds without training again.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Write this run as the new baseline (records only; `--with-blobs` adds the checkpoints)
    /// into the --baseline folder, which must be new or empty, instead of comparing.
    #[arg(long)]
    pub write_baseline: bool,
    /// With --write-baseline: include the checkpoint blobs, so the bundle can also be imported.
    #[arg(long, requires = "write_baseline")]
    pub with_blobs: bool,
    /// Also write the Markdown summary to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Print the comparison as JSON on stdout instead of Markdown.
    #[arg(long)]
    pub json: bool,
}

/// `infoat sweep`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat sweep table2 --emit slurm --out sweeps/table2\n  \
    sbatch sweeps/table2/sweep.sbatch && sh sweeps/table2/merge.sh")]
pub struct SweepArgs {
    /// A preset name or a path to a preset .toml file.
    pub preset: String,
    /// What to write.
    #[arg(long, value_enum, default_value = "slurm")]
    pub emit: Emit,
    /// Output folder (created): the job script, the merge script, shards/ and logs/.
    #[arg(long)]
    pub out: PathBuf,
    /// Slurm partition (`#SBATCH --partition`); omitted: the cluster's default.
    #[arg(long)]
    pub partition: Option<String>,
    /// The registry the shards are merged into [default: ./infoat-registry].
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// Time limit = estimate × this margin (at least 10 minutes).
    #[arg(long, default_value_t = 2.0)]
    pub margin: f64,
    /// Folder with the datasets on the cluster (passed as INFOAT_DATA to every task).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// A sweep's output kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// A Slurm job array (`sbatch`).
    Slurm,
}

/// `infoat report`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat report --table 2 --format md,tex,html --out paper\n  \
    infoat report --all\n  \
    infoat report --run 3f2a91,77c0de --format json --out -")]
pub struct ReportArgs {
    /// The result registry.
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// Paper tables to render, by number (`2`) or as printed (`II`), comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "all")]
    pub table: Vec<infoat_registry::PaperTable>,
    /// Every table the registry has results for, and every published table (the default).
    #[arg(long)]
    pub all: bool,
    /// Only these runs: config hashes or unique prefixes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub run: Vec<String>,
    /// Output formats, comma-separated: md, tex, csv, json, html.
    #[arg(long, value_delimiter = ',', default_value = "md,html,json")]
    pub format: Vec<infoat_reports::Format>,
    /// Output folder (`-` prints the first format on stdout instead).
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Leave out published rows that nothing in the registry reproduces.
    #[arg(long)]
    pub no_not_run: bool,
}

/// `infoat verify-evidence`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat verify-evidence 9c1e77            (one evaluation: a key prefix from `infoat registry ls`)\n  \
    infoat verify-evidence --all --json\n\n\
Exit status: 0 every stored witness confirmed, 1 a witness failed, 2 an error.")]
pub struct VerifyEvidenceArgs {
    /// Evaluation keys or unique prefixes (at least 4 hex digits).
    pub keys: Vec<String>,
    /// Every evaluation in the registry.
    #[arg(long, conflicts_with = "keys")]
    pub all: bool,
    /// The result registry.
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// Device of the forward passes.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Print JSON (one report per evaluation) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat compare`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat compare 3f2a91                       (a run: its config hash)\n  \
    infoat compare 9c1e77 --format md,html --out cmp   (an evaluation key, e.g. of a TorchScript model)")]
pub struct CompareArgs {
    /// A run's config hash or an evaluation key (a unique prefix of at least 4 hex digits).
    pub candidate: String,
    /// The result registry.
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY)]
    pub registry: PathBuf,
    /// Output formats, comma-separated: md, tex, csv, json, html.
    #[arg(long, value_delimiter = ',', default_value = "md")]
    pub format: Vec<infoat_reports::Format>,
    /// Output folder; `-` (the default) prints the first format on stdout.
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
}

/// The training methods `infoat bench` can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMethod {
    /// Clean training (no inner maximisation).
    Natural,
    /// PGD adversarial training.
    At,
    /// TRADES.
    Trades,
    /// MART.
    Mart,
    /// InfoAT.
    Infoat,
}

impl BenchMethod {
    /// The method's config with its defaults and `inner_steps` PGD steps.
    pub fn config(self, inner_steps: usize) -> crate::methods::MethodConfig {
        let kind = match self {
            BenchMethod::Natural => "natural",
            BenchMethod::At => "at",
            BenchMethod::Trades => "trades",
            BenchMethod::Mart => "mart",
            BenchMethod::Infoat => "infoat",
        };
        // Built as a config file would be, so every other field takes its serde default.
        let value = if self == BenchMethod::Natural {
            serde_json::json!({ "kind": kind })
        } else {
            serde_json::json!({ "kind": kind, "inner": { "steps": inner_steps } })
        };
        serde_json::from_value(value).expect("invariant: every bench method deserialises from its kind and steps")
    }
}

/// `infoat bench`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    infoat bench --arch resnet18 --dataset cifar10 --device cuda --precision bf16 --channels-last\n  \
    infoat bench --arch wrn34x10 --dataset cifar10 --device cuda --max-batch\n  \
    infoat bench --arch resnet18 --dataset cifar10 --device cuda --agreement --json\n  \
    infoat bench --summarize out/bench   (a ci/bench/run or ci/gpu-check folder as Markdown tables)")]
pub struct BenchArgs {
    /// Architecture.
    #[arg(long, value_enum, default_value = "smallcnn")]
    pub arch: Arch,
    /// Dataset whose image shape and class count the random data has.
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: Dataset,
    /// Training method whose step is timed.
    #[arg(long, value_enum, default_value = "at")]
    pub method: BenchMethod,
    /// PGD steps of the inner maximisation (step size eps/4, eps the dataset's).
    #[arg(long, default_value_t = 10)]
    pub inner_steps: usize,
    /// What one timed step is: a whole training step, or the inner PGD maximisation alone.
    #[arg(long, value_enum, default_value = "train-step")]
    pub work: crate::bench::Work,
    /// Images per step (the starting point of --max-batch).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Floating-point precision.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: crate::precision::Precision,
    /// Channels-last memory format.
    #[arg(long)]
    pub channels_last: bool,
    /// Let cuDNN autotune convolution algorithms (faster, not bit-reproducible).
    #[arg(long)]
    pub cudnn_benchmark: bool,
    /// CUDA only: capture the inner PGD attack once as a CUDA graph and replay it each step
    /// (with --work pgd, or --method at for training steps); the outer pass stays eager.
    #[arg(long, conflicts_with_all = ["agreement", "summarize"])]
    pub cuda_graph: bool,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Seed of the initialisation and the random data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the largest batch (a multiple of 8, at most --max-batch-limit) whose training
    /// step fits in memory instead of timing.
    #[arg(long, conflicts_with = "agreement")]
    pub max_batch: bool,
    /// Upper bound of the --max-batch search.
    #[arg(long, default_value_t = 8192)]
    pub max_batch_limit: usize,
    /// Compare the device with the CPU (float32) on logits and one PGD step instead of timing.
    #[arg(long)]
    pub agreement: bool,
    /// Examples compared by --agreement.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Summarise a result folder of `ci/bench/run` or `ci/gpu-check` (its *.jsonl and
    /// machine.txt) as Markdown tables on stdout instead of timing.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["agreement", "max_batch"])]
    pub summarize: Option<std::path::PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `infoat config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The run config (TOML).
    pub config: PathBuf,
}

/// `infoat evidence`.
#[derive(Debug, Args)]
#[command(after_help = "The layout (RobustBench's external evaluations): adversarial.pt, one torch.save tensor \
    [N, C, H, W] of the first N test images' adversarial images (the clean image where an example stayed \
    robust), evaluation.json (model, dataset, threat model, eps, accuracies, attack, source) and, for the \
    registry's models, model.safetensors.\n\nExamples:\n  \
    infoat evidence export 9c1e77 --out evidence/\n  \
    infoat evidence import evidence/ --registry fresh-registry\n  \
    infoat evidence import their-attack/ --run 3f2a91   (someone else's images for one of our models)")]
pub struct EvidenceCmd {
    /// The result registry.
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY, global = true)]
    pub registry: PathBuf,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub action: EvidenceAction,
}

/// Export or import adversarial images.
#[derive(Debug, Subcommand)]
pub enum EvidenceAction {
    /// Write an evaluation's worst case over its attacks (each broken example's stored witness)
    /// in RobustBench's layout.
    Export {
        /// The evaluation key, or a unique prefix (at least 4 hex digits).
        key: String,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify every image of a folder in that layout with the model's forward pass (inside the
    /// eps-ball, in [0, 1], misclassified) and record it as the attack `external`, merged as a
    /// worst case into the evaluation of the same model, data and eps when there is one.
    Import {
        /// The folder.
        dir: PathBuf,
        /// The model, when not the folder's model.safetensors: a harness run by config hash.
        #[arg(long, value_name = "HASH", conflicts_with_all = ["checkpoint", "torchscript"])]
        run: Option<String>,
        /// …or a checkpoint (safetensors, or a torch.save state dict).
        #[arg(long, value_name = "FILE", conflicts_with = "torchscript")]
        checkpoint: Option<PathBuf>,
        /// …or a TorchScript module.
        #[arg(long, value_name = "FILE")]
        torchscript: Option<PathBuf>,
        /// Architecture of --checkpoint [default: the one it records].
        #[arg(long, value_enum, requires = "checkpoint")]
        arch: Option<Arch>,
        /// Folder with the dataset's original files [default: the cache folder].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Device of the forward passes.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceChoice,
    },
}

/// `infoat registry`.
#[derive(Debug, Args)]
pub struct RegistryCmd {
    /// The result registry.
    #[arg(long, env = "INFOAT_REGISTRY", default_value = crate::pipeline::DEFAULT_REGISTRY, global = true)]
    pub registry: PathBuf,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub action: RegistryAction,
}

/// The registry's maintenance actions.
#[derive(Debug, Subcommand)]
pub enum RegistryAction {
    /// One line per run attempt and per evaluation.
    Ls,
    /// Every record of a config (runs) or of an evaluation key, by hash prefix.
    Show {
        /// A config hash or evaluation key, or a prefix of one (at least 4 hex digits).
        hash: String,
    },
    /// Re-hash every checkpoint blob and re-read every record; report problems (nothing is
    /// deleted). Exit 1 when there is any.
    Verify,
    /// Write a portable bundle (records.jsonl + blobs) to a new folder.
    Export {
        /// The bundle folder (must not exist or be empty).
        dir: PathBuf,
    },
    /// Take in a bundle: blobs re-hashed, records checked, conflicts kept side by side.
    Import {
        /// The bundle folder.
        dir: PathBuf,
    },
    /// Take in every record and blob of another registry (e.g. a sweep shard).
    Merge {
        /// The other registry's folder.
        other: PathBuf,
    },
    /// Delete checkpoint blobs that no record references.
    Gc,
}
