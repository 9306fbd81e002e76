//! The TensorRT-LLM backend serving continuously (`executor::service`) over
//! the in-memory stand-in executor (`executor::stand_in`, which follows the
//! library's streaming, end-token and log-prob behaviour): requests join the
//! executor at any time, at most `max_batch` at once; tokens reach each
//! request's sink read as `generate` reads them; a stop or a gone client
//! cancels the request in the executor. No model runs: tokens are scripted.

mod common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::request;
use trtllm_minitron::executor::backend::ExecutorBackend;
use trtllm_minitron::executor::stand_in::{StandInExecutor, last, scripted_log_prob, step};
use trtllm_minitron::generation::service::{Event, EventSink, Refusal};
use trtllm_minitron::generation::{
    ContextLimit, FinishReason, Flow, GenerationBackend, GenerationService, Request, ServiceOptions,
};

const POLL: Duration = Duration::from_millis(10);

/// A sink that records its events and closes, or answers Stop, after some tokens.
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    done: Sender<()>,
    stop_after: Option<usize>,
    close_after: Option<usize>,
}

impl EventSink for Recorder {
    fn send(&mut self, event: Event) -> Flow {
        assert!(!self.is_closed(), "{event:?} sent to a closed sink");
        let ends = !matches!(event, Event::Token { .. });
        let mut events = self.events.lock().unwrap();
        events.push(event);
        let tokens = events.iter().filter(|e| matches!(e, Event::Token { .. })).count();
        drop(events);
        if ends {
            let _ = self.done.send(());
        }
        if self.stop_after.is_some_and(|n| tokens >= n) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn is_closed(&self) -> bool {
        let tokens = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Token { .. }))
            .count();
        self.close_after.is_some_and(|n| tokens >= n)
    }
}

fn recorder(done: &Sender<()>) -> (Arc<Mutex<Vec<Event>>>, Box<Recorder>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Box::new(Recorder {
        events: Arc::clone(&events),
        done: done.clone(),
        stop_after: None,
        close_after: None,
    });
    (events, sink)
}

fn tokens(events: &Mutex<Vec<Event>>) -> Vec<(u32, Option<f32>)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Token { token, logprob } => Some((*token, *logprob)),
            _ => None,
        })
        .collect()
}

fn last_event(events: &Mutex<Vec<Event>>) -> Option<Event> {
    events.lock().unwrap().last().cloned()
}

fn wait(done: &Receiver<()>, n: usize) {
    for _ in 0..n {
        done.recv_timeout(Duration::from_secs(10))
            .expect("the request ends");
    }
}

/// Continues a prompt with last+1, last+2, ... (finish kLENGTH), or ends with
/// the end id 0 after two tokens when the prompt starts with 0.
fn counting() -> StandInExecutor {
    StandInExecutor::scripted(
        64,
        Box::new(|spec| {
            let last = *spec.input_ids.last().unwrap();
            if spec.input_ids[0] == 0 {
                (vec![last + 1, last + 2, 0], 1)
            } else {
                ((1..=spec.max_tokens).map(|k| last + k).collect(), 3)
            }
        }),
    )
}

fn service(api: Arc<StandInExecutor>, options: &ServiceOptions) -> Box<dyn GenerationService> {
    let mut backend = ExecutorBackend::new(api, 64, Some(0), POLL);
    backend.max_batch_size = Some(4);
    backend.max_input_len = Some(16);
    backend.context_limit = Some(ContextLimit {
        tokens: 32,
        source: "the engine's max_seq_len",
    });
    Box::new(backend).into_service(options).unwrap()
}

#[test]
fn tokens_stream_to_each_sink_with_the_end_token_and_per_token_log_probs() {
    let api = Arc::new(counting());
    let service = service(Arc::clone(&api), &ServiceOptions::default());
    let limits = service.limits();
    assert_eq!(
        (
            limits.max_batch,
            limits.max_prompt_tokens,
            limits.max_sequence_tokens
        ),
        (4, 16, 32),
        "the engine's build sizes"
    );
    let (done, finished) = mpsc::channel();
    let (a, sink_a) = recorder(&done);
    let (b, sink_b) = recorder(&done);
    service.submit(request(&[5, 6], 3), sink_a).unwrap();
    let with_logprobs = Request {
        want_logprobs: true,
        ..request(&[0, 9], 8)
    };
    service.submit(with_logprobs, sink_b).unwrap();
    wait(&finished, 2);
    assert_eq!(tokens(&a), vec![(7, None), (8, None), (9, None)]);
    assert_eq!(last_event(&a), Some(Event::Finished(FinishReason::Length)));
    // The end token TensorRT-LLM leaves out comes back, without a log-prob;
    // the cumulative log-probs become one per token.
    assert_eq!(
        tokens(&b),
        vec![
            (10, Some(scripted_log_prob(0))),
            (11, Some(scripted_log_prob(1))),
            (0, None)
        ]
    );
    assert_eq!(last_event(&b), Some(Event::Finished(FinishReason::EndId)));
    assert_eq!(service.load().running, 0);
}

#[test]
fn requests_beyond_max_batch_wait_and_a_full_queue_refuses() {
    // No script: responses come only when the test pushes them.
    let api = Arc::new(StandInExecutor::new());
    let options = ServiceOptions {
        max_batch: Some(1),
        max_queue: 1,
        ..ServiceOptions::default()
    };
    let service = service(Arc::clone(&api), &options);
    let (done, finished) = mpsc::channel();
    let (a, sink_a) = recorder(&done);
    let (b, sink_b) = recorder(&done);
    let (_c, sink_c) = recorder(&done);
    service.submit(request(&[1], 2), sink_a).unwrap();
    service.submit(request(&[2], 2), sink_b).unwrap();
    assert_eq!(
        service.submit(request(&[3], 2), sink_c).unwrap_err(),
        Refusal::QueueFull { max_queue: 1 }
    );
    assert_eq!(api.enqueued().len(), 1, "the second waits for a place");
    assert_eq!(service.load().waiting, 1);
    let first = api.enqueued()[0].0;
    api.push(step(first, &[40]));
    api.push(last(first, &[41], 3));
    wait(&finished, 1);
    assert_eq!(tokens(&a), vec![(40, None), (41, None)]);
    // The first left the executor: the second is enqueued now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.enqueued().len() < 2 {
        assert!(Instant::now() < deadline, "the waiting request is never enqueued");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(api.enqueued()[1].1.input_ids, vec![2]);
    let second = api.enqueued()[1].0;
    api.push(last(second, &[50], 3));
    wait(&finished, 1);
    assert_eq!(tokens(&b), vec![(50, None)]);
}

#[test]
fn a_stop_or_a_gone_client_cancels_the_request_in_the_executor() {
    let api = Arc::new(counting());
    let service = service(Arc::clone(&api), &ServiceOptions::default());
    let (done, finished) = mpsc::channel();
    let (stopped, mut sink) = recorder(&done);
    sink.stop_after = Some(2);
    service.submit(request(&[10], 20), sink).unwrap();
    wait(&finished, 1);
    assert_eq!(tokens(&stopped).len(), 2);
    assert_eq!(last_event(&stopped), Some(Event::Finished(FinishReason::Stop)));
    let id = api.enqueued()[0].0;
    assert!(api.cancelled().contains(&id), "a stop cancels in the executor");

    let (gone, mut sink) = recorder(&done);
    sink.close_after = Some(1);
    service.submit(request(&[20], 20), sink).unwrap();
    let id = api.enqueued()[1].0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api.cancelled().contains(&id) {
        assert!(
            Instant::now() < deadline,
            "a closed sink's request is never cancelled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(tokens(&gone).len() <= 1);
    assert!(
        finished.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing is sent to a closed sink"
    );
}

#[test]
fn cancel_all_and_close() {
    let api = Arc::new(StandInExecutor::new());
    let options = ServiceOptions {
        max_batch: Some(1),
        max_queue: 4,
        ..ServiceOptions::default()
    };
    let service = service(Arc::clone(&api), &options);
    let (done, finished) = mpsc::channel();
    let (a, sink_a) = recorder(&done);
    let (b, sink_b) = recorder(&done);
    service.submit(request(&[1], 2), sink_a).unwrap();
    service.submit(request(&[2], 2), sink_b).unwrap();
    service.close();
    let (_c, sink_c) = recorder(&done);
    assert_eq!(
        service.submit(request(&[3], 2), sink_c).unwrap_err(),
        Refusal::ShuttingDown
    );
    service.cancel_all();
    wait(&finished, 2);
    assert_eq!(last_event(&a), Some(Event::Finished(FinishReason::Cancelled)));
    assert_eq!(last_event(&b), Some(Event::Finished(FinishReason::Cancelled)));
    assert_eq!(
        api.cancelled(),
        vec![api.enqueued()[0].0],
        "the running one is cancelled in the executor"
    );
}

#[test]
fn a_request_longer_than_the_engine_takes_is_refused() {
    let api = Arc::new(counting());
    let service = service(api, &ServiceOptions::default());
    let (done, _finished) = mpsc::channel();
    let (_a, sink) = recorder(&done);
    let refused = service.submit(request(&[1; 20], 20), sink).unwrap_err();
    assert!(
        matches!(&refused, Refusal::TooLarge(why) if why.contains("32")),
        "{refused:?}"
    );
}
