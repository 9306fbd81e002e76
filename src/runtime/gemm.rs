//! Multi-token matrix products (prefill, batched decode): `y[t, o] = sum_i
//! x[t, i] * w[o, i]`, compute-bound.
//!
//! Every output is summed in the one order `order` defines, which the
//! one-token kernels (`dot_order::rows`) use too: a token's outputs are bit-identical
//! whether it runs alone or in a batch of any size, on any number of threads.
//!
//! The inputs are packed once per call, shared by all threads: per tile of T
//! tokens and per block of inputs (`block_len`), `[vector][token][lanes]`, so that a
//! tile reads them front to back. The tokens run in spans of about
//! `SPAN_BYTES` of packed inputs, one after another; within a span each
//! thread claims blocks of MC weight rows (so it reads its weights once per
//! span). A register tile of 4 rows x T tokens keeps one vector of lane sums
//! per output (AVX-512: 4 x 6, 24 accumulators) and saves them between
//! blocks, so the blocking does not change the order; after its last block
//! the tile's lane sums are added up (`dot_order::reduce`) while in L1.
//! On x86 the tiles read the weight rows where they are stored and widen
//! them in registers, for any number of tokens; the portable path, rows whose
//! inputs are not whole steps of the order (a vector, or two for bf16
//! weights: 32 inputs with AVX-512) and a block's last partial quad of rows pack
//! the block's inputs widened to f32 instead, `[quad of rows][vector][row][lanes]`.
//!
//! With bf16 products (`Order::Bf16`) the inputs are packed rounded to bf16,
//! 32 per vector, and the tiles of `dot_order::bf16` read the bf16 rows where
//! they are stored, for any number of tokens (nothing to widen).

use std::cell::RefCell;
use std::ops::Range;

use super::dot_order::{self as order, ROWS, bf16};
use super::kernels::{Isa, MatRef, Order, decode_row};
use super::pool::{Chunks, Pool, SharedOut, split};

/// Most inputs per block (`block_len`). A tile streams its 4 weight rows and
/// T tokens of a block from L2 (Zen 4's L2 feeds the tile as fast as L1
/// would); the lane sums that carry each output from block to block are
/// reloaded from L2 once per block, and each tile call's set-up and
/// read-back cost the same whatever its length, so long blocks win: on this
/// kind of machine, 256-token products of the 4B shapes ran 7-9% faster
/// (f32 products) and 10-15% faster (bf16 products) in blocks of 3072 than
/// of 1024, and those of the 8B shapes (4096 and 16384 inputs) best in blocks
/// of 4096; 1024 had been 10-20% faster than 256 (scripts/BENCHMARKS.md).
pub const KC_MAX: usize = 4096;

/// Inputs per block for `kp` (padded) inputs: `kp` in equal blocks of at
/// most `kc_max`, whole steps of the order (`step`: a vector, or two for
/// bf16 weights; a short last block would pay a tile call's fixed costs for
/// little work: 9216 inputs run as 3 x 3072, 16384 as 4 x 4096).
fn block_len(kp: usize, step: usize, kc_max: usize) -> usize {
    let blocks = kp.div_ceil(kc_max).max(1);
    kp.div_ceil(blocks).next_multiple_of(step).max(step)
}

/// How a product is cut up: spans of tokens (`SPAN_BYTES`) and blocks of
/// inputs (at most `KC_MAX`). The same sums in the same order whatever the
/// cut; tests take small ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cuts {
    /// About this many bytes of packed inputs per span (at least one tile).
    pub span_bytes: usize,
    /// At most this many inputs per block (at least one step, at most `KC_MAX`).
    pub kc_max: usize,
}

impl Cuts {
    pub const DEFAULT: Cuts = Cuts {
        span_bytes: SPAN_BYTES,
        kc_max: KC_MAX,
    };
}

/// Bytes of packed inputs that all threads take together (a span of
/// tokens) before the next span: a span's inputs stay in L3 while every
/// claim of rows passes over them, and the weights are read once per span.
/// With all 256 tokens at once, Minitron-4B's MLP down projection (9216
/// inputs: 9.4 MB packed) ran at 1.9-2.5 G multiply-adds/s on one thread,
/// against 2.8-3.0 in spans of 2 MB; 256-token prefill 10% faster on one
/// thread and 4% on two, with spans of 0.6-4 MB alike (scripts/BENCHMARKS.md).
pub const SPAN_BYTES: usize = 2 << 20;
/// Weight rows a thread claims at a time (their block of inputs, at most
/// 256 KiB of bf16 or 512 KiB packed, stays in L2 while every token tile of
/// the span passes over it).
pub const MC: usize = 32;

/// Tokens of one register tile.
fn tokens(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 | Isa::Avx512Bf16 => 6,
        Isa::Avx2 | Isa::Generic => 2,
    }
}

#[derive(Default)]
struct Scratch {
    /// Packed weights of one block of inputs, `[quad][vector][row][lanes]`.
    w: Vec<f32>,
    /// Bf16 order: one block's weight rows zero-padded to the block's length, as stored
    /// (only when rows cannot be read where they are).
    w16: Vec<u8>,
    /// Lane sums: `[token of the span][row in block][lanes]`.
    partial: Vec<f32>,
}

thread_local! {
    // Reused across calls: fresh buffers would fault in new pages every time.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
    static INPUTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static INPUTS_BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Where the inputs of tile `tile`, block `kb` start in the packed inputs:
/// tiles of T tokens one after another, each `[kb block][vector][token][lanes]`.
struct Layout {
    t_max: usize,
    kp: usize,
    /// Inputs per block (`block_len`).
    kc: usize,
}

impl Layout {
    fn at(&self, tile: usize, kb: usize, tokens: usize) -> usize {
        tile * self.t_max * self.kp + kb * tokens
    }
}

/// The packed inputs of a product, in the order's element type.
#[derive(Clone, Copy)]
enum Inputs<'a> {
    F32(&'a [f32]),
    /// Rounded to bf16 (the bf16 order).
    Bf16(&'a [u16]),
}

/// `y = x w^T` for `n` tokens on `threads` threads of `pool` (1 = the caller
/// alone), summed in `how`'s order. `x` is `[n, w.cols]`, `y` is `[n, w.rows]`.
pub fn product(pool: &Pool, threads: usize, how: Order, x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    product_cut(pool, threads, how, x, n, w, y, Cuts::DEFAULT);
}

/// `product` cut into spans and blocks as `cuts` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_cut(
    pool: &Pool,
    threads: usize,
    how: Order,
    x: &[f32],
    n: usize,
    w: MatRef<'_>,
    y: &mut [f32],
    cuts: Cuts,
) {
    // (ISA of the tiles, inputs per vector, inputs per step, bytes per packed input)
    let (isa, vector, step, input_bytes) = match how {
        Order::F32(isa) => (isa, order::lanes(isa), order::inputs_per_step(isa, w.dtype), 4),
        Order::Bf16 => (Isa::Avx512, bf16::VECTOR, bf16::VECTOR, 2),
    };
    // The f32 order's layout of the inputs (pairs for bf16 weights).
    let paired = matches!(how, Order::F32(_)) && order::paired(w.dtype);
    let k = w.cols;
    let t_max = tokens(isa);
    let kp = k.next_multiple_of(step);
    let layout = Layout {
        t_max,
        kp,
        kc: block_len(kp, step, cuts.kc_max.clamp(step, KC_MAX)),
    };
    let out = SharedOut::new(y);
    // Whole tiles: every span starts at a multiple of t_max.
    let span = (cuts.span_bytes / (layout.kp * input_bytes).max(1))
        .max(1)
        .next_multiple_of(t_max);
    let compute = |inputs: Inputs<'_>| {
        for t0 in (0..n).step_by(span) {
            let tokens = t0..(t0 + span).min(n);
            let blocks = Chunks::new(w.rows, MC);
            run_on(pool, threads, &|_| {
                while let Some((o0, o1)) = blocks.claim() {
                    // SAFETY: claimed row ranges are disjoint, so are the columns of y.
                    unsafe { block(isa, inputs, &layout, tokens.clone(), n, w, o0, o1, out) };
                }
            });
        }
    };
    match how {
        Order::F32(_) => INPUTS.with_borrow_mut(|packed| {
            pack_all(pool, threads, &layout, x, n, k, (vector, paired), packed, |v| v);
            compute(Inputs::F32(packed));
        }),
        Order::Bf16 => INPUTS_BF16.with_borrow_mut(|packed| {
            pack_all(
                pool,
                threads,
                &layout,
                x,
                n,
                k,
                (vector, false),
                packed,
                bf16::round,
            );
            compute(Inputs::Bf16(packed));
        }),
    }
}

/// `job(thread index)` on `threads` threads of `pool` (1: the caller alone).
fn run_on(pool: &Pool, threads: usize, job: &(dyn Fn(usize) + Sync)) {
    if threads == 1 { job(0) } else { pool.run(job) }
}

/// Packs all `n` tokens' inputs (`convert`ed) tile by tile, tiles split
/// among threads; `(vector, paired)`: inputs per vector, and whether in the
/// f32 order's pairs (`dot_order::input_of`).
#[allow(clippy::too_many_arguments)]
fn pack_all<E: Copy + Default + Send>(
    pool: &Pool,
    threads: usize,
    layout: &Layout,
    x: &[f32],
    n: usize,
    k: usize,
    vector: (usize, bool),
    packed: &mut Vec<E>,
    convert: impl Fn(f32) -> E + Copy + Sync,
) {
    let t_max = layout.t_max;
    let tiles = n.div_ceil(t_max);
    packed.resize(tiles * t_max * layout.kp, E::default());
    let dst = SharedOut::new(packed);
    run_on(pool, threads, &|index| {
        let (a, b) = split(tiles, 1, index, threads);
        for tile in a..b {
            let tb = tile * t_max;
            let tn = t_max.min(n - tb);
            // SAFETY: each tile's packed range is written by one thread only.
            let out = unsafe { dst.range(layout.at(tile, 0, tn), tn * layout.kp) };
            pack_inputs(
                &x[tb * k..(tb + tn) * k],
                k,
                tn,
                vector,
                layout.kc,
                layout.kp,
                out,
                convert,
            );
        }
    });
}

/// Packs `tokens` rows of `k` inputs (`convert`ed) as
/// `[kb block of kc][vector][token][vector]` in the order's layout (`(vector,
/// paired)` as `pack_all`), zero past `k`; `kp` inputs in all.
#[allow(clippy::too_many_arguments)]
fn pack_inputs<E: Copy>(
    x: &[f32],
    k: usize,
    tokens: usize,
    (vector, paired): (usize, bool),
    kc: usize,
    kp: usize,
    out: &mut [E],
    convert: impl Fn(f32) -> E + Copy + Sync,
) {
    // One token's block in the order's layout (steps never straddle blocks,
    // so a block arranges alone), then its vectors into place.
    let mut arranged = [0f32; KC_MAX];
    for kb in (0..kp).step_by(kc) {
        let kcp = kc.min(kp - kb);
        let block = &mut out[kb * tokens..(kb + kcp) * tokens];
        for t in 0..tokens {
            let row = &x[t * k + kb.min(k)..t * k + (kb + kcp).min(k)];
            order::arrange_in(vector, paired, row, &mut arranged[..kcp]);
            for (v, src) in arranged[..kcp].chunks_exact(vector).enumerate() {
                let dst = &mut block[(v * tokens + t) * vector..][..vector];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = convert(s);
                }
            }
        }
    }
}

/// Outputs of weight rows `o0..o1` for `tokens` of the `n`: a span that
/// starts at a multiple of the tile height; only a span ending at `n` may end
/// in a partial tile.
///
/// # Safety
/// No other thread may write columns `o0..o1` of `out` (`[n, w.rows]`) meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    isa: Isa,
    inputs: Inputs<'_>,
    layout: &Layout,
    tokens: Range<usize>,
    n: usize,
    w: MatRef<'_>,
    o0: usize,
    o1: usize,
    out: SharedOut,
) {
    let lanes = order::lanes(isa);
    let t_max = layout.t_max;
    debug_assert!(
        tokens.start.is_multiple_of(t_max) && (tokens.end == n || tokens.len().is_multiple_of(t_max))
    );
    let (k, m, es) = (w.cols, w.rows, w.dtype.size());
    let rows = (o1 - o0).next_multiple_of(ROWS);
    // Reading rows as stored needs whole quads of rows and no padded inputs
    // (whole steps: with bf16 weights 2 x 16 inputs on AVX-512, so a row of
    // 16 mod 32 inputs is packed; Minitron's are multiples of 1024).
    // Then the x86 tiles read them so for any batch: each vector of a row is
    // widened once per token tile, but beside the tile's multiply-adds, where
    // packing is a pass of its own over the weights (packing above 64 tokens,
    // as until 2026-12-07, prefilled 256 tokens of the 4B shape 6-7% slower
    // with bf16 weights and 8-16% with float16, one and two threads; 128
    // tokens with AVX2 4-17%; scripts/BENCHMARKS.md). Bf16 rows need no
    // widening at all.
    let whole = (o1 - o0).is_multiple_of(ROWS);
    let stored = match inputs {
        Inputs::F32(_) => {
            order::reads_stored(isa) && k.is_multiple_of(order::inputs_per_step(isa, w.dtype)) && whole
        }
        Inputs::Bf16(_) => k.is_multiple_of(bf16::VECTOR) && whole,
    };
    let row_bytes = k * es;
    SCRATCH.with_borrow_mut(|s| {
        let Scratch {
            w: packed,
            w16,
            partial,
        } = s;
        partial.resize(tokens.len() * MC * lanes, 0.0);
        let kc = layout.kc;
        for kb in (0..layout.kp).step_by(kc) {
            let kcp = kc.min(layout.kp - kb);
            // The rows of this block, as the tiles read them.
            let panel = match inputs {
                _ if stored => Panel::Rows(&w.data[o0 * row_bytes + kb * es..], row_bytes),
                Inputs::F32(_) => {
                    packed.resize(MC * kc, 0.0);
                    pack_weights(w, o0, o1, kb, kcp, isa, &mut packed[..rows * kcp]);
                    Panel::Packed(&packed[..rows * kcp])
                }
                Inputs::Bf16(_) => {
                    w16.resize(MC * kc * 2, 0);
                    copy_rows_padded(w, o0, o1, kb, kcp, &mut w16[..rows * kcp * 2]);
                    Panel::Rows(&w16[..], kcp * 2)
                }
            };
            for tb in tokens.clone().step_by(t_max) {
                let (tile, tn) = (tb / t_max, t_max.min(n - tb));
                let xs = layout.at(tile, kb, tn)..layout.at(tile, kb, tn) + tn * kcp;
                for r in (0..rows).step_by(ROWS) {
                    let partial = &mut partial[((tb - tokens.start) * MC + r) * lanes..];
                    // Rows read where they are stored: the span's first token
                    // tile fetches the quad's next block into L2 while it computes,
                    // so that the next block does not wait on memory (on the
                    // 8B shape, batched decoding steps of 16 tokens ~10%
                    // faster, scripts/BENCHMARKS.md).
                    let next = kb + kc;
                    let prefetch = (stored && tb == tokens.start && next < layout.kp)
                        .then(|| &w.data[(o0 + r) * row_bytes + next * es..]);
                    let (ldp, first) = (MC * lanes, kb == 0);
                    match (inputs, panel) {
                        (Inputs::Bf16(x), Panel::Rows(bytes, stride)) => {
                            let quad = &bytes[r * stride..];
                            let x = &x[xs.clone()];
                            bf16::tile(tn, kcp, quad, stride, x, partial, ldp, first, prefetch);
                        }
                        (Inputs::F32(x), Panel::Rows(bytes, stride)) => {
                            let quad = &bytes[r * stride..];
                            let x = &x[xs.clone()];
                            order::tile_stored(
                                isa, w.dtype, tn, kcp, quad, stride, x, partial, ldp, first, prefetch,
                            );
                        }
                        (Inputs::F32(x), Panel::Packed(panel)) => {
                            let quad = &panel[r * kcp..(r + ROWS) * kcp];
                            order::tile(isa, tn, kcp, quad, &x[xs.clone()], partial, ldp, first);
                        }
                        (Inputs::Bf16(_), Panel::Packed(_)) => unreachable!("bf16 rows are never widened"),
                    }
                    if kb + kc >= layout.kp {
                        // The last block: the tile's lane sums are added up
                        // while they are in L1 (read back after the whole
                        // span, they cost 2% of a prefill, waiting on L2).
                        // `partial` starts at token tb, row r.
                        let live = ROWS.min(o1 - o0 - r);
                        order::reduce_tile(isa, partial, ldp, tn, live, |t, sums| {
                            // SAFETY: columns o0 + r.. of token tb + t are ours (the caller's contract).
                            unsafe { out.range((tb + t) * m + o0 + r, live) }.copy_from_slice(sums);
                        });
                    }
                }
            }
        }
    });
}

/// Where a block's weight rows are, as the tiles read them.
#[derive(Clone, Copy)]
enum Panel<'a> {
    /// Rows `stride` bytes apart: as stored, or bf16 rows copied zero-padded.
    Rows(&'a [u8], usize),
    /// Widened to f32 and packed `[quad][vector][row][lanes]`.
    Packed(&'a [f32]),
}

/// Bf16 rows `o0..o1`, inputs `kb..kb+kcp` of `w` copied as stored, each
/// zero-padded to `kcp` inputs; zero rows up to a whole quad.
fn copy_rows_padded(w: MatRef<'_>, o0: usize, o1: usize, kb: usize, kcp: usize, dst: &mut [u8]) {
    let k = w.cols;
    let kc = kcp.min(k.saturating_sub(kb));
    for (i, row) in dst.chunks_exact_mut(kcp * 2).enumerate() {
        let o = o0 + i;
        if o < o1 {
            let start = (o * k + kb) * 2;
            row[..kc * 2].copy_from_slice(&w.data[start..start + kc * 2]);
            row[kc * 2..].fill(0);
        } else {
            row.fill(0);
        }
    }
}

/// Widens rows `o0..o1`, inputs `kb..kb+kcp` of `w` into quads of rows, each
/// `[vector][row][lanes]` in the f32 order's layout on `isa`; zero past the
/// row ends and past `o1`. `kb` and `kcp` are whole steps.
fn pack_weights(w: MatRef<'_>, o0: usize, o1: usize, kb: usize, kcp: usize, isa: Isa, dst: &mut [f32]) {
    let (k, es) = (w.cols, w.dtype.size());
    let lanes = order::lanes(isa);
    let step = order::inputs_per_step(isa, w.dtype);
    debug_assert!(kb.is_multiple_of(step) && kcp.is_multiple_of(step));
    let kc = kcp.min(k.saturating_sub(kb));
    let (mut wide, mut arranged) = ([0f32; KC_MAX], [0f32; KC_MAX]);
    for (q, quad) in dst.chunks_exact_mut(ROWS * kcp).enumerate() {
        for r in 0..ROWS {
            let o = o0 + q * ROWS + r;
            let kept = if o < o1 { kc } else { 0 };
            if kept > 0 {
                let start = (o * k + kb) * es;
                decode_row(&w.data[start..start + kept * es], w.dtype, &mut wide[..kept]);
            }
            // Steps never straddle blocks, so the block's inputs arrange alone.
            order::arrange(isa, w.dtype, &wide[..kept], &mut arranged[..kcp]);
            for (v, chunk) in arranged[..kcp].chunks_exact(lanes).enumerate() {
                quad[(v * ROWS + r) * lanes..(v * ROWS + r + 1) * lanes].copy_from_slice(chunk);
            }
        }
    }
}
