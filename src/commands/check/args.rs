//! `check`'s command line, and the [`CheckOptions`] it means.

use std::path::PathBuf;

use clap::Args;

use super::CheckOptions;
use crate::target::BackendChoice;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["model", "engine"])))]
#[command(after_help = "Examples:
  trtllm-minitron check --model tests/fixtures/demo-shakespeare --suite tests/suites/demo-shakespeare.toml
  trtllm-minitron check --engine trtllm-engines/minitron-8b-base-bf16-a100 --suite tests/suites/minitron-8b-base.toml --junit check.xml
  trtllm-minitron check --engine trtllm-engines/minitron-8b-base-bf16-a100 --suite tests/suites/minitron-8b-base.toml --against reference
  trtllm-minitron check --model nvidia/Minitron-8B-Base --suite tests/suites/minitron-8b-base.toml --record
  trtllm-minitron check --engine trtllm-engines/minitron-8b-base-bf16-a100 --suite tests/suites/minitron-8b-base.toml --record-speed

Without --against, each case's output must match the expectations recorded in the suite
(exact tokens unless the case sets min_agreement; logits and log-probs within the dtype's
tolerance). --against reference instead runs every greedy case on the CPU reference runtime
over the same checkpoint (an engine's, from its build manifest) and compares logits and tokens.
--record writes the expectations into the suite (reference backend by default).
Suite format and tolerances: tests/suites/README.md.
Exit status: 0 all passed, 1 a regression, 2 a usage or infrastructure error.")]
pub struct CheckArgs {
    /// Hugging Face model (directory or cached hub id) or TensorRT-LLM checkpoint to check.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// TensorRT-LLM engine directory to check (needs --features trtllm and a GPU).
    #[arg(long, value_name = "DIR")]
    pub engine: Option<String>,
    /// The golden suite (TOML).
    #[arg(long, value_name = "FILE")]
    pub suite: PathBuf,
    /// What runs the cases: `reference` (the CPU runtime), `trtllm` (TensorRT-LLM's Executor:
    /// engines; needs --features trtllm), or `auto` (engines on TensorRT-LLM, everything else on
    /// the reference).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Compare with the CPU reference runtime over the same checkpoint instead of recorded expectations.
    #[arg(long, value_name = "BACKEND", value_parser = ["reference"], conflicts_with_all = ["record", "record_speed"])]
    pub against: Option<String>,
    /// The checkpoint the reference runs [default: the engine's, from its build manifest].
    #[arg(long, value_name = "DIR", requires = "against")]
    pub reference_checkpoint: Option<PathBuf>,
    /// tokenizer.json or SentencePiece tokenizer.model (or their directory) [default: beside the model].
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Write the cases' expectations into the suite file from this run.
    #[arg(long)]
    pub record: bool,
    /// Write the speed baselines (tokens/s, first-token latency) into the suite file.
    #[arg(long)]
    pub record_speed: bool,
    /// Skip the suite's speed check.
    #[arg(long)]
    pub no_speed: bool,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

impl CheckArgs {
    /// What is checked: the --model or --engine argument.
    pub fn target(&self) -> &str {
        self.model
            .as_deref()
            .or(self.engine.as_deref())
            .unwrap_or_default()
    }

    pub fn options(&self) -> CheckOptions {
        CheckOptions {
            model: self.target().to_string(),
            backend: self.backend,
            suite: self.suite.clone(),
            tokenizer: self.tokenizer.clone(),
            against_reference: self.against.is_some(),
            reference_checkpoint: self.reference_checkpoint.clone(),
            record: self.record,
            record_speed: self.record_speed,
            skip_speed: self.no_speed,
        }
    }
}
