//! Whether an existing engine is what a build would make now: same settings,
//! checkpoint fingerprint, TensorRT-LLM and TensorRT versions, GPU
//! architecture, command and engine files. Then `build` leaves it alone.

use std::path::Path;

use super::flags;
use crate::trtllm::build_manifest::{BuildManifest, Toolchain};
use crate::trtllm::build_settings::BuildSettings;
use crate::trtllm::conversion_manifest::FileRecord;
use crate::trtllm::fingerprint::CheckpointRecord;
use crate::trtllm::gpu::Gpu;

/// What a build would use now, to compare with a manifest.
pub struct Wanted<'a> {
    pub settings: &'a BuildSettings,
    pub checkpoint: &'a CheckpointRecord,
    pub toolchain: &'a Toolchain,
    pub gpu: &'a Gpu,
    pub args: &'a [String],
}

/// Why the engine in `engine_dir` (made per `built`, its manifest) is not
/// what a build with these inputs would make now; `None` when it is up to date.
pub fn staleness(built: &BuildManifest, engine_dir: &Path, now: &Wanted) -> Option<String> {
    if built.profile.settings != *now.settings {
        let changed = now.settings.changed_keys(&built.profile.settings);
        return Some(format!("the profile changed ({})", changed.join(", ")));
    }
    if built.checkpoint.fingerprint != now.checkpoint.fingerprint {
        return Some(format!(
            "the checkpoint {} changed (fingerprint {} -> {})",
            now.checkpoint.dir.display(),
            built.checkpoint.fingerprint,
            now.checkpoint.fingerprint
        ));
    }
    let (was, is) = (&built.toolchain, now.toolchain);
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
    if built.gpu.sm != now.gpu.sm {
        return Some(format!(
            "the GPU architecture changed (built on {} for {}, this machine has {} {})",
            built.gpu.name, built.gpu.sm, now.gpu.name, now.gpu.sm
        ));
    }
    let built_args = built.command.get(1..).unwrap_or_default();
    if flags::without_output_dir(built_args) != flags::without_output_dir(now.args) {
        return Some("the trtllm-build command changed".into());
    }
    for recorded in &built.engine_files {
        match FileRecord::of(engine_dir, &recorded.name) {
            Ok(f) if f.bytes == recorded.bytes => {}
            Ok(_) => return Some(format!("{} was modified", recorded.name)),
            Err(_) => return Some(format!("{} is missing", recorded.name)),
        }
    }
    None
}
