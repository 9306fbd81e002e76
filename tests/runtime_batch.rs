//! The reference runtime's Batch, which a server builds continuous batching
//! on: a request admitted while another is already decoding gets, greedily,
//! the same tokens, logits and log-probabilities, bit for bit, as when it runs
//! alone (the kernels sum every output row in one order whatever the batch).

mod common;

use std::sync::atomic::AtomicBool;

use common::*;
use trtllm_minitron::generation::{Flow, Generated, GenerationBackend, Request, SamplingParams};
use trtllm_minitron::runtime::generate::Batch;
use trtllm_minitron::runtime::model::Model;

fn greedy(input_ids: &[u32], max_new_tokens: usize) -> Request {
    Request {
        input_ids: input_ids.to_vec(),
        max_new_tokens,
        sampling: SamplingParams::default(),
        end_id: None,
        want_context_logits: false,
        want_generation_logits: true,
        want_logprobs: true,
    }
}

#[test]
fn a_request_admitted_mid_decode_continues_as_it_would_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let run = cli(&[
        "convert",
        "--model",
        fixtures().join("demo-shakespeare").to_str().unwrap(),
        "--output",
        ckpt.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let model = Model::open(&ckpt).unwrap();
    let (a, b) = (greedy(&[5, 300, 41, 1200, 7], 12), greedy(&[900, 33], 8));
    let stop = AtomicBool::new(false);
    let alone = |r: &Request| {
        model
            .generate(std::slice::from_ref(r), &mut |_| Flow::Continue, &stop)
            .unwrap()
            .remove(0)
    };
    let (a_alone, b_alone) = (alone(&a), alone(&b));

    let mut batch = Batch::new(&model);
    let mut seen = Vec::new();
    let mut on_token = |e: trtllm_minitron::generation::TokenEvent| {
        seen.push(e);
        Flow::Continue
    };
    assert_eq!(batch.admit(a.clone()), 0);
    for _ in 0..4 {
        batch.step(&mut on_token).unwrap();
    }
    assert_eq!(batch.admit(b.clone()), 1);
    while batch.running() > 0 {
        batch.step(&mut on_token).unwrap();
    }
    let results = batch.into_results();
    assert_eq!(results[0].output_ids, a_alone.output_ids);
    assert_eq!(results[1].output_ids, b_alone.output_ids);
    assert_eq!(results[1].logprobs.len(), 8);
    assert_eq!(results[1].generation_logits.len(), 8);
    // Bit-identical, not merely close: the batch must not change the sums.
    for (request, batched, alone) in [("a", &results[0], &a_alone), ("b", &results[1], &b_alone)] {
        let rows = |g: &Generated| {
            g.generation_logits
                .iter()
                .chain([&g.logprobs])
                .cloned()
                .collect::<Vec<_>>()
        };
        let (got, want) = (rows(batched), rows(alone));
        assert_eq!(got.len(), want.len());
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            let first = g.iter().zip(w).position(|(x, y)| x.to_bits() != y.to_bits());
            assert!(
                g.len() == w.len() && first.is_none(),
                "request {request}, row {step} (the last row holds the log-probabilities): \
                 element {first:?} differs batched and alone"
            );
        }
    }
    // Both streamed, b's first token at the fifth step.
    assert_eq!(seen.iter().filter(|e| e.request == 1).count(), 8);
    assert_eq!(seen[4].request, 0);
    assert_eq!(seen[5].request, 1);
}
