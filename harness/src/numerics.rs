//! The numerics fingerprint (issue 18): what decides which floating-point kernels libtorch runs
//! on this CPU, recorded in every environment record so that bit-exact comparison is claimed
//! only between runs that executed the same kernels.
//!
//! libtorch picks kernels at three levels, each by the CPU it finds at run time:
//! - ATen's vectorised element-wise and reduction kernels by its *CPU capability* (`DEFAULT`,
//!   `AVX2`, `AVX512`; capped by `ATEN_CPU_CAPABILITY`): the vector width changes the order of
//!   the additions inside a sum, so results differ in the last bits;
//! - oneDNN's convolutions by its ISA (capped by `ONEDNN_MAX_CPU_ISA` / `DNNL_MAX_CPU_ISA`) and
//!   by cache sizes (its blocking);
//! - MKL's matrix products by its code branch (`MKL_ENABLE_INSTRUCTIONS`, `MKL_CBWR`).
//!
//! ATen's capability and the oneDNN/MKL versions are asked of libtorch itself; oneDNN's ISA query
//! is not exported by libtorch, so it is derived from the CPU flags and the cap the same way
//! oneDNN resolves it. This module (with `precision.rs` and `alloc.rs`) holds the workspace's
//! `unsafe` code: calls of libtorch functions that tch does not bind.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::mem::MaybeUninit;

pub use infoat_registry::Numerics;

/// The environment variables that override libtorch's kernel choice on the CPU; any that is set
/// is recorded in the fingerprint (it changes numbers).
pub const DISPATCH_OVERRIDES: &[&str] = &[
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "INFOAT_PORTABLE_NUMERICS",
];

/// The CPU flags (as /proc/cpuinfo spells them) that ATen, oneDNN or MKL dispatch on.
const ISA_FLAGS: &[&str] = &[
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx_vnni_int8",
    "avx_ne_convert",
    "avx512f",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512cd",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx512ifma",
    "avx512vbmi",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
];

/// An ISA of oneDNN: name, parent ISA, added CPU flags, cap names (see [`ONEDNN_ISAS`]).
type OnednnIsa = (&'static str, Option<usize>, &'static [&'static str], &'static [&'static str]);

/// oneDNN's x64 ISAs from the lowest to the highest: name, the ISA it extends (an index into
/// this table), the CPU flags it adds, and the names its cap (`ONEDNN_MAX_CPU_ISA`) accepts. The
/// 256-bit VNNI ISAs sit below `avx512_core`, which extends `avx2`, not them (Ice Lake has
/// AVX-512 but no AVX-VNNI).
const ONEDNN_ISAS: &[OnednnIsa] = &[
    ("sse41", None, &["sse4_1"], &["SSE41"]),
    ("avx", Some(0), &["avx"], &["AVX"]),
    ("avx2", Some(1), &["avx2", "fma"], &["AVX2"]),
    ("avx2_vnni", Some(2), &["avx_vnni"], &["AVX2_VNNI"]),
    ("avx2_vnni_2", Some(3), &["avx_vnni_int8", "avx_ne_convert"], &["AVX2_VNNI_2"]),
    ("avx512_core", Some(2), &["avx512f", "avx512bw", "avx512dq", "avx512vl"], &["AVX512_CORE"]),
    ("avx512_core_vnni", Some(5), &["avx512_vnni"], &["AVX512_CORE_VNNI"]),
    ("avx512_core_bf16", Some(6), &["avx512_bf16"], &["AVX512_CORE_BF16"]),
    ("avx10_1_512", Some(7), &["avx512_fp16"], &["AVX10_1_512", "AVX512_CORE_FP16"]),
    ("avx10_1_512_amx", Some(8), &["amx_tile", "amx_int8", "amx_bf16"], &["AVX10_1_512_AMX", "AVX512_CORE_AMX"]),
    ("avx10_1_512_amx_fp16", Some(9), &["amx_fp16"], &["AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16"]),
];

/// True when the CPU has every flag ISA `i` of [`ONEDNN_ISAS`] needs (its own and its parents').
fn has_isa(flags: &[&str], i: usize) -> bool {
    let (_, parent, adds, _) = ONEDNN_ISAS[i];
    adds.iter().all(|f| flags.contains(f)) && parent.is_none_or(|p| has_isa(flags, p))
}

/// The fingerprint of this process's CPU numerics.
pub fn fingerprint() -> Numerics {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let caches = caches_of(std::path::Path::new("/sys/devices/system/cpu/cpu0/cache"));
    let mut overrides: BTreeMap<String, String> = DISPATCH_OVERRIDES
        .iter()
        .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()).map(|v| (k.to_string(), v)))
        .collect();
    if !onednn_enabled() {
        overrides.insert("onednn".into(), "off".into());
    }
    from_parts(&cpuinfo, caches, &overrides, aten_cpu_capability(), onednn_version(), mkl_version())
}

/// The fingerprint from /proc/cpuinfo's text, the cache list, the overrides set and what
/// libtorch reported (split from [`fingerprint`] for tests).
pub fn from_parts(
    cpuinfo: &str,
    caches: Vec<String>,
    overrides: &BTreeMap<String, String>,
    aten_cpu_capability: String,
    onednn_version: String,
    mkl_version: String,
) -> Numerics {
    // The first processor's block describes the CPU (every core of a VM reports the same).
    let block: Vec<(&str, &str)> = cpuinfo
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect();
    let field = |name: &str| block.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let number = |name: &str| field(name).and_then(|v| v.parse::<u32>().ok());
    let present: Vec<&str> = field("flags").map(|f| f.split_whitespace().collect()).unwrap_or_default();
    let mut isa_flags: Vec<String> = ISA_FLAGS.iter().filter(|f| present.contains(f)).map(|f| f.to_string()).collect();
    isa_flags.sort();
    let cap = overrides.get("ONEDNN_MAX_CPU_ISA").or_else(|| overrides.get("DNNL_MAX_CPU_ISA"));
    Numerics {
        cpu_vendor: field("vendor_id").unwrap_or("unknown").to_string(),
        cpu_family: number("cpu family"),
        cpu_model: number("model"),
        cpu_stepping: number("stepping"),
        onednn_isa: onednn_isa(&present, cap.map(String::as_str)),
        isa_flags,
        caches,
        aten_cpu_capability,
        onednn_version,
        mkl_version,
        overrides: overrides.clone(),
    }
}

/// oneDNN's ISA on a CPU with `flags`, under the cap `cap` (oneDNN's names; `ALL` or none: no
/// cap). A cap oneDNN does not know is recorded as such rather than guessed.
pub fn onednn_isa(flags: &[&str], cap: Option<&str>) -> String {
    let cap = cap.map(str::to_ascii_uppercase).filter(|c| c != "ALL" && c != "DEFAULT");
    let known = |c: &str| ONEDNN_ISAS.iter().position(|(_, _, _, names)| names.contains(&c));
    let limit = cap.as_deref().and_then(known).map_or(ONEDNN_ISAS.len(), |i| i + 1);
    let best = (0..limit).rev().find(|&i| has_isa(flags, i)).map_or("none", |i| ONEDNN_ISAS[i].0);
    match cap {
        Some(c) if known(&c).is_none() => format!("{best} (unknown cap {c})"),
        _ => best.to_string(),
    }
}

/// `L1d 48K`, `L2 1024K`, … for CPU 0, from sysfs (empty where sysfs has no cache information).
fn caches_of(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .filter_map(|e| {
            let p = e.ok()?.path();
            let read = |f: &str| std::fs::read_to_string(p.join(f)).ok().map(|s| s.trim().to_string());
            let (level, kind, size) = (read("level")?, read("type")?, read("size")?);
            let tag = match kind.as_str() {
                "Data" => "d",
                "Instruction" => "i",
                _ => "",
            };
            Some(format!("L{level}{tag} {size}"))
        })
        .collect();
    out.sort();
    out
}

/// libstdc++'s `std::string` (the C++11 ABI libtorch is built with): data pointer, length and
/// a 16-byte small-string buffer that the pointer designates when the text fits.
#[repr(C)]
struct CxxString {
    ptr: *const u8,
    len: usize,
    local: [u8; 16],
}

unsafe extern "C" {
    // Functions returning a `std::string` return it through a hidden first pointer argument
    // (Itanium C++ ABI: the class has a non-trivial destructor).
    #[link_name = "_ZN2at18get_cpu_capabilityB5cxx11Ev"]
    fn at_get_cpu_capability(out: *mut CxxString);
    #[link_name = "_ZN2at18get_mkldnn_versionB5cxx11Ev"]
    fn at_get_mkldnn_version(out: *mut CxxString);
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut c_void;
    #[link_name = "_ZN2at7Context20setUserEnabledMkldnnEb"]
    fn at_context_set_user_enabled_mkldnn(ctx: *mut c_void, enabled: bool);
    #[link_name = "_ZNK2at7Context17userEnabledMkldnnEv"]
    fn at_context_user_enabled_mkldnn(ctx: *const c_void) -> bool;
    #[link_name = "_ZdlPv"]
    fn cxx_operator_delete(p: *mut c_void);
    #[link_name = "MKL_Get_Version_String"]
    fn mkl_get_version_string(buf: *mut u8, len: i32);
}

/// Calls a libtorch function that returns a `std::string` and copies the text out.
fn cxx_string(f: unsafe extern "C" fn(*mut CxxString)) -> String {
    let mut s = MaybeUninit::<CxxString>::uninit();
    // SAFETY: `f` is one of the functions declared above, which construct a std::string in the
    // storage they are given; it is read in place (it may point into itself), copied, and its
    // heap buffer (when the text did not fit the local one) released with operator delete,
    // which is what std::string's destructor does.
    unsafe {
        f(s.as_mut_ptr());
        let p = s.as_mut_ptr();
        let local = std::ptr::addr_of!((*p).local) as *const u8;
        let (ptr, len) = ((*p).ptr, (*p).len);
        let text = String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned();
        if ptr != local {
            cxx_operator_delete(ptr as *mut c_void);
        }
        text
    }
}

/// ATen's CPU capability (`DEFAULT`, `AVX2`, `AVX512`, …), as `torch.backends.cpu` reports it.
pub fn aten_cpu_capability() -> String {
    cxx_string(at_get_cpu_capability)
}

/// The oneDNN build in libtorch (e.g. `3.10.2 (Git Hash f1d4719…)`).
pub fn onednn_version() -> String {
    cxx_string(at_get_mkldnn_version)
}

/// The MKL build in libtorch.
pub fn mkl_version() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: MKL writes at most `len` bytes, NUL-terminated, into the buffer.
    unsafe { mkl_get_version_string(buf.as_mut_ptr(), buf.len() as i32) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

/// The environment variable that asks for the portable numerics mode (`1`).
pub const PORTABLE_ENV: &str = "INFOAT_PORTABLE_NUMERICS";

/// The portable numerics mode (issue 18; docs/numerics.md): kernels whose results do not depend
/// on the CPU's vector ISA — ATen at its `DEFAULT` capability, MKL in its conditional numerical
/// reproducibility mode `COMPATIBLE`, and oneDNN off (convolutions through ATen's own
/// im2col + MKL path). Applied when [`PORTABLE_ENV`] is `1`; it must run before the first
/// tensor operation (ATen and MKL read their settings once), so `main` calls it first. It
/// changes numbers, and the settings it makes are recorded in every fingerprint. Returns
/// whether it is on.
pub fn apply_portable_mode_from_env() -> bool {
    if std::env::var(PORTABLE_ENV).ok().as_deref() != Some("1") {
        return false;
    }
    for (key, value) in [("ATEN_CPU_CAPABILITY", "default"), ("MKL_CBWR", "COMPATIBLE")] {
        std::env::set_var(key, value);
    }
    set_onednn_enabled(false);
    true
}

/// Turns libtorch's use of oneDNN (MKL-DNN) for CPU convolutions on or off.
pub fn set_onednn_enabled(enabled: bool) {
    // SAFETY: at::globalContext() returns a process-lifetime singleton; the setter stores a
    // flag that libtorch reads when it chooses a convolution backend.
    unsafe { at_context_set_user_enabled_mkldnn(at_global_context(), enabled) }
}

/// Whether libtorch uses oneDNN for CPU convolutions.
pub fn onednn_enabled() -> bool {
    // SAFETY: as in [`set_onednn_enabled`]; the getter reads the flag.
    unsafe { at_context_user_enabled_mkldnn(at_global_context()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN3: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
        model name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu sse4_1 sse4_2 avx avx2 fma f16c\n\n\
        processor\t: 1\nvendor_id\t: AuthenticAMD\n";
    const SPR: &str = "vendor_id : GenuineIntel\ncpu family : 6\nmodel : 143\nstepping : 8\n\
        flags : sse4_1 avx avx2 fma avx_vnni avx512f avx512bw avx512dq avx512vl avx512_vnni avx512_bf16 \
        avx512_fp16 amx_tile amx_int8 amx_bf16\n";

    #[test]
    fn the_fingerprint_reads_the_first_processor_and_the_dispatch_flags() {
        let n = from_parts(ZEN3, vec!["L2 1024K".into()], &BTreeMap::new(), "AVX2".into(), "3".into(), "m".into());
        assert_eq!(
            (n.cpu_vendor.as_str(), n.cpu_family, n.cpu_model, n.cpu_stepping),
            ("AuthenticAMD", Some(25), Some(1), Some(1))
        );
        assert_eq!(n.isa_flags, ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"]);
        assert_eq!(n.onednn_isa, "avx2");
        let spr = from_parts(SPR, vec![], &BTreeMap::new(), "AVX512".into(), "3".into(), "m".into());
        assert_eq!((spr.cpu_family, spr.cpu_model), (Some(6), Some(143)));
        assert_eq!(spr.onednn_isa, "avx10_1_512_amx");
        assert_ne!(n, spr);
    }

    #[test]
    fn the_onednn_cap_lowers_the_isa_and_never_raises_it() {
        let flags = ["sse4_1", "avx", "avx2", "fma"];
        assert_eq!(onednn_isa(&flags, None), "avx2");
        assert_eq!(onednn_isa(&flags, Some("sse41")), "sse41");
        assert_eq!(onednn_isa(&flags, Some("AVX512_CORE")), "avx2");
        assert_eq!(onednn_isa(&flags, Some("ALL")), "avx2");
        assert_eq!(onednn_isa(&flags, Some("avx3")), "avx2 (unknown cap AVX3)");
        // AVX-512F alone is not avx512_core (which needs BW, DQ and VL too).
        assert_eq!(onednn_isa(&["sse4_1", "avx", "avx2", "fma", "avx512f"], None), "avx2");
        // Ice Lake: AVX-512 with VNNI but no 256-bit AVX-VNNI.
        let icl = ["sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"];
        assert_eq!(onednn_isa(&icl, None), "avx512_core_vnni");
        assert_eq!(onednn_isa(&icl, Some("AVX2_VNNI")), "avx2");
    }

    #[test]
    fn libtorch_reports_its_capability_and_builds() {
        let cap = aten_cpu_capability();
        assert!(["DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "SVE128"].contains(&cap.as_str()), "{cap}");
        assert!(onednn_version().contains("v3."), "{}", onednn_version());
        assert!(mkl_version().contains("Math Kernel Library"), "{}", mkl_version());
        let n = fingerprint();
        assert_eq!(n.aten_cpu_capability, cap);
    }
}
