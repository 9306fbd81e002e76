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
use trtllm_minitron::commands::cache::CacheArgs;
use trtllm_minitron::commands::check::CheckArgs;
use trtllm_minitron::commands::convert::ConvertArgs;
use trtllm_minitron::commands::inspect::InspectArgs;
use trtllm_minitron::commands::run::RunArgs;
use trtllm_minitron::commands::serve::ServeArgs;
use trtllm_minitron::commands::{build, cache, check, convert, inspect, run, serve};
use trtllm_minitron::engine_build::BuildError;
use trtllm_minitron::progress::TerminalBar;
use trtllm_minitron::runtime::settings::{self as runtime_settings, EnvError};

/// Set by Ctrl-C (and SIGTERM: `stop_on_sigterm`); long operations poll it and clean up.
static STOP: AtomicBool = AtomicBool::new(false);

/// The exit statuses (README, "Exit status"); `exit_status` applies them.
const EXIT_STATUS_HELP: &str = "Exit status (every command):
  0    success
  1    the work failed (an input could not be used, conversion, build or generation
       failed; check: a regression)
  2    bad usage: an unknown option, a missing or invalid value (refused before anything
       runs; run, serve, check: also TRTLLM_MINITRON_THREADS/_ISA/_MATMUL's), or an option
       value this model cannot take (e.g. --tp-size 3 for 48 heads); check: also any error
       that kept the checks from running
  130  interrupted (Ctrl-C; convert, build, run, check: also SIGTERM); the error line
       says what, if anything, was written (serve: Ctrl-C and SIGTERM are how it is
       stopped; a graceful shutdown exits 0)";

#[derive(Parser)]
#[command(
    name = "trtllm-minitron",
    version,
    about = "NVIDIA Minitron (NemotronForCausalLM) to TensorRT-LLM: convert checkpoints, build engines, \
             generate text, check engines, serve them over HTTP",
    after_help = EXIT_STATUS_HELP
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
    /// The conversion cache run, check and build convert into: list, rm, prune.
    Cache(CacheArgs),
    /// Serve a model over an OpenAI-compatible HTTP API, batching requests continuously.
    Serve(ServeArgs),
}

/// Sets `STOP` on SIGTERM (storing to an atomic is async-signal-safe). As
/// with Ctrl-C, a second one while cleaning up is taken the same way: the
/// cleanup is quick and must finish (SIGKILL still ends the process).
fn stop_on_sigterm() {
    extern "C" fn on_sigterm(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }
    // SAFETY: a plain sigaction; the handler only stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let installed = libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        debug_assert_eq!(installed, 0, "sigaction(SIGTERM)");
    }
}

/// How a command ended, short of an error.
enum Outcome {
    Success,
    /// `check` found a regression.
    Regression,
}

fn main() -> ExitCode {
    // Clap's own errors (unknown option, invalid value) exit with 2 here.
    let cli = Cli::parse();
    // A second Ctrl-C while cleaning up is ignored: cleanup is quick and must finish.
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed));
    // SIGTERM (`kill`, a CI job's timeout, systemd) stops the commands that
    // poll STOP as Ctrl-C does, so that a convert or build cleans up its
    // staging directory instead of leaving gigabytes behind. `serve` watches
    // SIGTERM itself (a graceful shutdown); `inspect` and `cache` are short
    // and keep the default (the process ends at once).
    if matches!(
        cli.command,
        Command::Convert(_) | Command::Build(_) | Command::Run(_) | Command::Check(_)
    ) {
        stop_on_sigterm();
    }
    let is_check = matches!(cli.command, Command::Check(_));
    exit_status(dispatch(cli.command), is_check)
}

/// The exit policy of every command (`EXIT_STATUS_HELP`): 0 success, 1 the
/// work failed or a regression, 2 bad usage, 130 after Ctrl-C. `check` also
/// exits 2 for any error, so CI can tell a broken setup from a regression.
fn exit_status(result: anyhow::Result<Outcome>, is_check: bool) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Regression) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            let status = if e.downcast_ref::<Error>().is_some_and(Error::is_interrupted) {
                130
            } else if is_check || is_usage(&e) {
                2
            } else {
                1
            };
            ExitCode::from(status)
        }
    }
}

/// An option value that does not fit the model (found when the model is read,
/// not by clap) or a runtime environment variable with a value it cannot
/// take: bad usage all the same.
fn is_usage(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<EnvError>().is_some() {
        return true;
    }
    match (e.downcast_ref::<Error>(), e.downcast_ref::<BuildError>()) {
        (Some(Error::Mapping(_)), _) => true,
        (_, Some(BuildError::ProfileValue { from_flag, .. })) => *from_flag,
        _ => false,
    }
}

/// The error with the context added here: each message is complete, and
/// errors that hold another's text do not also give it as their source.
fn describe(e: &anyhow::Error) -> String {
    e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

fn dispatch(command: Command) -> anyhow::Result<Outcome> {
    // The reference runtime's environment variables, refused before any work
    // when misspelt (the runtime would only warn and take its default).
    if matches!(command, Command::Run(_) | Command::Serve(_) | Command::Check(_)) {
        runtime_settings::check()?;
    }
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
            // Library errors keep their type, for the exit status (Ctrl-C: 130).
            let report = build::run(&args, &STOP)
                .map_err(|e| match e {
                    BuildError::Library(inner) => anyhow::Error::from(*inner),
                    other => anyhow::Error::from(other),
                })
                .with_context(|| format!("building {}", args.target()))?;
            print(&report, args.json)?;
        }
        Command::Check(args) => return check_suite(&args),
        Command::Cache(args) => print(&cache::run(&args)?, args.json)?,
        Command::Serve(args) => {
            // Ctrl-C and SIGTERM are the way a server is stopped: a graceful shutdown exits 0.
            serve::serve(&args, &TerminalBar::new(), &STOP, &mut |addr, what| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "listening on http://{addr} ({what})");
                let _ = out.flush();
            })
            .with_context(|| format!("serving {}", args.target()))?;
        }
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
