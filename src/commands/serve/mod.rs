//! `serve`: an OpenAI-compatible HTTP server over either backend, with
//! continuous batching. The model is resolved and opened as `run` opens it
//! (`target::open_backend`), then kept running as a `GenerationService`;
//! requests are read and checked (`openai`), submitted one generation per
//! choice (`choices`), and answered whole or streamed (`responses`, `http`).
//! docs/serve.md describes the design.

mod args;
mod choices;
mod error;
mod http;
mod metrics;
mod openai;
mod responses;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::runtime::free_memory;
use crate::target::open_backend;
use crate::tokenizer::Tokenizer;
use crate::tokenizer::chat_template::ChatTemplate;
pub use args::{API_KEY_ENV, ServeArgs};
use http::{AppState, digest, router};

/// How long connections may take to close once generations were cancelled.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often the Ctrl-C flag is looked at.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Serves until Ctrl-C (`stop`) or SIGTERM, then shuts down gracefully.
/// `on_listening` is told the address once the socket is bound.
pub fn serve(
    args: &ServeArgs,
    progress: &dyn Progress,
    stop: &AtomicBool,
    on_listening: &mut dyn FnMut(SocketAddr, &str),
) -> Result<()> {
    // A server runs for long, through traffic of every size: memory freed at
    // a thread arena's top goes back to the system at once, whatever the
    // largest allocation so far (the scheduler releases the rest when idle).
    free_memory::keep_trim_threshold();
    // Without a tokenizer, prompts must be token ids and responses carry token ids.
    let opened = open_backend(
        &args.target(),
        args.backend(),
        args.tokenizer.as_deref(),
        false,
        progress,
        stop,
    )?;
    let tokenizer = opened.tokenizer;
    let end_id = tokenizer
        .as_ref()
        .and_then(Tokenizer::eos_id)
        .or(opened.backend.eos_id());
    let backend_name = opened.backend.name();
    let chat_template = chat_template(tokenizer.as_ref())?;
    let service = opened.backend.into_service(&args.service_options())?;
    let model_name = args.model_name();
    let state = Arc::new(AppState {
        model_name: model_name.clone(),
        service,
        tokenizer,
        chat_template,
        end_id,
        api_key_digest: args.api_key.as_deref().filter(|k| !k.is_empty()).map(digest),
        metrics: metrics::Metrics::default(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        shutting_down: AtomicBool::new(false),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve-http")
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidOutput(format!("cannot start the HTTP runtime: {e}")))?;
    let addr = SocketAddr::new(args.host, args.port);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::InvalidInput(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Error::io("<socket>", e))?;
        on_listening(bound, &format!("model {model_name}, {backend_name} backend"));
        run(listener, Arc::clone(&state), stop, args.shutdown_timeout).await
    })?;
    // Every connection is closed: dropping the state stops the backend's threads.
    drop(runtime);
    drop(state);
    Ok(())
}

/// The tokenizer's chat template, compiled; or why there is none.
fn chat_template(tokenizer: Option<&Tokenizer>) -> Result<std::result::Result<ChatTemplate, String>> {
    let Some(tokenizer) = tokenizer else {
        return Ok(Err(
            "This model has no tokenizer, so /v1/chat/completions cannot format messages: \
             use /v1/completions with token ids, or start serve with --tokenizer"
                .into(),
        ));
    };
    let Some(source) = tokenizer.chat_template() else {
        return Ok(Err(
            "This model has no chat template (no chat_template in tokenizer_config.json and no \
             chat_template.jinja beside the tokenizer), so /v1/chat/completions cannot format messages: \
             use /v1/completions with a prompt"
                .into(),
        ));
    };
    let token = |id: Option<u32>| id.and_then(|i| tokenizer.id_token(i)).unwrap_or_default();
    let template = ChatTemplate::new(source, &token(tokenizer.bos_id()), &token(tokenizer.eos_id()))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(Ok(template))
}

/// Serves until a signal, then: refuse new generations, let running ones
/// finish within `deadline`, cancel what is left, close.
async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop: &AtomicBool,
    deadline: Duration,
) -> Result<()> {
    let (begin_shutdown, shutdown) = tokio::sync::watch::channel(false);
    let app = router(Arc::clone(&state));
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut shutdown = shutdown;
        let _ = shutdown.wait_for(|&go| go).await;
    });
    let mut server = tokio::spawn(async move { server.await });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::InvalidOutput(format!("cannot watch for SIGTERM: {e}")))?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            () = tokio::time::sleep(SIGNAL_POLL) => if stop.load(Ordering::Relaxed) { break },
            ended = &mut server => {
                return match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Error::InvalidOutput(format!("the HTTP server failed: {e}"))),
                    Err(e) => Err(Error::InvalidOutput(format!("the HTTP server failed: {e}"))),
                };
            }
        }
    }
    eprintln!(
        "shutting down: no new requests; running ones have {:.0} s to finish",
        deadline.as_secs_f64()
    );
    state.shutting_down.store(true, Ordering::Relaxed);
    state.service.close();
    let _ = begin_shutdown.send(true);
    if tokio::time::timeout(deadline, &mut server).await.is_err() {
        let load = state.service.load();
        eprintln!(
            "shutting down: cancelling {} running and {} waiting requests",
            load.running, load.waiting
        );
        state.service.cancel_all();
        if tokio::time::timeout(CLOSE_GRACE, &mut server).await.is_err() {
            server.abort();
        }
    }
    Ok(())
}
