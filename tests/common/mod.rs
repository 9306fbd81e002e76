//! Helpers shared by the integration tests: fixture paths, running the CLI,
//! copying and corrupting fixture checkpoints.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub mod server;
pub mod stand_ins;

use trtllm_minitron::generation::{Request, SamplingParams};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// A request with the library's default decoding, end id 0 (the stand-in
/// executor's scripts end with it), and no logits or log-probs asked for.
pub fn request(prompt: &[u32], max_new_tokens: usize) -> Request {
    Request {
        input_ids: prompt.to_vec(),
        max_new_tokens,
        sampling: SamplingParams::default(),
        end_id: Some(0),
        want_context_logits: false,
        want_generation_logits: false,
        want_logprobs: false,
    }
}

/// The built `trtllm-minitron` binary as a test sets it up: the one way the
/// tests run the command line.
pub struct Cli {
    command: Command,
    stdin: Option<String>,
}

impl Cli {
    pub fn new(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trtllm-minitron"));
        command.args(args);
        // SAFETY: the hook only makes two async-signal-safe system calls.
        unsafe { command.pre_exec(tie_to_test) };
        Cli { command, stdin: None }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Nothing in its environment but what is set after this.
    pub fn env_clear(mut self) -> Self {
        self.command.env_clear();
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// A conversion cache of the test's own (`TRTLLM_MINITRON_CACHE`).
    pub fn cache(self, dir: &Path) -> Self {
        self.env("TRTLLM_MINITRON_CACHE", dir)
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Text on standard input (else it is empty).
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    /// The command itself, for a test that drives the process (signals, streams).
    pub fn into_command(self) -> Command {
        self.command
    }

    /// Starts it with piped stdout and stderr, killed when the guard drops.
    pub fn spawn(self) -> ChildGuard {
        let mut command = self.command;
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the trtllm-minitron binary starts");
        ChildGuard(child)
    }

    /// Runs it to the end, capturing stdout and stderr.
    pub fn output(mut self) -> Output {
        let Some(text) = self.stdin else {
            return self.command.output().expect("the trtllm-minitron binary runs");
        };
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the trtllm-minitron binary runs");
        let mut input = child.stdin.take().expect("a piped stdin");
        input.write_all(text.as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }
}

/// In the child between fork and exec: descriptors it inherited from outside
/// the test (the shared CPU lock `flock` holds, for one) are closed at exec, so
/// a child never keeps that lock; and the child is killed if the test thread
/// that started it dies (a test binary killed mid-run leaves no server behind).
fn tie_to_test() -> std::io::Result<()> {
    // close_range(2): CLOSE_RANGE_CLOEXEC marks the range close-on-exec.
    let marked = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    let tied = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if marked != 0 || tied != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A child process that is killed and reaped when dropped: on every way out
/// of a test (a failed assertion, a panic, a timeout), it never outlives it.
pub struct ChildGuard(pub Child);

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ctrl-C, as a terminal sends it (SIGINT), to a child with piped stdout once
/// it has printed `after` bytes; then waits for it to exit, failing the test
/// if it has not within `within`.
pub fn interrupt(child: &mut Child, after: usize, within: Duration) -> ExitStatus {
    signal_after(child, "INT", after, within)
}

/// `interrupt` with signal `name` (`kill -NAME`).
pub fn signal_after(child: &mut Child, name: &str, after: usize, within: Duration) -> ExitStatus {
    let mut first = vec![0u8; after];
    child
        .stdout
        .as_mut()
        .expect("a piped stdout")
        .read_exact(&mut first)
        .expect("output before the interrupt");
    let kill = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "it did not stop after SIG{name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args`.
pub fn cli(args: &[&str]) -> Output {
    Cli::new(args).output()
}

/// Runs the binary with `args` and a conversion cache of its own.
pub fn cli_in(cache: &Path, args: &[&str]) -> Output {
    Cli::new(args).cache(cache).output()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSON array of numbers.
pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies a fixture model into a fresh temporary directory.
pub fn copy_model(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    std::fs::create_dir(&dst).unwrap();
    for entry in std::fs::read_dir(model(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    (tmp, dst)
}

/// Reads a JSON file, lets `edit` change it, writes it back.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites a safetensors header (keeping the data section as is).
pub fn edit_safetensors_header(
    path: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Every file under `dir` with its contents, to prove a source was not modified.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap_or_default();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

/// Names in `dir`, sorted (to check nothing was left behind).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
