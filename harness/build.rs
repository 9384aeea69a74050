//! Embeds the git commit the binary was built from (for run records), when there is one, and
//! keeps libtorch's CUDA library linked. Also lists every preset and experiment config under
//! `fixtures/` for `include_str!`, so the binary carries them without a hand-kept list.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every `.toml` file below `dir`, sorted, as (path relative to `base`, absolute path).
fn tomls(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            tomls(base, &path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            let rel = path.strip_prefix(base).expect("below base").to_string_lossy().replace('\\', "/");
            out.push((rel, path.canonicalize().expect("a listed file exists")));
        }
    }
}

fn embed_fixtures() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut code = String::from("/// Preset and experiment files of `fixtures/`: (path below `fixtures/`, text).\n");
    code.push_str("pub const FIXTURE_TOMLS: &[(&str, &str)] = &[\n");
    for sub in ["presets", "experiments"] {
        let dir = fixtures.join(sub);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        tomls(&fixtures, &dir, &mut files);
        for (rel, abs) in files {
            code.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", abs.display().to_string()));
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("fixture_tomls.rs");
    std::fs::write(out, code).expect("writing fixture_tomls.rs");
}

fn main() {
    embed_fixtures();
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    println!("cargo:rustc-env=INFOAT_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/index");
    // torch-sys asks for libtorch_cuda, and the linker's default --as-needed drops it because no
    // symbol of it is referenced directly. That is wanted: loading the CUDA libraries costs about
    // 350 MB of memory on machines that cannot use them, so `cuda_library::load` opens
    // libtorch_cuda at start-up where an NVIDIA driver is present (the CUDA kernels and hooks
    // then register as if it were linked).
}
