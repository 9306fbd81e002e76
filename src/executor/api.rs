//! The executor interface the router needs, as a trait, and the flat data that
//! crosses it. The real implementation is the `cxx` bridge to TensorRT-LLM's
//! `tensorrt_llm::executor::Executor` (feature `trtllm`); tests use
//! [`super::stand_in::StandInExecutor`].

use std::path::PathBuf;
use std::time::Duration;

use super::preflight::EngineInfo;

/// TensorRT-LLM's `CapacitySchedulerPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerPolicy {
    /// `kMAX_UTILIZATION`: packs as many requests as fit; may pause some.
    MaxUtilization,
    /// `kGUARANTEED_NO_EVICT` (TensorRT-LLM's default): admits a request only
    /// when its whole KV cache is guaranteed.
    GuaranteedNoEvict,
}

/// What the executor is created with (an `ExecutorConfig`, max beam width 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorOptions {
    pub engine_dir: PathBuf,
    /// Fraction of the GPU memory free after loading the engine that the KV
    /// cache may take (TensorRT-LLM's default is 0.9).
    pub free_gpu_memory_fraction: f32,
    pub enable_kv_block_reuse: bool,
    pub scheduler: SchedulerPolicy,
    /// Needed for generation logits (the engine must also be built with
    /// `--gather_generation_logits`).
    pub gather_generation_logits: bool,
}

impl ExecutorOptions {
    pub fn new(engine_dir: PathBuf) -> Self {
        ExecutorOptions {
            engine_dir,
            free_gpu_memory_fraction: 0.9,
            enable_kv_block_reuse: true,
            scheduler: SchedulerPolicy::GuaranteedNoEvict,
            gather_generation_logits: false,
        }
    }

    /// The options for an engine as `preflight` read it. Generation logits are
    /// gathered when the engine was built to gather them. KV-cache block reuse
    /// is off when the engine can return context logits: a prompt whose first
    /// blocks are reused from an earlier request is not run through the model
    /// again, so TensorRT-LLM leaves those rows of its context logits unwritten
    /// and only logs "Because of KV cache reuse, not all context logits could be
    /// produced" (batch_manager/handleContextLogits.cpp).
    pub fn for_engine(engine_dir: PathBuf, info: &EngineInfo) -> Self {
        ExecutorOptions {
            enable_kv_block_reuse: !info.gathers_context_logits,
            gather_generation_logits: info.gathers_generation_logits,
            ..ExecutorOptions::new(engine_dir)
        }
    }
}

/// One executor request, built on the C++ side with setters. `None` leaves
/// TensorRT-LLM's default (`cpp/README.md` lists them); `mapping::request_spec`
/// sets every decoding option, so that no default decides how an engine samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestSpec {
    pub input_ids: Vec<i32>,
    pub max_tokens: i32,
    pub streaming: bool,
    pub temperature: Option<f32>,
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub min_tokens: Option<i32>,
    pub end_id: Option<i32>,
    pub pad_id: Option<i32>,
    /// Token sequences that end generation (TensorRT-LLM `setStopWords`).
    pub stop_words: Vec<Vec<i32>>,
    pub return_log_probs: bool,
    pub return_context_logits: bool,
    pub return_generation_logits: bool,
}

/// Element type of a logits tensor as the executor returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsDType {
    F32,
    F16,
    BF16,
    /// Another TensorRT-LLM `DataType` (its value): not converted.
    Other(i32),
}

impl LogitsDType {
    /// Bytes per value; `None` for types this crate does not convert.
    pub fn size(self) -> Option<usize> {
        match self {
            LogitsDType::F32 => Some(4),
            LogitsDType::F16 | LogitsDType::BF16 => Some(2),
            LogitsDType::Other(_) => None,
        }
    }
}

/// A logits tensor copied out of the executor: rows of `row_len` values (the
/// last dimension, the padded vocabulary), little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLogits {
    pub dtype: LogitsDType,
    pub row_len: usize,
    pub data: Vec<u8>,
}

/// One executor `Response`, flattened; checked by
/// [`super::mapping::check_response`] before anything uses it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawResponse {
    pub request_id: u64,
    /// `hasError()`: the message, for this request only.
    pub error: Option<String>,
    pub is_final: bool,
    /// `outputTokenIds.size()`: 0 means no beam at all.
    pub num_beams: usize,
    /// Beam 0's tokens (only the new ones when streaming; never the end token,
    /// which TensorRT-LLM leaves out of its outputs).
    pub tokens: Vec<i32>,
    /// Beam 0's finish reason as the raw enum value; `None` when the result
    /// carried no finish reasons.
    pub finish_reason: Option<i32>,
    /// Beam 0's `logProbs` when asked for: as TensorRT-LLM delivers them, one per
    /// token generated so far (cumulative over a stream, while `tokens` holds only
    /// the new ones).
    pub log_probs: Vec<f32>,
    /// TensorRT-LLM sets these on every response of a request that asked for
    /// them; the bridge copies them on the first only.
    pub context_logits: Option<RawLogits>,
    pub generation_logits: Option<RawLogits>,
}

/// What the router needs from an executor. Implementations must allow
/// `await_responses` on one thread while others call `enqueue` and `cancel`
/// (TensorRT-LLM's Executor does).
pub trait ExecutorApi: Send + Sync + 'static {
    /// Enqueues one request and returns its id.
    fn enqueue(&self, request: &RequestSpec) -> Result<u64, String>;
    /// Blocks until responses are ready or `timeout` passes (then returns none).
    fn await_responses(&self, timeout: Duration) -> Result<Vec<RawResponse>, String>;
    /// Asks the executor to stop a request; its final response says `kCANCELLED`.
    fn cancel(&self, request_id: u64) -> Result<(), String>;
    /// Stops the executor; nothing may be called afterwards.
    fn shutdown(&self) -> Result<(), String>;
}

/// Shared executors (tests keep a handle to inspect a stand-in after the
/// router that owns it is gone).
impl<T: ExecutorApi> ExecutorApi for std::sync::Arc<T> {
    fn enqueue(&self, request: &RequestSpec) -> Result<u64, String> {
        (**self).enqueue(request)
    }

    fn await_responses(&self, timeout: Duration) -> Result<Vec<RawResponse>, String> {
        (**self).await_responses(timeout)
    }

    fn cancel(&self, request_id: u64) -> Result<(), String> {
        (**self).cancel(request_id)
    }

    fn shutdown(&self) -> Result<(), String> {
        (**self).shutdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(context: bool, generation: bool) -> EngineInfo {
        EngineInfo {
            vocab_size: 8,
            world_size: 1,
            version: None,
            gathers_generation_logits: generation,
            gathers_context_logits: context,
            max_seq_len: Some(64),
            max_batch_size: Some(8),
            max_input_len: Some(32),
        }
    }

    #[test]
    fn block_reuse_is_off_when_the_engine_can_return_context_logits() {
        let dir = PathBuf::from("engine");
        let options = ExecutorOptions::for_engine(dir.clone(), &info(true, false));
        assert!(!options.enable_kv_block_reuse);
        assert!(!options.gather_generation_logits);
        let options = ExecutorOptions::for_engine(dir.clone(), &info(false, true));
        assert!(options.enable_kv_block_reuse);
        assert!(options.gather_generation_logits);
        assert_eq!(options.engine_dir, dir);
    }
}
