//! The x86 kernels of `dot_order`: AVX-512 (16 lanes) and AVX2+FMA+F16C (8).
//! No closures inside `#[target_feature]` functions: they would not inherit
//! the features, and every intrinsic in them would become a call.

use std::arch::x86_64::*;

use super::{ROWS, reduce};
use crate::DType;
use crate::runtime::kernels::Isa;
use crate::runtime::kernels::x86::{Bf16, Elem, F16, F32};

pub fn rows(isa: Isa, data: &[u8], dtype: DType, x: &[f32], y: &mut [f32]) {
    assert!(data.len() >= y.len() * x.len() * dtype.size());
    // SAFETY: Isa::Avx512 is only chosen when the CPU has AVX-512F, AVX2, FMA
    // and F16C; Isa::Avx2 when it has the last three.
    unsafe {
        match (isa, dtype) {
            (Isa::Avx512, DType::BF16) => rows512::<Bf16>(data, x, y),
            (Isa::Avx512, DType::F16) => rows512::<F16>(data, x, y),
            (Isa::Avx512, DType::F32) => rows512::<F32>(data, x, y),
            (_, DType::BF16) => rows256::<Bf16>(data, x, y),
            (_, DType::F16) => rows256::<F16>(data, x, y),
            (_, DType::F32) => rows256::<F32>(data, x, y),
        }
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
    let (w, x, p) = (w.as_ptr(), x.as_ptr(), partial.as_mut_ptr());
    // SAFETY: sizes checked by `super::tile`; features as in `rows`.
    unsafe {
        match (isa, tokens) {
            (Isa::Avx512, 1) => tile512::<1>(kp, w, x, p, ldp, first),
            (Isa::Avx512, 2) => tile512::<2>(kp, w, x, p, ldp, first),
            (Isa::Avx512, 3) => tile512::<3>(kp, w, x, p, ldp, first),
            (Isa::Avx512, 4) => tile512::<4>(kp, w, x, p, ldp, first),
            (Isa::Avx512, 5) => tile512::<5>(kp, w, x, p, ldp, first),
            (Isa::Avx512, 6) => tile512::<6>(kp, w, x, p, ldp, first),
            (_, 1) => tile256::<1>(kp, w, x, p, ldp, first),
            (_, 2) => tile256::<2>(kp, w, x, p, ldp, first),
            _ => unreachable!("tile of {tokens} tokens"),
        }
    }
}

/// Lanes of four rows at a time; the inputs' last partial vector comes from a
/// zero-padded copy (of x, and of each row's last elements).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn rows512<E: Elem>(data: &[u8], x: &[f32], y: &mut [f32]) {
    const L: usize = 16;
    let k = x.len();
    let (full, rest) = (k / L, k % L);
    let mut x_tail = [0f32; L];
    x_tail[..rest].copy_from_slice(&x[full * L..]);
    let row_bytes = k * E::SIZE;
    let mut r0 = 0;
    while r0 < y.len() {
        let n = ROWS.min(y.len() - r0);
        let base = data[r0 * row_bytes..].as_ptr();
        let mut acc = [_mm512_setzero_ps(); ROWS];
        for v in 0..full {
            // SAFETY: inputs v*16..v*16+16 < k of x and of rows r0..r0+n.
            unsafe {
                let xv = _mm512_loadu_ps(x.as_ptr().add(v * L));
                for (r, a) in acc.iter_mut().enumerate().take(n) {
                    *a = _mm512_fmadd_ps(E::load16(base.add(r * row_bytes + v * L * E::SIZE)), xv, *a);
                }
            }
        }
        if rest > 0 {
            // SAFETY: x_tail has 16 floats.
            let xv = unsafe { _mm512_loadu_ps(x_tail.as_ptr()) };
            for (r, a) in acc.iter_mut().enumerate().take(n) {
                let mut w_tail = [0u8; L * 4];
                let start = (r0 + r) * row_bytes + full * L * E::SIZE;
                w_tail[..rest * E::SIZE].copy_from_slice(&data[start..start + rest * E::SIZE]);
                // SAFETY: w_tail holds 16 elements of any dtype.
                *a = _mm512_fmadd_ps(unsafe { E::load16(w_tail.as_ptr()) }, xv, *a);
            }
        }
        for (r, a) in acc.iter().enumerate().take(n) {
            let mut lanes = [0f32; L];
            // SAFETY: lanes has 16 floats.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
            y[r0 + r] = reduce(Isa::Avx512, &lanes);
        }
        r0 += n;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows256<E: Elem>(data: &[u8], x: &[f32], y: &mut [f32]) {
    const L: usize = 8;
    let k = x.len();
    let (full, rest) = (k / L, k % L);
    let mut x_tail = [0f32; L];
    x_tail[..rest].copy_from_slice(&x[full * L..]);
    let row_bytes = k * E::SIZE;
    let mut r0 = 0;
    while r0 < y.len() {
        let n = ROWS.min(y.len() - r0);
        let base = data[r0 * row_bytes..].as_ptr();
        let mut acc = [_mm256_setzero_ps(); ROWS];
        for v in 0..full {
            // SAFETY: inputs v*8..v*8+8 < k of x and of rows r0..r0+n.
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr().add(v * L));
                for (r, a) in acc.iter_mut().enumerate().take(n) {
                    *a = _mm256_fmadd_ps(E::load8(base.add(r * row_bytes + v * L * E::SIZE)), xv, *a);
                }
            }
        }
        if rest > 0 {
            // SAFETY: x_tail has 8 floats.
            let xv = unsafe { _mm256_loadu_ps(x_tail.as_ptr()) };
            for (r, a) in acc.iter_mut().enumerate().take(n) {
                let mut w_tail = [0u8; L * 4];
                let start = (r0 + r) * row_bytes + full * L * E::SIZE;
                w_tail[..rest * E::SIZE].copy_from_slice(&data[start..start + rest * E::SIZE]);
                // SAFETY: w_tail holds 8 elements of any dtype.
                *a = _mm256_fmadd_ps(unsafe { E::load8(w_tail.as_ptr()) }, xv, *a);
            }
        }
        for (r, a) in acc.iter().enumerate().take(n) {
            let mut lanes = [0f32; L];
            // SAFETY: lanes has 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *a) };
            y[r0 + r] = reduce(Isa::Avx2, &lanes);
        }
        r0 += n;
    }
}

/// Four packed rows x T tokens, 16 lanes each (24 accumulators at T = 6).
///
/// # Safety
/// `w`: `kp * 4` floats `[vector][row][16]`; `x`: `kp * T` floats
/// `[vector][token][16]`; `p`: T rows of 4 x 16 floats at stride `ldp`;
/// AVX-512F present.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn tile512<const T: usize>(
    kp: usize,
    w: *const f32,
    x: *const f32,
    p: *mut f32,
    ldp: usize,
    first: bool,
) {
    const L: usize = 16;
    let mut acc = [[_mm512_setzero_ps(); ROWS]; T];
    if !first {
        for (t, row) in acc.iter_mut().enumerate() {
            for (r, a) in row.iter_mut().enumerate() {
                // SAFETY: the caller's contract.
                *a = unsafe { _mm512_loadu_ps(p.add(t * ldp + r * L)) };
            }
        }
    }
    let (mut w, mut x) = (w, x);
    for _ in 0..kp / L {
        // SAFETY (block): the caller's contract; both panels are read front to back.
        unsafe {
            let wv = [
                _mm512_loadu_ps(w),
                _mm512_loadu_ps(w.add(L)),
                _mm512_loadu_ps(w.add(2 * L)),
                _mm512_loadu_ps(w.add(3 * L)),
            ];
            for (t, row) in acc.iter_mut().enumerate() {
                let xv = _mm512_loadu_ps(x.add(t * L));
                for (a, wr) in row.iter_mut().zip(wv) {
                    *a = _mm512_fmadd_ps(wr, xv, *a);
                }
            }
            w = w.add(ROWS * L);
            x = x.add(T * L);
        }
    }
    for (t, row) in acc.iter().enumerate() {
        for (r, a) in row.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { _mm512_storeu_ps(p.add(t * ldp + r * L), *a) };
        }
    }
}

/// Four packed rows x T tokens, 8 lanes each.
///
/// # Safety
/// As for `tile512` with 8 lanes; AVX2 and FMA present.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile256<const T: usize>(
    kp: usize,
    w: *const f32,
    x: *const f32,
    p: *mut f32,
    ldp: usize,
    first: bool,
) {
    const L: usize = 8;
    let mut acc = [[_mm256_setzero_ps(); ROWS]; T];
    if !first {
        for (t, row) in acc.iter_mut().enumerate() {
            for (r, a) in row.iter_mut().enumerate() {
                // SAFETY: the caller's contract.
                *a = unsafe { _mm256_loadu_ps(p.add(t * ldp + r * L)) };
            }
        }
    }
    let (mut w, mut x) = (w, x);
    for _ in 0..kp / L {
        // SAFETY (block): the caller's contract; both panels are read front to back.
        unsafe {
            let wv = [
                _mm256_loadu_ps(w),
                _mm256_loadu_ps(w.add(L)),
                _mm256_loadu_ps(w.add(2 * L)),
                _mm256_loadu_ps(w.add(3 * L)),
            ];
            for (t, row) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_ps(x.add(t * L));
                for (a, wr) in row.iter_mut().zip(wv) {
                    *a = _mm256_fmadd_ps(wr, xv, *a);
                }
            }
            w = w.add(ROWS * L);
            x = x.add(T * L);
        }
    }
    for (t, row) in acc.iter().enumerate() {
        for (r, a) in row.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { _mm256_storeu_ps(p.add(t * ldp + r * L), *a) };
        }
    }
}
