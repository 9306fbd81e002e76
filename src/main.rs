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
use trtllm_minitron::target::BackendChoice;
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
    /// Generate text from prompts (CPU reference runtime; TensorRT-LLM with --features trtllm).
    #[command(after_help = "Examples:
  trtllm-minitron run --model tests/fixtures/demo-shakespeare \"To be or not to be,\"
  trtllm-minitron run --model nvidia/Minitron-8B-Base --max-new-tokens 100 --temperature 0.8 --top-p 0.9 --seed 1 \"Complete the paragraph:\"
  trtllm-minitron run --model ckpt/minitron-8b-tp2 --input-ids 5,17,42 --json --output-logits logits.safetensors
  printf 'ROMEO:\\nJULIET:\\n' | trtllm-minitron run --model tests/fixtures/demo-shakespeare - --json

--model takes a Hugging Face model directory or cached hub id (converted once into
~/.cache/trtllm-minitron and reused while fresh), or a TensorRT-LLM checkpoint of any tp/pp.
Decoding is greedy unless --temperature, --top-k or --top-p is given.")]
    Run(RunArgs),
    /// Build a TensorRT-LLM engine: convert (reusing a fresh conversion), then run trtllm-build.
    #[command(after_help = "Examples:
  trtllm-minitron build minitron-8b-base-bf16-a100
  trtllm-minitron build engines/minitron-8b-bf16-tp2-a100.toml --output /models/minitron-8b-tp2
  trtllm-minitron build demo-shakespeare --dry-run
  trtllm-minitron build minitron-4b-base-bf16-a100 --max-batch-size 16 --max-num-tokens 16384 --json
  trtllm-minitron build --model nvidia/Minitron-4B-Base --dtype bfloat16 --max-input-len 1024 --max-seq-len 2048
  trtllm-minitron build demo-shakespeare --trtllm-build /usr/local/bin/trtllm-build --force

PROFILE is a TOML file, or the name of one in ./engines (every key: engines/README.md);
flags override its keys. trtllm-build is --trtllm-build, else $TRTLLM_BUILD, else the one on
PATH; it must be TensorRT-LLM 1.0 to 1.2.x (1.3 removed engines) and needs a GPU.
An engine whose profile, checkpoint, TensorRT-LLM/TensorRT versions and GPU architecture are
unchanged is left alone (\"up to date\"). Engines with tp*pp = N ranks run on N GPUs:
  mpirun -n N trtllm-minitron run --model ENGINE_DIR ...")]
    Build(BuildArgs),
    /// Regression checks for CI: run a golden suite and compare with its expectations or the reference.
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
    Check(CheckArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["model", "engine"])))]
struct CheckArgs {
    /// Hugging Face model (directory or cached hub id) or TensorRT-LLM checkpoint to check.
    #[arg(long, value_name = "PATH")]
    model: Option<String>,
    /// TensorRT-LLM engine directory to check (needs --features trtllm and a GPU).
    #[arg(long, value_name = "PATH")]
    engine: Option<String>,
    /// The golden suite (TOML).
    #[arg(long, value_name = "FILE")]
    suite: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Compare with the CPU reference runtime over the same checkpoint instead of recorded expectations.
    #[arg(long, value_name = "BACKEND", value_parser = ["reference"], conflicts_with_all = ["record", "record_speed"])]
    against: Option<String>,
    /// The checkpoint the reference runs [default: the engine's, from its build manifest].
    #[arg(long, value_name = "DIR", requires = "against")]
    reference_checkpoint: Option<PathBuf>,
    /// tokenizer.json or SentencePiece tokenizer.model (or their directory) [default: beside the model].
    #[arg(long, value_name = "PATH")]
    tokenizer: Option<PathBuf>,
    /// Write the cases' expectations into the suite file from this run.
    #[arg(long)]
    record: bool,
    /// Write the speed baselines (tokens/s, first-token latency) into the suite file.
    #[arg(long)]
    record_speed: bool,
    /// Skip the suite's speed check.
    #[arg(long)]
    no_speed: bool,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

#[derive(Args)]
struct BuildArgs {
    /// Engine profile: a TOML file, or the name of one in ./engines.
    #[arg(value_name = "PROFILE", required_unless_present = "model")]
    profile: Option<String>,
    /// Hub id, model directory or TensorRT-LLM checkpoint [default: the profile's `model`].
    #[arg(long, value_name = "SRC")]
    model: Option<String>,
    /// Engine directory [default: trtllm-engines/<profile name>].
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    #[arg(long, value_parser = ["bfloat16", "float16", "float32"])]
    dtype: Option<String>,
    #[arg(long, value_name = "N")]
    tp_size: Option<usize>,
    #[arg(long, value_name = "N")]
    pp_size: Option<usize>,
    #[arg(long, value_name = "N")]
    max_batch_size: Option<usize>,
    #[arg(long, value_name = "N")]
    max_input_len: Option<usize>,
    #[arg(long, value_name = "N")]
    max_seq_len: Option<usize>,
    #[arg(long, value_name = "N")]
    max_num_tokens: Option<usize>,
    #[arg(long, value_name = "N")]
    max_beam_width: Option<usize>,
    /// Ranks trtllm-build builds at once, one GPU each [default: tp*pp].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// GPU architecture the engine is meant for, e.g. sm80 (A100), sm90 (H100).
    #[arg(long, value_name = "SM")]
    target_arch: Option<String>,
    /// The trtllm-build to run [default: $TRTLLM_BUILD, else trtllm-build on PATH].
    #[arg(long, value_name = "PATH")]
    trtllm_build: Option<PathBuf>,
    /// Print the convert step and the exact trtllm-build command; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rebuild even when up to date; replace an output directory that is not an engine of ours.
    #[arg(long)]
    force: bool,
    /// Print a machine-readable report on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Hugging Face model (directory or cached hub id), TensorRT-LLM checkpoint, or engine directory.
    #[arg(long, value_name = "PATH")]
    model: String,
    /// Prompts; `-` reads one prompt per line from standard input.
    #[arg(value_name = "PROMPT")]
    prompts: Vec<String>,
    /// A file of prompts: one per line, or JSONL objects with "prompt" or "input_ids".
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// A prompt as token ids, e.g. 5,17,42 (repeatable; no tokenizer needed).
    #[arg(long, value_name = "IDS")]
    input_ids: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// tokenizer.json or SentencePiece tokenizer.model (or their directory) [default: beside the model].
    #[arg(long, value_name = "PATH")]
    tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy [default: greedy, or 1.0 with --top-k/--top-p].
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling mass, in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Random seed: the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repetition_penalty: f32,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long = "stop", value_name = "STR")]
    stops: Vec<String>,
    /// Keep generating after the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    /// Add a BOS token [default: what tokenizer.json's post-processor does; Minitron's adds none].
    #[arg(long, overrides_with = "no_add_bos")]
    add_bos: bool,
    #[arg(long, overrides_with = "add_bos")]
    no_add_bos: bool,
    /// One JSON object per prompt per line on stdout.
    #[arg(long)]
    json: bool,
    /// Write context and generation logits (float32) to this safetensors file.
    #[arg(long, value_name = "FILE")]
    output_logits: Option<PathBuf>,
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
        // Its own exit codes: 0 all passed, 1 a regression, 2 usage or infrastructure.
        Command::Check(args) => return run_check(args),
        Command::Convert(args) => run_convert(args),
        Command::Inspect(args) => run_inspect(args),
        Command::Run(args) => run_run(args),
        Command::Build(args) => run_build(args),
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

fn run_run(args: RunArgs) -> anyhow::Result<()> {
    use trtllm_minitron::commands::run::inputs::{Prompt, parse_ids};
    use trtllm_minitron::commands::run::{RunOptions, read_prompts, run};
    use trtllm_minitron::generation::SamplingParams;

    let mut prompts = Vec::new();
    for p in &args.prompts {
        if p == "-" {
            prompts.extend(read_prompts(std::path::Path::new("-"))?);
        } else {
            prompts.push(Prompt::Text(p.clone()));
        }
    }
    if let Some(file) = &args.prompt_file {
        prompts.extend(read_prompts(file)?);
    }
    for ids in &args.input_ids {
        prompts.push(Prompt::Ids(parse_ids(ids, "--input-ids")?));
    }
    let sampling_asked = args.top_k.is_some() || args.top_p.is_some();
    let sampling = SamplingParams {
        temperature: args.temperature.unwrap_or(if sampling_asked { 1.0 } else { 0.0 }),
        top_k: args.top_k.unwrap_or(0),
        top_p: args.top_p.unwrap_or(1.0),
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    };
    let options = RunOptions {
        model: args.model.clone(),
        backend: args.backend,
        prompts,
        tokenizer: args.tokenizer,
        max_new_tokens: args.max_new_tokens,
        sampling,
        stops: args.stops,
        ignore_eos: args.ignore_eos,
        add_bos: if args.add_bos {
            Some(true)
        } else if args.no_add_bos {
            Some(false)
        } else {
            None
        },
        json: args.json,
        output_logits: args.output_logits,
    };
    let bar = TerminalBar::new();
    let progress: &dyn Progress = match &bar {
        Some(b) => b,
        None => &Silent,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run(&options, &mut out, progress, &STOP).with_context(|| format!("running {}", args.model))?;
    Ok(())
}

fn run_build(args: BuildArgs) -> anyhow::Result<()> {
    use std::sync::{Mutex, OnceLock};
    use trtllm_minitron::engine_build::{
        BuildError, BuildObserver, BuildRequest, BuildStatus, BuilderStatus, Overrides,
    };

    /// Conversion: the byte bar. trtllm-build: a spinner with elapsed time and
    /// ranks, or (stderr not a terminal) one line per finished rank.
    struct Observer {
        convert: Option<TerminalBar>,
        terminal: bool,
        spinner: OnceLock<ProgressBar>,
        last: Mutex<Option<(usize, Option<usize>)>>,
    }
    impl Observer {
        fn say(&self, text: &str) {
            match self.spinner.get() {
                Some(s) => s.println(text),
                None => eprintln!("{text}"),
            }
        }
    }
    impl BuildObserver for Observer {
        fn warning(&self, message: &str) {
            self.say(&format!("warning: {message}"));
        }
        fn step(&self, message: &str) {
            self.say(message);
        }
        fn convert_progress(&self) -> &dyn Progress {
            match &self.convert {
                Some(b) => b,
                None => &Silent,
            }
        }
        fn builder_progress(&self, s: &BuilderStatus) {
            let now = (s.done, s.current);
            let current = match s.current {
                Some(r) => format!(", building rank {r}"),
                None => String::new(),
            };
            if self.terminal {
                let bar = self.spinner.get_or_init(|| {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} trtllm-build [{elapsed_precise}] {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(std::time::Duration::from_millis(200));
                    bar
                });
                bar.set_message(format!("{}/{} ranks done{current}", s.done, s.world));
            } else if let Ok(mut last) = self.last.lock()
                && *last != Some(now)
            {
                *last = Some(now);
                eprintln!(
                    "trtllm-build: {}/{} ranks done{current} ({:.0} s)",
                    s.done,
                    s.world,
                    s.elapsed.as_secs_f64()
                );
            }
        }
    }

    let request = BuildRequest {
        profile: args.profile.clone(),
        overrides: Overrides {
            model: args.model.clone(),
            dtype: args.dtype.as_deref().and_then(DType::parse),
            tp: args.tp_size,
            pp: args.pp_size,
            workers: args.workers,
            target_arch: args.target_arch.clone(),
            max_batch_size: args.max_batch_size,
            max_input_len: args.max_input_len,
            max_seq_len: args.max_seq_len,
            max_num_tokens: args.max_num_tokens,
            max_beam_width: args.max_beam_width,
        },
        output: args.output.clone(),
        trtllm_build: args.trtllm_build.clone(),
        dry_run: args.dry_run,
        force: args.force,
    };
    let observer = Observer {
        convert: TerminalBar::new(),
        terminal: std::io::stderr().is_terminal(),
        spinner: OnceLock::new(),
        last: Mutex::new(None),
    };
    let what = args.profile.clone().or(args.model.clone()).unwrap_or_default();
    let result = trtllm_minitron::engine_build::build(&request, &observer, &STOP);
    if let Some(s) = observer.spinner.get() {
        s.finish_and_clear();
    }
    // Library errors keep their type so Ctrl-C still exits with 130.
    let report = result
        .map_err(|e| match e {
            BuildError::Library(inner) => anyhow::Error::from(*inner),
            other => anyhow::Error::from(other),
        })
        .with_context(|| format!("building {what}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let p = &report.profile;
    let s = &p.settings;
    let out = report.output.display();
    let versions = report.toolchain.as_ref().map(|t| {
        format!(
            "TensorRT-LLM {}, TensorRT {} ({}, Python {})",
            t.tensorrt_llm_version,
            t.tensorrt_version,
            t.trtllm_build.display(),
            t.python.display()
        )
    });
    match report.status {
        BuildStatus::UpToDate => {
            println!(
                "up to date: {out} (profile {}, {} tp={} pp={}); nothing to do (--force rebuilds)",
                p.name, s.dtype, s.tp, s.pp
            );
        }
        BuildStatus::Built => {
            let d = report.durations.clone().unwrap_or_default();
            println!(
                "built {out} (profile {}, {} tp={} pp={}): {} rank engine(s) in {:.1} s (convert {:.1} s, trtllm-build {:.1} s)",
                p.name,
                s.dtype,
                s.tp,
                s.pp,
                s.tp * s.pp,
                d.total_seconds,
                d.convert_seconds.unwrap_or(0.0),
                d.build_seconds
            );
            if let Some(v) = versions {
                println!("  with {v}");
            }
            if let Some(log) = &report.log {
                println!("  log {}", log.display());
            }
            if s.tp * s.pp > 1 {
                println!(
                    "  run it on {n} GPUs: mpirun -n {n} trtllm-minitron run --model {out} ...",
                    n = s.tp * s.pp
                );
            }
        }
        BuildStatus::DryRun => {
            println!("dry run: nothing was converted or built");
            let file = p
                .file
                .as_ref()
                .map(|f| format!(" ({})", f.display()))
                .unwrap_or_default();
            println!("profile       {}{file}", p.name);
            println!(
                "model         {} -> {}",
                report.model.spec,
                report.model.dir.display()
            );
            match (
                &report.checkpoint.convert_reason,
                &report.checkpoint.convert_command,
            ) {
                (Some(why), Some(cmd)) => {
                    println!(
                        "convert       {}",
                        cmd.iter()
                            .map(|a| trtllm_minitron::engine_build::flags::shell_quote(a))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    println!("              ({why})");
                }
                _ => println!(
                    "convert       skipped: using the checkpoint {}",
                    report.checkpoint.dir.display()
                ),
            }
            println!("trtllm-build  {}", report.command_line());
            println!(
                "output        {out} (written to a temporary sibling, validated, then renamed into place)"
            );
            if report.up_to_date {
                println!("engine        up to date: a real build would do nothing");
            } else if let Some(why) = &report.rebuild_reason {
                println!("engine        would be rebuilt: {why}");
            }
            println!("builder       {}", versions.unwrap_or_else(|| "not found".into()));
            match report.gpus.first() {
                Some(g) => println!(
                    "gpu           {} ({}, {} MiB) x {}",
                    g.name,
                    g.sm,
                    g.memory_mib.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                    report.gpus.len()
                ),
                None => println!("gpu           none found"),
            }
        }
    }
    Ok(())
}

/// `check`: 0 when every case passed, 1 on a regression, 2 on a usage or
/// infrastructure error (130 on Ctrl-C).
fn run_check(args: CheckArgs) -> ExitCode {
    use trtllm_minitron::commands::check::{CheckOptions, check};

    let model = args.model.clone().or(args.engine.clone()).unwrap_or_default();
    let options = CheckOptions {
        model: model.clone(),
        backend: args.backend,
        suite: args.suite.clone(),
        tokenizer: args.tokenizer.clone(),
        against_reference: args.against.is_some(),
        reference_checkpoint: args.reference_checkpoint.clone(),
        record: args.record,
        record_speed: args.record_speed,
        skip_speed: args.no_speed,
    };
    let bar = TerminalBar::new();
    let progress: &dyn Progress = match &bar {
        Some(b) => b,
        None => &Silent,
    };
    let report = match check(&options, progress, &STOP) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: checking {model} with {}: {e}", args.suite.display());
            return if matches!(e, Error::Interrupted) {
                ExitCode::from(130)
            } else {
                ExitCode::from(2)
            };
        }
    };
    if let Some(path) = &args.junit
        && let Err(e) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, report.junit()))
    {
        eprintln!("error: writing {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.table());
        if args.record || args.record_speed {
            println!("recorded into {}", args.suite.display());
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let path = if std::path::Path::new(&args.path).exists() {
        PathBuf::from(&args.path)
    } else {
        source::resolve(&args.path)?.dir
    };
    let inspection = trtllm_minitron::commands::inspect::inspect(&path)?;
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
