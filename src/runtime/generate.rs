//! Batched generation on the reference runtime. A [`Batch`] holds the
//! sequences generating together: requests join it with [`Batch::admit`] and
//! leave when they finish; every [`Batch::step`] runs one forward pass over
//! all their new rows (a joining prompt's whole prompt, a running sequence's
//! last token: weights are read once per step for the whole batch) and
//! samples each sequence's next token. [`generate`] admits every request at
//! once and steps until all are done; a server can admit between steps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::generation::{FinishReason, Flow, Generated, Request, TokenEvent};
use crate::runtime::model::{KvCache, Model, Row};
use crate::runtime::sampling::Sampler;

/// Runs every request to completion. `on_token` sees each new token as soon as
/// it exists; [`Flow::Stop`] stops that request with `FinishReason::Stop`.
pub fn generate(
    model: &Model,
    requests: &[Request],
    on_token: &mut dyn FnMut(TokenEvent) -> Flow,
    cancel: &AtomicBool,
) -> Result<Vec<Generated>> {
    for (i, r) in requests.iter().enumerate() {
        check_prompt(model, i, r)?;
    }
    let mut batch = Batch::new(model);
    for r in requests {
        batch.admit(r.clone());
    }
    let started = Instant::now();
    batch.step(on_token)?;
    let prefill = started.elapsed().as_secs_f64();
    let decode_started = Instant::now();
    while batch.running() > 0 {
        if cancel.load(Ordering::Relaxed) {
            batch.cancel_all();
            break;
        }
        batch.step(on_token)?;
    }
    let decode = decode_started.elapsed().as_secs_f64();
    let mut results = batch.into_results();
    for r in &mut results {
        r.prefill_seconds = prefill;
        r.decode_seconds = decode;
    }
    Ok(results)
}

/// A prompt the model can continue: not empty, within its length and vocabulary.
fn check_prompt(model: &Model, i: usize, r: &Request) -> Result<()> {
    let max_pos = model.config.max_position_embeddings;
    let vocab = model.vocab_size();
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
    Ok(())
}

/// Sequences generating together on one model.
pub struct Batch<'m> {
    model: &'m Model,
    /// In admission order; a sequence's index here is its KV cache's and its `TokenEvent::request`.
    sequences: Vec<Sequence>,
    caches: Vec<KvCache>,
}

struct Sequence {
    request: Request,
    sampler: Sampler,
    /// Prompt and generated tokens.
    history: Vec<u32>,
    /// Whether the prompt has been run.
    prefilled: bool,
    out: Generated,
}

impl<'m> Batch<'m> {
    pub fn new(model: &'m Model) -> Self {
        Batch {
            model,
            sequences: Vec::new(),
            caches: Vec::new(),
        }
    }

    /// Adds a request (checked by the caller); its prompt runs at the next step.
    /// Returns its index, which its `TokenEvent`s carry.
    pub fn admit(&mut self, request: Request) -> usize {
        self.caches.push(self.model.new_cache());
        self.sequences.push(Sequence {
            sampler: Sampler::new(request.sampling.clone()),
            history: request.input_ids.clone(),
            prefilled: false,
            out: Generated::default(),
            request,
        });
        self.sequences.len() - 1
    }

    /// Sequences not finished yet.
    pub fn running(&self) -> usize {
        self.sequences
            .iter()
            .filter(|s| s.out.finish_reason.is_none())
            .count()
    }

    /// Runs every unfinished sequence's new rows in one forward pass, then
    /// samples one token for each (in admission order) and tells `on_token`.
    pub fn step(&mut self, on_token: &mut dyn FnMut(TokenEvent) -> Flow) -> Result<()> {
        let mut rows = Vec::new();
        let mut wanted = Vec::new();
        for (seq, s) in self.sequences.iter().enumerate() {
            if s.out.finish_reason.is_some() {
                continue;
            }
            if s.prefilled {
                // The last sampled token, at the position after the ones in the cache.
                wanted.push(rows.len());
                rows.push(Row {
                    seq,
                    token: s.history[s.history.len() - 1],
                    pos: s.history.len() - 1,
                });
                continue;
            }
            let prompt = &s.request.input_ids;
            for (pos, &token) in prompt.iter().enumerate() {
                if s.request.want_context_logits || pos + 1 == prompt.len() {
                    wanted.push(rows.len());
                }
                rows.push(Row { seq, token, pos });
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut logits = self.model.forward(&rows, &mut self.caches, &wanted)?.into_iter();
        let max_pos = self.model.config.max_position_embeddings;
        for (seq, s) in self.sequences.iter_mut().enumerate() {
            if s.out.finish_reason.is_some() {
                continue;
            }
            let last = if s.prefilled {
                logits.next().unwrap_or_default()
            } else {
                s.prefilled = true;
                let count = if s.request.want_context_logits {
                    s.request.input_ids.len()
                } else {
                    1
                };
                let mine: Vec<Vec<f32>> = logits.by_ref().take(count).collect();
                let last = mine.last().cloned().unwrap_or_default();
                if s.request.want_context_logits {
                    s.out.context_logits = mine;
                }
                last
            };
            s.sample(seq, last, max_pos, on_token);
        }
        Ok(())
    }

    /// Finishes every unfinished sequence with `FinishReason::Cancelled`.
    pub fn cancel_all(&mut self) {
        for s in &mut self.sequences {
            s.out.finish_reason.get_or_insert(FinishReason::Cancelled);
        }
    }

    /// Every sequence's result, in admission order.
    pub fn into_results(self) -> Vec<Generated> {
        self.sequences.into_iter().map(|s| s.out).collect()
    }
}

impl Sequence {
    /// Draws the next token from `logits` and decides whether the sequence goes on.
    fn sample(
        &mut self,
        seq: usize,
        logits: Vec<f32>,
        max_pos: usize,
        on_token: &mut dyn FnMut(TokenEvent) -> Flow,
    ) {
        let r = &self.request;
        let out = &mut self.out;
        if r.max_new_tokens == 0 || self.history.len() >= max_pos {
            out.finish_reason = Some(FinishReason::Length);
            return;
        }
        let token = self.sampler.sample(&logits, &self.history);
        if r.want_logprobs && Some(token) != r.end_id {
            out.logprobs.push(self.sampler.log_prob(token));
        }
        if r.want_generation_logits {
            out.generation_logits.push(logits);
        }
        out.output_ids.push(token);
        self.history.push(token);
        let flow = on_token(TokenEvent { request: seq, token });
        out.finish_reason = if flow == Flow::Stop {
            Some(FinishReason::Stop)
        } else if Some(token) == r.end_id {
            Some(FinishReason::EndId)
        } else if out.output_ids.len() >= r.max_new_tokens || self.history.len() >= max_pos {
            Some(FinishReason::Length)
        } else {
            None
        };
    }
}
