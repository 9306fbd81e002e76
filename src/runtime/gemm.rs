//! Multi-token matrix products (prefill, batched decode): `y[t, o] = sum_i
//! x[t, i] * w[o, i]`, compute-bound, blocked as BLIS does.
//!
//! Each thread owns a contiguous range of output columns (weight rows) and
//! reads its weights once. A block of MC weight rows by KC inputs is widened
//! to f32 and packed input-major, MR rows side by side, so a register tile
//! of MR outputs x NR tokens needs one vector load of weights per input and
//! one broadcast per token (AVX-512: 32 x 12, 24 accumulators; AVX2: 16 x 6).
//! The NR tokens' inputs are packed the same way. Each output sums its
//! products in input order within a KC block, then block by block.

use std::cell::RefCell;

use super::kernels::{Isa, MatRef, decode_row};

/// Inputs per packed block: a 32-wide panel of them is 32 KiB, read from L2.
pub const KC: usize = 256;
/// Weight rows per packed block (a multiple of every MR): 128 KiB, kept in L2
/// while every token passes over it.
pub const MC: usize = 128;

/// (MR, NR): output columns and tokens of one register tile.
pub fn tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (32, 12),
        Isa::Avx2 => (16, 6),
        Isa::Generic => (8, 4),
    }
}

/// The output `[n, m]`, shared by threads that write disjoint column ranges.
#[derive(Clone, Copy)]
pub struct Out {
    ptr: *mut f32,
    m: usize,
}

// SAFETY: `Out` is only a pointer; `columns` writes only the column range its
// caller owns (callers give each thread a disjoint one).
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    pub fn new(y: &mut [f32], n: usize, m: usize) -> Out {
        assert_eq!(y.len(), n * m);
        Out { ptr: y.as_mut_ptr(), m }
    }
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

/// Weights packed for one block of MC rows and every KC block of inputs,
/// `[k block][panel][kc][MR]`: written once from the stored rows read end to
/// end (long sequential runs the hardware prefetcher follows), then read from
/// cache by every token tile.
#[derive(Default)]
struct PackedWeights(Vec<Line>);

thread_local! {
    // Reused across calls: fresh buffers would fault in new pages every time.
    static WEIGHTS: RefCell<PackedWeights> = RefCell::default();
    static INPUTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Tokens packed per round: bounds the packed inputs (and the memory they
/// take) for long prompts; weights are packed once per round.
const CHUNK_TILES: usize = 42;

/// The inputs of every token tile and KC block, `[k block][token tile][kc][nr]`
/// (each tile at a fixed stride of KC * NR floats).
pub struct PackedInputs<'a> {
    data: &'a [f32],
    n: usize,
    nr_max: usize,
}

impl PackedInputs<'_> {
    fn tiles(&self) -> usize {
        self.n.div_ceil(self.nr_max)
    }

    fn tile(&self, kblock: usize, tile: usize) -> &[f32] {
        let at = (kblock * self.tiles() + tile) * KC * self.nr_max;
        &self.data[at..at + KC * self.nr_max]
    }
}

/// `y = x w^T` for `n >= 2` tokens on `threads` threads of `pool` (1 = the
/// caller alone), in rounds of at most `CHUNK_TILES` token tiles.
pub fn product(pool: &crate::runtime::pool::Pool, threads: usize, isa: Isa, x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    let nr_max = tile(isa).1;
    let (k, m) = (w.cols, w.rows);
    let chunk = CHUNK_TILES * nr_max;
    let kblocks = k.div_ceil(KC);
    INPUTS.with_borrow_mut(|buf| {
        for t0 in (0..n).step_by(chunk) {
            let nc = chunk.min(n - t0);
            let tiles = nc.div_ceil(nr_max);
            buf.resize(kblocks * tiles * KC * nr_max, 0.0);
            let xc = &x[t0 * k..(t0 + nc) * k];
            let packed = SharedMut::new(buf);
            let pack = |index: usize| {
                let (a, b) = crate::runtime::pool::split(kblocks * tiles, 1, index, threads);
                for job in a..b {
                    let (kb, tb) = (job / tiles, job % tiles);
                    let nr = nr_max.min(nc - tb * nr_max);
                    let kc = KC.min(k - kb * KC);
                    // SAFETY: each job writes its own tile.
                    let dst = unsafe { packed.range((kb * tiles + tb) * KC * nr_max, KC * nr_max) };
                    pack_inputs(xc, k, tb * nr_max, nr, kb * KC, kc, dst);
                }
            };
            run(pool, threads, &pack);
            let inputs = PackedInputs { data: buf, n: nc, nr_max };
            let out = Out::new(&mut y[t0 * m..(t0 + nc) * m], nc, m);
            // Threads claim blocks of MC weight rows (MC is a multiple of MR).
            let blocks = crate::runtime::pool::Chunks::new(m, MC);
            let compute = |_: usize| {
                while let Some((a, b)) = blocks.claim() {
                    // SAFETY: claimed column ranges are disjoint and start at
                    // multiples of MR.
                    unsafe { columns(&inputs, w, out, a, b, isa) };
                }
            };
            run(pool, threads, &compute);
        }
    });
}

fn run(pool: &crate::runtime::pool::Pool, threads: usize, job: &(dyn Fn(usize) + Sync)) {
    if threads == 1 { job(0) } else { pool.run(job) }
}

/// A buffer that parallel jobs write in disjoint ranges.
struct SharedMut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: only a pointer; `range` callers write disjoint ranges.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    fn new(buf: &mut [f32]) -> SharedMut {
        SharedMut { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    /// # Safety
    /// No other live reference may cover `at..at + len`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len);
        // SAFETY: in bounds; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

/// Columns `start..end` of `y = x w^T` for the packed tokens.
///
/// # Safety
/// `out` must be `[inputs.n, w.rows]` and no other thread may write columns
/// `start..end` of it meanwhile; `start` must be a multiple of MR.
unsafe fn columns(inputs: &PackedInputs<'_>, w: MatRef<'_>, out: Out, start: usize, end: usize, isa: Isa) {
    let (mr, nr_max) = tile(isa);
    let k = w.cols;
    let kblocks = k.div_ceil(KC);
    WEIGHTS.with_borrow_mut(|packed| {
        packed.0.resize(MC * kblocks * KC / 16, Line([0.0; 16]));
        // SAFETY: `Line` is 16 f32s with no padding.
        let a: &mut [f32] =
            unsafe { std::slice::from_raw_parts_mut(packed.0.as_mut_ptr().cast(), MC * kblocks * KC) };
        for ob in (start..end).step_by(MC) {
            let mc = MC.min(end - ob);
            pack_weights(w, ob, mc, mr, isa, a);
            for kb in 0..kblocks {
                let kc = KC.min(k - kb * KC);
                let block = &a[kb * MC * KC..];
                for tb in 0..inputs.tiles() {
                    let nr = nr_max.min(inputs.n - tb * nr_max);
                    let b = inputs.tile(kb, tb);
                    for p in 0..mc.div_ceil(mr) {
                        let o0 = ob + p * mr;
                        let panel = &block[p * kc * mr..(p + 1) * kc * mr];
                        // SAFETY: rows tb.., columns o0..o0+mr (or fewer) of out
                        // lie in our range (the caller's contract).
                        unsafe {
                            tile_into(isa, nr, kc, panel, b, out, tb * nr_max, o0, mr.min(ob + mc - o0), kb > 0);
                        }
                    }
                }
            }
        }
    });
}

/// Writes (or adds, when `accumulate`) one register tile: `valid` columns
/// from `o0`, `nr` tokens from `tb`.
///
/// # Safety
/// As for `columns`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_into(
    isa: Isa,
    nr: usize,
    kc: usize,
    panel: &[f32],
    b: &[f32],
    out: Out,
    tb: usize,
    o0: usize,
    valid: usize,
    accumulate: bool,
) {
    let (mr, _) = tile(isa);
    // SAFETY (all below): tile (tb.., o0..) is inside `out` for `valid` columns.
    let c = unsafe { out.ptr.add(tb * out.m + o0) };
    if valid == mr {
        unsafe { micro(isa, nr, kc, panel.as_ptr(), b.as_ptr(), c, out.m, accumulate) };
        return;
    }
    // A partial tile at the matrix edge: run it on a full-width copy.
    let mut tmp = [0f32; 32 * 12];
    for t in 0..nr {
        for j in 0..valid {
            tmp[t * mr + j] = if accumulate { unsafe { *c.add(t * out.m + j) } } else { 0.0 };
        }
    }
    unsafe { micro(isa, nr, kc, panel.as_ptr(), b.as_ptr(), tmp.as_mut_ptr(), mr, accumulate) };
    for t in 0..nr {
        for j in 0..valid {
            unsafe { *c.add(t * out.m + j) = tmp[t * mr + j] };
        }
    }
}

/// Packs rows `o0..o0+mc` of `w` (every input) as `[k block][panel][kc][mr]`
/// f32, each k block at a stride of MC * KC; rows past `mc` are zero.
fn pack_weights(w: MatRef<'_>, o0: usize, mc: usize, mr: usize, isa: Isa, a: &mut [f32]) {
    let (k, es) = (w.cols, w.dtype.size());
    let row = |o: usize, kb: usize, kc: usize| &w.data[(o * k + kb) * es..(o * k + kb + kc) * es];
    for p in 0..mc.div_ceil(mr) {
        for j8 in (0..mr).step_by(8) {
            let first = p * mr + j8;
            let rows = mc.saturating_sub(first).min(8);
            // Eight rows at a time, each read start to end.
            for kb in (0..k).step_by(KC) {
                let kc = KC.min(k - kb);
                let panel = &mut a[(kb / KC) * MC * KC + p * kc * mr..][..kc * mr];
                #[cfg(target_arch = "x86_64")]
                if rows == 8 && isa != Isa::Generic {
                    let r: [&[u8]; 8] = std::array::from_fn(|j| row(o0 + first + j, kb, kc));
                    super::kernels::x86::transpose_into(r, w.dtype, kc, panel, mr, j8);
                    continue;
                }
                let mut wide = [0f32; KC];
                for j in 0..8 {
                    if j < rows {
                        decode_row(row(o0 + first + j, kb, kc), w.dtype, &mut wide[..kc]);
                    } else {
                        wide[..kc].fill(0.0);
                    }
                    for (i, v) in wide[..kc].iter().enumerate() {
                        panel[i * mr + j8 + j] = *v;
                    }
                }
            }
        }
    }
    let _ = isa;
}

/// Packs inputs `kb..kb+kc` of tokens `tb..tb+nr` as `[kc][nr]`.
fn pack_inputs(x: &[f32], k: usize, tb: usize, nr: usize, kb: usize, kc: usize, b: &mut [f32]) {
    for t in 0..nr {
        let src = &x[(tb + t) * k + kb..(tb + t) * k + kb + kc];
        for (i, v) in src.iter().enumerate() {
            b[i * nr + t] = *v;
        }
    }
}

/// Picks the register-tile kernel for `nr` tokens (1..=NR of the ISA).
///
/// # Safety
/// `a` holds `kc * MR` packed weights, `b` `kc * nr` packed inputs, and `c`
/// an `nr x MR` tile with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn micro(isa: Isa, nr: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    macro_rules! by_nr {
        ($f:ident, $($n:literal)*) => {
            match nr {
                $($n => unsafe { $f::<$n>(kc, a, b, c, ldc, acc) },)*
                _ => unreachable!("tile height {nr}"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => by_nr!(micro_avx512, 1 2 3 4 5 6 7 8 9 10 11 12),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => by_nr!(micro_avx2, 1 2 3 4 5 6),
        _ => by_nr!(micro_generic, 1 2 3 4),
    }
}

/// The portable register tile: 8 columns x NR tokens.
unsafe fn micro_generic<const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract (see `micro`).
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * 8), std::slice::from_raw_parts(b, kc * NR)) };
    let mut acc = [[0f32; 8]; NR];
    for (wa, xb) in a.chunks_exact(8).zip(b.chunks_exact(NR)) {
        for t in 0..NR {
            for j in 0..8 {
                acc[t][j] += wa[j] * xb[t];
            }
        }
    }
    for (t, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            // SAFETY: within the tile.
            unsafe {
                let p = c.add(t * ldc + j);
                *p = if accumulate { *p + v } else { *v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// AVX-512 register tile: 32 columns (two vectors) x NR tokens.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn micro_avx512<const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut lo = [_mm512_setzero_ps(); NR];
    let mut hi = [_mm512_setzero_ps(); NR];
    // SAFETY (loop): a holds kc rows of 32 (64-byte aligned), b kc rows of NR.
    for i in 0..kc {
        unsafe {
            let w0 = _mm512_load_ps(a.add(i * 32));
            let w1 = _mm512_load_ps(a.add(i * 32 + 16));
            for t in 0..NR {
                let xv = _mm512_set1_ps(*b.add(i * NR + t));
                lo[t] = _mm512_fmadd_ps(w0, xv, lo[t]);
                hi[t] = _mm512_fmadd_ps(w1, xv, hi[t]);
            }
        }
    }
    for t in 0..NR {
        // SAFETY: row t of the tile has 32 columns at c + t * ldc.
        unsafe {
            let p = c.add(t * ldc);
            let (mut v0, mut v1) = (lo[t], hi[t]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(p));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(p.add(16)));
            }
            _mm512_storeu_ps(p, v0);
            _mm512_storeu_ps(p.add(16), v1);
        }
    }
}

/// AVX2 register tile: 16 columns (two vectors) x NR tokens.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn micro_avx2<const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut lo = [_mm256_setzero_ps(); NR];
    let mut hi = [_mm256_setzero_ps(); NR];
    // SAFETY (loop): a holds kc rows of 16 (64-byte aligned), b kc rows of NR.
    for i in 0..kc {
        unsafe {
            let w0 = _mm256_load_ps(a.add(i * 16));
            let w1 = _mm256_load_ps(a.add(i * 16 + 8));
            for t in 0..NR {
                let xv = _mm256_broadcast_ss(&*b.add(i * NR + t));
                lo[t] = _mm256_fmadd_ps(w0, xv, lo[t]);
                hi[t] = _mm256_fmadd_ps(w1, xv, hi[t]);
            }
        }
    }
    for t in 0..NR {
        // SAFETY: row t of the tile has 16 columns at c + t * ldc.
        unsafe {
            let p = c.add(t * ldc);
            let (mut v0, mut v1) = (lo[t], hi[t]);
            if accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
            }
            _mm256_storeu_ps(p, v0);
            _mm256_storeu_ps(p.add(8), v1);
        }
    }
}

impl Out {
    /// Elements `a..b` of the first row (the whole output when n == 1).
    ///
    /// # Safety
    /// No other live reference may cover `a..b`.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn row0(&self, a: usize, b: usize) -> &mut [f32] {
        assert!(a <= b && b <= self.m);
        // SAFETY: within the output; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(a), b - a) }
    }
}
