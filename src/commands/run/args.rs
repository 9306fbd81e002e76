//! `run`'s command line, and the [`RunOptions`] it means.

use std::path::{Path, PathBuf};

use clap::Args;

use super::inputs::{Prompt, parse_ids};
use super::{RunOptions, read_prompts};
use crate::error::Result;
use crate::generation::SamplingParams;
use crate::target::BackendChoice;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trtllm-minitron run --model tests/fixtures/demo-shakespeare \"To be or not to be,\"
  trtllm-minitron run --model nvidia/Minitron-8B-Base --max-new-tokens 100 --temperature 0.8 --top-p 0.9 --seed 1 \"Complete the paragraph:\"
  trtllm-minitron run --model ckpt/minitron-8b-tp2 --input-ids 5,17,42 --json --output-logits logits.safetensors
  printf 'ROMEO:\\nJULIET:\\n' | trtllm-minitron run --model tests/fixtures/demo-shakespeare - --json

--model takes a Hugging Face model directory or cached hub id (converted once into
~/.cache/trtllm-minitron and reused while fresh), or a TensorRT-LLM checkpoint of any tp/pp.
Decoding is greedy unless --temperature, --top-k or --top-p is given.")]
pub struct RunArgs {
    /// Hugging Face model (directory or cached hub id), TensorRT-LLM checkpoint, or engine directory.
    #[arg(long, value_name = "PATH")]
    pub model: String,
    /// Prompts; `-` reads one prompt per line from standard input.
    #[arg(value_name = "PROMPT")]
    pub prompts: Vec<String>,
    /// A file of prompts: one per line, or JSONL objects with "prompt" or "input_ids".
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// A prompt as token ids, e.g. 5,17,42 (repeatable; no tokenizer needed).
    #[arg(long, value_name = "IDS")]
    pub input_ids: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// tokenizer.json or SentencePiece tokenizer.model (or their directory) [default: beside the model].
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy [default: greedy, or 1.0 with --top-k/--top-p].
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass, in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Random seed: the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repetition_penalty: f32,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long = "stop", value_name = "STR")]
    pub stops: Vec<String>,
    /// Keep generating after the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Add a BOS token [default: what tokenizer.json's post-processor does; Minitron's adds none].
    #[arg(long, overrides_with = "no_add_bos")]
    pub add_bos: bool,
    #[arg(long, overrides_with = "add_bos")]
    pub no_add_bos: bool,
    /// One JSON object per prompt per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write context and generation logits (float32) to this safetensors file.
    #[arg(long, value_name = "FILE")]
    pub output_logits: Option<PathBuf>,
}

impl RunArgs {
    /// The options these flags mean; reads `--prompt-file` and, for `-`, standard input.
    pub fn options(&self) -> Result<RunOptions> {
        let mut prompts = Vec::new();
        for p in &self.prompts {
            if p == "-" {
                prompts.extend(read_prompts(Path::new("-"))?);
            } else {
                prompts.push(Prompt::Text(p.clone()));
            }
        }
        if let Some(file) = &self.prompt_file {
            prompts.extend(read_prompts(file)?);
        }
        for ids in &self.input_ids {
            prompts.push(Prompt::Ids(parse_ids(ids, "--input-ids")?));
        }
        Ok(RunOptions {
            model: self.model.clone(),
            backend: self.backend,
            prompts,
            tokenizer: self.tokenizer.clone(),
            max_new_tokens: self.max_new_tokens,
            sampling: self.sampling(),
            stops: self.stops.clone(),
            ignore_eos: self.ignore_eos,
            add_bos: if self.add_bos {
                Some(true)
            } else if self.no_add_bos {
                Some(false)
            } else {
                None
            },
            json: self.json,
            output_logits: self.output_logits.clone(),
        })
    }

    /// Greedy unless asked otherwise; temperature 1 when only top-k/top-p is given.
    fn sampling(&self) -> SamplingParams {
        let sampling_asked = self.top_k.is_some() || self.top_p.is_some();
        SamplingParams {
            temperature: self.temperature.unwrap_or(if sampling_asked { 1.0 } else { 0.0 }),
            top_k: self.top_k.unwrap_or(0),
            top_p: self.top_p.unwrap_or(1.0),
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        }
    }
}
