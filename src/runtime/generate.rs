//! Batched generation on the reference runtime: all prompts are prefilled in one
//! forward pass, then every unfinished sequence advances one token per step
//! (weights are read once per step for the whole batch).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::generation::{FinishReason, Flow, Generated, Request, TokenEvent};
use crate::runtime::model::{KvCache, Model, Row};
use crate::runtime::sampling::Sampler;

struct Active {
    index: usize,
    sampler: Sampler,
    history: Vec<u32>,
}

/// Runs every request to completion. `on_token` sees each new token as soon as
/// it exists; [`Flow::Stop`] stops that request with `FinishReason::Stop`.
pub fn generate(
    model: &Model,
    requests: &[Request],
    on_token: &mut dyn FnMut(TokenEvent) -> Flow,
    cancel: &AtomicBool,
) -> Result<Vec<Generated>> {
    let max_pos = model.config.max_position_embeddings;
    let vocab = model.vocab_size();
    for (i, r) in requests.iter().enumerate() {
        if r.input_ids.is_empty() {
            return Err(Error::InvalidInput(format!(
                "prompt {i} is empty: there is nothing to continue"
            )));
        }
        if r.input_ids.len() > max_pos {
            return Err(Error::InvalidInput(format!(
                "prompt {i} has {} tokens, more than the model's max_position_embeddings {max_pos}",
                r.input_ids.len()
            )));
        }
        if let Some(&bad) = r.input_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidInput(format!(
                "prompt {i}: token id {bad} is out of range: the vocabulary has {vocab} tokens (ids 0..{})",
                vocab - 1
            )));
        }
    }

    let mut results: Vec<Generated> = vec![Generated::default(); requests.len()];
    let mut caches: Vec<KvCache> = requests.iter().map(|_| model.new_cache()).collect();

    // Prefill every prompt in one pass.
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut wanted = Vec::new();
    for (seq, r) in requests.iter().enumerate() {
        for (pos, &token) in r.input_ids.iter().enumerate() {
            if r.want_context_logits || pos + 1 == r.input_ids.len() {
                wanted.push(rows.len());
            }
            rows.push(Row { seq, token, pos });
        }
    }
    let mut logits = model.forward(&rows, &mut caches, &wanted)?;
    let prefill = started.elapsed().as_secs_f64();

    let mut active: Vec<Active> = Vec::new();
    let mut step_logits: Vec<Vec<f32>> = Vec::new();
    for (seq, r) in requests.iter().enumerate() {
        let count = if r.want_context_logits {
            r.input_ids.len()
        } else {
            1
        };
        let mine: Vec<Vec<f32>> = logits.drain(..count).collect();
        step_logits.push(mine.last().cloned().unwrap_or_default());
        if r.want_context_logits {
            results[seq].context_logits = mine;
        }
        results[seq].prefill_seconds = prefill;
        active.push(Active {
            index: seq,
            sampler: Sampler::new(r.sampling.clone()),
            history: r.input_ids.clone(),
        });
    }

    let decode_started = Instant::now();
    loop {
        // Sample one token for every active sequence from its latest logits.
        let mut next_rows = Vec::new();
        let mut still = Vec::new();
        for (a, logits) in active.drain(..).zip(step_logits.drain(..)) {
            let mut a = a;
            let r = &requests[a.index];
            let out = &mut results[a.index];
            if r.max_new_tokens == 0 || a.history.len() >= max_pos {
                out.finish_reason = Some(FinishReason::Length);
                continue;
            }
            let token = a.sampler.sample(&logits, &a.history);
            if r.want_logprobs && Some(token) != r.end_id {
                out.logprobs.push(a.sampler.log_prob(token));
            }
            if r.want_generation_logits {
                out.generation_logits.push(logits);
            }
            out.output_ids.push(token);
            a.history.push(token);
            let flow = on_token(TokenEvent {
                request: a.index,
                token,
            });
            out.finish_reason = if flow == Flow::Stop {
                Some(FinishReason::Stop)
            } else if Some(token) == r.end_id {
                Some(FinishReason::EndId)
            } else if out.output_ids.len() >= r.max_new_tokens || a.history.len() >= max_pos {
                Some(FinishReason::Length)
            } else {
                None
            };
            if out.finish_reason.is_none() {
                next_rows.push(Row {
                    seq: a.index,
                    token,
                    pos: a.history.len() - 1,
                });
                still.push(a);
            }
        }
        if still.is_empty() {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            for a in &still {
                results[a.index].finish_reason = Some(FinishReason::Cancelled);
            }
            break;
        }
        let all: Vec<usize> = (0..next_rows.len()).collect();
        step_logits = model.forward(&next_rows, &mut caches, &all)?;
        active = still;
    }
    let decode = decode_started.elapsed().as_secs_f64();
    for r in &mut results {
        r.decode_seconds = decode;
    }
    Ok(results)
}
