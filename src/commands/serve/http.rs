//! The HTTP side: routes, the API key check, body limits, the handlers, and
//! streaming as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::unbounded_channel;

use super::choices::{Reader, Submitted, Update, submit};
use super::error::ApiError;
use super::metrics::Metrics;
use super::openai::{self, Context, Endpoint, Job};
use super::responses::{self, ChoiceOut, Header, Usage};
use crate::generation::GenerationService;
use crate::tokenizer::Tokenizer;
use crate::tokenizer::chat_template::ChatTemplate;

/// Largest request body taken; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Bytes of an oversized body read (and dropped) before answering 413.
const DRAIN_LIMIT: usize = 64 << 20;

/// Everything the handlers share.
pub struct AppState {
    pub model_name: String,
    pub service: Box<dyn GenerationService>,
    /// None: prompts are token ids, and responses carry `token_ids`.
    pub tokenizer: Option<Tokenizer>,
    /// The compiled chat template, or why chat requests are refused.
    pub chat_template: std::result::Result<ChatTemplate, String>,
    pub end_id: Option<u32>,
    /// SHA-256 of the API key, when one is required.
    pub api_key_digest: Option<[u8; 32]>,
    pub metrics: Metrics,
    /// Unix time the server started (`created` in /v1/models).
    pub started: u64,
    /// Set when shutdown begins: /health says so.
    pub shutting_down: AtomicBool,
}

impl AppState {
    fn context(&self) -> Context<'_> {
        Context {
            model_name: &self.model_name,
            tokenizer: self.tokenizer.as_ref(),
            chat_template: self.chat_template.as_ref().map_err(String::as_str),
            limits: self.service.limits(),
        }
    }

    /// Reads a submitted job's events back as text per choice.
    fn reader(&self, submitted: Submitted, job: &Job, started: Instant) -> Reader<'_> {
        Reader::new(
            submitted,
            self.tokenizer.as_ref(),
            job,
            self.end_id,
            &self.metrics,
            started,
        )
    }
}

/// SHA-256, so keys of any length compare in constant time.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), authorize));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
        .with_state(state)
}

/// Counts every response by path and status for /metrics.
async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    // Unknown paths are counted together, so a scanner cannot grow the series.
    let known = [
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/models",
        "/health",
        "/metrics",
    ];
    let path = if known.contains(&path.as_str()) {
        path.as_str()
    } else {
        "other"
    };
    state.metrics.request(path, response.status().as_u16());
    response
}

/// `Authorization: Bearer KEY`, compared in constant time, when a key is set.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.api_key_digest else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => ApiError::unauthorized(
            "You didn't provide an API key: send it in an Authorization header (Authorization: Bearer KEY)",
        )
        .into_response(),
        Some(key) if bool::from(digest(key.trim()).ct_eq(expected)) => next.run(request).await,
        Some(_) => ApiError::unauthorized("Incorrect API key provided").into_response(),
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(request.uri().path())
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json_body(&json!({"status": "shutting down"})),
        )
            .into_response();
    }
    json_body(&json!({"status": "ok"})).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(state.service.load());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let limits = state.service.limits();
    json_body(&json!({
        "object": "list",
        "data": [{
            "id": state.model_name,
            "object": "model",
            "created": state.started,
            "owned_by": "trtllm-minitron",
            "max_model_len": limits.max_sequence_tokens,
        }],
    }))
    .into_response()
}

fn json_body(v: &Value) -> impl IntoResponse + use<> {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        v.to_string(),
    )
}

async fn completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    generate(state, Endpoint::Completions, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn chat(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    generate(state, Endpoint::Chat, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The body, refused with 413 past [`MAX_BODY_BYTES`]. The rest of an
/// oversized body is read and dropped (up to [`DRAIN_LIMIT`]), so that a
/// client that writes its whole request before reading gets to see the 413
/// rather than a broken connection; past that the connection is dropped.
async fn read_body(headers: &HeaderMap, mut body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total <= MAX_BODY_BYTES {
            kept.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(Bytes::from(kept))
}

async fn generate(
    state: Arc<AppState>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let body = read_body(headers, body).await?;
    let job = openai::parse(endpoint, &body, &state.context())?;
    let submitted = submit(state.service.as_ref(), &job, state.end_id)?;
    let prompt_tokens = job.prompts.iter().map(Vec::len).sum();
    state.metrics.prompt_tokens(prompt_tokens);
    let header = Header::new(endpoint, &state.model_name);
    if job.stream {
        return Ok(stream(state, job, submitted, header, started, prompt_tokens));
    }
    let mut reader = state.reader(submitted, &job, started);
    let mut outs = vec![ChoiceOut::default(); job.prompts.len()];
    while let Some(update) = reader.next().await {
        match update {
            Update::Token {
                index,
                token,
                text,
                logprob,
                offset,
            } => {
                let out = &mut outs[index];
                if state.tokenizer.is_none() {
                    out.token_ids.push(token);
                }
                out.text.push_str(&text);
                if let Some(lp) = logprob {
                    out.pieces.push((text, lp, offset));
                }
            }
            Update::Done { index, text, ending } => {
                if let Some(error) = ending.error() {
                    return Err(error);
                }
                let out = &mut outs[index];
                out.text.push_str(&text);
                out.finish_reason = ending.finish_reason();
            }
        }
    }
    let usage = Usage {
        prompt_tokens,
        completion_tokens: (0..outs.len()).map(|i| reader.tokens(i)).sum(),
    };
    Ok(json_body(&responses::full(&header, &job, &outs, usage)).into_response())
}

/// Streams the choices as server-sent events, ending with `data: [DONE]`. A
/// task reads the events; when the client goes away it stops, which closes
/// the choices' sinks and so cancels them at the backend's next step.
fn stream(
    state: Arc<AppState>,
    job: Job,
    submitted: Submitted,
    header: Header,
    started: Instant,
    prompt_tokens: usize,
) -> Response {
    let (tx, mut rx) = unbounded_channel::<SseEvent>();
    tokio::spawn(async move {
        let send = |v: &Value| tx.send(SseEvent::default().data(v.to_string())).is_ok();
        let mut reader = state.reader(submitted, &job, started);
        if job.endpoint == Endpoint::Chat {
            for index in 0..job.prompts.len() {
                if !send(&responses::role_chunk(&header, index)) {
                    return;
                }
            }
        }
        loop {
            let update = tokio::select! {
                update = reader.next() => update,
                // The client is gone: dropping the reader cancels the choices.
                () = tx.closed() => return,
            };
            let Some(update) = update else { break };
            let sent = match update {
                Update::Token {
                    index,
                    token,
                    text,
                    logprob,
                    offset,
                } => {
                    let token = state.tokenizer.is_none().then_some(token);
                    if text.is_empty() && token.is_none() && (logprob.is_none() || !job.logprobs) {
                        continue;
                    }
                    let piece = logprob.map(|lp| (lp, offset));
                    send(&responses::chunk(&header, &job, index, &text, piece, token, None))
                }
                Update::Done { index, text, ending } => match ending.error() {
                    Some(error) => {
                        // The stream is already 200: the error goes as an event, and no [DONE].
                        let _ = tx.send(SseEvent::default().data(error.body()));
                        return;
                    }
                    None => send(&responses::chunk(
                        &header,
                        &job,
                        index,
                        &text,
                        None,
                        None,
                        Some(ending.finish_reason()),
                    )),
                },
            };
            if !sent {
                return;
            }
        }
        if job.include_usage {
            let usage = Usage {
                prompt_tokens,
                completion_tokens: (0..job.prompts.len()).map(|i| reader.tokens(i)).sum(),
            };
            send(&responses::usage_chunk(&header, usage));
        }
        let _ = tx.send(SseEvent::default().data("[DONE]"));
    });
    let events =
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>)));
    Sse::new(events).into_response()
}
