//! `infoat bench --summarize`'s Markdown, checked against what `ci/bench/summarize.py` (the
//! Python script this module replaced, issue 20) printed for the same folders: the committed
//! benchmark results under `docs/` and a synthetic folder that exercises every section
//! (CUDA graphs, profiles, failures, log lines among the JSON, bf16 ratios to fp32).

use std::path::PathBuf;

use infoat_reports::bench::{render_bench, BenchResults};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(dir: &str, expected: &str) {
    let mut r = BenchResults::load(&root().join(dir)).unwrap();
    r.dir = dir.to_string();
    let got = render_bench(&r).unwrap();
    let want = std::fs::read_to_string(root().join(expected)).unwrap();
    if got != want {
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "{dir}: line {} differs", i + 1);
        }
        assert_eq!(got, want, "{dir}: lengths differ");
    }
}

#[test]
fn h200_results_render_as_the_python_summary_did() {
    check("docs/gpu/2026-11-26-h200", "fixtures/bench/2026-11-26-h200.md");
}

#[test]
fn cpu_results_render_as_the_python_summary_did() {
    check("docs/cpu/2026-11-26-dev-vm-pool", "fixtures/bench/2026-11-26-dev-vm-pool.md");
    check("docs/cpu/2026-11-26-dev-vm-heap", "fixtures/bench/2026-11-26-dev-vm-heap.md");
}

#[test]
fn every_section_renders_as_the_python_summary_did() {
    check("fixtures/bench/synthetic", "fixtures/bench/synthetic.md");
}
