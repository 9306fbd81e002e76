//! The build manifest written into every engine directory: which profile,
//! checkpoint, tools and GPU made the engine, the exact `trtllm-build` command,
//! and how long it took. `build` compares it to decide "up to date"
//! (`engine_build::up_to_date`); the Executor backend uses
//! [`BuildManifest::check_runtime`] to refuse an engine made for another GPU
//! architecture or TensorRT-LLM version before loading it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::build_settings::BuildSettings;
use super::conversion_manifest::FileRecord;
use super::fingerprint::CheckpointRecord;
use super::gpu::Gpu;
use crate::error::Result;
use crate::json_file;

pub const BUILD_MANIFEST_FILE: &str = "trtllm-minitron-build.json";
/// trtllm-build's output, kept beside the engine.
pub const BUILD_LOG_FILE: &str = "build.log";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRecord {
    /// The profile file's stem, or a name made from the model for `--model` builds.
    pub name: String,
    pub file: Option<PathBuf>,
    pub description: Option<String>,
    /// Every value the engine was built with, after command-line overrides.
    pub settings: BuildSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub spec: String,
    pub dir: PathBuf,
    pub hub_id: Option<String>,
    pub revision: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub convert_seconds: Option<f64>,
    pub build_seconds: f64,
    pub validate_seconds: f64,
    pub total_seconds: f64,
}

/// The builder program and what it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toolchain {
    pub trtllm_build: PathBuf,
    pub python: PathBuf,
    pub tensorrt_llm_version: String,
    pub tensorrt_version: String,
    /// Where the `tensorrt_llm` package was found.
    pub tensorrt_llm_location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildManifest {
    pub tool: String,
    pub tool_version: String,
    pub created_unix: u64,
    pub profile: ProfileRecord,
    pub model: ModelRecord,
    pub checkpoint: CheckpointRecord,
    pub toolchain: Toolchain,
    /// The GPU the engine was built on (GPU 0): the engine runs only on this SM.
    pub gpu: Gpu,
    /// The exact command that ran, program first, with --output_dir naming
    /// the engine directory (it ran into a staging directory beside it, which
    /// was renamed to that once validated).
    pub command: Vec<String>,
    pub durations: Durations,
    /// The engine files as written, to notice one deleted or replaced later.
    pub engine_files: Vec<FileRecord>,
}

impl BuildManifest {
    pub fn read(engine_dir: &Path) -> Result<Self> {
        json_file::read(&engine_dir.join(BUILD_MANIFEST_FILE))
    }

    pub fn write(&self, engine_dir: &Path) -> Result<()> {
        json_file::write(&engine_dir.join(BUILD_MANIFEST_FILE), self)
    }

    /// Refuses to load this engine on GPU architecture `sm` (e.g. "sm80") or
    /// with TensorRT-LLM `trtllm_version`: TensorRT engines only load on the
    /// architecture and exact version that built them.
    pub fn check_runtime(&self, sm: &str, trtllm_version: &str) -> std::result::Result<(), String> {
        if self.gpu.sm != sm {
            return Err(format!(
                "this engine was built on {} ({}); it cannot run on {sm}: rebuild it on this machine with `trtllm-minitron build`",
                self.gpu.name, self.gpu.sm
            ));
        }
        if self.toolchain.tensorrt_llm_version != trtllm_version {
            return Err(format!(
                "this engine was built by TensorRT-LLM {} (TensorRT {}); this runtime is TensorRT-LLM {trtllm_version}: rebuild it with `trtllm-minitron build`",
                self.toolchain.tensorrt_llm_version, self.toolchain.tensorrt_version
            ));
        }
        Ok(())
    }
}
