//! OpenAI's response bodies: a whole completion or chat completion, and the
//! chunks of a stream (`text_completion` and `chat.completion.chunk`
//! objects), as the `openai` clients parse them.

use serde_json::{Value, json};

use super::openai::{Endpoint, Job};

/// What every body and chunk of one request repeats.
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

impl Header {
    pub fn new(endpoint: Endpoint, model: &str) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let prefix = match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        Header {
            id: format!("{prefix}-{}", next_id()),
            created,
            model: model.to_string(),
            endpoint,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn wrap(&self, chunk: bool, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }
}

/// A process-unique request id: a counter, mixed so ids do not look sequential.
fn next_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:08x}",
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        std::process::id()
    )
}

/// One choice's text and log-probs, gathered for a whole response.
#[derive(Debug, Clone, Default)]
pub struct ChoiceOut {
    pub text: String,
    /// Per generated token with a log-prob: the text it made visible, its
    /// log-prob, and where that text starts.
    pub pieces: Vec<(String, f32, usize)>,
    /// The generated token ids, sent (as `token_ids`) when the model has no
    /// tokenizer to turn them into text.
    pub token_ids: Vec<u32>,
    pub finish_reason: &'static str,
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// The `logprobs` of a choice or chunk: `null` unless asked for.
fn logprobs(endpoint: Endpoint, asked: bool, pieces: &[(String, f32, usize)]) -> Value {
    if !asked {
        return Value::Null;
    }
    match endpoint {
        Endpoint::Completions => json!({
            "tokens": pieces.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            "token_logprobs": pieces.iter().map(|p| p.1).collect::<Vec<_>>(),
            "top_logprobs": Value::Null,
            "text_offset": pieces.iter().map(|p| p.2).collect::<Vec<_>>(),
        }),
        Endpoint::Chat => json!({
            "content": pieces.iter().map(|(text, lp, _)| json!({
                "token": text,
                "logprob": lp,
                "bytes": text.as_bytes(),
                "top_logprobs": [],
            })).collect::<Vec<_>>(),
        }),
    }
}

/// The whole response of a request that did not stream.
pub fn full(h: &Header, job: &Job, choices: &[ChoiceOut], usage: Usage) -> Value {
    let choices = choices
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let lp = logprobs(h.endpoint, job.logprobs, &c.pieces);
            let mut choice = match h.endpoint {
                Endpoint::Completions => json!({
                    "index": index,
                    "text": c.text,
                    "logprobs": lp,
                    "finish_reason": c.finish_reason,
                }),
                Endpoint::Chat => json!({
                    "index": index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": lp,
                    "finish_reason": c.finish_reason,
                }),
            };
            if !c.token_ids.is_empty() {
                choice["token_ids"] = json!(c.token_ids);
            }
            choice
        })
        .collect();
    let mut body = h.wrap(false, choices);
    body["usage"] = usage.json();
    body
}

/// A stream chunk of choice `index`: new text (with its token's log-prob when
/// asked, and its id when the model has no tokenizer), and `finish_reason` on
/// its last chunk.
pub fn chunk(
    h: &Header,
    job: &Job,
    index: usize,
    text: &str,
    piece: Option<(f32, usize)>,
    token: Option<u32>,
    finish: Option<&str>,
) -> Value {
    let pieces: Vec<(String, f32, usize)> = piece
        .map(|(lp, at)| (text.to_string(), lp, at))
        .into_iter()
        .collect();
    let lp = logprobs(h.endpoint, job.logprobs && piece.is_some(), &pieces);
    let mut choice = match h.endpoint {
        Endpoint::Completions => json!({
            "index": index,
            "text": text,
            "logprobs": lp,
            "finish_reason": finish,
        }),
        Endpoint::Chat => {
            let delta = if text.is_empty() && finish.is_some() {
                json!({})
            } else {
                json!({"content": text})
            };
            json!({"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish})
        }
    };
    if let Some(token) = token {
        choice["token_ids"] = json!([token]);
    }
    h.wrap(true, vec![choice])
}

/// The first chunk of a chat choice: the assistant's role.
pub fn role_chunk(h: &Header, index: usize) -> Value {
    h.wrap(
        true,
        vec![json!({
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": Value::Null,
            "finish_reason": Value::Null,
        })],
    )
}

/// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
pub fn usage_chunk(h: &Header, usage: Usage) -> Value {
    let mut body = h.wrap(true, Vec::new());
    body["usage"] = usage.json();
    body
}
