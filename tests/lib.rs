//! Helpers for the end-to-end tests of the `infoat` binary: locating the binary, throwaway
//! working folders, and small real-data configs.

use std::path::{Path, PathBuf};

/// The `infoat` binary under test: `$INFOAT_BIN`, else the one cargo built beside this test
/// executable (`ci/test` builds it first with `cargo build -p infoat-harness --bin infoat`).
pub fn infoat_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("INFOAT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/infoat
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile>").join("infoat");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p infoat-harness --bin infoat` (ci/test does)",
        bin.display()
    );
    bin
}

/// A command running the binary in `dir` with its registry at `dir/registry`.
pub fn infoat(dir: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(infoat_bin());
    c.current_dir(dir).env("INFOAT_REGISTRY", dir.join("registry")).env_remove("INFOAT_DATA");
    c
}

/// The real MNIST folder (`ci/fetch-data mnist` fills it); panics with the fix when absent.
pub fn mnist_dir() -> PathBuf {
    let base = std::env::var_os("INFOAT_DATA").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
        cache.join("infoat").join("data")
    });
    let dir = base.join("mnist");
    assert!(
        dir.join("t10k-labels-idx1-ubyte").exists(),
        "real MNIST not found at {}: run `ci/fetch-data mnist` (ci/test does)",
        dir.display()
    );
    dir
}

/// A small real-MNIST run config: `train_limit` training images, 1 epoch, the given seed.
pub fn tiny_config(seed: u64, train_limit: usize) -> String {
    format!(
        r#"seed = {seed}
device = "cpu"
[data]
dataset = "mnist"
train_limit = {train_limit}
test_limit = 1000
[model]
arch = "smallcnn"
[method]
kind = "natural"
[train]
epochs = 1
batch_size = 64
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 0.0005
[schedule]
kind = "constant"
"#
    )
}

/// Parses a command's stdout as JSON.
pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The Python with torch 2.11 that `ci/bootstrap-torch` installs: `$INFOAT_PYTHON`, else the
/// default cache location; panics with the fix when absent.
pub fn torch_python() -> PathBuf {
    let py = std::env::var_os("INFOAT_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("INFOAT_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"))
                .join("infoat")
        });
        cache.join("torch-2.11.0").join("bin").join("python3")
    });
    assert!(py.exists(), "{} not found: run `ci/bootstrap-torch` (ci/test does)", py.display());
    py
}

/// A command running the repository's Python script `script` (a path from the repository root)
/// with the torch venv's interpreter ([`torch_python`]).
pub fn repo_python(script: &str) -> std::process::Command {
    let mut c = std::process::Command::new(torch_python());
    c.arg(repo_root().join(script));
    c
}

/// Runs [`repo_python`] with `args`, asserts that it succeeded (its stderr in the message) and
/// returns its stdout.
pub fn run_repo_python(script: &str, args: &[&str]) -> String {
    let out = repo_python(script).args(args).output().unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    // The runtime value first (cargo sets it when running tests): the compile-time one is stale
    // when a binary built in another clone is reused.
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    dir.parent().expect("tests/ has a parent").to_path_buf()
}

/// The unpacked robustbench 1.1.1 wheel (`ci/bootstrap-robustbench` fetches it once into the
/// cache outside the clone; its architecture files and `utils.py` are read by path).
pub fn robustbench_dir() -> PathBuf {
    let out = std::process::Command::new(repo_root().join("ci/bootstrap-robustbench"))
        .output()
        .unwrap_or_else(|e| panic!("run ci/bootstrap-robustbench: {e}"));
    assert!(out.status.success(), "ci/bootstrap-robustbench failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).expect("UTF-8 path").trim())
}
