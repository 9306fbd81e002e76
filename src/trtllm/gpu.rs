//! The GPUs of this machine, from
//! `nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader`
//! (`compute_cap` needs a driver from 2022 or later). `TRTLLM_MINITRON_NVIDIA_SMI`
//! names the program to run instead of `nvidia-smi` on PATH.

use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::engine_build::profile::parse_arch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    /// As nvidia-smi prints it, e.g. `8.0`.
    pub compute_capability: String,
    /// `sm80`: what an engine built on this GPU runs on.
    pub sm: String,
    pub memory_mib: Option<u64>,
}

pub const QUERY: [&str; 2] = [
    "--query-gpu=name,compute_cap,memory.total",
    "--format=csv,noheader",
];

/// The GPUs found, or why none were.
pub fn detect() -> Result<Vec<Gpu>, String> {
    let program = std::env::var_os("TRTLLM_MINITRON_NVIDIA_SMI")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nvidia-smi"));
    let out = Command::new(&program)
        .args(QUERY)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let said = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Err(format!(
            "{} failed ({}): {}",
            program.display(),
            out.status,
            said.trim()
        ));
    }
    let gpus = parse(&stdout);
    if gpus.is_empty() {
        return Err(format!("{} lists no GPU: {}", program.display(), stdout.trim()));
    }
    Ok(gpus)
}

/// One GPU per line: `NVIDIA A100-SXM4-80GB, 8.0, 81920 MiB`. Lines that are
/// not of that form (e.g. "No devices were found") are skipped.
pub fn parse(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            // The name may hold commas; the last two fields never do.
            let mut fields = line.rsplitn(3, ',').map(str::trim);
            let memory = fields.next()?;
            let cc = fields.next()?;
            let name = fields.next()?;
            let sm = parse_arch(cc)?;
            Some((name.to_string(), cc.to_string(), sm, memory))
        })
        .enumerate()
        .map(|(index, (name, compute_capability, sm, memory))| Gpu {
            index,
            name,
            compute_capability,
            sm,
            memory_mib: memory.trim_end_matches("MiB").trim().parse().ok(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_lines() {
        let gpus = parse("NVIDIA A100-SXM4-80GB, 8.0, 81920 MiB\nNVIDIA H100 80GB HBM3, 9.0, [N/A]\n");
        assert_eq!(gpus.len(), 2);
        assert_eq!((gpus[0].sm.as_str(), gpus[0].memory_mib), ("sm80", Some(81920)));
        assert_eq!(
            (gpus[1].index, gpus[1].sm.as_str(), gpus[1].memory_mib),
            (1, "sm90", None)
        );
        assert!(parse("No devices were found\n").is_empty());
    }
}
