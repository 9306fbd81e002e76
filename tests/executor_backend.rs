//! The TensorRT-LLM backend's `generate` over the in-memory stand-in executor
//! (`executor::stand_in`, which follows the library's defaults and streaming
//! behaviour): request mapping, streaming to `on_token`, stops, Ctrl-C,
//! per-request errors, logits, log-probs, timeouts. No TensorRT-LLM, engine or
//! model runs here: the stand-in's tokens are scripted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::request;
use trtllm_minitron::executor::backend::ExecutorBackend;
use trtllm_minitron::executor::stand_in::{LibraryDecoding, StandInExecutor, scripted_log_prob};
use trtllm_minitron::generation::{FinishReason, Flow, GenerationBackend, SamplingParams};

const POLL: Duration = Duration::from_millis(20);

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
            &mut |e| {
                seen[e.request].push(e.token);
                Flow::Continue
            },
            &stop,
        )
        .unwrap();
    assert_eq!(api.enqueued().len(), 3);
    assert!(
        api.enqueued()
            .iter()
            .all(|(_, s)| s.streaming && s.top_k == Some(1) && s.top_p == Some(1.0))
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
        .generate(
            &requests,
            &mut |e| {
                if e.request == 0 && e.token == 4 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
            &stop,
        )
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
            &mut |_| {
                count += 1;
                if count == 5 {
                    stop.store(true, Ordering::Relaxed);
                }
                Flow::Continue
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
            &mut |e| {
                finished.push(e.request);
                Flow::Continue
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
    let out = backend.generate(&[r], &mut |_| Flow::Continue, &stop).unwrap();
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
        .generate(&[request(&[1], 4)], &mut |_| Flow::Continue, &stop)
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
        .generate(&[request(&[1], 4)], &mut |_| Flow::Continue, &stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot enqueue prompt 0"), "{err}");
}

#[test]
fn a_response_that_cannot_be_used_cancels_every_unfinished_request() {
    // The stand-in's logits rows have 8 + 2 values; a backend expecting a
    // vocabulary of 64 cannot read them, and returns an error at the first one.
    let api = Arc::new(StandInExecutor::scripted(
        8,
        Box::new(|spec| ((1..=spec.max_tokens).map(|k| k % 8).collect(), 3)),
    ));
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    let mut with_logits = request(&[5], 50);
    with_logits.want_generation_logits = true;
    let stop = AtomicBool::new(false);
    let err = backend
        .generate(&[with_logits, request(&[6], 50)], &mut |_| Flow::Continue, &stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fewer than the vocabulary"), "{err}");
    let mut cancelled = api.cancelled();
    cancelled.sort();
    let ids: Vec<u64> = api.enqueued().iter().map(|(id, _)| *id).collect();
    assert_eq!(cancelled, ids);
    drop(backend);
    // Nothing left for TensorRT-LLM's shutdown to wait for.
    assert_eq!(api.left_active(), Vec::<u64>::new());
}

#[test]
fn dropping_the_backend_shuts_the_executor_down() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    assert_eq!(backend.name(), "trtllm");
    drop(backend);
    assert_eq!(api.shutdown_calls(), 1);
}

/// Greedy: last+1, last+2, ...; sampled (as the library decodes the request):
/// 100+seed, 101+seed, ...
fn greedy_or_sampled() -> StandInExecutor {
    StandInExecutor::scripted(
        512,
        Box::new(|spec| {
            let d = LibraryDecoding::of(spec);
            let last = *spec.input_ids.last().unwrap();
            let tokens = (1..=spec.max_tokens)
                .map(|k| {
                    if d.greedy {
                        last + k
                    } else {
                        100 + d.seed as i32 + k
                    }
                })
                .collect();
            (tokens, 3)
        }),
    )
}

#[test]
fn temperature_sampling_is_not_turned_into_greedy_by_the_library_defaults() {
    let api = Arc::new(greedy_or_sampled());
    let backend = ExecutorBackend::new(Arc::clone(&api), 512, None, POLL);
    let mut r = request(&[5], 3);
    r.sampling = SamplingParams {
        temperature: 0.8,
        seed: 4,
        ..SamplingParams::default()
    };
    let stop = AtomicBool::new(false);
    let out = backend.generate(&[r], &mut |_| Flow::Continue, &stop).unwrap();
    assert_eq!(out[0].output_ids, vec![105, 106, 107]);
    let (_, spec) = &api.enqueued()[0];
    let d = LibraryDecoding::of(spec);
    assert!(!d.greedy, "{spec:?}");
    // The same distribution as the reference: no top-k or nucleus cut, no minimum length.
    assert_eq!(
        (d.top_k, d.top_p, d.temperature, d.seed, d.min_tokens),
        (0, 1.0, 0.8, 4, 0)
    );
    assert_eq!(
        (
            spec.repetition_penalty,
            spec.presence_penalty,
            spec.frequency_penalty
        ),
        (Some(1.0), Some(0.0), Some(0.0))
    );
}

#[test]
fn every_decoding_option_is_set_explicitly() {
    let api = Arc::new(greedy_or_sampled());
    let backend = ExecutorBackend::new(Arc::clone(&api), 512, Some(2), POLL);
    let mut sampled = request(&[5], 2);
    sampled.sampling = SamplingParams {
        temperature: 0.7,
        top_k: 40,
        top_p: 0.9,
        repetition_penalty: 1.2,
        seed: 1,
    };
    let stop = AtomicBool::new(false);
    backend
        .generate(&[request(&[5], 2), sampled], &mut |_| Flow::Continue, &stop)
        .unwrap();
    for (_, s) in api.enqueued() {
        let options = [
            s.temperature.is_some(),
            s.top_k.is_some(),
            s.top_p.is_some(),
            s.seed.is_some(),
            s.repetition_penalty.is_some(),
            s.presence_penalty.is_some(),
            s.frequency_penalty.is_some(),
            s.min_tokens.is_some(),
            s.end_id.is_some(),
            s.pad_id.is_some(),
        ];
        assert!(options.iter().all(|&set| set), "{s:?}");
    }
    let s = &api.enqueued()[1].1;
    assert_eq!(
        (s.temperature, s.top_k, s.top_p, s.seed, s.repetition_penalty),
        (Some(0.7), Some(40), Some(0.9), Some(1), Some(1.2))
    );
}

#[test]
fn a_decoding_option_the_library_refuses_is_refused_before_enqueueing() {
    let api = Arc::new(greedy_or_sampled());
    let backend = ExecutorBackend::new(Arc::clone(&api), 512, None, POLL);
    let mut r = request(&[5], 2);
    r.sampling = SamplingParams {
        temperature: 1.0,
        top_k: 5000,
        ..SamplingParams::default()
    };
    let stop = AtomicBool::new(false);
    let err = backend
        .generate(&[r], &mut |_| Flow::Continue, &stop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt 0") && err.contains("--top-k 5000"), "{err}");
    assert!(api.enqueued().is_empty());
}

#[test]
fn cumulative_log_probs_are_not_duplicated() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let mut r = request(&[3], 3);
    r.want_logprobs = true;
    // Ends with the end token: TensorRT-LLM reports no log-prob for it.
    let mut eos = request(&[0, 9], 8);
    eos.want_logprobs = true;
    let stop = AtomicBool::new(false);
    let out = backend
        .generate(&[r, eos], &mut |_| Flow::Continue, &stop)
        .unwrap();
    let expected: Vec<f32> = (0..3).map(scripted_log_prob).collect();
    assert_eq!(out[0].output_ids, vec![4, 5, 6]);
    assert_eq!(out[0].logprobs, expected);
    assert_eq!(out[1].output_ids, vec![10, 0]);
    assert_eq!(out[1].logprobs, vec![scripted_log_prob(0)]);
    assert!(api.enqueued().iter().all(|(_, s)| s.return_log_probs));
}

#[test]
fn log_probs_stop_with_a_caller_stop() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let mut r = request(&[1], 50);
    r.want_logprobs = true;
    let stop = AtomicBool::new(false);
    let out = backend
        .generate(
            &[r],
            &mut |e| if e.token == 3 { Flow::Stop } else { Flow::Continue },
            &stop,
        )
        .unwrap();
    assert_eq!(out[0].output_ids, vec![2, 3]);
    assert_eq!(out[0].logprobs.len(), 2);
}

#[test]
fn the_end_token_the_library_leaves_out_is_returned_as_the_reference_does() {
    let api = Arc::new(counting());
    let backend = ExecutorBackend::new(Arc::clone(&api), 64, Some(0), POLL);
    let mut seen = Vec::new();
    let stop = AtomicBool::new(false);
    let out = backend
        .generate(
            &[request(&[0, 9], 8)],
            &mut |e| {
                seen.push(e.token);
                Flow::Continue
            },
            &stop,
        )
        .unwrap();
    assert_eq!(out[0].output_ids, vec![10, 0]);
    assert_eq!(seen, vec![10, 0]);
    assert_eq!(out[0].finish_reason, Some(FinishReason::EndId));
}

#[test]
fn context_logits_from_an_engine_that_does_not_gather_them_are_refused_before_enqueueing() {
    let api = Arc::new(counting());
    let mut backend = ExecutorBackend::new(Arc::clone(&api), 64, None, POLL);
    backend.context_logits_gathered = false;
    let mut r = request(&[3], 2);
    r.want_context_logits = true;
    let stop = AtomicBool::new(false);
    let err = backend
        .generate(&[r], &mut |_| Flow::Continue, &stop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--output-logits") && err.contains("gather_context_logits"),
        "{err}"
    );
    assert!(api.enqueued().is_empty());
}
