//! `serve`'s command line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use clap::Args;

use crate::cli_values::at_least_one;
use crate::generation::ServiceOptions;
use crate::runtime::service::DEFAULT_PREFILL_CHUNK;
use crate::target::BackendChoice;

/// The environment variable `--api-key` falls back to.
pub const API_KEY_ENV: &str = "TRTLLM_MINITRON_API_KEY";

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trtllm-minitron serve --model tests/fixtures/demo-shakespeare
  trtllm-minitron serve --model nvidia/Minitron-8B-Base --max-batch 16 --kv-cache-memory 6GiB
  TRTLLM_MINITRON_API_KEY=secret trtllm-minitron serve --engine engines/minitron-8b --host 0.0.0.0 --port 8080

  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
    -d '{\"model\": \"demo-shakespeare\", \"prompt\": \"ROMEO:\", \"max_tokens\": 32}'

OpenAI-compatible endpoints: POST /v1/completions, POST /v1/chat/completions (when the
tokenizer has a chat template), GET /v1/models, GET /health, GET /metrics (Prometheus).
Requests join and leave the running batch at every decoding step. Decoding follows
OpenAI's defaults (temperature 1, top_p 1) unless the request says otherwise.
Ctrl-C or SIGTERM stops accepting requests, lets running ones finish for
--shutdown-timeout seconds, cancels the rest and exits 0.
On the CPU reference runtime, TRTLLM_MINITRON_THREADS, TRTLLM_MINITRON_ISA and
TRTLLM_MINITRON_MATMUL=bf16 apply as for `run`, and a value they cannot take is refused
as there (see `run --help`).")]
pub struct ServeArgs {
    /// Hugging Face model (directory or cached hub id), TensorRT-LLM checkpoint, or engine directory.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "engine",
        conflicts_with = "engine"
    )]
    pub model: Option<String>,
    /// A TensorRT-LLM engine directory (needs --features trtllm): the same as --model DIR --backend trtllm.
    #[arg(long, value_name = "DIR")]
    pub engine: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// tokenizer.json or SentencePiece tokenizer.model (or their directory) [default: beside the model].
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Address to listen on; other machines reach the server only if this is not a loopback address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port; the one taken is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Requests decoding together [default: 16 on the reference runtime, the engine's max_batch_size on TensorRT-LLM].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_batch: Option<usize>,
    /// Requests waiting for a place in the batch; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_queue: usize,
    /// Reference runtime: KV cache all running requests may reserve together (each reserves
    /// its prompt plus max_tokens), e.g. 4GiB, 512MiB [default: 4GiB].
    #[arg(long, value_name = "SIZE")]
    pub kv_cache_memory: Option<ByteSize>,
    /// Reference runtime: prompt tokens run per decoding step, so that a long prompt joins
    /// over several steps instead of stalling the running requests.
    #[arg(long, value_name = "TOKENS", default_value_t = DEFAULT_PREFILL_CHUNK, value_parser = at_least_one)]
    pub prefill_chunk: usize,
    /// Clients must send `Authorization: Bearer KEY` to the /v1 endpoints.
    #[arg(long, value_name = "KEY", env = API_KEY_ENV, hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model name clients send and /v1/models lists [default: the model directory's name, or the hub id].
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Seconds running requests may take to finish after Ctrl-C or SIGTERM before they are cancelled.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    pub shutdown_timeout: Duration,
}

impl ServeArgs {
    /// What `--model` / `--engine` names, as `run --model` takes it.
    pub fn target(&self) -> String {
        match (&self.model, &self.engine) {
            (Some(m), _) => m.clone(),
            (None, Some(e)) => e.display().to_string(),
            (None, None) => String::new(),
        }
    }

    /// `--engine` means the TensorRT-LLM backend.
    pub fn backend(&self) -> BackendChoice {
        if self.engine.is_some() {
            BackendChoice::Trtllm
        } else {
            self.backend
        }
    }

    /// The name clients use: `--served-model-name`, else the model directory's
    /// name (an existing path), else the argument itself (a hub id).
    pub fn model_name(&self) -> String {
        if let Some(name) = &self.served_model_name {
            return name.clone();
        }
        let target = self.target();
        let path = Path::new(&target);
        match path.file_name() {
            Some(name) if path.exists() => name.to_string_lossy().into_owned(),
            _ => target,
        }
    }

    pub fn service_options(&self) -> ServiceOptions {
        ServiceOptions {
            max_batch: self.max_batch,
            max_queue: self.max_queue,
            kv_cache_bytes: self.kv_cache_memory.map(|b| b.as_u64()),
            prefill_chunk: Some(self.prefill_chunk),
        }
    }
}

/// A number of seconds >= 0, fractions allowed (clap value parser).
fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "expected a number of seconds >= 0 (e.g. 30 or 0.5)".into())
}
