//! Aggregation over seeds and the join with the published numbers (polars), and the verdict
//! of every cell (issue 6 "Aggregation").
//!
//! Observations group by (table, dataset, arch, method, protocol, metric): mean, sample
//! standard deviation, n and a 95 % Student-t interval. Published numbers join on (table,
//! dataset, arch, method, metric) — and only where the protocol matches the paper's: same
//! dataset and architecture, and the paper's eps ([`Tolerances::paper_eps`]). A published row
//! with no reproduction becomes a `not run` cell.

use std::collections::BTreeMap;

use infoat_registry::{Indicator, Metric, PaperTable, PlantedTest, PublishedRecord, SelfTestResult};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::observations::Observation;
use crate::{Error, Result};

/// Tolerances and protocol facts that decide verdicts: data, not code
/// (`fixtures/reports/tolerances.toml`, compiled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerances {
    /// |reproduced − published| (fractions) within which a single-seed cell counts as
    /// reproduced, unless `metric` names the metric.
    pub default: f64,
    /// Per-metric tolerances.
    #[serde(default)]
    pub metric: BTreeMap<String, f64>,
    /// The eps the paper evaluates each dataset at (dataset label → eps); published numbers are
    /// shown beside a reproduction only at this eps.
    pub paper_eps: BTreeMap<String, f64>,
}

impl Tolerances {
    /// The committed tolerances.
    pub fn embedded() -> Result<Tolerances> {
        Self::parse(include_str!("../../fixtures/reports/tolerances.toml"))
    }

    /// Parses a tolerances file.
    pub fn parse(text: &str) -> Result<Tolerances> {
        toml::from_str(text).map_err(|e| Error::Invalid(format!("tolerances: {e}")))
    }

    /// The tolerance of `metric`.
    pub fn of(&self, metric: &str) -> f64 {
        self.metric.get(metric).copied().unwrap_or(self.default)
    }
}

/// What a cell says about the reproduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The published value lies in the 95 % interval (n ≥ 2) or within the tolerance (n = 1).
    Reproduced,
    /// Reproduced value below the published one beyond the interval or tolerance.
    Below,
    /// Reproduced value above the published one beyond the interval or tolerance.
    Above,
    /// Published, not in the registry.
    #[serde(rename = "not run")]
    NotRun,
    /// An evaluation behind the cell tripped a sanity check.
    Flagged,
    /// Reproduced, but the paper publishes nothing under this protocol.
    Unpublished,
}

impl Verdict {
    /// The spelling in reports.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::Below => "below",
            Verdict::Above => "above",
            Verdict::NotRun => "not run",
            Verdict::Flagged => "flagged",
            Verdict::Unpublished => "unpublished",
        }
    }
}

/// One cell of a table: the JSON form of every rendered table is a list of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Paper table (serialized as printed: `II`, `V`, …).
    pub table: PaperTable,
    /// Dataset label.
    pub dataset: String,
    /// Architecture label.
    pub arch: String,
    /// Method label.
    pub method: String,
    /// Clean accuracy, an attack's robust accuracy or RayS's ADBD (serialized as its name).
    pub metric: Metric,
    /// Mean over seeds, a fraction in [0, 1]; `None` when not run.
    pub value: Option<f64>,
    /// Sample standard deviation over seeds (0 for one seed); `None` when not run.
    pub std: Option<f64>,
    /// Seeds behind the cell.
    pub n: usize,
    /// Half-width of the 95 % Student-t interval (`None` for n < 2).
    pub ci95: Option<f64>,
    /// The published value as a fraction, when the protocol matches the paper's.
    pub published: Option<f64>,
    /// value − published.
    pub delta: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// The evaluation protocol (empty for `not run`).
    pub protocol: String,
    /// Config hashes of the runs behind the cell.
    pub config_hashes: Vec<String>,
    /// Checkpoint hashes of the evaluated models.
    pub checkpoint_hashes: Vec<String>,
    /// Sanity flags of the evaluations behind the cell.
    pub flags: Vec<String>,
    /// Environments the runs were trained in.
    pub environments: Vec<String>,
    /// The attack's cost, model forward passes per attacked example (mean over the
    /// evaluations behind the cell), when recorded.
    #[serde(default)]
    pub forward_passes: Option<f64>,
    /// Examples behind an accuracy from one evaluation (attacked, or evaluated clean).
    #[serde(default)]
    pub examples: Option<usize>,
    /// The exact (Clopper–Pearson) 95 % interval of an accuracy from one evaluation, as
    /// fractions; several seeds use `ci95` instead.
    #[serde(default)]
    pub clopper_pearson: Option<[f64; 2]>,
    /// Examples the attack broke, summed over the evaluations behind the cell.
    #[serde(default)]
    pub broken: Option<usize>,
    /// Of those, the witnesses `infoat verify-evidence` confirmed with the model's forward pass
    /// alone; `None` unless every evaluation behind the cell was checked.
    #[serde(default)]
    pub confirmed: Option<usize>,
    /// Model backward passes per attacked example (mean over the evaluations behind the cell),
    /// when recorded.
    #[serde(default)]
    pub backward_passes: Option<f64>,
    /// Per indicator of attack failure (issue 22), the examples the attack left robust that trip
    /// it, summed over the evaluations behind the cell; serialized as fields named after the
    /// indicators (`silent_success`, …). Only indicators that apply to the attack, and only
    /// when every evaluation behind the cell ran its diagnostics.
    #[serde(flatten)]
    pub indicators: BTreeMap<Indicator, usize>,
    /// Per planted-vulnerability self-test, what the attack found (summed likewise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub self_tests: BTreeMap<PlantedTest, SelfTestResult>,
}

impl Cell {
    /// Checked, and some broken example has no confirmed witness.
    pub fn unconfirmed(&self) -> bool {
        matches!((self.confirmed, self.broken), (Some(c), Some(b)) if c < b)
    }
}

/// The observations behind one cell: exact interval and witness counts (issue 21).
fn evidence(obs: &[&Observation], value: f64) -> (Option<usize>, Option<[f64; 2]>, Option<usize>, Option<usize>) {
    let (mut examples, mut interval) = (None, None);
    if let [one] = obs {
        if !one.metric.is_distance() && one.examples > 0 {
            let k = (value * one.examples as f64).round() as usize;
            let (lo, hi) = crate::stats::clopper_pearson(k.min(one.examples), one.examples, 0.05);
            examples = Some(one.examples);
            interval = Some([lo, hi]);
        }
    }
    let broken = obs.iter().map(|o| o.broken).sum::<Option<usize>>();
    let confirmed = obs.iter().map(|o| o.confirmed).sum::<Option<usize>>();
    (examples, interval, broken, confirmed.filter(|_| broken.is_some()))
}

/// The diagnostics behind one cell, summed over its observations when all of them have some.
fn diagnostics(obs: &[&Observation]) -> (BTreeMap<Indicator, usize>, BTreeMap<PlantedTest, SelfTestResult>) {
    let (mut indicators, mut tests) = (BTreeMap::new(), BTreeMap::new());
    if obs.is_empty() || obs.iter().any(|o| o.diagnostics.is_none()) {
        return (indicators, tests);
    }
    for d in obs.iter().filter_map(|o| o.diagnostics.as_ref()) {
        for (i, n) in &d.indicators {
            *indicators.entry(*i).or_insert(0) += n;
        }
        for (t, r) in &d.self_tests {
            let e = tests.entry(*t).or_insert(SelfTestResult { planted: 0, found: 0, expected: r.expected });
            e.planted += r.planted;
            e.found += r.found;
        }
    }
    (indicators, tests)
}

/// Two-sided 97.5 % quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        d if d <= 30 => T[d - 1],
        d if d <= 60 => 2.000 + (2.042 - 2.000) * (60 - d) as f64 / 30.0,
        d if d <= 120 => 1.980 + (2.000 - 1.980) * (120 - d) as f64 / 60.0,
        _ => 1.960,
    }
}

fn verdict(value: f64, published: Option<f64>, n: usize, ci95: Option<f64>, tol: f64, flagged: bool) -> Verdict {
    if flagged {
        return Verdict::Flagged;
    }
    let Some(p) = published else { return Verdict::Unpublished };
    let band = match (n, ci95) {
        (n, Some(ci)) if n >= 2 => ci,
        _ => tol,
    };
    let d = value - p;
    if d.abs() <= band + 1e-12 {
        Verdict::Reproduced
    } else if d < 0.0 {
        Verdict::Below
    } else {
        Verdict::Above
    }
}

fn strings(col: &Column) -> Result<Vec<String>> {
    Ok(col.str()?.iter().map(|s| s.unwrap_or_default().to_string()).collect())
}

fn f64s(col: &Column) -> Result<Vec<Option<f64>>> {
    Ok(col.f64()?.iter().collect())
}

fn string_lists(col: &Column) -> Result<Vec<Vec<String>>> {
    let list = col.list()?;
    let mut out = Vec::with_capacity(list.len());
    for i in 0..list.len() {
        let mut v: Vec<String> = match list.get_as_series(i) {
            Some(s) => s.str()?.iter().flatten().map(str::to_string).collect(),
            None => Vec::new(),
        };
        v.sort();
        v.dedup();
        out.push(v);
    }
    Ok(out)
}

/// The observations as a DataFrame (one row per observation).
pub fn observation_frame(obs: &[Observation]) -> Result<DataFrame> {
    let s = |f: fn(&Observation) -> String| obs.iter().map(f).collect::<Vec<String>>();
    Ok(df!(
        "table" => s(|o| o.table.name().to_string()),
        "dataset" => s(|o| o.dataset.clone()),
        "arch" => s(|o| o.arch.clone()),
        "method" => s(|o| o.method.clone()),
        "protocol" => s(|o| o.protocol.clone()),
        "metric" => s(|o| o.metric.name().to_string()),
        "eps" => obs.iter().map(|o| o.eps).collect::<Vec<f64>>(),
        "value" => obs.iter().map(|o| o.value).collect::<Vec<f64>>(),
        "cost" => obs.iter().map(|o| o.cost).collect::<Vec<Option<f64>>>(),
        "config_hash" => s(|o| o.config_hash.clone()),
        "checkpoint_hash" => s(|o| o.checkpoint_hash.clone()),
        "flagged" => obs.iter().map(|o| o.flagged).collect::<Vec<bool>>(),
        "flags" => s(|o| o.flags.join("; ")),
        "environment" => s(|o| o.environment.clone()),
    )?)
}

/// The published numbers as a DataFrame in the observations' units (fractions for
/// accuracies).
pub fn published_frame(published: &[PublishedRecord]) -> Result<DataFrame> {
    let s = |f: fn(&PublishedRecord) -> String| published.iter().map(f).collect::<Vec<String>>();
    Ok(df!(
        "table" => s(|p| p.table.clone()),
        "dataset" => s(|p| published_labels(p).0),
        "arch" => s(|p| published_labels(p).1),
        "method" => s(|p| published_labels(p).2),
        "metric" => s(|p| p.metric.clone()),
        "published" => published.iter().map(|p| to_fraction(&p.metric, p.value)).collect::<Vec<f64>>(),
    )?)
}

/// (dataset, arch, method) of a published number. Table I's rows are keyed by the MINE layer
/// and λ of InfoAT on CIFAR-10 ResNet-18 (paper §V-B), so they become methods of that grid.
pub fn published_labels(p: &PublishedRecord) -> (String, String, String) {
    if p.method.is_empty() && p.dataset.is_empty() {
        let kv: BTreeMap<&str, &str> = p.row.split(',').filter_map(|kv| kv.split_once('=')).collect();
        let method = match (kv.get("layer"), kv.get("lambda")) {
            (Some(l), Some(lam)) => format!("InfoAT (MINE layer {l}, λ = {lam})"),
            _ => p.row.clone(),
        };
        return ("CIFAR-10".into(), "ResNet-18".into(), method);
    }
    (p.dataset.clone(), p.arch.clone(), p.method.clone())
}

/// Published accuracies are percentages; ADBD is a distance and stays as it is.
pub fn to_fraction(metric: &str, value: f64) -> f64 {
    if metric == "adbd" {
        value
    } else {
        value / 100.0
    }
}

/// (table, dataset, arch, method, protocol, metric): what groups observations into a cell.
type CellKey = (String, String, String, String, String, String);

/// Aggregates `obs` over seeds, joins the published numbers where the protocol matches, and
/// adds a `not run` cell for every published number of `tables` that nothing reproduces.
pub fn cells(
    obs: &[Observation],
    published: &[PublishedRecord],
    tol: &Tolerances,
    tables: &[PaperTable],
) -> Result<Vec<Cell>> {
    let keys = ["table", "dataset", "arch", "method", "protocol", "metric"];
    let agg = observation_frame(obs)?
        .lazy()
        .group_by(keys.map(col))
        .agg([
            col("value").mean().alias("mean"),
            col("value").std(1).alias("std"),
            col("value").count().alias("n"),
            col("eps").first().alias("eps"),
            col("flagged").any(true).alias("flagged"),
            col("config_hash").alias("config_hashes"),
            col("checkpoint_hash").alias("checkpoint_hashes"),
            col("flags").alias("flags"),
            col("environment").alias("environments"),
            col("cost").mean().alias("cost"),
        ])
        .join(
            published_frame(published)?.lazy(),
            [col("table"), col("dataset"), col("arch"), col("method"), col("metric")],
            [col("table"), col("dataset"), col("arch"), col("method"), col("metric")],
            JoinArgs::new(JoinType::Left),
        )
        .sort(keys, SortMultipleOptions::default())
        .collect()?;

    let g = |name: &str| agg.column(name).map_err(Error::from);
    let (table, dataset, arch, method, protocol, metric) = (
        strings(g("table")?)?,
        strings(g("dataset")?)?,
        strings(g("arch")?)?,
        strings(g("method")?)?,
        strings(g("protocol")?)?,
        strings(g("metric")?)?,
    );
    let (mean, std, eps, pubd) = (f64s(g("mean")?)?, f64s(g("std")?)?, f64s(g("eps")?)?, f64s(g("published")?)?);
    let cost = f64s(g("cost")?)?;
    let n: Vec<u32> = g("n")?.cast(&DataType::UInt32)?.u32()?.iter().map(|v| v.unwrap_or(0)).collect();
    let flagged: Vec<bool> = g("flagged")?.bool()?.iter().map(|v| v.unwrap_or(false)).collect();
    let (configs, ckpts, flags, envs) = (
        string_lists(g("config_hashes")?)?,
        string_lists(g("checkpoint_hashes")?)?,
        string_lists(g("flags")?)?,
        string_lists(g("environments")?)?,
    );

    let mut members: BTreeMap<CellKey, Vec<&Observation>> = BTreeMap::new();
    for o in obs {
        let k = (
            o.table.name().to_string(),
            o.dataset.clone(),
            o.arch.clone(),
            o.method.clone(),
            o.protocol.clone(),
            o.metric.name().to_string(),
        );
        members.entry(k).or_default().push(o);
    }
    let mut out = Vec::with_capacity(agg.height());
    for i in 0..agg.height() {
        let key = (
            table[i].clone(),
            dataset[i].clone(),
            arch[i].clone(),
            method[i].clone(),
            protocol[i].clone(),
            metric[i].clone(),
        );
        let (examples, clopper_pearson, broken, confirmed) =
            evidence(members.get(&key).map_or(&[][..], Vec::as_slice), mean[i].unwrap_or(f64::NAN));
        let behind = members.get(&key).map_or(&[][..], Vec::as_slice);
        let (indicators, self_tests) = diagnostics(behind);
        let backward: Vec<f64> = behind.iter().filter_map(|o| o.backward).collect();
        let backward_passes = (!backward.is_empty()).then(|| backward.iter().sum::<f64>() / backward.len() as f64);
        let n_i = n[i] as usize;
        let value = mean[i].unwrap_or(f64::NAN);
        let std_i = if n_i >= 2 { std[i].unwrap_or(0.0) } else { 0.0 };
        let ci95 = (n_i >= 2).then(|| t975(n_i - 1) * std_i / (n_i as f64).sqrt());
        let paper_eps = tol.paper_eps.get(&dataset[i]).copied();
        let protocol_matches = match (paper_eps, eps[i]) {
            (Some(p), Some(e)) => (p - e).abs() < 1e-6,
            _ => false,
        };
        let published = pubd[i].filter(|_| protocol_matches);
        out.push(Cell {
            table: table[i].parse().map_err(Error::Invalid)?,
            dataset: dataset[i].clone(),
            arch: arch[i].clone(),
            method: method[i].clone(),
            metric: metric[i].parse().map_err(Error::Invalid)?,
            value: Some(value),
            std: Some(std_i),
            n: n_i,
            ci95,
            published,
            delta: published.map(|p| value - p),
            verdict: verdict(value, published, n_i, ci95, tol.of(&metric[i]), flagged[i]),
            protocol: protocol[i].clone(),
            config_hashes: configs[i].clone(),
            checkpoint_hashes: ckpts[i].clone(),
            flags: flags[i].iter().filter(|f| !f.is_empty()).cloned().collect(),
            environments: envs[i].clone(),
            forward_passes: cost[i],
            examples,
            clopper_pearson,
            broken,
            confirmed,
            backward_passes,
            indicators,
            self_tests,
        });
    }

    for p in published {
        let table: PaperTable =
            p.table.parse().map_err(|e| Error::Invalid(format!("published record {}: {e}", p.key())))?;
        if !tables.contains(&table) {
            continue;
        }
        let (dataset, arch, method) = published_labels(p);
        let reproduced = out.iter().any(|c| {
            c.published.is_some()
                && c.table == table
                && c.dataset == dataset
                && c.arch == arch
                && c.method == method
                && c.metric.name() == p.metric
        });
        if !reproduced {
            out.push(Cell {
                table,
                dataset,
                arch,
                method,
                metric: p
                    .metric
                    .parse()
                    .map_err(|e| Error::Invalid(format!("published {} row {}: {e}", p.table, p.row)))?,
                value: None,
                std: None,
                n: 0,
                ci95: None,
                published: Some(to_fraction(&p.metric, p.value)),
                delta: None,
                verdict: Verdict::NotRun,
                protocol: String::new(),
                config_hashes: Vec::new(),
                checkpoint_hashes: Vec::new(),
                flags: Vec::new(),
                environments: Vec::new(),
                forward_passes: None,
                examples: None,
                clopper_pearson: None,
                broken: None,
                confirmed: None,
                backward_passes: None,
                indicators: BTreeMap::new(),
                self_tests: BTreeMap::new(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles() {
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(4), 2.776);
        assert_eq!(t975(1000), 1.96);
        assert!(t975(0).is_infinite());
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(0.50, Some(0.51), 1, None, 0.015, false), Verdict::Reproduced);
        assert_eq!(verdict(0.49, Some(0.51), 1, None, 0.015, false), Verdict::Below);
        assert_eq!(verdict(0.53, Some(0.51), 1, None, 0.015, false), Verdict::Above);
        // n >= 2 uses the interval, not the tolerance.
        assert_eq!(verdict(0.49, Some(0.51), 3, Some(0.03), 0.015, false), Verdict::Reproduced);
        assert_eq!(verdict(0.505, Some(0.51), 3, Some(0.001), 0.015, false), Verdict::Below);
        assert_eq!(verdict(0.51, Some(0.51), 1, None, 0.015, true), Verdict::Flagged);
        assert_eq!(verdict(0.51, None, 1, None, 0.015, false), Verdict::Unpublished);
    }

    #[test]
    fn tolerances_file_parses() {
        let t = Tolerances::embedded().unwrap();
        assert!(t.default > 0.0 && t.default < 0.1);
        assert!((t.paper_eps["CIFAR-10"] - 8.0 / 255.0).abs() < 1e-9);
        assert!(Tolerances::parse("default = 0.01\nbogus = 1\n[paper_eps]\n").is_err());
    }
}
