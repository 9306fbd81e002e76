//! Attention's two vector kernels: the scores of a kv head's query heads
//! against the keys they share, and the softmax-weighted sum of the value
//! rows. A kv head serves `q_heads / kv_heads` query heads (3 on the
//! Minitron-4B shape, 6 on the 8B), so each key and value row is loaded once
//! for up to three heads instead of once per head: one head at a time read
//! them from L2 three times over and ran at about a third of the FMA peak.
//! Every output keeps the bits of the one-head, one-key form (`dot`, and
//! the scalar multiply-then-add), on every ISA (the tests below).

use super::kernels::{Isa, dot_on};

/// Query heads that share one pass over the keys or values (the registers
/// of an AVX-512 tile: 3 heads x 2 keys x 2 sums and the heads' q, or 3
/// heads x 8 vectors of outputs). Callers that split attention into work
/// items split a kv head's query heads so.
pub(crate) const HEADS_PER_PASS: usize = 3;

/// `out[h * n + p] = dot(q_h, key_p)` for each of `heads` query heads
/// `q_h = qs[h * d..(h + 1) * d]` and each of the `n = out.len() / heads`
/// keys `key_p = keys[p * stride..p * stride + d]`.
pub fn dots(heads: usize, qs: &[f32], keys: &[f32], stride: usize, out: &mut [f32]) {
    dots_on(Isa::get(), heads, qs, keys, stride, out);
}

/// `dots` on `isa` (one this CPU has).
pub(crate) fn dots_on(isa: Isa, heads: usize, qs: &[f32], keys: &[f32], stride: usize, out: &mut [f32]) {
    let Some((d, n)) = shape(heads, qs.len(), out.len(), keys.len(), stride) else {
        return;
    };
    let mut h0 = 0;
    while h0 < heads {
        let h = (heads - h0).min(HEADS_PER_PASS);
        let q = &qs[h0 * d..(h0 + h) * d];
        let o = &mut out[h0 * n..(h0 + h) * n];
        // SAFETY: the keys fit (asserted above); isa is this CPU's (the caller).
        let done = unsafe { dots_vector(isa, h, d, q, keys, stride, o) };
        for (g, scores) in o.chunks_exact_mut(n).enumerate() {
            let q = &q[g * d..(g + 1) * d];
            for (p, s) in scores.iter_mut().enumerate().skip(done) {
                *s = dot_on(isa, q, &keys[p * stride..p * stride + d]);
            }
        }
        h0 += h;
    }
}

/// The head size `d` and the number of rows `n` (keys or values) of a call
/// on `heads` heads, from its per-head vectors (`heads x d` floats) and
/// per-row figures (`heads x n`); `None` when there are no rows. Panics
/// unless both divide by `heads` and `rows` floats hold `n` rows of `d`
/// floats `stride` apart, computed without wrapping (the kernels read them
/// through raw pointers).
fn shape(
    heads: usize,
    per_head: usize,
    per_row: usize,
    rows: usize,
    stride: usize,
) -> Option<(usize, usize)> {
    assert!(
        heads > 0 && per_head.is_multiple_of(heads) && per_row.is_multiple_of(heads),
        "{per_head} head floats and {per_row} row figures for {heads} heads"
    );
    let (d, n) = (per_head / heads, per_row / heads);
    let last = n.checked_sub(1)?;
    let end = last.checked_mul(stride).and_then(|start| start.checked_add(d));
    assert!(
        end.is_some_and(|end| end <= rows),
        "{rows} floats cannot hold {n} rows of {d} floats, {stride} apart"
    );
    Some((d, n))
}

/// The vector part of `dots` for one pass of `h` heads (at most three):
/// how many keys it scored, from the first (0 where there is no vector form).
///
/// # Safety
/// `q` holds `h` heads of `d` floats, `o` `h` rows of `n` scores, `keys` the
/// `n` keys of `d` floats `stride` apart; `isa` is one this CPU has.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
unsafe fn dots_vector(
    isa: Isa,
    h: usize,
    d: usize,
    q: &[f32],
    keys: &[f32],
    stride: usize,
    o: &mut [f32],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx512 | Isa::Avx512Bf16) && d.is_multiple_of(32) {
        // SAFETY: AVX-512F present (isa); the sizes are the caller's contract.
        return unsafe {
            match h {
                3 => x86::dots_tiles::<3, 2>(q, keys, stride, o),
                2 => x86::dots_tiles::<2, 4>(q, keys, stride, o),
                _ => x86::dots_tiles::<1, 4>(q, keys, stride, o),
            }
        };
    }
    0
}

/// The vector part of `add_weighted_rows` for one pass of `h` heads (at
/// most three): how many of each head's outputs it finished, from the
/// first (0 where there is no vector form).
///
/// # Safety
/// `o` holds `h` heads of `d` outputs, `w` `h` rows of `n` weights,
/// `values` the `n` rows of `d` floats `stride` apart; `isa` is one this CPU has.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
unsafe fn weighted_vector(
    isa: Isa,
    h: usize,
    d: usize,
    o: &mut [f32],
    w: &[f32],
    values: &[f32],
    stride: usize,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    match isa.base() {
        // SAFETY: AVX-512F present; the sizes are the caller's contract.
        Isa::Avx512 => {
            return unsafe {
                match h {
                    3 => x86::add_weighted_rows512::<3>(o, w, values, stride),
                    2 => x86::add_weighted_rows512::<2>(o, w, values, stride),
                    _ => x86::add_weighted_rows512::<1>(o, w, values, stride),
                }
            };
        }
        Isa::Avx2 => {
            let n = w.len() / h;
            for (o, w) in o.chunks_exact_mut(d).zip(w.chunks_exact(n)) {
                // SAFETY: AVX2 present; one head's outputs and weights, the
                // rows as the caller's contract.
                unsafe { x86::add_weighted_rows256(o, w, values, stride) };
            }
            return d / x86::AVX2_LANES * x86::AVX2_LANES;
        }
        _ => {}
    }
    0
}

/// `out[h * d + j] += weights[h * n + p] * values[p * stride + j]` for each
/// of `heads` heads (`d = out.len() / heads`, `n = weights.len() / heads`),
/// each `p` in turn: a multiply, then an add, so the same bits on every
/// path, with the heads' outputs held in registers across all `p`.
pub fn add_weighted_rows(heads: usize, out: &mut [f32], weights: &[f32], values: &[f32], stride: usize) {
    add_weighted_rows_on(Isa::get(), heads, out, weights, values, stride);
}

/// `add_weighted_rows` on `isa` (one this CPU has).
pub(crate) fn add_weighted_rows_on(
    isa: Isa,
    heads: usize,
    out: &mut [f32],
    weights: &[f32],
    values: &[f32],
    stride: usize,
) {
    let Some((d, n)) = shape(heads, out.len(), weights.len(), values.len(), stride) else {
        return;
    };
    if d == 0 {
        // Nothing to add the rows to.
        return;
    }
    let mut h0 = 0;
    while h0 < heads {
        let h = (heads - h0).min(HEADS_PER_PASS);
        let o = &mut out[h0 * d..(h0 + h) * d];
        let w = &weights[h0 * n..(h0 + h) * n];
        // SAFETY: the value rows fit (asserted above); isa is this CPU's (the caller).
        let done = unsafe { weighted_vector(isa, h, d, o, w, values, stride) };
        if done < d {
            for (o, w) in o.chunks_exact_mut(d).zip(w.chunks_exact(n)) {
                add_weighted_rows_generic(&mut o[done..], w, &values[done..], stride);
            }
        }
        h0 += h;
    }
}

/// One head's weighted rows, as the vector kernels compute each lane.
fn add_weighted_rows_generic(out: &mut [f32], weights: &[f32], values: &[f32], stride: usize) {
    for (p, &w) in weights.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(&values[p * stride..]) {
            *o += w * v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::runtime::kernels::x86::hsum256;

    /// f32 lanes of an AVX2 vector.
    pub const AVX2_LANES: usize = 8;
    /// f32 lanes of an AVX-512 vector.
    const AVX512_LANES: usize = 16;

    /// Scores of `H` query heads (`q`: `H` heads of `d` floats, `d` a
    /// multiple of 32) against keys `K` at a time, into `out` (`H` rows of
    /// `n` scores); returns how many keys it did (`n` rounded down to
    /// whole groups of `K`). Each score is `dot_avx2`'s: its four 8-lane
    /// sums (inputs `32 i + 8 j` in sum `j`) are here the halves of two
    /// 16-lane sums, added as there. The heads' q vectors stay in registers
    /// while each key vector is loaded once for all `H`.
    ///
    /// # Safety
    /// `keys` holds the `n` keys, `d` floats each, `stride` apart; AVX-512F present.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn dots_tiles<const H: usize, const K: usize>(
        q: &[f32],
        keys: &[f32],
        stride: usize,
        out: &mut [f32],
    ) -> usize {
        let (d, n) = (q.len() / H, out.len() / H);
        debug_assert!(d.is_multiple_of(32), "head size {d}");
        let halves = |v: __m512| {
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
            _mm256_add_ps(_mm512_castps512_ps256(v), high)
        };
        let done = n / K * K;
        for p0 in (0..done).step_by(K) {
            // acc[k][g]: key p0 + k, head g.
            let mut acc = [[[_mm512_setzero_ps(); 2]; H]; K];
            for i in 0..d / 32 {
                // SAFETY: 32 i + 32 <= d: within each head's q and each key
                // (p0 + k < n; the caller's contract).
                unsafe {
                    let qv: [[__m512; 2]; H] = std::array::from_fn(|g| {
                        let at = q.as_ptr().add(g * d + 32 * i);
                        [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16))]
                    });
                    for (k, ak) in acc.iter_mut().enumerate() {
                        let at = keys.as_ptr().add((p0 + k) * stride + 32 * i);
                        let kv = [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16))];
                        for (a, q) in ak.iter_mut().zip(&qv) {
                            for half in 0..2 {
                                a[half] = _mm512_fmadd_ps(q[half], kv[half], a[half]);
                            }
                        }
                    }
                }
            }
            for (k, sums) in acc.iter().enumerate() {
                for (g, a) in sums.iter().enumerate() {
                    // (sum 0 + sum 1) + (sum 2 + sum 3), then dot_avx2's sum of eight lanes.
                    out[g * n + p0 + k] = hsum256(_mm256_add_ps(halves(a[0]), halves(a[1])));
                }
            }
        }
        done
    }

    /// `add_weighted_rows` for `H` heads (`out`: `H` heads of `d` outputs;
    /// `weights`: `H` rows of `n`), up to 8 vectors of each head's outputs
    /// in registers at a time, each value vector loaded once for all `H`.
    /// Returns how many outputs of each head it did (`d` rounded down to
    /// whole vectors).
    ///
    /// # Safety
    /// `values` holds the `n` rows of `d` floats `stride` apart; AVX-512F present.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn add_weighted_rows512<const H: usize>(
        out: &mut [f32],
        weights: &[f32],
        values: &[f32],
        stride: usize,
    ) -> usize {
        const L: usize = AVX512_LANES;
        let d = out.len() / H;
        let mut j0 = 0;
        while j0 + L <= d {
            // SAFETY: j0 + R * L <= d in each call (the caller's contract for the rest).
            j0 += unsafe {
                match (d - j0) / L {
                    8.. => weighted_pass::<H, 8>(out, j0, weights, values, stride),
                    4..=7 => weighted_pass::<H, 4>(out, j0, weights, values, stride),
                    2 | 3 => weighted_pass::<H, 2>(out, j0, weights, values, stride),
                    _ => weighted_pass::<H, 1>(out, j0, weights, values, stride),
                }
            };
        }
        j0
    }

    /// Outputs `j0..j0 + 16 R` of each of the `H` heads (`R` a constant, so
    /// that the `H x R` sums stay in registers); returns `16 R`.
    ///
    /// # Safety
    /// As `add_weighted_rows512`, and `j0 + 16 R <= out.len() / H`.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn weighted_pass<const H: usize, const R: usize>(
        out: &mut [f32],
        j0: usize,
        weights: &[f32],
        values: &[f32],
        stride: usize,
    ) -> usize {
        const L: usize = AVX512_LANES;
        let (d, n) = (out.len() / H, weights.len() / H);
        let (o, v, w) = (out.as_mut_ptr(), values.as_ptr(), weights.as_ptr());
        // SAFETY: j0 + R * L <= d: within each head's outputs and each value
        // row; p < n: within weights and values (the caller's contract).
        unsafe {
            // acc[r][g]: vector r of head g's outputs.
            let mut acc: [[__m512; H]; R] =
                std::array::from_fn(|r| std::array::from_fn(|g| _mm512_loadu_ps(o.add(g * d + j0 + r * L))));
            for p in 0..n {
                let wv: [__m512; H] = std::array::from_fn(|g| _mm512_set1_ps(*w.add(g * n + p)));
                let row = v.add(p * stride + j0);
                for (r, ar) in acc.iter_mut().enumerate() {
                    let x = _mm512_loadu_ps(row.add(r * L));
                    for (a, w) in ar.iter_mut().zip(&wv) {
                        *a = _mm512_add_ps(*a, _mm512_mul_ps(*w, x));
                    }
                }
            }
            for (r, ar) in acc.iter().enumerate() {
                for (g, a) in ar.iter().enumerate() {
                    _mm512_storeu_ps(o.add(g * d + j0 + r * L), *a);
                }
            }
        }
        R * L
    }

    /// `add_weighted_rows` for one head with AVX2, 8 vectors of outputs in
    /// registers at a time; returns how many outputs it did (whole vectors).
    ///
    /// # Safety
    /// `values` holds the `weights.len()` rows of `out.len()` floats
    /// `stride` apart; AVX2 present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn add_weighted_rows256(
        out: &mut [f32],
        weights: &[f32],
        values: &[f32],
        stride: usize,
    ) -> usize {
        const L: usize = AVX2_LANES;
        const REGS: usize = 8;
        let (o, v) = (out.as_mut_ptr(), values.as_ptr());
        let mut j0 = 0;
        while j0 + L <= out.len() {
            let regs = ((out.len() - j0) / L).min(REGS);
            // SAFETY (block): j0 + regs * L <= out.len(); rows within values (caller).
            unsafe {
                let mut acc = [_mm256_setzero_ps(); REGS];
                for (r, a) in acc.iter_mut().enumerate().take(regs) {
                    *a = _mm256_loadu_ps(o.add(j0 + r * L));
                }
                for (p, &w) in weights.iter().enumerate() {
                    let wv = _mm256_set1_ps(w);
                    let row = v.add(p * stride + j0);
                    for (r, a) in acc.iter_mut().enumerate().take(regs) {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, _mm256_loadu_ps(row.add(r * L))));
                    }
                }
                for (r, a) in acc.iter().enumerate().take(regs) {
                    _mm256_storeu_ps(o.add(j0 + r * L), *a);
                }
            }
            j0 += regs * L;
        }
        j0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kernels::test_values;

    /// Scores of many heads and keys at once: each the bits of `dot` on its
    /// head and key alone, on every ISA, for head sizes with and without the
    /// vector tiles, 1-7 heads (whole passes of three and the rest), 0-9 keys.
    #[test]
    fn scores_of_many_heads_and_keys_are_the_bits_of_one_dot_each() {
        let scales = [1e-2, 1.0, 50.0];
        for isa in Isa::supported() {
            for d in [8, 32, 37, 64, 128, 160] {
                // Keys side by side (as in the KV cache) and further apart.
                for stride in [d, 3 * d + 4] {
                    for heads in 1..=7 {
                        for n in 0..10 {
                            let qs = test_values::mixed((d * 10 + heads) as u64, heads * d, &scales);
                            // Exactly as many floats as the last key needs.
                            let len = (n.max(1) - 1) * stride + d;
                            let keys = test_values::mixed(n as u64 + 100, len, &scales);
                            let mut got = vec![f32::NAN; heads * n];
                            dots_on(isa, heads, &qs, &keys, stride, &mut got);
                            for (i, g) in got.iter().enumerate() {
                                let (h, p) = (i / n, i % n);
                                let key = &keys[p * stride..p * stride + d];
                                let want = dot_on(isa, &qs[h * d..(h + 1) * d], key);
                                assert_eq!(
                                    g.to_bits(),
                                    want.to_bits(),
                                    "{isa:?}, d {d}, stride {stride}, head {h} of {heads}, key {p} of {n}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A stride so large that the last key's end would wrap around is
    /// refused, not read through.
    #[test]
    #[should_panic(expected = "cannot hold")]
    fn keys_whose_end_wraps_are_refused() {
        let (q, keys) = ([1f32; 32], [1f32; 64]);
        let mut out = [0f32; 3];
        dots(1, &q, &keys, usize::MAX / 2 + 1, &mut out);
    }

    /// Weighted values of many heads at once: every vector path gives each
    /// head the bits of the scalar loop (a multiply, then an add, position
    /// by position), for head sizes with and without a partial vector and
    /// more than one pass of registers, 1-7 heads.
    #[test]
    fn weighted_rows_of_many_heads_are_the_bits_of_the_scalar_loop() {
        let scales = [1e-2, 1.0, 50.0];
        // 112 = 4 + 2 + 1 vectors of 16, 48 = 2 + 1: every register pass.
        for d in [1, 37, 48, 64, 112, 128, 200, 300] {
            for heads in 1..=7 {
                for n in [0, 1, 7, 65] {
                    let stride = d * 3 + 5;
                    // Exactly as many values as the last row needs.
                    let values = test_values::mixed(d as u64, (n.max(1) - 1) * stride + d, &scales);
                    let weights = test_values::mixed(n as u64 + 7, heads * n, &[1.0]);
                    let start = test_values::mixed(heads as u64, heads * d, &scales);
                    let mut want = start.clone();
                    for (o, w) in want.chunks_exact_mut(d).zip(weights.chunks_exact(n.max(1))) {
                        add_weighted_rows_generic(o, &w[..n], &values, stride);
                    }
                    for isa in Isa::supported() {
                        let mut got = start.clone();
                        add_weighted_rows_on(isa, heads, &mut got, &weights, &values, stride);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&got), bits(&want), "{isa:?} d={d} heads={heads} n={n}");
                    }
                }
            }
        }
    }
}
