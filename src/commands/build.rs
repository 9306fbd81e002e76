//! `build`'s command line, and how a build looks on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine_build::profile::ProfileKeys;
use crate::engine_build::{BuildObserver, BuildReport, BuildRequest, BuildResult, BuilderStatus, build};
use crate::progress::{Progress, TerminalBar};

#[derive(Debug, Args)]
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
unchanged is left alone (\"up to date\"). `trtllm-minitron run` drives single-GPU engines
(tp = pp = 1); an engine of tp*pp = N ranks needs N GPUs and TensorRT-LLM's own multi-process
runtime (one MPI process per GPU, mpirun -n N), which `run` does not implement.")]
pub struct BuildArgs {
    /// Engine profile: a TOML file, or the name of one in ./engines.
    #[arg(value_name = "PROFILE", required_unless_present = "model")]
    pub profile: Option<String>,
    /// Profile keys given as flags; each replaces the key of the same name.
    #[command(flatten)]
    pub keys: ProfileKeys,
    /// Engine directory [default: trtllm-engines/<profile name>].
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The trtllm-build to run [default: $TRTLLM_BUILD, else trtllm-build on PATH].
    #[arg(long, value_name = "PATH")]
    pub trtllm_build: Option<PathBuf>,
    /// Print the convert step and the exact trtllm-build command; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rebuild even when up to date. (A stale engine of ours is replaced without it; a
    /// directory holding anything else never is.)
    #[arg(long)]
    pub force: bool,
    /// Print a machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
}

impl BuildArgs {
    /// What is built, for messages: the profile, else the model.
    pub fn target(&self) -> &str {
        self.profile
            .as_deref()
            .or(self.keys.model.as_deref())
            .unwrap_or_default()
    }

    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            profile: self.profile.clone(),
            overrides: self.keys.clone(),
            output: self.output.clone(),
            trtllm_build: self.trtllm_build.clone(),
            dry_run: self.dry_run,
            force: self.force,
        }
    }
}

/// Builds with the conversion's byte bar and trtllm-build's progress on stderr.
pub fn run(args: &BuildArgs, stop: &AtomicBool) -> BuildResult<BuildReport> {
    let observer = TerminalObserver::new();
    let result = build(&args.request(), &observer, stop);
    observer.finish();
    result
}

/// Conversion: the byte bar. trtllm-build: a spinner with elapsed time and
/// ranks, or (stderr not a terminal) one line per finished rank.
struct TerminalObserver {
    convert: TerminalBar,
    terminal: bool,
    spinner: OnceLock<ProgressBar>,
    last: Mutex<Option<(usize, Option<usize>)>>,
}

impl TerminalObserver {
    fn new() -> Self {
        TerminalObserver {
            convert: TerminalBar::new(),
            terminal: std::io::stderr().is_terminal(),
            spinner: OnceLock::new(),
            last: Mutex::new(None),
        }
    }

    fn say(&self, text: &str) {
        match self.spinner.get() {
            Some(s) => s.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(s) = self.spinner.get() {
            s.finish_and_clear();
        }
    }
}

impl BuildObserver for TerminalObserver {
    fn warning(&self, message: &str) {
        self.say(&format!("warning: {message}"));
    }

    fn step(&self, message: &str) {
        self.say(message);
    }

    fn convert_progress(&self) -> &dyn Progress {
        &self.convert
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
