//! Embeds the git commit the binary was built from (for run records), when there is one, and
//! keeps libtorch's CUDA library linked.
use std::process::Command;

fn main() {
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
    // torch-sys asks for libtorch_cuda, but the linker's default --as-needed drops it because
    // no symbol of it is referenced directly, and then libtorch never registers CUDA
    // (`Cuda::is_available()` is false on a GPU machine). libtorch.so depends on the CUDA
    // library in CUDA builds and on the CPU one alone in CPU builds, so keeping it linked
    // works for both.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch,--as-needed");
    }
}
