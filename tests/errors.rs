//! Bad input gets an error naming the thing, what was expected and what to do; exit status 2,
//! never a panic, never a recorded run.

use infoat_tests::{infoat, mnist_dir, tiny_config};
use predicates::prelude::*;
use predicates::str::contains;

fn no_panic() -> impl Predicate<str> {
    contains("panicked").not().and(contains("RUST_BACKTRACE").not())
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(0, 64).replace("[train]\n", "[train]\nepochz = 3\n"))
        .unwrap();
    infoat(dir.path())
        .args(["train", "--config", "c.toml"])
        .assert()
        .code(2)
        .stderr(contains("c.toml").and(contains("epochz")).and(no_panic()));
    assert!(!dir.path().join("registry").exists(), "a rejected config must not touch the registry");
}

#[test]
fn unknown_method_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(0, 64).replace("\"natural\"", "\"infoatt\"")).unwrap();
    infoat(dir.path())
        .args(["train", "--config", "c.toml"])
        .assert()
        .code(2)
        .stderr(contains("infoatt").and(contains("natural")).and(no_panic()));
}

#[test]
fn missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    infoat(dir.path()).args(["train", "--config", "nope.toml"]).assert().code(2).stderr(contains("nope.toml"));
}

#[test]
fn missing_data_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(0, 64)).unwrap();
    infoat(dir.path()).args(["train", "--config", "c.toml", "--data-dir", "empty"]).assert().code(2).stderr(
        contains("empty").and(contains("train-images-idx3-ubyte")).and(contains("ci/fetch-data mnist")).and(no_panic()),
    );
}

#[test]
fn truncated_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    for f in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(mnist_dir().join(f), data.join(f)).unwrap();
    }
    let images = std::fs::read(mnist_dir().join("train-images-idx3-ubyte")).unwrap();
    std::fs::write(data.join("train-images-idx3-ubyte"), &images[..images.len() - 100]).unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(0, 64)).unwrap();
    infoat(dir.path())
        .args(["train", "--config", "c.toml", "--data-dir", "mnist"])
        .assert()
        .code(2)
        .stderr(contains("train-images-idx3-ubyte").and(contains("47040016")).and(no_panic()));
    let ls = infoat(dir.path()).args(["registry", "ls", "--json"]).output().unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(ls["runs"].as_array().unwrap().len(), 0, "a refused dataset must not record a run: {ls}");
}

#[test]
fn corrupted_and_mismatched_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.safetensors"), b"definitely not a checkpoint").unwrap();
    infoat(dir.path())
        .args(["eval", "--checkpoint", "junk.safetensors", "--arch", "smallcnn", "--dataset", "mnist"])
        .assert()
        .code(2)
        .stderr(contains("junk.safetensors").and(contains("safetensors")).and(no_panic()));

    // A real checkpoint, then a copy with one byte of tensor data flipped, then the wrong arch.
    std::fs::write(dir.path().join("c.toml"), tiny_config(0, 128)).unwrap();
    let out = infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = infoat_tests::stdout_json(&out);
    let ckpt = std::path::PathBuf::from(run["checkpoint_path"].as_str().unwrap());
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(dir.path().join("flipped.safetensors"), &bytes).unwrap();
    infoat(dir.path())
        .args(["eval", "--checkpoint", "flipped.safetensors", "--limit", "10"])
        .assert()
        .code(2)
        .stderr(contains("flipped.safetensors").and(contains("digest")).and(no_panic()));
    infoat(dir.path())
        .args(["eval", "--checkpoint"])
        .arg(&ckpt)
        .args(["--arch", "resnet18", "--dataset", "cifar10"])
        .assert()
        .code(2)
        .stderr(contains("resnet18").and(contains("missing")).and(no_panic()));
}

#[test]
fn unknown_preset_lists_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    infoat(dir.path())
        .args(["reproduce", "nosuch"])
        .assert()
        .code(2)
        .stderr(contains("nosuch").and(contains("quickstart")));
}

/// An evaluation of no example is refused before anything is recorded; a folder without a
/// manifest is named as not a bundle, with the OS error said once.
#[test]
fn empty_evaluations_and_manifestless_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), tiny_config(0, 128)).unwrap();
    let out = infoat(dir.path()).args(["--quiet", "train", "--config", "c.toml", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = infoat_tests::stdout_json(&out);
    let hash = run["record"]["config_hash"].as_str().unwrap().to_string();
    let evals = || {
        let ls = infoat(dir.path()).args(["registry", "ls"]).output().unwrap();
        String::from_utf8_lossy(&ls.stdout).lines().filter(|l| l.starts_with("eval ")).count()
    };
    let before = evals();
    for n in ["--n", "--limit"] {
        infoat(dir.path())
            .args(["eval", "--run", &hash, n, "0", "--attacks", "fgsm"])
            .assert()
            .code(2)
            .stdout(contains("0.00 %").not())
            .stderr(contains("= 0").and(contains("at least one example")).and(no_panic()));
    }
    assert_eq!(evals(), before, "no evaluation was recorded");

    std::fs::create_dir_all(dir.path().join("not-a-bundle")).unwrap();
    let out = infoat(dir.path()).args(["registry", "import", "not-a-bundle"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-a-bundle") && err.contains("no MANIFEST.json") && err.contains("registry export"),
        "{err}"
    );
    assert!(err.matches("os error").count() <= 1, "the OS error is said once: {err}");
}

/// libtorch's CUDA libraries are loaded only where an NVIDIA driver is (issue 24: they cost
/// about 350 MB of memory to load), and a CUDA request on a machine without one says why:
/// without a driver they are not loaded; `INFOAT_CUDA=on` loads them anyway, and then libtorch's
/// own reason shows, which it can give only with its CUDA kernels and hooks registered;
/// `INFOAT_CUDA=off` never loads them.
#[test]
fn cuda_libraries_load_only_where_a_driver_is_and_a_cuda_request_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["eval", "--device", "cuda", "--torchscript", "none.pt", "--dataset", "mnist"];
    if std::path::Path::new("/dev/nvidiactl").exists() {
        // A GPU machine: the request gets past the device and fails on the missing file.
        infoat(dir.path()).args(args).assert().code(2).stderr(contains("none.pt").and(no_panic()));
        return;
    }
    infoat(dir.path())
        .args(args)
        .assert()
        .code(2)
        .stderr(contains("no CUDA device").and(contains("not loaded: no NVIDIA driver")).and(no_panic()));
    infoat(dir.path()).env("INFOAT_CUDA", "on").args(args).assert().code(2).stderr(
        contains("CUDA library: loaded /")
            .and(contains("libtorch_cuda.so"))
            .and(contains("Found no NVIDIA driver on your system"))
            .and(no_panic()),
    );
    infoat(dir.path())
        .env("INFOAT_CUDA", "off")
        .args(args)
        .assert()
        .code(2)
        .stderr(contains("not loaded: INFOAT_CUDA=off").and(no_panic()));
}

/// `bench --cuda-graph` loads the CUDA-graph shim (libtorch's CUDAGraph behind a C ABI, built
/// with the binary) before it looks for a device. Without libtorch's CUDA library the reason is
/// that library's state; with it (`INFOAT_CUDA=on` where no driver is), the shim's symbols
/// resolve against it and the missing device is the reason. A graph on the CPU is refused.
#[test]
fn cuda_graph_support_loads_with_libtorch_cuda_and_says_why_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--cuda-graph", "--work", "pgd", "--warmup", "0", "--steps", "1", "--batch-size", "8"];
    if std::path::Path::new("/dev/nvidiactl").exists() {
        // A GPU machine: the graph is captured and replayed.
        infoat(dir.path())
            .args(args)
            .args(["--device", "cuda", "--json"])
            .assert()
            .success()
            .stdout(contains("\"cuda_graph\":true"));
        return;
    }
    infoat(dir.path()).args(args).args(["--device", "cuda"]).assert().code(2).stderr(
        contains(
            "CUDA graphs are unavailable: they need libtorch's CUDA library, which is not loaded: no NVIDIA driver",
        )
        .and(no_panic()),
    );
    infoat(dir.path()).env("INFOAT_CUDA", "on").args(args).args(["--device", "cuda"]).assert().code(2).stderr(
        contains("--cuda-graph (CUDA-graph support loaded) needs a CUDA device")
            .and(contains("libtorch sees no CUDA device"))
            .and(no_panic()),
    );
    infoat(dir.path()).env("INFOAT_CUDA", "on").args(args).args(["--device", "cpu"]).assert().code(2).stderr(
        contains("--cuda-graph needs a CUDA device (a graph records CUDA work), and --device cpu").and(no_panic()),
    );
}
