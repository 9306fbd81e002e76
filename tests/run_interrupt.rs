//! Ctrl-C during `run`: exit status 130, and the error says exactly what was
//! written (streamed text, JSON lines with finish_reason "cancelled"); the
//! logits file is written atomically, so an interrupted run leaves none.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::*;
use serde_json::Value;
use trtllm_minitron::commands::run::inputs::Prompt;
use trtllm_minitron::commands::run::{RunOptions, run};
use trtllm_minitron::generation::SamplingParams;
use trtllm_minitron::progress::Silent;
use trtllm_minitron::target::BackendChoice;

/// Converts fixture model `name` into `dir/ckpt` (so that no run converts).
fn checkpoint(name: &str, dir: &Path) -> std::path::PathBuf {
    let ckpt = dir.join("ckpt");
    let out = cli(&[
        "convert",
        "--model",
        model(name).to_str().unwrap(),
        "--output",
        ckpt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    ckpt
}

/// Ctrl-C before the first decoding step: each request has its prefill token,
/// then every one is cancelled. The JSON lines are on stdout and the error says so.
#[test]
fn an_interrupted_json_run_says_what_it_wrote_and_writes_no_logits() {
    let work = tempfile::tempdir().unwrap();
    let ckpt = checkpoint("gqa-headdim-bf16", work.path());
    let logits = work.path().join("logits.safetensors");
    let options = RunOptions {
        model: ckpt.to_str().unwrap().into(),
        backend: BackendChoice::Reference,
        prompts: vec![Prompt::Ids(vec![5, 17, 42]), Prompt::Ids(vec![7, 8])],
        tokenizer: None,
        max_new_tokens: 20,
        sampling: SamplingParams::default(),
        stops: Vec::new(),
        ignore_eos: true,
        add_bos: None,
        json: true,
        output_logits: Some(logits.clone()),
    };
    let mut out = Vec::new();
    let stop = AtomicBool::new(true);
    let err = run(&options, &mut out, &Silent, &stop).unwrap_err();
    assert!(err.is_interrupted(), "{err:?}");
    let message = err.to_string();
    for words in [
        "interrupted: 0 of 2 prompts finished",
        "stdout has a JSON line for each prompt",
        "finish_reason \"cancelled\" for the 2 cut short",
        &format!("--output-logits {} was not written", logits.display()),
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    assert!(!message.contains("no output was written"), "{message}");
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["finish_reason"], "cancelled");
        assert_eq!(line["output_ids"].as_array().unwrap().len(), 1, "{line}");
    }
    assert_eq!(
        listing(work.path()),
        vec!["ckpt"],
        "a logits file or its temporary was left"
    );
}

/// The binary, streaming one prompt, stopped by SIGINT once text has appeared.
#[test]
fn ctrl_c_while_streaming_exits_130_and_says_the_text_so_far_is_on_stdout() {
    stop_while_streaming("INT");
}

/// SIGTERM (`kill`, a job's timeout) stops the work as Ctrl-C does: the same
/// exit status, message and clean-up.
#[test]
fn sigterm_while_streaming_stops_as_ctrl_c_does() {
    stop_while_streaming("TERM");
}

fn stop_while_streaming(signal: &str) {
    let work = tempfile::tempdir().unwrap();
    // The demo model: 512 positions and slow enough in a debug build that
    // generation is still going when the signal arrives.
    let ckpt = {
        let ckpt = work.path().join("ckpt");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = cli(&[
            "convert",
            "--model",
            repo.join("tests/fixtures/demo-shakespeare").to_str().unwrap(),
            "--output",
            ckpt.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        ckpt
    };
    let logits = work.path().join("logits.safetensors");
    let mut child = Cli::new(&[
        "run",
        "--model",
        ckpt.to_str().unwrap(),
        "To be or not to be,",
        "--max-new-tokens",
        "480",
        "--ignore-eos",
        "--output-logits",
        logits.to_str().unwrap(),
    ])
    .into_command()
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let status = signal_after(&mut child, signal, 4, Duration::from_secs(60));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted after") && err.contains("the text so far is on stdout"),
        "{err}"
    );
    assert!(err.contains("was not written"), "{err}");
    assert_eq!(
        listing(work.path()),
        vec!["ckpt"],
        "a logits file or its temporary was left"
    );
}
