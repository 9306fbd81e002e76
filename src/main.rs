//! The `trtllm-minitron` command line: parses arguments, wires progress and
//! Ctrl-C, prints results. All real work is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use trtllm_minitron::convert::{ConvertOptions, ConvertReport, convert};
use trtllm_minitron::hf::source;
use trtllm_minitron::progress::{Progress, Silent};
use trtllm_minitron::trtllm::mapping::Parallelism;
use trtllm_minitron::{DType, Error};

/// Set by Ctrl-C; long operations poll it and clean up.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Parser)]
#[command(
    name = "trtllm-minitron",
    version,
    about = "NVIDIA Minitron (NemotronForCausalLM) to TensorRT-LLM: convert, inspect"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a Hugging Face checkpoint to a TensorRT-LLM checkpoint.
    #[command(after_help = "Examples:
  trtllm-minitron convert --model nvidia/Minitron-8B-Base --output ckpt/minitron-8b-bf16
  trtllm-minitron convert --model ./Minitron-4B-Base --output ckpt/4b-tp2 --tp-size 2 --dtype float16 --json

--model takes a directory, or a hub id resolved offline from the local Hugging Face
cache (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub); nothing is downloaded.")]
    Convert(ConvertArgs),
    /// Describe a Hugging Face checkpoint, TensorRT-LLM checkpoint or engine directory.
    #[command(after_help = "Examples:
  trtllm-minitron inspect nvidia/Minitron-8B-Base
  trtllm-minitron inspect ckpt/minitron-8b-bf16 --json")]
    Inspect(InspectArgs),
}

#[derive(Args)]
struct ConvertArgs {
    /// Hugging Face model directory, or hub id (org/name[@revision]) in the local cache.
    #[arg(long, value_name = "SRC")]
    model: String,
    /// Output directory (created atomically; must not exist or be empty, unless --force).
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// Target dtype [default: the checkpoint's own].
    #[arg(long, value_parser = ["bfloat16", "float16", "float32"])]
    dtype: Option<String>,
    /// Tensor parallel size.
    #[arg(long, default_value_t = 1)]
    tp_size: usize,
    /// Pipeline parallel size.
    #[arg(long, default_value_t = 1)]
    pp_size: usize,
    /// Replace an existing non-empty output directory (only once the new one is complete).
    #[arg(long)]
    force: bool,
    /// Rank files written at once [default: number of cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// Directory (or cached hub id) to describe.
    path: String,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A second Ctrl-C while cleaning up is ignored: cleanup is quick and must finish.
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed));
    let result = match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Inspect(args) => run_inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted)) {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run_convert(args: ConvertArgs) -> anyhow::Result<()> {
    let src = source::resolve(&args.model)?;
    let options = ConvertOptions {
        dtype: args.dtype.as_deref().and_then(DType::parse),
        parallelism: Parallelism {
            tp: args.tp_size,
            pp: args.pp_size,
        },
        force: args.force,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(2)),
    };
    let bar = TerminalBar::new();
    let progress: &dyn Progress = match &bar {
        Some(b) => b,
        None => &Silent,
    };
    let report = convert(&src, &args.output, &options, progress, &STOP)
        .with_context(|| format!("converting {} to {}", args.model, args.output.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &ConvertReport) {
    let gb = r.bytes_written as f64 / 1e9;
    println!(
        "wrote {} ({} -> {}, tp={} pp={}): {} rank file(s), {:.2} GB in {:.1} s ({:.2} GB/s)",
        r.output.display(),
        r.source_dtype,
        r.dtype,
        r.tp_size,
        r.pp_size,
        r.ranks.len(),
        gb,
        r.seconds,
        gb / r.seconds.max(1e-9)
    );
    if !r.tokenizer_files.is_empty() {
        println!("copied {}", r.tokenizer_files.join(", "));
    }
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let path = if std::path::Path::new(&args.path).exists() {
        PathBuf::from(&args.path)
    } else {
        source::resolve(&args.path)?.dir
    };
    let inspection = trtllm_minitron::inspect::inspect(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{inspection}");
    }
    Ok(())
}

/// A byte progress bar on stderr, only when stderr is a terminal.
struct TerminalBar(ProgressBar);

impl TerminalBar {
    fn new() -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(TerminalBar(bar))
    }
}

impl Progress for TerminalBar {
    fn begin(&self, phase: &str, total: u64) {
        self.0.set_message(phase.to_string());
        self.0.set_length(total);
    }
    fn advance(&self, done: u64) {
        self.0.inc(done);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
