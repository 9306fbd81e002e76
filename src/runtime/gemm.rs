//! Multi-token matrix products (prefill, batched decode): `y[t, o] = sum_i
//! x[t, i] * w[o, i]`, compute-bound.
//!
//! Every output is summed in the one order `order` defines, which the
//! one-token kernels (`dot_order::rows`) use too: a token's outputs are bit-identical
//! whether it runs alone or in a batch of any size, on any number of threads.
//!
//! The inputs are packed once per call, shared by all threads: per tile of T
//! tokens and per block of KC inputs, `[vector][token][lanes]`, so that a
//! tile reads them front to back. Each thread claims blocks of MC weight rows
//! (it reads its weights once) and packs a block's KC inputs widened to f32
//! the same way, `[quad of rows][vector][row][lanes]`. A register tile of 4
//! rows x T tokens keeps one vector of lane sums per output (AVX-512: 4 x 6,
//! 24 accumulators) and saves them between KC blocks, so the blocking does
//! not change the order.

use std::cell::RefCell;

use super::dot_order::{self as order, ROWS};
use super::kernels::{Isa, MatRef, decode_row};
use super::pool::{Chunks, Pool, SharedOut, split};

/// Inputs per block. A tile streams its 4 weight rows (16 KiB widened) and
/// T tokens (24 KiB with AVX-512) of a block from L1/L2; the lane sums that
/// carry each output from block to block are reloaded once per block, so
/// larger blocks reload them less (on this kind of machine 1024 ran the 4B
/// shapes 10-20% faster than 256, see scripts/BENCHMARKS.md).
pub const KC: usize = 1024;
/// Weight rows a thread claims at a time (their packed block of KC inputs,
/// 128 KiB, stays in L2 while every token tile passes over it).
pub const MC: usize = 32;

/// Up to this many tokens, tiles read the weight rows where they are stored
/// and widen them in registers; above, a block's rows are widened and packed
/// once and every tile reads the packed copy. For a batch of decoding
/// requests the packing costs more than the few tiles it serves (on the 8B
/// shape, 16 tokens spent most of a step packing).
pub const STORED_MAX_TOKENS: usize = 64;

/// Tokens of one register tile.
fn tokens(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 6,
        Isa::Avx2 | Isa::Generic => 2,
    }
}

#[derive(Default)]
struct Scratch {
    /// Packed weights of one block and KC inputs, `[quad][vector][row][lanes]`.
    w: Vec<f32>,
    /// Lane sums: `[token][row in block][lanes]`.
    partial: Vec<f32>,
}

thread_local! {
    // Reused across calls: fresh buffers would fault in new pages every time.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
    static INPUTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where the inputs of tile `tile`, block `kb` start in the packed inputs:
/// tiles of T tokens one after another, each `[kb block][vector][token][lanes]`.
struct Layout {
    t_max: usize,
    kp: usize,
}

impl Layout {
    fn at(&self, tile: usize, kb: usize, tokens: usize) -> usize {
        tile * self.t_max * self.kp + kb * tokens
    }
}

/// `y = x w^T` for `n` tokens on `threads` threads of `pool` (1 = the caller
/// alone). `x` is `[n, w.cols]`, `y` is `[n, w.rows]`.
pub fn product(pool: &Pool, threads: usize, isa: Isa, x: &[f32], n: usize, w: MatRef<'_>, y: &mut [f32]) {
    let (k, m) = (w.cols, w.rows);
    let lanes = order::lanes(isa);
    let t_max = tokens(isa);
    let layout = Layout {
        t_max,
        kp: k.next_multiple_of(lanes),
    };
    let tiles = n.div_ceil(t_max);
    let run = |job: &(dyn Fn(usize) + Sync)| if threads == 1 { job(0) } else { pool.run(job) };
    INPUTS.with_borrow_mut(|packed| {
        packed.resize(tiles * t_max * layout.kp, 0.0);
        let dst = SharedOut::new(packed);
        run(&|index| {
            let (a, b) = split(tiles, 1, index, threads);
            for tile in a..b {
                let tb = tile * t_max;
                let tn = t_max.min(n - tb);
                // SAFETY: each tile's packed range is written by one thread only.
                let out = unsafe { dst.range(layout.at(tile, 0, tn), tn * layout.kp) };
                pack_inputs(&x[tb * k..(tb + tn) * k], k, tn, lanes, out);
            }
        });
        let inputs: &[f32] = packed;
        let out = SharedOut::new(y);
        let blocks = Chunks::new(m, MC);
        run(&|_| {
            while let Some((o0, o1)) = blocks.claim() {
                // SAFETY: claimed row ranges are disjoint, so are the columns of y.
                unsafe { block(isa, inputs, &layout, n, w, o0, o1, out) };
            }
        });
    });
}

/// Packs `tokens` rows of `k` inputs as `[kb block][vector][token][lanes]`,
/// zero past `k`.
fn pack_inputs(x: &[f32], k: usize, tokens: usize, lanes: usize, out: &mut [f32]) {
    let kp = k.next_multiple_of(lanes);
    for kb in (0..kp).step_by(KC) {
        let kcp = KC.min(kp - kb);
        let block = &mut out[kb * tokens..(kb + kcp) * tokens];
        for (v, group) in block.chunks_exact_mut(tokens * lanes).enumerate() {
            for (t, dst) in group.chunks_exact_mut(lanes).enumerate() {
                let i = kb + v * lanes;
                let row = &x[t * k..(t + 1) * k];
                let n = lanes.min(k.saturating_sub(i));
                dst[..n].copy_from_slice(&row[i..i + n]);
                dst[n..].fill(0.0);
            }
        }
    }
}

/// Outputs of weight rows `o0..o1` for all `n` tokens.
///
/// # Safety
/// No other thread may write columns `o0..o1` of `out` (`[n, w.rows]`) meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    isa: Isa,
    inputs: &[f32],
    layout: &Layout,
    n: usize,
    w: MatRef<'_>,
    o0: usize,
    o1: usize,
    out: SharedOut,
) {
    let lanes = order::lanes(isa);
    let t_max = layout.t_max;
    let (k, m) = (w.cols, w.rows);
    let rows = (o1 - o0).next_multiple_of(ROWS);
    // Reading rows as stored needs whole quads of rows and no padded inputs.
    let stored = n <= STORED_MAX_TOKENS
        && order::reads_stored(isa)
        && k.is_multiple_of(lanes)
        && (o1 - o0).is_multiple_of(ROWS);
    let row_bytes = k * w.dtype.size();
    SCRATCH.with_borrow_mut(|s| {
        s.w.resize(MC * KC, 0.0);
        s.partial.resize(n * MC * lanes, 0.0);
        for kb in (0..layout.kp).step_by(KC) {
            let kcp = KC.min(layout.kp - kb);
            if !stored {
                pack_weights(w, o0, o1, kb, kcp, lanes, &mut s.w[..rows * kcp]);
            }
            for (tile, tb) in (0..n).step_by(t_max).enumerate() {
                let tn = t_max.min(n - tb);
                let xs = &inputs[layout.at(tile, kb, tn)..][..tn * kcp];
                for r in (0..rows).step_by(ROWS) {
                    let at = (tb * MC + r) * lanes;
                    let partial = &mut s.partial[at..];
                    if stored {
                        let start = (o0 + r) * row_bytes + kb * w.dtype.size();
                        let rows = &w.data[start..];
                        order::tile_stored(
                            isa,
                            w.dtype,
                            tn,
                            kcp,
                            rows,
                            row_bytes,
                            xs,
                            partial,
                            MC * lanes,
                            kb == 0,
                        );
                    } else {
                        let panel = &s.w[r * kcp..(r + ROWS) * kcp];
                        order::tile(isa, tn, kcp, panel, xs, partial, MC * lanes, kb == 0);
                    }
                }
            }
        }
        for t in 0..n {
            for o in o0..o1 {
                let at = (t * MC + (o - o0)) * lanes;
                let v = order::reduce(isa, &s.partial[at..at + lanes]);
                // SAFETY: column o of token t is ours (the caller's contract).
                unsafe { *out.get().add(t * m + o) = v };
            }
        }
        let _ = k;
    });
}

/// Widens rows `o0..o1`, inputs `kb..kb+kcp` of `w` into quads of rows, each
/// `[vector][row][lanes]`; zero past the row ends and past `o1`.
fn pack_weights(w: MatRef<'_>, o0: usize, o1: usize, kb: usize, kcp: usize, lanes: usize, dst: &mut [f32]) {
    let (k, es) = (w.cols, w.dtype.size());
    let kc = kcp.min(k.saturating_sub(kb));
    let mut wide = [0f32; KC];
    for (q, quad) in dst.chunks_exact_mut(ROWS * kcp).enumerate() {
        for r in 0..ROWS {
            let o = o0 + q * ROWS + r;
            if o < o1 {
                let start = (o * k + kb) * es;
                decode_row(&w.data[start..start + kc * es], w.dtype, &mut wide[..kc]);
                wide[kc..kcp].fill(0.0);
            } else {
                wide[..kcp].fill(0.0);
            }
            for (v, chunk) in wide[..kcp].chunks_exact(lanes).enumerate() {
                quad[(v * ROWS + r) * lanes..(v * ROWS + r + 1) * lanes].copy_from_slice(chunk);
            }
        }
    }
}
