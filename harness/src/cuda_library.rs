//! libtorch's CUDA half, loaded at start-up only on machines that can use it (issue 24, memory).
//!
//! A CUDA build of libtorch (the PyPI wheel the project uses) splits into `libtorch_cpu.so` and
//! `libtorch_cuda.so`; the latter pulls in cuBLAS, cuBLASLt, cuSPARSE, cuDNN, NCCL and more, whose
//! loading alone costs about 350 MB of resident memory — cuBLASLt's initialisers 210 MB of it
//! (measured on the 2-core VM: `infoat --version` peaked at 476 MB with the CUDA libraries
//! linked, `libtorch_cpu.so` alone at 123 MB; docs/performance.md). On a machine without an
//! NVIDIA driver none of it can ever run, so the binary does not link `libtorch_cuda.so`;
//! [`load`] opens it (`RTLD_NOW | RTLD_GLOBAL`, from the folder `libtorch_cpu.so` was loaded
//! from) before anything asks libtorch about CUDA, and only when the driver's `libcuda.so.1`
//! can be opened. Its static initialisers then register the CUDA kernels and hooks exactly as
//! they do when the library is linked — libtorch caches its CUDA hooks at the first query, which
//! is why this must run first thing in `main`.
//!
//! `INFOAT_CUDA=off` never loads it; `INFOAT_CUDA=on` loads it without looking for a driver
//! (to test the loading itself).
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// The environment variable that overrides the driver check (`on` / `off`).
pub const ENV: &str = "INFOAT_CUDA";

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaLibrary {
    /// `libtorch_cuda.so` was opened from this path.
    Loaded(String),
    /// No NVIDIA driver (`libcuda.so.1` cannot be opened): CPU only, CUDA libraries not loaded.
    NoDriver,
    /// This libtorch has no CUDA library (a CPU build), or the platform loads libraries otherwise.
    NotPresent,
    /// `INFOAT_CUDA=off`.
    Disabled,
    /// A driver is there but the library failed to load (the reason); CUDA is unavailable.
    Failed(String),
}

impl std::fmt::Display for CudaLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CudaLibrary::Loaded(p) => write!(f, "loaded {p}"),
            CudaLibrary::NoDriver => write!(f, "not loaded: no NVIDIA driver (libcuda.so.1)"),
            CudaLibrary::NotPresent => write!(f, "not loaded: this libtorch has no CUDA library"),
            CudaLibrary::Disabled => write!(f, "not loaded: {ENV}=off"),
            CudaLibrary::Failed(why) => write!(f, "failed to load: {why}"),
        }
    }
}

/// Loads libtorch's CUDA library once per process where it can be used (see the module
/// documentation) and says what it did; later calls return the first outcome. Call it before
/// any other libtorch call.
pub fn load() -> &'static CudaLibrary {
    static OUTCOME: OnceLock<CudaLibrary> = OnceLock::new();
    OUTCOME.get_or_init(|| {
        let mode = std::env::var(ENV).unwrap_or_default();
        if mode == "off" {
            return CudaLibrary::Disabled;
        }
        imp::load(mode == "on")
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) use imp::dl_error;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::{CStr, CString};
    use std::path::{Path, PathBuf};

    use super::CudaLibrary;

    /// The folder the process loaded `libtorch_cpu.so` from (`/proc/self/maps`).
    fn torch_lib_dir() -> Option<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .map(Path::new)
            .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
            .and_then(|p| p.parent().map(Path::to_path_buf))
    }

    /// The dynamic loader's message for the last failed `dlopen`/`dlsym` on this thread.
    pub(crate) fn dl_error() -> String {
        // SAFETY: dlerror returns null or a pointer to a NUL-terminated message owned by libc,
        // valid until the next dl* call on this thread; it is copied at once.
        let msg = unsafe { libc::dlerror() };
        if msg.is_null() {
            "unknown dlopen error".into()
        } else {
            // SAFETY: non-null, NUL-terminated (see above).
            unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
        }
    }

    fn open(path: &CStr, flags: libc::c_int) -> bool {
        // SAFETY: dlopen takes a NUL-terminated path and flags; the handle is kept open for the
        // life of the process (never closed), so no code it loaded is ever unmapped.
        !unsafe { libc::dlopen(path.as_ptr(), flags) }.is_null()
    }

    pub(super) fn load(force: bool) -> CudaLibrary {
        let Some(dir) = torch_lib_dir() else { return CudaLibrary::NotPresent };
        let path = dir.join("libtorch_cuda.so");
        if !path.is_file() {
            return CudaLibrary::NotPresent;
        }
        if !force && !open(c"libcuda.so.1", libc::RTLD_LAZY | libc::RTLD_LOCAL) {
            return CudaLibrary::NoDriver;
        }
        let Ok(c_path) = CString::new(path.to_string_lossy().as_bytes()) else {
            return CudaLibrary::Failed(format!("{}: a path with a NUL byte", path.display()));
        };
        if open(&c_path, libc::RTLD_NOW | libc::RTLD_GLOBAL) {
            CudaLibrary::Loaded(path.display().to_string())
        } else {
            CudaLibrary::Failed(dl_error())
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::CudaLibrary;

    pub(super) fn load(_force: bool) -> CudaLibrary {
        CudaLibrary::NotPresent
    }
}
