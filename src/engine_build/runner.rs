//! Runs `trtllm-build`: its output (stdout and stderr, merged by line) goes to
//! a log file as it comes, finished ranks are read from the log
//! ("... rank{r}.engine"), and a failure is reported with the log's last lines.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::BuildObserver;
use super::error::{BuildError, BuildResult};
use crate::error::{Error, IoContext};

/// Lines of the log quoted when the builder fails.
pub const TAIL_LINES: usize = 25;

/// Where a running build is, for progress displays.
#[derive(Debug, Clone, Default)]
pub struct BuilderStatus {
    pub world: usize,
    /// Ranks whose engine file has been written.
    pub done: usize,
    /// The lowest rank not finished yet (the one being built when workers = 1).
    pub current: Option<usize>,
    pub elapsed: Duration,
}

#[derive(Default)]
struct Shared {
    done: BTreeSet<usize>,
    tail: VecDeque<String>,
}

/// Runs the builder to completion; returns the seconds it took.
pub fn run(
    program: &Path,
    args: &[String],
    log_path: &Path,
    world: usize,
    observer: &dyn BuildObserver,
    stop: &AtomicBool,
) -> BuildResult<f64> {
    let started = Instant::now();
    let log = std::fs::File::create(log_path).at(log_path)?;
    let log = Arc::new(Mutex::new(log));
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut child = Command::new(program)
        .args(args)
        // Python buffers a piped stdout; unbuffered, the log and progress follow the build.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BuildError::BuilderNotFound(format!("cannot start {}: {e}", program.display())))?;

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut readers = 0;
    let outputs: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in outputs.into_iter().flatten() {
        let (log, shared, tx) = (log.clone(), shared.clone(), done_tx.clone());
        readers += 1;
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                if let Ok(mut f) = log.lock() {
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(mut s) = shared.lock() {
                    if let Some(r) = finished_rank(&line) {
                        s.done.insert(r);
                    }
                    s.tail.push_back(line);
                    if s.tail.len() > TAIL_LINES {
                        s.tail.pop_front();
                    }
                }
            }
            let _ = tx.send(());
        });
    }
    drop(done_tx);

    let status_now = |shared: &Mutex<Shared>| {
        let done = shared.lock().map(|s| s.done.clone()).unwrap_or_default();
        BuilderStatus {
            world,
            done: done.len(),
            current: (0..world).find(|r| !done.contains(r)),
            elapsed: started.elapsed(),
        }
    };
    let exit: ExitStatus = loop {
        if stop.load(Ordering::Relaxed) {
            // Ctrl-C also reached the builder (same process group); make sure it is gone.
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Interrupted.into());
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(Error::io(program, e).into()),
        }
        observer.builder_progress(&status_now(&shared));
        std::thread::sleep(Duration::from_millis(100));
    };
    // Worker processes the builder left behind may hold the pipes open: wait a
    // little for the readers, then go on with what was read.
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..readers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    observer.builder_progress(&status_now(&shared));
    if let Ok(mut f) = log.lock() {
        let _ = f.flush();
    }
    let seconds = started.elapsed().as_secs_f64();
    if exit.success() {
        return Ok(seconds);
    }
    if stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted.into());
    }
    Err(BuildError::BuilderFailed {
        status: describe(exit),
        tail: tail_text(&shared),
        log: log_path.to_path_buf(),
    })
}

fn tail_text(shared: &Mutex<Shared>) -> String {
    let lines: Vec<String> = shared
        .lock()
        .map(|s| s.tail.iter().cloned().collect())
        .unwrap_or_default();
    if lines.is_empty() {
        return "  (it printed nothing)".into();
    }
    lines
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `n` lines of a log file, for messages.
pub fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = match sig {
                6 => " (SIGABRT)",
                9 => " (SIGKILL: out of host memory?)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {sig}{name}")
        }
        None => format!("ended abnormally ({status})"),
    }
}

/// `... Serializing engine to /out/rank3.engine...` -> 3.
pub fn finished_rank(line: &str) -> Option<usize> {
    line.match_indices("rank").find_map(|(at, _)| {
        let rest = &line[at + 4..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || !rest[digits.len()..].starts_with(".engine") {
            return None;
        }
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_read_from_the_log() {
        assert_eq!(
            finished_rank("[TRT-LLM] [I] Serializing engine to /tmp/e/rank1.engine..."),
            Some(1)
        );
        assert_eq!(finished_rank("[rank0] wrote /tmp/e/rank0.engine"), Some(0));
        assert_eq!(finished_rank("[TRT-LLM] [I] rank 1 building"), None);
        assert_eq!(finished_rank("nothing here"), None);
    }
}
