//! Serving: a backend kept running, that takes requests at any time and
//! batches them continuously (requests join and leave the running batch at
//! every decoding step). A server submits each request with an [`EventSink`]
//! that receives its tokens as they come; a sink whose receiver is gone (the
//! client disconnected) has its request cancelled at the next step.
//!
//! Both backends offer it through [`super::GenerationBackend::into_service`]:
//! the reference runtime with a scheduler thread that owns the model
//! (`runtime::service`), the TensorRT-LLM executor through its in-flight
//! batching and the response router (`executor::service`).

use super::{FinishReason, Flow, Request};

/// What a request's sink receives. After `Finished` or `Failed` nothing more comes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token, with its log-probability when the request asked for them
    /// (none for a final end token).
    Token {
        token: u32,
        logprob: Option<f32>,
    },
    Finished(FinishReason),
    /// The request failed; the message says why.
    Failed(String),
}

/// Where one request's events go. Called from the backend's own thread.
pub trait EventSink: Send {
    /// Delivers an event. [`Flow::Stop`] finishes the request now (a stop string,
    /// a receiver gone); its `Finished(Stop)` is still sent.
    fn send(&mut self, event: Event) -> Flow;
    /// The receiver is gone: the request is cancelled at the next step, and
    /// nothing more is sent.
    fn is_closed(&self) -> bool;
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the server is busy: its queue is full ({max_queue} requests waiting); retry later")]
    QueueFull { max_queue: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The request can never run here (it needs more KV cache than the budget).
    #[error("{0}")]
    TooLarge(String),
}

/// What a service can take, so a server refuses an impossible request up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Prompt plus generated tokens of one request: the model's length
    /// (`max_position_embeddings`), or the engine's `max_seq_len`.
    pub max_sequence_tokens: usize,
    /// Prompt tokens of one request (an engine's `max_input_len`).
    pub max_prompt_tokens: usize,
    /// Prompt plus generated tokens that fit the KV cache budget, when the
    /// service has one (the reference runtime).
    pub kv_cache_tokens: Option<usize>,
    /// Requests decoding together.
    pub max_batch: usize,
    /// Requests waiting for a place in the batch before new ones are refused.
    pub max_queue: usize,
    /// Unpadded vocabulary size: prompt token ids must be below it.
    pub vocab_size: usize,
}

/// How busy a service is, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Submitted, not yet running.
    pub waiting: usize,
    /// In the running batch.
    pub running: usize,
}

/// Settings of a service; `None` takes the backend's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceOptions {
    /// Requests decoding together (reference: 16; an engine: its `max_batch_size`).
    pub max_batch: Option<usize>,
    /// Waiting requests before new ones are refused with [`Refusal::QueueFull`].
    pub max_queue: usize,
    /// Reference runtime: bytes of KV cache all running requests may reserve
    /// together (each reserves its prompt plus `max_new_tokens`).
    pub kv_cache_bytes: Option<u64>,
    /// Reference runtime: prompt tokens run per step, across the requests
    /// joining, so that a long prompt does not stall the others' decoding.
    pub prefill_chunk: Option<usize>,
}

impl Limits {
    /// Why a request of `prompt` tokens asking for `max_new_tokens` more can never
    /// run here, if it cannot.
    pub fn problem(&self, prompt: usize, max_new_tokens: usize) -> Option<String> {
        let total = prompt + max_new_tokens;
        if total > self.max_sequence_tokens {
            return Some(format!(
                "the model's maximum context length is {} tokens, and this request asks for {total} \
                 ({prompt} in the prompt, {max_new_tokens} to generate)",
                self.max_sequence_tokens
            ));
        }
        match self.kv_cache_tokens {
            Some(kv) if total > kv => Some(format!(
                "this request needs a KV cache of {total} tokens ({prompt} in the prompt, \
                 {max_new_tokens} to generate), more than the server's whole budget of {kv} tokens \
                 (serve --kv-cache-memory)"
            )),
            _ => None,
        }
    }
}

/// A backend serving requests continuously. Dropping it cancels whatever is
/// left and stops its threads.
pub trait GenerationService: Send + Sync {
    /// Queues a request (checked against [`GenerationService::limits`] by the
    /// caller); its events go to `sink`.
    fn submit(&self, request: Request, sink: Box<dyn EventSink>) -> Result<(), Refusal>;
    fn limits(&self) -> Limits;
    fn load(&self) -> Load;
    /// Refuses new requests from now on ([`Refusal::ShuttingDown`]); the ones
    /// taken go on.
    fn close(&self);
    /// Cancels every request taken, waiting or running: each gets
    /// `Finished(Cancelled)`.
    fn cancel_all(&self);
}
