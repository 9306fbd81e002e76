//! The `cxx` bridge to `cpp/executor_bridge.{h,cpp}`: one opaque C++ class
//! owning a `tensorrt_llm::executor::Executor`; only flat structs, shared enums
//! (with the library's values) and slices cross. Every C++ entry point catches
//! every exception and returns it as a `cxx::Exception` (the `Result`s below).
//! Compiled only with `--features trtllm`; build.rs compiles and links the C++
//! side when TensorRT-LLM is found.

use std::time::Duration;

use super::api::{
    ExecutorApi, ExecutorOptions, LogitsDType, RawLogits, RawResponse, RequestSpec, SchedulerPolicy,
};

#[cxx::bridge(namespace = "trtllm_minitron")]
pub mod sys {
    /// TensorRT-LLM's `executor::CapacitySchedulerPolicy` (types.h), value for
    /// value: `cpp/executor_bridge.cpp` checks each one at compile time.
    #[repr(i32)]
    enum SchedulerPolicy {
        MaxUtilization = 0,
        GuaranteedNoEvict = 1,
        StaticBatch = 2,
    }

    /// TensorRT-LLM's `executor::FinishReason` (types.h), value for value. A
    /// shared enum still carries values Rust does not name (`repr`).
    #[repr(i32)]
    enum FinishReason {
        NotFinished = 0,
        EndId = 1,
        StopWords = 2,
        Length = 3,
        TimedOut = 4,
        Cancelled = 5,
    }

    /// TensorRT-LLM's `executor::DataType` (types.h), value for value.
    #[repr(i32)]
    enum DataType {
        Bool = 0,
        UInt8 = 1,
        Int8 = 2,
        Int32 = 3,
        Int64 = 4,
        BF16 = 5,
        FP8 = 6,
        FP16 = 7,
        FP32 = 8,
        Unknown = 9,
    }

    /// `ExecutorConfig` inputs.
    struct BridgeOptions {
        engine_dir: String,
        free_gpu_memory_fraction: f32,
        enable_kv_block_reuse: bool,
        scheduler_policy: SchedulerPolicy,
        gather_generation_logits: bool,
    }

    /// A request's scalar settings; each `has_*` says whether to call the setter.
    struct BridgeRequest {
        max_tokens: i32,
        streaming: bool,
        has_temperature: bool,
        temperature: f32,
        has_top_k: bool,
        top_k: i32,
        has_top_p: bool,
        top_p: f32,
        has_seed: bool,
        seed: u64,
        has_repetition_penalty: bool,
        repetition_penalty: f32,
        has_presence_penalty: bool,
        presence_penalty: f32,
        has_frequency_penalty: bool,
        frequency_penalty: f32,
        has_min_tokens: bool,
        min_tokens: i32,
        has_end_id: bool,
        end_id: i32,
        has_pad_id: bool,
        pad_id: i32,
        return_log_probs: bool,
        return_context_logits: bool,
        return_generation_logits: bool,
    }

    /// A host logits tensor copied to bytes, with its type and last dimension.
    struct BridgeLogits {
        present: bool,
        dtype: DataType,
        row_len: usize,
        data: Vec<u8>,
    }

    /// One `Response`, flattened. `log_probs` are beam 0's, all of them so far
    /// (TensorRT-LLM's cumulative list); `context_logits` are copied from the
    /// first response of a request that carries them only.
    struct BridgeResponse {
        request_id: u64,
        has_error: bool,
        error: String,
        is_final: bool,
        num_beams: usize,
        tokens: Vec<i32>,
        has_finish_reason: bool,
        finish_reason: FinishReason,
        log_probs: Vec<f32>,
        context_logits: BridgeLogits,
        generation_logits: BridgeLogits,
    }

    unsafe extern "C++" {
        include!("trtllm-minitron/cpp/executor_bridge.h");

        type TrtExecutor;

        /// `tensorrt_llm::executor::version()` of the linked library.
        fn trtllm_version() -> Result<String>;
        /// The version of the headers the bridge was compiled against
        /// (`kTensorRtLlmVersion` of `tensorrt_llm/executor/version.h`), empty
        /// when they have no such file.
        fn trtllm_headers_version() -> Result<String>;
        /// Registers the plugins (once per process) and loads the engine.
        fn new_executor(options: &BridgeOptions) -> Result<UniquePtr<TrtExecutor>>;
        /// Stop words are `stop_word_lengths.len()` sequences concatenated in `stop_word_tokens`.
        fn enqueue(
            self: &TrtExecutor,
            request: &BridgeRequest,
            input_ids: &[i32],
            stop_word_tokens: &[i32],
            stop_word_lengths: &[u32],
        ) -> Result<u64>;
        /// Appends the responses ready within `timeout_ms` to `out`.
        fn await_responses(self: &TrtExecutor, timeout_ms: u64, out: &mut Vec<BridgeResponse>) -> Result<()>;
        fn cancel(self: &TrtExecutor, request_id: u64) -> Result<()>;
        fn shutdown(self: &TrtExecutor) -> Result<()>;
    }
}

// SAFETY: TensorRT-LLM's Executor is meant to be driven from several threads
// (one awaiting responses while others enqueue and cancel); the C++ wrapper
// holds no other state after construction.
unsafe impl Send for sys::TrtExecutor {}
unsafe impl Sync for sys::TrtExecutor {}

/// The linked TensorRT-LLM version.
pub fn version() -> Result<String, String> {
    sys::trtllm_version().map_err(|e| e.what().to_string())
}

/// The version of the headers the bridge was compiled against; `None` when
/// they do not say.
pub fn headers_version() -> Result<Option<String>, String> {
    let v = sys::trtllm_headers_version().map_err(|e| e.what().to_string())?;
    Ok((!v.is_empty()).then_some(v))
}

/// The real executor behind [`ExecutorApi`].
pub struct TrtllmExecutor {
    inner: cxx::UniquePtr<sys::TrtExecutor>,
}

impl TrtllmExecutor {
    pub fn open(options: &ExecutorOptions) -> Result<Self, String> {
        let bridge = sys::BridgeOptions {
            engine_dir: options.engine_dir.to_string_lossy().into_owned(),
            free_gpu_memory_fraction: options.free_gpu_memory_fraction,
            enable_kv_block_reuse: options.enable_kv_block_reuse,
            scheduler_policy: match options.scheduler {
                SchedulerPolicy::MaxUtilization => sys::SchedulerPolicy::MaxUtilization,
                SchedulerPolicy::GuaranteedNoEvict => sys::SchedulerPolicy::GuaranteedNoEvict,
            },
            gather_generation_logits: options.gather_generation_logits,
        };
        let inner = sys::new_executor(&bridge).map_err(|e| e.what().to_string())?;
        if inner.is_null() {
            return Err("the bridge returned no executor".into());
        }
        Ok(TrtllmExecutor { inner })
    }

    fn get(&self) -> &sys::TrtExecutor {
        // Checked non-null in `open`.
        self.inner.as_ref().expect("executor")
    }
}

fn bridge_request(r: &RequestSpec) -> sys::BridgeRequest {
    sys::BridgeRequest {
        max_tokens: r.max_tokens,
        streaming: r.streaming,
        has_temperature: r.temperature.is_some(),
        temperature: r.temperature.unwrap_or_default(),
        has_top_k: r.top_k.is_some(),
        top_k: r.top_k.unwrap_or_default(),
        has_top_p: r.top_p.is_some(),
        top_p: r.top_p.unwrap_or_default(),
        has_seed: r.seed.is_some(),
        seed: r.seed.unwrap_or_default(),
        has_repetition_penalty: r.repetition_penalty.is_some(),
        repetition_penalty: r.repetition_penalty.unwrap_or_default(),
        has_presence_penalty: r.presence_penalty.is_some(),
        presence_penalty: r.presence_penalty.unwrap_or_default(),
        has_frequency_penalty: r.frequency_penalty.is_some(),
        frequency_penalty: r.frequency_penalty.unwrap_or_default(),
        has_min_tokens: r.min_tokens.is_some(),
        min_tokens: r.min_tokens.unwrap_or_default(),
        has_end_id: r.end_id.is_some(),
        end_id: r.end_id.unwrap_or_default(),
        has_pad_id: r.pad_id.is_some(),
        pad_id: r.pad_id.unwrap_or_default(),
        return_log_probs: r.return_log_probs,
        return_context_logits: r.return_context_logits,
        return_generation_logits: r.return_generation_logits,
    }
}

fn raw_logits(l: sys::BridgeLogits) -> Option<RawLogits> {
    let dtype = match l.dtype {
        sys::DataType::FP32 => LogitsDType::F32,
        sys::DataType::FP16 => LogitsDType::F16,
        sys::DataType::BF16 => LogitsDType::BF16,
        other => LogitsDType::Other(other.repr),
    };
    l.present.then_some(RawLogits {
        dtype,
        row_len: l.row_len,
        data: l.data,
    })
}

impl ExecutorApi for TrtllmExecutor {
    fn enqueue(&self, request: &RequestSpec) -> Result<u64, String> {
        let tokens: Vec<i32> = request.stop_words.iter().flatten().copied().collect();
        let lengths = request
            .stop_words
            .iter()
            .map(|w| u32::try_from(w.len()).map_err(|_| "a stop word is too long".to_string()))
            .collect::<Result<Vec<u32>, String>>()?;
        self.get()
            .enqueue(&bridge_request(request), &request.input_ids, &tokens, &lengths)
            .map_err(|e| e.what().to_string())
    }

    fn await_responses(&self, timeout: Duration) -> Result<Vec<RawResponse>, String> {
        let mut out = Vec::new();
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        self.get()
            .await_responses(ms, &mut out)
            .map_err(|e| e.what().to_string())?;
        Ok(out
            .into_iter()
            .map(|r| RawResponse {
                request_id: r.request_id,
                error: r.has_error.then_some(r.error),
                is_final: r.is_final,
                num_beams: r.num_beams,
                tokens: r.tokens,
                finish_reason: r.has_finish_reason.then_some(r.finish_reason.repr),
                log_probs: r.log_probs,
                context_logits: raw_logits(r.context_logits),
                generation_logits: raw_logits(r.generation_logits),
            })
            .collect())
    }

    fn cancel(&self, request_id: u64) -> Result<(), String> {
        self.get().cancel(request_id).map_err(|e| e.what().to_string())
    }

    fn shutdown(&self) -> Result<(), String> {
        self.get().shutdown().map_err(|e| e.what().to_string())
    }
}
