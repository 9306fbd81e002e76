//! `convert`'s command line, and the conversion it asks for.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::Args;

use crate::DType;
use crate::cli_values::at_least_one;
use crate::convert::{ConvertOptions, ConvertReport, convert};
use crate::error::Result;
use crate::hf::source;
use crate::progress::Progress;
use crate::trtllm::mapping::Parallelism;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trtllm-minitron convert --model nvidia/Minitron-8B-Base --output ckpt/minitron-8b-bf16
  trtllm-minitron convert --model ./Minitron-4B-Base --output ckpt/4b-tp2 --tp-size 2 --dtype float16 --json

--model takes a directory, or a hub id resolved offline from the local Hugging Face
cache (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub); nothing is downloaded.")]
pub struct ConvertArgs {
    /// Hugging Face model directory, or hub id (org/name[@revision]) in the local cache.
    #[arg(long, value_name = "MODEL")]
    pub model: String,
    /// Output directory (created atomically): new, empty, or an earlier conversion (with --force).
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Target dtype [default: the checkpoint's own].
    #[arg(long)]
    pub dtype: Option<DType>,
    /// Tensor parallel size: it must divide the attention heads and the MLP size, and divide
    /// or be a multiple of the kv heads (an invalid one is refused with the list of valid ones).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one, allow_negative_numbers = true)]
    pub tp_size: usize,
    /// Pipeline parallel size: 1 up to the number of layers.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one, allow_negative_numbers = true)]
    pub pp_size: usize,
    /// Replace an earlier conversion at --output, once the new one is complete (a directory
    /// holding anything else is never replaced).
    #[arg(long)]
    pub force: bool,
    /// Threads that cut, cast and write the rank files (one more reads the source) [default: number of cores].
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub jobs: Option<usize>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ConvertArgs {
    pub fn options(&self) -> ConvertOptions {
        ConvertOptions {
            dtype: self.dtype,
            parallelism: Parallelism {
                tp: self.tp_size,
                pp: self.pp_size,
            },
            force: self.force,
            jobs: self.jobs.unwrap_or_else(ConvertOptions::default_jobs),
        }
    }
}

/// Converts `--model` (a directory or cached hub id) into `--output`.
pub fn run(args: &ConvertArgs, progress: &dyn Progress, stop: &AtomicBool) -> Result<ConvertReport> {
    let src = source::resolve(&args.model)?;
    convert(&src, &args.output, &args.options(), progress, stop)
}
