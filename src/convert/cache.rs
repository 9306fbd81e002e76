//! The conversion cache: one converted checkpoint per (source model, dtype,
//! tp, pp) under `checkpoints/` of the cache root, reused while its
//! conversion manifest says the source files and options are unchanged.
//! `run`, `check` and `build` all go through [`lookup`] and [`ensure`], so
//! each reuses the others' conversions.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::{CheckedSource, ConvertOptions, ConvertReport, convert_checked};
use crate::error::{IoContext, Result};
use crate::hf::source::ModelSource;
use crate::progress::Progress;
use crate::trtllm::conversion_manifest::{ConversionManifest, ConversionOptions};
use crate::trtllm::fingerprint::{FNV_OFFSET, fnv1a};

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

/// One source converted with one set of options, as the cache holds it.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub dir: PathBuf,
    pub options: ConversionOptions,
    /// Why it must be (re)made; `None` when a fresh conversion is there.
    pub stale: Option<String>,
}

/// Where `src` converted with `options` lives, and whether it is fresh.
pub fn lookup(src: &ModelSource, options: ConversionOptions) -> Result<CacheEntry> {
    let dir = entry_dir(src, options)?;
    let stale = match ConversionManifest::read(&dir) {
        Err(_) => Some("no conversion with these options yet".to_string()),
        Ok(manifest) => manifest
            .staleness(&src.dir, options)
            .map(|why| format!("the cached conversion is stale: {why}")),
    };
    Ok(CacheEntry { dir, options, stale })
}

/// Converts `checked` into `entry` unless it is fresh (a stale one is replaced
/// only once the new one is complete). Returns the conversion's report when
/// one ran.
pub fn ensure(
    checked: &CheckedSource,
    entry: &CacheEntry,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<Option<ConvertReport>> {
    if entry.stale.is_none() {
        return Ok(None);
    }
    let options = ConvertOptions {
        dtype: Some(entry.options.dtype),
        parallelism: entry.options.parallelism(),
        force: true,
        jobs: ConvertOptions::default_jobs(),
    };
    convert_checked(checked, &entry.dir, &options, progress, stop).map(Some)
}

/// `checkpoints/<source dir name>-<FNV-1a of source path, dtype, tp, pp>`.
fn entry_dir(src: &ModelSource, options: ConversionOptions) -> Result<PathBuf> {
    let canonical = std::fs::canonicalize(&src.dir).at(&src.dir)?;
    let key = format!(
        "{}|{}|tp{}|pp{}",
        canonical.display(),
        options.dtype,
        options.tp_size,
        options.pp_size
    );
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(cache_root()
        .join("checkpoints")
        .join(format!("{name}-{:016x}", fnv1a(FNV_OFFSET, key.as_bytes()))))
}
