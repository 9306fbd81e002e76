//! Measures this machine's ceilings for scripts/bench-run, with the same thread
//! pool and kernels the reference runtime uses: streaming read bandwidth of a
//! large buffer, the f32 FMA rate of our in-cache dot kernel, and the bf16
//! weight-streaming rate of the decode kernel. Prints one JSON object.

use std::time::Instant;

use rayon::prelude::*;
use trtllm_minitron::runtime::kernels::{dot, dot_bf16};

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let gib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let bytes = gib << 30;
    let threads = rayon::current_num_threads();

    // Streaming read: sum u64 words of a buffer far larger than the caches.
    let words: Vec<u64> = (0..bytes / 8).into_par_iter().map(|i| i as u64).collect();
    let read_s = best_of(3, || {
        let t = Instant::now();
        let sum: u64 = words
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
            .sum();
        std::hint::black_box(sum);
        t.elapsed().as_secs_f64()
    });
    drop(words);

    // bf16 weights streamed through the decode kernel (as in a 1-token matmul).
    let k = 4096;
    // Normal bf16 values (no denormals, which would time the FPU's slow path).
    let w: Vec<u8> = (0..bytes)
        .map(|i| if i % 2 == 1 { 0x3c } else { (i % 251) as u8 })
        .collect();
    let x: Vec<f32> = (0..k).map(|i| (i % 7) as f32 * 0.1).collect();
    let bf16_s = best_of(3, || {
        let t = Instant::now();
        let s: f32 = w.par_chunks(2 * k).map(|row| dot_bf16(row, &x)).sum();
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    });
    drop(w);

    // FMA rate: dot products over data that stays in L1.
    let a: Vec<f32> = (0..k).map(|i| i as f32 * 1e-3).collect();
    let reps = 200_000usize;
    let fma_s = best_of(3, || {
        let t = Instant::now();
        let s: f32 = (0..reps)
            .into_par_iter()
            .map(|_| dot(std::hint::black_box(&a), &x))
            .sum();
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    });

    println!(
        "{{\"threads\": {threads}, \"buffer_gib\": {gib}, \"read_gb_per_s\": {:.3}, \"bf16_dot_gb_per_s\": {:.3}, \"f32_gflops\": {:.2}}}",
        bytes as f64 / read_s / 1e9,
        bytes as f64 / bf16_s / 1e9,
        2.0 * (reps * k) as f64 / fma_s / 1e9
    );
}
