//! One-token matrix products (decode): `y[o] = sum_i w[o, i] * x[i]` for a
//! run of rows of a stored weight matrix. Memory-bound: each weight is read
//! once and widened to f32 in registers.
//!
//! Every output is summed in exactly the order the multi-token kernels
//! (`gemm`) use, so a token gets bit-identical values whether it runs alone or
//! in a batch: per KC block of inputs, one chain of multiply-adds in input
//! order starting from zero; the blocks' sums added in order. The x86 kernel
//! keeps that order fast by working on eight rows at once: it transposes 8x8
//! blocks of weights in registers so that each vector lane is one row's chain.

use super::gemm::KC;
use super::kernels::{Isa, MatRef, decode_row};
use crate::DType;

/// Rows the x86 kernel takes at a time; runs handed to threads are multiples
/// of it (only a matrix's last run has a padded remainder).
pub const ROW_STEP: usize = 32;

/// Rows `first .. first + y.len()` of `w` times `x` into `y`.
pub fn rows(w: MatRef<'_>, x: &[f32], y: &mut [f32], first: usize, isa: Isa) {
    let k = w.cols;
    let row_bytes = k * w.dtype.size();
    let data = &w.data[first * row_bytes..(first + y.len()) * row_bytes];
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86::rows(data, w.dtype, x, y),
        _ => rows_generic(data, w.dtype, x, y),
    }
}

/// Portable path, in the order of `gemm`'s portable kernel: separate
/// multiply and add (no fused multiply-add without the CPU feature).
fn rows_generic(data: &[u8], dtype: DType, x: &[f32], y: &mut [f32]) {
    let k = x.len();
    let es = dtype.size();
    let mut wide = [0f32; KC];
    for (row, out) in data.chunks_exact(k * es).zip(y.iter_mut()) {
        let mut total = 0f32;
        for (b, (bytes, xs)) in row.chunks(KC * es).zip(x.chunks(KC)).enumerate() {
            let wide = &mut wide[..xs.len()];
            decode_row(bytes, dtype, wide);
            let mut acc = 0f32;
            for (a, b) in wide.iter().zip(xs) {
                acc += a * b;
            }
            total = if b == 0 { acc } else { total + acc };
        }
        *out = total;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::KC;
    use crate::DType;
    use crate::runtime::kernels::x86::{Bf16, Elem, F16, F32, load_block};

    /// Rows per step: four groups of eight, four independent chains.
    use super::ROW_STEP as ROWS;

    /// How far ahead of the loads each row is prefetched.
    const PREFETCH: usize = 512;

    thread_local! {
        /// The last rows of a run (fewer than ROWS), zero-padded to ROWS.
        static PADDED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    pub fn rows(data: &[u8], dtype: DType, x: &[f32], y: &mut [f32]) {
        let row_bytes = x.len() * dtype.size();
        let full = y.len() / ROWS * ROWS;
        let (head, tail) = y.split_at_mut(full);
        // SAFETY: only called for Isa::Avx2 or better (AVX2, FMA, F16C).
        let run = |data: &[u8], y: &mut [f32]| unsafe {
            match dtype {
                DType::BF16 => rows_avx2::<Bf16>(data, x, y),
                DType::F16 => rows_avx2::<F16>(data, x, y),
                DType::F32 => rows_avx2::<F32>(data, x, y),
            }
        };
        run(&data[..full * row_bytes], head);
        if !tail.is_empty() {
            PADDED.with_borrow_mut(|padded| {
                padded.clear();
                padded.extend_from_slice(&data[full * row_bytes..]);
                padded.resize(ROWS * row_bytes, 0);
                let mut out = [0f32; ROWS];
                run(padded, &mut out);
                tail.copy_from_slice(&out[..tail.len()]);
            });
        }
    }

    /// `y.len()` must be a multiple of ROWS.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_avx2<E: Elem>(data: &[u8], x: &[f32], y: &mut [f32]) {
        let k = x.len();
        let row_bytes = k * E::SIZE;
        assert!(y.len() % ROWS == 0 && data.len() >= y.len() * row_bytes);
        for r0 in (0..y.len()).step_by(ROWS) {
            let base = data[r0 * row_bytes..(r0 + ROWS) * row_bytes].as_ptr();
            let mut total = [_mm256_setzero_ps(); 4];
            for kb in (0..k).step_by(KC) {
                let kc = KC.min(k - kb);
                let full = kc / 8 * 8;
                let mut acc = [_mm256_setzero_ps(); 4];
                for i in (kb..kb + full).step_by(8) {
                    // (No closures here: they would not inherit the target
                    // features, and every intrinsic would become a call.)
                    if (i * E::SIZE) % 64 == 0 {
                        // Each of the 32 rows is its own stream, more than the
                        // hardware prefetchers follow: fetch ahead ourselves.
                        for j in 0..ROWS {
                            // SAFETY: prefetching is a hint; any address is allowed.
                            let ahead = unsafe { base.add(j * row_bytes + i * E::SIZE + PREFETCH) };
                            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                        }
                    }
                    let mut v = [[_mm256_setzero_ps(); 8]; 4];
                    for (g, vg) in v.iter_mut().enumerate() {
                        // SAFETY: rows r0..r0+32 and elements i..i+8 are inside
                        // the run (i + 8 <= kb + full <= k).
                        *vg = unsafe { load_block::<E>(base.add(8 * g * row_bytes + i * E::SIZE), row_bytes) };
                    }
                    // The four chains interleaved: each FMA waits on the one
                    // four places back, which has finished by then.
                    let xs = &x[i..i + 8];
                    for (q, &xq) in xs.iter().enumerate() {
                        let xq = _mm256_set1_ps(xq);
                        for g in 0..4 {
                            acc[g] = _mm256_fmadd_ps(v[g][q], xq, acc[g]);
                        }
                    }
                }
                if full < kc {
                    // The block's last inputs, continuing each row's chain.
                    let mut lanes = [0f32; ROWS];
                    for (g, a) in acc.iter().enumerate() {
                        // SAFETY: lanes has 8 floats at 8g.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * g), *a) };
                    }
                    for (j, lane) in lanes.iter_mut().enumerate() {
                        let row = &data[(r0 + j) * row_bytes..(r0 + j + 1) * row_bytes];
                        for i in kb + full..kb + kc {
                            *lane = E::scalar(&row[i * E::SIZE..(i + 1) * E::SIZE]).mul_add(x[i], *lane);
                        }
                    }
                    for (g, a) in acc.iter_mut().enumerate() {
                        // SAFETY: as above.
                        *a = unsafe { _mm256_loadu_ps(lanes.as_ptr().add(8 * g)) };
                    }
                }
                for (t, a) in total.iter_mut().zip(acc) {
                    *t = if kb == 0 { a } else { _mm256_add_ps(*t, a) };
                }
            }
            for (g, t) in total.iter().enumerate() {
                // SAFETY: y has ROWS outputs from r0.
                unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(r0 + 8 * g), *t) };
            }
        }
    }
}
