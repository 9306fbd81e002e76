//! The GPUs of this machine, from
//! `nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader`
//! (`compute_cap` needs a driver from 2022 or later). `TRTLLM_MINITRON_NVIDIA_SMI`
//! names the program to run instead of `nvidia-smi` on PATH.

use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

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

/// `sm80`, `SM_80`, `8.0` or `80` -> `sm80`.
pub fn parse_arch(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_prefix("sm").unwrap_or(&t);
    let t = t.strip_prefix('_').unwrap_or(t);
    let digits: String = if let Some((major, minor)) = t.split_once('.') {
        if major.is_empty() || minor.len() != 1 {
            return None;
        }
        format!("{major}{minor}")
    } else {
        t.to_string()
    };
    let ok = (2..=3).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit());
    ok.then(|| format!("sm{digits}"))
}

/// GPUs people know an architecture by, for messages.
pub fn arch_examples(arch: &str) -> &'static str {
    match arch {
        "sm70" => "V100",
        "sm75" => "T4, RTX 20xx",
        "sm80" => "A100, A30",
        "sm86" => "A10, A40, RTX 30xx",
        "sm87" => "Jetson Orin",
        "sm89" => "L4, L40, RTX 40xx",
        "sm90" => "H100, H200, GH200",
        "sm100" => "B200, GB200",
        "sm103" => "B300",
        "sm120" => "RTX 50xx, RTX PRO 6000",
        _ => "other GPUs",
    }
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

    #[test]
    fn arch_spellings() {
        assert_eq!(parse_arch("sm80").as_deref(), Some("sm80"));
        assert_eq!(parse_arch("8.0").as_deref(), Some("sm80"));
        assert_eq!(parse_arch("12.0").as_deref(), Some("sm120"));
        assert_eq!(parse_arch("SM_90").as_deref(), Some("sm90"));
        assert_eq!(parse_arch("ampere"), None);
        assert_eq!(parse_arch("8.10"), None);
    }
}
