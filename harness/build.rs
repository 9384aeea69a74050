//! Embeds the git commit the binary was built from (for run records), when there is one. Also
//! lists every preset and experiment config under `fixtures/` for `include_str!`, so the binary
//! carries them without a hand-kept list, and compiles the CUDA-graph shim
//! (`csrc/cuda_graph.cpp`, see `src/cuda_graph.rs`) where libtorch has CUDA headers.
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

/// The first folder holding the CUDA runtime's headers as libtorch's CUDA headers include them
/// (`cuda_runtime_api.h` and `crt/host_config.h`): `INFOAT_CUDA_INCLUDE`, the `nvidia/*/include`
/// folders of the pip wheels beside torch (nvidia-cuda-runtime and nvidia-cuda-crt), a CUDA
/// toolkit's.
fn cuda_include(torch_lib: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("INFOAT_CUDA_INCLUDE") {
        candidates.push(dir.into());
    }
    if let Some(site) = torch_lib.parent().and_then(Path::parent) {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path().join("include"))).collect();
            dirs.sort();
            candidates.extend(dirs);
        }
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(dir) = std::env::var(var) {
            candidates.push(Path::new(&dir).join("include"));
        }
    }
    candidates.push("/usr/local/cuda/include".into());
    let found =
        candidates.iter().find(|d| d.join("cuda_runtime_api.h").is_file() && d.join("crt/host_config.h").is_file());
    if found.is_none() {
        // Build again once the headers arrive (ci/bootstrap-torch installs them beside torch).
        for dir in candidates.iter().filter(|d| d.is_dir()) {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }
    found.cloned()
}

/// Compiles `csrc/cuda_graph.cpp` into `$OUT_DIR/libinfoat_cuda_graph.so`, linked against (not
/// into) libtorch's CUDA libraries; the reason when it cannot.
fn build_cuda_graph_shim() -> Result<(), String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=INFOAT_CUDA_INCLUDE");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return Err(format!("CUDA graphs are supported on linux-gnu only, not {target_os}-{target_env}"));
    }
    let lib =
        PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").map_err(|_| "torch-sys did not say where libtorch is")?);
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    if !include.join("ATen/cuda/CUDAGraph.h").is_file() || !lib.join("libtorch_cuda.so").is_file() {
        return Err(format!("the libtorch in {} is a CPU build (no CUDA headers or libtorch_cuda.so)", lib.display()));
    }
    let cuda = cuda_include(&lib).ok_or(
        "no CUDA runtime headers with crt/host_config.h beside torch (ci/bootstrap-torch installs nvidia-cuda-crt; \
         or set INFOAT_CUDA_INCLUDE)",
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("libinfoat_cuda_graph.so");
    let compiler = cc::Build::new().cpp(true).cargo_metadata(false).get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args([
        "-std=c++17",
        "-O2",
        "-g0",
        "-Wl,-s",
        "-fPIC",
        "-shared",
        "-D_GLIBCXX_USE_CXX11_ABI=1",
        "-DGLOG_USE_GLOG_EXPORT",
    ])
    .arg(format!("-I{}", include.display()))
    .arg(format!("-I{}", include.join("torch/csrc/api/include").display()))
    .arg(format!("-I{}", cuda.display()))
    .arg(&source)
    .arg("-o")
    .arg(&out)
    // Linked by name (no rpath): at run time these are the copies the process already loaded.
    .arg(format!("-L{}", lib.display()))
    .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"]);
    let output = cmd.output().map_err(|e| format!("running the C++ compiler {:?}: {e}", compiler.path()))?;
    if !output.status.success() {
        return Err(format!(
            "compiling csrc/cuda_graph.cpp failed: {}",
            String::from_utf8_lossy(&output.stderr).lines().take(5).collect::<Vec<_>>().join(" | ")
        ));
    }
    Ok(())
}

fn main() {
    embed_fixtures();
    println!("cargo::rustc-check-cfg=cfg(infoat_cuda_graph)");
    match build_cuda_graph_shim() {
        Ok(()) => println!("cargo:rustc-cfg=infoat_cuda_graph"),
        Err(why) => {
            println!("cargo:warning=CUDA graphs will be unavailable: {why}");
            println!("cargo:rustc-env=INFOAT_CUDA_GRAPH_MISSING={}", why.replace('\n', " "));
        }
    }
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
