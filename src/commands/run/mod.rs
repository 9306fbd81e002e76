//! `run`: generation from prompts, on the CPU reference runtime (the TensorRT-LLM
//! Executor backend comes with the `trtllm` feature).

pub mod inputs;
pub mod output;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, IoContext, Result};
use crate::generation::GenerationBackend;
use crate::generation::SamplingParams;
use crate::generation::text::TextStream;
use crate::generation::{FinishReason, Flow, Request};
use crate::progress::Progress;
use crate::runtime::model::Model;
use crate::target::{self, RunTarget};
use crate::tokenizer::{TOKENIZER_FILE, Tokenizer};
use crate::trtllm::conversion_manifest::ConversionManifest;
use inputs::Prompt;
use output::{JsonResult, timings, write_logits};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Reference,
    Trtllm,
    Auto,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: String,
    pub backend: Backend,
    pub prompts: Vec<Prompt>,
    pub tokenizer: Option<PathBuf>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub stops: Vec<String>,
    pub ignore_eos: bool,
    /// `None`: what tokenizer.json's post-processor does.
    pub add_bos: Option<bool>,
    pub json: bool,
    pub output_logits: Option<PathBuf>,
}

/// Runs every prompt and writes the results to `out` (text streams as it comes
/// when there is one prompt and no `--json`).
pub fn run(opts: &RunOptions, out: &mut dyn Write, progress: &dyn Progress, stop: &AtomicBool) -> Result<()> {
    opts.sampling.validate()?;
    if opts.max_new_tokens == 0 {
        // TensorRT-LLM refuses a request that generates nothing; the reference does the same.
        return Err(Error::InvalidInput(
            "--max-new-tokens 0: must be at least 1".into(),
        ));
    }
    if opts.prompts.is_empty() {
        return Err(Error::InvalidInput(
            "no prompt: give one as an argument, --prompt-file FILE, - for standard input, or --input-ids"
                .into(),
        ));
    }
    let needs_text = opts.prompts.iter().any(|p| matches!(p, Prompt::Text(_)));
    let opened = open_backend(
        &opts.model,
        opts.backend,
        opts.tokenizer.as_deref(),
        needs_text,
        progress,
        stop,
    )?;
    let tokenizer = opened.tokenizer;
    let backend: &dyn GenerationBackend = opened.backend.as_ref();

    let mut requests = Vec::new();
    for prompt in &opts.prompts {
        let input_ids = match (prompt, &tokenizer) {
            (Prompt::Ids(ids), _) => ids.clone(),
            (Prompt::Text(text), Some(t)) => t.encode(text, opts.add_bos)?,
            (Prompt::Text(_), None) => unreachable!("load_tokenizer requires one for text prompts"),
        };
        let end_id = if opts.ignore_eos {
            None
        } else {
            tokenizer
                .as_ref()
                .and_then(Tokenizer::eos_id)
                .or(backend.eos_id())
        };
        requests.push(Request {
            input_ids,
            max_new_tokens: opts.max_new_tokens,
            sampling: opts.sampling.clone(),
            end_id,
            want_context_logits: opts.output_logits.is_some(),
            want_generation_logits: opts.output_logits.is_some(),
            want_logprobs: opts.json,
        });
    }

    let streaming = requests.len() == 1 && !opts.json;
    let mut streams: Vec<TextStream> = requests
        .iter()
        .map(|r| TextStream::new(tokenizer.as_ref(), &opts.stops, r.end_id))
        .collect();
    let mut failure: Option<Error> = None;
    let results = backend.generate(
        &requests,
        &mut |event| {
            let stream = &mut streams[event.request];
            match stream.push(event.token) {
                Ok(text) => {
                    if streaming && !text.is_empty() {
                        let _ = out.write_all(text.as_bytes());
                        let _ = out.flush();
                    }
                    if stream.stopped {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    Flow::Stop
                }
            }
        },
        stop,
    )?;
    if let Some(e) = failure {
        return Err(e);
    }

    for (i, (g, stream)) in results.iter().zip(streams.iter_mut()).enumerate() {
        let tail = stream.finish()?;
        let mut finish = g.finish_reason.unwrap_or(FinishReason::Length);
        if stream.stopped {
            finish = FinishReason::Stop;
        }
        let stdout_err = |e| Error::io("<stdout>", e);
        if opts.json {
            let line = JsonResult {
                index: i,
                input_ids: &requests[i].input_ids,
                output_ids: &g.output_ids,
                text: stream.has_text().then_some(stream.text.as_str()),
                finish_reason: finish,
                logprobs: &g.logprobs,
                timings: timings(g, requests[i].input_ids.len()),
            };
            let text = serde_json::to_string(&line).map_err(|e| Error::InvalidOutput(e.to_string()))?;
            writeln!(out, "{text}").map_err(stdout_err)?;
        } else if streaming {
            write!(out, "{tail}").map_err(stdout_err)?;
            if !stream.has_text() {
                write!(out, "{}", ids_text(&g.output_ids)).map_err(stdout_err)?;
            }
            writeln!(out).map_err(stdout_err)?;
        } else {
            let shown = if stream.has_text() {
                stream.text.clone()
            } else {
                ids_text(&g.output_ids)
            };
            writeln!(out, "[{i}] {shown}").map_err(stdout_err)?;
        }
    }
    if let Some(path) = &opts.output_logits {
        write_logits(path, &results, backend.vocab_size())?;
    }
    if results
        .iter()
        .any(|g| g.finish_reason == Some(FinishReason::Cancelled))
    {
        return Err(Error::Interrupted);
    }
    Ok(())
}

fn ids_text(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// A backend ready to generate, with what it runs and its tokenizer: what `run` and
/// `check` both open from a `--model` argument.
pub struct Opened {
    pub backend: Box<dyn GenerationBackend>,
    /// The TensorRT-LLM checkpoint the backend runs.
    pub checkpoint: PathBuf,
    pub tokenizer: Option<Tokenizer>,
}

/// Resolves `model` (Hugging Face model, checkpoint or engine, as `run --model` takes)
/// and opens it on `backend`, with the tokenizer at `tokenizer` (a file or its
/// directory) or else the one beside the checkpoint; `needs_tokenizer` makes
/// a missing one an error.
pub fn open_backend(
    model: &str,
    backend: Backend,
    tokenizer: Option<&Path>,
    needs_tokenizer: bool,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<Opened> {
    let target = target::resolve(model, progress, stop)?;
    let checkpoint = match (&target, backend) {
        #[cfg(feature = "trtllm")]
        (RunTarget::Engine(dir), Backend::Trtllm | Backend::Auto) => {
            // The tokenizer beside the engine, else beside the checkpoint it was built from.
            let beside = match Tokenizer::find_beside(dir) {
                Some(_) => dir.clone(),
                None => crate::trtllm::build_manifest::BuildManifest::read(dir)
                    .map(|m| m.checkpoint.dir)
                    .unwrap_or_else(|_| dir.clone()),
            };
            let tokenizer = load_tokenizer(tokenizer, needs_tokenizer, &beside)?;
            let engine = crate::executor::engine::open_engine(dir)?;
            return Ok(Opened {
                backend: Box::new(engine),
                checkpoint: dir.clone(),
                tokenizer,
            });
        }
        #[cfg(feature = "trtllm")]
        (RunTarget::Engine(dir), Backend::Reference) => {
            return Err(Error::InvalidInput(format!(
                "{}: the reference backend runs Hugging Face models and TensorRT-LLM checkpoints, \
                 not engines: use --backend trtllm (or auto)",
                dir.display()
            )));
        }
        #[cfg(feature = "trtllm")]
        (RunTarget::Checkpoint(dir), Backend::Trtllm) => {
            return Err(Error::InvalidInput(format!(
                "{}: --backend trtllm runs engine directories, and this is a checkpoint: \
                 build an engine from it with `trtllm-minitron build`, or use --backend reference",
                dir.display()
            )));
        }
        #[cfg(not(feature = "trtllm"))]
        (RunTarget::Engine(dir), _) | (RunTarget::Checkpoint(dir), Backend::Trtllm) => {
            return Err(Error::InvalidInput(format!(
                "{}: running {} needs the TensorRT-LLM backend, which this build does not include \
                 (rebuild with --features trtllm on a machine with TensorRT-LLM); \
                 the reference backend runs Hugging Face models and TensorRT-LLM checkpoints",
                dir.display(),
                if matches!(target, RunTarget::Engine(_)) {
                    "an engine"
                } else {
                    "--backend trtllm"
                }
            )));
        }
        (RunTarget::Checkpoint(dir), Backend::Reference | Backend::Auto) => dir.clone(),
    };
    let tokenizer = load_tokenizer(tokenizer, needs_tokenizer, &checkpoint)?;
    let model = Model::open(&checkpoint)?;
    Ok(Opened {
        backend: Box::new(model),
        checkpoint,
        tokenizer,
    })
}

/// `--tokenizer`, else the tokenizer beside the checkpoint (tokenizer.json, else a
/// SentencePiece tokenizer.model); required only for text prompts.
fn load_tokenizer(explicit: Option<&Path>, needs_text: bool, checkpoint: &Path) -> Result<Option<Tokenizer>> {
    let path = match explicit {
        Some(p) if p.is_dir() => Some(Tokenizer::find_beside(p).unwrap_or_else(|| p.join(TOKENIZER_FILE))),
        Some(p) => Some(p.to_path_buf()),
        None => Tokenizer::find_beside(checkpoint),
    };
    match path {
        Some(p) => {
            if !p.is_file() {
                return Err(Error::io(&p, std::io::Error::from(std::io::ErrorKind::NotFound)));
            }
            // A tokenizer beside a cached conversion is a copy of the model's own: name that.
            let source_dir = (explicit.is_none() && checkpoint.starts_with(target::cache_root()))
                .then(|| ConversionManifest::read(checkpoint).ok())
                .flatten()
                .map(|m| m.source.dir);
            Ok(Some(Tokenizer::from_file(&p).map_err(|e| match &source_dir {
                Some(dir) => e.in_dir(dir),
                None => e,
            })?))
        }
        None if needs_text => Err(Error::InvalidInput(format!(
            "text prompts need a tokenizer, but there is no tokenizer.json or tokenizer.model in {} \
             (pass --tokenizer PATH, or give token ids with --input-ids)",
            checkpoint.display()
        ))),
        None => Ok(None),
    }
}

/// Reads `--prompt-file` or standard input.
pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>> {
    if path == Path::new("-") {
        return inputs::read_prompt_lines(std::io::stdin().lock(), Path::new("<stdin>"));
    }
    let file = std::fs::File::open(path).at(path)?;
    inputs::read_prompt_lines(std::io::BufReader::new(file), path)
}
