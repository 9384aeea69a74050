//! The paper's claims beyond its cells, checked against the registry (issue 21, "The paper's
//! claims, checked"). The claims are data (`fixtures/paper/claims.toml`, compiled in): each
//! names where the paper makes it (Table II, Fig. 3(a), …), what it says, and a test over trained
//! runs picked by their resolved configs.
//!
//! # The tests
//!
//! Every comparison is **paired on the same test examples** with the registry's per-example
//! robust flags: two models are compared only on evaluations of the same test set (same dataset,
//! split and image fingerprint) at the same eps, on the first `min(n₁, n₂)` attacked examples
//! (every evaluation attacks a prefix of the test set).
//!
//! - `more_robust` (Table II's "InfoAT is the best under every attack", MART+ over MART, Fig. 3's
//!   ablations): for each baseline, dataset, architecture, eps and attack, the candidate's and the
//!   baseline's models are paired by training seed. `for` counts the examples the candidate keeps
//!   robust and the baseline loses, `against` the reverse, summed over the seed pairs.
//! - `white_box_stronger` (gradient masking, Table III's argument): on each selected model, each
//!   white-box attack is paired with each black-box attack on the examples both attacked. `for`
//!   counts the examples only the white-box attack breaks, `against` those only the black-box
//!   attack breaks. Masked gradients show as a black-box attack breaking more.
//!
//! The p-value is McNemar's exact two-sided test on (`for`, `against`) — pooled over seed pairs,
//! which is valid because under the null hypothesis each discordant example is equally likely
//! to fall either way, independently of the stratum. It conditions on the trained models: it
//! says whether these models differ on more examples than chance, not whether another training
//! seed would; the seed pairs that agree in direction are shown beside it for that reason.
//!
//! A comparison is *supported* when p < α (5 %) and `for` > `against`. A claim of several
//! comparisons is *supported* only when every comparison is (an intersection–union test, level α
//! without correction), *contradicted* when any comparison goes the other way with p < α/m
//! (Bonferroni over its m comparisons), *not significant* otherwise, and *not run* when the
//! registry holds no pair to compare. Selectors without a comparison (no run matched, or none
//! was evaluated on the same examples under the claim's attacks) are listed as untested: a
//! verdict covers only the comparisons it lists.

use std::collections::{BTreeMap, BTreeSet};

use infoat_registry::records::unpack_flags;
use infoat_registry::{ArchId, AttackId, DatasetId, EvalRecord, Metric, RunRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compare::FlagSource;
use crate::observations::{recipe_hash, suite_eps};
use crate::stats::mcnemar_exact_p;
use crate::{Error, Result};

/// The level of every test.
pub const ALPHA: f64 = 0.05;

/// The claims file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimFile {
    /// The claims, in the order reports show them.
    pub claims: Vec<Claim>,
}

/// One claim of the paper.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// A short stable id (`infoat_most_robust_white_box`).
    pub id: String,
    /// Where the paper makes it (`Table II`, `Fig. 3(a)`).
    pub source: String,
    /// The claim in the paper's words.
    pub statement: String,
    /// What evidence would support it.
    pub evidence: String,
    /// How it is tested.
    pub test: ClaimTest,
}

/// Runs picked by their resolved config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// How reports name the selection.
    pub label: String,
    /// JSON pointer into the resolved config → the value it must hold.
    #[serde(rename = "match")]
    pub fields: BTreeMap<String, Value>,
}

impl Selector {
    /// True when `config` holds every value (numbers compared as f64).
    pub fn matches(&self, config: &Value) -> bool {
        self.fields.iter().all(|(pointer, want)| match (config.pointer(pointer), want) {
            (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Some(got), want) => got == want,
            (None, _) => false,
        })
    }
}

/// Which attacks a test covers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AttackSet {
    /// `"white_box"` or `"black_box"`.
    Kind(AttackKind),
    /// An explicit list of attack ids.
    List(Vec<AttackId>),
}

/// White-box or black-box attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// Attacks that use the model's gradients.
    WhiteBox,
    /// Query-based attacks (SPSA, RayS).
    BlackBox,
}

impl AttackSet {
    /// True when `attack` belongs to the set.
    pub fn contains(&self, attack: AttackId) -> bool {
        match self {
            AttackSet::Kind(AttackKind::WhiteBox) => !attack.is_black_box(),
            AttackSet::Kind(AttackKind::BlackBox) => attack.is_black_box(),
            AttackSet::List(list) => list.contains(&attack),
        }
    }
}

/// The test behind a claim.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClaimTest {
    /// The candidate's models are more robust than each baseline's.
    MoreRobust {
        /// The claimed-better runs.
        candidate: Selector,
        /// The runs it is claimed to beat.
        baselines: Vec<Selector>,
        /// Under which attacks.
        attacks: AttackSet,
    },
    /// On the selected models, white-box attacks break more examples than black-box ones.
    WhiteBoxStronger {
        /// The models.
        models: Selector,
        /// The white-box attacks.
        white_box: AttackSet,
        /// The black-box attacks.
        black_box: AttackSet,
    },
}

impl ClaimFile {
    /// The committed claims.
    pub fn embedded() -> Result<ClaimFile> {
        Self::parse(include_str!("../../fixtures/paper/claims.toml"), "fixtures/paper/claims.toml")
    }

    /// Parses a claims file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ClaimFile> {
        let file: ClaimFile = toml::from_str(text).map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
        let mut ids = BTreeSet::new();
        for c in &file.claims {
            if !ids.insert(c.id.as_str()) {
                return Err(Error::Invalid(format!("{origin}: claim id '{}' appears twice; ids must be unique", c.id)));
            }
        }
        Ok(file)
    }
}

/// What the evidence says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimVerdict {
    /// Significant in the claimed direction.
    Supported,
    /// Significant against it.
    Contradicted,
    /// Neither.
    NotSignificant,
    /// Nothing in the registry to compare.
    NotRun,
}

impl ClaimVerdict {
    /// The spelling in reports.
    pub fn label(self) -> &'static str {
        match self {
            ClaimVerdict::Supported => "supported",
            ClaimVerdict::Contradicted => "contradicted",
            ClaimVerdict::NotSignificant => "not significant",
            ClaimVerdict::NotRun => "not run",
        }
    }
}

/// One paired comparison behind a claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimComparison {
    /// Dataset label.
    pub dataset: String,
    /// Architecture label.
    pub arch: String,
    /// The attacks' L∞ radius.
    pub eps: f64,
    /// The attack (`more_robust`), or the white-box attack (`white_box_stronger`).
    pub attack: AttackId,
    /// The black-box attack it is paired with (`white_box_stronger` only).
    pub versus_attack: Option<AttackId>,
    /// The attack(s) as the paper heads them (`PGD-20`, `PGD-20 vs SPSA-128`).
    pub attack_header: String,
    /// The side the claim says is better: a selector label (with the recipe when several
    /// recipes match), or the white-box attack's header.
    pub claimed_better: String,
    /// The other side.
    pub claimed_worse: String,
    /// Robust accuracy of the better side over the paired examples (fraction).
    pub better_robust: f64,
    /// Robust accuracy of the other side over the same examples.
    pub worse_robust: f64,
    /// Discordant examples in the claimed direction, summed over the pairs.
    pub for_claim: usize,
    /// Discordant examples against it.
    pub against_claim: usize,
    /// Paired models (seed pairs, or models for `white_box_stronger`).
    pub pairs: usize,
    /// Pairs whose own discordant counts lean the claimed way (ties count against).
    pub pairs_agreeing: usize,
    /// Paired examples, summed over the pairs.
    pub examples: usize,
    /// McNemar's exact two-sided p on (`for_claim`, `against_claim`).
    pub p_value: f64,
    /// This comparison's verdict (contradiction at α/m, m the claim's comparisons).
    pub verdict: ClaimVerdict,
    /// Config hashes of the runs compared.
    pub config_hashes: Vec<String>,
}

/// A claim with its verdict and the comparisons behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimResult {
    /// The claim.
    #[serde(flatten)]
    pub claim: Claim,
    /// The verdict over its comparisons.
    pub verdict: ClaimVerdict,
    /// One sentence on why.
    pub summary: String,
    /// The paired comparisons.
    pub comparisons: Vec<ClaimComparison>,
    /// Selectors (labels) with no comparison: no run matched, or none was evaluated on the
    /// same examples under the claim's attacks.
    pub untested: Vec<String>,
    /// Config hashes of every run the comparisons used.
    pub runs: Vec<String>,
}

/// (test-set identity, eps to 6 decimals): what makes two evaluations' examples the same.
type Protocol = (String, String);

/// The evaluation picked for one (protocol, attack): attacked examples, finish time, flags.
type Pick = (usize, u64, Vec<bool>);

/// What one comparison of a claim covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    dataset: String,
    arch: String,
    protocol: Protocol,
    attack: AttackId,
    versus: Option<AttackId>,
}

/// One trained model's per-example robust flags.
struct Model {
    recipe: String,
    seed: u64,
    config_hash: String,
    dataset: String,
    arch: String,
    /// Protocol → attack → robust flags of the first n examples.
    flags: BTreeMap<Protocol, BTreeMap<AttackId, Vec<bool>>>,
}

/// (data, eps) of an evaluation.
fn protocol_key(e: &EvalRecord) -> Protocol {
    (e.key.data.clone(), format!("{:.6}", suite_eps(e)))
}

/// The models of complete runs with their per-example flags; for one attack on one protocol
/// the evaluation that attacked the most examples (the latest among equals) is used.
fn models(runs: &[RunRecord], evals: &[EvalRecord], flags: &FlagSource<'_>) -> Result<Vec<(Model, Value)>> {
    let mut latest: BTreeMap<String, &RunRecord> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.is_complete()) {
        let key = r.config_hash.to_hex();
        if latest.get(&key).is_none_or(|old| old.attempt < r.attempt) {
            latest.insert(key, r);
        }
    }
    // Each run's evaluations, found in one pass.
    let mut by_run: BTreeMap<String, Vec<&EvalRecord>> = BTreeMap::new();
    for e in evals {
        if let Some(h) = e.config_hash {
            by_run.entry(h.to_hex()).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for (hash, run) in latest {
        let c = &run.config;
        let mut model = Model {
            recipe: recipe_hash(c)?,
            seed: c.get("seed").and_then(Value::as_u64).unwrap_or(0),
            config_hash: hash.clone(),
            dataset: DatasetId::label_of(c.pointer("/data/dataset").and_then(Value::as_str).unwrap_or("unknown")),
            arch: ArchId::label_of(c.pointer("/model/arch").and_then(Value::as_str).unwrap_or("unknown")),
            flags: BTreeMap::new(),
        };
        let mut best: BTreeMap<(Protocol, AttackId), Pick> = BTreeMap::new();
        for e in by_run.get(&hash).into_iter().flatten() {
            if run.checkpoint_hash != Some(e.key.model_hash) {
                continue;
            }
            let Some(f) = flags(e)? else { continue };
            for (name, packed) in &f.attacks {
                let attack: AttackId = name.parse().map_err(Error::Invalid)?;
                let Some(v) = unpack_flags(packed) else {
                    return Err(Error::Invalid(format!(
                        "evaluation {}: the per-example flags of {name} are malformed ('{packed}')",
                        e.key.hash()?
                    )));
                };
                let k = (protocol_key(e), attack);
                let better = best.get(&k).is_none_or(|(n, t, _)| (v.len(), e.finished_unix) > (*n, *t));
                if better {
                    best.insert(k, (v.len(), e.finished_unix, v));
                }
            }
        }
        for ((proto, attack), (_, _, v)) in best {
            model.flags.entry(proto).or_default().insert(attack, v);
        }
        if !model.flags.is_empty() {
            out.push((model, c.clone()));
        }
    }
    Ok(out)
}

/// Discordant counts on the common prefix: (only `a` true, only `b` true, examples).
fn discordant(a: &[bool], b: &[bool]) -> (usize, usize, usize) {
    let n = a.len().min(b.len());
    let (mut x, mut y) = (0, 0);
    for i in 0..n {
        match (a[i], b[i]) {
            (true, false) => x += 1,
            (false, true) => y += 1,
            _ => {}
        }
    }
    (x, y, n)
}

fn share(flags: &[bool], n: usize) -> usize {
    flags[..n].iter().filter(|&&f| f).count()
}

/// Accumulates the pairs of one comparison.
#[derive(Default)]
struct Tally {
    for_claim: usize,
    against_claim: usize,
    pairs: usize,
    agreeing: usize,
    examples: usize,
    better_hits: usize,
    worse_hits: usize,
    configs: BTreeSet<String>,
}

impl Tally {
    /// Adds one pair: `better`/`worse` are "the claimed-better side is right" flags.
    fn add(&mut self, better: &[bool], worse: &[bool], configs: [&str; 2]) {
        let (x, y, n) = discordant(better, worse);
        if n == 0 {
            return;
        }
        self.for_claim += x;
        self.against_claim += y;
        self.pairs += 1;
        self.agreeing += usize::from(x > y);
        self.examples += n;
        self.better_hits += share(better, n);
        self.worse_hits += share(worse, n);
        self.configs.extend(configs.iter().map(|s| s.to_string()));
    }
}

/// One comparison's group and sides, tallied: `better_is_robust` is false for attacks, whose
/// "right" is breaking an example.
fn comparison(g: Group, better: &str, worse: &str, t: Tally, better_is_robust: bool) -> ClaimComparison {
    let rate = |hits: usize| if t.examples == 0 { 0.0 } else { hits as f64 / t.examples as f64 };
    // For attacks, "right" means "broke the example": robust accuracy is its complement.
    let robust = |hits: usize| if better_is_robust { rate(hits) } else { 1.0 - rate(hits) };
    ClaimComparison {
        eps: eps_of(&g.protocol),
        attack_header: match g.versus {
            Some(k) => format!("{} vs {}", g.attack.header(), k.header()),
            None => g.attack.header().to_string(),
        },
        dataset: g.dataset,
        arch: g.arch,
        attack: g.attack,
        versus_attack: g.versus,
        claimed_better: better.to_string(),
        claimed_worse: worse.to_string(),
        better_robust: robust(t.better_hits),
        worse_robust: robust(t.worse_hits),
        for_claim: t.for_claim,
        against_claim: t.against_claim,
        pairs: t.pairs,
        pairs_agreeing: t.agreeing,
        examples: t.examples,
        p_value: mcnemar_exact_p(t.for_claim, t.against_claim),
        verdict: ClaimVerdict::NotRun,
        config_hashes: t.configs.into_iter().collect(),
    }
}

/// Labels models by selector; the recipe prefix is added when a selector matches several
/// recipes.
fn select<'a>(models: &'a [(Model, Value)], s: &Selector) -> Vec<(String, Vec<&'a Model>)> {
    let mut by_recipe: BTreeMap<&str, Vec<&Model>> = BTreeMap::new();
    for (m, c) in models {
        if s.matches(c) {
            by_recipe.entry(m.recipe.as_str()).or_default().push(m);
        }
    }
    let several = by_recipe.len() > 1;
    by_recipe
        .into_iter()
        .map(|(recipe, ms)| {
            let label = if several { format!("{} [{}]", s.label, &recipe[..8]) } else { s.label.clone() };
            (label, ms)
        })
        .collect()
}

fn eps_of(proto: &Protocol) -> f64 {
    proto.1.parse().unwrap_or(f64::NAN)
}

fn more_robust(
    models: &[(Model, Value)],
    candidate: &Selector,
    baselines: &[Selector],
    attacks: &AttackSet,
    untested: &mut Vec<String>,
) -> Vec<ClaimComparison> {
    let cands = select(models, candidate);
    let mut out = Vec::new();
    for b in baselines {
        let bases = select(models, b);
        let before = out.len();
        for (clabel, cms) in &cands {
            for (blabel, bms) in &bases {
                // Tallies over seed pairs.
                let mut tallies: BTreeMap<Group, Tally> = BTreeMap::new();
                for cm in cms {
                    for bm in bms.iter().filter(|bm| bm.seed == cm.seed && bm.arch == cm.arch) {
                        for (proto, cflags) in &cm.flags {
                            let Some(bflags) = bm.flags.get(proto) else { continue };
                            for (attack, cf) in cflags.iter().filter(|(a, _)| attacks.contains(**a)) {
                                let Some(bf) = bflags.get(attack) else { continue };
                                let g = Group {
                                    dataset: cm.dataset.clone(),
                                    arch: cm.arch.clone(),
                                    protocol: proto.clone(),
                                    attack: *attack,
                                    versus: None,
                                };
                                tallies.entry(g).or_default().add(cf, bf, [&cm.config_hash, &bm.config_hash]);
                            }
                        }
                    }
                }
                for (g, t) in tallies.into_iter().filter(|(_, t)| t.pairs > 0) {
                    out.push(comparison(g, clabel, blabel, t, true));
                }
            }
        }
        if out.len() == before {
            untested.push(b.label.clone());
        }
    }
    if out.is_empty() {
        untested.insert(0, candidate.label.clone());
    }
    out
}

fn white_box_stronger(
    models: &[(Model, Value)],
    selector: &Selector,
    white: &AttackSet,
    black: &AttackSet,
    untested: &mut Vec<String>,
) -> Vec<ClaimComparison> {
    let groups = select(models, selector);
    let mut out = Vec::new();
    for (label, ms) in &groups {
        let mut tallies: BTreeMap<Group, Tally> = BTreeMap::new();
        for m in ms {
            for (proto, flags) in &m.flags {
                for (w, wf) in flags.iter().filter(|(a, _)| !a.is_black_box() && white.contains(**a)) {
                    for (k, kf) in flags.iter().filter(|(a, _)| a.is_black_box() && black.contains(**a)) {
                        // "Right" for an attack: it broke the example.
                        let wb: Vec<bool> = wf.iter().map(|r| !r).collect();
                        let kb: Vec<bool> = kf.iter().map(|r| !r).collect();
                        let g = Group {
                            dataset: m.dataset.clone(),
                            arch: m.arch.clone(),
                            protocol: proto.clone(),
                            attack: *w,
                            versus: Some(*k),
                        };
                        tallies.entry(g).or_default().add(&wb, &kb, [&m.config_hash, &m.config_hash]);
                    }
                }
            }
        }
        for (g, t) in tallies.into_iter().filter(|(_, t)| t.pairs > 0) {
            let versus = g.versus.map_or("", AttackId::header);
            let (better, worse) = (format!("{} on {label}", g.attack.header()), format!("{versus} on {label}"));
            out.push(comparison(g, &better, &worse, t, false));
        }
    }
    if out.is_empty() {
        untested.push(selector.label.clone());
    }
    out
}

/// The verdict of each comparison and of the claim over them (module docs).
fn judge(comparisons: &mut [ClaimComparison]) -> ClaimVerdict {
    let m = comparisons.len();
    if m == 0 {
        return ClaimVerdict::NotRun;
    }
    for c in comparisons.iter_mut() {
        c.verdict = if c.p_value < ALPHA && c.for_claim > c.against_claim {
            ClaimVerdict::Supported
        } else if c.p_value < ALPHA / m as f64 && c.against_claim > c.for_claim {
            ClaimVerdict::Contradicted
        } else {
            ClaimVerdict::NotSignificant
        };
    }
    if comparisons.iter().any(|c| c.verdict == ClaimVerdict::Contradicted) {
        ClaimVerdict::Contradicted
    } else if comparisons.iter().all(|c| c.verdict == ClaimVerdict::Supported) {
        ClaimVerdict::Supported
    } else {
        ClaimVerdict::NotSignificant
    }
}

fn summary(verdict: ClaimVerdict, comparisons: &[ClaimComparison], untested: &[String]) -> String {
    let count = |v: ClaimVerdict| comparisons.iter().filter(|c| c.verdict == v).count();
    let mut s = match verdict {
        ClaimVerdict::NotRun => "No runs in the registry to compare.".to_string(),
        _ => format!(
            "{} paired comparison{}: {} supported, {} not significant, {} contradicted (α = {ALPHA}; contradiction \
             at α/{}).",
            comparisons.len(),
            if comparisons.len() == 1 { "" } else { "s" },
            count(ClaimVerdict::Supported),
            count(ClaimVerdict::NotSignificant),
            count(ClaimVerdict::Contradicted),
            comparisons.len()
        ),
    };
    if !untested.is_empty() && verdict != ClaimVerdict::NotRun {
        s.push_str(&format!(" Not tested (nothing comparable in the registry): {}.", untested.join(", ")));
    }
    s
}

/// Checks every claim against the complete runs and the per-example flags of their
/// evaluations (`flags` reads them from the registry).
pub fn check(
    claims: &ClaimFile,
    runs: &[RunRecord],
    evals: &[EvalRecord],
    flags: &FlagSource<'_>,
) -> Result<Vec<ClaimResult>> {
    let models = models(runs, evals, flags)?;
    let mut out = Vec::new();
    for claim in &claims.claims {
        let mut untested = Vec::new();
        let mut comparisons = match &claim.test {
            ClaimTest::MoreRobust { candidate, baselines, attacks } => {
                more_robust(&models, candidate, baselines, attacks, &mut untested)
            }
            ClaimTest::WhiteBoxStronger { models: s, white_box, black_box } => {
                white_box_stronger(&models, s, white_box, black_box, &mut untested)
            }
        };
        comparisons.sort_by(|a, b| {
            (&a.dataset, &a.arch, a.eps.to_bits(), Metric::Attack(a.attack).rank(), &a.claimed_worse).cmp(&(
                &b.dataset,
                &b.arch,
                b.eps.to_bits(),
                Metric::Attack(b.attack).rank(),
                &b.claimed_worse,
            ))
        });
        let verdict = judge(&mut comparisons);
        let summary = summary(verdict, &comparisons, &untested);
        let runs: BTreeSet<String> = comparisons.iter().flat_map(|c| c.config_hashes.iter().cloned()).collect();
        out.push(ClaimResult {
            claim: claim.clone(),
            verdict,
            summary,
            comparisons,
            untested,
            runs: runs.into_iter().collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(for_claim: usize, against: usize) -> ClaimComparison {
        ClaimComparison {
            dataset: "MNIST".into(),
            arch: "SmallCNN".into(),
            eps: 0.3,
            attack: AttackId::Pgd20,
            versus_attack: None,
            attack_header: "PGD-20".into(),
            claimed_better: "a".into(),
            claimed_worse: "b".into(),
            better_robust: 0.5,
            worse_robust: 0.5,
            for_claim,
            against_claim: against,
            pairs: 1,
            pairs_agreeing: 1,
            examples: 100,
            p_value: mcnemar_exact_p(for_claim, against),
            verdict: ClaimVerdict::NotRun,
            config_hashes: Vec::new(),
        }
    }

    #[test]
    fn the_embedded_claims_parse() {
        let f = ClaimFile::embedded().unwrap();
        assert!(f.claims.len() >= 6, "{}", f.claims.len());
        assert!(f.claims.iter().any(|c| matches!(c.test, ClaimTest::WhiteBoxStronger { .. })));
        let dup = "[[claims]]\nid='a'\nsource='s'\nstatement='x'\nevidence='e'\n[claims.test]\nkind='more_robust'\nattacks='white_box'\ncandidate={label='A', match={}}\nbaselines=[]\n";
        assert!(ClaimFile::parse(&format!("{dup}{dup}"), "t").unwrap_err().to_string().contains("twice"));
        assert!(ClaimFile::parse("[[claims]]\nid='a'\nbogus=1\n", "t").is_err());
    }

    #[test]
    fn selectors_match_resolved_configs() {
        let s = Selector {
            label: "x".into(),
            fields: BTreeMap::from([
                ("/method/kind".to_string(), Value::from("infoat")),
                ("/method/lambda".to_string(), Value::from(2.5)),
            ]),
        };
        assert!(s.matches(&serde_json::json!({"method": {"kind": "infoat", "lambda": 2.5}})));
        assert!(!s.matches(&serde_json::json!({"method": {"kind": "infoat", "lambda": 1.0}})));
        assert!(!s.matches(&serde_json::json!({"method": {"kind": "infoat"}})));
    }

    #[test]
    fn attack_sets() {
        let wb = AttackSet::Kind(AttackKind::WhiteBox);
        assert!(wb.contains(AttackId::Pgd20) && !wb.contains(AttackId::Rays));
        assert!(AttackSet::Kind(AttackKind::BlackBox).contains(AttackId::Spsa128));
        assert!(AttackSet::List(vec![AttackId::Pgd20]).contains(AttackId::Pgd20));
        assert!(!AttackSet::List(vec![AttackId::Pgd20]).contains(AttackId::Aa));
    }

    #[test]
    fn verdicts_intersect_support_and_correct_contradiction() {
        // 30 vs 10 discordant: p ≈ 0.002, supported.
        let mut v = vec![cmp(30, 10)];
        assert_eq!(judge(&mut v), ClaimVerdict::Supported);
        // One of two comparisons not significant: the claim is not supported.
        let mut v = vec![cmp(30, 10), cmp(12, 10)];
        assert_eq!(judge(&mut v), ClaimVerdict::NotSignificant);
        assert_eq!(v[1].verdict, ClaimVerdict::NotSignificant);
        // Against the claim at p ≈ 0.002 < 0.05 / 2: contradicted.
        let mut v = vec![cmp(30, 10), cmp(10, 30)];
        assert_eq!(judge(&mut v), ClaimVerdict::Contradicted);
        // Against at p ≈ 0.04: below α but not below α/3, so not a contradiction among three.
        let p = mcnemar_exact_p(12, 25);
        assert!(p < 0.05 && p > 0.05 / 3.0, "{p}");
        let mut v = vec![cmp(30, 10), cmp(30, 10), cmp(12, 25)];
        assert_eq!(judge(&mut v), ClaimVerdict::NotSignificant);
        assert_eq!(judge(&mut []), ClaimVerdict::NotRun);
    }

    #[test]
    fn discordance_uses_the_common_prefix() {
        assert_eq!(discordant(&[true, false, true, true], &[false, false, true]), (1, 0, 3));
        assert_eq!(discordant(&[false, true], &[true, true]), (0, 1, 2));
    }
}
