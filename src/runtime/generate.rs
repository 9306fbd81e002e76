//! Batched generation on the reference runtime. A [`Batch`] holds the
//! sequences generating together: requests join it with [`Batch::admit`] and
//! leave when they finish; every [`Batch::step`] runs one forward pass over
//! all their new rows (a joining prompt's whole prompt, a running sequence's
//! last token: weights are read once per step for the whole batch) and
//! samples each sequence's next token. [`generate`] admits every request at
//! once and steps until all are done; the serving scheduler
//! (`runtime::service`) admits between steps, runs long prompts in chunks and
//! takes finished sequences out.

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
    /// In admission order, each with its KV cache at the same index in `caches`.
    sequences: Vec<Sequence>,
    caches: Vec<KvCache>,
    /// The id the next admitted request gets (0, 1, 2, ...).
    next_id: usize,
    /// Prompt tokens run per step, across the sequences still being prefilled.
    prefill_chunk: usize,
}

struct Sequence {
    /// Its `TokenEvent::request`.
    id: usize,
    request: Request,
    sampler: Sampler,
    /// Prompt and generated tokens.
    history: Vec<u32>,
    /// Prompt tokens already run (in the KV cache).
    prefilled: usize,
    out: Generated,
}

/// What one sequence contributes to a step's forward pass.
struct Part {
    /// Index in `sequences`.
    index: usize,
    /// Prompt tokens run (0 for a decode row).
    prompt_rows: usize,
    /// Logits rows returned for it.
    logits: usize,
    /// Whether a token is sampled after the pass (a decode row, or the prompt's last chunk).
    samples: bool,
}

impl<'m> Batch<'m> {
    /// A batch that runs every joining prompt whole in its first step.
    pub fn new(model: &'m Model) -> Self {
        Batch {
            model,
            sequences: Vec::new(),
            caches: Vec::new(),
            next_id: 0,
            prefill_chunk: usize::MAX,
        }
    }

    /// A batch that runs at most `tokens` prompt tokens per step (at least one),
    /// oldest request first, besides one decode row per running sequence: a long
    /// prompt joins over several steps while the others go on decoding.
    pub fn with_prefill_chunk(model: &'m Model, tokens: usize) -> Self {
        Batch {
            prefill_chunk: tokens.max(1),
            ..Batch::new(model)
        }
    }

    /// KV cache positions a request may need: its prompt plus `max_new_tokens`,
    /// within the model's length.
    pub fn reserved_tokens(model: &Model, request: &Request) -> usize {
        (request.input_ids.len() + request.max_new_tokens).min(model.config.max_position_embeddings)
    }

    /// Adds a request (checked by the caller); its prompt runs from the next
    /// step. Returns its id, which its `TokenEvent`s carry: 0, 1, 2, ... in
    /// admission order.
    pub fn admit(&mut self, request: Request) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.caches
            .push(self.model.new_cache(Self::reserved_tokens(self.model, &request)));
        self.sequences.push(Sequence {
            id,
            sampler: Sampler::new(request.sampling.clone()),
            history: request.input_ids.clone(),
            prefilled: 0,
            out: Generated::default(),
            request,
        });
        id
    }

    /// Sequences not finished yet.
    pub fn running(&self) -> usize {
        self.sequences
            .iter()
            .filter(|s| s.out.finish_reason.is_none())
            .count()
    }

    /// Runs every unfinished sequence's new rows in one forward pass (a decode
    /// row each for the running ones, the next chunk of prompt for the joining
    /// ones), then samples one token for each sequence whose prompt is done (in
    /// admission order) and tells `on_token`.
    pub fn step(&mut self, on_token: &mut dyn FnMut(TokenEvent) -> Flow) -> Result<()> {
        let mut rows = Vec::new();
        let mut wanted = Vec::new();
        let mut parts = Vec::new();
        let mut budget = self.prefill_chunk;
        for (index, s) in self.sequences.iter().enumerate() {
            if s.out.finish_reason.is_some() {
                continue;
            }
            let prompt = &s.request.input_ids;
            if s.prefilled == prompt.len() {
                // The last sampled token, at the position after the ones in the cache.
                wanted.push(rows.len());
                rows.push(Row {
                    seq: index,
                    token: s.history[s.history.len() - 1],
                    pos: s.history.len() - 1,
                });
                parts.push(Part {
                    index,
                    prompt_rows: 0,
                    logits: 1,
                    samples: true,
                });
                continue;
            }
            let take = (prompt.len() - s.prefilled).min(budget);
            if take == 0 {
                continue;
            }
            budget -= take;
            let end = s.prefilled + take;
            let mut logits = 0;
            for (pos, &token) in prompt.iter().enumerate().take(end).skip(s.prefilled) {
                if s.request.want_context_logits || pos + 1 == prompt.len() {
                    wanted.push(rows.len());
                    logits += 1;
                }
                rows.push(Row {
                    seq: index,
                    token,
                    pos,
                });
            }
            parts.push(Part {
                index,
                prompt_rows: take,
                logits,
                samples: end == prompt.len(),
            });
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut logits = self.model.forward(&rows, &mut self.caches, &wanted)?.into_iter();
        let max_pos = self.model.config.max_position_embeddings;
        for part in parts {
            let s = &mut self.sequences[part.index];
            let mine: Vec<Vec<f32>> = logits.by_ref().take(part.logits).collect();
            let decoding = part.prompt_rows == 0;
            s.prefilled += part.prompt_rows;
            let last = if decoding || !s.request.want_context_logits {
                mine.into_iter().next_back()
            } else {
                let last = mine.last().cloned();
                s.out.context_logits.extend(mine);
                last
            };
            if part.samples {
                s.sample(last.unwrap_or_default(), max_pos, on_token);
            }
        }
        Ok(())
    }

    /// Finishes request `id` with `FinishReason::Cancelled` if it is still running.
    pub fn cancel(&mut self, id: usize) {
        if let Some(s) = self.sequences.iter_mut().find(|s| s.id == id) {
            s.out.finish_reason.get_or_insert(FinishReason::Cancelled);
        }
    }

    /// Finishes every unfinished sequence with `FinishReason::Cancelled`.
    pub fn cancel_all(&mut self) {
        for s in &mut self.sequences {
            s.out.finish_reason.get_or_insert(FinishReason::Cancelled);
        }
    }

    /// Removes the finished sequences, freeing their KV caches; returns their
    /// ids and results, in admission order.
    pub fn take_finished(&mut self) -> Vec<(usize, Generated)> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.sequences.len() {
            if self.sequences[i].out.finish_reason.is_some() {
                let s = self.sequences.remove(i);
                self.caches.remove(i);
                done.push((s.id, s.out));
            } else {
                i += 1;
            }
        }
        done
    }

    /// Every sequence's result, in admission order (those taken with
    /// [`Batch::take_finished`] excepted).
    pub fn into_results(self) -> Vec<Generated> {
        self.sequences.into_iter().map(|s| s.out).collect()
    }
}

impl Sequence {
    /// Draws the next token from `logits` and decides whether the sequence goes on.
    fn sample(&mut self, logits: Vec<f32>, max_pos: usize, on_token: &mut dyn FnMut(TokenEvent) -> Flow) {
        let r = &self.request;
        let out = &mut self.out;
        if r.max_new_tokens == 0 || self.history.len() >= max_pos {
            out.finish_reason = Some(FinishReason::Length);
            return;
        }
        let token = self.sampler.sample(&logits, &self.history);
        let logprob = (r.want_logprobs && Some(token) != r.end_id).then(|| self.sampler.log_prob(token));
        out.logprobs.extend(logprob);
        if r.want_generation_logits {
            out.generation_logits.push(logits);
        }
        out.output_ids.push(token);
        self.history.push(token);
        let flow = on_token(TokenEvent {
            request: self.id,
            token,
            logprob,
        });
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
