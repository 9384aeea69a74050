//! CUDA graphs (issue 24, goal 4): record a stretch of CUDA work once, launch it again with one
//! call. An adversarial training step launches some thousand small kernels for its 10-step
//! inner PGD; captured as a graph, the attack costs one launch (PyTorch's `torch.cuda.graph`).
//!
//! tch 0.24 binds no CUDA-graph API, so `csrc/cuda_graph.cpp` wraps libtorch's
//! `at::cuda::CUDAGraph` behind a C ABI. `build.rs` compiles it against the headers of the
//! libtorch tch links, into a small shared library the binary carries as bytes ([`support`]
//! writes it to an anonymous memory file and opens it). It is opened only once libtorch's CUDA
//! library is loaded ([`crate::cuda_library`]), whose symbols it resolves against: on a machine
//! without a driver nothing of it is mapped.
//!
//! [`CudaGraph::capture`] follows PyTorch's recipe: capture on a side stream that waits for the
//! current one, into the graph's private memory pool, with autocast's weight-cast cache off;
//! warm-up runs go to the same side stream ([`CudaGraph::on_side_stream`]). libtorch registers
//! its default CUDA generator with the graph, so random draws inside it advance at every replay.
//! The tensors the captured work read and wrote stay the graph's inputs and outputs: a replay
//! reads whatever they hold then and overwrites its outputs.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use tch::Device;

use crate::cuda_library::{self, CudaLibrary};
use crate::{Error, Result};

/// The shim's bytes, when this build has it.
#[cfg(infoat_cuda_graph)]
const SHIM: std::result::Result<&[u8], &str> = Ok(include_bytes!(concat!(env!("OUT_DIR"), "/libinfoat_cuda_graph.so")));
#[cfg(not(infoat_cuda_graph))]
const SHIM: std::result::Result<&[u8], &str> = Err(env!("INFOAT_CUDA_GRAPH_MISSING"));

type Status = c_int;
type NewFn = unsafe extern "C" fn(c_int, *mut *mut c_void, *mut c_char, usize) -> Status;
type GraphFn = unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> Status;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// The shim's entry points.
struct Shim {
    new: NewFn,
    enter_stream: GraphFn,
    leave_stream: GraphFn,
    capture_begin: GraphFn,
    capture_end: GraphFn,
    replay: GraphFn,
    free: FreeFn,
}

/// Loads the CUDA-graph shim once per process, or says why it cannot be: this build has none
/// (the libtorch it was built against has no CUDA headers), or libtorch's CUDA library is not
/// loaded. On success, a line saying so (for messages).
pub fn support() -> Result<&'static str> {
    shim().map(|_| "CUDA-graph support loaded")
}

fn shim() -> Result<&'static Shim> {
    static SHIM_LOADED: OnceLock<std::result::Result<Shim, String>> = OnceLock::new();
    SHIM_LOADED.get_or_init(load).as_ref().map_err(|why| Error::Invalid(format!("CUDA graphs are unavailable: {why}")))
}

fn load() -> std::result::Result<Shim, String> {
    let bytes = SHIM.map_err(|why| format!("this binary was built without them ({why})"))?;
    match cuda_library::load() {
        CudaLibrary::Loaded(_) => {}
        other => return Err(format!("they need libtorch's CUDA library, which is {other}")),
    }
    imp::open(bytes)
}

/// `status` of a shim call as a result, with the message it wrote.
fn check(what: &str, status: Status, err: &[u8]) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    let msg = String::from_utf8_lossy(&err[..end]);
    Err(Error::Invalid(format!("CUDA graph {what}: {}", crate::models::first_line(&msg))))
}

const ERR_CAP: usize = 2048;

/// A CUDA graph on one device: empty until [`CudaGraph::capture`], then replayable.
pub struct CudaGraph {
    handle: *mut c_void,
    shim: &'static Shim,
    captured: bool,
}

impl std::fmt::Debug for CudaGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaGraph").field("captured", &self.captured).finish()
    }
}

impl CudaGraph {
    /// An empty graph on `device`, a CUDA device.
    pub fn new(device: Device) -> Result<CudaGraph> {
        let Device::Cuda(index) = device else {
            return Err(Error::Invalid(format!("CUDA graphs need a CUDA device, not {device:?}")));
        };
        let shim = shim()?;
        let mut handle = std::ptr::null_mut();
        let mut err = [0u8; ERR_CAP];
        // SAFETY: `new` writes a fresh handle to `handle` on success and at most ERR_CAP bytes
        // (NUL included) to `err`; both outlive the call.
        let status = unsafe { (shim.new)(index as c_int, &mut handle, err.as_mut_ptr().cast(), ERR_CAP) };
        check("creation", status, &err)?;
        Ok(CudaGraph { handle, shim, captured: false })
    }

    fn call(&self, what: &str, f: GraphFn) -> Result<()> {
        let mut err = [0u8; ERR_CAP];
        // SAFETY: `self.handle` is a live handle from `new` (freed only in Drop); the shim writes
        // at most ERR_CAP bytes to `err` and catches every C++ exception.
        let status = unsafe { f(self.handle, err.as_mut_ptr().cast(), ERR_CAP) };
        check(what, status, &err)
    }

    /// Runs `work` eagerly with the graph's side stream current (PyTorch's warm-up before a
    /// capture: cuDNN's and cuBLAS's lazy set-up then happens on the capture's stream).
    pub fn on_side_stream<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        self.between("side stream", self.shim.enter_stream, self.shim.leave_stream, work)
    }

    /// `work` between the shim calls `begin` and `end`; `end` runs whether `work` failed or not
    /// (`work`'s error first).
    fn between<T>(&self, what: &str, begin: GraphFn, end: GraphFn, work: impl FnOnce() -> Result<T>) -> Result<T> {
        self.call(what, begin)?;
        let out = work();
        let ended = self.call(what, end);
        let out = out?;
        ended?;
        Ok(out)
    }

    /// Records the CUDA work `work` queues, without running it, and instantiates the graph.
    /// What `work` returns (its output tensors) is what each [`CudaGraph::replay`] overwrites.
    /// `work` must not read tensor values on the host (no `.item()`, no data-dependent shapes):
    /// CUDA refuses synchronisation during a capture, and the capture fails with its reason.
    pub fn capture<T>(&mut self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.captured {
            return Err(Error::Invalid("this CUDA graph is captured already".into()));
        }
        let out = self.between("capture", self.shim.capture_begin, self.shim.capture_end, work)?;
        self.captured = true;
        Ok(out)
    }

    /// Launches the captured work once, on the current stream.
    pub fn replay(&self) -> Result<()> {
        if !self.captured {
            return Err(Error::Invalid("this CUDA graph has not been captured".into()));
        }
        self.call("replay", self.shim.replay)
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: the handle came from `new` and is freed exactly once, here.
        unsafe { (self.shim.free)(self.handle) }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::ffi::{c_void, CStr, CString};
    use std::io::Write;
    use std::os::fd::FromRawFd;

    use super::Shim;
    use crate::cuda_library::dl_error;

    /// The shim's function `name` as a `F` (a function-pointer type).
    ///
    /// # Safety
    /// `F` must be the exact signature of the `extern "C"` function `name` in csrc/cuda_graph.cpp.
    unsafe fn function<F: Copy>(lib: *mut c_void, name: &CStr) -> std::result::Result<F, String> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>(), "F is a function pointer");
        // SAFETY: `lib` is a handle dlopen returned (never closed); `name` is NUL-terminated.
        let sym = unsafe { libc::dlsym(lib, name.as_ptr()) };
        if sym.is_null() {
            return Err(format!("the CUDA-graph shim lacks {}: {}", name.to_string_lossy(), dl_error()));
        }
        // SAFETY: a non-null address of that function, of pointer size, read as its type (the
        // caller's promise).
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&sym) })
    }

    /// Writes the shim to an anonymous memory file and opens it (`RTLD_NOW`: every libtorch
    /// symbol it uses is resolved here, against the libraries the process loaded).
    pub(super) fn open(bytes: &[u8]) -> std::result::Result<Shim, String> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(c"infoat_cuda_graph".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor owned by nothing else; the File closes it.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(bytes).map_err(|e| format!("writing the CUDA-graph shim to memory: {e}"))?;
        let path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number");
        // SAFETY: dlopen takes a NUL-terminated path; the handle stays open for the process's
        // life, so no code of it is ever unmapped. The mapping outlives the fd closed below.
        let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        drop(file);
        if lib.is_null() {
            return Err(format!("opening the CUDA-graph shim: {}", dl_error()));
        }
        // SAFETY (each call): the types are those of csrc/cuda_graph.cpp's `extern "C"` functions.
        unsafe {
            Ok(Shim {
                new: function(lib, c"infoat_cuda_graph_new")?,
                enter_stream: function(lib, c"infoat_cuda_graph_enter_stream")?,
                leave_stream: function(lib, c"infoat_cuda_graph_leave_stream")?,
                capture_begin: function(lib, c"infoat_cuda_graph_capture_begin")?,
                capture_end: function(lib, c"infoat_cuda_graph_capture_end")?,
                replay: function(lib, c"infoat_cuda_graph_replay")?,
                free: function(lib, c"infoat_cuda_graph_free")?,
            })
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::Shim;

    pub(super) fn open(_bytes: &[u8]) -> std::result::Result<Shim, String> {
        Err("CUDA graphs are supported on linux-gnu only".into())
    }
}
