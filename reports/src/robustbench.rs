//! RobustBench interop without libtorch (issue 23): its L∞ leaderboards as published anchors,
//! a candidate's place among them, and its model cards out.
//!
//! **Anchors.** The model cards of RobustBench's `model_info/{cifar10,cifar100}/Linf/` are public
//! data; `fixtures/published/robustbench/<dataset>-Linf.json` holds them verbatim with the
//! repository commit they were read at (`extract.py` beside them regenerates the files), compiled
//! in here. [`leaderboard`] reads one, each card's accuracy strings parsed as percentages.
//!
//! **Protocol.** A number is comparable with the leaderboard only when it was measured as
//! RobustBench measures: AutoAttack standard on all 10,000 test images of CIFAR-10 or CIFAR-100
//! at L∞ eps 8/255 ([`protocol`], which says every way an evaluation departs from it).
//!
//! **Placement.** [`place`] ranks such an evaluation among the leaderboard as RobustBench orders
//! it — by the `external` robust accuracy where a card has one (an evaluation stronger than
//! AutoAttack, by the authors or others), else by AutoAttack's — with the difference to each
//! entry and whether it exceeds the binomial error of two 10,000-image evaluations:
//! |Δ| > 1.96·√(p₁(1−p₁)/N + p₂(1−p₂)/N), N = 10,000. Entries RobustBench flags `unreliable`
//! are shown as such.
//!
//! **Cards out.** [`model_card`] writes RobustBench's `ModelInfo` fields
//! (`robustbench/utils.py`, 1.1.1) with the strings its cards use: `eps` "8/255", accuracies
//! in percent with two decimals, the footnote naming the registry's evaluation key, model digest
//! and config hash.

use infoat_registry::{ArchId, AttackId, DatasetId, EvalRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// RobustBench's L∞ radius for CIFAR-10 and CIFAR-100.
pub const EPS: f64 = 8.0 / 255.0;
/// How RobustBench's cards spell [`EPS`].
pub const EPS_TEXT: &str = "8/255";
/// The test-set size RobustBench evaluates on (CIFAR-10 and CIFAR-100).
pub const TEST_IMAGES: usize = 10_000;

/// The shipped leaderboard files, by dataset.
const FILES: [(DatasetId, &str, &str); 2] = [
    (
        DatasetId::Cifar10,
        "fixtures/published/robustbench/cifar10-Linf.json",
        include_str!("../../fixtures/published/robustbench/cifar10-Linf.json"),
    ),
    (
        DatasetId::Cifar100,
        "fixtures/published/robustbench/cifar100-Linf.json",
        include_str!("../../fixtures/published/robustbench/cifar100-Linf.json"),
    ),
];

/// One leaderboard entry, its accuracies in percent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// RobustBench's model name (the card's file stem), e.g. `Gowal2020Uncovering_70_16`.
    pub model: String,
    /// The paper's title.
    pub name: String,
    /// The architecture, as the card says it.
    pub architecture: String,
    /// Trained with data beyond the training set.
    pub additional_data: bool,
    /// Clean accuracy.
    pub clean: f64,
    /// AutoAttack accuracy (the leaderboard's ranking number).
    pub autoattack: f64,
    /// The robust accuracy the paper reports.
    pub reported: Option<f64>,
    /// A lower robust accuracy found by another evaluation than AutoAttack.
    pub external: Option<f64>,
    /// RobustBench doubts the evaluation.
    pub unreliable: bool,
    /// The card's eps as written (`8/255`; a few older cards say `0.031`).
    pub eps: String,
}

/// A dataset's shipped leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leaderboard {
    /// The dataset.
    pub dataset: DatasetId,
    /// The repository the cards were read from.
    pub source: String,
    /// Its commit.
    pub commit: String,
    /// The commit's date.
    pub commit_date: String,
    /// The folder of the cards in the repository.
    pub path: String,
    /// The entries, as the files list them (by model name).
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct File {
    source: String,
    commit: String,
    commit_date: String,
    path: String,
    entries: Vec<FileEntry>,
}

#[derive(Deserialize)]
struct FileEntry {
    model: String,
    card: serde_json::Map<String, Value>,
}

fn parse(dataset: DatasetId, path: &str, text: &str) -> Result<Leaderboard> {
    let bad = |message: String| Error::File { path: path.into(), message };
    let file: File = serde_json::from_str(text).map_err(|e| bad(format!("not a leaderboard file: {e}")))?;
    let mut entries = Vec::with_capacity(file.entries.len());
    for e in file.entries {
        let text_of = |key: &str| e.card.get(key).and_then(Value::as_str).map(str::trim).map(str::to_string);
        let percent = |key: &str| -> Result<Option<f64>> {
            match e.card.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                    bad(format!("model {}: {key} is '{s}', expected a percentage such as \"57.20\"", e.model))
                }),
                Some(other) => Err(bad(format!("model {}: {key} is {other}, expected a string", e.model))),
            }
        };
        let required =
            |key: &str| -> Result<f64> { percent(key)?.ok_or_else(|| bad(format!("model {} has no {key}", e.model))) };
        entries.push(Entry {
            name: text_of("name").unwrap_or_default(),
            architecture: text_of("architecture").unwrap_or_default(),
            additional_data: e.card.get("additional_data").and_then(Value::as_bool).unwrap_or(false),
            clean: required("clean_acc")?,
            autoattack: required("autoattack_acc")?,
            reported: percent("reported")?,
            external: percent("external")?,
            unreliable: e.card.get("unreliable").and_then(Value::as_bool).unwrap_or(false),
            eps: text_of("eps").unwrap_or_default(),
            model: e.model,
        });
    }
    Ok(Leaderboard {
        dataset,
        source: file.source,
        commit: file.commit,
        commit_date: file.commit_date,
        path: file.path,
        entries,
    })
}

/// The shipped L∞ leaderboard of `dataset`; `None` for a dataset RobustBench ranks no L∞
/// models of at this size (MNIST, Fashion-MNIST, SVHN).
pub fn leaderboard(dataset: DatasetId) -> Result<Option<Leaderboard>> {
    FILES.iter().find(|(d, ..)| *d == dataset).map(|(d, path, text)| parse(*d, path, text)).transpose()
}

/// An evaluation that followed RobustBench's protocol: its numbers in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conforming {
    /// The dataset (CIFAR-10 or CIFAR-100).
    pub dataset: DatasetId,
    /// Clean accuracy on the 10,000 test images.
    pub clean: f64,
    /// AutoAttack (standard) accuracy on them.
    pub autoattack: f64,
}

/// The evaluation's dataset, as its record names it.
pub fn dataset_of(record: &EvalRecord) -> Option<DatasetId> {
    record.data.get("dataset").and_then(Value::as_str).and_then(|d| d.parse().ok())
}

/// Whether `record` followed RobustBench's protocol (module docs); `Err` lists every departure,
/// each a sentence saying what the leaderboard needs and how to get it.
pub fn protocol(record: &EvalRecord) -> std::result::Result<Conforming, Vec<String>> {
    let mut why = Vec::new();
    let dataset = dataset_of(record);
    match dataset {
        Some(DatasetId::Cifar10 | DatasetId::Cifar100) => {}
        other => why.push(format!(
            "RobustBench's L∞ leaderboards shipped here are CIFAR-10's and CIFAR-100's; this evaluation is on {}",
            other.map_or("an unknown dataset", DatasetId::label)
        )),
    }
    let (clean_n, attacked_n) = record.key.subset.split_once('/').unwrap_or((&record.key.subset, &record.key.subset));
    if clean_n != TEST_IMAGES.to_string() || attacked_n != TEST_IMAGES.to_string() {
        why.push(format!(
            "the leaderboard evaluates all {TEST_IMAGES} test images, clean and under attack; this evaluation used \
             {clean_n} clean and {attacked_n} attacked (evaluate without --n)"
        ));
    }
    let aa = record.attacks.get(AttackId::Aa.name());
    if aa.is_none() {
        why.push(format!(
            "the leaderboard's number is AutoAttack standard's; this evaluation ran {} (add --attacks aa)",
            if record.attacks.is_empty() {
                "no attack".to_string()
            } else {
                record.attacks.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let eps = crate::observations::suite_eps(record);
    if (eps - EPS).abs() > 1e-9 {
        why.push(format!(
            "the leaderboard's L∞ eps is {EPS_TEXT}; this evaluation used {eps:.6} ({:.2}/255; evaluate with the \
             dataset's default eps)",
            eps * 255.0
        ));
    }
    match (dataset, aa) {
        (Some(dataset), Some(aa)) if why.is_empty() => {
            Ok(Conforming { dataset, clean: 100.0 * record.clean_acc, autoattack: 100.0 * aa.robust_acc })
        }
        _ => Err(why),
    }
}

/// Two decimals, as RobustBench's cards write accuracies.
fn two_decimals(v: f64) -> String {
    format!("{v:.2}")
}

/// How RobustBench's cards name an architecture.
pub fn architecture_label(arch: ArchId) -> &'static str {
    match arch {
        ArchId::SmallCnn => "SmallCNN",
        ArchId::ResNet18 => "ResNet-18",
        ArchId::PreActResNet18 | ArchId::DmPreActResNet18 => "PreActResNet-18",
        ArchId::Wrn28x10 | ArchId::DmWrn28x10 => "WideResNet-28-10",
        ArchId::Wrn34x10 => "WideResNet-34-10",
        ArchId::Wrn34x15 => "WideResNet-34-15",
        ArchId::Wrn34x20 | ArchId::DmWrn34x20 => "WideResNet-34-20",
        ArchId::Wrn70x16 | ArchId::DmWrn70x16 => "WideResNet-70-16",
        ArchId::DmWrn106x16 => "WideResNet-106-16",
    }
}

/// A RobustBench model card: `robustbench.utils.ModelInfo`'s fields in the order its cards
/// list them, with its cards' string conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Where the paper is.
    pub link: String,
    /// The paper's title.
    pub name: String,
    /// The authors.
    pub authors: String,
    /// Trained with data beyond the training set.
    pub additional_data: bool,
    /// Forward passes per prediction (1: a plain classifier).
    pub number_forward_passes: u32,
    /// `cifar10` or `cifar100`.
    pub dataset: String,
    /// Where and when the paper appeared.
    pub venue: String,
    /// The architecture, as RobustBench names it.
    pub architecture: String,
    /// The radius, `8/255`.
    pub eps: String,
    /// Clean accuracy in percent, two decimals.
    pub clean_acc: String,
    /// The robust accuracy the paper reports, in percent, two decimals.
    pub reported: String,
    /// AutoAttack accuracy in percent, two decimals.
    pub autoattack_acc: String,
    /// How the numbers were obtained: the harness, the registry's hashes.
    pub footnote: String,
}

/// What a model card needs beyond the evaluation: the paper's details.
#[derive(Debug, Clone, Default)]
pub struct CardDetails {
    /// The paper's title [default: the model's label].
    pub name: Option<String>,
    /// The authors.
    pub authors: Option<String>,
    /// Where the paper is.
    pub link: Option<String>,
    /// Where and when it appeared.
    pub venue: Option<String>,
    /// The reported robust accuracy in percent [default: the measured AutoAttack accuracy].
    pub reported: Option<f64>,
    /// Trained with additional data.
    pub additional_data: bool,
}

/// The model card of `record`, refused (with every reason) unless the evaluation followed
/// RobustBench's protocol. `label` names the model when the details give no title.
pub fn model_card(record: &EvalRecord, label: &str, details: &CardDetails) -> Result<ModelCard> {
    let ok = protocol(record).map_err(|why| {
        Error::Invalid(format!(
            "not exported: the evaluation does not follow RobustBench's protocol: {}",
            why.join("; ")
        ))
    })?;
    let key = record.key.hash()?.to_hex();
    let arch = record.model.get("arch").and_then(Value::as_str).and_then(|a| a.parse::<ArchId>().ok());
    let data = record.key.data.rsplit('/').next().unwrap_or_default();
    let mut footnote = format!(
        "Evaluated with infoat {} (AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square) on all {TEST_IMAGES} {} test images (data sha256 {data}). infoat evaluation key {key}; model digest {}",
        record.env.harness_version,
        ok.dataset.label(),
        record.key.model_hash.to_hex(),
    );
    if let Some(h) = record.config_hash {
        footnote.push_str(&format!("; run config {}", h.to_hex()));
    }
    footnote.push('.');
    if !record.sanity.is_empty() {
        let checks: Vec<String> = record.sanity.iter().map(|f| f.check.to_string()).collect();
        footnote.push_str(&format!(" Sanity checks flagged: {}.", checks.join(", ")));
    }
    Ok(ModelCard {
        link: details.link.clone().unwrap_or_default(),
        name: details.name.clone().unwrap_or_else(|| label.to_string()),
        authors: details.authors.clone().unwrap_or_default(),
        additional_data: details.additional_data,
        number_forward_passes: 1,
        dataset: ok.dataset.name().to_string(),
        venue: details.venue.clone().unwrap_or_default(),
        architecture: arch.map_or("unknown (TorchScript)", architecture_label).to_string(),
        eps: EPS_TEXT.to_string(),
        clean_acc: two_decimals(ok.clean),
        reported: two_decimals(details.reported.unwrap_or(ok.autoattack)),
        autoattack_acc: two_decimals(ok.autoattack),
        footnote,
    })
}

/// One row of a placement.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementRow {
    /// Rank by [`PlacementRow::ranked_by`] (1 = most robust; ties share a rank), as RobustBench
    /// orders its leaderboard.
    pub rank: usize,
    /// RobustBench's model name, or the candidate's label.
    pub model: String,
    /// The architecture.
    pub architecture: String,
    /// Trained with additional data.
    pub additional_data: bool,
    /// Clean accuracy, percent.
    pub clean: f64,
    /// AutoAttack accuracy, percent.
    pub autoattack: f64,
    /// Candidate's AutoAttack accuracy − this entry's ranking accuracy
    /// ([`PlacementRow::ranked_by`]), in points (none for the candidate).
    pub diff: Option<f64>,
    /// |diff| exceeds the binomial error of two 10,000-image evaluations (module docs).
    pub exceeds_noise: bool,
    /// RobustBench flags the entry's evaluation as unreliable.
    pub unreliable: bool,
    /// A lower robust accuracy another evaluation found (RobustBench's `external`).
    pub external: Option<f64>,
    /// The entry's eps when its card does not say 8/255 (a few older cards say `0.031`).
    pub other_eps: Option<String>,
    /// This row is the candidate.
    pub candidate: bool,
}

impl PlacementRow {
    /// The accuracy RobustBench ranks by: the `external` evaluation's where there is one, else
    /// AutoAttack's (`ACC_FIELDS[Linf] = ("external", "autoattack_acc")` in robustbench 1.1.1's
    /// `utils.py`, read first-present by its leaderboard's sort key).
    pub fn ranked_by(&self) -> f64 {
        self.external.unwrap_or(self.autoattack)
    }
}

/// A candidate's place on a leaderboard.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    /// The dataset.
    pub dataset: DatasetId,
    /// Its label, e.g. "CIFAR-10".
    pub dataset_label: &'static str,
    /// Where the entries come from: repository, commit, date, folder.
    pub source: String,
    /// The commit the cards were read at.
    pub commit: String,
    /// The candidate's rank (1 = most robust) …
    pub rank: usize,
    /// … among this many models, the candidate included.
    pub of: usize,
    /// 1.96 binomial standard errors of a difference at the candidate's accuracy, in points.
    pub noise: f64,
    /// Every entry and the candidate, by rank.
    pub rows: Vec<PlacementRow>,
}

/// Whether a difference between two 10,000-image accuracies (percent) exceeds their binomial
/// error at 5 %.
fn exceeds_noise(a: f64, b: f64) -> bool {
    (a - b).abs() > noise_band(a, b)
}

fn noise_band(a: f64, b: f64) -> f64 {
    let var = |p: f64| (p / 100.0) * (1.0 - p / 100.0) / TEST_IMAGES as f64;
    100.0 * 1.96 * (var(a) + var(b)).sqrt()
}

/// Ranks the evaluation `record` (labelled `label`, of architecture `architecture`) among its
/// dataset's leaderboard; `Ok(Err(reasons))` when it did not follow the protocol or no
/// leaderboard is shipped for its dataset.
pub fn place(
    record: &EvalRecord,
    label: &str,
    architecture: &str,
) -> Result<std::result::Result<Placement, Vec<String>>> {
    let ok = match protocol(record) {
        Ok(ok) => ok,
        Err(why) => return Ok(Err(why)),
    };
    let Some(board) = leaderboard(ok.dataset)? else {
        return Ok(Err(vec![format!("no leaderboard of {} is shipped", ok.dataset.label())]));
    };
    let mut rows: Vec<PlacementRow> = board
        .entries
        .iter()
        .map(|e| PlacementRow {
            rank: 0,
            model: e.model.clone(),
            architecture: e.architecture.clone(),
            additional_data: e.additional_data,
            clean: e.clean,
            autoattack: e.autoattack,
            diff: Some(ok.autoattack - e.external.unwrap_or(e.autoattack)),
            exceeds_noise: exceeds_noise(ok.autoattack, e.external.unwrap_or(e.autoattack)),
            unreliable: e.unreliable,
            external: e.external,
            other_eps: (e.eps != EPS_TEXT).then(|| e.eps.clone()),
            candidate: false,
        })
        .collect();
    rows.push(PlacementRow {
        rank: 0,
        model: label.to_string(),
        architecture: architecture.to_string(),
        additional_data: false,
        clean: ok.clean,
        autoattack: ok.autoattack,
        diff: None,
        exceeds_noise: false,
        unreliable: false,
        external: None,
        other_eps: None,
        candidate: true,
    });
    let ranks: Vec<usize> =
        rows.iter().map(|r| 1 + rows.iter().filter(|o| o.ranked_by() > r.ranked_by() + 1e-9).count()).collect();
    for (row, rank) in rows.iter_mut().zip(ranks) {
        row.rank = rank;
    }
    rows.sort_by(|a, b| a.rank.cmp(&b.rank).then(b.candidate.cmp(&a.candidate)).then(a.model.cmp(&b.model)));
    let rank = rows.iter().find(|r| r.candidate).map_or(0, |r| r.rank);
    Ok(Ok(Placement {
        dataset: ok.dataset,
        dataset_label: ok.dataset.label(),
        source: format!(
            "{} at {} ({}), {}",
            board.source,
            &board.commit[..12.min(board.commit.len())],
            board.commit_date,
            board.path
        ),
        commit: board.commit,
        rank,
        of: rows.len(),
        noise: noise_band(ok.autoattack, ok.autoattack),
        rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_leaderboards_parse_with_their_commit() {
        let c10 = leaderboard(DatasetId::Cifar10).unwrap().unwrap();
        let c100 = leaderboard(DatasetId::Cifar100).unwrap().unwrap();
        assert_eq!(c10.commit.len(), 40);
        assert!(c10.entries.len() >= 90 && c100.entries.len() >= 30, "{} {}", c10.entries.len(), c100.entries.len());
        let gowal = c10.entries.iter().find(|e| e.model == "Gowal2020Uncovering_70_16").unwrap();
        assert_eq!((gowal.clean, gowal.autoattack, gowal.external), (85.29, 57.20, Some(57.14)));
        assert_eq!(gowal.architecture, "WideResNet-70-16");
        assert!(c10.entries.iter().any(|e| e.unreliable));
        for e in c10.entries.iter().chain(&c100.entries) {
            assert!(e.autoattack <= e.clean && e.clean <= 100.0, "{}", e.model);
        }
        assert!(leaderboard(DatasetId::Mnist).unwrap().is_none());
    }

    #[test]
    fn the_noise_band_is_the_binomial_error_of_two_evaluations() {
        // p = 0.5 on 10,000 images: se 0.5 points each, 1.96·√2·0.5 = 1.386 points.
        assert!((noise_band(50.0, 50.0) - 1.3859).abs() < 1e-3);
        assert!(exceeds_noise(57.2, 55.7) && !exceeds_noise(57.2, 56.0));
    }
}
