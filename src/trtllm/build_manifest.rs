//! The build manifest written into every engine directory: which profile,
//! checkpoint, tools and GPU made the engine, the exact `trtllm-build` command,
//! and how long it took. `build` compares it to decide "up to date"; `run` and
//! the Executor bridge can use [`BuildManifest::check_runtime`] to refuse an
//! engine made for another GPU architecture or TensorRT-LLM version before
//! loading it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gpu::Gpu;
use crate::engine_build::flags;
use crate::engine_build::profile::Profile;
use crate::engine_build::toolchain::Toolchain;
use crate::error::Result;
use crate::json_file;
use crate::trtllm::conversion_manifest::FileRecord;
use crate::trtllm::fingerprint::CheckpointRecord;

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
    pub settings: Profile,
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
    /// The exact command that ran, program first (its --output_dir is the
    /// staging directory that was then renamed into place).
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

    /// The builder arguments with the staging directory masked.
    pub fn comparable_args(&self) -> Vec<String> {
        flags::without_output_dir(self.command.get(1..).unwrap_or_default())
    }

    /// Why the engine in `engine_dir` (made per this manifest) is not what a
    /// build with these inputs would make now; `None` when it is up to date.
    pub fn staleness(&self, engine_dir: &Path, now: &Wanted) -> Option<String> {
        if self.profile.settings != *now.profile {
            let changed = now.profile.changed_keys(&self.profile.settings);
            return Some(format!("the profile changed ({})", changed.join(", ")));
        }
        if self.checkpoint.fingerprint != now.checkpoint.fingerprint {
            return Some(format!(
                "the checkpoint {} changed (fingerprint {} -> {})",
                now.checkpoint.dir.display(),
                self.checkpoint.fingerprint,
                now.checkpoint.fingerprint
            ));
        }
        let (was, is) = (&self.toolchain, now.toolchain);
        if was.tensorrt_llm_version != is.tensorrt_llm_version {
            return Some(format!(
                "TensorRT-LLM changed ({} -> {})",
                was.tensorrt_llm_version, is.tensorrt_llm_version
            ));
        }
        if was.tensorrt_version != is.tensorrt_version {
            return Some(format!(
                "TensorRT changed ({} -> {})",
                was.tensorrt_version, is.tensorrt_version
            ));
        }
        if self.gpu.sm != now.gpu.sm {
            return Some(format!(
                "the GPU architecture changed (built on {} for {}, this machine has {} {})",
                self.gpu.name, self.gpu.sm, now.gpu.name, now.gpu.sm
            ));
        }
        if self.comparable_args() != flags::without_output_dir(now.args) {
            return Some("the trtllm-build command changed".into());
        }
        for recorded in &self.engine_files {
            match FileRecord::of(engine_dir, &recorded.name) {
                Ok(f) if f.bytes == recorded.bytes => {}
                Ok(_) => return Some(format!("{} was modified", recorded.name)),
                Err(_) => return Some(format!("{} is missing", recorded.name)),
            }
        }
        None
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

/// What a build would use now, to compare with a manifest.
pub struct Wanted<'a> {
    pub profile: &'a Profile,
    pub checkpoint: &'a CheckpointRecord,
    pub toolchain: &'a Toolchain,
    pub gpu: &'a Gpu,
    pub args: &'a [String],
}
