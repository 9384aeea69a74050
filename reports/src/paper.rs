//! Published numbers of the InfoAT paper, read from the transcribed tables in
//! `fixtures/paper/` (one CSV per table: key columns, then one column per metric).
//!
//! | table | file | keys |
//! |---|---|---|
//! | I (MINE layer × λ, ResNet-18 CIFAR-10) | `table1_mine_lambda.csv` | layer, lambda |
//! | II (white-box, ResNet-18) | `table2_whitebox_resnet18.csv` | dataset, arch, method |
//! | III (SPSA) | `table3_spsa.csv` | dataset, arch, method |
//! | IV (RayS) | `table4_rays.csv` | method, dataset, arch |
//! | V (white-box, WRN-34-10) | `table5_whitebox_wrn34_10.csv` | dataset, arch, method |
//! | VI (+500K unlabeled, WRN-28-10) | `table6_unlabeled_wrn28_10.csv` | dataset, arch, method |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use infoat_registry::PaperTable;

/// The transcription's file name under `fixtures/paper/`.
pub fn file_name(table: PaperTable) -> &'static str {
    match table {
        PaperTable::I => "table1_mine_lambda.csv",
        PaperTable::II => "table2_whitebox_resnet18.csv",
        PaperTable::III => "table3_spsa.csv",
        PaperTable::IV => "table4_rays.csv",
        PaperTable::V => "table5_whitebox_wrn34_10.csv",
        PaperTable::VI => "table6_unlabeled_wrn28_10.csv",
    }
}

/// The columns that identify a row of `table`; every other column is a metric.
pub fn key_columns(table: PaperTable) -> &'static [&'static str] {
    match table {
        PaperTable::I => &["layer", "lambda"],
        _ => &["dataset", "arch", "method"],
    }
}

/// One published number with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The table.
    pub table: PaperTable,
    /// 1-based data row in the transcription.
    pub row: usize,
    /// The row's key columns (dataset, arch, method, or layer, lambda).
    pub keys: BTreeMap<String, String>,
    /// The metric column (e.g. `natural`, `pgd20`, `aa`, `adbd`).
    pub metric: String,
    /// The number as published (accuracies in percent, ADBD as a distance).
    pub value: f64,
}

/// The folder of the committed transcriptions (`fixtures/paper/`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures").join("paper")
}

/// Reads one table's transcription from `dir`.
pub fn load_table(dir: &Path, table: PaperTable) -> Result<Vec<Published>> {
    let path = dir.join(file_name(table));
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::File { path: path.clone(), message: e.to_string() })?;
    parse_table(&text, &path, table)
}

/// The transcriptions compiled into the binary, so the published numbers travel with it.
const EMBEDDED: [(PaperTable, &str); 6] = [
    (PaperTable::I, include_str!("../../fixtures/paper/table1_mine_lambda.csv")),
    (PaperTable::II, include_str!("../../fixtures/paper/table2_whitebox_resnet18.csv")),
    (PaperTable::III, include_str!("../../fixtures/paper/table3_spsa.csv")),
    (PaperTable::IV, include_str!("../../fixtures/paper/table4_rays.csv")),
    (PaperTable::V, include_str!("../../fixtures/paper/table5_whitebox_wrn34_10.csv")),
    (PaperTable::VI, include_str!("../../fixtures/paper/table6_unlabeled_wrn28_10.csv")),
];

/// Every table's published numbers, from the copies compiled into the binary.
pub fn embedded() -> Result<Vec<Published>> {
    let mut all = Vec::new();
    for (table, text) in EMBEDDED {
        all.extend(parse_table(text, &Path::new("fixtures/paper").join(file_name(table)), table)?);
    }
    Ok(all)
}

impl Published {
    /// The registry record of this number: key `infoat-tnnls/<table>/<row keys>/<metric>`.
    pub fn to_record(&self) -> infoat_registry::PublishedRecord {
        let key = |k: &str| self.keys.get(k).cloned().unwrap_or_default();
        let row: Vec<String> = key_columns(self.table).iter().map(|k| format!("{k}={}", key(k))).collect();
        infoat_registry::PublishedRecord {
            paper: "infoat-tnnls".into(),
            table: self.table.name().to_string(),
            row: row.join(","),
            column: self.metric.clone(),
            dataset: key("dataset"),
            arch: key("arch"),
            method: key("method"),
            metric: self.metric.clone(),
            value: self.value,
        }
    }
}

fn parse_table(text: &str, path: &Path, table: PaperTable) -> Result<Vec<Published>> {
    let path = path.to_path_buf();
    let file_err = |message: String| Error::File { path: path.clone(), message };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> =
        reader.headers().map_err(|e| file_err(e.to_string()))?.iter().map(str::to_string).collect();
    for key in key_columns(table) {
        if !headers.iter().any(|h| h == key) {
            return Err(file_err(format!("missing key column '{key}' (header is {headers:?})")));
        }
    }
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let row = i + 1;
        let rec = rec.map_err(|e| file_err(format!("row {row}: {e}")))?;
        let mut keys = BTreeMap::new();
        for (h, cell) in headers.iter().zip(rec.iter()) {
            if key_columns(table).contains(&h.as_str()) {
                keys.insert(h.clone(), cell.to_string());
                continue;
            }
            let value: f64 = cell.trim().parse().map_err(|_| Error::Cell {
                path: path.clone(),
                row,
                column: h.clone(),
                expected: "a number".into(),
                found: cell.to_string(),
            })?;
            if !value.is_finite() || value < 0.0 {
                return Err(Error::Cell {
                    path: path.clone(),
                    row,
                    column: h.clone(),
                    expected: "a finite non-negative number".into(),
                    found: cell.to_string(),
                });
            }
            out.push(Published { table, row, keys: BTreeMap::new(), metric: h.clone(), value });
        }
        for p in out.iter_mut().filter(|p| p.row == row && p.table == table) {
            p.keys = keys.clone();
        }
    }
    Ok(out)
}

/// Every table's published numbers from `dir`.
pub fn load_all(dir: &Path) -> Result<Vec<Published>> {
    let mut all = Vec::new();
    for t in PaperTable::ALL {
        all.extend(load_table(dir, t)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(all: &'a [Published], table: PaperTable, keys: &[(&str, &str)], metric: &str) -> &'a Published {
        all.iter()
            .find(|p| {
                p.table == table
                    && p.metric == metric
                    && keys.iter().all(|(k, v)| p.keys.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {table:?} {keys:?} {metric}"))
    }

    #[test]
    fn embedded_copies_equal_the_fixtures_and_become_registry_records() {
        let all = load_all(&fixtures_dir()).unwrap();
        assert_eq!(embedded().unwrap(), all);
        let rec = find(&all, PaperTable::II, &[("dataset", "CIFAR-10"), ("method", "AT")], "aa").to_record();
        assert_eq!(rec.table, "II");
        assert_eq!(rec.row, "dataset=CIFAR-10,arch=ResNet-18,method=AT");
        assert_eq!((rec.metric.as_str(), rec.value), ("aa", 47.25));
        let keys: std::collections::BTreeSet<String> = all.iter().map(|p| p.to_record().key()).collect();
        assert_eq!(keys.len(), all.len(), "record keys are unique");
    }

    #[test]
    fn transcriptions_load_with_their_sources() {
        let all = load_all(&fixtures_dir()).unwrap();
        let t2 = [("dataset", "CIFAR-10"), ("arch", "ResNet-18"), ("method", "InfoAT")];
        let p = find(&all, PaperTable::II, &t2, "natural");
        assert_eq!(p.value, 83.23);
        assert_eq!(find(&all, PaperTable::II, &t2, "aa").value, 49.67);
        assert_eq!(find(&all, PaperTable::VI, &[("method", "InfoAT")], "pgd20").value, 65.40);
        assert_eq!(find(&all, PaperTable::I, &[("layer", "1"), ("lambda", "0.5")], "pgd20").value, 56.71);
        // Table II: 18 rows x 10 metrics; Table I: 19 rows x 2 metrics.
        assert_eq!(all.iter().filter(|p| p.table == PaperTable::II).count(), 180);
        assert_eq!(all.iter().filter(|p| p.table == PaperTable::I).count(), 38);
        for p in &all {
            if p.metric != "adbd" {
                assert!(p.value <= 100.0, "{p:?}");
            }
        }
    }

    #[test]
    fn malformed_cells_are_named() {
        let dir = std::env::temp_dir().join(format!("infoat-paper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("table6_unlabeled_wrn28_10.csv"),
            "dataset,arch,method,natural,pgd20\nC,W,InfoAT,90.0,6S.4\n",
        )
        .unwrap();
        let e = load_table(&dir, PaperTable::VI).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("pgd20") && e.contains("6S.4"), "{e}");
        std::fs::write(dir.join("table6_unlabeled_wrn28_10.csv"), "dataset,arch,natural\nC,W,90.0\n").unwrap();
        let e = load_table(&dir, PaperTable::VI).unwrap_err().to_string();
        assert!(e.contains("method"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
