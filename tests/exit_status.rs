//! One exit-status policy for every command (`trtllm-minitron --help`, README
//! "Exit status"): 0 success, 1 the work failed, 2 bad usage, 130 Ctrl-C
//! (`run_cli.rs` tests that one). Bad option values are refused while the
//! command line is read, before anything is converted or run.

mod common;

use std::process::Output;

use common::*;

/// Runs with a conversion cache of its own; the cache must stay untouched.
fn run_in_fresh_cache(args: &[&str]) -> Output {
    in_fresh_cache(Cli::new(args), args)
}

/// `cli` (started with `args`) with a conversion cache of its own, which must stay untouched.
fn in_fresh_cache(cli: Cli, args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let out = cli.cache(cache.path()).output();
    assert!(listing(cache.path()).is_empty(), "{args:?} converted something");
    out
}

fn assert_status(out: &Output, status: i32, args: &[&str], needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in {err}");
    }
}

#[test]
fn every_invalid_option_value_is_bad_usage_refused_before_anything_runs() {
    let m = model("gqa-headdim-bf16");
    let m = m.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    let o = out_dir.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["run", "--model", m, "x", "--temperature", "-1"],
            &["'--temperature <T>'", "must be >= 0"],
        ),
        (
            &["run", "--model", m, "x", "--temperature", "warm"],
            &["'--temperature <T>'"],
        ),
        (
            &["run", "--model", m, "x", "--top-k", "-1"],
            &["'--top-k <K>'", "whole number from 0"],
        ),
        (
            &["run", "--model", m, "x", "--top-k", "1025"],
            &["'--top-k <K>'", "at most 1024"],
        ),
        (
            &["run", "--model", m, "x", "--top-p", "1.5"],
            &["'--top-p <P>'", "(0, 1]"],
        ),
        (&["run", "--model", m, "x", "--top-p", "0"], &["'--top-p <P>'"]),
        (
            &["run", "--model", m, "x", "--repetition-penalty", "0"],
            &["'--repetition-penalty <R>'", "> 0"],
        ),
        (
            &["run", "--model", m, "x", "--max-new-tokens", "0"],
            &["'--max-new-tokens <N>'", "at least 1"],
        ),
        (
            &["run", "--model", m, "x", "--max-new-tokens", "-5"],
            &["'--max-new-tokens <N>'"],
        ),
        (
            &["run", "--model", m, "--input-ids", "5,x"],
            &["'--input-ids <IDS>'", "\"x\" is not a token id"],
        ),
        (&["run", "--model", m, "x", "--seed", "-1"], &["--seed"]),
        (
            &["run", "--model", m, "x", "--add-bos", "--no-add-bos"],
            &["'--add-bos' cannot be used with '--no-add-bos'"],
        ),
        (
            &["run", "--model", m, "x", "--backend", "gpu"],
            &["'--backend <BACKEND>'"],
        ),
        (
            &["convert", "--model", m, "--output", o, "--tp-size", "0"],
            &["'--tp-size <N>'", "at least 1"],
        ),
        (
            &["convert", "--model", m, "--output", o, "--pp-size", "-1"],
            &["'--pp-size <N>'"],
        ),
        (
            &["convert", "--model", m, "--output", o, "--jobs", "0"],
            &["'--jobs <N>'"],
        ),
        (
            &["convert", "--model", m, "--output", o, "--dtype", "int8"],
            &["'--dtype <DTYPE>'"],
        ),
        (
            &["build", "--model", m, "--max-batch-size", "0", "--dry-run"],
            &["'--max-batch-size <N>'"],
        ),
        (
            &["build", "--model", m, "--tp-size", "0", "--dry-run"],
            &["'--tp-size <N>'"],
        ),
        (
            &["run", "--model", m, "x", "--no-such-option"],
            &["unexpected argument"],
        ),
        (&["convert", "--model", m], &["--output <DIR>"]),
        // A value this model cannot take: found when the model is read, still bad usage.
        (
            &["convert", "--model", m, "--output", o, "--tp-size", "3"],
            &["--tp-size 3 is not possible", "Allowed tp sizes: 1, 2, 4"],
        ),
        (
            &["build", "--model", m, "--tp-size", "3", "--dry-run"],
            &["--tp-size", "Allowed tp sizes: 1, 2, 4"],
        ),
    ];
    for (args, needles) in cases {
        let out = run_in_fresh_cache(args);
        assert_status(&out, 2, args, needles);
    }
    assert!(!out_dir.exists());
}

#[test]
fn a_runtime_variable_it_cannot_take_is_bad_usage_refused_before_anything_runs() {
    let m = model("gqa-headdim-bf16");
    let m = m.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let suite = work.path().join("suite.toml");
    std::fs::write(&suite, "[[case]]\nname = \"a\"\nprompt = \"x\"\n").unwrap();
    let s = suite.to_str().unwrap();
    let missing = work.path().join("no-such-model");
    let missing = missing.to_str().unwrap();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "TRTLLM_MINITRON_ISA",
            "avx1",
            &["run", "--model", m, "x"],
            "expected avx512, avx2 or generic",
        ),
        (
            "TRTLLM_MINITRON_MATMUL",
            "fp16",
            &["run", "--model", m, "x"],
            "expected f32 (the default) or bf16",
        ),
        (
            "TRTLLM_MINITRON_THREADS",
            "0",
            &["run", "--model", m, "x"],
            "at least 1",
        ),
        (
            "TRTLLM_MINITRON_THREADS",
            "two",
            // A model that is not there: without the check, serve fails on it
            // (exit 1) instead of serving, and the test fails instead of hanging.
            &["serve", "--model", missing, "--port", "0"],
            "at least 1",
        ),
        (
            "TRTLLM_MINITRON_ISA",
            " SSE ",
            &["check", "--model", m, "--suite", s],
            "expected avx512",
        ),
    ];
    for &(var, value, args, expected) in cases {
        let out = in_fresh_cache(Cli::new(args).env(var, value), args);
        let named = format!("{var}=\"{value}\"");
        assert_status(&out, 2, args, &[named.as_str(), expected]);
    }
    // Commands that never run the reference runtime do not read them.
    let inspect = Cli::new(&["inspect", m])
        .env("TRTLLM_MINITRON_ISA", "avx1")
        .output();
    assert_status(&inspect, 0, &["inspect", m], &[]);
    // The documented values, in any case and with spaces around, are taken.
    let cache = tempfile::tempdir().unwrap();
    let args = ["run", "--model", m, "--input-ids", "1,2", "--max-new-tokens", "1"];
    let out = Cli::new(&args)
        .cache(cache.path())
        .env("TRTLLM_MINITRON_MATMUL", " F32 ")
        .env("TRTLLM_MINITRON_ISA", "AVX2")
        .env("TRTLLM_MINITRON_THREADS", "1")
        .output();
    assert_status(&out, 0, &args, &[]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn work_that_fails_is_1_and_an_empty_model_directory_says_so() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = empty.to_str().unwrap();
    let out = work.path().join("out");
    for args in [
        vec!["run", "--model", e, "hello"],
        vec!["convert", "--model", e, "--output", out.to_str().unwrap()],
        vec!["inspect", e],
    ] {
        let run = run_in_fresh_cache(&args);
        assert_status(
            &run,
            1,
            &args,
            &[
                "no config.json (the directory is empty)",
                "expected a Hugging Face model directory",
            ],
        );
    }
    std::fs::write(empty.join("weights.bin"), "x").unwrap();
    let run = run_in_fresh_cache(&["run", "--model", e, "hi"]);
    assert_status(&run, 1, &[], &["no config.json (it has weights.bin)"]);

    // A profile file's bad value is a bad input, not bad usage.
    let profile = work.path().join("p.toml");
    let m = model("gqa-headdim-bf16");
    std::fs::write(
        &profile,
        format!(
            "model = \"{}\"\ndtype = \"bfloat16\"\ntp = 3\nmax_batch_size = 1\nmax_input_len = 8\nmax_seq_len = 16\nmax_num_tokens = 16\n",
            m.display()
        ),
    )
    .unwrap();
    let args = ["build", profile.to_str().unwrap(), "--dry-run"];
    assert_status(&run_in_fresh_cache(&args), 1, &args, &["`tp` is 3"]);
}

#[test]
fn an_os_error_is_said_once() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("prompts.txt");
    let m = model("gqa-headdim-bf16");
    let args = [
        "run",
        "--model",
        m.to_str().unwrap(),
        "--prompt-file",
        missing.to_str().unwrap(),
    ];
    let out = run_in_fresh_cache(&args);
    assert_status(
        &out,
        1,
        &args,
        &["prompts.txt: No such file or directory (os error 2)"],
    );
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_states_the_exit_statuses() {
    let out = cli(&["--help"]);
    let text = stdout(&out);
    for line in [
        "0    success",
        "1    the work failed",
        "2    bad usage",
        "130  interrupted",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // The top-level description does not stop at the first two commands.
    assert!(!text.contains("convert, inspect\n"), "{text}");
}
