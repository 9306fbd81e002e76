//! The response router: one dedicated thread blocks in `awaitResponses` with a
//! timeout (it never spins) and sends each response to the channel of the
//! request it belongs to. A request whose receiver is gone (the caller dropped
//! it), or whose response cannot be used, is cancelled in the executor;
//! dropping the router cancels and fails every request still in flight, stops
//! the thread and shuts the executor down. Context logits,
//! which TensorRT-LLM attaches to every response of a request, reach the
//! request once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::api::{ExecutorApi, RequestSpec};
use super::mapping::{Step, check_response};

/// What a request's channel receives. After `Failed`, or a `Step` with
/// `is_final`, nothing more comes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Step(Step),
    /// This request failed (its response had an error, or the executor did).
    Failed(String),
}

impl Event {
    fn ends(&self) -> bool {
        match self {
            Event::Step(s) => s.is_final,
            Event::Failed(_) => true,
        }
    }
}

/// Events carry the tag the request was submitted with, so one receiver can
/// serve several requests.
pub type Routed = (usize, Event);

struct Route {
    tag: usize,
    tx: Sender<Routed>,
    /// Context logits were routed already: later copies are dropped.
    context_logits_sent: bool,
}

struct Inner<E> {
    api: E,
    routes: Mutex<HashMap<u64, Route>>,
    stop: AtomicBool,
    /// Why the router stopped routing, once it has.
    dead: Mutex<Option<String>>,
    poll: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E: ExecutorApi> Inner<E> {
    fn run(&self) {
        while !self.stop.load(Ordering::Acquire) {
            match self.api.await_responses(self.poll) {
                Ok(responses) => {
                    for raw in responses {
                        let id = raw.request_id;
                        let reported_by_executor = raw.error.is_some();
                        let event = match check_response(raw) {
                            Ok(step) => Event::Step(step),
                            Err(e) => {
                                if !reported_by_executor {
                                    // A response we refuse (no beams, an unknown finish
                                    // reason, ...) ends the request here; end it in the
                                    // executor too, or it runs on (and shutdown waits for it).
                                    let _ = self.api.cancel(id);
                                }
                                Event::Failed(e)
                            }
                        };
                        self.route(id, event);
                    }
                }
                Err(e) => {
                    if !self.stop.load(Ordering::Acquire) {
                        self.fail_all(&format!("the executor failed while waiting for responses: {e}"));
                    }
                    return;
                }
            }
        }
    }

    fn route(&self, id: u64, mut event: Event) {
        let mut routes = lock(&self.routes);
        // Unknown ids are requests already finished, failed or abandoned.
        let Some(route) = routes.get_mut(&id) else {
            return;
        };
        if let Event::Step(step) = &mut event
            && step.context_logits.is_some()
        {
            if route.context_logits_sent {
                step.context_logits = None;
            }
            route.context_logits_sent = true;
        }
        let ends = event.ends();
        if route.tx.send((route.tag, event)).is_err() {
            // The caller dropped the request: stop spending the GPU on it.
            routes.remove(&id);
            drop(routes);
            let _ = self.api.cancel(id);
        } else if ends {
            routes.remove(&id);
        }
    }

    fn fail_all(&self, why: &str) {
        *lock(&self.dead) = Some(why.to_string());
        for (_, route) in lock(&self.routes).drain() {
            let _ = route.tx.send((route.tag, Event::Failed(why.to_string())));
        }
    }
}

/// Owns the executor and the thread that routes its responses.
pub struct Router<E: ExecutorApi> {
    inner: Arc<Inner<E>>,
    thread: Option<JoinHandle<()>>,
}

impl<E: ExecutorApi> Router<E> {
    /// Starts the routing thread; `poll` is the `awaitResponses` timeout, which
    /// bounds how long shutdown waits for the thread.
    pub fn start(api: E, poll: Duration) -> Self {
        let inner = Arc::new(Inner {
            api,
            routes: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            dead: Mutex::new(None),
            poll,
        });
        let worker = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("trtllm-responses".into())
            .spawn(move || worker.run())
            .expect("cannot start the response thread");
        Router {
            inner,
            thread: Some(thread),
        }
    }

    /// The executor, for tests and reports.
    pub fn api(&self) -> &E {
        &self.inner.api
    }

    /// Enqueues a request whose events go to `tx`, tagged with `tag`.
    /// Registration happens under the routing lock, so no response can arrive
    /// before its route exists.
    pub fn submit(&self, spec: &RequestSpec, tag: usize, tx: Sender<Routed>) -> Result<u64, String> {
        if let Some(why) = lock(&self.inner.dead).clone() {
            return Err(why);
        }
        let mut routes = lock(&self.inner.routes);
        let id = self.inner.api.enqueue(spec)?;
        routes.insert(
            id,
            Route {
                tag,
                tx,
                context_logits_sent: false,
            },
        );
        Ok(id)
    }

    /// Enqueues one request with its own channel.
    pub fn request(&self, spec: &RequestSpec) -> Result<RequestHandle<'_, E>, String> {
        let (tx, rx) = mpsc::channel();
        let id = self.submit(spec, 0, tx)?;
        Ok(RequestHandle {
            router: self,
            id,
            rx,
            done: false,
        })
    }

    /// Cancels a request in the executor and stops routing its responses.
    pub fn cancel(&self, id: u64) -> Result<(), String> {
        lock(&self.inner.routes).remove(&id);
        self.inner.api.cancel(id)
    }

    /// Requests still waiting for their final response.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.routes).len()
    }
}

impl<E: ExecutorApi> Drop for Router<E> {
    fn drop(&mut self) {
        // TensorRT-LLM's shutdown() returns only once no request is active (the
        // execution loop of executor/executorImpl.cpp runs while one is), and
        // refuses cancelRequest once called: a request still generating would
        // hold it until its last token. So every request still routed is
        // cancelled first (each ends at the next iteration) and failed here.
        let why = "the executor was shut down";
        *lock(&self.inner.dead) = Some(why.to_string());
        let in_flight: Vec<(u64, Route)> = lock(&self.inner.routes).drain().collect();
        for (id, route) in in_flight {
            let _ = self.inner.api.cancel(id);
            let _ = route.tx.send((route.tag, Event::Failed(why.to_string())));
        }
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.inner.api.shutdown();
    }
}

/// Why waiting on one request ended without a step.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitError {
    /// Nothing arrived within the timeout (the request was cancelled).
    TimedOut(Duration),
    Failed(String),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::TimedOut(d) => write!(f, "no response from the executor in {d:?}"),
            WaitError::Failed(e) => f.write_str(e),
        }
    }
}

/// One request with its own channel; dropping it before its final response
/// cancels it in the executor.
pub struct RequestHandle<'a, E: ExecutorApi> {
    router: &'a Router<E>,
    id: u64,
    rx: Receiver<Routed>,
    done: bool,
}

impl<E: ExecutorApi> RequestHandle<'_, E> {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next step; `Ok(None)` once the final one was returned. A timeout
    /// cancels the request.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Step>, WaitError> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv_timeout(timeout) {
            Ok((_, Event::Step(step))) => {
                self.done = step.is_final;
                Ok(Some(step))
            }
            Ok((_, Event::Failed(e))) => {
                self.done = true;
                Err(WaitError::Failed(e))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.done = true;
                let _ = self.router.cancel(self.id);
                Err(WaitError::TimedOut(timeout))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Err(WaitError::Failed("the response router stopped".into()))
            }
        }
    }

    /// Cancels the request; its remaining responses are dropped.
    pub fn cancel(&mut self) -> Result<(), String> {
        self.done = true;
        self.router.cancel(self.id)
    }
}

impl<E: ExecutorApi> Drop for RequestHandle<'_, E> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.router.cancel(self.id);
        }
    }
}
