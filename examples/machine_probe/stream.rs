//! Streaming read bandwidth: T threads, each summing its own contiguous part
//! of a buffer (as the decode kernels split weight rows), with the widest
//! vector loads the CPU has. Two kinds of buffer: a file-backed shared mapping
//! whose pages are in the page cache (how the runtime sees its weights), and
//! anonymous memory.

use std::sync::Barrier;
use std::time::Instant;

/// Bytes per second for `threads` threads reading all of `data`, best of `runs`.
pub fn read_bytes_per_second(data: &[u8], threads: usize, runs: usize) -> f64 {
    let part = data.len().div_ceil(threads).next_multiple_of(4096);
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let barrier = Barrier::new(threads + 1);
        let started = std::thread::scope(|s| {
            for chunk in data.chunks(part) {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    std::hint::black_box(sum(chunk));
                });
            }
            for _ in data.chunks(part).count()..threads {
                s.spawn(|| barrier.wait());
            }
            barrier.wait();
            // The scope joins every thread before it returns.
            Instant::now()
        });
        best = best.min(started.elapsed().as_secs_f64());
    }
    data.len() as f64 / best
}

/// Sum of the buffer as u64 words (the result only keeps the loads alive).
fn sum(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature detected.
            return unsafe { sum_avx512(data) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: feature detected.
            return unsafe { sum_avx2(data) };
        }
    }
    data.chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
        .fold(0, u64::wrapping_add)
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(data: &[u8]) -> u64 {
    let blocks = data.len() / 128;
    let mut acc = [_mm256_setzero_si256(); 4];
    let p = data.as_ptr();
    for i in 0..blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: i * 128 + j * 32 + 32 <= blocks * 128 <= len.
            let v = unsafe { _mm256_loadu_si256(p.add(i * 128 + j * 32) as *const __m256i) };
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let mut lanes = [0u64; 4];
    let total = _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3]));
    // SAFETY: lanes is 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, total) };
    lanes.iter().fold(0, |a, &b| a.wrapping_add(b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_avx512(data: &[u8]) -> u64 {
    let blocks = data.len() / 256;
    let mut acc = [_mm512_setzero_si512(); 4];
    let p = data.as_ptr();
    for i in 0..blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: i * 256 + j * 64 + 64 <= blocks * 256 <= len.
            let v = unsafe { _mm512_loadu_si512(p.add(i * 256 + j * 64) as *const _) };
            *a = _mm512_add_epi64(*a, v);
        }
    }
    let total = _mm512_add_epi64(_mm512_add_epi64(acc[0], acc[1]), _mm512_add_epi64(acc[2], acc[3]));
    _mm512_reduce_add_epi64(total) as u64
}
