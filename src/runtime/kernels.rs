//! CPU kernels of the reference runtime: weights stay in their stored dtype and
//! are widened to f32 in registers; activations and accumulation are f32
//! (unless bf16 products are asked for: `Isa::Avx512Bf16`).
//! Matrix products run on the runtime's thread pool (`pool`): one token
//! through the memory-bound row kernels, several through the blocked,
//! register-tiled kernels (`gemm`), both summing in the one order of
//! `dot_order`. Each kernel exists for AVX-512, for AVX2+FMA+F16C and plainly;
//! the best the CPU has is picked once, at run time.

use std::sync::OnceLock;

use super::pool::{self, Pool};
use super::{dot_order, gemm};
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

/// The vector instruction set the kernels use, ordered by what the CPU must
/// have (Generic < Avx2 < Avx512 < Avx512Bf16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Whatever the compiler makes of plain Rust.
    Generic,
    /// AVX2, FMA and F16C.
    Avx2,
    /// AVX-512F and BW (plus AVX2, FMA, F16C).
    Avx512,
    /// AVX-512F and BW with AVX512_BF16, and bf16 products: a bf16 matrix's inputs
    /// are rounded to bf16 and summed in `dot_order::bf16`'s order (f32
    /// accumulation, as TensorRT-LLM and transformers compute a bf16 model);
    /// other dtypes as `Avx512`. Never chosen unless asked for
    /// (`TRTLLM_MINITRON_MATMUL=bf16`): the default f32 products are the oracle's.
    Avx512Bf16,
}

impl Isa {
    /// The best the CPU has, at most `TRTLLM_MINITRON_ISA` (avx512, avx2 or
    /// generic: to test or compare the slower paths on a newer CPU), and
    /// `Avx512Bf16` only when `TRTLLM_MINITRON_MATMUL=bf16` asks for bf16
    /// products (with a warning when the CPU cannot do them).
    pub fn get() -> Isa {
        use super::settings::{self, IsaCap, Products};
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let isa_cap = match settings::or_warn(settings::isa_cap(), IsaCap::None) {
                IsaCap::Generic => Isa::Generic,
                IsaCap::Avx2 => Isa::Avx2,
                IsaCap::None => Isa::Avx512Bf16,
            };
            let bf16 = settings::or_warn(settings::products(), Products::F32) == Products::Bf16;
            let cap = if bf16 { isa_cap } else { Isa::Avx512.min(isa_cap) };
            let isa = Isa::supported()
                .into_iter()
                .find(|&i| i <= cap)
                .unwrap_or(Isa::Generic);
            if bf16 && isa != Isa::Avx512Bf16 && isa_cap == Isa::Avx512Bf16 {
                eprintln!(
                    "warning: {}=bf16 ignored: this CPU lacks AVX512_BF16; products stay f32",
                    settings::MATMUL
                );
            }
            isa
        })
    }

    /// The instruction set of the f32 kernels (`Avx512Bf16` runs them as `Avx512`).
    pub fn base(self) -> Isa {
        match self {
            Isa::Avx512Bf16 => Isa::Avx512,
            other => other,
        }
    }

    /// Every ISA this CPU can run, best first.
    pub fn supported() -> Vec<Isa> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            let avx512 = has!("avx512f") && has!("avx512bw");
            if avx2 && avx512 && has!("avx512bf16") {
                all.push(Isa::Avx512Bf16);
            }
            if avx2 && avx512 {
                all.push(Isa::Avx512);
            }
            if avx2 {
                all.push(Isa::Avx2);
            }
        }
        all.push(Isa::Generic);
        all
    }
}

/// Below this many multiply-adds a product runs on the calling thread alone:
/// starting the other threads would cost more than they save.
const SERIAL_MACS: usize = 1 << 15;

/// `y[t, o] = sum_i x[t, i] * w[o, i]` for `n` input rows; `y` is `[n, w.rows]`.
pub fn matmul(x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    matmul_on(pool::global(), Isa::get(), x, n, w, y);
}

/// How a matrix's products are summed: the f32 order on `isa`, or the bf16
/// order (`Isa::Avx512Bf16` and a bf16 matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    F32(Isa),
    Bf16,
}

impl Order {
    pub fn of(isa: Isa, dtype: DType) -> Order {
        if isa == Isa::Avx512Bf16 && dtype == DType::BF16 {
            Order::Bf16
        } else {
            Order::F32(isa.base())
        }
    }
}

thread_local! {
    // A one-token product's inputs rounded to bf16 (reused: no allocation per product).
    static ROUNDED: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
    // A one-token product's inputs in the order's layout for bf16 weights.
    static ARRANGED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `matmul` on a given pool and instruction set.
pub fn matmul_on(pool: &Pool, isa: Isa, x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    let (k, m) = (w.cols, w.rows);
    assert!(x.len() == n * k && y.len() == n * m && w.data.len() == m * k * w.dtype.size());
    if n == 0 || m == 0 {
        return;
    }
    if k == 0 {
        // Sums of no products.
        y.fill(0.0);
        return;
    }
    let threads = if n * m * k < SERIAL_MACS {
        1
    } else {
        pool.threads()
    };
    let order = Order::of(isa, w.dtype);
    if n > 1 {
        gemm::product(pool, threads, order, x, n, w, y);
        return;
    }
    if order == Order::Bf16 {
        ROUNDED.with_borrow_mut(|xb| {
            xb.resize(k.next_multiple_of(dot_order::bf16::VECTOR), 0);
            dot_order::bf16::round_into(x, xb);
            one_token(pool, threads, w, y, &|data, ys| {
                dot_order::bf16::rows(data, k, xb, ys)
            });
        });
    } else if dot_order::paired(w.dtype) {
        let isa = isa.base();
        ARRANGED.with_borrow_mut(|xa| {
            xa.resize(k.next_multiple_of(dot_order::inputs_per_step(isa, w.dtype)), 0.0);
            dot_order::arrange(isa, w.dtype, x, xa);
            one_token(pool, threads, w, y, &|data, ys| {
                dot_order::rows(isa, data, w.dtype, k, xa, ys)
            });
        });
    } else {
        let isa = isa.base();
        one_token(pool, threads, w, y, &|data, ys| {
            dot_order::rows(isa, data, w.dtype, k, x, ys)
        });
    }
}

/// Runs `rows(weight rows, their outputs)` over all rows of `w`, split among
/// `threads` threads of `pool`.
fn one_token(
    pool: &Pool,
    threads: usize,
    w: MatRef<'_>,
    y: &mut [f32],
    rows: &(dyn Fn(&[u8], &mut [f32]) + Sync),
) {
    let (k, m) = (w.cols, w.rows);
    // Threads claim runs of rows (about eight per thread; whole cache lines of
    // y and whole groups of rows, dot_order::ROW_GROUP): each run is a long
    // sequential stream of weights.
    let out = pool::SharedOut::new(y);
    const RUN: usize = 48;
    const _: () = assert!(RUN.is_multiple_of(16) && RUN.is_multiple_of(dot_order::ROW_GROUP));
    let chunks = pool::Chunks::new(m, (m / (threads * 8)).next_multiple_of(RUN));
    let es = w.dtype.size();
    let part = |_: usize| {
        while let Some((a, b)) = chunks.claim() {
            // SAFETY: claimed ranges are disjoint parts of y, which outlives the region.
            let ys = unsafe { out.range(a, b - a) };
            rows(&w.data[a * k * es..b * k * es], ys);
        }
    };
    if threads == 1 {
        part(0);
    } else {
        pool.run(&part);
    }
}

/// Dot product, vectorised for the running CPU.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_on(Isa::get(), a, b)
}

/// `dot` on `isa` (one this CPU has).
pub(crate) fn dot_on(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Generic {
        // SAFETY: every isa but Generic has AVX2 and FMA.
        return unsafe { x86::dot_avx2(a, b) };
    }
    dot_generic(a, b)
}

/// Eight lanes of partial sums, as the vector kernels keep them.
fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
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

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! Shared x86 pieces: widening loads per stored dtype, a horizontal sum,
    //! the attention dot product.
    use std::arch::x86_64::*;

    /// A stored weight dtype, widened to f32 vectors `STEP` at a time: a
    /// step of `STEP * lanes` elements gives vectors `h` = 0..STEP (the
    /// order's layout, `dot_order::inputs_per_step`).
    pub trait Elem {
        const SIZE: usize;
        /// Vectors per step: 2 for bf16 (the even elements, then the odd:
        /// one load, one shift or mask each), 1 otherwise.
        const STEP: usize;
        /// Vector `h` of the step of `8 * STEP` elements at `p` (unaligned).
        ///
        /// # Safety
        /// `8 * STEP * SIZE` readable bytes at `p`; `h < STEP`; AVX2, FMA and F16C present.
        unsafe fn load8(p: *const u8, h: usize) -> __m256;
        /// Vector `h` of the step of `16 * STEP` elements at `p` (unaligned).
        ///
        /// # Safety
        /// `16 * STEP * SIZE` readable bytes at `p`; `h < STEP`; AVX-512F and BW present.
        unsafe fn load16(p: *const u8, h: usize) -> __m512;
    }

    pub struct Bf16;
    pub struct F16;
    pub struct F32;

    /// bf16 is the top half of an f32, so widening is exact: the even
    /// elements of a step are its 32-bit words shifted left by 16, the odd
    /// ones its words with the low half cleared. One load and one integer
    /// operation per vector, where zero-extending 16-bit words costs a
    /// shuffle more (single-row decoding streamed 28-30 against 20-25 GB/s
    /// on this kind of machine, scripts/BENCHMARKS.md).
    impl Elem for Bf16 {
        const SIZE: usize = 2;
        const STEP: usize = 2;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u8, h: usize) -> __m256 {
            // SAFETY: 32 readable bytes (caller).
            let raw = unsafe { _mm256_loadu_si256(p.cast()) };
            _mm256_castsi256_ps(if h == 0 {
                _mm256_slli_epi32(raw, 16)
            } else {
                _mm256_and_si256(raw, _mm256_set1_epi32(0xFFFF_0000_u32 as i32))
            })
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
        unsafe fn load16(p: *const u8, h: usize) -> __m512 {
            // SAFETY (both): 64 readable bytes (caller).
            _mm512_castsi512_ps(if h == 0 {
                _mm512_slli_epi32(unsafe { _mm512_loadu_si512(p.cast()) }, 16)
            } else {
                // A load of the odd 16-bit words alone (the even ones zero),
                // not the even half's load masked: the compiler would keep
                // that load's register alive between the halves, and a
                // 24-accumulator tile has none to spare.
                unsafe { _mm512_maskz_loadu_epi16(0xAAAA_AAAA, p.cast()) }
            })
        }
    }

    impl Elem for F16 {
        const SIZE: usize = 2;
        const STEP: usize = 1;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u8, _: usize) -> __m256 {
            // SAFETY: 16 readable bytes (caller).
            _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
        unsafe fn load16(p: *const u8, _: usize) -> __m512 {
            // SAFETY: 32 readable bytes (caller).
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
        }
    }

    impl Elem for F32 {
        const SIZE: usize = 4;
        const STEP: usize = 1;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u8, _: usize) -> __m256 {
            // SAFETY: 32 readable bytes (caller).
            unsafe { _mm256_loadu_ps(p.cast()) }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
        unsafe fn load16(p: *const u8, _: usize) -> __m512 {
            // SAFETY: 64 readable bytes (caller).
            unsafe { _mm512_loadu_ps(p.cast()) }
        }
    }

    /// Sum of eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
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
        let mut total = hsum256(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        for (ai, bi) in a[blocks * 32..n].iter().zip(&b[blocks * 32..n]) {
            total += ai * bi;
        }
        total
    }
}

/// Test inputs for kernels that must keep an order of additions.
#[cfg(test)]
pub(crate) mod test_values {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    /// `n` floats of mixed signs and magnitudes (each a uniform in [-0.5,
    /// 0.5) times one of `scales`), so that adding them in another order
    /// would round differently.
    pub fn mixed(seed: u64, n: usize, scales: &[f32]) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let r = rng.next_u32();
                let unit = (r >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                unit * scales[(r & 0xff) as usize % scales.len()]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values exact in bf16 and f16 alike (multiples of 1/64 below 1), so
    /// every dtype holds the same weights.
    fn value(i: usize, salt: usize) -> f32 {
        (((i * 7 + salt * 13) % 23) as f32 - 11.0) / 64.0
    }

    fn weights(bytes: &[u8], dtype: DType, rows: usize, cols: usize) -> MatRef<'_> {
        MatRef {
            dtype,
            rows,
            cols,
            data: bytes,
        }
    }

    fn stored(values: &[f32], dtype: DType) -> Vec<u8> {
        let mut bytes = Vec::new();
        crate::dtype::cast::append_converted(
            &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
            DType::F32,
            dtype,
            false,
            &mut bytes,
        );
        bytes
    }

    /// Every ISA this CPU has, every dtype, shapes with every kind of edge:
    /// one token and many, tails of the tile heights, widths and blocks of inputs, tiny
    /// products run serially and large ones on three threads.
    #[test]
    fn matmul_matches_a_float64_product_on_every_path() {
        let pools = [Pool::new(1), Pool::new(3)];
        let shapes = [
            (1, 5, 3),
            (1, 300, 77),
            (1, 1000, 130),
            (2, 45, 37),
            (5, 64, 16),
            (7, 300, 70),
            (13, 257, 33),
            (25, 520, 200),
            // Two blocks of inputs (at most gemm::KC_MAX each), with a tail.
            (9, gemm::KC_MAX + 37, 45),
        ];
        for isa in Isa::supported() {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                for &(n, k, m) in &shapes {
                    let x: Vec<f32> = (0..n * k).map(|i| value(i, 1) * 3.0).collect();
                    let wf: Vec<f32> = (0..m * k).map(|i| value(i, 2)).collect();
                    let bytes = stored(&wf, dtype);
                    let w = weights(&bytes, dtype, m, k);
                    for pool in &pools {
                        let mut y = vec![f32::NAN; n * m];
                        matmul_on(pool, isa, &x, n, w, &mut y);
                        for t in 0..n {
                            for o in 0..m {
                                let want: f64 = (0..k)
                                    .map(|i| f64::from(x[t * k + i]) * f64::from(wf[o * k + i]))
                                    .sum();
                                let got = y[t * m + o];
                                assert!(
                                    (f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                    "{isa:?} {dtype} n={n} k={k} m={m} threads={} [{t},{o}]: {got} vs {want}",
                                    pool.threads()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Irregular weights and activations (`m` or `n` rows of `k`), so that
    /// the order of the sums shows in their bits.
    fn irregular_weights(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 333.0)
            .collect()
    }

    fn irregular_inputs(n: usize, k: usize) -> Vec<f32> {
        (0..n * k)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 97.0)
            .collect()
    }

    /// Each of the tokens of `x` alone (the one-token kernels): its outputs' bits.
    fn alone_bits(pool: &Pool, isa: Isa, x: &[f32], w: MatRef<'_>) -> Vec<Vec<u32>> {
        x.chunks_exact(w.cols)
            .map(|row| {
                let mut y = vec![0f32; w.rows];
                matmul_on(pool, isa, row, 1, w, &mut y);
                y.into_iter().map(f32::to_bits).collect()
            })
            .collect()
    }

    /// A token's outputs must not depend on the batch it runs in (how many
    /// tokens, which tile or thread): greedy requests served together must get
    /// the tokens they get alone.
    #[test]
    fn every_row_is_bit_identical_alone_and_in_any_batch() {
        let pools = [Pool::new(1), Pool::new(3)];
        // Odd sizes (tails everywhere), the demo model's (all multiples of 16),
        // and two blocks of inputs (at most gemm::KC_MAX each), over several
        // spans of tokens (fewer tokens there: a debug build runs these).
        for (isa, (k, m, n)) in Isa::supported().into_iter().flat_map(|i| {
            // ... and whole vectors over several blocks (rows read as stored, the next block prefetched).
            [
                (700, 77, 530),
                (192, 256, 530),
                (768, 192, 530),
                (gemm::KC_MAX + 37, 45, 140),
                (gemm::KC_MAX + 64, 64, 140),
                // Whole vectors, but a last partial quad of rows: that block is packed.
                (gemm::KC_MAX + 64, 46, 140),
            ]
            .map(|s| (i, s))
        }) {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let bytes = stored(&irregular_weights(m, k), dtype);
                let w = weights(&bytes, dtype, m, k);
                let x = irregular_inputs(n, k);
                let alone = alone_bits(&pools[0], isa, &x, w);
                for pool in &pools {
                    for batch in [2, 5, 13, n] {
                        let mut y = vec![0f32; batch * m];
                        matmul_on(pool, isa, &x[..batch * k], batch, w, &mut y);
                        for t in 0..batch {
                            let got: Vec<u32> = y[t * m..(t + 1) * m].iter().map(|v| v.to_bits()).collect();
                            assert_eq!(
                                got,
                                alone[t],
                                "{isa:?} {dtype} batch {batch} row {t} threads {}",
                                pool.threads()
                            );
                        }
                    }
                }
            }
        }
    }

    /// Spans of tokens and blocks of inputs do not change a token's outputs:
    /// spans of one and two tiles and one of all tokens, a batch that is not
    /// a whole number of tiles; one block, and blocks of about 256 inputs
    /// (the last shorter); rows read as stored (the next block prefetched)
    /// and packed (inputs not whole vectors, a last partial quad); on one and
    /// three threads, on every order this CPU has.
    #[test]
    fn every_cut_gives_the_bits_of_one_token_alone() {
        let pools = [Pool::new(1), Pool::new(3)];
        for isa in Isa::supported() {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                for (k, m) in [(1088, 48), (1088, 46), (700, 9)] {
                    let bytes = stored(&irregular_weights(m, k), dtype);
                    let w = weights(&bytes, dtype, m, k);
                    let n = 23;
                    let x = irregular_inputs(n, k);
                    let alone = alone_bits(&pools[0], isa, &x, w).concat();
                    // At least one tile (1 byte); about 12 tokens of f32 inputs; all.
                    for span_bytes in [1, 12 * k * 4 + 1, usize::MAX / 2] {
                        for kc_max in [256, gemm::KC_MAX] {
                            for pool in &pools {
                                let mut y = vec![f32::NAN; n * m];
                                let order = Order::of(isa, dtype);
                                let cuts = gemm::Cuts { span_bytes, kc_max };
                                gemm::product_cut(pool, pool.threads(), order, &x, n, w, &mut y, cuts);
                                let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
                                assert!(
                                    got == alone,
                                    "{isa:?} {dtype} k={k} m={m} {cuts:?} threads={}",
                                    pool.threads()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The order as `dot_order` states it, written out: lane by lane, the
    /// inputs `input_of` gives (even/odd pairs for bf16 weights), a fused
    /// multiply-add on x86 and a multiply then an add in the portable path,
    /// then `reduce`; every kernel (one token, grouped rows, tiles on stored
    /// rows and on packed panels) gives these bits.
    #[test]
    fn every_path_sums_in_the_order_written_out() {
        let pool = Pool::new(2);
        for isa in Isa::supported().into_iter().filter(|&i| i == i.base()) {
            for dtype in [DType::BF16, DType::F16, DType::F32] {
                let step = dot_order::inputs_per_step(isa, dtype);
                let (lanes, paired) = (dot_order::lanes(isa), dot_order::paired(dtype));
                // Tails of every kind; one row at a time and in groups (past 8, 12 or
                // 16 KiB of inputs, by dtype).
                for k in [1, 7, 15, 16, 17, 31, 32, 33, 100, 1000, 3000, 4100, 4160] {
                    // 46 rows: a claim of 32 rows read where stored, then 14 packed.
                    let m = 46;
                    let wf = irregular_weights(m, k);
                    let bytes = stored(&wf, dtype);
                    // The stored values, as the kernels widen them.
                    let mut wide = vec![0f32; m * k];
                    decode_row(&bytes, dtype, &mut wide);
                    let n = 7;
                    let x = irregular_inputs(n, k);
                    let w = weights(&bytes, dtype, m, k);
                    let mut batch = vec![0f32; n * m];
                    matmul_on(&pool, isa, &x, n, w, &mut batch);
                    for t in 0..n {
                        let mut alone = vec![0f32; m];
                        matmul_on(&pool, isa, &x[t * k..(t + 1) * k], 1, w, &mut alone);
                        for o in 0..m {
                            let mut acc = vec![0f32; lanes];
                            for v in 0..k.next_multiple_of(step) / lanes {
                                for (lane, a) in acc.iter_mut().enumerate() {
                                    let i = dot_order::input_of(lanes, paired, v, lane);
                                    let (wi, xi) = if i < k {
                                        (wide[o * k + i], x[t * k + i])
                                    } else {
                                        (0.0, 0.0)
                                    };
                                    *a = if isa == Isa::Generic {
                                        *a + wi * xi
                                    } else {
                                        wi.mul_add(xi, *a)
                                    };
                                }
                            }
                            let want = dot_order::reduce(isa, &acc).to_bits();
                            let at = format!("{isa:?} {dtype} k={k} token {t} row {o}");
                            assert_eq!(alone[o].to_bits(), want, "one token, {at}");
                            assert_eq!(batch[t * m + o].to_bits(), want, "batch, {at}");
                        }
                    }
                }
            }
        }
    }

    /// The paired layout by hand, apart from `input_of` (which the test above
    /// and `arrange` share): a step of 2L inputs, evens then odds.
    #[test]
    fn bf16_inputs_are_arranged_evens_then_odds() {
        let x: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut out = vec![f32::NAN; 32];
        dot_order::arrange(Isa::Avx2, DType::BF16, &x, &mut out);
        let want: Vec<f32> = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]
            .into_iter()
            .chain([16, 18, -1, -1, -1, -1, -1, -1, 17, 19, -1, -1, -1, -1, -1, -1])
            .map(|i| if i < 0 { 0.0 } else { i as f32 })
            .collect();
        assert_eq!(out, want);
        let mut same = vec![f32::NAN; 24];
        dot_order::arrange(Isa::Avx2, DType::F16, &x, &mut same);
        assert_eq!(&same[..20], &x[..]);
        assert!(same[20..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn dot_matches_on_every_length() {
        for k in [0usize, 1, 7, 8, 31, 32, 33, 100, 4101] {
            let a: Vec<f32> = (0..k).map(|i| value(i, 3)).collect();
            let b: Vec<f32> = (0..k).map(|i| value(i, 4)).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            for got in [dot(&a, &b), dot_generic(&a, &b)] {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "k={k}"
                );
            }
        }
    }
}
