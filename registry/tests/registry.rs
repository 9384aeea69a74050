//! The registry's behaviour through its public API: records, blobs, verification, bundles
//! (with planted faults), merges, garbage collection and the one-writer lock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use infoat_registry::records::{new_attempt, pack_flags};
use infoat_registry::{
    AttackResult, ContentHash, Environment, EpochRecord, Error, EvalFlags, EvalKey, EvalRecord, PublishedRecord,
    Registry, RunRecord, RunStatus,
};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

fn checkpoint(values: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![values.len()], &data).unwrap();
    safetensors::tensor::serialize(vec![("w".to_string(), view)], &Some(HashMap::new())).unwrap()
}

fn env() -> Environment {
    Environment {
        harness_version: "0.1.0".into(),
        git_commit: "abc".into(),
        libtorch: "2.11.0".into(),
        device: "cpu".into(),
        threads: 2,
        cudnn: None,
        gpu: None,
        os: "linux x86_64".into(),
        cpu: None,
        hostname: "test".into(),
        numerics: None,
    }
}

fn config_hash(i: u8) -> ContentHash {
    format!("{i:02x}").repeat(32).parse().unwrap()
}

fn run(reg: &Registry, i: u8, complete: bool) -> RunRecord {
    let hash = if complete {
        Some(reg.blobs().put_bytes(&checkpoint(&[f32::from(i), 1.0]), Path::new("x")).unwrap())
    } else {
        None
    };
    RunRecord {
        config_hash: config_hash(i),
        attempt: new_attempt(),
        config: json!({"seed": i}),
        training_semver: "1.0.0".into(),
        status: if complete { RunStatus::Complete } else { RunStatus::Running },
        epochs: vec![EpochRecord { epoch: 1, metrics: BTreeMap::from([("loss".into(), 0.5)]), checkpoint_hash: hash }],
        checkpoint_hash: hash,
        data: json!({"dataset": "mnist"}),
        started_unix: 1,
        finished_unix: complete.then_some(2),
        seconds: 1.0,
        env: env(),
    }
}

fn eval(model: ContentHash, seed: u64) -> (EvalRecord, EvalFlags) {
    let key = EvalKey {
        model_hash: model,
        suite_hash: config_hash(0xee),
        data: "mnist/test/ff".into(),
        subset: "10/10".into(),
        seed,
    };
    let flags = [true, true, false, true, false, false, true, true, true, false];
    let rec = EvalRecord {
        key,
        attempt: new_attempt(),
        eval_semver: "1.0.0".into(),
        model: json!({"source": "run"}),
        config_hash: None,
        suite: json!({"attacks": ["pgd20"], "eps": 0.3}),
        data: json!({"dataset": "mnist"}),
        n: 10,
        clean_acc: 0.6,
        attacks: BTreeMap::from([(
            "pgd20".into(),
            AttackResult {
                robust_acc: 0.4,
                correct: 4,
                total: 10,
                eps: 0.3,
                seconds: 1.0,
                forward_passes: None,
                adbd: None,
                witnessed: None,
                backward_passes: None,
                diagnostics: None,
                stages: None,
            },
        )]),
        worst_case_acc: Some(0.4),
        sanity: vec![],
        witnesses: Default::default(),
        diagnostics: None,
        seconds: 1.0,
        finished_unix: 3,
        env: env(),
    };
    let f = EvalFlags {
        clean: pack_flags(&flags),
        attacks: BTreeMap::from([("pgd20".into(), pack_flags(&flags[..]))]),
        worst_case: pack_flags(&flags),
    };
    (rec, f)
}

#[test]
fn records_persist_and_completeness_needs_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let (done, running);
    {
        let reg = Registry::open(&root).unwrap();
        done = run(&reg, 1, true);
        reg.put_run(&done).unwrap();
        running = run(&reg, 2, false);
        reg.put_run(&running).unwrap();

        // A completeness claim without its blob is refused.
        let mut liar = run(&reg, 3, false);
        liar.status = RunStatus::Complete;
        liar.checkpoint_hash = Some(config_hash(0x99));
        assert!(matches!(reg.put_run(&liar), Err(Error::MissingBlob { .. })));

        // A forced rerun is a second attempt: both kept.
        let mut again = done.clone();
        again.attempt = new_attempt();
        reg.put_run(&again).unwrap();
        assert_eq!(reg.runs_of(&done.config_hash).unwrap().len(), 2);
        let (e, f) = eval(done.checkpoint_hash.unwrap(), 0);
        reg.put_eval(&e, &f).unwrap();
        reg.put_published(&PublishedRecord {
            paper: "infoat".into(),
            table: "II".into(),
            row: "InfoAT".into(),
            column: "PGD-20".into(),
            dataset: "cifar10".into(),
            arch: "resnet18".into(),
            method: "infoat".into(),
            metric: "pgd20".into(),
            value: 0.55,
        })
        .unwrap();
    }
    let reg = Registry::open(&root).unwrap();
    assert_eq!(reg.runs().unwrap().len(), 3);
    let found = reg.complete_run(&done.config_hash, "1.0.0").unwrap().unwrap();
    assert_eq!(found.checkpoint_hash, done.checkpoint_hash);
    assert!(reg.complete_run(&done.config_hash, "2.0.0").unwrap().is_none(), "another semver is another result");
    assert!(reg.complete_run(&running.config_hash, "1.0.0").unwrap().is_none());
    assert_eq!(reg.runs_with_prefix(&config_hash(2).to_hex()[..6]).unwrap()[0].status, RunStatus::Running);
    let (e, f) = eval(done.checkpoint_hash.unwrap(), 0);
    let got = reg.find_eval(&e.key.hash().unwrap(), "1.0.0").unwrap().unwrap();
    assert_eq!(got.attacks["pgd20"].correct, 4);
    assert_eq!(reg.eval_flags(&got).unwrap().unwrap().clean, f.clean);
    assert!(reg.find_eval(&eval(done.checkpoint_hash.unwrap(), 1).0.key.hash().unwrap(), "1.0.0").unwrap().is_none());
    assert_eq!(reg.published().unwrap().len(), 1);

    // A blob that rots on disk: the complete run no longer counts, verify reports it, nothing
    // is deleted.
    let blob = reg.blobs().path(&done.checkpoint_hash.unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&blob, &bytes).unwrap();
    assert!(reg.complete_run(&done.config_hash, "1.0.0").unwrap().is_none());
    let report = reg.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("corrupt"), "{report:?}");
    assert!(blob.exists());
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _a = Registry::open(dir.path()).unwrap();
    let err = Registry::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("pid"), "{err}");
}

#[test]
fn export_import_is_idempotent_and_refuses_planted_faults() {
    let dir = tempfile::tempdir().unwrap();
    let a = Registry::open(dir.path().join("a")).unwrap();
    let r1 = run(&a, 1, true);
    let r2 = run(&a, 2, true);
    let r3 = run(&a, 3, false);
    for r in [&r1, &r2, &r3] {
        a.put_run(r).unwrap();
    }
    let (e, f) = eval(r1.checkpoint_hash.unwrap(), 0);
    a.put_eval(&e, &f).unwrap();
    let bundle = dir.path().join("bundle");
    let (records, blobs) = a.export(&bundle).unwrap();
    assert_eq!((records, blobs), (5, 2));
    assert!(a.export(&bundle).is_err(), "export refuses a non-empty folder");

    let b = Registry::open(dir.path().join("b")).unwrap();
    let first = b.import(&bundle).unwrap();
    assert_eq!((first.added, first.identical, first.blobs_added), (5, 0, 2), "{first:?}");
    assert!(first.rejected.is_empty() && first.conflicts.is_empty(), "{first:?}");
    let second = b.import(&bundle).unwrap();
    assert_eq!((second.added, second.identical, second.blobs_added), (0, 5, 0), "{second:?}");
    assert_eq!(b.runs().unwrap(), a.runs().unwrap());
    assert_eq!(b.evals().unwrap(), a.evals().unwrap());

    // Plant faults in a copy of the bundle.
    let evil = dir.path().join("evil");
    std::fs::create_dir_all(evil.join("blobs")).unwrap();
    std::fs::copy(bundle.join("MANIFEST.json"), evil.join("MANIFEST.json")).unwrap();
    let h1 = r1.checkpoint_hash.unwrap().to_hex();
    let h2 = r2.checkpoint_hash.unwrap().to_hex();
    // r1's blob under r2's name (contents do not match the name).
    std::fs::copy(bundle.join(format!("blobs/{h1}.safetensors")), evil.join(format!("blobs/{h2}.safetensors")))
        .unwrap();
    // A link and a stray file.
    std::os::unix::fs::symlink("/etc/passwd", evil.join(format!("blobs/{}.safetensors", "0".repeat(64)))).unwrap();
    std::fs::write(evil.join("blobs/readme.txt"), b"hi").unwrap();
    // Records: r2 claims completeness with no valid blob; a conflicting version of r3;
    // a line that is not JSON; a record whose key lies.
    let mut lines = Vec::new();
    let v = |r: &RunRecord| serde_json::to_value(r).unwrap();
    infoat_registry::bundle::write_line(&mut lines, "run", &r2.key(), &v(&r2)).unwrap();
    let mut r3b = r3.clone();
    r3b.seconds = 99.0;
    infoat_registry::bundle::write_line(&mut lines, "run", &r3.key(), &v(&r3b)).unwrap();
    lines.extend_from_slice(b"{not json\n");
    infoat_registry::bundle::write_line(&mut lines, "run", "ffff/x", &v(&r3)).unwrap();
    infoat_registry::bundle::write_line(&mut lines, "mystery", "k", &json!({})).unwrap();
    std::fs::write(evil.join("records.jsonl"), &lines).unwrap();

    let c = Registry::open(dir.path().join("c")).unwrap();
    c.put_run(&r3).unwrap();
    let report = c.import(&evil).unwrap();
    assert_eq!(report.added, 0, "{report:?}");
    assert_eq!(report.blobs_added, 0, "{report:?}");
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    // wrong-content blob, link, stray file, r2 without blob, bad line, lying key, unknown kind
    assert_eq!(report.rejected.len(), 7, "{report:#?}");
    assert!(!c.blobs().contains(&r2.checkpoint_hash.unwrap()));
    // Both versions of r3 are kept; the original is untouched.
    let kept = c.runs_of(&r3.config_hash).unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().any(|r| r == &r3) && kept.iter().any(|r| r == &r3b));

    let mut bad_manifest = std::fs::read_to_string(evil.join("MANIFEST.json")).unwrap();
    bad_manifest = bad_manifest.replace("infoat-bundle-v1", "something-else");
    std::fs::write(evil.join("MANIFEST.json"), bad_manifest).unwrap();
    let err = c.import(&evil).unwrap_err();
    assert!(err.to_string().contains("infoat-bundle-v1"), "{err}");
}

#[test]
fn merge_combines_shards_and_gc_drops_only_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let shard_root = dir.path().join("shard");
    {
        let shard = Registry::open(&shard_root).unwrap();
        shard.put_run(&run(&shard, 7, true)).unwrap();
    }
    let main = Registry::open(dir.path().join("main")).unwrap();
    main.put_run(&run(&main, 8, true)).unwrap();
    let report = main.merge(&shard_root).unwrap();
    assert_eq!((report.added, report.blobs_added), (1, 1), "{report:?}");
    assert_eq!(main.merge(&shard_root).unwrap().added, 0);
    assert_eq!(main.runs().unwrap().len(), 2);
    assert!(main.merge(main.root()).is_err());

    let stray = main.blobs().put_bytes(&checkpoint(&[42.0]), Path::new("stray")).unwrap();
    let gc = main.gc().unwrap();
    assert_eq!(gc.removed, vec![stray]);
    assert_eq!(gc.kept, 2);
    assert!(main.verify().unwrap().problems.is_empty());
}

/// A record reads back with exactly the floats that were written, also those whose shortest
/// decimal form has 17 digits (serde_json's default parser can be off by one bit there).
#[test]
fn floats_read_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let (mut e, f) = eval(config_hash(0x51), 0);
    let values = [2.9549780869999998, 0.1 + 0.2, 1.0 / 3.0, 123.456_789_012_345_67, f64::MIN_POSITIVE];
    for (i, v) in values.iter().enumerate() {
        e.key.seed = i as u64;
        e.seconds = *v;
        reg.put_eval(&e, &f).unwrap();
    }
    let mut back: Vec<(u64, f64)> = reg.evals().unwrap().iter().map(|r| (r.key.seed, r.seconds)).collect();
    back.sort_by_key(|(s, _)| *s);
    for ((_, got), want) in back.iter().zip(values) {
        assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
    }
}
