//! Presets: named lists of runs, each a full run config plus the verdict it must meet. The
//! presets under `fixtures/presets/` are embedded in the binary, so `infoat reproduce NAME`
//! works from any directory; a path to a preset file works too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attacks::AttackId;

use crate::config::RunConfig;
use crate::{Error, Result};

/// The presets compiled into the binary: (name, TOML text).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("quickstart", include_str!("../../fixtures/presets/quickstart.toml")),
    ("mnist", include_str!("../../fixtures/presets/mnist.toml")),
    ("fashion", include_str!("../../fixtures/presets/fashion.toml")),
];

/// A preset as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    name: String,
    description: String,
    runs: Vec<PresetRunFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetRunFile {
    name: String,
    #[serde(default)]
    eval: EvalPlan,
    #[serde(default)]
    expect: BTreeMap<String, f64>,
    config: toml::Value,
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
    /// Parses a preset; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Preset> {
        let file: PresetFile =
            toml::from_str(text).map_err(|e| Error::Config { origin: origin.to_string(), message: e.to_string() })?;
        let runs = file
            .runs
            .into_iter()
            .map(|r| {
                let run_origin = format!("{origin}, run '{}'", r.name);
                let text = toml::to_string(&r.config)
                    .map_err(|e| Error::Config { origin: run_origin.clone(), message: e.to_string() })?;
                for metric in r.expect.keys() {
                    let known = metric == "clean" || r.eval.attacks.iter().any(|a| a.name() == metric);
                    if !known {
                        return Err(Error::Config {
                            origin: run_origin.clone(),
                            message: format!(
                                "expect.{metric} names no metric of this run: expected 'clean' or one of its eval.attacks"
                            ),
                        });
                    }
                }
                Ok(PresetRun {
                    config: RunConfig::from_toml(&text, &run_origin)?,
                    name: r.name,
                    eval: r.eval,
                    expect: r.expect,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Preset { name: file.name, description: file.description, runs })
    }

    /// An embedded preset by name, or a preset file by path.
    pub fn find(name_or_path: &str) -> Result<Preset> {
        if let Some((name, text)) = EMBEDDED.iter().find(|(n, _)| *n == name_or_path) {
            return Preset::from_toml(text, &format!("preset {name}"));
        }
        let path = std::path::Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Preset::from_toml(&text, name_or_path);
        }
        Err(Error::Invalid(format!(
            "unknown preset '{name_or_path}': expected one of [{}] or a path to a preset .toml file (see `infoat reproduce --list`)",
            EMBEDDED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )))
    }

    /// Every embedded preset.
    pub fn all() -> Result<Vec<Preset>> {
        EMBEDDED.iter().map(|(name, text)| Preset::from_toml(text, &format!("preset {name}"))).collect()
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
    fn unknown_preset_lists_the_known_ones() {
        let e = Preset::find("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("quickstart"), "{e}");
    }
}
