//! The generation interface both runtimes implement: the CPU reference runtime
//! (`runtime`) and the TensorRT-LLM Executor (`executor`). Commands (`run`,
//! `check`, and a server) drive any backend through it.
//!
//! A [`Request`] carries everything one generation needs: its prompt, its own
//! decoding options ([`SamplingParams`]) and its token-level stop conditions
//! (`max_new_tokens`, `end_id`); text-level stop strings are applied to the
//! decoded stream by [`text::TextStream`], which then stops the request.
//! Tokens stream out as [`TokenEvent`]s the moment they exist; the caller
//! answers each with a [`Flow`], so one request can be stopped (a stop string,
//! a client gone) while the others go on, and the `cancel` flag stops them all.

pub mod request;
pub mod sampling;
pub mod service;
pub mod stop;
pub mod text;

use std::sync::atomic::AtomicBool;

use crate::error::Result;
pub use request::{FinishReason, Generated, Request, max_new_tokens_problem};
pub use sampling::{SamplingError, SamplingParams};
pub use service::{GenerationService, ServiceOptions};

/// One new token of one request, as soon as it exists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenEvent {
    /// The request's index in the slice given to [`GenerationBackend::generate`].
    pub request: usize,
    pub token: u32,
    /// Its log-probability when the request asked for them ([`Generated::logprobs`]);
    /// `None` otherwise, and for a final end token.
    pub logprob: Option<f32>,
}

/// The caller's answer to a [`TokenEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Finish this request now ([`FinishReason::Stop`]); the others go on.
    Stop,
}

/// How many tokens, prompt and generated together, a sequence may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimit {
    pub tokens: usize,
    /// Where the limit comes from, for messages ("max_position_embeddings").
    pub source: &'static str,
}

/// What every generation backend offers, so `run` and `check` drive them
/// through one output path.
pub trait GenerationBackend {
    /// Short name for reports ("reference", "trtllm").
    fn name(&self) -> &'static str;
    /// Unpadded vocabulary size (logits rows have this length).
    fn vocab_size(&self) -> usize;
    /// The model config's end-of-sequence id, if known.
    fn eos_id(&self) -> Option<u32>;
    /// Where every sequence stops, whatever its `max_new_tokens`, if known.
    fn context_limit(&self) -> Option<ContextLimit> {
        None
    }
    /// Runs every request to completion; `on_token` sees each new token as soon
    /// as it exists. Setting `cancel` finishes every unfinished request with
    /// [`FinishReason::Cancelled`].
    fn generate(
        &self,
        requests: &[Request],
        on_token: &mut dyn FnMut(TokenEvent) -> Flow,
        cancel: &AtomicBool,
    ) -> Result<Vec<Generated>>;
    /// Keeps the backend running as a [`GenerationService`]: requests join and
    /// leave its batch at every decoding step (`serve`).
    fn into_service(self: Box<Self>, options: &ServiceOptions) -> Result<Box<dyn GenerationService>>;
}
