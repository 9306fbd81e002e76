//! FMA issue rate per cycle, measured: twelve independent accumulators (more
//! than latency x units on any current x86 core) of register-only FMAs, per
//! vector width. Dividing FMAs/s by the measured clock gives how many FMA
//! instructions of that width a core starts per cycle, i.e. its FMA units as
//! the program sees them (Zen 4 splits a 512-bit FMA over its two 256-bit
//! units, so it shows 2 per cycle at 256 bits and 1 at 512). All registers
//! start at zero: no denormals to send any core down a slow path.

use std::time::Instant;

const ITERS: u64 = 20_000_000;
/// FMA instructions per loop iteration.
const PER_ITER: u64 = 12;

/// Vector widths (bits) this CPU can run FMAs at, per /proc/cpuinfo's flags
/// (equivalently, CPUID as std detects it).
pub fn widths() -> Vec<u32> {
    let mut w = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") {
            w.push(256);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            w.push(512);
        }
    }
    w
}

/// FMA instructions of `bits` width per second on the calling thread.
pub fn fmas_per_second(bits: u32) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        match bits {
            // SAFETY: widths() listed this width only when the CPU has it.
            256 => unsafe { fma256(ITERS) },
            512 => unsafe { fma512(ITERS) },
            _ => return 0.0,
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (ITERS * PER_ITER) as f64 / best
}

macro_rules! fma_loop {
    ($reg:literal, $iters:expr, $($clobber:tt)*) => {
        std::arch::asm!(
            concat!("vxorps ", $reg, "0, ", $reg, "0, ", $reg, "0"),
            concat!("vxorps ", $reg, "1, ", $reg, "1, ", $reg, "1"),
            concat!("vxorps ", $reg, "2, ", $reg, "2, ", $reg, "2"),
            concat!("vxorps ", $reg, "3, ", $reg, "3, ", $reg, "3"),
            concat!("vxorps ", $reg, "4, ", $reg, "4, ", $reg, "4"),
            concat!("vxorps ", $reg, "5, ", $reg, "5, ", $reg, "5"),
            concat!("vxorps ", $reg, "6, ", $reg, "6, ", $reg, "6"),
            concat!("vxorps ", $reg, "7, ", $reg, "7, ", $reg, "7"),
            concat!("vxorps ", $reg, "8, ", $reg, "8, ", $reg, "8"),
            concat!("vxorps ", $reg, "9, ", $reg, "9, ", $reg, "9"),
            concat!("vxorps ", $reg, "10, ", $reg, "10, ", $reg, "10"),
            concat!("vxorps ", $reg, "11, ", $reg, "11, ", $reg, "11"),
            concat!("vxorps ", $reg, "12, ", $reg, "12, ", $reg, "12"),
            concat!("vxorps ", $reg, "13, ", $reg, "13, ", $reg, "13"),
            "2:",
            concat!("vfmadd231ps ", $reg, "0, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "1, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "2, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "3, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "4, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "5, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "6, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "7, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "8, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "9, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "10, ", $reg, "12, ", $reg, "13"),
            concat!("vfmadd231ps ", $reg, "11, ", $reg, "12, ", $reg, "13"),
            "dec {n}",
            "jnz 2b",
            n = inout(reg) $iters => _,
            $($clobber)*
            options(nomem, nostack),
        )
    };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma256(iters: u64) {
    // SAFETY: register-only; every register written is declared clobbered.
    unsafe {
        fma_loop!("ymm", iters,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _,
            out("ymm5") _, out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _,
            out("ymm10") _, out("ymm11") _, out("ymm12") _, out("ymm13") _,
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma512(iters: u64) {
    // SAFETY: register-only; every register written is declared clobbered.
    unsafe {
        fma_loop!("zmm", iters,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _,
            out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _,
            out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _,
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn fma256(_: u64) {}
#[cfg(not(target_arch = "x86_64"))]
unsafe fn fma512(_: u64) {}
