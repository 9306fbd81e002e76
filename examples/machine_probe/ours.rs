//! Our own kernels' rates on the runtime's code paths and instruction set,
//! with a pool of the given size: the multi-token matrix product on a
//! prefill-like shape (compute rate), the one-token product streaming bf16
//! weights from a buffer far larger than the caches (a bandwidth), and the
//! attention dot product on data in L1.

use std::time::Instant;

use trtllm_minitron::DType;
use trtllm_minitron::runtime::kernels::{Isa, MatRef, dot, matmul_on};
use trtllm_minitron::runtime::pool::Pool;

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn activations(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 7) as f32 * 0.1).collect()
}

/// GFLOP/s of a 256-token product with 512 bf16 rows of 3072 inputs (the
/// inner loop of a Minitron-4B prefill, on a matrix that stays in cache).
pub fn gemm_gflops(pool: &Pool) -> f64 {
    let (n, k, m) = (256, 3072, 512);
    let x = activations(n * k);
    // Normal bf16 values: 0x3c00 + small mantissas.
    let w: Vec<u8> = (0..m * k * 2)
        .map(|i| if i % 2 == 1 { 0x3c } else { (i % 251) as u8 })
        .collect();
    let w = MatRef {
        dtype: DType::BF16,
        rows: m,
        cols: k,
        data: &w,
    };
    let mut y = vec![0f32; n * m];
    let s = best_of(5, || {
        let t = Instant::now();
        matmul_on(pool, Isa::get(), &x, n, w, &mut y);
        t.elapsed().as_secs_f64()
    });
    2.0 * (n * m * k) as f64 / s / 1e9
}

/// Bytes/s of bf16 weights (`data`, rows of 4096) through the one-token product.
pub fn gemv_bytes_per_second(pool: &Pool, data: &[u8]) -> f64 {
    let k = 4096;
    let m = data.len() / (2 * k);
    let x = activations(k);
    let w = MatRef {
        dtype: DType::BF16,
        rows: m,
        cols: k,
        data: &data[..m * k * 2],
    };
    let mut y = vec![0f32; m];
    let s = best_of(3, || {
        let t = Instant::now();
        matmul_on(pool, Isa::get(), &x, 1, w, &mut y);
        t.elapsed().as_secs_f64()
    });
    (m * k * 2) as f64 / s
}

/// GFLOP/s of the attention dot product over 16 KiB vectors (in L1), one thread.
pub fn dot_gflops() -> f64 {
    let k = 4096;
    let (a, x) = (activations(k), activations(k));
    let reps = 100_000usize;
    let s = best_of(3, || {
        let t = Instant::now();
        let mut s = 0f32;
        for _ in 0..reps {
            s += dot(std::hint::black_box(&a), &x);
        }
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    });
    2.0 * (reps * k) as f64 / s / 1e9
}
