//! One HTTP request's generations ("choices") on the service: submitted with
//! a sink each, their events read back as text. Text decoding and stop
//! strings run here, on the request's task, not on the backend's thread:
//! when a stop string appears the choice is flagged, and the backend's next
//! send to it answers `Flow::Stop`. When the client goes away the receiver is
//! dropped, every sink is closed, and the backend cancels the choices at its
//! next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::error::ApiError;
use super::metrics::Metrics;
use super::openai::Job;
use crate::generation::service::{Event, EventSink, GenerationService, Refusal};
use crate::generation::text::TextStream;
use crate::generation::{FinishReason, Flow, Request};
use crate::tokenizer::Tokenizer;

/// A choice's sink: its events go to the request's one channel, tagged.
struct ChoiceSink {
    index: usize,
    tx: UnboundedSender<(usize, Event)>,
    /// Set by the reader when a stop string appeared.
    stopped: Arc<AtomicBool>,
}

impl EventSink for ChoiceSink {
    fn send(&mut self, event: Event) -> Flow {
        if self.stopped.load(Ordering::Relaxed) || self.tx.send((self.index, event)).is_err() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn is_closed(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) || self.tx.is_closed()
    }
}

/// The submitted choices of one request.
pub struct Submitted {
    rx: UnboundedReceiver<(usize, Event)>,
    stopped: Vec<Arc<AtomicBool>>,
}

/// Submits every choice of `job`; if one is refused, the ones before it are
/// stopped and the refusal is the answer.
pub fn submit(
    service: &dyn GenerationService,
    job: &Job,
    end_id: Option<u32>,
) -> Result<Submitted, ApiError> {
    let (tx, rx) = unbounded_channel();
    let mut stopped: Vec<Arc<AtomicBool>> = Vec::new();
    for (index, (prompt, &max_tokens)) in job.prompts.iter().zip(&job.max_tokens).enumerate() {
        let flag = Arc::new(AtomicBool::new(false));
        let request = Request {
            input_ids: prompt.clone(),
            max_new_tokens: max_tokens,
            sampling: job.sampling.clone(),
            end_id,
            want_context_logits: false,
            want_generation_logits: false,
            want_logprobs: job.logprobs,
        };
        let sink = ChoiceSink {
            index,
            tx: tx.clone(),
            stopped: Arc::clone(&flag),
        };
        if let Err(refusal) = service.submit(request, Box::new(sink)) {
            for f in &stopped {
                f.store(true, Ordering::Relaxed);
            }
            return Err(match refusal {
                Refusal::QueueFull { .. } => ApiError::busy(refusal.to_string()),
                Refusal::ShuttingDown => ApiError::shutting_down(),
                Refusal::TooLarge(why) => ApiError::invalid("max_tokens", why),
            });
        }
        stopped.push(flag);
    }
    Ok(Submitted { rx, stopped })
}

impl Drop for Reader<'_> {
    /// A reader dropped before its choices ended: the client went away (or an
    /// earlier choice failed). Their sinks close with it; the backend cancels
    /// them at its next step.
    fn drop(&mut self) {
        for (choice, stopped) in self.choices.iter().zip(&self.submitted.stopped) {
            if !choice.done {
                stopped.store(true, Ordering::Relaxed);
                self.metrics.finished("abandoned");
            }
        }
    }
}

/// How a choice ended, in OpenAI's words where it has them.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// `finish_reason` "stop" (end token or stop string) or "length".
    Finished(&'static str),
    /// Cancelled by the server (shutdown).
    Cancelled,
    Failed(String),
}

impl Ending {
    /// The error a client gets when a choice did not finish.
    pub fn error(&self) -> Option<ApiError> {
        match self {
            Ending::Finished(_) => None,
            Ending::Cancelled => Some(ApiError::shutting_down()),
            Ending::Failed(why) => Some(ApiError::internal(why.clone())),
        }
    }

    /// `finish_reason` of a choice that finished.
    pub fn finish_reason(&self) -> &'static str {
        match self {
            Ending::Finished(reason) => reason,
            Ending::Cancelled | Ending::Failed(_) => "stop",
        }
    }

    fn metric(&self) -> &'static str {
        match self {
            Ending::Finished(reason) => reason,
            Ending::Cancelled => "cancelled",
            Ending::Failed(_) => "error",
        }
    }
}

/// What reading a request's events yields, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A token of choice `index`: the text it makes visible (may be empty: held
    /// back for a multi-byte character or a possible stop string), its
    /// log-prob if asked for, and where that text starts in the choice's text.
    Token {
        index: usize,
        token: u32,
        text: String,
        logprob: Option<f32>,
        offset: usize,
    },
    /// Choice `index` ended; `text` is what was still held back.
    Done {
        index: usize,
        text: String,
        ending: Ending,
    },
}

struct Choice<'t> {
    text: TextStream<'t>,
    tokens: usize,
    last_token: Option<Instant>,
    done: bool,
}

/// Reads one request's events until every choice has ended.
pub struct Reader<'t> {
    submitted: Submitted,
    choices: Vec<Choice<'t>>,
    started: Instant,
    metrics: &'t Metrics,
}

impl<'t> Reader<'t> {
    /// `started`: when the request arrived (time to first token counts from it).
    pub fn new(
        submitted: Submitted,
        tokenizer: Option<&'t Tokenizer>,
        job: &Job,
        end_id: Option<u32>,
        metrics: &'t Metrics,
        started: Instant,
    ) -> Self {
        let choices = job
            .prompts
            .iter()
            .map(|_| Choice {
                text: TextStream::new(tokenizer, &job.stops, end_id),
                tokens: 0,
                last_token: None,
                done: false,
            })
            .collect();
        Reader {
            submitted,
            choices,
            started,
            metrics,
        }
    }

    /// Tokens generated by choice `index` so far (an end token included).
    pub fn tokens(&self, index: usize) -> usize {
        self.choices[index].tokens
    }

    /// The next update; `None` once every choice has ended.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            if self.choices.iter().all(|c| c.done) {
                return None;
            }
            let Some((index, event)) = self.submitted.rx.recv().await else {
                // Every sink is gone without a last word: the backend stopped.
                let index = self.choices.iter().position(|c| !c.done)?;
                return Some(self.end(index, Ending::Failed("the backend stopped".into())));
            };
            if self.choices[index].done {
                continue;
            }
            return Some(match event {
                Event::Token { token, logprob } => self.token(index, token, logprob),
                Event::Finished(reason) => self.end(
                    index,
                    match reason {
                        FinishReason::Length => Ending::Finished("length"),
                        FinishReason::EndId | FinishReason::Stop => Ending::Finished("stop"),
                        FinishReason::Cancelled => Ending::Cancelled,
                    },
                ),
                Event::Failed(why) => self.end(index, Ending::Failed(why)),
            });
        }
    }

    fn token(&mut self, index: usize, token: u32, logprob: Option<f32>) -> Update {
        let now = Instant::now();
        let choice = &mut self.choices[index];
        match choice.last_token {
            None => self.metrics.time_to_first_token.observe(now - self.started),
            Some(last) => self.metrics.inter_token_latency.observe(now - last),
        }
        self.metrics.generated_token();
        choice.last_token = Some(now);
        choice.tokens += 1;
        let offset = choice.text.text.len();
        let text = match choice.text.push(token) {
            Ok(text) => text,
            Err(e) => return self.end(index, Ending::Failed(e.to_string())),
        };
        if choice.text.stopped {
            // A stop string: the backend stops this choice at its next send.
            self.submitted.stopped[index].store(true, Ordering::Relaxed);
            choice.done = true;
            self.metrics.finished("stop");
            return Update::Done {
                index,
                text,
                ending: Ending::Finished("stop"),
            };
        }
        Update::Token {
            index,
            token,
            text,
            logprob,
            offset,
        }
    }

    fn end(&mut self, index: usize, ending: Ending) -> Update {
        let choice = &mut self.choices[index];
        choice.done = true;
        self.submitted.stopped[index].store(true, Ordering::Relaxed);
        self.metrics.finished(ending.metric());
        let text = match (&ending, choice.text.finish()) {
            (Ending::Finished(_), Ok(text)) => text,
            _ => String::new(),
        };
        Update::Done { index, text, ending }
    }
}
