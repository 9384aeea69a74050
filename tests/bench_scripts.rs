//! The benchmark scripts of `ci/bench/` (issue 9) run and say what they claim: the PyTorch peer
//! times a step, and the kernel-ceiling script orders the works and reads a committed results
//! file. Tiny settings: these check the scripts, not the machine.

use infoat_tests::{infoat, infoat_bin, repo_python, repo_root, run_repo_python, torch_python};
use serde_json::Value;

fn script(name: &str, args: &[&str]) -> Vec<Value> {
    run_repo_python(&format!("ci/bench/{name}"), args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name} printed a non-JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn pytorch_peer_times_and_profiles_a_pgd_step() {
    let args = "--arch smallcnn --work pgd --batch-size 4 --warmup 0 --steps 1 --threads 1 --profile";
    let lines = script("pytorch_peer.py", &args.split(' ').collect::<Vec<_>>());
    assert_eq!(lines.len(), 1);
    let r = &lines[0];
    assert_eq!(r["work"], "pgd");
    assert_eq!(r["batch_size"], 4);
    assert!(r["images_per_second"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["peak_rss_mib"].as_f64().unwrap() > 10.0, "{r}");
    // On the CPU the profile names the ops with most self time; 10 attack steps each run the
    // four convolutions forward and backward.
    let p = &r["profile"];
    assert!(p.get("error").is_none(), "{p}");
    let top = p["top"].as_array().unwrap();
    let calls = |op: &str| top.iter().find(|t| t["op"] == op).map(|t| t["calls"].as_i64().unwrap());
    assert_eq!(calls("aten::convolution_backward"), Some(40), "{p}");
    let shares: f64 = top.iter().map(|t| t["share"].as_f64().unwrap()).sum();
    assert!(shares > 0.3 && shares <= 1.0 + 1e-9, "{p}");
}

#[test]
fn pytorch_peer_refuses_a_cuda_graph_on_the_cpu() {
    let out = repo_python("ci/bench/pytorch_peer.py").args(["--graph", "--steps", "1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--graph needs --device cuda"), "{err}");
}

/// `infoat bench --summarize` renders the CUDA-graph and profile sections that ci/gpu-check's
/// steps produce (rows written here in the scripts' own format), and refuses a folder that
/// holds no results.
#[test]
fn bench_summarize_renders_graph_and_profile_sections() {
    let dir = tempfile::tempdir().unwrap();
    let row = |extra: Value| {
        let mut r = serde_json::json!({"arch": "resnet18", "dataset": "cifar10", "method": "at",
            "work": "train_step", "batch_size": 128, "precision": "bf16", "ms_per_step": 48.0,
            "channels_last": true});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r.to_string()
    };
    let eager = row(serde_json::json!({"impl": "pytorch", "variant": "tuned", "images_per_second": 2400.0,
        "peak_rss_mib": 1500.0}));
    let graph = row(serde_json::json!({"impl": "pytorch", "variant": "tuned+graph", "images_per_second": 3600.0}));
    let harness = row(serde_json::json!({"images_per_second": 2640.0, "epoch_seconds": 18.9, "peak_rss_mib": 1234.4}));
    // `infoat bench --cuda-graph` as it writes its line (the harness graphed, with its check).
    let harness_graph = row(serde_json::json!({"cuda_graph": true, "images_per_second": 4200.0,
        "graph_check": {"equal_fraction": 1.0, "max_abs_diff": 0.0, "eager_repeat_equal_fraction": 1.0}}));
    std::fs::write(dir.path().join("throughput.jsonl"), format!("{eager}\n{graph}\n{harness}\n{harness_graph}\n"))
        .unwrap();
    let profiled = row(serde_json::json!({"impl": "pytorch", "variant": "tuned", "images_per_second": 2400.0,
        "profile": {"device_events": 5000, "device_busy_ms": 20.0, "device_span_ms": 40.0, "ms_per_step": 48.0,
                    "device_busy_fraction": 0.4166, "mean_event_us": 4.0}}));
    std::fs::write(dir.path().join("profile.jsonl"), format!("{profiled}\n")).unwrap();
    let out = infoat(dir.path()).args(["bench", "--summarize", "."]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8(out.stdout).unwrap();
    let graph_row = "| train_step | resnet18 | at | 128 | bf16 | tuned | 3,600 | 2,400 | 1.50 | 2,640 | 0.73 |";
    assert!(md.contains(graph_row), "{md}");
    let harness_graph_row =
        "| train_step | resnet18 | at | 128 | bf16 | channels-last | 100.00 % | 100.00 % | 4,200 | 2,640 | 1.59 | \
                             2,400 | 1.75 | 3,600 | 1.17 |";
    assert!(md.contains(harness_graph_row), "{md}");
    let profile_row = "| train_step | resnet18 | 128 | bf16 | tuned | 48.0 | 5,000 | 20.0 | 42 % | 4.0 |";
    assert!(md.contains(profile_row), "{md}");
    // The throughput row ends with the peak memories: GPU (none recorded), host harness / PyTorch.
    assert!(md.contains("| 18.9 | – | 1,234 / 1,500 |"), "{md}");

    let empty = tempfile::tempdir().unwrap();
    let out = infoat(empty.path()).args(["bench", "--summarize", "."]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("throughput.jsonl") && !err.contains("panicked"), "{err}");
}

#[test]
fn conv_bound_orders_the_works_and_reads_committed_results() {
    let results = repo_root().join("docs/cpu/2026-11-26-dev-vm-pool/throughput.jsonl");
    let lines = script(
        "conv_bound.py",
        &["--repeats", "1", "--calls", "1", "--threads", "1", "--results", results.to_str().unwrap()],
    );
    let works: Vec<&str> = lines.iter().map(|l| l["work"].as_str().unwrap()).collect();
    assert_eq!(works, ["pgd", "at", "trades", "infoat"]);
    let bound: Vec<f64> = lines.iter().map(|l| l["bound_ms_per_step"].as_f64().unwrap()).collect();
    // AT adds one training pass to the attack; TRADES and InfoAT a clean pass and two training
    // passes; both have the same passes.
    assert!(0.0 < bound[0] && bound[0] < bound[1] && bound[1] < bound[2], "{bound:?}");
    assert_eq!(bound[2], bound[3]);
    for l in &lines {
        let ceiling = l["ceiling_images_per_second"].as_f64().unwrap();
        assert!((ceiling - 128.0 * 1e3 / l["bound_ms_per_step"].as_f64().unwrap()).abs() < 1e-6 * ceiling, "{l}");
        // The committed run measured every work: reference, tuned, both harness layouts.
        let m = &l["measured_images_per_second"];
        for who in ["reference", "tuned", "tuned + heap", "harness NCHW", "harness channels-last"] {
            assert!(m[who].as_f64().unwrap() > 0.0, "{who} missing for {}: {m}", l["work"]);
        }
        let best = m["harness NCHW"].as_f64().unwrap().max(m["harness channels-last"].as_f64().unwrap());
        assert_eq!(m["harness"].as_f64().unwrap(), best);
        let over = l["ceiling_over_reference"].as_f64().unwrap();
        assert!((over - ceiling / m["reference"].as_f64().unwrap()).abs() < 1e-9, "{l}");
        // The tighter bound adds SmallCNN's ReLU and max-pool layers: slower than the kernels
        // alone, and the harness's share of it follows from the same measurement.
        let full = l["with_layer_ops_bound_ms_per_step"].as_f64().unwrap();
        assert!(full > l["bound_ms_per_step"].as_f64().unwrap(), "{l}");
        let full_ceiling = l["with_layer_ops_ceiling_images_per_second"].as_f64().unwrap();
        assert!((full_ceiling - 128.0 * 1e3 / full).abs() < 1e-6 * full_ceiling, "{l}");
        let share = l["harness_share_of_with_layer_ops_ceiling"].as_f64().unwrap();
        assert!((share - best / full_ceiling).abs() < 1e-9, "{l}");
    }
    let full: Vec<f64> = lines.iter().map(|l| l["with_layer_ops_bound_ms_per_step"].as_f64().unwrap()).collect();
    assert!(full[0] < full[1] && full[1] < full[2] && full[2] == full[3], "{full:?}");
}

/// perf_groups.py files `perf report` lines by what the code is and turns shares into ms.
#[test]
fn perf_groups_files_samples_by_kind_of_code() {
    use std::io::Write;
    let report = "# Samples: 9K of event 'cpu-clock:pppH'\n\
        #\n\
        \x20   40.00%  [JIT] tid 4708        [.] 0x00007f44c62950fd\n\
        \x20   10.00%  libtorch_cpu.so       [.] dnnl::impl::cpu::x64::brgemm_convolution_fwd_t<880>::ker_vpad\n\
        \x20    5.00%  libtorch_cpu.so       [.] mkl_blas_avx512_sgemm_kernel_0_b0\n\
        \x20    8.00%  libtorch_cpu.so       [.] c10::function_ref<void (char**)>::callback_fn<threshold_kernel(at::TensorIteratorBase&)>\n\
        \x20    2.00%  libtorch_cpu.so       [.] at::native::cpu_max_pool_channels_last<float, false>\n\
        \x20   20.00%  libgomp.so.1          [.] 0x000000000001de62\n\
        \x20    5.00%  libc.so.6             [.] _int_free\n\
        \x20   10.00%  infoat                [.] infoat_harness::attacks::pgd::ascend\n";
    let mut child = repo_python("ci/bench/perf_groups.py")
        .args(["--ms-per-step", "200"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(report.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let share = |g: &str| v["share_percent"][g].as_f64().unwrap();
    assert_eq!((share("convolution"), share("linear"), share("relu"), share("max-pool")), (50.0, 5.0, 8.0, 2.0), "{v}");
    assert_eq!(
        (share("openmp wait"), share("allocator"), share("other"), share("fill/copy")),
        (20.0, 5.0, 10.0, 0.0),
        "{v}"
    );
    assert!((v["ms"]["convolution"].as_f64().unwrap() - 100.0).abs() < 1e-9, "{v}");
    // Nothing to read is an error that says what to pipe in.
    let out = repo_python("ci/bench/perf_groups.py").stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("perf report"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// ci/bench/aa's two helpers: pass_cost.py times a TorchScript model's passes at the batch sizes
/// asked for, and aa_report.py turns a harness run's AutoAttack stages and official AutoAttack's
/// log into the per-component table, with the pass bound = images × the cost of one pass per
/// image at the component's batch.
#[test]
fn aa_profile_scripts_time_passes_and_bound_each_component() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("lin.pt");
    let make = "import sys, torch\n\
                m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))\n\
                torch.jit.script(m).save(sys.argv[1])\n";
    let out = std::process::Command::new(infoat_tests::torch_python())
        .args(["-c", make, model.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let costs = script(
        "pass_cost.py",
        &[model.to_str().unwrap(), "--shape", "1,28,28", "--batch-sizes", "4,2", "--threads", "1", "--rounds", "2"],
    );
    let cell = &costs[0]["costs"]["4"];
    for kind in ["forward", "gradient"] {
        let s = cell[format!("{kind}_s")].as_f64().unwrap();
        let by = cell[format!("{kind}_by_format_s")].as_object().unwrap();
        // The faster of the two formats is the one kept.
        assert_eq!(by.len(), 2, "{cell}");
        assert!(by.values().all(|v| v.as_f64().unwrap() >= s) && s > 0.0, "{cell}");
    }
    assert!(costs[0]["costs"]["2"]["gradient_s"].as_f64().unwrap() > 0.0);

    // The report, on records written here: 10 clean-correct images, APGD-CE at batch 10 (100
    // gradient passes), Square at batch 4 (400 forward passes).
    let harness = serde_json::json!({
        "n": 10, "clean": {"correct": 10}, "attacks": {"aa": {
            "robust_acc": 0.4, "eps": 0.3, "seconds": 9.0, "version": 2, "flags": "1111000000",
            "stages": [
                {"attack": "apgd_ce", "attacked": 10, "broken": 6, "seconds": 3.0,
                 "forward_images": 110, "backward_images": 100},
                {"attack": "square", "attacked": 4, "broken": 0, "seconds": 6.0,
                 "forward_images": 400, "backward_images": 0}]}}});
    let official = serde_json::json!({
        "n": 10, "clean": {"correct": 10}, "pyautoattack": "0.2.0", "attacks": {"aa": {
            "robust_acc": 0.4, "seconds": 18.0, "flags": "1111000000",
            "stages": [{"attack": "apgd-ce", "robust_acc": 0.4, "cumulative_seconds": 5.0},
                       {"attack": "square", "robust_acc": 0.4, "cumulative_seconds": 17.0}]}}});
    let costs = serde_json::json!({"costs": {
        "10": {"forward_s": 0.01, "gradient_s": 0.05},
        "4": {"forward_s": 0.002, "gradient_s": 0.01}}});
    for (name, v) in [("h.json", &harness), ("o.json", &official), ("c.json", &costs)] {
        std::fs::write(dir.path().join(name), v.to_string()).unwrap();
    }
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (h, o, c) = (path("h.json"), path("o.json"), path("c.json"));
    let out = run_repo_python(
        "ci/bench/aa_report.py",
        &["--harness", &h, "--official", &o, "--pass-costs", &c, "--batch-size", "500"],
    );
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let rows = last["components"].as_array().unwrap();
    // APGD-CE: 10 forward-only images × 0.01/10 + 100 gradient images × 0.05/10 = 0.51 s;
    // Square: 400 × 0.002/4 = 0.2 s. Official's times are the differences of its log's totals.
    let bound: Vec<f64> = rows.iter().map(|r| r["bound_seconds"].as_f64().unwrap()).collect();
    assert!((bound[0] - 0.51).abs() < 1e-9 && (bound[1] - 0.2).abs() < 1e-9, "{bound:?}");
    let official_s: Vec<f64> = rows.iter().map(|r| r["official_seconds"].as_f64().unwrap()).collect();
    assert!((official_s[0] - 5.0).abs() < 1e-9 && (official_s[1] - 12.0).abs() < 1e-9, "{official_s:?}");
    assert!(out.contains("| square | 4 | 4 | 400 | 0 | 6.0 | 12.0 | 0.2 | 30.00 | 60.00 |"), "{out}");
    assert!(out.contains("cascade's passes allow here: 23.94×"), "{out}");
    assert_eq!(last["speedup"].as_f64().unwrap(), 2.0);
    // What ci/bench/aa asks pass_cost.py to time: each component's batch.
    let batches =
        run_repo_python("ci/bench/aa_report.py", &["--harness", &h, "--batch-size", "500", "--stage-batches"]);
    assert_eq!(batches.trim(), "10,4");
}

/// `ci/gpu-check run` where every CUDA command fails (this machine has no GPU): an unknown stage
/// is refused before anything runs; each failure is recorded with libtorch's reason; a stage
/// that would start with under 30 s left is skipped; and OUTDIR gets the few files the device
/// tool brings back, the raw results packed in `gpu-check.tgz`.
#[test]
fn gpu_check_run_records_failures_and_skips_stages_past_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |stages: &str, deadline: &str, work: &str| {
        std::process::Command::new(repo_root().join("ci/gpu-check"))
            .arg("run")
            .arg(&out)
            .env("GPU_CHECK_BIN", infoat_bin())
            .env("GPU_CHECK_WORK", dir.path().join(work))
            .env("PYTHON", torch_python())
            .env("STAGES", stages)
            .env("DEADLINE", deadline)
            .env("QUICK", "1")
            .output()
            .unwrap()
    };
    let bad = run("graph bogus", "480", "w0");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown stage 'bogus'"), "{bad:?}");
    assert!(!out.exists(), "nothing may run before the stages are checked");

    let agree = run("agree", "480", "w1");
    assert!(agree.status.success(), "{agree:?}");
    let failures = std::fs::read_to_string(out.join("failures.txt")).unwrap();
    assert!(failures.contains("libtorch sees no CUDA device"), "{failures}");
    for f in ["summary.md", "machine.txt", "log.txt", "gpu-check.tgz"] {
        assert!(out.join(f).is_file(), "{f} missing from {}", out.display());
    }
    let listing = std::process::Command::new("tar").arg("tzf").arg(out.join("gpu-check.tgz")).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("./machine.txt") && listing.contains("./failures.txt"), "{listing}");

    let late = run("agree speed", "20", "w2");
    assert!(late.status.success(), "{late:?}");
    let failures = std::fs::read_to_string(out.join("failures.txt")).unwrap();
    for stage in ["agree", "speed"] {
        assert!(failures.contains(&format!("SKIPPED (deadline): stage {stage}")), "{failures}");
    }
    assert!(!failures.contains("libtorch sees no CUDA device"), "a skipped stage ran: {failures}");
}
