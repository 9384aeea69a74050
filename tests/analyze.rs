//! `infoat analyze` (issue 10): Fig. 1, 4 and 5 on a trained run, recorded in the registry
//! (asked again, found, not recomputed), written as SVG and drawn in `infoat report --all`.

use infoat_tests::{infoat, stdout_json, tiny_config};

#[test]
#[ignore = "slow: ./ci/test runs it (cargo test -- --ignored)"]
fn analyses_are_recorded_reused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("c.toml"), tiny_config(2, 512)).unwrap();
    let trained = stdout_json(&infoat(d).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap());
    let hash = trained["record"]["config_hash"].as_str().unwrap()[..12].to_string();

    let run = |args: &[&str]| {
        let out = infoat(d).args(["--quiet", "analyze"]).args(args).args(["--run", &hash, "--json"]).output().unwrap();
        assert!(out.status.success(), "analyze {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        stdout_json(&out)
    };
    let f1 = run(&["fig1", "--n", "40"]);
    let rec = &f1["records"][0];
    assert_eq!(rec["figure"], "fig1");
    assert_eq!(rec["params"]["n"], 40);
    assert_eq!(rec["params"]["eps_hi"], 0.6, "twice MNIST's eps 0.3");
    let r = &rec["result"];
    let cc = r["clean_correct"].as_u64().unwrap() as usize;
    assert_eq!(r["entropy"].as_array().unwrap().len(), cc);
    assert!(r["min_eps"].as_array().unwrap().iter().all(|e| (0.0..=0.6).contains(&e.as_f64().unwrap())));
    let svg = std::fs::read_to_string(
        d.join(format!("out/fig1-{}.svg", &trained["record"]["config_hash"].as_str().unwrap()[..12])),
    )
    .unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Fig. 1(a)") && svg.contains("Fig. 1(b)"));

    // Asked again: the same record (same seconds, not recomputed).
    let again = run(&["fig1", "--n", "40"]);
    assert_eq!(again["records"][0], f1["records"][0]);

    let f4 = run(&["fig4", "--n", "16", "--points", "5", "--steps", "3"]);
    assert_eq!(f4["records"][0]["result"]["alphas"], serde_json::json!([-1.0, -0.5, 0.0, 0.5, 1.0]));
    let f5 = run(&["fig5", "--examples", "3,1", "--points", "7"]);
    let ex = &f5["records"][0]["result"]["examples"];
    assert_eq!(ex[0]["index"], 3);
    assert_eq!(ex[0]["loss"].as_array().unwrap().len(), 7);

    // The registry keeps them (bundles carry them) and the report draws them.
    let out = infoat(d).args(["report", "--all", "--format", "html", "--out", "rep"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(d.join("rep/tables.html")).unwrap();
    for needle in ["Analyses (the paper", "Fig. 1 — entropy", "Fig. 4 — weight loss landscape", "Fig. 5 — input loss"]
    {
        assert!(html.contains(needle), "{needle} missing from the report");
    }
    let out = infoat(d).args(["registry", "export", "bundle"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = std::fs::read_to_string(d.join("bundle/records.jsonl")).unwrap();
    assert_eq!(lines.lines().filter(|l| l.contains(r#""kind":"analysis""#)).count(), 3);
    let other = tempfile::tempdir().unwrap();
    let out = infoat(other.path()).args(["registry", "import"]).arg(d.join("bundle")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verify = infoat(other.path()).args(["registry", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
