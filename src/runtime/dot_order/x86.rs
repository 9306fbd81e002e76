//! The x86 kernels of `dot_order`: AVX-512 (16 lanes) and AVX2+FMA+F16C (8).
//! No closures inside `#[target_feature]` functions: they would not inherit
//! the features, and every intrinsic in them would become a call.

use std::arch::x86_64::*;

use super::{ROW_GROUP, ROWS, grouped_rows, one_row_max_input_bytes, reduce, tail};
use crate::DType;
use crate::runtime::kernels::Isa;
use crate::runtime::kernels::x86::{Bf16, Elem, F16, F32};

/// `super::rows` (sizes checked there).
pub fn rows(isa: Isa, data: &[u8], dtype: DType, k: usize, x: &[f32], y: &mut [f32]) {
    // SAFETY: Isa::Avx512 is only chosen when the CPU has AVX-512F and BW,
    // AVX2, FMA and F16C; Isa::Avx2 when it has the last three. Sizes: `super::rows`.
    let grouped = grouped_rows(y.len(), k * 4, one_row_max_input_bytes(dtype));
    unsafe {
        match (isa, dtype) {
            (Isa::Avx512, DType::BF16) => rows512::<Bf16>(data, k, x, y, grouped),
            (Isa::Avx512, DType::F16) => rows512::<F16>(data, k, x, y, grouped),
            (Isa::Avx512, DType::F32) => rows512::<F32>(data, k, x, y, grouped),
            (_, DType::BF16) => rows256::<Bf16>(data, k, x, y, grouped),
            (_, DType::F16) => rows256::<F16>(data, k, x, y, grouped),
            (_, DType::F32) => rows256::<F32>(data, k, x, y, grouped),
        }
    }
}

/// `super::reduce_tile`, `sixteen` lanes or eight.
///
/// # Safety
/// The CPU has AVX2; `live <= ROWS` and `partial` holds the `ROWS` rows of
/// lanes of every token, live or not (`super::reduce_tile` asserts both).
#[target_feature(enable = "avx2")]
pub unsafe fn reduce_tile(
    sixteen: bool,
    partial: &[f32],
    ldp: usize,
    tokens: usize,
    live: usize,
    mut put: impl FnMut(usize, &[f32]),
) {
    for t in 0..tokens {
        let mut out = [0f32; ROWS];
        // SAFETY: a token's ROWS rows of lanes lie within partial; AVX2 (this
        // function's contract).
        unsafe { reduce4(partial[t * ldp..].as_ptr(), sixteen, out.as_mut_ptr()) };
        put(t, &out[..live]);
    }
}

/// Four outputs' lanes (`p`: 16 each when `sixteen`, else 8) added as
/// `reduce` adds them, in vectors: the pairs summed are the same (lane `j`
/// and `j + 8`, then `j` and `j + 4`, `0` and `2`, `1` and `3`, then the two),
/// and an addition of two floats gives the same bits either way round.
///
/// # Safety
/// `p` holds 4 x 16 (or 4 x 8) floats, `out` 4; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn reduce4(p: *const f32, sixteen: bool, out: *mut f32) {
    // SAFETY: the caller's contract.
    unsafe {
        // Eight lanes per output: `l[j] + l[j + 8]`, or the lanes as they are.
        let s = |i: usize| {
            if sixteen {
                _mm256_add_ps(_mm256_loadu_ps(p.add(i * 16)), _mm256_loadu_ps(p.add(i * 16 + 8)))
            } else {
                _mm256_loadu_ps(p.add(i * 8))
            }
        };
        let (a, b, c, d) = (s(0), s(1), s(2), s(3));
        // Four per output, `s[j] + s[j + 4]`: [a | b] and [c | d].
        let ab = _mm256_add_ps(
            _mm256_permute2f128_ps(a, b, 0x20),
            _mm256_permute2f128_ps(a, b, 0x31),
        );
        let cd = _mm256_add_ps(
            _mm256_permute2f128_ps(c, d, 0x20),
            _mm256_permute2f128_ps(c, d, 0x31),
        );
        // Two per output, `q[0] + q[2]` and `q[1] + q[3]`: [a a c c | b b d d].
        let g = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));
        // One: [a c a c | b d b d], then [a b c d].
        let z = _mm256_add_ps(_mm256_shuffle_ps(g, g, 0x88), _mm256_shuffle_ps(g, g, 0xDD));
        let r = _mm_unpacklo_ps(_mm256_castps256_ps128(z), _mm256_extractf128_ps(z, 1));
        _mm_storeu_ps(out, r);
    }
}

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
    // The packed panel is `[vector][row][lanes]` of f32: rows `lanes` floats
    // apart, vectors `ROWS * lanes` floats apart.
    let row_bytes = super::lanes(isa) * 4;
    let w = w.as_ptr().cast::<u8>();
    // SAFETY: sizes checked by `super::tile`; features as in `rows`.
    unsafe {
        tile_at::<F32>(
            isa,
            tokens,
            kp,
            w,
            row_bytes,
            ROWS * row_bytes,
            std::ptr::null(),
            x,
            partial,
            ldp,
            first,
        )
    }
}

/// `tile` with the four weight rows read where they are stored (at stride
/// `row_bytes` from `w`), widened in registers instead of packed beforehand.
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
    // Bytes per vector of a stored row (a step of two vectors for bf16 is twice that).
    let step = super::lanes(isa) * dtype.size();
    let w = w.as_ptr();
    let pf = prefetch.map_or(std::ptr::null(), <[u8]>::as_ptr);
    // SAFETY: sizes checked by `super::tile_stored`; features as in `rows`.
    unsafe {
        match dtype {
            DType::BF16 => tile_at::<Bf16>(isa, tokens, kp, w, row_bytes, step, pf, x, partial, ldp, first),
            DType::F16 => tile_at::<F16>(isa, tokens, kp, w, row_bytes, step, pf, x, partial, ldp, first),
            DType::F32 => tile_at::<F32>(isa, tokens, kp, w, row_bytes, step, pf, x, partial, ldp, first),
        }
    }
}

/// The register tile for rows of `E` at `w`: row `r`, step `s` of the tile
/// (`E::STEP` vectors) starts `r * row_bytes + s * E::STEP * step` bytes in. `prefetch` (or null):
/// where the same rows' next block starts, fetched into L2 meanwhile (a hint:
/// no result changes).
///
/// # Safety
/// As `tile`'s and `tile_stored`'s checks; the CPU has `isa`'s features.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_at<E: Elem>(
    isa: Isa,
    tokens: usize,
    kp: usize,
    w: *const u8,
    row_bytes: usize,
    step: usize,
    prefetch: *const u8,
    x: &[f32],
    partial: &mut [f32],
    ldp: usize,
    first: bool,
) {
    let (x, p) = (x.as_ptr(), partial.as_mut_ptr());
    let s = (row_bytes, step, prefetch);
    // SAFETY: the caller's contract.
    unsafe {
        match (isa, tokens) {
            (Isa::Avx512, 1) => tile512::<E, 1>(kp, w, s, x, p, ldp, first),
            (Isa::Avx512, 2) => tile512::<E, 2>(kp, w, s, x, p, ldp, first),
            (Isa::Avx512, 3) => tile512::<E, 3>(kp, w, s, x, p, ldp, first),
            (Isa::Avx512, 4) => tile512::<E, 4>(kp, w, s, x, p, ldp, first),
            (Isa::Avx512, 5) => tile512::<E, 5>(kp, w, s, x, p, ldp, first),
            (Isa::Avx512, 6) => tile512::<E, 6>(kp, w, s, x, p, ldp, first),
            (_, 1) => tile256::<E, 1>(kp, w, s, x, p, ldp, first),
            (_, 2) => tile256::<E, 2>(kp, w, s, x, p, ldp, first),
            _ => unreachable!("tile of {tokens} tokens"),
        }
    }
}

/// The row kernel and the register tile for one vector width: the same code
/// for AVX-512 (16 lanes) and AVX2 (8), each compiled with its own target
/// features (a generic function could not carry them).
macro_rules! kernels {
    (
        features: $features:literal, lanes: $lanes:literal, vector: $v:ty,
        zero: $zero:ident, loadu: $loadu:ident, storeu: $storeu:ident, fmadd: $fmadd:ident,
        widen: $widen:ident, isa: $isa:expr, rows: $rows:ident, group: $group:ident, tile: $tile:ident $(,)?
    ) => {
        /// The first `grouped` rows (`grouped_rows`) in groups of
        /// `ROW_GROUP`, the other rows one at a time; every row's lanes are
        /// summed in the same order either way.
        ///
        /// # Safety
        /// `data` holds `y.len()` rows of `k` elements; `x` as `super::rows`
        /// says; `grouped` a multiple of `ROW_GROUP`, at most `y.len()`; the
        /// CPU has the features named.
        #[target_feature(enable = $features)]
        unsafe fn $rows<E: Elem>(data: &[u8], k: usize, x: &[f32], y: &mut [f32], grouped: usize) {
            let (in_groups, left) = y.split_at_mut(grouped);
            for (g, outs) in in_groups.chunks_exact_mut(ROW_GROUP).enumerate() {
                // SAFETY: the caller's contract.
                unsafe { $group::<E, ROW_GROUP>(data, g * ROW_GROUP, k, x, outs) };
            }
            for (i, out) in left.chunks_exact_mut(1).enumerate() {
                // SAFETY: the caller's contract.
                unsafe { $group::<E, 1>(data, grouped + i, k, x, out) };
            }
        }

        /// Outputs of rows `first..first + N` (`outs`): each input vector
        /// loaded once for all N rows, each row's lanes in a register of its
        /// own; the last partial step comes from zero-padded copies (of x's
        /// last step, and of each row's last elements).
        ///
        /// # Safety
        /// `data` holds rows `first..first + N` of `k` elements; `x` as
        /// `super::rows` says; `outs.len() == N`; the CPU has the features named.
        #[target_feature(enable = $features)]
        unsafe fn $group<E: Elem, const N: usize>(
            data: &[u8],
            first: usize,
            k: usize,
            x: &[f32],
            outs: &mut [f32],
        ) {
            const L: usize = $lanes;
            let per_step = L * E::STEP;
            let (full, rest) = (k / per_step, k % per_step);
            let row_bytes = k * E::SIZE;
            let base = data[first * row_bytes..(first + N) * row_bytes].as_ptr();
            let mut acc = [$zero(); N];
            for s in 0..full {
                // SAFETY: inputs of step s lie within k, of x and of the N rows.
                unsafe {
                    let at = base.add(s * per_step * E::SIZE);
                    for h in 0..E::STEP {
                        let xv = $loadu(x.as_ptr().add((s * E::STEP + h) * L));
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = $fmadd(E::$widen(at.add(j * row_bytes), h), xv, *a);
                        }
                    }
                }
            }
            if rest > 0 {
                // x's last step: `rest` inputs as they are, or a whole arranged step.
                let start = full * per_step;
                let mut x_tail = [0f32; 2 * L];
                let have = (x.len() - start).min(per_step);
                x_tail[..have].copy_from_slice(&x[start..start + have]);
                for (j, a) in acc.iter_mut().enumerate() {
                    let w_tail = tail(
                        data,
                        (first + j) * row_bytes + start * E::SIZE,
                        rest * E::SIZE,
                    );
                    for h in 0..E::STEP {
                        // SAFETY: w_tail holds 64 bytes (a step of any dtype); x_tail 2L floats.
                        *a = $fmadd(
                            unsafe { E::$widen(w_tail.as_ptr(), h) },
                            unsafe { $loadu(x_tail.as_ptr().add(h * L)) },
                            *a,
                        );
                    }
                }
            }
            for (a, out) in acc.iter().zip(outs.iter_mut()) {
                let mut lanes = [0f32; L];
                // SAFETY: lanes has L floats.
                unsafe { $storeu(lanes.as_mut_ptr(), *a) };
                *out = reduce($isa, &lanes);
            }
        }

        /// Four rows x T tokens (with AVX-512 at T = 6, 24 accumulators), the
        /// rows' elements of `E` widened in registers (exact), step `s` of row
        /// `r` at `w + r * row_bytes + s * E::STEP * step` bytes: a packed f32
        /// panel (in the order's layout) and rows read where they are stored
        /// give the same sums in the same order.
        ///
        /// # Safety
        /// `w`: four rows of `kp` elements so laid out (`kp` a multiple of
        /// `L * E::STEP`); `x`: `kp * T` floats `[vector][token][L]`; `p`: T
        /// rows of 4 x L floats at stride `ldp`; the CPU has the features named.
        #[target_feature(enable = $features)]
        unsafe fn $tile<E: Elem, const T: usize>(
            kp: usize,
            w: *const u8,
            (row_bytes, step, prefetch): (usize, usize, *const u8),
            x: *const f32,
            p: *mut f32,
            ldp: usize,
            first: bool,
        ) {
            const L: usize = $lanes;
            let mut acc: [[$v; ROWS]; T] = [[$zero(); ROWS]; T];
            if !first {
                for (t, row) in acc.iter_mut().enumerate() {
                    for (r, a) in row.iter_mut().enumerate() {
                        // SAFETY: the caller's contract.
                        *a = unsafe { $loadu(p.add(t * ldp + r * L)) };
                    }
                }
            }
            let mut x = x;
            for s in 0..kp / (L * E::STEP) {
                // SAFETY (block): the caller's contract.
                unsafe {
                    let at = w.add(s * E::STEP * step);
                    if !prefetch.is_null() {
                        let pf = prefetch.wrapping_add(s * E::STEP * step);
                        for r in 0..ROWS {
                            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(r * row_bytes).cast());
                        }
                    }
                    // A step's vectors one after another: with two (bf16),
                    // each is loaded and widened apart, so that the 24 lane
                    // sums, 4 weight vectors and x fit the 32 registers.
                    for h in 0..E::STEP {
                        let wv = [
                            E::$widen(at, h),
                            E::$widen(at.add(row_bytes), h),
                            E::$widen(at.add(2 * row_bytes), h),
                            E::$widen(at.add(3 * row_bytes), h),
                        ];
                        for (t, row) in acc.iter_mut().enumerate() {
                            let xv = $loadu(x.add(t * L));
                            for (a, wr) in row.iter_mut().zip(wv) {
                                *a = $fmadd(wr, xv, *a);
                            }
                        }
                        x = x.add(T * L);
                    }
                }
            }
            for (t, row) in acc.iter().enumerate() {
                for (r, a) in row.iter().enumerate() {
                    // SAFETY: the caller's contract.
                    unsafe { $storeu(p.add(t * ldp + r * L), *a) };
                }
            }
        }
    };
}

kernels! {
    features: "avx512f,avx512bw,avx2,fma,f16c", lanes: 16, vector: __m512,
    zero: _mm512_setzero_ps, loadu: _mm512_loadu_ps, storeu: _mm512_storeu_ps, fmadd: _mm512_fmadd_ps,
    widen: load16, isa: Isa::Avx512, rows: rows512, group: rows512_group, tile: tile512,
}

kernels! {
    features: "avx2,fma,f16c", lanes: 8, vector: __m256,
    zero: _mm256_setzero_ps, loadu: _mm256_loadu_ps, storeu: _mm256_storeu_ps, fmadd: _mm256_fmadd_ps,
    widen: load8, isa: Isa::Avx2, rows: rows256, group: rows256_group, tile: tile256,
}
