//! What `run` prints and writes: one JSON object per prompt, and the logits
//! file. Shared by every backend.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::DType;
use crate::error::{Error, IoContext, Result};
use crate::generation::{FinishReason, Generated};
use crate::safetensors_file::build_header;

#[derive(Debug, Serialize)]
pub struct Timings {
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub decode_tokens_per_second: f64,
}

/// The `--json` line of one prompt.
#[derive(Debug, Serialize)]
pub struct JsonResult<'a> {
    pub index: usize,
    pub input_ids: &'a [u32],
    pub output_ids: &'a [u32],
    pub text: Option<&'a str>,
    pub finish_reason: FinishReason,
    /// The most new tokens it could get: `--max-new-tokens`, or fewer when the
    /// model's context holds fewer after the prompt.
    pub max_new_tokens: usize,
    /// Said on stderr too (e.g. the context allowing fewer new tokens than asked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<&'a str>,
    /// The log-probability of each generated token but a final end token (see
    /// [`Generated::logprobs`]).
    pub logprobs: &'a [f32],
    pub timings: Timings,
}

pub fn timings(g: &Generated, prompt_tokens: usize) -> Timings {
    let n = g.output_ids.len();
    Timings {
        prefill_seconds: g.prefill_seconds,
        decode_seconds: g.decode_seconds,
        prompt_tokens,
        generated_tokens: n,
        // The first token comes from the prefill; the decode loop makes the rest.
        decode_tokens_per_second: if g.decode_seconds > 0.0 {
            n.saturating_sub(1) as f64 / g.decode_seconds
        } else {
            0.0
        },
    }
}

/// What the rows of a `generation_logits` tensor stand for, in the file's
/// metadata under the tensor's name.
pub const ROWS_EVERY_TOKEN: &str = "one row per output token";
/// TensorRT-LLM returns no logits for a final end token (the reference runtime,
/// like transformers, does).
pub const ROWS_BUT_END_TOKEN: &str =
    "one row per output token but the final end token (TensorRT-LLM returns no logits for it)";

/// Writes `context_logits` `[n_input, vocab]` and `generation_logits` `[n_rows, vocab]`
/// (float32, vocab unpadded) to a safetensors file, atomically. With several
/// prompts the names get a `.{index}` suffix. `n_rows` is the number of output
/// tokens, or one fewer when the engine ended on the end token: the metadata
/// says which, under each `generation_logits` name.
pub fn write_logits(path: &Path, results: &[Generated], vocab: usize) -> Result<()> {
    let suffix = |i: usize| {
        if results.len() == 1 {
            String::new()
        } else {
            format!(".{i}")
        }
    };
    let mut tensors = Vec::new();
    let mut rows = BTreeMap::new();
    for (i, g) in results.iter().enumerate() {
        tensors.push((
            format!("context_logits{}", suffix(i)),
            DType::F32,
            vec![g.context_logits.len(), vocab],
        ));
        let name = format!("generation_logits{}", suffix(i));
        let meaning = if g.end_token_row_missing() {
            ROWS_BUT_END_TOKEN
        } else {
            ROWS_EVERY_TOKEN
        };
        rows.insert(name.clone(), meaning.to_string());
        tensors.push((name, DType::F32, vec![g.generation_logits.len(), vocab]));
    }
    let header = build_header(&tensors, &rows);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    let write = || -> Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temp).at(&temp)?);
        out.write_all(&header).at(&temp)?;
        for g in results {
            for row in g.context_logits.iter().chain(&g.generation_logits) {
                if row.len() != vocab {
                    return Err(Error::InvalidOutput(format!(
                        "a logits row has {} values, not {vocab}",
                        row.len()
                    )));
                }
                for v in row {
                    out.write_all(&v.to_le_bytes()).at(&temp)?;
                }
            }
        }
        out.flush().at(&temp)?;
        std::fs::rename(&temp, path).at(path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}
