//! Presets: named lists of runs, each a full run config plus the verdict it must meet. The
//! presets under `fixtures/presets/` are embedded in the binary, so `infoat reproduce NAME`
//! works from any directory; a path to a preset file works too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attacks::AttackId;

use crate::config::RunConfig;
use crate::{Error, Result};

mod embedded {
    // `FIXTURE_TOMLS`: every file of fixtures/presets and fixtures/experiments (harness/build.rs).
    include!(concat!(env!("OUT_DIR"), "/fixture_tomls.rs"));
}

/// The order `--list` shows the embedded presets in; others follow by name.
const LIST_ORDER: &[&str] = &[
    "quickstart",
    "nightly",
    "mnist",
    "fashion",
    "claims",
    "table1",
    "table2",
    "table3",
    "table4",
    "table5",
    "table6",
    "fig2",
    "fig3",
    "paper",
];

/// The presets compiled into the binary (every file of `fixtures/presets/`): (name, TOML text),
/// in `--list` order.
pub fn embedded_presets() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&str, &str)> = embedded::FIXTURE_TOMLS
        .iter()
        .filter_map(|(path, text)| path.strip_prefix("presets/")?.strip_suffix(".toml").map(|n| (n, *text)))
        .collect();
    let rank = |n: &str| LIST_ORDER.iter().position(|o| *o == n).unwrap_or(LIST_ORDER.len());
    v.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then(a.0.cmp(b.0)));
    v
}

/// An embedded fixture file by its path below `fixtures/` (e.g. `experiments/table2/cifar10_at.toml`).
fn embedded_file(path: &str) -> Option<&'static str> {
    embedded::FIXTURE_TOMLS.iter().find(|(p, _)| *p == path).map(|(_, t)| *t)
}

/// `rel` joined to the folder `base` (both `/`-separated), `..` and `.` resolved.
fn join_normalized(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Where a preset came from: relative `config_file`s are resolved against it.
#[derive(Debug, Clone)]
enum Origin {
    /// Compiled in; the folder below `fixtures/` (`presets`).
    Embedded,
    /// A file on disk.
    File(std::path::PathBuf),
}

/// A preset as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    name: String,
    description: String,
    /// Embedded presets whose runs come first (named `<preset>/<run>`).
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    runs: Vec<PresetRunFile>,
    #[serde(default)]
    regress: RegressPlan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetRunFile {
    name: String,
    #[serde(default)]
    eval: EvalPlan,
    #[serde(default)]
    expect: BTreeMap<String, f64>,
    /// The run config inline…
    #[serde(default)]
    config: Option<toml::Value>,
    /// …or a run config file, relative to the preset file (embedded presets: `fixtures/presets/`).
    #[serde(default)]
    config_file: Option<String>,
}

/// How `infoat regress` judges a rerun of the preset against a baseline (issues 8 and 18).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegressPlan {
    /// Largest accepted absolute difference in accuracy (a fraction: 0.01 = one point) per
    /// metric (`clean` or an attack id, or `adbd`); `default` for the others. Omitted: 0, exact.
    #[serde(default)]
    pub tolerance: BTreeMap<String, f64>,
    /// Where the rerun's numerics differ from the baseline's (another CPU generation, CUDA): the
    /// spread of each metric between training seeds (σ_seed, a fraction; `adbd` in L∞ units),
    /// per metric as for `tolerance`; `default` for the others. Omitted: 0, sampling noise only.
    #[serde(default)]
    pub seed_sd: BTreeMap<String, f64>,
    /// The family-wise level of that noise test (Bonferroni over the metrics it judges).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

impl Default for RegressPlan {
    fn default() -> Self {
        RegressPlan { tolerance: BTreeMap::new(), seed_sd: BTreeMap::new(), alpha: default_alpha() }
    }
}

/// A nightly rerun that differs only in numerics fails the noise test at most this often.
fn default_alpha() -> f64 {
    0.01
}

impl RegressPlan {
    /// The tolerance for `metric`.
    pub fn tolerance_of(&self, metric: &str) -> f64 {
        self.tolerance.get(metric).or_else(|| self.tolerance.get("default")).copied().unwrap_or(0.0)
    }

    /// The seed-level spread of `metric`.
    pub fn seed_sd_of(&self, metric: &str) -> f64 {
        self.seed_sd.get(metric).or_else(|| self.seed_sd.get("default")).copied().unwrap_or(0.0)
    }
}

/// What to evaluate after training, beyond clean accuracy on the config's test set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalPlan {
    /// Attacks to run (e.g. `["fgsm", "pgd20"]`).
    #[serde(default)]
    pub attacks: Vec<AttackId>,
    /// Their L∞ radius; default: the dataset's (SPEC §1).
    #[serde(default)]
    pub eps: Option<f64>,
    /// Attack only the first N test images (clean accuracy still uses the config's test set).
    #[serde(default)]
    pub limit: Option<usize>,
    /// RayS queries per example (default 10,000).
    #[serde(default)]
    pub rays_budget: Option<usize>,
    /// A second evaluation with black-box attacks (SPSA, RayS), usually on fewer images
    /// because they cost thousands of forward passes per example; its own eval record.
    #[serde(default)]
    pub black_box: Option<BlackBoxPlan>,
}

/// The black-box part of a preset's evaluation (paper Tables III and IV).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackBoxPlan {
    /// Attacks (`spsa128` … `spsa1024`, `rays`).
    pub attacks: Vec<AttackId>,
    /// Attack only the first N test images.
    #[serde(default)]
    pub limit: Option<usize>,
    /// RayS queries per example (default 10,000).
    #[serde(default)]
    pub rays_budget: Option<usize>,
}

/// A loaded preset with resolved configs.
#[derive(Debug, Clone)]
pub struct Preset {
    /// Its name.
    pub name: String,
    /// One line on what it does.
    pub description: String,
    /// Its runs, in order.
    pub runs: Vec<PresetRun>,
    /// How `infoat regress` compares a rerun with a baseline.
    pub regress: RegressPlan,
    /// True when compiled into the binary (so a job on another machine can name it).
    pub embedded: bool,
}

/// One run of a preset.
#[derive(Debug, Clone)]
pub struct PresetRun {
    /// The run's name within the preset.
    pub name: String,
    /// The resolved config.
    pub config: RunConfig,
    /// What to evaluate.
    pub eval: EvalPlan,
    /// The least accuracy (fraction) per metric — `clean` or an attack id — that counts as
    /// reproduced.
    pub expect: BTreeMap<String, f64>,
}

impl Preset {
    /// Parses a preset; `origin` names it in errors. Relative `config_file`s are resolved
    /// against the current directory.
    pub fn from_toml(text: &str, origin: &str) -> Result<Preset> {
        Preset::parse(text, origin, &Origin::File(std::path::PathBuf::from("preset.toml")), 0)
    }

    fn parse(text: &str, origin: &str, from: &Origin, depth: usize) -> Result<Preset> {
        let config_err = |origin: &str, message: String| Error::Config { origin: origin.to_string(), message };
        let file: PresetFile = toml::from_str(text).map_err(|e| config_err(origin, e.to_string()))?;
        let mut runs = Vec::new();
        for name in &file.include {
            let Some((_, text)) = embedded_presets().into_iter().find(|(n, _)| n == name) else {
                return Err(config_err(origin, format!("include names '{name}', which is no embedded preset")));
            };
            if depth > 4 {
                return Err(config_err(origin, format!("include '{name}': presets include each other in a cycle")));
            }
            let inner = Preset::parse(text, &format!("preset {name}"), &Origin::Embedded, depth + 1)?;
            runs.extend(inner.runs.into_iter().map(|r| PresetRun { name: format!("{name}/{}", r.name), ..r }));
        }
        for r in file.runs {
            let run_origin = format!("{origin}, run '{}'", r.name);
            let config = match (&r.config, &r.config_file) {
                (Some(value), None) => {
                    let text = toml::to_string(value).map_err(|e| config_err(&run_origin, e.to_string()))?;
                    RunConfig::from_toml(&text, &run_origin)?
                }
                (None, Some(rel)) => {
                    let (text, config_origin) = read_config_file(from, rel, &run_origin)?;
                    RunConfig::from_toml(&text, &config_origin)?
                }
                _ => {
                    return Err(config_err(
                        &run_origin,
                        "give exactly one of `config` (inline table) and `config_file` (a run config path)".into(),
                    ))
                }
            };
            for metric in r.expect.keys() {
                let known = metric == "clean" || r.eval.attacks.iter().any(|a| a.name() == metric);
                if !known {
                    return Err(config_err(
                        &run_origin,
                        format!(
                            "expect.{metric} names no metric of this run: expected 'clean' or one of its eval.attacks"
                        ),
                    ));
                }
            }
            if runs.iter().any(|p: &PresetRun| p.name == r.name) {
                return Err(config_err(&run_origin, "two runs have this name; run names must be unique".into()));
            }
            runs.push(PresetRun { config, name: r.name, eval: r.eval, expect: r.expect });
        }
        if runs.is_empty() {
            return Err(config_err(origin, "the preset has no runs: add [[runs]] or include = [...]".into()));
        }
        for (table, values) in [("tolerance", &file.regress.tolerance), ("seed_sd", &file.regress.seed_sd)] {
            for (metric, v) in values {
                if !(v.is_finite() && *v >= 0.0) {
                    return Err(config_err(origin, format!("regress.{table}.{metric} = {v}: expected a number ≥ 0")));
                }
            }
        }
        let alpha = file.regress.alpha;
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(config_err(origin, format!("regress.alpha = {alpha}: expected a level in (0, 1), e.g. 0.01")));
        }
        Ok(Preset {
            name: file.name,
            description: file.description,
            runs,
            regress: file.regress,
            embedded: matches!(from, Origin::Embedded),
        })
    }

    /// An embedded preset by name, or a preset file by path.
    pub fn find(name_or_path: &str) -> Result<Preset> {
        if let Some((name, text)) = embedded_presets().into_iter().find(|(n, _)| *n == name_or_path) {
            return Preset::parse(text, &format!("preset {name}"), &Origin::Embedded, 0);
        }
        let path = std::path::Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Preset::parse(&text, name_or_path, &Origin::File(path.to_path_buf()), 0);
        }
        Err(Error::Invalid(format!(
            "unknown preset '{name_or_path}': expected one of [{}] or a path to a preset .toml file (see `infoat reproduce --list`)",
            embedded_presets().iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )))
    }

    /// Keeps only the runs named in `only` (all of them when it is empty), in the preset's
    /// order: `reproduce --only` and `regress --only`. A name the preset lacks is an error that
    /// lists the runs it has.
    pub fn select(&mut self, only: &[String]) -> Result<()> {
        if only.is_empty() {
            return Ok(());
        }
        let unknown: Vec<&String> = only.iter().filter(|o| !self.runs.iter().any(|r| &&r.name == o)).collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = self.runs.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::Invalid(format!(
                "--only {unknown:?}: preset '{}' has no such run; its runs: {}",
                self.name,
                names.join(", ")
            )));
        }
        self.runs.retain(|r| only.contains(&r.name));
        Ok(())
    }

    /// Every embedded preset.
    pub fn all() -> Result<Vec<Preset>> {
        embedded_presets()
            .into_iter()
            .map(|(name, text)| Preset::parse(text, &format!("preset {name}"), &Origin::Embedded, 0))
            .collect()
    }
}

/// The text of a preset run's `config_file` and its name for errors.
fn read_config_file(from: &Origin, rel: &str, run_origin: &str) -> Result<(String, String)> {
    match from {
        Origin::Embedded => {
            let path = join_normalized("presets", rel);
            let text = embedded_file(&path).ok_or_else(|| Error::Config {
                origin: run_origin.to_string(),
                message: format!("config_file '{rel}' is not among the embedded fixtures (fixtures/{path})"),
            })?;
            Ok((text.to_string(), format!("fixtures/{path}")))
        }
        Origin::File(preset) => {
            let path = preset.parent().unwrap_or(std::path::Path::new(".")).join(rel);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
                origin: run_origin.to_string(),
                message: format!("config_file {}: {e}", path.display()),
            })?;
            Ok((text, path.display().to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_presets_parse() {
        let all = Preset::all().unwrap();
        let q = all.iter().find(|p| p.name == "quickstart").unwrap();
        assert!(q.runs.len() >= 6, "quickstart trains every Table II method but GanDef");
        assert!(q.runs.iter().all(|r| r.config.data.dataset == crate::data::Dataset::Mnist));
        assert!(q.runs.iter().all(|r| r.eval.attacks.contains(&AttackId::Pgd20)));
        let natural = q.runs.iter().find(|r| r.config.method.name() == "natural").unwrap();
        assert_eq!(natural.expect.get("clean"), Some(&0.98));
    }

    #[test]
    fn the_noise_model_of_regress_is_read_and_checked() {
        let q = Preset::find("quickstart").unwrap();
        assert!(q.regress.seed_sd_of("clean") > 0.0, "the quickstart declares its measured seed spread");
        assert_eq!(q.regress.seed_sd_of("pgd20"), q.regress.seed_sd_of("default"));
        assert_eq!(q.regress.alpha, 0.01);
        let run = "[[runs]]\nname = \"a\"\n[runs.config]\nseed = 0\ndevice = \"cpu\"\ndata = { dataset = \"mnist\" }\n\
                   model = { arch = \"smallcnn\" }\nmethod = { kind = \"natural\" }\ntrain = { epochs = 1, batch_size = 8 }\n\
                   optimizer = { kind = \"sgd\", lr = 0.05, momentum = 0.9, weight_decay = 0.0 }\nschedule = { kind = \"cosine\" }\n";
        let parse = |regress: &str| {
            Preset::from_toml(&format!("name = \"x\"\ndescription = \"d\"\n{regress}\n{run}"), "x.toml")
        };
        assert_eq!(parse("").unwrap().regress.alpha, 0.01);
        let e = parse("[regress]\nalpha = 1.5").unwrap_err().to_string();
        assert!(e.contains("regress.alpha = 1.5") && e.contains("(0, 1)"), "{e}");
        let e = parse("[regress]\nseed_sd = { clean = -0.1 }").unwrap_err().to_string();
        assert!(e.contains("regress.seed_sd.clean = -0.1"), "{e}");
        let e = parse("[regress]\nseed_sds = { clean = 0.1 }").unwrap_err().to_string();
        assert!(e.contains("seed_sds"), "unknown keys are named: {e}");
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = Preset::find("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("quickstart"), "{e}");
    }
}
