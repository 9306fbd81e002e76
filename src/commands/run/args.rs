//! `run`'s command line, and the [`RunOptions`] it means.

use std::path::{Path, PathBuf};

use clap::Args;

use super::inputs::{self, Prompt};
use super::{RunOptions, read_prompts};
use crate::cli_values::at_least_one;
use crate::error::Result;
use crate::generation::SamplingParams;
use crate::generation::sampling::arg as sampling;
use crate::target::BackendChoice;

/// One `--input-ids` prompt, read when the command line is.
#[derive(Debug, Clone)]
pub struct TokenIds(pub Vec<u32>);

fn token_ids(text: &str) -> std::result::Result<TokenIds, String> {
    inputs::token_ids(text).map(TokenIds)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trtllm-minitron run --model tests/fixtures/demo-shakespeare \"To be or not to be,\"
  trtllm-minitron run --model nvidia/Minitron-8B-Base --max-new-tokens 100 --temperature 0.8 --top-p 0.9 --seed 1 \"Complete the paragraph:\"
  trtllm-minitron run --model ckpt/minitron-8b-tp2 --input-ids 5,17,42 --json --output-logits logits.safetensors
  printf 'ROMEO:\\nJULIET:\\n' | trtllm-minitron run --model tests/fixtures/demo-shakespeare - --json

--model takes a Hugging Face model directory or cached hub id (converted once into
~/.cache/trtllm-minitron and reused while fresh), or a TensorRT-LLM checkpoint of any tp/pp.
Decoding is greedy unless --temperature, --top-k or --top-p is given.

The CPU reference runtime reads TRTLLM_MINITRON_THREADS=N (threads; default: one per CPU),
TRTLLM_MINITRON_ISA=avx512|avx2|generic (caps the vector kernels; default: the best the CPU
has) and TRTLLM_MINITRON_MATMUL=f32|bf16 (bf16 checkpoints: matrix-product inputs rounded
to bf16 on CPUs with AVX512_BF16, about twice as fast to prefill; the default f32 products
match transformers more closely). Any other value of these three is refused (exit status 2),
whatever the backend.")]
pub struct RunArgs {
    /// Hugging Face model (directory or cached hub id), TensorRT-LLM checkpoint, or engine directory.
    #[arg(long, value_name = "MODEL")]
    pub model: String,
    /// Prompts; `-` reads one prompt per line from standard input.
    #[arg(value_name = "PROMPT")]
    pub prompts: Vec<String>,
    /// A file of prompts: one per line, or JSONL objects with "prompt" or "input_ids".
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// A prompt as token ids, e.g. 5,17,42 (repeatable; no tokenizer needed).
    #[arg(long, value_name = "IDS", value_parser = token_ids)]
    pub input_ids: Vec<TokenIds>,
    /// What runs the model: `reference` (the CPU runtime: Hugging Face models and checkpoints),
    /// `trtllm` (TensorRT-LLM's Executor: engines; needs --features trtllm), or `auto`
    /// (engines on TensorRT-LLM, everything else on the reference).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// tokenizer.json or SentencePiece tokenizer.model (or their directory) [default: beside the model].
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Most tokens to generate per prompt (at least 1); generation also ends at the end token,
    /// a --stop string, or the model's context limit (a warning says so).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_new_tokens: usize,
    /// Sampling temperature, >= 0; 0 = greedy [default: greedy, or 1.0 with --top-k/--top-p].
    #[arg(long, value_name = "T", value_parser = sampling::temperature, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Keep only the k most likely tokens, 0 (off) to 1024.
    #[arg(long, value_name = "K", value_parser = sampling::top_k, allow_negative_numbers = true)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass, in (0, 1].
    #[arg(long, value_name = "P", value_parser = sampling::top_p, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Random seed, 0 to 2^64-1: the same seed gives the same output.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Penalise tokens already in the sequence, as transformers does: a positive logit is divided
    /// by it, a negative one multiplied; 1 = off, must be > 0.
    #[arg(long, value_name = "R", default_value_t = 1.0, value_parser = sampling::repetition_penalty, allow_negative_numbers = true)]
    pub repetition_penalty: f32,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long = "stop", value_name = "STR")]
    pub stops: Vec<String>,
    /// Keep generating after the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Add a BOS token [default: what tokenizer.json's post-processor does; Minitron's adds none].
    #[arg(long, conflicts_with = "no_add_bos")]
    pub add_bos: bool,
    /// Add no BOS token, whatever the tokenizer's post-processor does.
    #[arg(long)]
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
            prompts.push(Prompt::Ids(ids.0.clone()));
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
