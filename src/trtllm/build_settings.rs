//! The settings an engine is built with: an engine profile after its
//! defaults, command-line overrides and checks (`engine_build::profile`),
//! as the build manifest records them.

use serde::{Deserialize, Serialize};

use crate::DType;
use crate::trtllm::mapping::Parallelism;

/// A fully resolved, checked profile: what the engine is built with. Two
/// builds with equal settings (and checkpoint, versions, GPU) give the same engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSettings {
    /// As written (hub id or path); the resolved directory is in the manifest.
    pub model: String,
    pub dtype: DType,
    pub tp: usize,
    pub pp: usize,
    pub workers: usize,
    pub target_arch: Option<String>,
    pub max_batch_size: usize,
    pub max_input_len: usize,
    pub max_seq_len: usize,
    pub max_num_tokens: usize,
    pub max_beam_width: usize,
    pub gemm_plugin: String,
    pub gpt_attention_plugin: String,
    pub paged_kv_cache: bool,
    pub tokens_per_block: usize,
    pub context_fmha: bool,
    pub paged_context_fmha: bool,
    pub gather_context_logits: bool,
    pub gather_generation_logits: bool,
    pub extra_flags: Vec<String>,
}

impl BuildSettings {
    pub fn parallelism(&self) -> Parallelism {
        Parallelism {
            tp: self.tp,
            pp: self.pp,
        }
    }

    pub fn world_size(&self) -> usize {
        self.tp * self.pp
    }

    /// The keys whose values differ from `other`, for "rebuilding because ..." messages.
    pub fn changed_keys(&self, other: &BuildSettings) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        a.iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k} {} -> {v}", b.get(k.as_str()).cloned().unwrap_or_default()))
            .collect()
    }
}
