//! The conversion manifest written beside a converted checkpoint: what made it
//! (tool version, options) and from what (source files with sizes and mtimes),
//! so later commands can tell whether it is stale.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DType;
use crate::error::{IoContext, Result};
use crate::json_file;
use crate::trtllm::mapping::Parallelism;

pub const MANIFEST_FILE: &str = "trtllm-minitron-manifest.json";
pub const TOOL: &str = "trtllm-minitron";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Relative to the directory it belongs to.
    pub name: String,
    pub bytes: u64,
    pub modified_unix: Option<u64>,
}

impl FileRecord {
    pub fn of(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).at(&path)?;
        Ok(FileRecord {
            name: name.to_string(),
            bytes: meta.len(),
            modified_unix: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub dir: PathBuf,
    pub hub_id: Option<String>,
    pub revision: Option<String>,
    pub format: String,
    pub dtype: DType,
    pub files: Vec<FileRecord>,
}

/// What a checkpoint was converted with: the conversion cache's key (with the
/// source), and what a cached conversion must match to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionOptions {
    pub dtype: DType,
    pub tp_size: usize,
    pub pp_size: usize,
}

impl ConversionOptions {
    pub fn new(dtype: DType, parallelism: Parallelism) -> Self {
        ConversionOptions {
            dtype,
            tp_size: parallelism.tp,
            pp_size: parallelism.pp,
        }
    }

    pub fn parallelism(self) -> Parallelism {
        Parallelism {
            tp: self.tp_size,
            pp: self.pp_size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionManifest {
    pub tool: String,
    pub tool_version: String,
    pub created_unix: u64,
    pub source: SourceRecord,
    pub options: ConversionOptions,
    pub outputs: Vec<FileRecord>,
}

impl ConversionManifest {
    pub fn read(checkpoint_dir: &Path) -> Result<Self> {
        json_file::read(&checkpoint_dir.join(MANIFEST_FILE))
    }

    pub fn write(&self, checkpoint_dir: &Path) -> Result<()> {
        json_file::write(&checkpoint_dir.join(MANIFEST_FILE), self)
    }

    /// Why this conversion no longer matches `source_dir` converted with
    /// `options`, or `None` when it is fresh.
    pub fn staleness(&self, source_dir: &Path, options: ConversionOptions) -> Option<String> {
        if self.tool_version != env!("CARGO_PKG_VERSION") {
            return Some(format!(
                "made by {TOOL} {}, this is {}",
                self.tool_version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        if self.options != options {
            return Some(format!("options differ: {:?} vs {:?}", self.options, options));
        }
        for recorded in &self.source.files {
            match FileRecord::of(source_dir, &recorded.name) {
                Ok(now) if now == *recorded => {}
                Ok(_) => return Some(format!("source file {} changed", recorded.name)),
                Err(_) => return Some(format!("source file {} is gone", recorded.name)),
            }
        }
        None
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
