//! What one generation asks for and what it gives back, the same for every backend.

use serde::Serialize;

use super::{ContextLimit, SamplingParams};

#[derive(Debug, Clone)]
pub struct Request {
    pub input_ids: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends after this token, unless `None` (e.g. `--ignore-eos`).
    pub end_id: Option<u32>,
    pub want_context_logits: bool,
    pub want_generation_logits: bool,
    /// Report the log-probability of each generated token ([`Generated::logprobs`]).
    pub want_logprobs: bool,
}

impl Request {
    /// The new tokens `limit` leaves room for after this prompt, when fewer
    /// than `max_new_tokens`: generation stops there on both backends (the
    /// reference at its last position; TensorRT-LLM lowers the request's
    /// maxNewTokens to maxSequenceLen - promptLen, with a log warning, when
    /// it validates a request in the executor).
    pub fn room_left(&self, limit: ContextLimit) -> Option<usize> {
        let room = limit.tokens.saturating_sub(self.input_ids.len());
        (room < self.max_new_tokens).then_some(room)
    }
}

/// What is wrong with asking for `n` new tokens, if anything: a request must
/// generate at least one (TensorRT-LLM refuses one that generates nothing, and the
/// reference runtime does the same).
pub fn max_new_tokens_problem(n: usize) -> Option<&'static str> {
    (n == 0).then_some("must be at least 1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `max_new_tokens` reached (or the model's maximum length).
    Length,
    /// The end token was generated.
    EndId,
    /// The caller stopped it (a stop string).
    Stop,
    /// Ctrl-C.
    Cancelled,
}

#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Generated tokens only (an end token included, as transformers does).
    pub output_ids: Vec<u32>,
    pub finish_reason: Option<FinishReason>,
    /// `[n_input][vocab]` when asked for.
    pub context_logits: Vec<Vec<f32>>,
    /// `[n_new][vocab]` when asked for: the distribution each token was drawn from.
    /// The reference runtime has a row for every token, a final end token
    /// included (as transformers' `generate` returns a score for that step);
    /// TensorRT-LLM returns none for a final end token
    /// ([`Generated::end_token_row_missing`]).
    pub generation_logits: Vec<Vec<f32>>,
    /// When asked for: the log-probability of each generated token under the distribution
    /// it was drawn from (the softmax after repetition penalty and temperature, before the
    /// top-k and top-p cuts; the reference runtime's `Sampler::log_prob`), except a final
    /// end token, for which TensorRT-LLM reports none (both backends agree).
    pub logprobs: Vec<f32>,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl Generated {
    /// The generation logits have a row for every token but a final end token:
    /// TensorRT-LLM computes that step's distribution but returns no row for
    /// it (a step that ends on the end token adds no output token, and its
    /// streamed logits are those of the new tokens).
    pub fn end_token_row_missing(&self) -> bool {
        self.finish_reason == Some(FinishReason::EndId)
            && !self.output_ids.is_empty()
            && self.generation_logits.len() + 1 == self.output_ids.len()
    }
}
