//! Continuous batching on the reference runtime (`runtime::service`), below
//! HTTP: requests of different prompt lengths joining a running batch at
//! different steps, long prompts prefilled in chunks, a batch-size limit, a
//! KV cache budget, a queue limit, clients that go away. Greedy requests must
//! give, token for token, what `run` gives each of them alone.

mod common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use trtllm_minitron::generation::service::{Event, EventSink, Refusal};
use trtllm_minitron::generation::{
    FinishReason, Flow, GenerationBackend, Request, SamplingParams, ServiceOptions,
};
use trtllm_minitron::runtime::model::Model;

/// The demo model converted once into `dir`.
fn demo_checkpoint(dir: &std::path::Path) -> std::path::PathBuf {
    let ckpt = dir.join("ckpt");
    let out = cli(&[
        "convert",
        "--model",
        fixtures().join("demo-shakespeare").to_str().unwrap(),
        "--output",
        ckpt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    ckpt
}

fn greedy(input_ids: Vec<u32>, max_new_tokens: usize) -> Request {
    Request {
        input_ids,
        max_new_tokens,
        sampling: SamplingParams::default(),
        end_id: Some(3),
        want_context_logits: false,
        want_generation_logits: false,
        want_logprobs: false,
    }
}

/// Events of every request, in the order the service sent them, tagged with
/// the request's number; `close_after` closes a request's sink after that
/// many tokens (its client went away).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(usize, Event)>>>);

struct LogSink {
    index: usize,
    log: Log,
    tx: Sender<()>,
    close_after: Option<usize>,
    tokens: usize,
}

impl EventSink for LogSink {
    fn send(&mut self, event: Event) -> Flow {
        if self.is_closed() {
            panic!("request {} got {event:?} after its sink closed", self.index);
        }
        if matches!(event, Event::Token { .. }) {
            self.tokens += 1;
        }
        let ends = !matches!(event, Event::Token { .. });
        self.log.0.lock().unwrap().push((self.index, event));
        if ends {
            let _ = self.tx.send(());
        }
        Flow::Continue
    }

    fn is_closed(&self) -> bool {
        self.close_after.is_some_and(|n| self.tokens >= n)
    }
}

impl Log {
    fn sink(&self, index: usize, tx: &Sender<()>, close_after: Option<usize>) -> Box<dyn EventSink> {
        Box::new(LogSink {
            index,
            log: self.clone(),
            tx: tx.clone(),
            close_after,
            tokens: 0,
        })
    }

    fn tokens(&self, index: usize) -> Vec<u32> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Token { token, .. } if *i == index => Some(*token),
                _ => None,
            })
            .collect()
    }

    fn ending(&self, index: usize) -> Option<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(i, e)| *i == index && !matches!(e, Event::Token { .. }))
            .map(|(_, e)| e.clone())
    }
}

fn wait_for(done: &Receiver<()>, n: usize) {
    for _ in 0..n {
        done.recv_timeout(Duration::from_secs(120))
            .expect("every request ends");
    }
}

/// `run --json` on one prompt alone: its output ids.
fn run_alone(ckpt: &std::path::Path, ids: &[u32], max_new_tokens: usize) -> Vec<u32> {
    let ids_arg: Vec<String> = ids.iter().map(u32::to_string).collect();
    let out = cli(&[
        "run",
        "--model",
        ckpt.to_str().unwrap(),
        "--input-ids",
        &ids_arg.join(","),
        "--max-new-tokens",
        &max_new_tokens.to_string(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    v["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Prompts of different lengths (1 to 41 tokens), spread over the vocabulary.
fn prompts() -> Vec<Vec<u32>> {
    [7usize, 1, 23, 4, 41, 12]
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| 4 + ((k * 131 + i * 977) % 2040) as u32).collect())
        .collect()
}

#[test]
fn greedy_tokens_in_a_continuous_batch_equal_run_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = demo_checkpoint(dir.path());
    let model = Model::open(&ckpt).unwrap();
    // Four decode together, prompts join five tokens per step: the 41-token
    // prompt is prefilled over nine steps while others decode.
    let options = ServiceOptions {
        max_batch: Some(4),
        max_queue: 16,
        prefill_chunk: Some(5),
        ..ServiceOptions::default()
    };
    let service = Box::new(model).into_service(&options).unwrap();
    let log = Log::default();
    let (tx, done) = mpsc::channel();
    let prompts = prompts();
    let max_new: Vec<usize> = (0..prompts.len()).map(|k| 6 + 5 * k).collect();
    // Half now, half once the first ones are decoding: they join mid-batch.
    for (k, p) in prompts.iter().enumerate().take(3) {
        service
            .submit(greedy(p.clone(), max_new[k]), log.sink(k, &tx, None))
            .unwrap();
    }
    while log.tokens(0).len() < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    for (k, p) in prompts.iter().enumerate().skip(3) {
        service
            .submit(greedy(p.clone(), max_new[k]), log.sink(k, &tx, None))
            .unwrap();
    }
    wait_for(&done, prompts.len());
    for (k, p) in prompts.iter().enumerate() {
        let alone = run_alone(&ckpt, p, max_new[k]);
        assert_eq!(log.tokens(k), alone, "request {k} ({} prompt tokens)", p.len());
        let expected = if alone.last() == Some(&3) {
            FinishReason::EndId
        } else {
            FinishReason::Length
        };
        assert_eq!(log.ending(k), Some(Event::Finished(expected)), "request {k}");
    }
    assert_eq!(service.load().running, 0);
}

#[test]
fn the_kv_budget_and_batch_limit_hold_and_every_request_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = demo_checkpoint(dir.path());
    let model = Model::open(&ckpt).unwrap();
    let per_token = model.kv_bytes_per_token();
    // Each request reserves 10 + 10 positions; the budget holds two of them.
    let options = ServiceOptions {
        max_batch: Some(3),
        max_queue: 8,
        kv_cache_bytes: Some(per_token * 45),
        prefill_chunk: None,
    };
    let service = Box::new(model).into_service(&options).unwrap();
    assert_eq!(service.limits().kv_cache_tokens, Some(45));
    let log = Log::default();
    let (tx, done) = mpsc::channel();
    for k in 0..5 {
        let prompt: Vec<u32> = (0..10).map(|i| 100 + 10 * k + i).collect();
        let request = Request {
            end_id: None,
            ..greedy(prompt, 10)
        };
        service.submit(request, log.sink(k as usize, &tx, None)).unwrap();
    }
    wait_for(&done, 5);
    // Replay the log: never more than two requests between their first token and their end.
    let mut started = std::collections::BTreeSet::new();
    let mut most = 0;
    for (i, e) in log.0.lock().unwrap().iter() {
        match e {
            Event::Token { .. } => {
                started.insert(*i);
            }
            _ => {
                started.remove(i);
            }
        }
        most = most.max(started.len());
    }
    assert_eq!(most, 2, "two requests fit the KV budget at a time");
    for k in 0..5 {
        assert_eq!(log.tokens(k).len(), 10, "request {k}");
    }
    // A request that can never fit is refused, naming the budget.
    let (tx2, _done2) = mpsc::channel();
    let refused = service
        .submit(greedy(vec![5; 40], 10), log.sink(9, &tx2, None))
        .unwrap_err();
    assert!(
        matches!(&refused, Refusal::TooLarge(why) if why.contains("--kv-cache-memory")),
        "{refused:?}"
    );
}

#[test]
fn a_full_queue_refuses_and_a_gone_client_is_cancelled_at_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = demo_checkpoint(dir.path());
    let model = Model::open(&ckpt).unwrap();
    let options = ServiceOptions {
        max_batch: Some(1),
        max_queue: 1,
        ..ServiceOptions::default()
    };
    let service = Box::new(model).into_service(&options).unwrap();
    let log = Log::default();
    let (tx, done) = mpsc::channel();
    let long = |p: u32| Request {
        end_id: None,
        ..greedy(vec![p, p + 1], 400)
    };
    // The first runs (and its client leaves after 5 tokens), the second waits, the third is refused.
    service.submit(long(10), log.sink(0, &tx, Some(5))).unwrap();
    service
        .submit(greedy(vec![20, 21], 4), log.sink(1, &tx, None))
        .unwrap();
    let refused = service.submit(long(30), log.sink(2, &tx, None)).unwrap_err();
    assert_eq!(refused, Refusal::QueueFull { max_queue: 1 });
    // Request 1 can only run once request 0 is gone: 5 tokens, not 400.
    wait_for(&done, 1);
    assert_eq!(log.tokens(0).len(), 5);
    assert_eq!(log.ending(0), None, "nothing is sent to a closed sink");
    assert_eq!(log.tokens(1).len(), 4);
    // Closed, the service refuses new work; cancel_all ends what is taken.
    service.close();
    assert_eq!(
        service.submit(long(40), log.sink(3, &tx, None)).unwrap_err(),
        Refusal::ShuttingDown
    );
}

#[test]
fn cancel_all_ends_running_and_waiting_requests() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = demo_checkpoint(dir.path());
    let model = Model::open(&ckpt).unwrap();
    let options = ServiceOptions {
        max_batch: Some(1),
        max_queue: 4,
        ..ServiceOptions::default()
    };
    let service = Box::new(model).into_service(&options).unwrap();
    let log = Log::default();
    let (tx, done) = mpsc::channel();
    for k in 0..3u32 {
        let request = Request {
            end_id: None,
            ..greedy(vec![50 + k], 500)
        };
        service.submit(request, log.sink(k as usize, &tx, None)).unwrap();
    }
    while log.tokens(0).is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    service.cancel_all();
    wait_for(&done, 3);
    for k in 0..3 {
        assert_eq!(
            log.ending(k),
            Some(Event::Finished(FinishReason::Cancelled)),
            "request {k}"
        );
    }
    assert!(log.tokens(0).len() < 500);
    assert!(log.tokens(1).is_empty() && log.tokens(2).is_empty());
}
