//! The conversion cache: one converted checkpoint per (source model, dtype,
//! tp, pp) under `checkpoints/` of the cache root, reused while its
//! conversion manifest says the source files and options are unchanged.
//! `run`, `check` and `build` all go through [`lookup`] and [`ensure`], so
//! each reuses the others' conversions; [`ensure`] also records when an
//! entry was last used. [`list`], [`remove`] and [`prune`] manage it
//! (`trtllm-minitron cache`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{CheckedSource, ConvertOptions, ConvertReport, convert_checked};
use crate::error::{Error, IoContext, Result};
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
    let report = match entry.stale {
        None => None,
        Some(_) => {
            let options = ConvertOptions {
                dtype: Some(entry.options.dtype),
                parallelism: entry.options.parallelism(),
                force: true,
                jobs: ConvertOptions::default_jobs(),
            };
            Some(convert_checked(checked, &entry.dir, &options, progress, stop)?)
        }
    };
    mark_used(&entry.dir);
    Ok(report)
}

/// The file whose modification time says when an entry was last used.
pub const LAST_USED_FILE: &str = ".last-used";

/// Records that `dir` was used now (best effort: a read-only cache stays usable).
fn mark_used(dir: &Path) {
    let _ = std::fs::File::create(dir.join(LAST_USED_FILE)).and_then(|f| f.set_modified(SystemTime::now()));
}

/// The directory the entries live in.
pub fn entries_dir() -> PathBuf {
    cache_root().join("checkpoints")
}

/// One directory of the cache, as `cache list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CachedConversion {
    /// Its directory's name under `checkpoints/`: what `cache rm` takes.
    pub name: String,
    pub dir: PathBuf,
    /// The model it was converted from (from its conversion manifest).
    pub source: Option<PathBuf>,
    pub hub_id: Option<String>,
    pub options: Option<ConversionOptions>,
    pub bytes: u64,
    /// When a command last used it (else when it was made).
    pub last_used_unix: Option<u64>,
    #[serde(flatten)]
    pub status: EntryStatus,
}

/// Whether an entry is worth keeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum EntryStatus {
    /// Its source is unchanged: commands reuse it.
    Fresh,
    /// Its source changed: the next use converts again.
    Stale { why: String },
    /// Its source directory is gone: nothing will use it again.
    Orphaned,
    /// A conversion writing it now (its process is running).
    InProgress { pid: u32 },
    /// Not a usable conversion: left by a conversion that was killed, or
    /// without a readable manifest.
    Broken { why: String },
}

impl EntryStatus {
    pub fn label(&self) -> &'static str {
        match self {
            EntryStatus::Fresh => "fresh",
            EntryStatus::Stale { .. } => "stale",
            EntryStatus::Orphaned => "orphaned",
            EntryStatus::InProgress { .. } => "in progress",
            EntryStatus::Broken { .. } => "broken",
        }
    }
}

/// Every entry of the cache, sorted by name.
pub fn list() -> Result<Vec<CachedConversion>> {
    let dir = entries_dir();
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for item in std::fs::read_dir(&dir).at(&dir)? {
        let path = item.at(&dir)?.path();
        if path.is_dir() {
            entries.push(describe(&path)?);
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn describe(dir: &Path) -> Result<CachedConversion> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = ConversionManifest::read(dir);
    let status = match (staging_pid(&name), &manifest) {
        (Some(pid), _) if Path::new("/proc").join(pid.to_string()).exists() => {
            EntryStatus::InProgress { pid }
        }
        (Some(_), _) => EntryStatus::Broken {
            why: "left by a conversion that did not finish".into(),
        },
        (None, Err(e)) => EntryStatus::Broken {
            why: format!("no readable conversion manifest ({e})"),
        },
        (None, Ok(m)) if !m.source.dir.is_dir() => EntryStatus::Orphaned,
        (None, Ok(m)) => match m.staleness(&m.source.dir, m.options) {
            None => EntryStatus::Fresh,
            Some(why) => EntryStatus::Stale { why },
        },
    };
    let manifest = manifest.ok();
    let modified = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    Ok(CachedConversion {
        bytes: directory_bytes(dir)?,
        last_used_unix: modified(&dir.join(LAST_USED_FILE)).or(manifest.as_ref().map(|m| m.created_unix)),
        source: manifest.as_ref().map(|m| m.source.dir.clone()),
        hub_id: manifest.as_ref().and_then(|m| m.source.hub_id.clone()),
        options: manifest.as_ref().map(|m| m.options),
        dir: dir.to_path_buf(),
        name,
        status,
    })
}

/// The process id in a staging directory's name (`.NAME.partial-PID-NANOS`, see `staging`).
fn staging_pid(name: &str) -> Option<u32> {
    let rest = &name[name.find(".partial-")? + ".partial-".len()..];
    rest.split('-').next()?.parse().ok()
}

fn directory_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for item in std::fs::read_dir(dir).at(dir)? {
        let path = item.at(dir)?.path();
        let meta = std::fs::symlink_metadata(&path).at(&path)?;
        total += if meta.is_dir() {
            directory_bytes(&path)?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Removes an entry (never one being written).
fn delete(entry: &CachedConversion) -> Result<()> {
    if let EntryStatus::InProgress { pid } = entry.status {
        return Err(Error::InvalidInput(format!(
            "{}: a conversion (process {pid}) is writing it; it is not removed",
            entry.dir.display()
        )));
    }
    std::fs::remove_dir_all(&entry.dir).at(&entry.dir)
}

/// What `cache rm` is given: entry names as listed, or a model (its
/// directory or hub id) whose every conversion goes.
pub fn remove(targets: &[String], all: bool) -> Result<Vec<CachedConversion>> {
    let entries = list()?;
    let mut chosen: Vec<CachedConversion> = Vec::new();
    if all {
        chosen.extend(
            entries
                .iter()
                .filter(|e| !matches!(e.status, EntryStatus::InProgress { .. }))
                .cloned(),
        );
    }
    for target in targets {
        let as_dir = std::fs::canonicalize(target).ok();
        let matching: Vec<&CachedConversion> = entries
            .iter()
            .filter(|e| {
                e.name == *target
                    || e.hub_id.as_deref() == Some(target.as_str())
                    || (as_dir.is_some() && e.source.as_ref() == as_dir.as_ref())
            })
            .collect();
        if matching.is_empty() {
            return Err(Error::InvalidInput(format!(
                "no cache entry is named {target} or was converted from it (`trtllm-minitron cache list` shows them)"
            )));
        }
        chosen.extend(matching.into_iter().cloned());
    }
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    chosen.dedup_by(|a, b| a.name == b.name);
    for entry in &chosen {
        delete(entry)?;
    }
    Ok(chosen)
}

/// An entry `prune` removes, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    #[serde(flatten)]
    pub entry: CachedConversion,
    pub reason: String,
}

/// Removes what nothing will reuse: orphaned, stale and broken entries, and
/// with `older_than` also entries not used for that long. `dry_run` removes
/// nothing and returns what would go.
pub fn prune(older_than: Option<Duration>, dry_run: bool) -> Result<Vec<Pruned>> {
    let now = SystemTime::now();
    let mut pruned = Vec::new();
    for entry in list()? {
        let idle = entry.last_used_unix.map(|t| {
            now.duration_since(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
                .unwrap_or_default()
        });
        let reason = match &entry.status {
            EntryStatus::InProgress { .. } => continue,
            EntryStatus::Orphaned => "its source is gone".to_string(),
            EntryStatus::Stale { why } => format!("stale: {why}"),
            EntryStatus::Broken { why } => format!("broken: {why}"),
            EntryStatus::Fresh => match (older_than, idle) {
                (Some(limit), Some(idle)) if idle > limit => format!(
                    "not used for {}",
                    humantime::format_duration(Duration::from_secs(idle.as_secs()))
                ),
                _ => continue,
            },
        };
        if !dry_run {
            delete(&entry)?;
        }
        pruned.push(Pruned { entry, reason });
    }
    Ok(pruned)
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
