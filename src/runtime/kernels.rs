//! CPU kernels of the reference runtime: weights stay in their stored dtype and
//! are widened to f32 one row at a time; activations and accumulation are f32.
//! Matrix products run on all cores; the inner dot products are compiled twice,
//! plainly and for AVX2+FMA, and picked at run time.

use rayon::prelude::*;

use crate::DType;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

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
    match dtype {
        DType::F32 => {
            for (v, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::BF16 => {
            for (v, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                *v = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
        DType::F16 => {
            let mut bits = vec![0u16; out.len()];
            for (v, b) in bits.iter_mut().zip(src.chunks_exact(2)) {
                *v = u16::from_le_bytes([b[0], b[1]]);
            }
            let halves: &[half::f16] = bits.reinterpret_cast();
            halves.convert_to_f32_slice(out);
        }
    }
}

/// Output rows of W handled per task: enough work to amortise scheduling.
const ROWS_PER_TASK: usize = 16;

/// `y[t, o] = sum_i x[t, i] * w[o, i]` for `n` input rows; `y` is `[n, w.rows]`.
pub fn matmul(x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    let (k, m) = (w.cols, w.rows);
    debug_assert_eq!(x.len(), n * k);
    debug_assert_eq!(y.len(), n * m);
    let es = w.dtype.size();
    // Work in W's row order (transposed output) so each task owns a contiguous slice.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * ROWS_PER_TASK;
            let rows = out.len() / n;
            let mut wrows = vec![0f32; rows * k];
            for (j, wrow) in wrows.chunks_exact_mut(k).enumerate() {
                let o = first + j;
                decode_row(&w.data[o * k * es..(o + 1) * k * es], w.dtype, wrow);
            }
            for t in 0..n {
                let xt = &x[t * k..(t + 1) * k];
                for (j, wrow) in wrows.chunks_exact(k).enumerate() {
                    out[j * n + t] = dot(wrow, xt);
                }
            }
        });
    for o in 0..m {
        for t in 0..n {
            y[t * m + o] = yt[o * n + t];
        }
    }
}

/// Dot product, vectorised for the running CPU.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_generic(a, b)
}

macro_rules! dot_body {
    ($a:expr, $b:expr, $fma:expr) => {{
        let (a, b) = ($a, $b);
        // Eight independent accumulators of eight lanes: lets LLVM use full vectors
        // and hide FMA latency.
        let mut acc = [[0f32; 8]; 4];
        let mut ca = a.chunks_exact(32);
        let mut cb = b.chunks_exact(32);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for q in 0..4 {
                for l in 0..8 {
                    acc[q][l] = $fma(x[q * 8 + l], y[q * 8 + l], acc[q][l]);
                }
            }
        }
        let mut tail = 0f32;
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            tail += x * y;
        }
        let mut lanes = [0f32; 8];
        for l in 0..8 {
            lanes[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
        }
        ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
            + tail
    }};
}

fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, |x: f32, y: f32, acc: f32| acc + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, |x: f32, y: f32, acc: f32| x.mul_add(y, acc))
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
    fn matmul_matches_a_naive_product_in_every_dtype() {
        let (n, k, m) = (3, 45, 37);
        let x: Vec<f32> = (0..n * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
        let wf: Vec<f32> = (0..m * k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let mut bytes = Vec::new();
            crate::convert::cast::append_converted(
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
