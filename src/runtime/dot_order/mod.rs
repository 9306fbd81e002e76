//! The one order in which every matrix-product output is summed, whatever
//! the batch: greedy requests served together get the tokens they get alone.
//!
//! For an output `sum_i w[i] * x[i]` over `k` inputs, with `L` lanes (16 with
//! AVX-512, 8 otherwise): both rows are zero-padded to a multiple of the
//! step (`inputs_per_step`: `L`, or `2L` for bf16 weights); lane `l`
//! accumulates the products of inputs `i = input_of(v, l)` for vectors `v` in
//! increasing order, starting from zero (a fused multiply-add on x86, a
//! multiply then an add in the portable path); the lanes are then added as
//! `reduce` says. Vector `v` holds inputs `v * L + l`, except with bf16
//! weights: there step `s` (inputs `2L s..2L s + 2L`) gives vector `2s` its
//! even inputs (`2L s + 2l`) and vector `2s + 1` its odd ones, which is how
//! a load of a step of bf16 weights (64 bytes with AVX-512, 32 with AVX2)
//! widens in two instructions. The inputs
//! are put in that layout once per product (`arrange`). The one-token kernels (`rows`: one vector of lanes per
//! row, rows alone or in groups that share each load of x) and the multi-token kernels (`tile`: four rows x
//! T tokens, lanes saved between blocks of inputs) both follow it, and a test
//! holds them to bit-identical results.
//!
//! Bf16 products (`Isa::Avx512Bf16`, opted into) have an order of their own
//! for bf16 matrices, in `bf16`; the kernels here are given the base ISA.

pub mod bf16;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::kernels::{Isa, decode_row};
use crate::DType;

/// Weight rows of a tile.
pub const ROWS: usize = 4;

/// Weight rows the one-token kernels run at once when their inputs are
/// larger than a dtype's threshold (`one_row_max_input_bytes`): each input vector is loaded once
/// for all of them. Alone, a row reads its inputs once per weight vector,
/// and re-reads them from L2 when they outgrow L1: a row of Minitron-4B's MLP
/// down projection (9216 f32 inputs, 36 KiB) streamed its weights at half the
/// rate of the others. On this kind of machine (one thread, bf16 weights,
/// GB/s of weights, scripts/BENCHMARKS.md), one row against groups of 12:
/// f32 inputs 22 -> 24 at 3072 and 4096 inputs, 13 -> 27 at 9216 and 16384;
/// bf16 inputs 30 -> 24 at 3072 and 4096 (so those stay one row at a time:
/// a single stream of weights), 20-22 -> 26-28 at 9216 and 16384. Groups of
/// 4 were slower, of 8 as fast at 4096 inputs and slower elsewhere, of 16
/// slower. Measured with bf16 weights only, before their paired order
/// (`ONE_ROW_MAX_BF16_INPUT_BYTES`).
pub const ROW_GROUP: usize = 12;

/// Inputs up to this size stay in L1 beside the streaming weights: the
/// one-token kernels run one row at a time (see `ROW_GROUP`). For f32
/// weights, and for the bf16 products' rounded inputs (bytes of bf16); bf16
/// and f16 weights with f32 inputs have their own (`one_row_max_input_bytes`).
pub const ONE_ROW_MAX_INPUT_BYTES: usize = 8 << 10;

/// `ONE_ROW_MAX_INPUT_BYTES` for bf16 weights and f32 inputs (the paired
/// order, two instructions per 64-byte load of weights): one row at a time
/// streamed 28-30 GB/s against 23-25 in groups of 12 at 3072 and 4096
/// inputs; groups stay ahead at 6144 (24-25 against 17) and 9216 (25-28
/// against 13). One thread, a checkpoint's own mapping, scripts/BENCHMARKS.md.
pub const ONE_ROW_MAX_BF16_INPUT_BYTES: usize = 16 << 10;

/// `ONE_ROW_MAX_INPUT_BYTES` for f16 weights and f32 inputs: one row at a
/// time streamed 23-24 GB/s against 18-21 in groups of 12 at 3072 inputs,
/// and as fast (18-20) at 4096. Grouping never changes a sum's order.
pub const ONE_ROW_MAX_F16_INPUT_BYTES: usize = 12 << 10;

/// Up to how many bytes of f32 inputs the one-token kernels (f32 products)
/// run rows of `dtype` one at a time.
pub fn one_row_max_input_bytes(dtype: DType) -> usize {
    match dtype {
        DType::BF16 => ONE_ROW_MAX_BF16_INPUT_BYTES,
        DType::F16 => ONE_ROW_MAX_F16_INPUT_BYTES,
        DType::F32 => ONE_ROW_MAX_INPUT_BYTES,
    }
}

/// How many leading rows of `rows` the one-token kernels run in groups of
/// `ROW_GROUP`, for inputs of `input_bytes` (one row at a time up to
/// `one_row_max` bytes).
pub fn grouped_rows(rows: usize, input_bytes: usize, one_row_max: usize) -> usize {
    if input_bytes > one_row_max {
        rows - rows % ROW_GROUP
    } else {
        0
    }
}

/// A row's last `len` bytes from `start`, zero-padded to 64 bytes (the
/// partial last step the row kernels add: at most 64 bytes of any dtype).
#[inline]
pub(crate) fn tail(data: &[u8], start: usize, len: usize) -> [u8; 64] {
    let mut w = [0u8; 64];
    w[..len].copy_from_slice(&data[start..start + len]);
    w
}

/// Inputs per step of the order on `isa` for weights of `dtype`: one vector,
/// or two (the even inputs, then the odd) for bf16 weights.
pub fn inputs_per_step(isa: Isa, dtype: DType) -> usize {
    lanes(isa) * if paired(dtype) { 2 } else { 1 }
}

/// Whether the order takes the inputs of `dtype` weights in even/odd pairs.
pub fn paired(dtype: DType) -> bool {
    dtype == DType::BF16
}

/// The input that vector `v`, lane `lane` holds (`lanes` lanes; `paired`:
/// see the module comment).
#[inline]
pub fn input_of(lanes: usize, paired: bool, v: usize, lane: usize) -> usize {
    if paired {
        (v / 2) * 2 * lanes + 2 * lane + v % 2
    } else {
        v * lanes + lane
    }
}

/// `x` in the order's layout for `dtype` weights on `isa`, zero-padded to
/// `out.len()` (a multiple of `inputs_per_step`).
pub fn arrange(isa: Isa, dtype: DType, x: &[f32], out: &mut [f32]) {
    debug_assert!(out.len().is_multiple_of(inputs_per_step(isa, dtype)));
    arrange_in(lanes(isa), paired(dtype), x, out);
}

/// `arrange` for vectors of `l` inputs, in pairs or as they are (`out.len()`
/// a multiple of `l`, or of `2l` when `paired`).
pub fn arrange_in(l: usize, paired: bool, x: &[f32], out: &mut [f32]) {
    debug_assert!(out.len() >= x.len());
    if !paired {
        out[..x.len()].copy_from_slice(x);
        out[x.len()..].fill(0.0);
        return;
    }
    for (s, step) in out.chunks_exact_mut(2 * l).enumerate() {
        let (even, odd) = step.split_at_mut(l);
        let first = s * 2 * l;
        if first + 2 * l <= x.len() {
            for (lane, pair) in x[first..first + 2 * l].chunks_exact(2).enumerate() {
                (even[lane], odd[lane]) = (pair[0], pair[1]);
            }
        } else {
            // The last, partial step (input_of spelled out, zero past the end).
            for (v, vector) in [even, odd].into_iter().enumerate() {
                for (lane, o) in vector.iter_mut().enumerate() {
                    *o = x.get(input_of(l, true, 2 * s + v, lane)).copied().unwrap_or(0.0);
                }
            }
        }
    }
}

/// Lanes per output on `isa`.
pub fn lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 | Isa::Avx512Bf16 => 16,
        Isa::Avx2 | Isa::Generic => 8,
    }
}

/// The lanes of one output added together: halves first, down to one
/// (`((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))` for eight lanes,
/// after `l[j] + l[j + 8]` for sixteen).
#[inline]
pub fn reduce(isa: Isa, lanes: &[f32]) -> f32 {
    let mut s = [0f32; 8];
    match isa {
        Isa::Avx512 | Isa::Avx512Bf16 => {
            for j in 0..8 {
                s[j] = lanes[j] + lanes[j + 8];
            }
        }
        _ => s.copy_from_slice(&lanes[..8]),
    }
    let q = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// A tile's outputs from its lane sums: for each of `tokens` tokens (lane
/// sums at `partial[t * ldp..]`: `ROWS` rows of `lanes(isa)`), the first
/// `live` rows `reduce`d, given to `put(t, outputs)`. The same additions as
/// `reduce`, so the same bits; on x86 four rows at a time in vectors (a
/// 256-token prefill spent about 2% of its time adding lanes one by one).
#[inline]
pub fn reduce_tile(
    isa: Isa,
    partial: &[f32],
    ldp: usize,
    tokens: usize,
    live: usize,
    mut put: impl FnMut(usize, &[f32]),
) {
    let l = lanes(isa);
    assert!(live <= ROWS && ldp >= ROWS * l);
    assert!(tokens == 0 || partial.len() >= (tokens - 1) * ldp + ROWS * l);
    match isa.base() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => {
            // SAFETY: both ISAs have AVX2; sizes asserted above.
            unsafe { x86::reduce_tile(l == 16, partial, ldp, tokens, live, put) }
        }
        _ => {
            for t in 0..tokens {
                let mut out = [0f32; ROWS];
                for (o, row) in out.iter_mut().zip(partial[t * ldp..].chunks_exact(l)) {
                    *o = reduce(isa, row);
                }
                put(t, &out[..live]);
            }
        }
    }
}

/// One-token product for rows `data` (`y.len()` rows of `k` inputs), with
/// the inputs `x` in the order's layout: as they are (`x.len() == k`) or,
/// for bf16 weights, `arrange`d (`x.len()`: `k` rounded up to a step).
pub fn rows(isa: Isa, data: &[u8], dtype: DType, k: usize, x: &[f32], y: &mut [f32]) {
    let step = inputs_per_step(isa, dtype);
    assert!(if paired(dtype) {
        x.len() == k.next_multiple_of(step)
    } else {
        x.len() == k
    });
    assert!(data.len() >= y.len() * k * dtype.size());
    match isa.base() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86::rows(isa.base(), data, dtype, k, x, y),
        _ => rows_generic(data, dtype, k, x, y),
    }
}

/// A register tile: lane sums of `ROWS` weight rows times `tokens` input
/// rows over `kp` inputs, both packed vector by vector (`w`:
/// `[vector][row][lanes]`, `x`: `[vector][token][lanes]`), added to (or, when
/// `first`, written over) `partial`: `[token][row][lanes]`, token stride `ldp`.
#[allow(clippy::too_many_arguments)]
pub fn tile(
    isa: Isa,
    tokens: usize,
    kp: usize,
    w: &[f32],
    x: &[f32],
    partial: &mut [f32],
    ldp: usize,
    first: bool,
) {
    let l = lanes(isa);
    assert!(kp.is_multiple_of(l) && w.len() >= ROWS * kp && x.len() >= tokens * kp);
    assert!(partial.len() >= (tokens - 1) * ldp + ROWS * l);
    match isa.base() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86::tile(isa.base(), tokens, kp, w, x, partial, ldp, first),
        _ => tile_generic(tokens, kp, w, x, partial, ldp, first),
    }
}

/// Whether `tile_stored` runs on `isa` (the x86 kernels; the portable path
/// packs).
pub fn reads_stored(isa: Isa) -> bool {
    cfg!(target_arch = "x86_64") && isa != Isa::Generic
}

/// `tile` with the weight rows read where they are stored: four rows of `kp`
/// elements of `dtype`, `row_bytes` apart from the start of `w`, widened in
/// registers. Same sums, same order, so the same bits as `tile` on the packed
/// rows. Only where `reads_stored(isa)`. `prefetch`: where the same rows'
/// next block starts, fetched into L2 meanwhile (a hint: no result changes).
#[allow(clippy::too_many_arguments)]
pub fn tile_stored(
    isa: Isa,
    dtype: DType,
    tokens: usize,
    kp: usize,
    w: &[u8],
    row_bytes: usize,
    x: &[f32],
    partial: &mut [f32],
    ldp: usize,
    first: bool,
    prefetch: Option<&[u8]>,
) {
    let l = lanes(isa);
    assert!(kp.is_multiple_of(inputs_per_step(isa, dtype)));
    assert!(x.len() >= tokens * kp && row_bytes >= kp * dtype.size());
    assert!(w.len() >= (ROWS - 1) * row_bytes + kp * dtype.size());
    assert!(partial.len() >= (tokens - 1) * ldp + ROWS * l);
    match isa.base() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86::tile_stored(
            isa.base(),
            dtype,
            tokens,
            kp,
            w,
            row_bytes,
            x,
            partial,
            ldp,
            first,
            prefetch,
        ),
        _ => unreachable!("tile_stored on {isa:?}"),
    }
}

const GENERIC_LANES: usize = 8;

fn tile_generic(
    tokens: usize,
    kp: usize,
    w: &[f32],
    x: &[f32],
    partial: &mut [f32],
    ldp: usize,
    first: bool,
) {
    const L: usize = GENERIC_LANES;
    for t in 0..tokens {
        for r in 0..ROWS {
            let acc = &mut partial[t * ldp + r * L..][..L];
            if first {
                acc.fill(0.0);
            }
            for v in 0..kp / L {
                let wv = &w[(v * ROWS + r) * L..][..L];
                let xv = &x[(v * tokens + t) * L..][..L];
                for l in 0..L {
                    acc[l] += wv[l] * xv[l];
                }
            }
        }
    }
}

fn rows_generic(data: &[u8], dtype: DType, k: usize, x: &[f32], y: &mut [f32]) {
    let kp = k.next_multiple_of(inputs_per_step(Isa::Generic, dtype));
    let es = dtype.size();
    // x is in the order's layout already; the rows are put in it here.
    let mut xp = vec![0f32; kp];
    xp[..x.len()].copy_from_slice(x);
    let (mut wide, mut arranged) = (vec![0f32; k], vec![0f32; kp]);
    for (row, out) in data.chunks_exact(k * es).zip(y.iter_mut()) {
        decode_row(row, dtype, &mut wide);
        arrange(Isa::Generic, dtype, &wide, &mut arranged);
        let mut acc = [0f32; GENERIC_LANES];
        for (wv, xv) in arranged
            .chunks_exact(GENERIC_LANES)
            .zip(xp.chunks_exact(GENERIC_LANES))
        {
            for l in 0..GENERIC_LANES {
                acc[l] += wv[l] * xv[l];
            }
        }
        *out = reduce(Isa::Generic, &acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kernels::test_values;

    #[test]
    fn lanes_added_in_vectors_give_the_bits_of_one_output_at_a_time() {
        // Lanes of mixed signs and magnitudes, so that a different pairing
        // of the additions would round differently.
        let scales = [1e-3, 1.0, 3e2, 7e4];
        for isa in Isa::supported() {
            let l = lanes(isa);
            let ldp = ROWS * l + 5;
            for tokens in 0..7 {
                let partial = test_values::mixed(tokens as u64, tokens * ldp, &scales);
                for live in 0..=ROWS {
                    let mut seen = 0;
                    reduce_tile(isa, &partial, ldp, tokens, live, |t, got| {
                        assert_eq!((t, got.len()), (seen, live));
                        seen += 1;
                        for (r, g) in got.iter().enumerate() {
                            let want = reduce(isa, &partial[t * ldp + r * l..][..l]);
                            assert_eq!(g.to_bits(), want.to_bits(), "{isa:?}, token {t}, row {r}");
                        }
                    });
                    assert_eq!(seen, tokens);
                }
            }
        }
    }
}
