//! An in-memory stand-in for the TensorRT-LLM executor, for tests of the
//! router and the backend. It runs no model: responses are the ones a test
//! queues with [`StandInExecutor::push`], or the ones a script produces for each
//! enqueued request ([`StandInExecutor::scripted`]). Nothing here stands for
//! a real engine having run.
//!
//! Where the bridge and the backend depend on the library's behaviour, the
//! stand-in does what TensorRT-LLM 1.2 does (each place cites the source file it
//! follows): its decoding defaults, its refusals at enqueue, context logits on
//! every streaming response, cumulative log-probs, the end token left out of the
//! output, a final `kCANCELLED` response after a cancel, and nothing accepted
//! after shutdown, which would have waited for the requests still active. The
//! C++ fake library under `tests/fake_trtllm/` does the same one level down,
//! behind the real bridge.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::api::{ExecutorApi, LogitsDType, RawLogits, RawResponse, RequestSpec};

/// What a script makes of one request: the tokens its "model" would generate
/// (an end token included, if it generates one) and the raw finish-reason code
/// of the final response when no end token ends it first.
pub type Script = Box<dyn Fn(&RequestSpec) -> (Vec<i32>, i32) + Send + Sync>;

/// How TensorRT-LLM decodes a request, its defaults applied to what was left
/// unset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LibraryDecoding {
    /// Top-k 1: argmax.
    pub greedy: bool,
    pub top_k: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub seed: u64,
    /// The minimum length the end id is masked below (0: none).
    pub min_tokens: i32,
    /// -1: none.
    pub end_id: i32,
}

impl LibraryDecoding {
    /// How the library decodes `spec` when no other request has set a
    /// minimum length ([`LibraryDecoding::in_batch`]).
    pub fn of(spec: &RequestSpec) -> Self {
        Self::in_batch(spec, false)
    }

    /// How the library decodes `spec` among other requests.
    /// `min_length_in_use`: a request the decoder was set up with earlier set
    /// minTokens. TensorRT-LLM's penalty layer masks the end id below a minimum
    /// length only once some request has set one (layers/penaltyLayer.cpp:
    /// `mUseMinLength |= ...minLength.has_value()`, never reset); from then on a
    /// request that sets none gets the default, 1 (defaultDecodingParams.h,
    /// `getMinLength`). So an unset minTokens means no minimum, or 1, depending
    /// on the other requests: the bridge always sends 0.
    pub fn in_batch(spec: &RequestSpec, min_length_in_use: bool) -> Self {
        // Defaults: layers/defaultDecodingParams.h (topK 0, topP 0.0, temperature
        // 1.0, seed 0); an unset end id is -1
        // (batch_manager/createNewDecoderRequests.cpp, `endId.value_or(-1)`).
        let mut top_k = spec.top_k.unwrap_or(0);
        let mut top_p = spec.top_p.unwrap_or(0.0);
        // kernels/samplingTopKKernels.cu, setupTopKRuntimeArgs: k == 0 && p == 0
        // becomes k = 1 (greedy); k > 0 && p == 0 becomes p = 1.
        if top_k == 0 && top_p == 0.0 {
            top_k = 1;
        }
        if top_k > 0 && top_p == 0.0 {
            top_p = 1.0;
        }
        LibraryDecoding {
            greedy: top_k == 1,
            top_k,
            top_p,
            temperature: spec.temperature.unwrap_or(1.0),
            seed: spec.seed.unwrap_or(0),
            min_tokens: spec.min_tokens.unwrap_or(if min_length_in_use { 1 } else { 0 }),
            end_id: spec.end_id.unwrap_or(-1),
        }
    }
}

/// What TensorRT-LLM refuses when a request is built or enqueued (the bridge
/// reports the exception as the enqueue's error): executor/samplingConfig.cpp's
/// checks and executor/requestImpl.h's `validate`.
pub fn library_refusal(spec: &RequestSpec) -> Option<String> {
    let bad = |what: &str| Some(format!("[TensorRT-LLM][ERROR] Assertion failed: {what}"));
    if spec.input_ids.is_empty() {
        return bad("!mInputTokenIds.empty()");
    }
    if spec.max_tokens <= 0 {
        return bad("mMaxNewTokens > 0");
    }
    if spec.top_k.is_some_and(|k| k < 0) {
        return bad("topK.value() >= 0");
    }
    if spec.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return bad("topP.value() > 0.f && topP.value() <= 1.f");
    }
    if spec.temperature.is_some_and(|t| t.is_nan() || t < 0.0) {
        return bad("temperature.value() >= 0.f");
    }
    if spec.min_tokens.is_some_and(|m| m < 0) {
        return bad("minTokens.value() >= 0");
    }
    if spec.repetition_penalty.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return bad("repetitionpenalty.value() > 0.f");
    }
    None
}

#[derive(Default)]
struct State {
    next_id: u64,
    enqueued: Vec<(u64, RequestSpec)>,
    queue: VecDeque<RawResponse>,
    finished: Vec<u64>,
    cancelled: Vec<u64>,
    await_calls: usize,
    shutdown_calls: usize,
    /// Requests neither finished nor cancelled when shutdown was called.
    left_active: Vec<u64>,
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

/// The stand-in's log-probability of the `k`-th generated token.
pub fn scripted_log_prob(k: usize) -> f32 {
    -0.25 * (k as f32 + 1.0)
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
    /// response, the last one final, as TensorRT-LLM streams with
    /// `returnAllGeneratedTokens` off. What the library adds when asked, it adds:
    /// context logits (the prompt's rows) on every response, generation logits
    /// for each new token, log-probs ([`scripted_log_prob`]) cumulative over the
    /// stream. Logits rows have `vocab` + 2 (padding) values: 1 at the row's
    /// token, 0 elsewhere. `await_responses` hands out one response per call.
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

    /// The requests still active (enqueued, their final response not yet
    /// taken, not cancelled) when shutdown was called: the real shutdown would
    /// have waited for each to generate its last token.
    pub fn left_active(&self) -> Vec<u64> {
        self.lock().left_active.clone()
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
            dtype: LogitsDType::F32,
            row_len,
            data,
        }
    }

    fn script_responses(&self, id: u64, spec: &RequestSpec, script: &Script) -> Vec<RawResponse> {
        let decoding = LibraryDecoding::of(spec);
        let (mut tokens, mut finish) = script(spec);
        tokens.truncate(usize::try_from(spec.max_tokens).unwrap_or(0));
        // The end token stops generation and is left out of the output: sampling
        // kernels do not count it in the sequence length (samplingTopKKernels.cu,
        // "Do not increase seq len when EOS is generated"), so createResult
        // (batch_manager/llmRequest.cpp) never returns it.
        let mut ended_by_end_id = false;
        if decoding.end_id >= 0
            && let Some(at) = tokens.iter().position(|&t| t == decoding.end_id)
        {
            tokens.truncate(at);
            finish = 1;
            ended_by_end_id = true;
        }
        // One response per token; the end token's step sends a last one with
        // nothing new.
        let n = if ended_by_end_id {
            tokens.len() + 1
        } else {
            tokens.len().max(1)
        };
        let context = spec.return_context_logits.then(|| self.logits(&spec.input_ids));
        (0..n)
            .map(|i| {
                let mine: Vec<i32> = tokens.get(i).copied().into_iter().collect();
                let is_final = i + 1 == n;
                let so_far = (i + 1).min(tokens.len());
                RawResponse {
                    request_id: id,
                    is_final,
                    num_beams: 1,
                    finish_reason: Some(if is_final { finish } else { 0 }),
                    // llmRequest.cpp createResult: logProbs are all of them so far,
                    // contextLogits are set on every response.
                    log_probs: if spec.return_log_probs {
                        (0..so_far).map(scripted_log_prob).collect()
                    } else {
                        Vec::new()
                    },
                    context_logits: context.clone(),
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

/// executor/executorImpl.cpp: enqueueRequest, awaitResponses and cancelRequest
/// refuse to run once shutdown was called.
fn refuse_after_shutdown(s: &State) -> Result<(), String> {
    if s.shutdown_calls > 0 {
        return Err("[TensorRT-LLM][ERROR] Assertion failed: Shutdown called".into());
    }
    Ok(())
}

impl ExecutorApi for StandInExecutor {
    fn enqueue(&self, request: &RequestSpec) -> Result<u64, String> {
        let mut s = self.lock();
        refuse_after_shutdown(&s)?;
        if let Some(e) = &s.fail_enqueue {
            return Err(e.clone());
        }
        if let Some(e) = library_refusal(request) {
            return Err(e);
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
        refuse_after_shutdown(&s)?;
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
        refuse_after_shutdown(&s)?;
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
        let mut s = self.lock();
        // A second call returns at once (executorImpl.cpp).
        if s.shutdown_calls == 0 {
            // The real shutdown() returns only once no request is active: its
            // execution loop runs while one is (executorImpl.cpp). Nothing would
            // advance the stand-in's requests any more, so instead of waiting it
            // records them; tests assert that none is left.
            let left: Vec<u64> = s
                .enqueued
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !s.finished.contains(id) && !s.cancelled.contains(id))
                .collect();
            s.left_active = left;
        }
        s.shutdown_calls += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_minimum_length_depends_on_the_other_requests() {
        let unset = RequestSpec::default();
        assert_eq!(LibraryDecoding::of(&unset).min_tokens, 0);
        assert_eq!(LibraryDecoding::in_batch(&unset, true).min_tokens, 1);
        let zero = RequestSpec {
            min_tokens: Some(0),
            ..RequestSpec::default()
        };
        assert_eq!(LibraryDecoding::in_batch(&zero, true).min_tokens, 0);
    }
}
