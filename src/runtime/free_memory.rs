//! What malloc does with freed heap memory (glibc's malloc; elsewhere these
//! are no-ops): a long-running server gives it back to the operating system,
//! a one-shot command (`run`, `check`) keeps it for reuse.
//!
//! glibc gives each thread that allocates an arena of its own. A thread's
//! arena returns memory to the system only from its top end, once the free
//! top exceeds the trim threshold, and glibc raises that threshold to twice
//! the size of any large (separately mapped) allocation freed ("dynamic mmap
//! threshold"). A serving scheduler frees KV caches and per-step activations
//! of many sizes between requests: under glibc's defaults its arena keeps the
//! peak of the traffic it has seen resident, free chunks in its middle and up
//! to twice the largest activation at its top (measured with
//! `scripts/bench-serve --soak`, see scripts/BENCHMARKS.md).

/// glibc's default trim threshold: a thread arena's free top beyond this much
/// goes back to the system as soon as it is freed.
const TRIM_THRESHOLD: i32 = 128 * 1024;
/// The largest threshold glibc's dynamic adjustment would reach (64-bit):
/// allocations below it come from the arenas, whose memory is reused from
/// step to step without new page faults.
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Fixes malloc's thresholds for a long-running process instead of letting
/// the first large free raise the trim threshold: a thread arena's free top
/// is returned beyond 128 KiB; allocations up to 32 MiB come from the arenas
/// (what the dynamic adjustment reaches anyway), larger ones get a mapping of
/// their own. Free chunks inside the arenas are left to [`release_to_os`].
pub fn keep_trim_threshold() {
    set_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD);
}

/// For a one-shot command on the reference runtime (`run`, `check`; set for
/// the rest of the process): allocations up to 32 MiB come
/// from the arenas and what is freed stays there for the next one. Under
/// glibc's defaults, each multi-megabyte activation of a prefill got a
/// mapping of its own, unmapped when freed: every layer faulted in and
/// zeroed fresh pages, and with two threads each unmapping interrupted the
/// other core to flush its TLB. 4B prefill of 256 tokens: 6% faster on one
/// thread and 7% on two (alternated; max RSS +8 MB), decode within the noise
/// (scripts/BENCHMARKS.md). The process keeps its peak until it exits.
pub fn keep_freed_memory() {
    set_thresholds(MMAP_THRESHOLD, i32::MAX);
}

/// Allocations below `mmap` bytes come from the arenas; an arena's free top
/// beyond `trim` bytes goes back to the system.
fn set_thresholds(mmap: i32, trim: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters (under its own lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap, trim);
}

/// Releases the whole free pages inside every arena (`malloc_trim`). It walks
/// every arena's free chunks, so it is meant for idle moments, not for every
/// step. What it cannot release: pages that hold live data, and the chunks
/// each thread caches for reuse (glibc's tcache, at most 7 per size class up
/// to 1 KiB, per thread).
pub fn release_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the arenas' own locks; 0 keeps no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}
