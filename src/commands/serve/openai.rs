//! OpenAI's request bodies, read and checked into a [`Job`]: the prompts
//! (tokenized; a chat rendered with the model's template first), the decoding
//! options, stop strings and limits. Every refusal is an [`ApiError`] naming
//! the field. Unknown fields are refused, as OpenAI refuses them; known
//! fields this server does not implement are refused by name when set to
//! anything but their neutral value.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::generation::service::Limits;
use crate::generation::{SamplingParams, max_new_tokens_problem};
use crate::tokenizer::Tokenizer;
use crate::tokenizer::chat_template::{ChatMessage, ChatTemplate};

/// `max_tokens` of a completion when the request does not say (OpenAI's default).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// Stop strings a request may give (OpenAI's limit).
pub const MAX_STOPS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// Fields both endpoints take.
const COMMON_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
];

impl Endpoint {
    /// Whether its body may hold `field`; anything else is refused.
    fn takes(self, field: &str) -> bool {
        let own: &[&str] = match self {
            Endpoint::Completions => &["prompt", "best_of", "echo", "suffix"],
            Endpoint::Chat => &[
                "messages",
                "max_completion_tokens",
                "top_logprobs",
                "response_format",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
            ],
        };
        COMMON_FIELDS.contains(&field) || own.contains(&field)
    }
}

/// A checked request: one generation per choice, all with the same options.
#[derive(Debug, Clone)]
pub struct Job {
    pub endpoint: Endpoint,
    /// Token ids of each choice's prompt.
    pub prompts: Vec<Vec<u32>>,
    /// New tokens each choice may generate.
    pub max_tokens: Vec<usize>,
    pub sampling: SamplingParams,
    pub stops: Vec<String>,
    pub logprobs: bool,
    pub stream: bool,
    pub include_usage: bool,
}

/// What the server knows that a request is checked against.
pub struct Context<'a> {
    pub model_name: &'a str,
    pub tokenizer: Option<&'a Tokenizer>,
    /// The chat template, or why there is none (for the 400 of a chat request).
    pub chat_template: std::result::Result<&'a ChatTemplate, &'a str>,
    pub limits: Limits,
}

/// Fields both endpoints share.
#[derive(Deserialize)]
struct Common {
    model: String,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    repetition_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<Map<String, Value>>,
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct CompletionFields {
    prompt: Value,
    logprobs: Option<u32>,
    echo: Option<bool>,
    best_of: Option<u32>,
    suffix: Option<String>,
}

#[derive(Deserialize)]
struct ChatFields {
    messages: Vec<MessageIn>,
    max_completion_tokens: Option<u32>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    response_format: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    #[allow(dead_code)]
    parallel_tool_calls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    role: String,
    content: Option<Value>,
    #[allow(dead_code)]
    name: Option<String>,
}

/// Parses the body as JSON and checks it into a [`Job`].
pub fn parse(endpoint: Endpoint, body: &[u8], cx: &Context<'_>) -> Result<Job, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}. Send a JSON object, e.g. \
             {{\"model\": \"{}\", ...}}",
            cx.model_name
        ))
    })?;
    let Value::Object(object) = &value else {
        return Err(ApiError::bad_request("The request body must be a JSON object"));
    };
    if let Some(key) = object.keys().find(|k| !endpoint.takes(k)) {
        return Err(ApiError::invalid(
            key.clone(),
            format!("Unrecognized request argument supplied: {key}"),
        ));
    }
    let common: Common = typed(&value)?;
    if common.model != cx.model_name {
        return Err(ApiError::unknown_model(&common.model, cx.model_name));
    }
    refuse_unsupported(&common)?;
    let sampling = sampling(&common)?;
    let stops = stops(common.stop.as_ref())?;
    let stream = common.stream.unwrap_or(false);
    let include_usage = match &common.stream_options {
        Some(_) if !stream => {
            return Err(ApiError::invalid(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
        Some(o) => o.include_usage.unwrap_or(false),
        None => false,
    };
    let (prompts, asked_max, logprobs, prompt_param) = match endpoint {
        Endpoint::Completions => {
            let f: CompletionFields = typed(&value)?;
            refuse_completion_extras(&f)?;
            let prompts = completion_prompts(&f.prompt, cx.tokenizer)?;
            let asked = common.max_tokens.map(|n| (n, "max_tokens"));
            (prompts, asked, f.logprobs == Some(0), "prompt")
        }
        Endpoint::Chat => {
            let f: ChatFields = typed(&value)?;
            refuse_chat_extras(&f)?;
            let template = cx
                .chat_template
                .map_err(|why| ApiError::invalid("messages", why.to_string()))?;
            // A template is only compiled from a tokenizer's files.
            let tokenizer = cx
                .tokenizer
                .ok_or_else(|| ApiError::invalid("messages", "this model has no tokenizer"))?;
            let prompt = chat_prompt(&f.messages, template, tokenizer)?;
            let asked = match (f.max_completion_tokens, common.max_tokens) {
                (Some(n), _) => Some((n, "max_completion_tokens")),
                (None, Some(n)) => Some((n, "max_tokens")),
                (None, None) => None,
            };
            (vec![prompt], asked, f.logprobs.unwrap_or(false), "messages")
        }
    };
    let max_tokens = prompts
        .iter()
        .map(|p| max_tokens(endpoint, p, asked_max, prompt_param, &cx.limits))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Job {
        endpoint,
        prompts,
        max_tokens,
        sampling,
        stops,
        logprobs,
        stream,
        include_usage,
    })
}

/// The body as `T`; a field of the wrong type is named.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let param = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(missing) = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let field = if param == "." {
                missing.to_string()
            } else {
                format!("{param}.{missing}")
            };
            return ApiError::invalid(field.clone(), format!("Missing required parameter: '{field}'"));
        }
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            let at = if param == "." {
                field.to_string()
            } else {
                format!("{param}.{field}")
            };
            return ApiError::invalid(at.clone(), format!("Unrecognized argument supplied: {at}"));
        }
        ApiError::invalid(param.clone(), format!("Invalid value for '{param}': {inner}"))
    })
}

/// Options OpenAI has and this server does not implement, when asked for.
fn refuse_unsupported(c: &Common) -> Result<(), ApiError> {
    if let Some(n) = c.n
        && n != 1
    {
        return Err(ApiError::invalid(
            "n",
            format!("n = {n}: this server generates one choice per prompt (n = 1)"),
        ));
    }
    for (name, value) in [
        ("presence_penalty", c.presence_penalty),
        ("frequency_penalty", c.frequency_penalty),
    ] {
        if let Some(v) = value
            && v != 0.0
        {
            return Err(ApiError::invalid(
                name,
                format!("{name} = {v}: not supported by this server (use repetition_penalty)"),
            ));
        }
    }
    if c.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::invalid(
            "logit_bias",
            "logit_bias is not supported by this server",
        ));
    }
    Ok(())
}

fn refuse_completion_extras(f: &CompletionFields) -> Result<(), ApiError> {
    if f.echo == Some(true) {
        return Err(ApiError::invalid(
            "echo",
            "echo is not supported: the response holds the generated text only",
        ));
    }
    if let Some(b) = f.best_of
        && b != 1
    {
        return Err(ApiError::invalid(
            "best_of",
            format!("best_of = {b}: this server generates one candidate per prompt (best_of = 1)"),
        ));
    }
    if f.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            "suffix",
            "suffix is not supported by this server",
        ));
    }
    if let Some(k) = f.logprobs
        && k > 0
    {
        return Err(ApiError::invalid(
            "logprobs",
            format!(
                "logprobs = {k}: this server returns the log-probability of each generated token \
                 (logprobs = 0), not the most likely alternatives"
            ),
        ));
    }
    Ok(())
}

fn refuse_chat_extras(f: &ChatFields) -> Result<(), ApiError> {
    if let Some(k) = f.top_logprobs
        && k > 0
    {
        return Err(ApiError::invalid(
            "top_logprobs",
            format!(
                "top_logprobs = {k}: this server returns the log-probability of each generated token \
                 (logprobs = true), not the most likely alternatives"
            ),
        ));
    }
    if f.tools.as_ref().is_some_and(|t| !t.is_null()) || f.tool_choice.as_ref().is_some_and(|t| !t.is_null())
    {
        let param = if f.tools.is_some() { "tools" } else { "tool_choice" };
        return Err(ApiError::invalid(param, "tools are not supported by this server"));
    }
    if let Some(format) = &f.response_format
        && !format.is_null()
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(ApiError::invalid(
            "response_format",
            "response_format: only {\"type\": \"text\"} is supported by this server",
        ));
    }
    Ok(())
}

/// OpenAI's defaults (temperature 1, top_p 1), checked as `run` checks them.
fn sampling(c: &Common) -> Result<SamplingParams, ApiError> {
    let params = SamplingParams {
        temperature: c.temperature.unwrap_or(1.0),
        top_k: c.top_k.unwrap_or(0) as usize,
        top_p: c.top_p.unwrap_or(1.0),
        repetition_penalty: c.repetition_penalty.unwrap_or(1.0),
        // Without a seed, each request samples differently, as OpenAI does.
        seed: match c.seed {
            Some(s) => s as u64,
            None => fresh_seed(),
        },
    };
    params.validate().map_err(|e| {
        ApiError::invalid(
            e.param(),
            format!("{} = {}: {}", e.param(), e.value(), e.reason()),
        )
    })?;
    Ok(params)
}

/// A seed no other request gets: a per-process counter mixed with the clock.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // SplitMix64's finaliser spreads neighbouring inputs apart.
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `stop`: a string or a list of up to four strings.
fn stops(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::invalid("stop", "stop must be a string or a list of strings");
    let stops: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "stop has {} strings; at most {MAX_STOPS} are allowed",
                stops.len()
            ),
        ));
    }
    Ok(stops)
}

/// `prompt`: a string, a list of strings, a list of token ids, or a list of
/// lists of token ids; one choice per prompt.
fn completion_prompts(prompt: &Value, tokenizer: Option<&Tokenizer>) -> Result<Vec<Vec<u32>>, ApiError> {
    let shape = || {
        ApiError::invalid(
            "prompt",
            "prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids",
        )
    };
    let encode = |text: &str| {
        let tokenizer = tokenizer.ok_or_else(|| {
            ApiError::invalid(
                "prompt",
                "this model has no tokenizer (no tokenizer.json or tokenizer.model beside it): send the \
                 prompt as token ids, or start serve with --tokenizer",
            )
        })?;
        tokenizer
            .encode(text, None)
            .map_err(|e| ApiError::invalid("prompt", e.to_string()))
    };
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| v.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(shape))
            .collect()
    };
    match prompt {
        Value::String(text) => Ok(vec![encode(text)?]),
        Value::Array(items) if items.is_empty() => Err(ApiError::invalid("prompt", "prompt is empty")),
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|v| v.as_str().ok_or_else(shape).and_then(encode))
                .collect(),
            Value::Number(_) => Ok(vec![ids(items)?]),
            Value::Array(_) => items
                .iter()
                .map(|v| v.as_array().ok_or_else(shape).and_then(|a| ids(a)))
                .collect(),
            _ => Err(shape()),
        },
        _ => Err(shape()),
    }
}

/// The chat rendered by the model's template, tokenized as transformers'
/// `apply_chat_template` does (the template writes any BOS itself).
fn chat_prompt(
    messages: &[MessageIn],
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
) -> Result<Vec<u32>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages is empty"));
    }
    let messages = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ChatMessage {
                role: m.role.clone(),
                content: message_text(m.content.as_ref(), i)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let text = template
        .render(&messages, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    tokenizer
        .encode(&text, Some(false))
        .map_err(|e| ApiError::invalid("messages", e.to_string()))
}

/// A message's content: a string, or a list of text parts (joined).
fn message_text(content: Option<&Value>, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(text)) => Ok(text.to_string()),
                (kind, _) => Err(ApiError::invalid(
                    param.clone(),
                    format!(
                        "content part of type {}: this server takes text parts only ({{\"type\": \"text\", \"text\": ...}})",
                        kind.unwrap_or("(none)")
                    ),
                )),
            })
            .collect(),
        _ => Err(ApiError::invalid(param, "content must be a string or a list of text parts")),
    }
}

/// The checked `max_tokens` of one prompt: given, or the endpoint's default
/// (a completion: 16; a chat: the rest of the context).
fn max_tokens(
    endpoint: Endpoint,
    prompt: &[u32],
    asked: Option<(u32, &'static str)>,
    prompt_param: &str,
    limits: &Limits,
) -> Result<usize, ApiError> {
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            prompt_param,
            format!("{prompt_param} is empty: there is nothing to continue"),
        ));
    }
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= limits.vocab_size) {
        return Err(ApiError::invalid(
            prompt_param,
            format!(
                "token id {bad} is out of range: the vocabulary has {} tokens",
                limits.vocab_size
            ),
        ));
    }
    if prompt.len() > limits.max_prompt_tokens {
        return Err(ApiError::invalid(
            prompt_param,
            format!(
                "the prompt has {} tokens, more than the {} this model takes",
                prompt.len(),
                limits.max_prompt_tokens
            ),
        ));
    }
    let room = limits
        .max_sequence_tokens
        .min(limits.kv_cache_tokens.unwrap_or(usize::MAX));
    if prompt.len() >= room {
        return Err(ApiError::invalid(
            prompt_param,
            format!(
                "the prompt has {} tokens, which leaves no room to generate: {}",
                prompt.len(),
                limits.problem(prompt.len(), 1).unwrap_or_default()
            ),
        ));
    }
    let (n, param) = match (asked, endpoint) {
        (Some((n, param)), _) => (n as usize, param),
        (None, Endpoint::Completions) => (DEFAULT_COMPLETION_MAX_TOKENS, "max_tokens"),
        (None, Endpoint::Chat) => (room - prompt.len(), "max_completion_tokens"),
    };
    if let Some(problem) = max_new_tokens_problem(n) {
        return Err(ApiError::invalid(param, format!("{param} = {n}: {problem}")));
    }
    if let Some(problem) = limits.problem(prompt.len(), n) {
        return Err(ApiError::invalid(
            param,
            format!("{param} = {n} is too large: {problem}"),
        ));
    }
    Ok(n)
}
