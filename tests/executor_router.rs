//! The executor response router against the in-memory stand-in executor
//! (`executor::stand_in`): no TensorRT-LLM, no engine, no model runs here.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use trtllm_minitron::executor::api::{LogitsDType, RawLogits, RequestSpec};
use trtllm_minitron::executor::router::{Event, Router, WaitError};
use trtllm_minitron::executor::stand_in::{StandInExecutor, error, last, step};
use trtllm_minitron::generation::FinishReason;

const POLL: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(5);

fn spec() -> RequestSpec {
    RequestSpec {
        input_ids: vec![1, 2, 3],
        max_tokens: 4,
        streaming: true,
        ..RequestSpec::default()
    }
}

#[test]
fn out_of_order_responses_reach_their_own_requests() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut a = router.request(&spec()).unwrap();
    let mut b = router.request(&spec()).unwrap();
    assert_ne!(a.id(), b.id());
    let api = router.api();
    // b's responses first, interleaved with a's.
    api.push(step(b.id(), &[20]));
    api.push(step(a.id(), &[10]));
    api.push(last(b.id(), &[21], 1));
    api.push(last(a.id(), &[11], 3));

    let s = b.next(WAIT).unwrap().unwrap();
    assert_eq!((s.tokens.clone(), s.is_final), (vec![20], false));
    let s = b.next(WAIT).unwrap().unwrap();
    assert_eq!(
        (s.tokens.clone(), s.finish),
        (vec![21], Some(FinishReason::EndId))
    );
    assert_eq!(b.next(WAIT), Ok(None));
    let s = a.next(WAIT).unwrap().unwrap();
    assert_eq!(s.tokens, vec![10]);
    let s = a.next(WAIT).unwrap().unwrap();
    assert_eq!(
        (s.tokens.clone(), s.finish),
        (vec![11], Some(FinishReason::Length))
    );
    assert_eq!(router.in_flight(), 0);
}

#[test]
fn an_error_fails_only_its_own_request() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut ok1 = router.request(&spec()).unwrap();
    let mut bad = router.request(&spec()).unwrap();
    let mut ok2 = router.request(&spec()).unwrap();
    let api = router.api();
    api.push(step(ok1.id(), &[1]));
    api.push(error(bad.id(), "input length exceeds max_input_len"));
    api.push(last(ok2.id(), &[2], 1));
    api.push(last(ok1.id(), &[3], 1));
    match bad.next(WAIT) {
        Err(WaitError::Failed(e)) => assert!(e.contains("max_input_len"), "{e}"),
        other => panic!("expected the error, got {other:?}"),
    }
    assert_eq!(ok2.next(WAIT).unwrap().unwrap().tokens, vec![2]);
    assert_eq!(ok1.next(WAIT).unwrap().unwrap().tokens, vec![1]);
    assert!(ok1.next(WAIT).unwrap().unwrap().is_final);
}

#[test]
fn unknown_finish_reasons_and_empty_beams_are_per_request_errors() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut unknown = router.request(&spec()).unwrap();
    let mut empty = router.request(&spec()).unwrap();
    let api = router.api();
    api.push(last(unknown.id(), &[1], 42));
    let mut no_beams = last(empty.id(), &[], 1);
    no_beams.num_beams = 0;
    api.push(no_beams);
    assert!(matches!(unknown.next(WAIT), Err(WaitError::Failed(e)) if e.contains("42")));
    assert!(matches!(empty.next(WAIT), Err(WaitError::Failed(e)) if e.contains("no beams")));
    // Refused here, so ended in the executor too: it would otherwise generate on.
    let mut cancelled = router.api().cancelled();
    cancelled.sort();
    assert_eq!(cancelled, vec![unknown.id(), empty.id()]);
}

#[test]
fn an_executor_error_is_not_cancelled_again() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut bad = router.request(&spec()).unwrap();
    router.api().push(error(
        bad.id(),
        "Prompt length (70) exceeds maximum input length (64).",
    ));
    assert!(matches!(bad.next(WAIT), Err(WaitError::Failed(_))));
    assert!(router.api().cancelled().is_empty());
}

#[test]
fn a_silent_request_times_out_and_is_cancelled_without_spinning() {
    let router = Router::start(StandInExecutor::new(), Duration::from_millis(100));
    let mut r = router.request(&spec()).unwrap();
    let started = Instant::now();
    assert_eq!(
        r.next(Duration::from_millis(300)),
        Err(WaitError::TimedOut(Duration::from_millis(300)))
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300));
    assert_eq!(router.api().cancelled(), vec![r.id()]);
    // ~300 ms at a 100 ms awaitResponses timeout: a handful of calls, not a spin.
    let calls = router.api().await_calls();
    assert!(
        calls <= 10,
        "awaitResponses was called {calls} times in {elapsed:?}"
    );
}

#[test]
fn cancelling_mid_stream_ends_the_stream() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut r = router.request(&spec()).unwrap();
    router.api().push(step(r.id(), &[7]));
    assert_eq!(r.next(WAIT).unwrap().unwrap().tokens, vec![7]);
    r.cancel().unwrap();
    router.api().push(step(r.id(), &[8]));
    assert_eq!(r.next(WAIT), Ok(None));
    assert_eq!(router.api().cancelled(), vec![r.id()]);
    assert_eq!(router.in_flight(), 0);
}

#[test]
fn dropping_a_request_cancels_it() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let r = router.request(&spec()).unwrap();
    let id = r.id();
    drop(r);
    assert_eq!(router.api().cancelled(), vec![id]);
    assert_eq!(router.in_flight(), 0);
}

#[test]
fn a_receiver_dropped_while_streaming_is_cancelled_by_the_router() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let (tx, rx) = mpsc::channel();
    let id = router.submit(&spec(), 0, tx).unwrap();
    drop(rx);
    router.api().push(step(id, &[1]));
    let deadline = Instant::now() + WAIT;
    while router.api().cancelled().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(router.api().cancelled(), vec![id]);
}

#[test]
fn shutdown_with_requests_in_flight_fails_them_and_shuts_the_executor_down() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let (tx, rx) = mpsc::channel();
    router.submit(&spec(), 0, tx.clone()).unwrap();
    router.submit(&spec(), 1, tx).unwrap();
    assert_eq!(router.in_flight(), 2);
    let started = Instant::now();
    drop(router);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut tags: Vec<usize> = rx
        .iter()
        .map(|(tag, e)| {
            assert!(matches!(&e, Event::Failed(m) if m.contains("shut down")), "{e:?}");
            tag
        })
        .collect();
    tags.sort();
    assert_eq!(tags, vec![0, 1]);
}

#[test]
fn requests_in_flight_are_cancelled_before_the_executor_shuts_down() {
    // TensorRT-LLM's shutdown() waits for every active request to finish
    // (executorImpl.cpp), and refuses cancelRequest once called.
    let api = Arc::new(StandInExecutor::new());
    let router = Router::start(Arc::clone(&api), POLL);
    let (tx, _rx) = mpsc::channel();
    let a = router.submit(&spec(), 0, tx.clone()).unwrap();
    let b = router.submit(&spec(), 1, tx).unwrap();
    let done = router.request(&spec()).unwrap();
    router.api().push(last(done.id(), &[1], 3));
    let mut done = done;
    assert!(done.next(WAIT).unwrap().unwrap().is_final);
    drop(done);
    drop(router);
    let mut cancelled = api.cancelled();
    cancelled.sort();
    assert_eq!(cancelled, vec![a, b]);
    assert_eq!(api.left_active(), Vec::<u64>::new());
    assert_eq!(api.shutdown_calls(), 1);
}

#[test]
fn dropping_the_router_shuts_the_executor_down_once() {
    let api = Arc::new(StandInExecutor::new());
    let router = Router::start(Arc::clone(&api), POLL);
    assert_eq!(api.shutdown_calls(), 0);
    drop(router);
    assert_eq!(api.shutdown_calls(), 1);
}

#[test]
fn a_failing_executor_fails_every_request_and_refuses_new_ones() {
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut a = router.request(&spec()).unwrap();
    router.api().fail_await("CUDA error: an illegal memory access");
    assert!(matches!(a.next(WAIT), Err(WaitError::Failed(e)) if e.contains("illegal memory access")));
    assert!(router.request(&spec()).is_err());
}

#[test]
fn enqueue_errors_are_returned() {
    let router = Router::start(StandInExecutor::new(), POLL);
    router.api().fail_enqueue("queue full");
    assert_eq!(router.request(&spec()).err(), Some("queue full".to_string()));
    assert_eq!(router.in_flight(), 0);
}

#[test]
fn context_logits_sent_with_every_response_reach_the_request_once() {
    // TensorRT-LLM sets contextLogits on every streaming response of a request
    // that asked for them (batch_manager/llmRequest.cpp, createResult).
    let router = Router::start(StandInExecutor::new(), POLL);
    let mut r = router.request(&spec()).unwrap();
    let mut other = router.request(&spec()).unwrap();
    let logits = RawLogits {
        dtype: LogitsDType::F32,
        row_len: 1,
        data: vec![0; 12],
    };
    let with_logits = |mut raw: trtllm_minitron::executor::api::RawResponse| {
        raw.context_logits = Some(logits.clone());
        raw
    };
    let api = router.api();
    api.push(with_logits(step(r.id(), &[1])));
    api.push(with_logits(step(other.id(), &[7])));
    api.push(with_logits(step(r.id(), &[2])));
    api.push(with_logits(last(r.id(), &[3], 3)));
    let got: Vec<bool> = (0..3)
        .map(|_| r.next(WAIT).unwrap().unwrap().context_logits.is_some())
        .collect();
    assert_eq!(got, vec![true, false, false]);
    // Each request gets its own first copy.
    assert!(other.next(WAIT).unwrap().unwrap().context_logits.is_some());
}
