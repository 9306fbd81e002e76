//! What every generation backend offers (the CPU reference runtime here; the
//! TensorRT-LLM Executor with `--features trtllm`), so `run` and `check` drive
//! them through one output path.

use std::sync::atomic::AtomicBool;

use crate::error::Result;
use crate::runtime::generate::{Generated, Request, generate};
use crate::runtime::model::Model;

pub trait GenerationBackend {
    /// Short name for reports ("reference", "trtllm").
    fn name(&self) -> &'static str;
    /// Unpadded vocabulary size (logits rows have this length).
    fn vocab_size(&self) -> usize;
    /// The model config's end-of-sequence id, if known.
    fn eos_id(&self) -> Option<u32>;
    /// Runs every request to completion; `on_token(request, token)` sees each new
    /// token as soon as it exists and returns `false` to stop that request.
    fn generate(
        &self,
        requests: &[Request],
        on_token: &mut dyn FnMut(usize, u32) -> bool,
        cancel: &AtomicBool,
    ) -> Result<Vec<Generated>>;
}

impl GenerationBackend for Model {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn eos_id(&self) -> Option<u32> {
        self.config.eos_token_id
    }

    fn generate(
        &self,
        requests: &[Request],
        on_token: &mut dyn FnMut(usize, u32) -> bool,
        cancel: &AtomicBool,
    ) -> Result<Vec<Generated>> {
        generate(self, requests, on_token, cancel)
    }
}
