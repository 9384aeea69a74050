//! The process's heap settings for tensor work (issue 9, CPU speed).
//!
//! libtorch allocates every CPU tensor with `posix_memalign` and frees it as soon as its last
//! reference goes. An attack step of SmallCNN at batch 128 allocates and frees about a hundred
//! buffers of 1–11 MB; with glibc's defaults the freed top of the heap is given back to the
//! kernel (`brk` shrink, or `munmap` for blocks above the dynamic mmap threshold) and the next
//! step faults the same pages in again, zero-filled. On the 2-core development VM that was a
//! third of the profile of `infoat bench --work pgd` (`perf record`, kernel page-fault and unmap
//! symbols) and made its PGD-10 step about 1.7× slower. The training loop was not measurably
//! affected (its other allocations seem to keep the heap top in use), so the settings chiefly
//! make benchmarks and attack-only processes behave like training (docs/performance.md).
//!
//! [`tune`] keeps those pages in the process instead: blocks up to 32 MiB (the largest mmap
//! threshold glibc accepts on 64-bit) come from the heap, freed memory at its top is kept up to
//! 1 GiB before trimming, and the heap grows 64 MiB at a time. The process's peak memory is
//! unchanged (the pages were in use at the peak anyway); it just does not shrink between steps.
//! Results are unaffected: allocation never changes a computed value.
//!
//! `INFOAT_MALLOC=default` leaves glibc's defaults (to measure the difference). Other C
//! libraries and operating systems keep their own allocator behaviour; [`tune`] says so.
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// The environment variable that turns the tuning off (`default`).
pub const ENV: &str = "INFOAT_MALLOC";

/// Largest block served from the heap rather than `mmap` (glibc's limit: half of 64 MiB).
pub const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory kept at the top of the heap before it is returned to the kernel.
pub const TRIM_THRESHOLD: i32 = 1 << 30;
/// Extra memory requested whenever the heap grows.
pub const TOP_PAD: i32 = 64 << 20;

/// Applies the heap settings once per process (later calls return the first outcome) and
/// returns a description for benchmark records: what was set, or why nothing was.
pub fn tune() -> &'static str {
    static OUTCOME: OnceLock<String> = OnceLock::new();
    OUTCOME.get_or_init(|| {
        if std::env::var(ENV).is_ok_and(|v| v == "default") {
            return format!("system default ({ENV}=default)");
        }
        apply()
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> String {
    let settings = [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "mmap threshold 32 MiB"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "trim threshold 1 GiB"),
        (libc::M_TOP_PAD, TOP_PAD, "top pad 64 MiB"),
    ];
    let mut done = Vec::new();
    for (param, value, what) in settings {
        // SAFETY: mallopt takes two integers and only updates glibc's allocator parameters,
        // which it guards with its own lock; it is called before (or between) allocations of
        // this process like any other libc call.
        if unsafe { libc::mallopt(param, value) } == 1 {
            done.push(what);
        }
    }
    if done.is_empty() {
        "glibc default (mallopt refused every setting)".into()
    } else {
        format!("glibc tuned: {}", done.join(", "))
    }
}

/// The process's peak resident memory so far, in bytes (`getrusage`'s `ru_maxrss`), for
/// benchmark records (issue 24); `None` where it is not implemented.
pub fn peak_resident_bytes() -> Option<u64> {
    peak()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn peak() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage struct into the pointer it is given, which points to
    // zero-initialised memory of that type owned by this frame.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    // SAFETY: zero-initialised, and filled in by getrusage when it succeeded.
    let usage = unsafe { usage.assume_init() };
    // Linux reports ru_maxrss in KiB.
    (ok && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn peak() -> Option<u64> {
    None
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> String {
    "system default (heap tuning is implemented for glibc only)".into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_memory_covers_what_this_process_touched() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(super::peak_resident_bytes(), None);
            return;
        }
        // 64 MiB written page by page must show in the peak.
        let block = vec![1u8; 64 << 20];
        let touched: u64 = block.iter().step_by(4096).map(|&b| b as u64).sum();
        let peak = super::peak_resident_bytes().expect("getrusage works on linux-gnu");
        assert!(touched > 0 && peak >= 64 << 20, "peak {peak} bytes after touching 64 MiB");
    }

    #[test]
    fn tuning_is_applied_once_and_described() {
        let first = super::tune();
        assert_eq!(super::tune(), first, "a second call must not apply anything again");
        if std::env::var(super::ENV).is_err() && cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(first, "glibc tuned: mmap threshold 32 MiB, trim threshold 1 GiB, top pad 64 MiB");
        }
    }
}
