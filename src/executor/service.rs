//! The executor serving continuously (`serve --model ENGINE`): TensorRT-LLM
//! batches in flight by itself, so this only keeps at most `max_batch`
//! requests in the executor (the engine's `max_batch_size` by default; more
//! wait here, up to `max_queue`), and one pump thread takes every routed
//! response off a shared channel and hands its tokens to the request's sink,
//! read as [`ExecutorBackend::generate`] reads them
//! ([`Step::tokens_with_logprobs`]). A sink that answers `Flow::Stop`, or
//! whose receiver is gone, has its request cancelled in the executor.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::api::ExecutorApi;
use super::backend::ExecutorBackend;
use super::mapping::{Step, request_spec};
use super::router::{Event as Routed, Routed as Tagged};
use crate::error::{Error, Result};
use crate::generation::service::{
    Event, EventSink, GenerationService, Limits, Load, Refusal, ServiceOptions,
};
use crate::generation::{FinishReason, Flow, GenerationBackend, Request};

/// How often the pump looks for gone clients and shutdown when no response comes.
const WAKE: Duration = Duration::from_millis(20);
/// Requests in the executor when neither `--max-batch` nor the engine says.
const FALLBACK_MAX_BATCH: usize = 8;

pub struct ExecutorService<E: ExecutorApi> {
    inner: Arc<Inner<E>>,
    limits: Limits,
    thread: Option<JoinHandle<()>>,
}

struct Inner<E: ExecutorApi> {
    backend: ExecutorBackend<E>,
    state: Mutex<State>,
    /// Every request's responses come here, tagged.
    tx: Mutex<Sender<Tagged>>,
    max_batch: usize,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<(Request, Box<dyn EventSink>)>,
    /// In the executor, by tag.
    active: HashMap<usize, Active>,
    next_tag: usize,
    closed: bool,
    cancel_all: bool,
    stop: bool,
}

struct Active {
    id: u64,
    end_id: Option<u32>,
    sink: Box<dyn EventSink>,
    /// Tokens passed on so far (not counting an end token).
    emitted: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E: ExecutorApi> ExecutorService<E> {
    /// Starts the pump thread; the service owns the backend (and its executor) from now on.
    pub fn start(backend: ExecutorBackend<E>, options: &ServiceOptions) -> Result<Self> {
        let max_batch = options
            .max_batch
            .or(backend.max_batch_size)
            .unwrap_or(FALLBACK_MAX_BATCH);
        if max_batch == 0 {
            return Err(Error::InvalidInput("--max-batch 0: must be at least 1".into()));
        }
        let max_sequence_tokens = backend.context_limit.map_or(usize::MAX, |l| l.tokens);
        let limits = Limits {
            max_sequence_tokens,
            max_prompt_tokens: backend.max_input_len.unwrap_or(max_sequence_tokens),
            kv_cache_tokens: None,
            max_batch,
            max_queue: options.max_queue,
            vocab_size: backend.vocab_size(),
        };
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            backend,
            state: Mutex::new(State::default()),
            tx: Mutex::new(tx),
            max_batch,
        });
        let worker = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("trtllm-serve".into())
            .spawn(move || worker.pump(&rx))
            .map_err(|e| Error::InvalidOutput(format!("cannot start the serving thread: {e}")))?;
        Ok(ExecutorService {
            inner,
            limits,
            thread: Some(thread),
        })
    }
}

impl<E: ExecutorApi> Inner<E> {
    /// Enqueues a request in the executor; a refusal fails it.
    fn enqueue(&self, st: &mut State, request: Request, mut sink: Box<dyn EventSink>) {
        let tag = st.next_tag;
        st.next_tag += 1;
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let submitted = request_spec(&request, true, self.backend.vocab_size())
            .and_then(|spec| self.backend.router().submit(&spec, tag, tx));
        match submitted {
            Ok(id) => {
                st.active.insert(
                    tag,
                    Active {
                        id,
                        end_id: request.end_id,
                        sink,
                        emitted: 0,
                    },
                );
            }
            Err(e) => {
                sink.send(Event::Failed(format!("TensorRT-LLM executor: {e}")));
            }
        }
    }

    /// Moves waiting requests into the executor while there is room.
    fn admit(&self, st: &mut State) {
        st.waiting.retain(|(_, sink)| !sink.is_closed());
        while st.active.len() < self.max_batch {
            let Some((request, sink)) = st.waiting.pop_front() else {
                break;
            };
            self.enqueue(st, request, sink);
        }
    }

    fn pump(&self, rx: &Receiver<Tagged>) {
        loop {
            let routed = match rx.recv_timeout(WAKE) {
                Ok(routed) => Some(routed),
                Err(RecvTimeoutError::Timeout) => None,
                // `Inner` holds a sender, so this does not happen while it lives.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut st = lock(&self.state);
            if let Some((tag, event)) = routed {
                self.deliver(&mut st, tag, event);
            }
            if st.stop || std::mem::take(&mut st.cancel_all) {
                for (_, mut sink) in st.waiting.drain(..) {
                    finish(sink.as_mut(), FinishReason::Cancelled);
                }
                for (_, mut a) in st.active.drain() {
                    let _ = self.backend.router().cancel(a.id);
                    finish(a.sink.as_mut(), FinishReason::Cancelled);
                }
                if st.stop {
                    return;
                }
            }
            let gone: Vec<usize> = st
                .active
                .iter()
                .filter(|(_, a)| a.sink.is_closed())
                .map(|(&tag, _)| tag)
                .collect();
            for tag in gone {
                if let Some(a) = st.active.remove(&tag) {
                    let _ = self.backend.router().cancel(a.id);
                }
            }
            self.admit(&mut st);
        }
    }

    /// One routed response to its request's sink.
    fn deliver(&self, st: &mut State, tag: usize, event: Routed) {
        let Some(a) = st.active.get_mut(&tag) else {
            // Cancelled or finished already.
            return;
        };
        let step: Step = match event {
            Routed::Failed(e) => {
                a.sink.send(Event::Failed(format!("TensorRT-LLM executor: {e}")));
                st.active.remove(&tag);
                return;
            }
            Routed::Step(step) => step,
        };
        let tokens = step.tokens_with_logprobs(a.end_id, a.emitted);
        a.emitted += step.tokens.len();
        for (token, logprob) in tokens {
            // A gone client, or a stop string: the executor need not go on.
            if a.sink.is_closed() || a.sink.send(Event::Token { token, logprob }) == Flow::Stop {
                let _ = self.backend.router().cancel(a.id);
                finish(a.sink.as_mut(), FinishReason::Stop);
                st.active.remove(&tag);
                return;
            }
        }
        if step.is_final {
            finish(a.sink.as_mut(), step.finish.unwrap_or(FinishReason::Length));
            st.active.remove(&tag);
        }
    }
}

/// Tells a request's sink it ended, unless its receiver is gone.
fn finish(sink: &mut dyn EventSink, reason: FinishReason) {
    if !sink.is_closed() {
        sink.send(Event::Finished(reason));
    }
}

impl<E: ExecutorApi> GenerationService for ExecutorService<E> {
    fn submit(&self, request: Request, sink: Box<dyn EventSink>) -> Result<(), Refusal> {
        if let Some(problem) = self
            .limits
            .problem(request.input_ids.len(), request.max_new_tokens)
        {
            return Err(Refusal::TooLarge(problem));
        }
        let mut st = lock(&self.inner.state);
        if st.closed || st.stop {
            return Err(Refusal::ShuttingDown);
        }
        if st.waiting.len() + st.active.len() >= self.limits.max_batch + self.limits.max_queue {
            return Err(Refusal::QueueFull {
                max_queue: self.limits.max_queue,
            });
        }
        st.waiting.push_back((request, sink));
        self.inner.admit(&mut st);
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn load(&self) -> Load {
        let st = lock(&self.inner.state);
        Load {
            waiting: st.waiting.len(),
            running: st.active.len(),
        }
    }

    fn close(&self) {
        lock(&self.inner.state).closed = true;
    }

    fn cancel_all(&self) {
        lock(&self.inner.state).cancel_all = true;
    }
}

impl<E: ExecutorApi> Drop for ExecutorService<E> {
    fn drop(&mut self) {
        lock(&self.inner.state).stop = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
