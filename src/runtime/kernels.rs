//! CPU kernels of the reference runtime: weights stay in their stored dtype and
//! are widened to f32 one row at a time; activations and accumulation are f32.
//! Matrix products run on all cores; the inner dot products are compiled twice,
//! plainly and for AVX2+FMA, and picked at run time.

use rayon::prelude::*;

use crate::DType;

/// A row-major `[rows, cols]` weight matrix in its stored dtype.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

/// Widens one stored row to f32.
pub fn decode_row(src: &[u8], dtype: DType, out: &mut [f32]) {
    crate::dtype::cast::decode_to_f32(src, dtype, out);
}

/// Output rows of W handled per task: enough work to amortise scheduling.
const ROWS_PER_TASK: usize = 16;
/// Weight rows widened together in the many-token path (one x load feeds all of them).
const ROW_BLOCK: usize = 4;

thread_local! {
    /// Per-thread buffer for widened weight rows, reused across calls: allocating
    /// it per task would fault in fresh pages for every block of rows.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y[t, o] = sum_i x[t, i] * w[o, i]` for `n` input rows; `y` is `[n, w.rows]`.
pub fn matmul(x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    let (k, m) = (w.cols, w.rows);
    debug_assert_eq!(x.len(), n * k);
    debug_assert_eq!(y.len(), n * m);
    let row_bytes = k * w.dtype.size();
    let row = |o: usize| &w.data[o * row_bytes..(o + 1) * row_bytes];
    if n == 1 {
        // Decode: memory-bound, so widen and multiply in one pass over each row.
        y.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, out)| {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = dot_stored(row(task * ROWS_PER_TASK + j), w.dtype, x);
                }
            });
        return;
    }
    // Many tokens: widen a block of rows once, reuse it for every token. Work in
    // W's row order (transposed output) so each task owns a contiguous slice.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each(|(task, out)| {
            SCRATCH.with_borrow_mut(|scratch| {
                let rows = out.len() / n;
                scratch.resize(ROW_BLOCK * k, 0.0);
                for block in (0..rows).step_by(ROW_BLOCK) {
                    let count = ROW_BLOCK.min(rows - block);
                    for j in 0..count {
                        decode_row(
                            row(task * ROWS_PER_TASK + block + j),
                            w.dtype,
                            &mut scratch[j * k..(j + 1) * k],
                        );
                    }
                    let mut t = 0;
                    if count == ROW_BLOCK {
                        // Three tokens at a time: 7 loads feed 12 FMAs.
                        while t + 3 <= n {
                            let sums = dot4x3(&scratch[..4 * k], &x[t * k..(t + 3) * k]);
                            for (j, row) in sums.iter().enumerate() {
                                out[(block + j) * n + t..(block + j) * n + t + 3].copy_from_slice(row);
                            }
                            t += 3;
                        }
                    }
                    for t in t..n {
                        let xt = &x[t * k..(t + 1) * k];
                        if count == ROW_BLOCK {
                            let sums = dot4(&scratch[..4 * k], xt);
                            for (j, s) in sums.into_iter().enumerate() {
                                out[(block + j) * n + t] = s;
                            }
                        } else {
                            for j in 0..count {
                                out[(block + j) * n + t] = dot(&scratch[j * k..(j + 1) * k], xt);
                            }
                        }
                    }
                }
            });
        });
    for o in 0..m {
        for t in 0..n {
            y[t * m + o] = yt[o * n + t];
        }
    }
}

/// Dot product of one stored weight row with f32 activations.
fn dot_stored(row: &[u8], dtype: DType, x: &[f32]) -> f32 {
    match dtype {
        DType::BF16 => dot_bf16(row, x),
        DType::F32 | DType::F16 => SCRATCH.with_borrow_mut(|scratch| {
            scratch.resize(x.len(), 0.0);
            decode_row(row, dtype, scratch);
            dot(scratch, x)
        }),
    }
}

/// Picks the AVX2+FMA build of a kernel when the CPU has it.
macro_rules! dispatch {
    ($generic:ident, $avx2:ident, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the features were just detected.
                return unsafe { $avx2($($arg),*) };
            }
        }
        $generic($($arg),*)
    }};
}

/// Dot product, vectorised for the running CPU.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dispatch!(dot_generic, dot_avx2, a, b)
}

/// Dot product of bf16 weights (raw little-endian bytes) with f32 activations.
pub fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    dispatch!(dot_bf16_generic, dot_bf16_avx2, w, x)
}

/// Four dot products sharing one activation row (`w` holds four rows of its length).
pub fn dot4(w: &[f32], x: &[f32]) -> [f32; 4] {
    dispatch!(dot4_generic, dot4_avx2, w, x)
}

/// Lanes per block: four accumulators of eight, enough to fill AVX2 vectors and
/// hide FMA latency. Fixed-size chunks let LLVM drop bounds checks and vectorise.
const LANES: usize = 32;

/// Twelve dot products: four weight rows (`w`, each of length k) times three
/// activation rows (`x`, `[3, k]`). Returns `[row][token]`.
pub fn dot4x3(w: &[f32], x: &[f32]) -> [[f32; 3]; 4] {
    dispatch!(dot4x3_generic, dot4x3_avx2, w, x)
}

macro_rules! dot_body {
    ($a:expr, $b:expr, $elem:expr, $widen:expr, $fma:expr) => {{
        let widen = $widen;
        let (a, b) = ($a, $b);
        let mut acc = [0f32; LANES];
        let mut ca = a.chunks_exact(LANES * ($elem));
        let mut cb = b.chunks_exact(LANES);
        for (wa, xb) in (&mut ca).zip(&mut cb) {
            let xb: &[f32; LANES] = xb.try_into().unwrap_or(&[0.0; LANES]);
            for l in 0..LANES {
                acc[l] = $fma(widen(wa, l), xb[l], acc[l]);
            }
        }
        let (ra, rb) = (ca.remainder(), cb.remainder());
        let mut tail = 0f32;
        for l in 0..rb.len().min(ra.len() / ($elem)) {
            tail += widen(ra, l) * rb[l];
        }
        let mut s = [0f32; 8];
        for l in 0..8 {
            s[l] = (acc[l] + acc[l + 8]) + (acc[l + 16] + acc[l + 24]);
        }
        ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail
    }};
}

#[inline(always)]
fn plain_fma(x: f32, y: f32, acc: f32) -> f32 {
    acc + x * y
}

/// Element `l` of a chunk of f32 values.
#[inline(always)]
fn f32_at(c: &[f32], l: usize) -> f32 {
    c[l]
}

/// Element `l` of a chunk of little-endian bf16 bytes, widened exactly.
#[inline(always)]
fn bf16_at(c: &[u8], l: usize) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes([c[2 * l], c[2 * l + 1]])) << 16)
}

fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, 1, f32_at, plain_fma)
}

fn dot_bf16_generic(w: &[u8], x: &[f32]) -> f32 {
    dot_body!(w, x, 2, bf16_at, plain_fma)
}

fn dot4_generic(w: &[f32], x: &[f32]) -> [f32; 4] {
    let k = x.len();
    std::array::from_fn(|j| dot_generic(&w[j * k..(j + 1) * k], x))
}

fn dot4x3_generic(w: &[f32], x: &[f32]) -> [[f32; 3]; 4] {
    let k = x.len() / 3;
    std::array::from_fn(|j| {
        std::array::from_fn(|t| dot_generic(&w[j * k..(j + 1) * k], &x[t * k..(t + 1) * k]))
    })
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Horizontal sum of eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Eight bf16 values (16 bytes at `p`) widened to f32 (exact: bf16 is f32's top half).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_bf16x8(p: *const u8) -> __m256 {
    // SAFETY (caller): 16 readable bytes at p; unaligned loads are allowed.
    let raw = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let blocks = n / 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..blocks {
        for (q, accq) in acc.iter_mut().enumerate() {
            let at = i * 32 + q * 8;
            // SAFETY: at + 8 <= blocks * 32 <= n, within both slices.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(at)),
                    _mm256_loadu_ps(b.as_ptr().add(at)),
                )
            };
            *accq = _mm256_fmadd_ps(va, vb, *accq);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    // SAFETY: AVX2 is enabled for this function.
    let mut total = unsafe { hsum(sum) };
    for (ai, bi) in a[blocks * 32..n].iter().zip(&b[blocks * 32..n]) {
        total += ai * bi;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_bf16_avx2(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 2).min(x.len());
    let blocks = n / 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in 0..blocks {
        for (q, accq) in acc.iter_mut().enumerate() {
            let at = i * 32 + q * 8;
            // SAFETY: elements at..at + 8 are within both slices (at + 8 <= n).
            let (vw, vx) = unsafe {
                (
                    load_bf16x8(w.as_ptr().add(2 * at)),
                    _mm256_loadu_ps(x.as_ptr().add(at)),
                )
            };
            *accq = _mm256_fmadd_ps(vw, vx, *accq);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    // SAFETY: AVX2 is enabled for this function.
    let mut total = unsafe { hsum(sum) };
    for (i, xi) in x.iter().enumerate().take(n).skip(blocks * 32) {
        total += bf16_at(w, i) * xi;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(w: &[f32], x: &[f32]) -> [f32; 4] {
    let k = x.len();
    assert!(w.len() >= 4 * k);
    let blocks = k / 8;
    // Two accumulators per row: one activation load feeds four weight rows.
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i + 2 <= blocks {
        for h in 0..2 {
            let at = (i + h) * 8;
            // SAFETY: at + 8 <= k, and row j spans w[j*k..(j+1)*k] (asserted above).
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr().add(at));
                for j in 0..4 {
                    let wv = _mm256_loadu_ps(w.as_ptr().add(j * k + at));
                    acc[j * 2 + h] = _mm256_fmadd_ps(wv, xv, acc[j * 2 + h]);
                }
            }
        }
        i += 2;
    }
    let done = i * 8;
    std::array::from_fn(|j| {
        // SAFETY: AVX2 is enabled for this function.
        let mut s = unsafe { hsum(_mm256_add_ps(acc[j * 2], acc[j * 2 + 1])) };
        for idx in done..k {
            s += w[j * k + idx] * x[idx];
        }
        s
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4x3_avx2(w: &[f32], x: &[f32]) -> [[f32; 3]; 4] {
    let k = x.len() / 3;
    assert!(w.len() >= 4 * k && x.len() >= 3 * k);
    let blocks = k / 8;
    let mut acc = [[_mm256_setzero_ps(); 3]; 4];
    for i in 0..blocks {
        let at = i * 8;
        // SAFETY: at + 8 <= k; rows of w and x are k long (asserted above).
        unsafe {
            let xv = [
                _mm256_loadu_ps(x.as_ptr().add(at)),
                _mm256_loadu_ps(x.as_ptr().add(k + at)),
                _mm256_loadu_ps(x.as_ptr().add(2 * k + at)),
            ];
            for (j, accj) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(w.as_ptr().add(j * k + at));
                for (a, xt) in accj.iter_mut().zip(xv) {
                    *a = _mm256_fmadd_ps(wv, xt, *a);
                }
            }
        }
    }
    let done = blocks * 8;
    std::array::from_fn(|j| {
        std::array::from_fn(|t| {
            // SAFETY: AVX2 is enabled for this function.
            let mut s = unsafe { hsum(acc[j][t]) };
            for idx in done..k {
                s += w[j * k + idx] * x[t * k + idx];
            }
            s
        })
    })
}

/// LayerNorm with the stored (already +1) weight: `(x - mean) / sqrt(var + eps) * w + b`.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    for i in 0..x.len() {
        out[i] = ((x[i] as f64 - mean) * inv) as f32 * w[i] + b[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_and_generic_kernels_agree_on_every_length() {
        for k in [1usize, 7, 8, 16, 31, 32, 33, 100, 4101] {
            let x: Vec<f32> = (0..k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 16.0).collect();
            let w4: Vec<f32> = (0..4 * k).map(|i| ((i * 7 % 19) as f32 - 9.0) / 32.0).collect();
            let exact = |w: &[f32]| {
                w.iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>() as f32
            };
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
            let row0 = &w4[..k];
            assert!(
                close(dot(row0, &x), exact(row0)) && close(dot_generic(row0, &x), exact(row0)),
                "dot k={k}"
            );
            let four = dot4(&w4, &x);
            let four_generic = dot4_generic(&w4, &x);
            for j in 0..4 {
                let want = exact(&w4[j * k..(j + 1) * k]);
                assert!(
                    close(four[j], want) && close(four_generic[j], want),
                    "dot4 k={k} row {j}"
                );
            }
            let x3: Vec<f32> = (0..3 * k).map(|i| ((i * 11 % 23) as f32 - 11.0) / 8.0).collect();
            let (fast, slow) = (dot4x3(&w4, &x3), dot4x3_generic(&w4, &x3));
            for j in 0..4 {
                for t in 0..3 {
                    let want = w4[j * k..(j + 1) * k]
                        .iter()
                        .zip(&x3[t * k..(t + 1) * k])
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>() as f32;
                    assert!(
                        close(fast[j][t], want) && close(slow[j][t], want),
                        "dot4x3 k={k} [{j}][{t}]"
                    );
                }
            }
            // These weights are exact in bf16, so the bf16 kernels must give the same sums.
            let bytes: Vec<u8> = row0
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
                .collect();
            assert!(close(dot_bf16(&bytes, &x), exact(row0)), "dot_bf16 k={k}");
            assert!(
                close(dot_bf16_generic(&bytes, &x), exact(row0)),
                "dot_bf16_generic k={k}"
            );
        }
    }

    #[test]
    fn matmul_matches_a_naive_product_in_every_dtype() {
        let (n, k, m) = (3, 45, 37);
        let x: Vec<f32> = (0..n * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
        let wf: Vec<f32> = (0..m * k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let mut bytes = Vec::new();
            crate::dtype::cast::append_converted(
                &wf.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
                DType::F32,
                dtype,
                false,
                &mut bytes,
            );
            let w = MatRef {
                dtype,
                rows: m,
                cols: k,
                data: &bytes,
            };
            let mut y = vec![0f32; n * m];
            matmul(&x, n, w, &mut y);
            for t in 0..n {
                for o in 0..m {
                    // These values are exact in every dtype, so the sums are too.
                    let want: f32 = (0..k).map(|i| x[t * k + i] * wf[o * k + i]).sum();
                    assert!(
                        (y[t * m + o] - want).abs() < 1e-4,
                        "{dtype} [{t},{o}] {} vs {want}",
                        y[t * m + o]
                    );
                }
            }
        }
    }
}
