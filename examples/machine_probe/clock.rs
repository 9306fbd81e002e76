//! The core clock under load, measured: a chain of dependent integer adds runs
//! at one add per cycle on every x86 core, so adds / seconds = cycles / second.
//! (/proc/cpuinfo's "cpu MHz" is the nominal clock under a hypervisor, not the
//! boost clock the cores really run at.)

use std::time::Instant;

/// Dependent adds per loop iteration (the loop counter runs beside them).
#[cfg(target_arch = "x86_64")]
const CHAIN: u64 = 16;

/// Cycles per second of the calling thread, best of a few runs of ~0.2 s.
#[cfg(target_arch = "x86_64")]
pub fn measure_hz() -> Option<f64> {
    let iters: u64 = 50_000_000;
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let t = Instant::now();
        // SAFETY: pure register arithmetic, no memory access.
        unsafe {
            std::arch::asm!(
                "2:",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                x = inout(reg) 0u64 => _,
                options(nomem, nostack),
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Some((iters * CHAIN) as f64 / best)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn measure_hz() -> Option<f64> {
    None
}

/// "cpu MHz" of the first processor in /proc/cpuinfo, for comparison.
pub fn cpuinfo_mhz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}
