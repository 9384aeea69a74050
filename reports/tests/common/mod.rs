//! What the reports tests share: reading fixture records, one `{"kind", "record"}` JSON object
//! per line as a registry bundle writes them.

use std::path::PathBuf;

use infoat_registry::{EvalRecord, RunRecord};
use serde_json::Value;

/// The run and evaluation records of `fixtures/reports/<name>`.
pub fn records(name: &str) -> (Vec<RunRecord>, Vec<EvalRecord>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reports").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut runs, mut evals) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["kind"].as_str().unwrap() {
            "run" => runs.push(serde_json::from_value(v["record"].clone()).unwrap()),
            "eval" => evals.push(serde_json::from_value(v["record"].clone()).unwrap()),
            other => panic!("unexpected record kind {other}"),
        }
    }
    (runs, evals)
}
