//! The conversion manifest written beside a converted checkpoint: what made it
//! (tool version, options) and from what (source files with sizes and mtimes),
//! so later commands can tell whether it is stale.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DType;
use crate::error::{Error, IoContext, Result};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionOptions {
    pub dtype: DType,
    pub tp_size: usize,
    pub pp_size: usize,
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
        let path = checkpoint_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).at(&path)?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
    }

    pub fn write(&self, checkpoint_dir: &Path) -> Result<()> {
        let path = checkpoint_dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text + "\n").at(&path)
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
