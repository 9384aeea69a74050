//! Issue 5 "Scale": a registry holding 100,000 evaluation records must list and load all of
//! them for a report in under 2 seconds. Run with `cargo bench -p infoat-registry`.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use infoat_registry::records::{new_attempt, pack_flags};
use infoat_registry::{AttackResult, ContentHash, Environment, EvalFlags, EvalKey, EvalRecord, Hasher, Registry};
use serde_json::json;

const RECORDS: usize = 100_000;

fn hash(i: u64, domain: &str) -> ContentHash {
    let mut h = Hasher::new(domain);
    h.u64(i);
    h.finish()
}

fn record(i: u64) -> EvalRecord {
    let attacks: BTreeMap<String, AttackResult> = ["fgsm", "pgd20", "pgd100", "cw20", "aa"]
        .iter()
        .map(|id| {
            (
                id.to_string(),
                AttackResult {
                    robust_acc: 0.5,
                    correct: 250,
                    total: 500,
                    eps: 0.3,
                    seconds: 12.5,
                    forward_passes: Some(21.0),
                    adbd: None,
                    witnessed: None,
                    backward_passes: None,
                    diagnostics: None,
                    stages: None,
                },
            )
        })
        .collect();
    EvalRecord {
        key: EvalKey {
            model_hash: hash(i / 4, "model"),
            suite_hash: hash(i % 4, "suite"),
            data: format!("mnist/test/{}", hash(0, "data")),
            subset: "10000/500".into(),
            seed: i % 3,
        },
        attempt: new_attempt(),
        eval_semver: "1.0.0".into(),
        model: json!({"source": "run", "path": "/registry/blobs/ab/abcd.safetensors", "arch": "smallcnn"}),
        config_hash: Some(hash(i / 4, "config")),
        suite: json!({"attacks": ["fgsm", "pgd20", "pgd100", "cw20", "aa"], "eps": 0.3, "batch_size": 500}),
        data: json!({"dataset": "mnist", "dir": "/data/mnist", "split": "test", "images": 10000}),
        n: 10_000,
        clean_acc: 0.98,
        attacks,
        worst_case_acc: Some(0.45),
        sanity: vec![],
        witnesses: Default::default(),
        diagnostics: None,
        seconds: 60.0,
        finished_unix: 1_764_000_000,
        env: Environment {
            harness_version: "0.1.0".into(),
            git_commit: "0123456789ab".into(),
            libtorch: "2.11.0".into(),
            device: "cpu".into(),
            threads: 2,
            cudnn: None,
            gpu: None,
            os: "linux x86_64".into(),
            cpu: Some("Intel(R) Xeon(R)".into()),
            hostname: "bench".into(),
            numerics: None,
        },
    }
}

fn fill(root: &std::path::Path) {
    let reg = Registry::open(root).unwrap();
    let flags = pack_flags(&vec![true; 500]);
    let f = EvalFlags {
        clean: pack_flags(&vec![true; 10_000]),
        attacks: ["fgsm", "pgd20", "pgd100", "cw20", "aa"].iter().map(|id| (id.to_string(), flags.clone())).collect(),
        worst_case: flags.clone(),
    };
    reg.put_evals_bulk((0..RECORDS as u64).map(|i| (record(i), f.clone()))).unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let t = std::time::Instant::now();
    fill(&root);
    eprintln!("filled {RECORDS} eval records in {:.1} s", t.elapsed().as_secs_f64());
    let mut group = c.benchmark_group("registry");
    group.sample_size(10);
    group.bench_function("open_and_load_100k_eval_records", |b| {
        b.iter(|| {
            let reg = Registry::open(&root).unwrap();
            let evals = reg.evals().unwrap();
            assert_eq!(evals.len(), RECORDS);
            evals
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
