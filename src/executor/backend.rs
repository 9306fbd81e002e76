//! [`GenerationBackend`] over any [`ExecutorApi`]: every prompt is enqueued at
//! once (the executor batches them in flight), streamed tokens go to
//! `on_token` as they arrive, a caller's stop (stop string) or Ctrl-C cancels
//! requests in the executor. Results read as the reference runtime's do: the
//! end token TensorRT-LLM leaves out is put back, log-probs are taken as the
//! cumulative lists they arrive as.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::api::ExecutorApi;
use super::mapping::{decode_logits, request_spec};
use super::router::{Event, Router};
use super::service::ExecutorService;
use crate::error::{Error, Result};
use crate::generation::{
    ContextLimit, FinishReason, Flow, Generated, GenerationBackend, GenerationService, Request,
    ServiceOptions, TokenEvent,
};

/// How long `generate` sleeps between looks at the Ctrl-C flag.
const WAKE: Duration = Duration::from_millis(50);

pub struct ExecutorBackend<E: ExecutorApi> {
    router: Router<E>,
    vocab_size: usize,
    eos_id: Option<u32>,
    /// No response at all for this long fails the generation.
    pub response_timeout: Duration,
    /// The engine was built to return context logits (`gather_context_logits`);
    /// the executor refuses requests for them otherwise.
    pub context_logits_gathered: bool,
    /// The engine's `max_seq_len`, when known.
    pub context_limit: Option<ContextLimit>,
    /// The engine's `max_batch_size` and `max_input_len`, when known: a
    /// server's limits (with `context_limit`).
    pub max_batch_size: Option<usize>,
    pub max_input_len: Option<usize>,
}

fn executor_error(what: String) -> Error {
    Error::InvalidOutput(format!("TensorRT-LLM executor: {what}"))
}

impl<E: ExecutorApi> ExecutorBackend<E> {
    /// `poll` is the router's `awaitResponses` timeout.
    pub fn new(api: E, vocab_size: usize, eos_id: Option<u32>, poll: Duration) -> Self {
        ExecutorBackend {
            router: Router::start(api, poll),
            vocab_size,
            eos_id,
            response_timeout: Duration::from_secs(600),
            context_logits_gathered: true,
            context_limit: None,
            max_batch_size: None,
            max_input_len: None,
        }
    }

    pub fn router(&self) -> &Router<E> {
        &self.router
    }
}

struct Slot {
    id: u64,
    done: bool,
    error: Option<String>,
    first_token: Option<Instant>,
    finished_at: Option<Instant>,
}

/// The requests of one `generate` call. Dropping it cancels every one not
/// done, however `generate` returns (an error, a timeout, a response it cannot
/// use): nothing is left generating in the executor, whose shutdown would wait
/// for it (executor/executorImpl.cpp).
struct InFlight<'a, E: ExecutorApi> {
    router: &'a Router<E>,
    slots: Vec<Slot>,
}

impl<E: ExecutorApi> InFlight<'_, E> {
    /// Cancels a request and marks it done.
    fn cancel(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if !slot.done {
            let _ = self.router.cancel(slot.id);
            slot.done = true;
            slot.finished_at = Some(Instant::now());
        }
    }
}

impl<E: ExecutorApi> Drop for InFlight<'_, E> {
    fn drop(&mut self) {
        for i in 0..self.slots.len() {
            self.cancel(i);
        }
    }
}

impl<E: ExecutorApi> GenerationBackend for ExecutorBackend<E> {
    fn name(&self) -> &'static str {
        "trtllm"
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    fn context_limit(&self) -> Option<ContextLimit> {
        self.context_limit
    }

    fn generate(
        &self,
        requests: &[Request],
        on_token: &mut dyn FnMut(TokenEvent) -> Flow,
        cancel: &AtomicBool,
    ) -> Result<Vec<Generated>> {
        if requests.iter().any(|r| r.want_context_logits) && !self.context_logits_gathered {
            return Err(Error::InvalidInput(
                "context logits were asked for (run --output-logits, check --against reference), but this \
                 engine was built without gather_context_logits, so TensorRT-LLM returns none: rebuild it \
                 with gather_context_logits = true in its profile"
                    .into(),
            ));
        }
        let specs = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                request_spec(r, true, self.vocab_size)
                    .map_err(|e| Error::InvalidInput(format!("prompt {i}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        let mut flight = InFlight {
            router: &self.router,
            slots: Vec::with_capacity(specs.len()),
        };
        for (i, spec) in specs.iter().enumerate() {
            // On an error, dropping `flight` cancels the requests enqueued so far.
            let id = self
                .router
                .submit(spec, i, tx.clone())
                .map_err(|e| executor_error(format!("cannot enqueue prompt {i}: {e}")))?;
            flight.slots.push(Slot {
                id,
                done: false,
                error: None,
                first_token: None,
                finished_at: None,
            });
        }
        drop(tx);

        let mut results = vec![Generated::default(); requests.len()];
        let mut remaining = flight.slots.len();
        let mut last_activity = Instant::now();
        while remaining > 0 {
            if cancel.load(Ordering::Relaxed) {
                // Ctrl-C: cancel everything unfinished and stop waiting.
                for (i, out) in results.iter_mut().enumerate() {
                    if !flight.slots[i].done {
                        flight.cancel(i);
                        out.finish_reason = Some(FinishReason::Cancelled);
                    }
                }
                break;
            }
            let (i, event) = match rx.recv_timeout(WAKE) {
                Ok(routed) => routed,
                Err(RecvTimeoutError::Timeout) => {
                    if last_activity.elapsed() >= self.response_timeout {
                        return Err(executor_error(format!(
                            "no response for {:?}; the unfinished requests were cancelled",
                            self.response_timeout
                        )));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(executor_error("the response router stopped".into()));
                }
            };
            last_activity = Instant::now();
            let slot = &mut flight.slots[i];
            if slot.done {
                continue;
            }
            let step = match event {
                Event::Failed(e) => {
                    slot.error = Some(e);
                    slot.done = true;
                    remaining -= 1;
                    continue;
                }
                Event::Step(step) => step,
            };
            let out = &mut results[i];
            // The router passes a request's context logits once; the first copy is
            // the one kept, whatever comes later.
            if let Some(raw) = &step.context_logits
                && out.context_logits.is_empty()
            {
                out.context_logits = decode_logits(raw, self.vocab_size).map_err(executor_error)?;
            }
            if let Some(raw) = &step.generation_logits {
                let rows = decode_logits(raw, self.vocab_size).map_err(executor_error)?;
                out.generation_logits.extend(rows);
            }
            let tokens = step.tokens_with_logprobs(requests[i].end_id, out.output_ids.len());
            if !step.log_probs.is_empty() {
                // Cumulative: each response lists every token's log-prob so far.
                out.logprobs = step.log_probs;
            }
            if !tokens.is_empty() && slot.first_token.is_none() {
                slot.first_token = Some(Instant::now());
            }
            let mut stopped = false;
            for (token, logprob) in tokens {
                out.output_ids.push(token);
                if on_token(TokenEvent {
                    request: i,
                    token,
                    logprob,
                }) == Flow::Stop
                {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                // A stop string: the executor need not go on.
                flight.cancel(i);
                out.finish_reason = Some(FinishReason::Stop);
                out.generation_logits.truncate(out.output_ids.len());
                out.logprobs.truncate(out.output_ids.len());
            } else if step.is_final {
                out.finish_reason = step.finish;
                slot.done = true;
                slot.finished_at = Some(Instant::now());
            } else {
                continue;
            }
            remaining -= 1;
        }

        let errors: Vec<String> = flight
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.error.as_ref().map(|e| format!("prompt {i}: {e}")))
            .collect();
        if !errors.is_empty() {
            return Err(executor_error(errors.join("; ")));
        }
        for (out, slot) in results.iter_mut().zip(&flight.slots) {
            let first = slot.first_token.unwrap_or(started);
            out.prefill_seconds = first.duration_since(started).as_secs_f64();
            out.decode_seconds = slot
                .finished_at
                .map(|t| t.saturating_duration_since(first).as_secs_f64())
                .unwrap_or_default();
        }
        Ok(results)
    }

    fn into_service(self: Box<Self>, options: &ServiceOptions) -> Result<Box<dyn GenerationService>> {
        Ok(Box::new(ExecutorService::start(*self, options)?))
    }
}
