//! This machine's ceilings, for scripts/bench-run and scripts/bench-peers:
//!
//! - memory bandwidth: T threads streaming a file-backed mapping whose pages
//!   are in the page cache (as the runtime maps its weights), and anonymous
//!   memory;
//! - the f32 FMA peak: cores x FMA instructions per cycle x f32 lanes x 2
//!   flops x clock, each part measured or read and stated in the output;
//! - our own kernels next to them, on the runtime's thread pool: the
//!   multi-token product (prefill), the one-token product streaming the
//!   mapping (decode), and the attention dot product.
//!
//! machine_probe [--threads 1,2] [--gib 2] [--file PATH | --dir DIR] [--json]

mod clock;
mod fma;
mod ours;
mod stream;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use serde_json::json;
use trtllm_minitron::runtime::kernels::Isa;
use trtllm_minitron::runtime::pool::Pool;

#[derive(Parser)]
#[command(about = "Measure memory bandwidth and the FMA peak of this machine")]
struct Args {
    /// Thread counts to measure, comma-separated [default: 1 up to the CPUs available].
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Buffer size in GiB (far larger than the caches).
    #[arg(long, default_value_t = 2)]
    gib: usize,
    /// Map this file (e.g. a checkpoint's rank file, read once beforehand so it is
    /// in the page cache) instead of writing a temporary one.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Where the temporary file goes [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = if args.threads.is_empty() {
        (1..=cpus).collect()
    } else {
        args.threads.clone()
    };
    anyhow::ensure!(
        threads.iter().all(|&t| t >= 1),
        "--threads: every count must be >= 1"
    );
    let bytes = args.gib << 30;
    anyhow::ensure!(bytes > 0, "--gib must be >= 1");

    // The file-backed mapping: the given file, or a temporary one written now.
    let (map, source) = match &args.file {
        Some(path) => {
            let file = File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            // SAFETY: read-only map of a file nobody writes while we read it.
            let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }?;
            (map, path.display().to_string())
        }
        None => {
            let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
            // Normal bf16 values (no denormals, which would time the FPU's slow path).
            let block: Vec<u8> = (0..64 << 20)
                .map(|i| if i % 2 == 1 { 0x3c } else { (i % 251) as u8 })
                .collect();
            for _ in 0..bytes.div_ceil(block.len()) {
                tmp.write_all(&block)?;
            }
            // Written back now, so that writeback does not run during the timing.
            tmp.as_file().sync_all()?;
            // SAFETY: read-only map of our own temporary file.
            let map = unsafe { memmap2::MmapOptions::new().populate().map(tmp.as_file()) }?;
            (
                map,
                format!("a {} GiB temporary file in {}", args.gib, dir.display()),
            )
        }
    };
    let mapped = &map[..bytes.min(map.len())];
    let anon: Vec<u8> = mapped.to_vec();

    let hz = clock::measure_hz();
    let widths = fma::widths();
    let per_cycle: BTreeMap<u32, f64> = widths
        .iter()
        .filter_map(|&w| hz.map(|hz| (w, fma::fmas_per_second(w) / hz)))
        .collect();
    // The width that does the most f32 lanes per cycle on one core.
    let (best_width, best_rate) = per_cycle
        .iter()
        .map(|(&w, &r)| (w, r))
        .max_by(|a, b| (f64::from(a.0) * a.1).total_cmp(&(f64::from(b.0) * b.1)))
        .unwrap_or((0, 0.0));
    let lanes = best_width / 32;
    // Whole FMA instructions per cycle: the measured rate is a little under
    // the issue rate (loop overhead, timer).
    let units = best_rate.round().max(1.0);

    let mut peak = BTreeMap::new();
    let mut file_bw = BTreeMap::new();
    let mut anon_bw = BTreeMap::new();
    let mut gemm = BTreeMap::new();
    let mut gemv = BTreeMap::new();
    for &t in &threads {
        let cores = t.min(cpus);
        peak.insert(
            t.to_string(),
            hz.map_or(0.0, |hz| cores as f64 * units * f64::from(lanes) * 2.0 * hz / 1e9),
        );
        file_bw.insert(t.to_string(), stream::read_bytes_per_second(mapped, t, 5) / 1e9);
        anon_bw.insert(t.to_string(), stream::read_bytes_per_second(&anon, t, 5) / 1e9);
        let pool = Pool::new(t);
        gemm.insert(t.to_string(), ours::gemm_gflops(&pool));
        gemv.insert(t.to_string(), ours::gemv_bytes_per_second(&pool, mapped) / 1e9);
    }

    let dot = ours::dot_gflops();

    let model_name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let ghz = hz.unwrap_or(0.0) / 1e9;
    let fmt = |m: &BTreeMap<String, f64>, unit: &str| {
        m.iter()
            .map(|(t, v)| format!("{v:.1} {unit} at {t}t"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary = format!(
        "bandwidth (file mapping) {}; anonymous {}; f32 FMA peak {} = cores x {units} FMA/cycle \
         (measured at {best_width} bits) x {lanes} lanes x 2 x {ghz:.2} GHz (measured); \
         our kernels ({:?}): prefill product {}, decode product {}, attention dot {:.1} GFLOP/s at 1t",
        fmt(&file_bw, "GB/s"),
        fmt(&anon_bw, "GB/s"),
        fmt(&peak, "GFLOP/s"),
        Isa::get(),
        fmt(&gemm, "GFLOP/s"),
        fmt(&gemv, "GB/s"),
        dot,
    );
    let report = json!({
        "threads": threads,
        "cpus": cpus,
        "model_name": model_name,
        "clock_ghz": ghz,
        "clock_source": "measured: a chain of dependent integer adds (one per cycle)",
        "cpuinfo_mhz": clock::cpuinfo_mhz(),
        "fma_per_cycle_by_width": per_cycle.iter().map(|(w, r)| (w.to_string(), *r)).collect::<BTreeMap<_, _>>(),
        "fma_units": units,
        "f32_lanes": lanes,
        "lanes_source": format!("widest FMA width per cycle among {:?} bits (CPU flags fma/avx512f)", widths),
        "fma_peak_gflops": peak,
        "bandwidth_gb_s": file_bw,
        "bandwidth_source": source,
        "anon_gb_s": anon_bw,
        "buffer_gib": mapped.len() as f64 / f64::from(1u32 << 30),
        "our_isa": format!("{:?}", Isa::get()),
        "our_prefill_product_gflops": gemm,
        "our_decode_product_gb_s": gemv,
        "our_attention_dot_gflops": dot,
        "summary": summary,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{summary}");
    }
    Ok(())
}
