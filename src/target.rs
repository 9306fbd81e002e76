//! What `--model` names for `run`: a TensorRT-LLM checkpoint (used as is), an
//! engine directory, or a Hugging Face model (directory or cached hub id),
//! converted once into a cache directory keyed by source and options and
//! reused while its manifest says it is fresh.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use crate::DType;
use crate::convert::{ConvertOptions, convert, open_source};
use crate::error::{Error, IoContext, Result};
use crate::hf::source::{self, ModelSource};
use crate::progress::Progress;
use crate::trtllm::config::ConfigKind;
use crate::trtllm::conversion_manifest::{ConversionManifest, ConversionOptions};
use crate::trtllm::mapping::Parallelism;

#[derive(Debug, Clone, PartialEq)]
pub enum RunTarget {
    Checkpoint(PathBuf),
    Engine(PathBuf),
}

/// What a directory's config.json says it is.
fn kind_of(dir: &Path) -> Result<ConfigKind> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).at(&path)?;
    let v: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    Ok(ConfigKind::of(&v))
}

/// The cache root: `TRTLLM_MINITRON_CACHE`, else `$XDG_CACHE_HOME/trtllm-minitron`,
/// else `~/.cache/trtllm-minitron`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRTLLM_MINITRON_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("trtllm-minitron")
}

/// FNV-1a offset basis: the starting value of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `h`: stable across Rust releases (std's hasher is
/// not), for cache directory names and fingerprints.
pub fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The conversion cache directory for (source, dtype, tp, pp), shared by `run`
/// and `build` so either reuses the other's conversion.
pub fn cache_dir_for(src: &ModelSource, dtype: DType, par: Parallelism) -> Result<PathBuf> {
    let canonical = std::fs::canonicalize(&src.dir).at(&src.dir)?;
    let key = format!("{}|{}|tp{}|pp{}", canonical.display(), dtype, par.tp, par.pp);
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(cache_root()
        .join("checkpoints")
        .join(format!("{name}-{:016x}", fnv1a(FNV_OFFSET, key.as_bytes()))))
}

pub fn resolve(spec: &str, progress: &dyn Progress, stop: &AtomicBool) -> Result<RunTarget> {
    let src = source::resolve(spec)?;
    match kind_of(&src.dir)? {
        ConfigKind::Checkpoint => Ok(RunTarget::Checkpoint(src.dir)),
        ConfigKind::Engine => Ok(RunTarget::Engine(src.dir)),
        // Anything else is read as a Hugging Face config, whose parser names what is wrong.
        ConfigKind::HuggingFace | ConfigKind::Unknown => {
            converted_checkpoint(&src, progress, stop).map(RunTarget::Checkpoint)
        }
    }
}

/// The cached conversion of a Hugging Face model in its own dtype (tp=1, pp=1),
/// made or refreshed as needed.
fn converted_checkpoint(src: &ModelSource, progress: &dyn Progress, stop: &AtomicBool) -> Result<PathBuf> {
    let checked = open_source(src)?;
    let options = ConversionOptions {
        dtype: checked.dtype,
        tp_size: 1,
        pp_size: 1,
    };
    let dir = cache_dir_for(src, checked.dtype, Parallelism { tp: 1, pp: 1 })?;
    if let Ok(manifest) = ConversionManifest::read(&dir)
        && manifest.staleness(&src.dir, options).is_none()
    {
        return Ok(dir);
    }
    drop(checked);
    let opts = ConvertOptions {
        dtype: None,
        parallelism: Parallelism { tp: 1, pp: 1 },
        force: true,
        jobs: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
    };
    convert(src, &dir, &opts, progress, stop)?;
    Ok(dir)
}
