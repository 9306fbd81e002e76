//! `run`: generation from prompts, on the CPU reference runtime (the TensorRT-LLM
//! Executor backend comes with the `trtllm` feature).

pub mod args;
pub mod inputs;
pub mod output;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, IoContext, Result};
use crate::generation::text::TextStream;
use crate::generation::{
    FinishReason, Flow, Generated, GenerationBackend, Request, SamplingParams, max_new_tokens_problem,
};
use crate::progress::Progress;
use crate::runtime::free_memory;
use crate::target::{BackendChoice, open_backend};
use crate::tokenizer::Tokenizer;
use inputs::Prompt;
use output::{JsonResult, timings, write_logits};

pub use args::RunArgs;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: String,
    pub backend: BackendChoice,
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
/// when there is one prompt and no `--json`). On the reference runtime it
/// sets malloc to keep freed memory for the rest of the process
/// (`free_memory::keep_freed_memory`).
pub fn run(opts: &RunOptions, out: &mut dyn Write, progress: &dyn Progress, stop: &AtomicBool) -> Result<()> {
    opts.sampling.validate()?;
    if let Some(problem) = max_new_tokens_problem(opts.max_new_tokens) {
        return Err(Error::InvalidInput(format!(
            "--max-new-tokens {}: {problem}",
            opts.max_new_tokens
        )));
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
    if opened.reference {
        free_memory::keep_freed_memory();
    }
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

    let limits = context_limits(&requests, backend);
    for warning in limits.iter().filter_map(|l| l.warning.as_deref()) {
        progress.say(&format!("warning: {warning}"));
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
                max_new_tokens: limits[i].max_new_tokens,
                warnings: limits[i].warning.iter().map(String::as_str).collect(),
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
    let cut_short = results
        .iter()
        .filter(|g| g.finish_reason == Some(FinishReason::Cancelled))
        .count();
    if cut_short > 0 {
        // Logits of unfinished prompts are not worth a file: none is written.
        return Err(Error::GenerationInterrupted(what_was_written(
            opts, &results, streaming,
        )));
    }
    if let Some(path) = &opts.output_logits {
        write_logits(path, &results, backend.vocab_size())?;
    }
    Ok(())
}

/// How many new tokens a request can get, and the warning when the model's
/// context allows fewer than asked.
struct LengthLimit {
    max_new_tokens: usize,
    warning: Option<String>,
}

fn context_limits(requests: &[Request], backend: &dyn GenerationBackend) -> Vec<LengthLimit> {
    let limit = backend.context_limit();
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| match limit.and_then(|l| Some((l, r.room_left(l)?))) {
            Some((l, room)) => LengthLimit {
                max_new_tokens: room,
                warning: Some(format!(
                    "--max-new-tokens {}: prompt {i} has {} tokens and the model's context holds {} ({}), \
                     so at most {room} new tokens can follow; generation stops there",
                    r.max_new_tokens,
                    r.input_ids.len(),
                    l.tokens,
                    l.source
                )),
            },
            None => LengthLimit {
                max_new_tokens: r.max_new_tokens,
                warning: None,
            },
        })
        .collect()
}

/// After Ctrl-C: what is on stdout, and that the logits file was not written.
fn what_was_written(opts: &RunOptions, results: &[Generated], streaming: bool) -> String {
    let plural = |k: usize| if k == 1 { "" } else { "s" };
    let cut: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].finish_reason == Some(FinishReason::Cancelled))
        .collect();
    let n = results.len();
    let mut text = if streaming {
        let tokens = results.first().map_or(0, |g| g.output_ids.len());
        format!(
            "interrupted after {tokens} generated token{}: the text so far is on stdout",
            plural(tokens)
        )
    } else {
        let finished = format!(
            "interrupted: {} of {n} prompt{} finished",
            n - cut.len(),
            plural(n)
        );
        if opts.json {
            format!(
                "{finished}; stdout has a JSON line for each prompt, with finish_reason \"cancelled\" for the {} cut short",
                cut.len()
            )
        } else {
            let which: Vec<String> = cut.iter().map(|i| format!("[{i}]")).collect();
            format!(
                "{finished}; stdout has each prompt's text, only the text so far for {}",
                which.join(", ")
            )
        }
    };
    if let Some(path) = &opts.output_logits {
        text.push_str(&format!("; --output-logits {} was not written", path.display()));
    }
    text
}

fn ids_text(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Reads `--prompt-file` or standard input.
pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>> {
    if path == Path::new("-") {
        return inputs::read_prompt_lines(std::io::stdin().lock(), Path::new("<stdin>"));
    }
    let file = std::fs::File::open(path).at(path)?;
    inputs::read_prompt_lines(std::io::BufReader::new(file), path)
}
