//! The environment fingerprint recorded with every run: what built the binary, which libtorch
//! it runs on, on which device and with how many threads, and the numerics fingerprint
//! ([`crate::numerics`]: CPU generation and the kernels libtorch dispatches to). Anything that
//! can change a number belongs here or in the config.

/// The libtorch version tch 0.24 binds (the project installs exactly this build).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// Where and with what a run was computed (the registry's record type).
pub type Fingerprint = infoat_registry::Environment;

/// The fingerprint of this process computing on `device`.
pub fn fingerprint(device: tch::Device) -> Fingerprint {
    let (device_name, cudnn, gpu) = match device {
        tch::Device::Cuda(i) => (format!("cuda:{i}"), Some(tch::utils::version_cudnn().to_string()), gpu_name(i)),
        _ => ("cpu".to_string(), None, None),
    };
    Fingerprint {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("INFOAT_GIT_COMMIT").to_string(),
        libtorch: LIBTORCH_VERSION.to_string(),
        device: device_name,
        threads: tch::get_num_threads(),
        cudnn,
        gpu,
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        cpu: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        }),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".to_string()),
        numerics: Some(crate::numerics::fingerprint()),
    }
}

/// The model and driver of CUDA device `index` as `nvidia-smi` reports them (libtorch's C API
/// exposes no device properties); `None` when nvidia-smi is not there.
fn gpu_name(index: usize) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader", "-i", &index.to_string()])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let line = String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_string();
    let (name, driver) = line.split_once(',').map(|(n, d)| (n.trim(), d.trim())).unwrap_or((line.as_str(), ""));
    Some(if driver.is_empty() { name.to_string() } else { format!("{name} (driver {driver})") })
}
