//! The reference runtime serving continuously (`serve`): a scheduler thread
//! owns the model and a [`Batch`]. Before every step it drops waiting requests
//! whose client is gone and admits waiting ones, oldest first, while the batch
//! has room (`max_batch`) and their KV cache fits the budget (each reserves
//! its prompt plus `max_new_tokens`; the oldest waits rather than being
//! overtaken). Each step runs one forward pass over the running sequences'
//! next tokens and a chunk of the joining prompts, sends every new token to
//! its request's sink, and takes finished requests out, freeing their caches.
//! A sink that answers `Flow::Stop` or is closed ends its request at that
//! step. Once the batch has been empty for [`IDLE_RELEASE`], the memory the
//! finished requests freed goes back to the system (`free_memory`), so the
//! server's footprint after a burst returns to its idle size.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::generation::service::{
    Event, EventSink, GenerationService, Limits, Load, Refusal, ServiceOptions,
};
use crate::generation::{FinishReason, Flow, Request};
use crate::runtime::free_memory;
use crate::runtime::generate::Batch;
use crate::runtime::model::Model;

/// Requests decoding together when `--max-batch` is not given.
pub const DEFAULT_MAX_BATCH: usize = 16;
/// KV cache budget when none is given: 4 GiB.
pub const DEFAULT_KV_CACHE_BYTES: u64 = 4 << 30;
/// Prompt tokens per step when none is given.
pub const DEFAULT_PREFILL_CHUNK: usize = 256;
/// How long the batch stays empty before freed memory goes back to the
/// system: long enough that a client's next request, sent right after the
/// last one ended, does not pay for the release and for faulting the pages in
/// again; short enough that memory returns soon after traffic stops.
pub const IDLE_RELEASE: Duration = Duration::from_millis(100);

pub struct ReferenceService {
    shared: Arc<Shared>,
    limits: Limits,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Pending>,
    running: usize,
    /// No new requests (`close`).
    closed: bool,
    /// `cancel_all` was called; the scheduler clears it.
    cancel_all: bool,
    /// The service is dropped: cancel everything and end the thread.
    stop: bool,
}

struct Pending {
    request: Request,
    sink: Box<dyn EventSink>,
}

/// A request in the batch.
struct Admitted {
    sink: Box<dyn EventSink>,
    /// Its KV cache reservation, in bytes.
    reserved: u64,
}

/// What the scheduler needs besides the model.
struct Plan {
    max_batch: usize,
    kv_budget: u64,
    kv_per_token: u64,
    prefill_chunk: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReferenceService {
    /// Starts the scheduler thread, which owns `model` from now on.
    pub fn start(model: Model, options: &ServiceOptions) -> Result<Self> {
        let kv_per_token = model.kv_bytes_per_token();
        let plan = Plan {
            max_batch: options.max_batch.unwrap_or(DEFAULT_MAX_BATCH),
            kv_budget: options.kv_cache_bytes.unwrap_or(DEFAULT_KV_CACHE_BYTES),
            kv_per_token,
            prefill_chunk: options.prefill_chunk.unwrap_or(DEFAULT_PREFILL_CHUNK),
        };
        if plan.max_batch == 0 {
            return Err(Error::InvalidInput("--max-batch 0: must be at least 1".into()));
        }
        let max_pos = model.config.max_position_embeddings;
        let kv_cache_tokens = usize::try_from(plan.kv_budget / kv_per_token.max(1)).unwrap_or(usize::MAX);
        if kv_cache_tokens < 2 {
            return Err(Error::InvalidInput(format!(
                "--kv-cache-memory {}: too small for even one request of one prompt token \
                 and one new token ({kv_per_token} bytes of KV cache per token)",
                plan.kv_budget
            )));
        }
        let limits = Limits {
            max_sequence_tokens: max_pos,
            max_prompt_tokens: max_pos,
            kv_cache_tokens: Some(kv_cache_tokens),
            max_batch: plan.max_batch,
            max_queue: options.max_queue,
            vocab_size: model.vocab_size(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("reference-scheduler".into())
            .spawn(move || schedule(&model, &worker, &plan))
            .map_err(|e| Error::InvalidOutput(format!("cannot start the scheduler thread: {e}")))?;
        Ok(ReferenceService {
            shared,
            limits,
            thread: Some(thread),
        })
    }
}

impl GenerationService for ReferenceService {
    fn submit(&self, request: Request, sink: Box<dyn EventSink>) -> Result<(), Refusal> {
        if let Some(problem) = self
            .limits
            .problem(request.input_ids.len(), request.max_new_tokens)
        {
            return Err(Refusal::TooLarge(problem));
        }
        let mut st = lock(&self.shared.state);
        if st.closed || st.stop {
            return Err(Refusal::ShuttingDown);
        }
        if st.waiting.len() + st.running >= self.limits.max_batch + self.limits.max_queue {
            return Err(Refusal::QueueFull {
                max_queue: self.limits.max_queue,
            });
        }
        st.waiting.push_back(Pending { request, sink });
        self.shared.wake.notify_one();
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn load(&self) -> Load {
        let st = lock(&self.shared.state);
        Load {
            waiting: st.waiting.len(),
            running: st.running,
        }
    }

    fn close(&self) {
        lock(&self.shared.state).closed = true;
    }

    fn cancel_all(&self) {
        lock(&self.shared.state).cancel_all = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for ReferenceService {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Tells a request's sink it ended, unless its receiver is gone.
fn finish(sink: &mut dyn EventSink, reason: FinishReason) {
    if !sink.is_closed() {
        sink.send(Event::Finished(reason));
    }
}

/// The scheduler loop: admit, step, hand out events, take finished requests out.
fn schedule(model: &Model, shared: &Shared, plan: &Plan) {
    let mut batch = Batch::with_prefill_chunk(model, plan.prefill_chunk);
    let mut admitted: HashMap<usize, Admitted> = HashMap::new();
    let mut reserved = 0u64;
    // Steps were run since memory was last released.
    let mut stepped = false;
    loop {
        {
            let mut st = lock(&shared.state);
            loop {
                if st.stop || std::mem::take(&mut st.cancel_all) {
                    batch.cancel_all();
                    for mut p in st.waiting.drain(..) {
                        finish(p.sink.as_mut(), FinishReason::Cancelled);
                    }
                    if st.stop {
                        for (_, mut a) in admitted.drain() {
                            finish(a.sink.as_mut(), FinishReason::Cancelled);
                        }
                        st.running = 0;
                        return;
                    }
                    break;
                }
                // A client gone while its request waited: nothing to tell it.
                st.waiting.retain(|p| !p.sink.is_closed());
                while admitted.len() < plan.max_batch {
                    let Some(front) = st.waiting.front() else { break };
                    let need = Batch::reserved_tokens(model, &front.request) as u64 * plan.kv_per_token;
                    if reserved + need > plan.kv_budget {
                        break;
                    }
                    let Some(p) = st.waiting.pop_front() else { break };
                    let id = batch.admit(p.request);
                    admitted.insert(
                        id,
                        Admitted {
                            sink: p.sink,
                            reserved: need,
                        },
                    );
                    reserved += need;
                }
                st.running = admitted.len();
                if !admitted.is_empty() {
                    break;
                }
                if !stepped {
                    st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                let (guard, waited) = shared
                    .wake
                    .wait_timeout(st, IDLE_RELEASE)
                    .unwrap_or_else(|p| p.into_inner());
                st = guard;
                if waited.timed_out() && st.waiting.is_empty() {
                    // Without the lock: a request submitted meanwhile waits
                    // only for the release, not for the lock.
                    drop(st);
                    free_memory::release_to_os();
                    stepped = false;
                    st = lock(&shared.state);
                }
            }
        }
        for (&id, a) in &admitted {
            if a.sink.is_closed() {
                batch.cancel(id);
            }
        }
        stepped = true;
        // A panic in a step (a bug) must not take the scheduler down with
        // requests still waiting on it: it fails this step's requests instead.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch.step(&mut |e| match admitted.get_mut(&e.request) {
                Some(a) => a.sink.send(Event::Token {
                    token: e.token,
                    logprob: e.logprob,
                }),
                None => Flow::Stop,
            })
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::InvalidOutput(format!("internal error (a panic: {what})")))
        });
        if let Err(e) = stepped {
            // Requests are checked before they are submitted, so this is a bug or
            // a broken checkpoint: every request in this step fails, the service
            // goes on with an empty batch.
            let why = format!("the reference runtime failed: {e}");
            batch.cancel_all();
            for (_, mut a) in admitted.drain() {
                a.sink.send(Event::Failed(why.clone()));
            }
            batch.take_finished();
            reserved = 0;
            continue;
        }
        for (id, generated) in batch.take_finished() {
            if let Some(mut a) = admitted.remove(&id) {
                reserved -= a.reserved;
                finish(
                    a.sink.as_mut(),
                    generated.finish_reason.unwrap_or(FinishReason::Length),
                );
            }
        }
    }
}
