//! The attack suite of an evaluation (SPEC §3): which attacks, at which L∞ radius and budgets,
//! on how many of the evaluated images, with which seed and batch size, and whether the
//! model-probing sanity checks run. It is resolved **once** — from `infoat eval`'s arguments or
//! from a preset's plan ([`SuiteRequest::white_box`], [`SuiteRequest::black_box`]) — and is then
//! the single source of the evaluation's key ([`EvalSuite::key`]), of what `reproduce --dry-run`
//! looks up ([`EvalSuite::hash`], [`EvalSuite::subset`]), of the cost estimate
//! ([`EvalSuite::forward_passes`]) and of the attack objects ([`EvalSuite::attack`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use infoat_registry::{ContentHash, EvalKey};

use super::DataIdentity;
use crate::attacks::{check_eps, Attack, AttackBuild, AttackId, RAYS_DEFAULT_BUDGET};
use crate::data::Dataset;
use crate::preset::PresetRun;
use crate::{Error, Result};

/// An evaluation's suite as asked for, before the dataset is known (the default radius is a
/// fact of the dataset, [`Dataset::default_eps`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteRequest {
    /// Attacks to run after clean accuracy.
    pub attacks: Vec<AttackId>,
    /// Their L∞ radius; default: the dataset's (SPEC §1).
    pub eps: Option<f64>,
    /// RayS queries per example; default [`RAYS_DEFAULT_BUDGET`].
    pub rays_budget: Option<usize>,
    /// Attack only the first N of the evaluated images.
    pub attack_limit: Option<usize>,
    /// Evaluation batch size (part of the key: it decides how random starts are drawn).
    pub batch_size: usize,
    /// Run the model-probing sanity checks ([`crate::sanity::probe_model`]).
    pub sanity: bool,
    /// Seed of the attacks' random starts.
    pub seed: u64,
    /// Run the model in the channels-last memory format ([`crate::models::Classifier::set_channels_last`]).
    pub channels_last: bool,
}

impl SuiteRequest {
    /// The white-box suite of a preset run (`eval.attacks`), with the sanity probes.
    pub fn white_box(run: &PresetRun) -> SuiteRequest {
        SuiteRequest {
            attacks: run.eval.attacks.clone(),
            eps: run.eval.eps,
            rays_budget: run.eval.rays_budget,
            attack_limit: run.eval.limit,
            batch_size: run.config.train.eval_batch_size,
            sanity: true,
            seed: run.config.seed,
            channels_last: false,
        }
    }

    /// The black-box suite of a preset run (`eval.black_box`), when it has one; the model
    /// probes ran with the white-box suite.
    pub fn black_box(run: &PresetRun) -> Option<SuiteRequest> {
        let bb = run.eval.black_box.as_ref()?;
        Some(SuiteRequest {
            attacks: bb.attacks.clone(),
            attack_limit: bb.limit,
            rays_budget: bb.rays_budget,
            sanity: false,
            ..SuiteRequest::white_box(run)
        })
    }

    /// The suite on `dataset`: the default radius filled in and checked ([`check_eps`]).
    pub fn resolve(&self, dataset: Dataset) -> Result<EvalSuite> {
        let eps = self.eps.unwrap_or(dataset.default_eps());
        check_eps(eps).map_err(|e| Error::Invalid(format!("--eps {eps}: {e}")))?;
        if self.attack_limit == Some(0) {
            return Err(Error::Invalid(
                "the attacked subset = 0: an evaluation needs at least one example; give a positive count or omit it \
                 for the whole test set"
                    .into(),
            ));
        }
        Ok(EvalSuite {
            attacks: self.attacks.clone(),
            eps,
            rays_budget: self.rays_budget.unwrap_or(RAYS_DEFAULT_BUDGET),
            attack_limit: self.attack_limit,
            batch_size: self.batch_size,
            sanity: self.sanity,
            seed: self.seed,
            channels_last: self.channels_last,
        })
    }
}

/// A resolved attack suite: everything of an evaluation but the model and the data.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSuite {
    /// Attacks, in the order they run.
    pub attacks: Vec<AttackId>,
    /// L∞ radius.
    pub eps: f64,
    /// RayS queries per example.
    pub rays_budget: usize,
    /// Attack only the first N of the evaluated images.
    pub attack_limit: Option<usize>,
    /// Evaluation batch size.
    pub batch_size: usize,
    /// Whether the model-probing sanity checks run.
    pub sanity: bool,
    /// Seed of the attacks' random starts.
    pub seed: u64,
    /// The model runs in the channels-last memory format: the same attacks in float32, another
    /// summation order in the kernels (so possibly another rounding), hence its own key.
    pub channels_last: bool,
}

/// How many test images an evaluation classified clean and how many of them it attacked (the
/// first `attacked`); written into the key as `evaluated/attacked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subset {
    /// Images evaluated clean.
    pub evaluated: usize,
    /// The first images of those, attacked.
    pub attacked: usize,
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.evaluated, self.attacked)
    }
}

impl FromStr for Subset {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Subset, String> {
        let bad = || format!("subset '{s}': expected 'evaluated/attacked', two counts");
        let (e, a) = s.split_once('/').ok_or_else(bad)?;
        Ok(Subset { evaluated: e.parse().map_err(|_| bad())?, attacked: a.parse().map_err(|_| bad())? })
    }
}

impl EvalSuite {
    /// The suite as hashed into an evaluation's key. Fields are added only where they are set,
    /// so that suites from before a field existed keep their hash.
    pub fn description(&self) -> serde_json::Value {
        let mut suite = serde_json::json!({
            "attacks": self.attacks.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "eps": self.eps,
            "batch_size": self.batch_size,
            "sanity": self.sanity,
            "norm": "linf",
        });
        if self.attacks.contains(&AttackId::Rays) {
            // Only suites with RayS carry its budget, so existing suite hashes stay put.
            suite["rays_budget"] = serde_json::json!(self.rays_budget);
        }
        // The implementation versions of the attacks past their first, so a suite of attacks
        // that never changed keeps its hash, and one with a changed attack gets a new one.
        let versions: BTreeMap<&str, u32> =
            self.attacks.iter().filter(|a| a.version() > 1).map(|a| (a.name(), a.version())).collect();
        if !versions.is_empty() {
            suite["versions"] = serde_json::json!(versions);
        }
        if self.channels_last {
            // Only channels-last suites carry the memory format, so NCHW suites keep their hash.
            suite["memory_format"] = serde_json::json!("channels_last");
        }
        suite
    }

    /// The hash of [`EvalSuite::description`]: the key's `suite_hash`.
    pub fn hash(&self) -> Result<ContentHash> {
        Ok(infoat_registry::config_hash("eval-suite", &self.description())?)
    }

    /// The subset of `evaluated` clean-classified images this suite attacks.
    pub fn subset(&self, evaluated: usize) -> Subset {
        Subset { evaluated, attacked: self.attack_limit.map_or(evaluated, |n| n.min(evaluated)) }
    }

    /// The registry key of this suite run on `model_hash` over the test data `data`.
    pub fn key(&self, model_hash: ContentHash, data: &DataIdentity) -> Result<EvalKey> {
        Ok(EvalKey {
            model_hash,
            suite_hash: self.hash()?,
            data: format!("{}/{}/{}", data.dataset.name(), data.split.name(), data.fingerprint),
            subset: self.subset(data.images).to_string(),
            seed: self.seed,
        })
    }

    /// True when `key` is this suite's evaluation of `model_hash` with `attacked` images
    /// attacked (the data's fingerprint is not known without loading it; see
    /// `reproduce --dry-run`).
    pub fn matches(&self, key: &EvalKey, model_hash: ContentHash, attacked: usize) -> Result<bool> {
        Ok(key.model_hash == model_hash
            && key.seed == self.seed
            && key.suite_hash == self.hash()?
            && key.subset.parse::<Subset>().is_ok_and(|s| s.attacked == attacked))
    }

    /// The attack object for `id` at this suite's radius and budgets.
    pub fn attack(&self, id: AttackId) -> Box<dyn Attack> {
        id.build_with(self.eps, self.rays_budget)
    }

    /// Model passes of the attacks on `attacked` images ([`crate::cost::attack_passes`]) and of
    /// their diagnostics, which suites with the sanity checks run
    /// ([`crate::cost::diagnostics_passes`]).
    pub fn forward_passes(&self, attacked: f64) -> f64 {
        let attacks = self.attacks.iter().map(|a| crate::cost::attack_passes(*a, self.rays_budget)).sum::<f64>();
        let diagnostics =
            if self.sanity && !self.attacks.is_empty() { crate::cost::diagnostics_passes(attacked) } else { 0.0 };
        attacks * attacked + diagnostics
    }
}

/// The version of `attack` an evaluation suite (as recorded) was computed with: 1 where the
/// suite names none (suites from before versions were recorded).
pub fn recorded_version(suite: &serde_json::Value, attack: AttackId) -> u32 {
    suite.pointer(&format!("/versions/{}", attack.name())).and_then(|v| v.as_u64()).map_or(1, |v| v as u32)
}

/// The attacks of a recorded suite whose implementation has changed since: `(attack, recorded
/// version)` for each with an older version than the current one (attack ids this binary does
/// not know are skipped).
pub fn outdated_attacks(suite: &serde_json::Value) -> Vec<(AttackId, u32)> {
    let names = suite.get("attacks").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|n| serde_json::from_value::<AttackId>(n).ok())
        .filter_map(|a| {
            let v = recorded_version(suite, a);
            (v < a.version()).then_some((a, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    fn quickstart_at() -> PresetRun {
        let preset = crate::preset::Preset::find("quickstart").unwrap();
        preset.runs.into_iter().find(|r| r.name.starts_with("at")).expect("the quickstart has an AT run")
    }

    #[test]
    fn subset_round_trips_and_rejects_what_is_not_two_counts() {
        let s = Subset { evaluated: 10_000, attacked: 50 };
        assert_eq!(s.to_string(), "10000/50");
        assert_eq!("10000/50".parse::<Subset>(), Ok(s));
        for bad in ["50", "a/50", "10000/", "10000/50/1", ""] {
            assert!(bad.parse::<Subset>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_come_from_the_dataset_and_bad_radii_are_refused() {
        let run = quickstart_at();
        let mut req = SuiteRequest::white_box(&run);
        req.eps = None;
        assert_eq!(req.resolve(Dataset::Mnist).unwrap().eps, 0.3);
        assert_eq!(req.resolve(Dataset::Cifar10).unwrap().eps, 8.0 / 255.0);
        for eps in [0.0, -0.1, 1.5, f64::NAN] {
            req.eps = Some(eps);
            let e = req.resolve(Dataset::Mnist).unwrap_err().to_string();
            assert!(e.contains("--eps") && e.contains("(0, 1]"), "{e}");
        }
    }

    #[test]
    fn the_suite_hash_is_the_one_recorded_before_the_suite_had_a_type() {
        // The description of a PGD-20 + AA suite at MNIST's eps as evaluations were keyed before
        // (a change here would orphan every stored evaluation).
        let suite = EvalSuite {
            attacks: vec![AttackId::Pgd20, AttackId::Aa],
            eps: 0.3,
            rays_budget: RAYS_DEFAULT_BUDGET,
            attack_limit: Some(50),
            batch_size: 500,
            sanity: true,
            seed: 0,
            channels_last: false,
        };
        let want = serde_json::json!({
            "attacks": ["pgd20", "aa"], "eps": 0.3, "batch_size": 500, "sanity": true, "norm": "linf",
            "versions": { "aa": 2 },
        });
        assert_eq!(suite.description(), want);
        assert_eq!(suite.hash().unwrap(), infoat_registry::config_hash("eval-suite", &want).unwrap());
        let rays = EvalSuite { attacks: vec![AttackId::Rays], rays_budget: 1000, ..suite.clone() };
        assert_eq!(rays.description()["rays_budget"], 1000);
        assert!(suite.description().get("rays_budget").is_none());
        // The memory format enters the key only when it is channels-last.
        let cl = EvalSuite { channels_last: true, ..suite.clone() };
        assert_eq!(cl.description()["memory_format"], "channels_last");
        assert_ne!(cl.hash().unwrap(), suite.hash().unwrap());
        assert!(suite.description().get("memory_format").is_none());
    }

    #[test]
    fn the_key_and_its_lookup_agree() {
        let run = quickstart_at();
        let suite = SuiteRequest::white_box(&run).resolve(Dataset::Mnist).unwrap();
        let data = DataIdentity {
            dataset: Dataset::Mnist,
            dir: "data".into(),
            split: Split::Test,
            images: 10_000,
            fingerprint: infoat_registry::config_hash("t", &serde_json::json!(1)).unwrap(),
        };
        let model = infoat_registry::config_hash("m", &serde_json::json!(1)).unwrap();
        let key = suite.key(model, &data).unwrap();
        assert_eq!(key.data, format!("mnist/test/{}", data.fingerprint));
        let attacked = suite.subset(10_000).attacked;
        assert_eq!(key.subset, format!("10000/{attacked}"));
        assert!(suite.matches(&key, model, attacked).unwrap());
        assert!(!suite.matches(&key, model, attacked + 1).unwrap());
        let other = EvalSuite { seed: suite.seed + 1, ..suite.clone() };
        assert!(!other.matches(&key, model, attacked).unwrap());
        let black = SuiteRequest::black_box(&run).map(|b| b.resolve(Dataset::Mnist).unwrap());
        if let Some(b) = black {
            assert_ne!(b.hash().unwrap(), suite.hash().unwrap(), "the two suites of a run have their own keys");
            assert!(!b.sanity);
        }
    }
}
