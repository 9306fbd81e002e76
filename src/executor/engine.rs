//! Opening an engine directory on the real executor (feature `trtllm`).

use std::path::Path;
use std::time::Duration;

use super::api::ExecutorOptions;
use super::backend::ExecutorBackend;
use super::ffi::{self, TrtllmExecutor};
use super::preflight::check_engine;
use crate::error::{Error, Result};
use crate::trtllm::gpu;

/// The `awaitResponses` timeout: how long shutdown may wait for the router.
const POLL: Duration = Duration::from_millis(100);

/// Checks the engine against this GPU and the linked TensorRT-LLM, then loads
/// it. Generation logits are gathered when the engine was built to gather them
/// (`--output-logits` needs that).
pub fn open_engine(dir: &Path) -> Result<ExecutorBackend<TrtllmExecutor>> {
    let version = ffi::version().map_err(|e| Error::InvalidInput(format!("TensorRT-LLM: {e}")))?;
    let sm = gpu::detect()
        .ok()
        .and_then(|g| g.into_iter().next())
        .map(|g| g.sm);
    let info = check_engine(dir, sm.as_deref(), &version)?;
    let mut options = ExecutorOptions::new(dir.to_path_buf());
    options.gather_generation_logits = info.gathers_generation_logits;
    let api = TrtllmExecutor::open(&options).map_err(|e| {
        Error::InvalidInput(format!(
            "{}: TensorRT-LLM {version} could not load this engine: {e}",
            dir.display()
        ))
    })?;
    // The end id comes from the tokenizer (run passes it per request).
    let mut backend = ExecutorBackend::new(api, info.vocab_size, None, POLL);
    backend.context_logits_gathered = info.gathers_context_logits;
    Ok(backend)
}
