//! An in-memory stand-in for the TensorRT-LLM executor, for tests of the
//! router and the backend. It runs no model: responses are the ones a test
//! queues with [`StandInExecutor::push`], or the ones a script produces for each
//! enqueued request ([`StandInExecutor::scripted`]). Nothing here stands for
//! a real engine having run.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::api::{ExecutorApi, LogitsDType, RawLogits, RawResponse, RequestSpec};

/// What a script makes of one request: its generated tokens and the raw
/// finish-reason code of the final response.
pub type Script = Box<dyn Fn(&RequestSpec) -> (Vec<i32>, i32) + Send + Sync>;

#[derive(Default)]
struct State {
    next_id: u64,
    enqueued: Vec<(u64, RequestSpec)>,
    queue: VecDeque<RawResponse>,
    finished: Vec<u64>,
    cancelled: Vec<u64>,
    await_calls: usize,
    shutdown_calls: usize,
    fail_enqueue: Option<String>,
    fail_await: Option<String>,
}

/// The stand-in executor. Ids start at 1000 so they never equal a prompt index.
pub struct StandInExecutor {
    state: Mutex<State>,
    ready: Condvar,
    script: Option<Script>,
    vocab: usize,
    per_call: usize,
}

impl StandInExecutor {
    /// Answers only what tests [`push`](Self::push).
    pub fn new() -> Self {
        StandInExecutor {
            state: Mutex::new(State {
                next_id: 1000,
                ..State::default()
            }),
            ready: Condvar::new(),
            script: None,
            vocab: 0,
            per_call: usize::MAX,
        }
    }

    /// Streams the script's tokens for each enqueued request, one token per
    /// response, the last one final; with logits of `vocab` (+ 2 padding)
    /// values per row when the request asks for them (the token's own logit is
    /// 1, the rest 0). `await_responses` hands out one response per call.
    pub fn scripted(vocab: usize, script: Script) -> Self {
        StandInExecutor {
            script: Some(script),
            vocab,
            per_call: 1,
            ..StandInExecutor::new()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, response: RawResponse) {
        self.lock().queue.push_back(response);
        self.ready.notify_all();
    }

    pub fn fail_enqueue(&self, why: &str) {
        self.lock().fail_enqueue = Some(why.into());
    }

    pub fn fail_await(&self, why: &str) {
        self.lock().fail_await = Some(why.into());
        self.ready.notify_all();
    }

    pub fn enqueued(&self) -> Vec<(u64, RequestSpec)> {
        self.lock().enqueued.clone()
    }

    pub fn cancelled(&self) -> Vec<u64> {
        self.lock().cancelled.clone()
    }

    pub fn await_calls(&self) -> usize {
        self.lock().await_calls
    }

    pub fn shutdown_calls(&self) -> usize {
        self.lock().shutdown_calls
    }

    fn logits(&self, tokens: &[i32]) -> RawLogits {
        let row_len = self.vocab + 2;
        let mut data = Vec::with_capacity(tokens.len() * row_len * 4);
        for &t in tokens {
            for v in 0..row_len {
                let x: f32 = if v as i32 == t { 1.0 } else { 0.0 };
                data.extend_from_slice(&x.to_le_bytes());
            }
        }
        RawLogits {
            dtype: LogitsDType::F32.code(),
            row_len,
            data,
        }
    }

    fn script_responses(&self, id: u64, spec: &RequestSpec, script: &Script) -> Vec<RawResponse> {
        let (tokens, finish) = script(spec);
        let n = tokens.len().max(1);
        (0..n)
            .map(|i| {
                let mine: Vec<i32> = tokens.get(i).copied().into_iter().collect();
                let is_final = i + 1 == n;
                RawResponse {
                    request_id: id,
                    is_final,
                    num_beams: 1,
                    finish_reason: Some(if is_final { finish } else { 0 }),
                    context_logits: (i == 0 && spec.return_context_logits)
                        .then(|| self.logits(&spec.input_ids)),
                    generation_logits: (spec.return_generation_logits && !mine.is_empty())
                        .then(|| self.logits(&mine)),
                    tokens: mine,
                    ..RawResponse::default()
                }
            })
            .collect()
    }
}

impl Default for StandInExecutor {
    fn default() -> Self {
        Self::new()
    }
}

/// A non-final streaming step.
pub fn step(id: u64, tokens: &[i32]) -> RawResponse {
    RawResponse {
        request_id: id,
        num_beams: 1,
        tokens: tokens.to_vec(),
        finish_reason: Some(0),
        ..RawResponse::default()
    }
}

/// A final response with a raw finish-reason code.
pub fn last(id: u64, tokens: &[i32], finish_code: i32) -> RawResponse {
    RawResponse {
        is_final: true,
        finish_reason: Some(finish_code),
        ..step(id, tokens)
    }
}

/// A response with `hasError`.
pub fn error(id: u64, message: &str) -> RawResponse {
    RawResponse {
        request_id: id,
        error: Some(message.into()),
        is_final: true,
        ..RawResponse::default()
    }
}

impl ExecutorApi for StandInExecutor {
    fn enqueue(&self, request: &RequestSpec) -> Result<u64, String> {
        let mut s = self.lock();
        if let Some(e) = &s.fail_enqueue {
            return Err(e.clone());
        }
        let id = s.next_id;
        s.next_id += 1;
        s.enqueued.push((id, request.clone()));
        if let Some(script) = &self.script {
            let responses = self.script_responses(id, request, script);
            s.queue.extend(responses);
            self.ready.notify_all();
        }
        Ok(id)
    }

    fn await_responses(&self, timeout: Duration) -> Result<Vec<RawResponse>, String> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        s.await_calls += 1;
        loop {
            if let Some(e) = &s.fail_await {
                return Err(e.clone());
            }
            if !s.queue.is_empty() {
                let n = s.queue.len().min(self.per_call);
                let out: Vec<RawResponse> = s.queue.drain(..n).collect();
                for r in &out {
                    if r.is_final {
                        s.finished.push(r.request_id);
                    }
                }
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn cancel(&self, request_id: u64) -> Result<(), String> {
        let mut s = self.lock();
        s.cancelled.push(request_id);
        if s.finished.contains(&request_id) {
            return Ok(());
        }
        // As the executor does: what was not sent yet is dropped, and a final
        // response says kCANCELLED.
        s.queue.retain(|r| r.request_id != request_id);
        s.queue.push_back(last(request_id, &[], 5));
        self.ready.notify_all();
        Ok(())
    }

    fn shutdown(&self) -> Result<(), String> {
        self.lock().shutdown_calls += 1;
        Ok(())
    }
}
