//! The TensorRT-LLM backend's `generate` over the in-memory stand-in executor
//! (`executor::stand_in`): request mapping, streaming to `on_token`, stops,
//! Ctrl-C, per-request errors, logits, timeouts. No TensorRT-LLM, engine or
//! model runs here: the stand-in's tokens are scripted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use trtllm_minitron::executor::backend::ExecutorBackend;
use trtllm_minitron::executor::stand_in::StandInExecutor;
use trtllm_minitron::runtime::backend::GenerationBackend;
use trtllm_minitron::runtime::generate::{FinishReason, Request};
use trtllm_minitron::runtime::sampling::SamplingParams;

const POLL: Duration = Duration::from_millis(20);

fn request(prompt: &[u32], max_new_tokens: usize) -> Request {
    Request {
        input_ids: prompt.to_vec(),
        max_new_tokens,
        sampling: SamplingParams::default(),
        end_id: Some(0),
        want_context_logits: false,
        want_generation_logits: false,
    }
}

/// Continues each prompt with last+1, last+2, ... up to max_tokens (finish
/// kLENGTH), or with an end id 0 after two tokens when the prompt starts with 0.
fn counting() -> StandInExecutor {
    StandInExecutor::scripted(
        64,
        Box::new(|spec| {
            let last = *spec.input_ids.last().unwrap();
            if spec.input_ids[0] == 0 {
                (vec![last + 1, 0], 1)
            } else {
                ((1..=spec.max_tokens).map(|k| last + k).collect(), 3)
            }
        }),
    )
}

#[test]
fn several_prompts_are_enqueued_together_and_streamed() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let requests = vec![request(&[5, 6], 3), request(&[0, 9], 8), request(&[20], 2)];
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let stop = AtomicBool::new(false);
    let out = backend
        .generate(
            &requests,
            &mut |i, t| {
                seen[i].push(t);
                true
            },
            &stop,
        )
        .unwrap();
    assert_eq!(api.enqueued().len(), 3);
    assert!(
        api.enqueued()
            .iter()
            .all(|(_, s)| s.streaming && s.top_k == Some(1))
    );
    assert_eq!(out[0].output_ids, vec![7, 8, 9]);
    assert_eq!(out[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(out[1].output_ids, vec![10, 0]);
    assert_eq!(out[1].finish_reason, Some(FinishReason::EndId));
    assert_eq!(out[2].output_ids, vec![21, 22]);
    for (o, s) in out.iter().zip(&seen) {
        assert_eq!(&o.output_ids, s);
    }
    assert!(api.cancelled().is_empty());
}

#[test]
fn a_caller_stop_cancels_that_request_mid_stream() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let requests = vec![request(&[1], 50), request(&[30], 3)];
    let stop = AtomicBool::new(false);
    let out = backend
        .generate(&requests, &mut |i, t| !(i == 0 && t == 4), &stop)
        .unwrap();
    assert_eq!(out[0].output_ids, vec![2, 3, 4]);
    assert_eq!(out[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(out[1].output_ids, vec![31, 32, 33]);
    let first_id = api.enqueued()[0].0;
    assert_eq!(api.cancelled(), vec![first_id]);
}

#[test]
fn ctrl_c_cancels_every_unfinished_request() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let requests = vec![request(&[1], 1000), request(&[2], 1000)];
    let stop = AtomicBool::new(false);
    let mut count = 0;
    let out = backend
        .generate(
            &requests,
            &mut |_, _| {
                count += 1;
                if count == 5 {
                    stop.store(true, Ordering::Relaxed);
                }
                true
            },
            &stop,
        )
        .unwrap();
    assert!(
        out.iter()
            .all(|g| g.finish_reason == Some(FinishReason::Cancelled))
    );
    assert!(out.iter().all(|g| g.output_ids.len() < 1000));
    assert_eq!(api.cancelled().len(), 2);
}

#[test]
fn an_error_for_one_prompt_names_it_and_lets_the_others_finish() {
    let api = Arc::new(StandInExecutor::scripted(
        64,
        Box::new(|spec| {
            // An unknown finish reason for the second prompt.
            let code = if spec.input_ids[0] == 2 { 9 } else { 3 };
            (vec![5], code)
        }),
    ));
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    let requests = vec![request(&[1], 1), request(&[2], 1), request(&[3], 1)];
    let stop = AtomicBool::new(false);
    let mut finished = Vec::new();
    let err = backend
        .generate(
            &requests,
            &mut |i, _| {
                finished.push(i);
                true
            },
            &stop,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("prompt 1") && err.contains("finish reason 9"),
        "{err}"
    );
    assert!(!err.contains("prompt 0") && !err.contains("prompt 2"), "{err}");
    finished.sort();
    assert_eq!(finished, vec![0, 2]);
}

#[test]
fn logits_are_returned_without_the_vocabulary_padding() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let mut r = request(&[3, 4], 2);
    r.want_context_logits = true;
    r.want_generation_logits = true;
    let stop = AtomicBool::new(false);
    let out = backend.generate(&[r], &mut |_, _| true, &stop).unwrap();
    let g = &out[0];
    assert_eq!(g.output_ids, vec![5, 6]);
    assert_eq!(g.context_logits.len(), 2);
    assert_eq!(g.generation_logits.len(), 2);
    assert!(g.generation_logits.iter().all(|row| row.len() == 64));
    assert_eq!(g.generation_logits[0][5], 1.0);
    assert_eq!(g.context_logits[1][4], 1.0);
}

#[test]
fn a_silent_executor_times_out_with_a_clear_error() {
    let api = Arc::new(StandInExecutor::new());
    let mut backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    backend.response_timeout = Duration::from_millis(200);
    let stop = AtomicBool::new(false);
    let err = backend
        .generate(&[request(&[1], 4)], &mut |_, _| true, &stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no response"), "{err}");
    assert_eq!(api.cancelled().len(), 1);
}

#[test]
fn an_enqueue_failure_is_an_error() {
    let api = Arc::new(StandInExecutor::new());
    api.fail_enqueue("the executor is shutting down");
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    let stop = AtomicBool::new(false);
    let err = backend
        .generate(&[request(&[1], 4)], &mut |_, _| true, &stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot enqueue prompt 0"), "{err}");
}

#[test]
fn dropping_the_backend_shuts_the_executor_down() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    assert_eq!(backend.name(), "trtllm");
    drop(backend);
    assert_eq!(api.shutdown_calls(), 1);
}
