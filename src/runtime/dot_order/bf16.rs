//! The bf16 order: the one order of `dot_order` for bf16 weights when the
//! products take bf16 inputs (`Isa::Avx512Bf16`, opted into with
//! `TRTLLM_MINITRON_MATMUL=bf16`).
//!
//! The inputs `x` are rounded to bf16 (to nearest, ties to even) once per
//! product; the weights are bf16 as stored. For an output over `k` inputs,
//! both zero-padded to a multiple of 32: lane `l` of 16 takes, for each
//! vector `v` in increasing order, `acc += w[i+1] * x[i+1]`, then
//! `acc += w[i] * x[i]` with `i = 32 v + 2 l`, each addition rounded to f32
//! (the products of two bf16 are exact), bf16 subnormals read as zero and
//! subnormal sums flushed to zero: what the CPU's bf16 dot-product
//! instruction (VDPBF16PS) does, so one instruction per 32 inputs. The lanes
//! are then added as `reduce` says for AVX-512. This is how TensorRT-LLM and
//! transformers run a bf16 model's matrix products (bf16 inputs, f32
//! accumulation), and about twice the f32 kernels' rate; the f32 order stays
//! the default because it is the oracle's.

use super::ROWS;

/// Inputs per vector: 16 lanes of pairs.
pub const VECTOR: usize = 32;
/// Lane sums per output.
pub const LANES: usize = 16;

/// `x` rounded to bf16 bits (to nearest, ties to even; NaN stays NaN).
#[inline]
pub fn round(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// `x` rounded to bf16 into `out`, zero-padded to `out.len()`.
pub fn round_into(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = round(v);
    }
    out[x.len()..].fill(0);
}

/// One-token product of bf16 rows `data` (`y.len()` rows of `k` inputs)
/// with inputs `x` already rounded and zero-padded to a multiple of `VECTOR`.
pub fn rows(data: &[u8], k: usize, x: &[u16], y: &mut [f32]) {
    assert!(x.len() == k.next_multiple_of(VECTOR) && data.len() >= y.len() * k * 2);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sizes checked above; Isa::Avx512Bf16 (the only caller) is only
    // chosen when the CPU has AVX512_BF16 and AVX-512F.
    unsafe {
        x86::rows(data, k, x, y)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bf16 products on a CPU without AVX512_BF16");
}

/// A register tile (as `dot_order::tile_stored`) of `ROWS` bf16 weight rows
/// `row_bytes` apart at `w`, `kp` inputs each (a multiple of `VECTOR`), times
/// `tokens` rows of rounded inputs packed `[vector][token][32]`, added to
/// (or, when `first`, written over) `partial`: `[token][row][16]`, token
/// stride `ldp`.
#[allow(clippy::too_many_arguments)]
pub fn tile(
    tokens: usize,
    kp: usize,
    w: &[u8],
    row_bytes: usize,
    x: &[u16],
    partial: &mut [f32],
    ldp: usize,
    first: bool,
    prefetch: Option<&[u8]>,
) {
    assert!(kp.is_multiple_of(VECTOR) && x.len() >= tokens * kp && row_bytes >= kp * 2);
    assert!(w.len() >= (ROWS - 1) * row_bytes + kp * 2);
    assert!((1..=6).contains(&tokens) && partial.len() >= (tokens - 1) * ldp + ROWS * LANES);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sizes checked above; features as in `rows`.
    unsafe {
        x86::tile(
            tokens,
            x86::Tile {
                kp,
                w: w.as_ptr(),
                row_bytes,
                x: x.as_ptr(),
                p: partial.as_mut_ptr(),
                ldp,
                first,
                prefetch: prefetch.map_or(std::ptr::null(), <[u8]>::as_ptr),
            },
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bf16 products on a CPU without AVX512_BF16");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! No closures inside the `#[target_feature]` functions (see `super::super::x86`).
    use std::arch::x86_64::*;

    use super::super::{ONE_ROW_MAX_INPUT_BYTES, ROW_GROUP, ROWS, grouped_rows, reduce, tail};
    use super::{LANES, VECTOR};
    use crate::runtime::kernels::Isa;

    /// 32 bf16 at `p` as a vector of pairs.
    #[inline]
    #[target_feature(enable = "avx512bf16,avx512f")]
    unsafe fn load(p: *const u8) -> __m512bh {
        // SAFETY: 64 readable bytes (caller); the bits are reinterpreted as is.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())) }
    }

    /// Groups of `ROW_GROUP` rows when the rounded inputs are larger than
    /// `ONE_ROW_MAX_INPUT_BYTES` (each input vector loaded once for all rows
    /// of a group), the other rows one at a time, front to back: with rounded
    /// inputs of at most 8 KiB a single stream of weights is faster (29.7
    /// against 24.9 GB/s at 3072 inputs, scripts/BENCHMARKS.md). A row's last
    /// partial vector comes from a zero-padded copy. The same order either way.
    ///
    /// # Safety
    /// `data`: `y.len()` rows of `k` bf16; `x`: `k` rounded up to 32 bf16;
    /// the CPU has AVX512_BF16 and AVX-512F.
    #[target_feature(enable = "avx512bf16,avx512f")]
    pub unsafe fn rows(data: &[u8], k: usize, x: &[u16], y: &mut [f32]) {
        let grouped = grouped_rows(y.len(), k * 2, ONE_ROW_MAX_INPUT_BYTES);
        let (in_groups, left) = y.split_at_mut(grouped);
        for (g, outs) in in_groups.chunks_exact_mut(ROW_GROUP).enumerate() {
            // SAFETY: the caller's contract.
            unsafe { group::<ROW_GROUP>(data, g * ROW_GROUP, k, x, outs) };
        }
        for (i, out) in left.chunks_exact_mut(1).enumerate() {
            // SAFETY: the caller's contract.
            unsafe { group::<1>(data, grouped + i, k, x, out) };
        }
    }

    /// Outputs of rows `first..first + N` (`outs`): each input vector loaded
    /// once for all N rows; a row's last partial vector comes from a
    /// zero-padded copy.
    ///
    /// # Safety
    /// `data` holds rows `first..first + N` of `k` bf16; `x`: `k` rounded up
    /// to 32 bf16; `outs.len() == N`; the CPU has AVX512_BF16 and AVX-512F.
    #[target_feature(enable = "avx512bf16,avx512f")]
    unsafe fn group<const N: usize>(data: &[u8], first: usize, k: usize, x: &[u16], outs: &mut [f32]) {
        let (full, rest) = (k / VECTOR, k % VECTOR);
        let row_bytes = k * 2;
        let xp = x.as_ptr().cast::<u8>();
        let base = data[first * row_bytes..(first + N) * row_bytes].as_ptr();
        let mut acc = [_mm512_setzero_ps(); N];
        for v in 0..full {
            // SAFETY: vector v lies within x and within the N rows.
            unsafe {
                let xv = load(xp.add(v * 64));
                let at = base.add(v * 64);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_dpbf16_ps(*a, load(at.add(j * row_bytes)), xv);
                }
            }
        }
        for (j, (a, out)) in acc.iter_mut().zip(outs.iter_mut()).enumerate() {
            if rest > 0 {
                let w_tail = tail(data, (first + j) * row_bytes + full * 64, rest * 2);
                // SAFETY: w_tail holds 64 bytes; x holds `full + 1` vectors.
                *a = _mm512_dpbf16_ps(*a, unsafe { load(w_tail.as_ptr()) }, unsafe {
                    load(xp.add(full * 64))
                });
            }
            let mut lanes = [0f32; LANES];
            // SAFETY: lanes has 16 floats.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
            *out = reduce(Isa::Avx512, &lanes);
        }
    }

    /// Where a tile reads and writes (see `super::tile`).
    #[derive(Clone, Copy)]
    pub struct Tile {
        pub kp: usize,
        pub w: *const u8,
        pub row_bytes: usize,
        pub x: *const u16,
        pub p: *mut f32,
        pub ldp: usize,
        pub first: bool,
        /// Where the same four rows' next block starts (null: none): fetched
        /// into L2 while this block computes, so that the next block does not
        /// wait on memory (a hint: it changes no result).
        pub prefetch: *const u8,
    }

    /// # Safety
    /// As `super::tile`'s checks; the CPU has AVX512_BF16 and AVX-512F.
    pub unsafe fn tile(tokens: usize, at: Tile) {
        // SAFETY: the caller's contract.
        unsafe {
            match tokens {
                1 => tile_t::<1>(at),
                2 => tile_t::<2>(at),
                3 => tile_t::<3>(at),
                4 => tile_t::<4>(at),
                5 => tile_t::<5>(at),
                _ => tile_t::<6>(at),
            }
        }
    }

    /// Four rows x T tokens, 4 x T accumulators (24 at T = 6), one
    /// instruction per 32 inputs of each.
    ///
    /// # Safety
    /// As `tile`.
    #[target_feature(enable = "avx512bf16,avx512f")]
    unsafe fn tile_t<const T: usize>(at: Tile) {
        let Tile {
            kp,
            w,
            row_bytes,
            x,
            p,
            ldp,
            first,
            prefetch,
        } = at;
        let mut acc = [[_mm512_setzero_ps(); ROWS]; T];
        if !first {
            for (t, row) in acc.iter_mut().enumerate() {
                for (r, a) in row.iter_mut().enumerate() {
                    // SAFETY: the caller's contract.
                    *a = unsafe { _mm512_loadu_ps(p.add(t * ldp + r * LANES)) };
                }
            }
        }
        let mut x = x.cast::<u8>();
        for v in 0..kp / VECTOR {
            // SAFETY (block): the caller's contract.
            unsafe {
                if !prefetch.is_null() {
                    let pf = prefetch.wrapping_add(v * 64);
                    for r in 0..ROWS {
                        _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(r * row_bytes).cast());
                    }
                }
                let at = w.add(v * 64);
                let wv = [
                    load(at),
                    load(at.add(row_bytes)),
                    load(at.add(2 * row_bytes)),
                    load(at.add(3 * row_bytes)),
                ];
                for (t, row) in acc.iter_mut().enumerate() {
                    let xv = load(x.add(t * 64));
                    for (a, wr) in row.iter_mut().zip(wv) {
                        *a = _mm512_dpbf16_ps(*a, wr, xv);
                    }
                }
                x = x.add(T * 64);
            }
        }
        for (t, row) in acc.iter().enumerate() {
            for (r, a) in row.iter().enumerate() {
                // SAFETY: the caller's contract.
                unsafe { _mm512_storeu_ps(p.add(t * ldp + r * LANES), *a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::dot_order::reduce;
    use crate::runtime::kernels::Isa;

    /// The order as the module comment states it, in plain Rust.
    fn by_the_book(w: &[u16], x: &[u16]) -> f32 {
        let daz = |b: u16| {
            let f = f32::from_bits(u32::from(b) << 16);
            if f.is_subnormal() { 0.0f32.copysign(f) } else { f }
        };
        let ftz = |f: f32| if f.is_subnormal() { 0.0f32.copysign(f) } else { f };
        let mut lanes = [0f32; LANES];
        for v in 0..w.len().div_ceil(VECTOR) {
            for (l, acc) in lanes.iter_mut().enumerate() {
                let i = v * VECTOR + 2 * l;
                let at = |s: &[u16], j: usize| s.get(j).copied().unwrap_or(0);
                *acc = ftz(*acc + daz(at(w, i + 1)) * daz(at(x, i + 1)));
                *acc = ftz(*acc + daz(at(w, i)) * daz(at(x, i)));
            }
        }
        reduce(Isa::Avx512, &lanes)
    }

    fn has_bf16() -> bool {
        Isa::supported().contains(&Isa::Avx512Bf16)
    }

    /// Irregular values over many binades, with cancellations, tiny values
    /// (some subnormal in bf16) and exact ties of the rounding.
    fn values(n: usize, salt: u64) -> Vec<f32> {
        let mut s = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let m = (s % 20001) as f32 / 1000.0 - 10.0;
                match i % 17 {
                    0 => m * 1e-39,
                    1 => 1.0 + f32::EPSILON * 32768.0, // halfway between two bf16
                    _ => m * 2f32.powi((s >> 40) as i32 % 12 - 6),
                }
            })
            .collect()
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.
        assert_eq!(round(1.0 + 2f32.powi(-8)), 0x3F80);
        assert_eq!(round(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        assert!(f32::from_bits(u32::from(round(f32::NAN)) << 16).is_nan());
    }

    /// The kernels against the order written out: bit for bit, every tail
    /// length, one row and several; rows in groups (inputs past
    /// `ONE_ROW_MAX_INPUT_BYTES`) and the rows left over after the groups.
    #[test]
    fn kernels_sum_in_the_stated_order() {
        if !has_bf16() {
            eprintln!("SKIPPED: this CPU lacks AVX512_BF16 (the bf16 kernels cannot run)");
            return;
        }
        let grouped = crate::runtime::dot_order::ONE_ROW_MAX_INPUT_BYTES / 2 + 1;
        let shapes = [1, 31, 32, 33, 100, 1024, 1100].map(|k| (k, 9));
        for (k, m) in shapes
            .into_iter()
            .chain([(grouped, 29), (grouped.next_multiple_of(VECTOR), 29)])
        {
            let wf = values(m * k, 1);
            let w16: Vec<u16> = wf.iter().map(|&v| round(v)).collect();
            let bytes: Vec<u8> = w16.iter().flat_map(|b| b.to_le_bytes()).collect();
            let kp = k.next_multiple_of(VECTOR);
            let mut x = vec![0u16; kp];
            round_into(&values(k, 2), &mut x);
            let mut y = vec![0f32; m];
            rows(&bytes, k, &x, &mut y);
            for o in 0..m {
                let want = by_the_book(&w16[o * k..(o + 1) * k], &x[..k]);
                assert_eq!(y[o].to_bits(), want.to_bits(), "rows k={k} row {o}");
            }
            if k % VECTOR == 0 {
                // Tiles of 1..6 tokens over the first four rows, in two blocks.
                for tokens in 1..=6 {
                    let xs: Vec<Vec<u16>> = (0..tokens)
                        .map(|t| {
                            let mut v = vec![0u16; kp];
                            round_into(&values(k, 10 + t as u64), &mut v);
                            v
                        })
                        .collect();
                    let ldp = ROWS * LANES;
                    let mut partial = vec![0f32; tokens * ldp];
                    let half = (kp / 2).next_multiple_of(VECTOR).min(kp);
                    for (start, end) in [(0, half), (half, kp)] {
                        if start == end {
                            continue;
                        }
                        let packed: Vec<u16> = (start..end)
                            .step_by(VECTOR)
                            .flat_map(|i| xs.iter().flat_map(move |x| x[i..i + VECTOR].to_vec()))
                            .collect();
                        tile(
                            tokens,
                            end - start,
                            &bytes[start * 2..],
                            k * 2,
                            &packed,
                            &mut partial,
                            ldp,
                            start == 0,
                            // The first block also prefetches the second (a hint).
                            (start == 0).then(|| &bytes[end * 2..]),
                        );
                    }
                    for t in 0..tokens {
                        for r in 0..ROWS {
                            let got = reduce(Isa::Avx512, &partial[t * ldp + r * LANES..][..LANES]);
                            let want = by_the_book(&w16[r * k..(r + 1) * k], &xs[t][..k]);
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "tile k={k} tokens={tokens} [{t},{r}]"
                            );
                        }
                    }
                }
            }
        }
    }
}
