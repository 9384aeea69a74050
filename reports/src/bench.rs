//! Benchmark summaries: a `ci/bench/run` or `ci/gpu-check` result folder (`machine.txt`,
//! `agreement.jsonl`, `throughput.jsonl`, `profile.jsonl`, `max_batch.jsonl`, `failures.txt`)
//! as the Markdown tables `docs/performance.md` quotes — the device's agreement with the CPU,
//! the harness's throughput beside PyTorch eager with the ratios, peak memory, and the largest
//! batch that fits (issue 9's measurements; issue 20 moved this here from a Python script).
//!
//! Each throughput cell is the median over the rounds that measured it (`ci/bench/run`
//! alternates the implementations in every round); a ratio is the better harness layout over
//! PyTorch at the same precision.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::templates::render_template;
use crate::{Error, Result};

/// One timing of `infoat bench` (harness) or `ci/bench/pytorch_peer.py` (PyTorch).
#[derive(Debug, Clone, Deserialize)]
pub struct ThroughputRow {
    /// `pytorch` for the peer; absent (the harness) otherwise.
    #[serde(default, rename = "impl")]
    pub implementation: Option<String>,
    /// The PyTorch variant (`reference`, `tuned`, `tuned+graph`, …).
    #[serde(default)]
    pub variant: Option<String>,
    /// The PyTorch process's heap settings (`default` or the harness's).
    #[serde(default)]
    pub heap: Option<String>,
    /// What was timed (`pgd`, `train_step`, `apgd_ce`); `train_step` when absent.
    #[serde(default)]
    pub work: Option<String>,
    /// Architecture id.
    pub arch: String,
    /// Training method; `at` when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Batch size.
    pub batch_size: u64,
    /// `fp32`, `bf16`, …
    pub precision: String,
    /// Channels-last memory format.
    #[serde(default)]
    pub channels_last: bool,
    /// The harness ran the inner PGD as a captured CUDA graph (`infoat bench --cuda-graph`).
    #[serde(default)]
    pub cuda_graph: bool,
    /// That graph's attack against the eager one from the same seed, checked before timing.
    #[serde(default)]
    pub graph_check: Option<GraphCheckRow>,
    /// Images per second.
    #[serde(default)]
    pub images_per_second: Option<f64>,
    /// Seconds per training epoch at this speed.
    #[serde(default)]
    pub epoch_seconds: Option<f64>,
    /// Peak device memory (MiB) of the whole GPU while the command ran.
    #[serde(default)]
    pub peak_gpu_mib: Option<f64>,
    /// Peak resident host memory (MiB) of the process (issue 24).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Milliseconds per step.
    #[serde(default)]
    pub ms_per_step: Option<f64>,
    /// A `torch.profiler` summary (`pytorch_peer.py --profile`).
    #[serde(default)]
    pub profile: Option<Value>,
}

impl ThroughputRow {
    /// The column the row belongs to: `(harness, nchw|cl[+graph])` or `(pytorch, variant[+heap])`.
    pub fn column(&self) -> (String, String) {
        if self.implementation.as_deref() == Some("pytorch") {
            let heap = self.heap.as_deref().is_some_and(|h| h != "default");
            let variant = self.variant.clone().unwrap_or_else(|| "reference".into());
            return ("pytorch".into(), if heap { format!("{variant}+heap") } else { variant });
        }
        let layout = if self.channels_last { "cl" } else { "nchw" };
        ("harness".into(), if self.cuda_graph { format!("{layout}+graph") } else { layout.into() })
    }

    fn group(&self) -> GroupKey {
        (
            self.work.clone().unwrap_or_else(|| "train_step".into()),
            self.arch.clone(),
            self.method.clone().unwrap_or_else(|| "at".into()),
            self.batch_size,
            self.precision.clone(),
        )
    }
}

/// A captured graph's attack against the eager attack (`infoat bench --cuda-graph`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct GraphCheckRow {
    /// Share of the adversarial batch's elements that are bit-for-bit equal.
    pub equal_fraction: f64,
    /// The largest absolute difference of an element.
    pub max_abs_diff: f64,
    /// Share of elements equal between two eager attacks from the same seed (the kernels' own
    /// nondeterminism); absent in results from before it was recorded.
    #[serde(default)]
    pub eager_repeat_equal_fraction: Option<f64>,
}

/// A CPU-vs-device agreement measurement (`infoat bench --agreement`).
#[derive(Debug, Clone, Deserialize)]
pub struct AgreementRow {
    /// Architecture id.
    pub arch: String,
    /// The device.
    pub device: String,
    /// Precision on the device.
    pub precision: String,
    /// Channels-last memory format.
    pub channels_last: bool,
    /// Examples compared.
    pub n: u64,
    /// max |Δ logits| / max |logits|.
    pub logits_rel_max_diff: f64,
    /// Fraction of equal predictions.
    pub argmax_agreement: f64,
    /// Fraction of equal input-gradient signs.
    pub grad_sign_agreement: f64,
    /// Cosine of the two input gradients.
    pub grad_cosine: f64,
    /// Fraction of pixels a PGD step moves the same way.
    pub pgd_step_agreement: f64,
}

/// The largest batch whose PGD-10 AT step fits (`infoat bench --max-batch`).
#[derive(Debug, Clone, Deserialize)]
pub struct MaxBatchRow {
    /// Architecture id.
    pub arch: String,
    /// Precision.
    pub precision: String,
    /// Channels-last memory format.
    pub channels_last: bool,
    /// The largest batch that fit.
    pub max_batch: u64,
    /// Where the search stopped.
    pub limit: u64,
}

/// A result folder, read.
#[derive(Debug, Clone, Default)]
pub struct BenchResults {
    /// The folder as the caller named it (the summary's title).
    pub dir: String,
    /// `machine.txt`, trimmed.
    pub machine: Option<String>,
    /// `agreement.jsonl`.
    pub agreement: Vec<AgreementRow>,
    /// `throughput.jsonl`.
    pub throughput: Vec<ThroughputRow>,
    /// `profile.jsonl`.
    pub profiles: Vec<ThroughputRow>,
    /// `max_batch.jsonl`.
    pub max_batch: Vec<MaxBatchRow>,
    /// `failures.txt`, trimmed, when not empty.
    pub failures: Option<String>,
}

type GroupKey = (String, String, String, u64, String);

fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Invalid(format!("reading {}: {e}", path.display()))),
    }
}

/// The JSON lines of `path` (lines starting with `{`; others are log noise); none when the
/// file does not exist.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let Some(text) = read_text(path)? else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with('{'))
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::Invalid(format!(
                    "{} line {}: {e}; expected one benchmark result per line",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

impl BenchResults {
    /// Reads the folder `dir` (missing files are empty sections; a folder with none of them is
    /// an error).
    pub fn load(dir: &Path) -> Result<BenchResults> {
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: no such folder; expected a ci/bench/run or ci/gpu-check result folder",
                dir.display()
            )));
        }
        let trimmed = |t: Option<String>| t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let r = BenchResults {
            dir: dir.display().to_string(),
            machine: read_text(&dir.join("machine.txt"))?.map(|t| t.trim().to_string()),
            agreement: read_jsonl(&dir.join("agreement.jsonl"))?,
            throughput: read_jsonl(&dir.join("throughput.jsonl"))?,
            profiles: read_jsonl(&dir.join("profile.jsonl"))?,
            max_batch: read_jsonl(&dir.join("max_batch.jsonl"))?,
            failures: trimmed(read_text(&dir.join("failures.txt"))?),
        };
        if r.machine.is_none() && r.agreement.is_empty() && r.throughput.is_empty() && r.max_batch.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no machine.txt, agreement.jsonl, throughput.jsonl or max_batch.jsonl; expected a ci/bench/run or \
                 ci/gpu-check result folder",
                dir.display()
            )));
        }
        Ok(r)
    }
}

/// The median (the mean of the middle two for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Median of a field over the rows that have it (a zero counts as missing).
fn med(rows: &[&ThroughputRow], field: fn(&ThroughputRow) -> Option<f64>) -> Option<f64> {
    median(&rows.iter().filter_map(|r| field(r)).filter(|v| *v != 0.0).collect::<Vec<_>>())
}

/// Rows of one group, by column, in the order the columns first appear.
type Columns<'a> = Vec<((String, String), Vec<&'a ThroughputRow>)>;

fn grouped(rows: &[ThroughputRow]) -> Vec<(GroupKey, Columns<'_>)> {
    let mut groups: Vec<(GroupKey, Columns<'_>)> = Vec::new();
    for r in rows {
        let key = r.group();
        let i = groups.iter().position(|(k, _)| *k == key).unwrap_or_else(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        let col = r.column();
        let cols = &mut groups[i].1;
        match cols.iter_mut().find(|(c, _)| *c == col) {
            Some((_, v)) => v.push(r),
            None => cols.push((col, vec![r])),
        }
    }
    groups
}

fn column<'a, 'b>(cols: &'b Columns<'a>, kind: (&str, &str)) -> &'b [&'a ThroughputRow] {
    cols.iter().find(|(c, _)| c.0 == kind.0 && c.1 == kind.1).map_or(&[], |(_, v)| v.as_slice())
}

fn ips(cols: &Columns<'_>, kind: (&str, &str)) -> Option<f64> {
    med(column(cols, kind), |r| r.images_per_second)
}

/// The harness's NCHW and channels-last medians, and the better of the two.
fn harness_best(cols: &Columns<'_>) -> (Option<f64>, Option<f64>, Option<f64>) {
    let (nchw, cl) = (ips(cols, ("harness", "nchw")), ips(cols, ("harness", "cl")));
    let best = [nchw, cl].into_iter().flatten().reduce(f64::max);
    (nchw, cl, best)
}

/// `1,234`: no decimals, thousands separated by commas.
fn thousands(v: f64) -> String {
    let s = format!("{v:.0}");
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn count(v: Option<f64>) -> String {
    v.filter(|v| *v != 0.0).map_or_else(|| "–".into(), thousands)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 && b != 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Scientific notation as Python's `:.2e` writes it (`1.93e-07`).
fn sci(v: f64) -> String {
    let s = format!("{v:.2e}");
    let Some((mantissa, exp)) = s.split_once('e') else { return s };
    let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// A Markdown table: a title, a paragraph, a header and rows of cells.
#[derive(Debug, Clone, Serialize)]
struct Section {
    title: String,
    intro: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn section(title: &str, intro: &str, header: &[&str], rows: Vec<Vec<String>>) -> Section {
    Section { title: title.into(), intro: intro.into(), header: header.iter().map(|h| h.to_string()).collect(), rows }
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    dir: &'a str,
    machine: Option<&'a str>,
    sections: Vec<Section>,
    failures: Option<&'a str>,
}

fn agreement(rows: &[AgreementRow]) -> Section {
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                r.arch.clone(),
                r.device.clone(),
                r.precision.clone(),
                if r.channels_last { "channels-last" } else { "NCHW" }.into(),
                r.n.to_string(),
                sci(r.logits_rel_max_diff),
                format!("{:.4}", r.argmax_agreement),
                format!("{:.4}", r.grad_sign_agreement),
                format!("{:.6}", r.grad_cosine),
                format!("{:.4}", r.pgd_step_agreement),
            ]
        })
        .collect();
    section(
        "Agreement with the CPU (float32 reference, same weights and inputs)",
        "",
        &[
            "arch",
            "device",
            "precision",
            "layout",
            "n",
            "logits rel. max diff",
            "argmax agree",
            "grad sign agree",
            "grad cosine",
            "PGD step same dir.",
        ],
        rows,
    )
}

const THROUGHPUT_INTRO: &str =
    "`pgd`: the PGD-10 inner maximisation alone; `train_step`: a whole training step of the \
method (inner PGD-10 included); `apgd_ce`: one APGD-CE attack (100 iterations) on the batch. harness = `infoat bench` \
(NCHW or channels-last); PyTorch reference = parameters keep requires_grad during the attack, NCHW; PyTorch tuned = \
frozen parameters, channels-last; tuned + heap = tuned with the harness's heap settings (GLIBC_TUNABLES). Each cell is \
the median of n rounds. Ratios: best harness layout / PyTorch at the same precision; for bf16 rows, × reference also \
gives the ratio to the fp32 reference.";

fn throughput(groups: &[(GroupKey, Columns<'_>)]) -> Section {
    // Host memory became part of the records later (issue 24): results from before render as
    // they did.
    let with_host = groups.iter().any(|(_, cols)| cols.iter().any(|(_, v)| v.iter().any(|r| r.peak_rss_mib.is_some())));
    let mut rows = Vec::new();
    for ((work, arch, method, batch, prec), cols) in groups {
        let (nchw, cl, best) = harness_best(cols);
        let reference = ips(cols, ("pytorch", "reference"));
        let tuned = ips(cols, ("pytorch", "tuned"));
        let heap = ips(cols, ("pytorch", "tuned+heap"));
        let mut x_ref = ratio(best, reference);
        if prec != "fp32" {
            let fp32 =
                groups.iter().find(|(k, _)| *k == (work.clone(), arch.clone(), method.clone(), *batch, "fp32".into()));
            if let Some(ref32) = fp32.and_then(|(_, c)| ips(c, ("pytorch", "reference"))) {
                x_ref.push_str(&format!(" ({} × fp32)", ratio(best, Some(ref32))));
            }
        }
        let best_rows = column(cols, ("harness", if best == cl { "cl" } else { "nchw" }));
        let tuned_rows = column(cols, ("pytorch", "tuned"));
        let mem_h = med(best_rows, |r| r.peak_gpu_mib);
        let mem_p = med(tuned_rows, |r| r.peak_gpu_mib);
        let pair = |h: Option<f64>, p: Option<f64>| match (h, p) {
            (Some(h), Some(p)) => format!("{} / {}", thousands(h), thousands(p)),
            (Some(h), None) => format!("{} / –", thousands(h)),
            _ => "–".into(),
        };
        let mem = pair(mem_h, mem_p);
        let host = pair(med(best_rows, |r| r.peak_rss_mib), med(tuned_rows, |r| r.peak_rss_mib));
        let train_len = best_rows.first().and_then(|r| Some(r.epoch_seconds? * r.images_per_second?));
        let epoch = match (train_len, best) {
            (Some(t), Some(b)) if t != 0.0 && b != 0.0 => format!("{:.1}", t / b),
            _ => "–".into(),
        };
        let n = cols.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let mut row = vec![
            work.clone(),
            arch.clone(),
            method.clone(),
            batch.to_string(),
            prec.clone(),
            n.to_string(),
            count(nchw),
            count(cl),
            count(reference),
            count(tuned),
            count(heap),
            x_ref,
            ratio(best, tuned),
            ratio(best, heap),
            epoch,
            mem,
        ];
        if with_host {
            row.push(host);
        }
        rows.push(row);
    }
    let mut head = vec![
        "work",
        "arch",
        "method",
        "batch",
        "precision",
        "n",
        "harness NCHW",
        "harness channels-last",
        "PyTorch reference",
        "PyTorch tuned",
        "PyTorch tuned + heap",
        "× reference",
        "× tuned",
        "× tuned + heap",
        "epoch s (best harness)",
        "peak GPU MiB harness / PyTorch",
    ];
    if with_host {
        head.push("peak host MiB harness / PyTorch");
    }
    section("Throughput (images/s)", THROUGHPUT_INTRO, &head, rows)
}

/// Each graphed column of `implementation` (`pytorch`'s `VARIANT+graph`, the harness's
/// `LAYOUT+graph`) in each group: the group's key and columns, the graphed column's name and the
/// eager column it is set against.
fn graph_columns<'g, 'a>(
    groups: &'g [(GroupKey, Columns<'a>)],
    implementation: &'g str,
) -> impl Iterator<Item = (&'g GroupKey, &'g Columns<'a>, &'g str, &'g str)> {
    groups.iter().flat_map(move |(key, cols)| {
        cols.iter().filter_map(move |((imp, variant), _)| {
            let base = variant.strip_suffix("+graph").filter(|_| imp == implementation)?;
            Some((key, cols, variant.as_str(), base))
        })
    })
}

/// A group key's cells: work, arch, method, batch, precision.
fn key_cells((work, arch, method, batch, prec): &GroupKey) -> Vec<String> {
    vec![work.clone(), arch.clone(), method.clone(), batch.to_string(), prec.clone()]
}

/// PyTorch with the PGD attack captured in one CUDA graph beside PyTorch eager in the same
/// variant and the harness's best layout on the same work.
fn graphed(groups: &[(GroupKey, Columns<'_>)]) -> Option<Section> {
    let mut rows = Vec::new();
    for (key, cols, variant, base) in graph_columns(groups, "pytorch") {
        let graph = ips(cols, ("pytorch", variant));
        let eager = ips(cols, ("pytorch", base));
        let best = harness_best(cols).2;
        let mut row = key_cells(key);
        row.extend([
            base.to_string(),
            count(graph),
            count(eager),
            ratio(graph, eager),
            count(best),
            ratio(best, graph),
        ]);
        rows.push(row);
    }
    (!rows.is_empty()).then(|| {
        section(
            "PyTorch with the attack in a CUDA graph (images/s)",
            "`pytorch_peer.py --graph`: the whole PGD attack captured once and replayed each step; the outer training \
             pass stays eager. Medians over the runs.",
            &[
                "work",
                "arch",
                "method",
                "batch",
                "precision",
                "variant",
                "graphed",
                "PyTorch same variant, eager",
                "× eager",
                "harness best",
                "harness / graphed",
            ],
            rows,
        )
    })
}

/// The harness with its PGD attack captured in one CUDA graph (`infoat bench --cuda-graph`)
/// beside the harness eager in the same layout, PyTorch tuned eager and PyTorch graphed: issue
/// 24's GPU targets (images/s, and ≥ 1.3× PyTorch eager).
fn harness_graphed(groups: &[(GroupKey, Columns<'_>)]) -> Option<Section> {
    let mut rows = Vec::new();
    for (key, cols, variant, layout) in graph_columns(groups, "harness") {
        let graph = ips(cols, ("harness", variant));
        let eager = ips(cols, ("harness", layout));
        let torch = ips(cols, ("pytorch", "tuned"));
        let torch_graph = ips(cols, ("pytorch", "tuned+graph"));
        // The worst check over the runs: a graph is as good as its least faithful capture.
        let lowest = |share: fn(&GraphCheckRow) -> Option<f64>| {
            column(cols, ("harness", variant))
                .iter()
                .filter_map(|r| r.graph_check.as_ref().and_then(share))
                .reduce(f64::min)
                .map_or_else(|| "–".into(), |f| format!("{:.2} %", 100.0 * f))
        };
        let equal = lowest(|c| Some(c.equal_fraction));
        let repeat = lowest(|c| c.eager_repeat_equal_fraction);
        let mut row = key_cells(key);
        row.extend([
            if layout == "cl" { "channels-last" } else { "NCHW" }.to_string(),
            equal,
            repeat,
            count(graph),
            count(eager),
            ratio(graph, eager),
            count(torch),
            ratio(graph, torch),
            count(torch_graph),
            ratio(graph, torch_graph),
        ]);
        rows.push(row);
    }
    (!rows.is_empty()).then(|| {
        section(
            "The harness with the attack in a CUDA graph (images/s)",
            "`infoat bench --cuda-graph`: the inner PGD captured once (csrc/cuda_graph.cpp over libtorch's CUDAGraph) and \
             replayed each step; the outer training pass stays eager. Medians over the runs. \"= eager\": the share of \
             the adversarial batch a replay gives bit for bit as the eager attack from the same seed (checked before \
             timing; the lowest over the runs); \"eager twice\": the same share between two eager attacks from that \
             seed, what the kernels' own nondeterminism leaves. A faithful graph's \"= eager\" matches it.",
            &[
                "work",
                "arch",
                "method",
                "batch",
                "precision",
                "layout",
                "= eager",
                "eager twice",
                "graphed",
                "harness eager",
                "× eager",
                "PyTorch tuned eager",
                "× PyTorch eager",
                "PyTorch graphed",
                "× PyTorch graphed",
            ],
            rows,
        )
    })
}

/// How busy the device is during a step (`pytorch_peer.py --profile` on CUDA).
fn profiles(rows: &[ThroughputRow]) -> Option<Section> {
    let mut out = Vec::new();
    for r in rows {
        let Some(p) = r.profile.as_ref().filter(|p| p.is_object()) else { continue };
        let mut cells = vec![
            r.work.clone().unwrap_or_else(|| "None".into()),
            r.arch.clone(),
            r.batch_size.to_string(),
            r.precision.clone(),
            r.variant.clone().unwrap_or_else(|| "None".into()),
            r.ms_per_step.map_or_else(|| "–".into(), |v| format!("{v:.1}")),
        ];
        let num = |k: &str| p.get(k).and_then(Value::as_f64);
        if let Some(e) = p.get("error") {
            let e = e.as_str().map_or_else(|| e.to_string(), str::to_string);
            // One cell spanning the four columns it leaves empty.
            cells.push(format!("profile failed: {e} | | |"));
        } else if let (Some(events), Some(busy), Some(frac), Some(mean)) =
            (num("device_events"), num("device_busy_ms"), num("device_busy_fraction"), num("mean_event_us"))
        {
            cells.extend([
                thousands(events),
                format!("{busy:.1}"),
                format!("{:.0} %", 100.0 * frac),
                format!("{mean:.1}"),
            ]);
        } else {
            continue;
        }
        out.push(cells);
    }
    (!out.is_empty()).then(|| {
        section(
            "Where a step's time goes (PyTorch, torch.profiler)",
            "Device events: kernels and copies the GPU ran in one profiled step; busy: their summed time; busy share: \
             busy / the unprofiled ms per step (low: the step waits on kernel launches).",
            &[
                "work",
                "arch",
                "batch",
                "precision",
                "variant",
                "ms/step",
                "device events",
                "busy ms",
                "busy share",
                "mean event µs",
            ],
            out,
        )
    })
}

fn max_batch(rows: &[MaxBatchRow]) -> Section {
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                r.arch.clone(),
                r.precision.clone(),
                if r.channels_last { "True" } else { "False" }.into(),
                r.max_batch.to_string(),
                r.limit.to_string(),
            ]
        })
        .collect();
    section(
        "Largest batch whose PGD-10 AT step fits",
        "",
        &["arch", "precision", "channels-last", "max batch", "search limit"],
        rows,
    )
}

/// The Markdown summary of a result folder (what `infoat bench --summarize DIR` prints).
pub fn render_bench(r: &BenchResults) -> Result<String> {
    let mut sections = Vec::new();
    if !r.agreement.is_empty() {
        sections.push(agreement(&r.agreement));
    }
    if !r.throughput.is_empty() {
        let groups = grouped(&r.throughput);
        sections.push(throughput(&groups));
        sections.extend(graphed(&groups));
        sections.extend(harness_graphed(&groups));
    }
    sections.extend(profiles(&r.profiles));
    if !r.max_batch.is_empty() {
        sections.push(max_batch(&r.max_batch));
    }
    let summary = Summary { dir: &r.dir, machine: r.machine.as_deref(), sections, failures: r.failures.as_deref() };
    render_template("bench.md", "s", &summary)
}

/// Each group's median images/s per column, by `(work, arch, method, batch, precision)` and
/// column (`harness/nchw`, `pytorch/tuned`, …): the figures the tables are made of.
pub fn medians(rows: &[ThroughputRow]) -> BTreeMap<String, BTreeMap<String, f64>> {
    grouped(rows)
        .iter()
        .map(|((w, a, m, b, p), cols)| {
            let per: BTreeMap<String, f64> =
                cols.iter().filter_map(|((i, v), _)| Some((format!("{i}/{v}"), ips(cols, (i, v))?))).collect();
            (format!("{w} {a} {m} {b} {p}"), per)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_the_tables_always_wrote_them() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(sci(1.9330009001340858e-7), "1.93e-07");
        assert_eq!(sci(0.0), "0.00e+00");
        assert_eq!(sci(12345.0), "1.23e+04");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50");
        assert_eq!(ratio(Some(3.0), None), "–");
    }

    #[test]
    fn rows_fall_into_their_columns() {
        let row = |j: &str| serde_json::from_str::<ThroughputRow>(j).unwrap();
        let h = row(
            r#"{"arch":"smallcnn","batch_size":128,"precision":"fp32","channels_last":true,"images_per_second":10}"#,
        );
        assert_eq!(h.column(), ("harness".into(), "cl".into()));
        let p = row(
            r#"{"impl":"pytorch","variant":"tuned","heap":"harness","arch":"smallcnn","batch_size":128,"precision":"fp32"}"#,
        );
        assert_eq!(p.column(), ("pytorch".into(), "tuned+heap".into()));
        let m = medians(&[
            h.clone(),
            row(
                r#"{"arch":"smallcnn","batch_size":128,"precision":"fp32","channels_last":true,"images_per_second":30}"#,
            ),
        ]);
        assert_eq!(m["train_step smallcnn at 128 fp32"]["harness/cl"], 20.0);
        let g = row(
            r#"{"arch":"resnet18","batch_size":128,"precision":"bf16","channels_last":true,"cuda_graph":true,"images_per_second":10}"#,
        );
        assert_eq!(g.column(), ("harness".into(), "cl+graph".into()));
    }

    /// The harness's graphed rows get their own table against its eager layout and PyTorch's
    /// eager and graphed runs; the main table's "harness best" stays the eager one.
    #[test]
    fn harness_graph_rows_are_set_beside_eager_and_pytorch() {
        let row = |j: &str| serde_json::from_str::<ThroughputRow>(j).unwrap();
        let common = r#""arch":"resnet18","batch_size":128,"precision":"bf16""#;
        let rows = vec![
            row(&format!(
                r#"{{{common},"channels_last":true,"cuda_graph":true,"images_per_second":4000,"graph_check":{{"equal_fraction":1.0,"max_abs_diff":0.0}}}}"#
            )),
            row(&format!(
                r#"{{{common},"channels_last":true,"cuda_graph":true,"images_per_second":4000,"graph_check":{{"equal_fraction":0.995,"max_abs_diff":0.06,"eager_repeat_equal_fraction":0.996}}}}"#
            )),
            row(&format!(r#"{{{common},"channels_last":true,"images_per_second":2500}}"#)),
            row(&format!(r#"{{"impl":"pytorch","variant":"tuned",{common},"images_per_second":2000}}"#)),
            row(&format!(r#"{{"impl":"pytorch","variant":"tuned+graph",{common},"images_per_second":3200}}"#)),
        ];
        let groups = grouped(&rows);
        let section = harness_graphed(&groups).expect("a graphed harness row");
        let want = [
            "train_step",
            "resnet18",
            "at",
            "128",
            "bf16",
            "channels-last",
            "99.50 %",
            "99.60 %",
            "4,000",
            "2,500",
            "1.60",
            "2,000",
            "2.00",
            "3,200",
            "1.25",
        ];
        assert_eq!(section.rows, vec![want.map(String::from).to_vec()]);
        assert_eq!(harness_best(&groups[0].1).2, Some(2500.0));
        assert!(harness_graphed(&grouped(&rows[2..])).is_none());
    }

    #[test]
    fn a_folder_without_results_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = BenchResults::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no machine.txt") && e.contains(&dir.path().display().to_string()), "{e}");
        std::fs::write(dir.path().join("throughput.jsonl"), "{\"arch\": 1}\n").unwrap();
        let e = BenchResults::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("throughput.jsonl line 1"), "{e}");
        let e = BenchResults::load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("no such folder"), "{e}");
    }
}
