//! The `trtllm-minitron` command line: parses arguments, dispatches to the
//! commands (`trtllm_minitron::commands`), prints their reports and picks the
//! exit status. All real work is in the library.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use trtllm_minitron::Error;
use trtllm_minitron::commands::build::BuildArgs;
use trtllm_minitron::commands::check::CheckArgs;
use trtllm_minitron::commands::convert::ConvertArgs;
use trtllm_minitron::commands::inspect::InspectArgs;
use trtllm_minitron::commands::run::RunArgs;
use trtllm_minitron::commands::{build, check, convert, inspect, run};
use trtllm_minitron::engine_build::BuildError;
use trtllm_minitron::progress::TerminalBar;

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
    Convert(ConvertArgs),
    /// Describe a Hugging Face checkpoint, TensorRT-LLM checkpoint or engine directory.
    Inspect(InspectArgs),
    /// Generate text from prompts (CPU reference runtime; TensorRT-LLM with --features trtllm).
    Run(RunArgs),
    /// Build a TensorRT-LLM engine: convert (reusing a fresh conversion), then run trtllm-build.
    Build(BuildArgs),
    /// Regression checks for CI: run a golden suite and compare with its expectations or the reference.
    Check(CheckArgs),
}

/// How a command ended, short of an error.
enum Outcome {
    Success,
    /// `check` found a regression.
    Regression,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A second Ctrl-C while cleaning up is ignored: cleanup is quick and must finish.
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed));
    // `check` tells a broken setup (2) from a regression (1) for CI.
    let error_status = if matches!(cli.command, Command::Check(_)) {
        2
    } else {
        1
    };
    exit_status(dispatch(cli.command), error_status)
}

/// The exit policy: 0 on success, 1 on a regression, 130 after Ctrl-C, and
/// `error_status` on any other error (printed with its causes).
fn exit_status(result: anyhow::Result<Outcome>, error_status: u8) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Regression) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted)) {
                ExitCode::from(130)
            } else {
                ExitCode::from(error_status)
            }
        }
    }
}

/// The error with its context and causes, each said once: the library's
/// errors already end with their source's text.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn dispatch(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Convert(args) => {
            let report = convert::run(&args, &TerminalBar::new(), &STOP)
                .with_context(|| format!("converting {} to {}", args.model, args.output.display()))?;
            print(&report, args.json)?;
        }
        Command::Inspect(args) => print(&inspect::inspect_spec(&args.path)?, args.json)?,
        Command::Run(args) => {
            let options = args.options()?;
            run::run(
                &options,
                &mut std::io::stdout().lock(),
                &TerminalBar::new(),
                &STOP,
            )
            .with_context(|| format!("running {}", args.model))?;
        }
        Command::Build(args) => {
            // Library errors keep their type, so that Ctrl-C still exits with 130.
            let report = build::run(&args, &STOP)
                .map_err(|e| match e {
                    BuildError::Library(inner) => anyhow::Error::from(*inner),
                    other => anyhow::Error::from(other),
                })
                .with_context(|| format!("building {}", args.target()))?;
            print(&report, args.json)?;
        }
        Command::Check(args) => return check_suite(&args),
    }
    Ok(Outcome::Success)
}

fn check_suite(args: &CheckArgs) -> anyhow::Result<Outcome> {
    let report = check::check(&args.options(), &TerminalBar::new(), &STOP)
        .with_context(|| format!("checking {} with {}", args.target(), args.suite.display()))?;
    if let Some(path) = &args.junit {
        report
            .write_junit(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&report, args.json)?;
    if !args.json && (args.record || args.record_speed) {
        writeln!(std::io::stdout(), "recorded into {}", args.suite.display())?;
    }
    Ok(if report.ok() {
        Outcome::Success
    } else {
        Outcome::Regression
    })
}

/// A report on stdout: pretty JSON with `--json`, else its text.
fn print(report: &(impl Serialize + std::fmt::Display), json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}
