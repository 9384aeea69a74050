//! Presets: named lists of runs, each a full run config plus the verdict it must meet. The
//! presets under `fixtures/presets/` are embedded in the binary, so `infoat reproduce NAME`
//! works from any directory; a path to a preset file works too.

use serde::Deserialize;

use crate::config::RunConfig;
use crate::{Error, Result};

/// The presets compiled into the binary: (name, TOML text).
pub const EMBEDDED: &[(&str, &str)] = &[("quickstart", include_str!("../../fixtures/presets/quickstart.toml"))];

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
    min_clean_accuracy: Option<f64>,
    config: toml::Value,
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
    /// The least clean test accuracy that counts as reproduced.
    pub min_clean_accuracy: Option<f64>,
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
                Ok(PresetRun {
                    config: RunConfig::from_toml(&text, &run_origin)?,
                    name: r.name,
                    min_clean_accuracy: r.min_clean_accuracy,
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
        assert_eq!(q.runs.len(), 1);
        assert_eq!(q.runs[0].config.data.dataset, crate::data::Dataset::Mnist);
        assert_eq!(q.runs[0].min_clean_accuracy, Some(0.98));
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = Preset::find("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("quickstart"), "{e}");
    }
}
