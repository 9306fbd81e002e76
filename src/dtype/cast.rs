//! Element casts between bf16/f16/f32 with round-to-nearest-even, and the
//! LayerNorm1p "+1" done in the target dtype, bit-identical to torch's
//! `w.to(dtype) + 1` (torch computes a half/bfloat16 add in f32 and rounds once).

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};

use crate::DType;

/// Elements converted per step: small enough to stay in L1, large enough for SIMD.
const BLOCK: usize = 1024;

/// Appends `src` (elements of `from`, little-endian) converted to `to`; with
/// `add_one`, each value is first rounded to `to`, then 1 is added and the sum
/// rounded to `to` again.
pub fn append_converted(src: &[u8], from: DType, to: DType, add_one: bool, out: &mut Vec<u8>) {
    if from == to && !add_one {
        out.extend_from_slice(src);
        return;
    }
    let mut values = [0f32; BLOCK];
    for block in src.chunks(BLOCK * from.size()) {
        let n = block.len() / from.size();
        let values = &mut values[..n];
        decode(block, from, values);
        if add_one {
            round_to(to, values);
            for v in values.iter_mut() {
                *v += 1.0;
            }
        }
        encode(values, to, out);
    }
}

/// Widens stored little-endian elements of `from` to f32 (exactly), any length.
pub fn decode_to_f32(bytes: &[u8], from: DType, out: &mut [f32]) {
    for (b, o) in bytes.chunks(BLOCK * from.size()).zip(out.chunks_mut(BLOCK)) {
        decode(b, from, o);
    }
}

/// Widens at most `BLOCK` elements (the f16 path uses a stack buffer of that size).
fn decode(bytes: &[u8], from: DType, out: &mut [f32]) {
    match from {
        DType::F32 => {
            for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::BF16 => {
            for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
        DType::F16 => {
            let mut bits = [0u16; BLOCK];
            let bits = &mut bits[..out.len()];
            for (v, b) in bits.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = u16::from_le_bytes([b[0], b[1]]);
            }
            let halves: &[f16] = bits.reinterpret_cast();
            halves.convert_to_f32_slice(out);
        }
    }
}

/// Rounds f32 values to the nearest value representable in `to`.
fn round_to(to: DType, values: &mut [f32]) {
    match to {
        DType::F32 => {}
        DType::BF16 => values.iter_mut().for_each(|v| *v = bf16::from_f32(*v).to_f32()),
        DType::F16 => values.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32()),
    }
}

fn encode(values: &[f32], to: DType, out: &mut Vec<u8>) {
    match to {
        DType::F32 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        DType::BF16 => {
            let mut halves = [bf16::ZERO; BLOCK];
            let halves = &mut halves[..values.len()];
            halves.convert_from_f32_slice(values);
            for h in halves.iter() {
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
        }
        DType::F16 => {
            let mut halves = [f16::ZERO; BLOCK];
            let halves = &mut halves[..values.len()];
            halves.convert_from_f32_slice(values);
            for h in halves.iter() {
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf16_bytes(v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|x| bf16::from_f32(*x).to_bits().to_le_bytes())
            .collect()
    }

    #[test]
    fn f32_to_bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        let halfway = 1.0f32 + 2f32.powi(-8);
        let above = f32::from_bits(halfway.to_bits() + 1);
        let src: Vec<u8> = [halfway, above].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        append_converted(&src, DType::F32, DType::BF16, false, &mut out);
        assert_eq!(out, bf16_bytes(&[1.0, 1.0 + 2f32.powi(-7)]));
    }

    #[test]
    fn plus_one_happens_after_the_cast() {
        // w = 2^-8 + 2^-20 becomes 2^-8 in bf16, and 1 + 2^-8 is a tie that rounds
        // to 1.0. Adding 1 in f32 first would give 1 + 2^-8 + 2^-20, which rounds
        // up to 1 + 2^-7.
        let w = 2f32.powi(-8) + 2f32.powi(-20);
        let mut out = Vec::new();
        append_converted(&w.to_le_bytes(), DType::F32, DType::BF16, true, &mut out);
        assert_eq!(out, bf16_bytes(&[1.0]));
    }

    #[test]
    fn casts_between_half_types_go_through_exact_f32() {
        let values = [0.1f32, -3.5, 65504.0, 1e-7, 1e6];
        let src = bf16_bytes(&values);
        let mut out = Vec::new();
        append_converted(&src, DType::BF16, DType::F16, false, &mut out);
        let expected: Vec<u8> = values
            .iter()
            .flat_map(|v| f16::from_f32(bf16::from_f32(*v).to_f32()).to_bits().to_le_bytes())
            .collect();
        assert_eq!(out, expected);
        // 1e6 does not fit in f16.
        assert_eq!(
            f16::from_bits(u16::from_le_bytes([out[8], out[9]])),
            f16::INFINITY
        );
    }
}
