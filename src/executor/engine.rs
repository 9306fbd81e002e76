//! Opening an engine directory on the real executor (feature `trtllm`).

use std::path::Path;
use std::time::Duration;

use super::api::ExecutorOptions;
use super::backend::ExecutorBackend;
use super::ffi::{self, TrtllmExecutor};
use super::preflight::{check_engine, check_library};
use crate::error::{Error, Result};
use crate::generation::ContextLimit;
use crate::trtllm::gpu;

/// The `awaitResponses` timeout: how long shutdown may wait for the router.
const POLL: Duration = Duration::from_millis(100);

/// Checks the loaded TensorRT-LLM against the headers the bridge was compiled
/// against, and the engine against this GPU and that library, then loads it
/// with [`ExecutorOptions::for_engine`].
pub fn open_engine(dir: &Path) -> Result<ExecutorBackend<TrtllmExecutor>> {
    let tensorrt_llm = |e: String| Error::InvalidInput(format!("TensorRT-LLM: {e}"));
    let version = ffi::version().map_err(tensorrt_llm)?;
    check_library(ffi::headers_version().map_err(tensorrt_llm)?.as_deref(), &version)?;
    let sm = gpu::detect()
        .ok()
        .and_then(|g| g.into_iter().next())
        .map(|g| g.sm);
    let info = check_engine(dir, sm.as_deref(), &version)?;
    let options = ExecutorOptions::for_engine(dir.to_path_buf(), &info);
    let api = TrtllmExecutor::open(&options).map_err(|e| {
        Error::InvalidInput(format!(
            "{}: TensorRT-LLM {version} could not load this engine: {e}",
            dir.display()
        ))
    })?;
    // The end id comes from the tokenizer (run passes it per request).
    let mut backend = ExecutorBackend::new(api, info.vocab_size, None, POLL);
    backend.context_logits_gathered = info.gathers_context_logits;
    backend.context_limit = info.max_seq_len.map(|tokens| ContextLimit {
        tokens,
        source: "the engine's max_seq_len",
    });
    backend.max_batch_size = info.max_batch_size;
    backend.max_input_len = info.max_input_len;
    Ok(backend)
}
