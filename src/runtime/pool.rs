//! The runtime's worker threads: one parallel region at a time, run by the
//! calling thread and `threads - 1` workers, each given its index.
//!
//! A decode step of Minitron runs about 200 matrix products of a few hundred
//! microseconds each, with short serial steps (norms, residual adds) between.
//! A general-purpose pool (rayon) puts idle workers to sleep and wakes them
//! per job, and the caller only waits; here the caller works as thread 0 and
//! the workers spin for a while between regions before they park, so a region
//! starts within a cache-line transfer and every core stays on the work. The
//! split of work is left to the caller (contiguous, even ranges: each thread
//! streams its own rows of a weight matrix).

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a worker spins for the next region before it parks: longer than
/// the serial gaps of a forward pass, short enough not to burn a core for
/// long once generation stops.
const SPIN: Duration = Duration::from_millis(2);

type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per region; workers run the job when it changes.
    generation: AtomicU64,
    /// The current region's job, erased to 'static: `run` does not return
    /// before every worker has finished with it.
    job: UnsafeCell<Option<Job<'static>>>,
    /// Workers still running the current region.
    pending: AtomicUsize,
    panicked: AtomicBool,
    /// Set when the pool is dropped: workers leave at the next bump.
    shutdown: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by `run` while no worker reads it (between
// regions: all workers have decremented `pending`), and read by workers only
// after they observe the generation bump that follows the write (Acquire).
unsafe impl Sync for Shared {}

pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    /// Serialises regions started from different threads.
    region: Mutex<()>,
}

impl Pool {
    /// A pool of `threads` threads in all (the caller of `run` is one of them).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        for index in 1..threads {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("trtllm-minitron-worker-{index}"))
                .spawn(move || worker(&shared, index))
                .expect("cannot start a runtime worker thread");
        }
        Pool {
            threads,
            shared,
            region: Mutex::new(()),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job(i)` once on each thread `i` in `0..threads()` (0 on the
    /// caller) and returns when all have finished. A panic in any of them is
    /// raised here after the others finish.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            job(0);
            return;
        }
        let _region = self.region.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: the lifetime is erased only for the duration of this call;
        // we wait below until no worker uses the job any more.
        let erased: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(job) };
        // SAFETY: no worker reads `job` now: the previous region ended with
        // `pending` at 0, and workers read it only after the bump below.
        unsafe { *s.job.get() = Some(erased) };
        s.pending.store(self.threads - 1, Ordering::Relaxed);
        s.bump();
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 16) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: every worker is done with the job (pending is 0).
        unsafe { *s.job.get() = None };
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a runtime worker thread panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.bump();
    }
}

impl Shared {
    /// Starts a region (or the shutdown): bumps the generation and wakes
    /// parked workers. SeqCst pairs with `park`: either we see its sleeper
    /// count, or it sees the new generation.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    /// Blocks until the generation differs from `seen`.
    fn park(&self, seen: u64) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while self.generation.load(Ordering::SeqCst) == seen {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let generation = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                s.park(seen);
                continue;
            }
            std::hint::spin_loop();
        };
        seen = generation;
        if s.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: written before the generation bump we just observed (Acquire),
        // and not changed until we decrement `pending`.
        if let Some(job) = unsafe { *s.job.get() }
            && catch_unwind(AssertUnwindSafe(|| job(index))).is_err()
        {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

static GLOBAL: OnceLock<Pool> = OnceLock::new();
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Sets the thread count of the global pool; only before its first use.
/// Returns false if the pool already runs with another count.
pub fn set_threads(threads: usize) -> bool {
    REQUESTED.store(threads, Ordering::Relaxed);
    GLOBAL.get().is_none_or(|p| p.threads() == threads.max(1))
}

/// The runtime's pool: `set_threads`, else `TRTLLM_MINITRON_THREADS`, else
/// `RAYON_NUM_THREADS`, else one thread per available CPU.
pub fn global() -> &'static Pool {
    GLOBAL.get_or_init(|| {
        // RAYON_NUM_THREADS is rayon's: read as leniently as rayon reads it.
        let rayon = || {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        let requested = REQUESTED.load(Ordering::Relaxed);
        let threads = if requested > 0 {
            requested
        } else {
            super::settings::or_warn(super::settings::threads(), None)
                .or_else(rayon)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        };
        Pool::new(threads)
    })
}

/// Hands out pieces of `0..len` (`chunk` long, the last one shorter) to
/// whichever thread asks next: a thread slowed down by anything else the
/// machine runs takes fewer pieces instead of holding the others up.
pub struct Chunks {
    next: AtomicUsize,
    len: usize,
    chunk: usize,
}

impl Chunks {
    pub fn new(len: usize, chunk: usize) -> Chunks {
        Chunks {
            next: AtomicUsize::new(0),
            len,
            chunk: chunk.max(1),
        }
    }

    /// The next unclaimed piece `(start, end)`, or `None` when all are taken.
    pub fn claim(&self) -> Option<(usize, usize)> {
        let start = self.next.fetch_add(self.chunk, Ordering::Relaxed);
        (start < self.len).then(|| (start, (start + self.chunk).min(self.len)))
    }
}

/// An output that the threads of one region write through in disjoint ranges.
pub struct SharedOut<T = f32>(*mut T);

impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedOut<T> {}

// SAFETY: only a pointer; every user writes a range no other thread touches.
unsafe impl<T: Send> Sync for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedOut<T> {}

impl<T> SharedOut<T> {
    pub fn new(out: &mut [T]) -> SharedOut<T> {
        SharedOut(out.as_mut_ptr())
    }

    /// The pointer (a method, so that closures capture the `Sync` wrapper).
    pub fn get(self) -> *mut T {
        self.0
    }

    /// Elements `at..at + len`.
    ///
    /// # Safety
    /// Within the slice given to `new`, which must outlive the use; no other
    /// thread may touch these elements meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range<'a>(self, at: usize, len: usize) -> &'a mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// The part `[start, end)` of `0..len` that thread `index` of `threads` takes:
/// contiguous, sizes differing by at most `align` (starts are multiples of it).
pub fn split(len: usize, align: usize, index: usize, threads: usize) -> (usize, usize) {
    let units = len.div_ceil(align);
    let (base, extra) = (units / threads, units % threads);
    let start = index * base + index.min(extra);
    let count = base + usize::from(index < extra);
    ((start * align).min(len), ((start + count) * align).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_region_once() {
        let pool = Pool::new(3);
        for round in 0..1000 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            pool.run(&|i| {
                hits[i].fetch_add(round + 1, Ordering::Relaxed);
            });
            for h in &hits {
                assert_eq!(h.load(Ordering::Relaxed), round + 1);
            }
        }
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn workers_wake_after_parking() {
        let pool = Pool::new(2);
        std::thread::sleep(SPIN * 3);
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn chunks_are_claimed_once_each_across_threads() {
        let pool = Pool::new(3);
        let chunks = Chunks::new(1000, 7);
        let seen: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        pool.run(&|_| {
            while let Some((a, b)) = chunks.claim() {
                for s in &seen[a..b] {
                    s.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn split_covers_the_range_contiguously_and_evenly() {
        for (len, align, threads) in [(10, 1, 3), (5120, 16, 2), (7, 4, 4), (0, 8, 2), (101, 32, 3)] {
            let mut next = 0;
            let mut sizes = Vec::new();
            for i in 0..threads {
                let (a, b) = split(len, align, i, threads);
                assert_eq!(a, next, "{len} {align} {threads}");
                assert!(a % align == 0 || a == len);
                next = b;
                sizes.push(b - a);
            }
            assert_eq!(next, len);
            // Whole units of `align` per thread differ by at most one.
            let units: Vec<usize> = sizes.iter().map(|s| s.div_ceil(align)).collect();
            let (lo, hi) = (units.iter().min().unwrap(), units.iter().max().unwrap());
            assert!(hi - lo <= 1, "{sizes:?}");
        }
    }
}
