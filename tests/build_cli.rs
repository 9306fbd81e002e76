//! `build` end to end through the binary, with stand-ins for the tools the
//! test machines cannot have (`tests/stand-ins/`, compiled with rustc: no
//! Python is needed): `trtllm-build` (checks its arguments and the
//! checkpoint, writes an engine-SHAPED directory whose rank files are
//! placeholders, not engines), `nvidia-smi` (GPUs from STANDIN_GPUS), and the
//! `python3` beside trtllm-build that answers the version probe from
//! throwaway `tensorrt_llm` / `tensorrt` packages carrying only a version.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const A100: &str = "NVIDIA A100-SXM4-80GB, 8.0, 81920 MiB";
const H100: &str = "NVIDIA H100 80GB HBM3, 9.0, 81559 MiB";

/// A sandbox: stand-ins on PATH, a conversion cache, a working directory.
struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            tmp: tempfile::tempdir().unwrap(),
        };
        stand_ins::install(&env.bin());
        env.set_versions(Some("1.2.0"), "10.13.3.9");
        std::fs::create_dir_all(env.path("profiles")).unwrap();
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    /// The Python packages the stand-in builder "imports" (and the version
    /// probe reads): STAND-INS carrying only `__version__`.
    fn set_versions(&self, trtllm: Option<&str>, tensorrt: &str) {
        let py = self.path("python");
        let _ = std::fs::remove_dir_all(&py);
        std::fs::create_dir_all(py.join("tensorrt")).unwrap();
        std::fs::write(
            py.join("tensorrt/__init__.py"),
            format!("# STAND-IN for tests: not TensorRT.\n__version__ = \"{tensorrt}\"\n"),
        )
        .unwrap();
        if let Some(v) = trtllm {
            std::fs::create_dir_all(py.join("tensorrt_llm")).unwrap();
            std::fs::write(
                py.join("tensorrt_llm/__init__.py"),
                "# STAND-IN for tests: not TensorRT-LLM.\nfrom .version import __version__\n",
            )
            .unwrap();
            std::fs::write(
                py.join("tensorrt_llm/version.py"),
                format!("__version__ = \"{v}\"\n"),
            )
            .unwrap();
        }
    }

    fn profile(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(&format!("profiles/{name}.toml"));
        std::fs::write(&p, body).unwrap();
        p
    }

    fn command(&self, args: &[&str]) -> Cli {
        // Only the stand-ins: a real trtllm-build, nvidia-smi or Python on this
        // machine's PATH must not be found.
        Cli::new(args)
            .current_dir(self.tmp.path())
            .env("PATH", self.bin())
            .env("PYTHONPATH", self.path("python"))
            .cache(&self.path("cache"))
            .env("STANDIN_GPUS", A100)
            .env("STANDIN_TRTLLM_BUILD_CALLS", self.path("calls.jsonl"))
            .env_remove("STANDIN_TRTLLM_BUILD_MODE")
            .env_remove("TRTLLM_BUILD")
            .env_remove("TRTLLM_MINITRON_PYTHON")
            .env_remove("TRTLLM_MINITRON_NVIDIA_SMI")
    }

    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        envs.iter()
            .fold(self.command(args), |cli, (k, v)| cli.env(k, v))
            .output()
    }

    /// The argument lists the stand-in builder was run with.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }
}

/// gqa-headdim-bf16: 4 heads, 2 kv heads, 3 layers, max_position_embeddings 128.
fn tiny_profile(extra: &str) -> String {
    format!(
        "model = \"{}\"\ndtype = \"bfloat16\"\nmax_batch_size = 2\nmax_input_len = 32\nmax_seq_len = 64\nmax_num_tokens = 64\n{extra}",
        model("gqa-headdim-bf16").display()
    )
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(out)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// No staging directories are left beside an output.
fn no_staging_left(dir: &Path) {
    let left: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn builds_an_engine_shaped_directory_with_a_manifest() {
    let env = Env::new();
    let profile = env.profile("tiny-tp2", &tiny_profile("tp = 2\ntarget_arch = \"sm80\"\n"));
    let out = env.run(
        &[
            "build",
            profile.to_str().unwrap(),
            "--output",
            "engines/tiny",
            "--json",
        ],
        &[],
    );
    let report = json(&out);
    assert_eq!(report["status"], "built");
    let dir = env.path("engines/tiny");

    // What trtllm-build was asked for: every limit explicit, --workers for tp=2.
    let calls = env.calls();
    assert_eq!(calls.len(), 1);
    let args = &calls[0];
    for (flag, value) in [
        ("--max_batch_size", "2"),
        ("--max_input_len", "32"),
        ("--max_seq_len", "64"),
        ("--max_num_tokens", "64"),
        ("--max_beam_width", "1"),
        ("--gemm_plugin", "auto"),
        ("--gpt_attention_plugin", "auto"),
        ("--kv_cache_type", "paged"),
        ("--tokens_per_block", "32"),
        ("--context_fmha", "enable"),
        ("--use_paged_context_fmha", "enable"),
        ("--remove_input_padding", "enable"),
        ("--workers", "2"),
    ] {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {args:?}"));
        assert_eq!(args[i + 1], value, "{flag}");
    }
    let ckpt = PathBuf::from(&args[args.iter().position(|a| a == "--checkpoint_dir").unwrap() + 1]);
    assert!(ckpt.starts_with(env.path("cache")), "{}", ckpt.display());
    assert!(ckpt.join("rank1.safetensors").is_file());

    // The engine-shaped output, moved into place atomically.
    let names = listing(&dir);
    for name in [
        "config.json",
        "rank0.engine",
        "rank1.engine",
        "build.log",
        "trtllm-minitron-build.json",
        "tokenizer.json",
    ] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    let placeholder = std::fs::read_to_string(dir.join("rank0.engine")).unwrap();
    assert!(placeholder.starts_with("STAND-IN: not a TensorRT engine"));
    no_staging_left(&env.path("engines"));
    let log = std::fs::read_to_string(dir.join("build.log")).unwrap();
    assert!(log.contains("rank1.engine"), "{log}");

    // The manifest: profile, checkpoint fingerprint, versions, GPU, command, durations.
    let m = read_json(&dir.join("trtllm-minitron-build.json"));
    assert_eq!(m["profile"]["name"], "tiny-tp2");
    assert_eq!(m["profile"]["settings"]["tp"], 2);
    assert_eq!(m["profile"]["settings"]["max_seq_len"], 64);
    assert_eq!(m["checkpoint"]["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(m["toolchain"]["tensorrt_llm_version"], "1.2.0");
    assert_eq!(m["toolchain"]["tensorrt_version"], "10.13.3.9");
    assert_eq!(m["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["gpu"]["name"], "NVIDIA A100-SXM4-80GB");
    assert_eq!(m["gpu"]["sm"], "sm80");
    let command: Vec<&str> = m["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(command[0].ends_with("/trtllm-build"), "{command:?}");
    // The command as it ran, but with the directory the output was moved to
    // (it ran into a staging directory beside it).
    let ran: Vec<&str> = args.iter().map(String::as_str).collect();
    let at = ran.iter().position(|a| *a == "--output_dir").unwrap() + 1;
    assert!(ran[at].contains(".partial-"), "{ran:?}");
    assert_eq!(command[at + 1], "engines/tiny");
    assert_eq!(&command[1..at + 1], &ran[..at]);
    assert_eq!(&command[at + 2..], &ran[at + 1..]);
    // Neither the manifest nor what build printed names the staging directory.
    assert!(
        !std::fs::read_to_string(dir.join("trtllm-minitron-build.json"))
            .unwrap()
            .contains(".partial-")
    );
    let said = stderr(&out);
    assert!(!said.contains(".partial-"), "{said}");
    assert!(said.contains("log: engines/tiny/build.log"), "{said}");
    assert!(m["durations"]["build_seconds"].as_f64().unwrap() > 0.0);
    assert!(m["durations"]["convert_seconds"].as_f64().is_some());

    // What run / the Executor bridge check before loading an engine.
    let manifest = trtllm_minitron::trtllm::build_manifest::BuildManifest::read(&dir).unwrap();
    assert!(manifest.check_runtime("sm80", "1.2.0").is_ok());
    let e = manifest.check_runtime("sm90", "1.2.0").unwrap_err();
    assert!(
        e.contains("NVIDIA A100-SXM4-80GB (sm80)") && e.contains("cannot run on sm90"),
        "{e}"
    );
    let e = manifest.check_runtime("sm80", "1.2.1").unwrap_err();
    assert!(e.contains("built by TensorRT-LLM 1.2.0"), "{e}");

    // inspect shows the build config and the manifest.
    let shown = ok(&env.run(&["inspect", dir.to_str().unwrap()], &[]));
    for words in [
        "TensorRT-LLM engine",
        "profile     tiny-tp2",
        "TensorRT-LLM 1.2.0",
        "sm80",
        "--workers 2",
    ] {
        assert!(shown.contains(words), "{words}: {shown}");
    }
    let inspected = json(&env.run(&["inspect", dir.to_str().unwrap(), "--json"], &[]));
    assert_eq!(inspected["build_manifest"]["gpu"]["sm"], "sm80");
}

#[test]
fn a_second_build_is_up_to_date_and_runs_nothing() {
    let env = Env::new();
    let profile = env.profile("tiny", &tiny_profile(""));
    let p = profile.to_str().unwrap();
    ok(&env.run(&["build", p], &[]));
    let dir = env.path("trtllm-engines/tiny");
    assert!(
        dir.join("rank0.engine").is_file(),
        "default output trtllm-engines/<profile>"
    );
    let before = std::fs::read(dir.join("trtllm-minitron-build.json")).unwrap();
    let text = ok(&env.run(&["build", p], &[]));
    assert!(text.starts_with("up to date: trtllm-engines/tiny"), "{text}");
    assert_eq!(env.calls().len(), 1, "trtllm-build ran again");
    assert_eq!(
        std::fs::read(dir.join("trtllm-minitron-build.json")).unwrap(),
        before
    );
    assert_eq!(
        json(&env.run(&["build", p, "--json"], &[]))["status"],
        "up-to-date"
    );
    // --force rebuilds anyway.
    ok(&env.run(&["build", p, "--force"], &[]));
    assert_eq!(env.calls().len(), 2);
}

#[test]
fn changed_profile_checkpoint_versions_or_gpu_rebuild() {
    let env = Env::new();
    let (_src_tmp, src) = copy_model("gqa-headdim-bf16");
    let body = tiny_profile("").replace(
        &model("gqa-headdim-bf16").display().to_string(),
        &src.display().to_string(),
    );
    let profile = env.profile("tiny", &body);
    let p = profile.to_str().unwrap();
    let build = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["build", p];
        args.extend_from_slice(extra);
        env.run(&args, envs)
    };
    ok(&build(&[], &[]));
    let mut expected_calls = 1;
    let mut rebuilt = |out: Output, reason: &str| {
        let text = ok(&out);
        assert!(text.starts_with("built "), "{text}");
        assert!(stderr(&out).contains(reason), "{reason}: {}", stderr(&out));
        expected_calls += 1;
        assert_eq!(env.calls().len(), expected_calls);
    };

    // The profile: a command-line override changes it.
    rebuilt(
        build(&[], &["--max-batch-size", "4"]),
        "the profile changed (max_batch_size 2 -> 4)",
    );
    rebuilt(build(&[], &[]), "the profile changed (max_batch_size 4 -> 2)");
    // ...and an edit of the file.
    std::fs::write(
        &profile,
        body.replace("max_num_tokens = 64", "max_num_tokens = 96"),
    )
    .unwrap();
    rebuilt(build(&[], &[]), "max_num_tokens 64 -> 96");

    // The checkpoint: the source model changed, so it is converted again.
    edit_json(&src.join("config.json"), |c| {
        c["norm_eps"] = serde_json::json!(2e-5);
        c["note"] = "edited by the test, so its size changes too".into();
    });
    rebuilt(build(&[], &[]), "the checkpoint must be made again");
    assert!(ok(&build(&[], &[])).starts_with("up to date"));

    // TensorRT-LLM and TensorRT versions.
    env.set_versions(Some("1.2.1"), "10.13.3.9");
    rebuilt(build(&[], &[]), "TensorRT-LLM changed (1.2.0 -> 1.2.1)");
    env.set_versions(Some("1.2.1"), "10.14.1.48");
    rebuilt(build(&[], &[]), "TensorRT changed (10.13.3.9 -> 10.14.1.48)");

    // Another GPU architecture.
    rebuilt(
        build(&[("STANDIN_GPUS", H100)], &[]),
        "the GPU architecture changed",
    );
    assert!(ok(&build(&[("STANDIN_GPUS", H100)], &[])).starts_with("up to date"));

    // A damaged engine directory.
    std::fs::remove_file(env.path("trtllm-engines/tiny/rank0.engine")).unwrap();
    rebuilt(build(&[("STANDIN_GPUS", H100)], &[]), "rank0.engine is missing");
}

#[test]
fn builder_failures_exit_non_zero_with_the_log_and_leave_no_output() {
    let env = Env::new();
    let profile = env.profile("tiny", &tiny_profile("tp = 2\n"));
    let p = profile.to_str().unwrap();
    for (mode, words) in [
        (
            "fail",
            vec![
                "trtllm-build exited with status 1",
                "RuntimeError: stand-in failure requested",
            ],
        ),
        (
            "crash",
            vec!["trtllm-build was killed by signal 9", "Serializing engine to"],
        ),
        (
            "missing-rank",
            vec!["not the engine asked for", "rank1.engine is missing"],
        ),
        (
            "bad-config",
            vec!["build_config.max_batch_size is 3, expected 2 (profile key `max_batch_size`)"],
        ),
        ("no-output", vec!["no readable config.json"]),
    ] {
        let out = env.run(
            &["build", p, "--output", "out/tiny"],
            &[("STANDIN_TRTLLM_BUILD_MODE", mode)],
        );
        let err = failed(&out);
        for w in &words {
            assert!(err.contains(w), "{mode}: {w}\n{err}");
        }
        let log = env.path("out/tiny.build-failed.log");
        assert!(
            err.contains(&format!(
                "full log: {}",
                Path::new("out/tiny.build-failed.log").display()
            )),
            "{err}"
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("stand-in trtllm-build"),
            "{mode}"
        );
        assert!(
            !env.path("out/tiny").exists(),
            "{mode}: a failed build left an output"
        );
        no_staging_left(&env.path("out"));
    }

    // A failed rebuild leaves the previous engine as it was.
    ok(&env.run(&["build", p, "--output", "out/tiny"], &[]));
    assert!(
        !env.path("out/tiny.build-failed.log").exists(),
        "a success removes the old failure log"
    );
    let before = snapshot(&env.path("out/tiny"));
    let out = env.run(
        &["build", p, "--output", "out/tiny", "--max-batch-size", "1"],
        &[("STANDIN_TRTLLM_BUILD_MODE", "fail")],
    );
    failed(&out);
    assert_eq!(snapshot(&env.path("out/tiny")), before);
    no_staging_left(&env.path("out"));
}

#[test]
fn dry_run_prints_the_convert_step_and_the_exact_command_and_runs_nothing() {
    let env = Env::new();
    let profile = env.profile(
        "tiny",
        &tiny_profile("tp = 2\nextra_flags = [\"--multiple_profiles\", \"enable\"]\n"),
    );
    let out = env.run(&["build", profile.to_str().unwrap(), "--dry-run"], &[]);
    let text = ok(&out);
    assert!(
        text.starts_with("dry run: nothing was converted or built"),
        "{text}"
    );
    let convert = text.lines().find(|l| l.starts_with("convert ")).unwrap();
    assert!(
        convert.contains("trtllm-minitron convert --model")
            && convert.contains("--dtype bfloat16 --tp-size 2 --pp-size 1"),
        "{convert}"
    );
    let build = text.lines().find(|l| l.starts_with("trtllm-build ")).unwrap();
    let want = format!(
        "{} --checkpoint_dir {}",
        env.bin().join("trtllm-build").display(),
        env.path("cache/checkpoints").display()
    );
    assert!(build.contains(&want), "{build}");
    assert!(
        build.ends_with(
            "--output_dir trtllm-engines/tiny --max_batch_size 2 --max_input_len 32 --max_seq_len 64 \
             --max_num_tokens 64 --max_beam_width 1 --gemm_plugin auto --gpt_attention_plugin auto \
             --kv_cache_type paged --tokens_per_block 32 --remove_input_padding enable --context_fmha enable \
             --use_paged_context_fmha enable --workers 2 --log_level info --multiple_profiles enable"
        ),
        "{build}"
    );
    assert!(text.contains("TensorRT-LLM 1.2.0"), "{text}");
    assert!(env.calls().is_empty(), "trtllm-build ran");
    assert!(!env.path("cache").exists(), "something was converted");
    assert!(!env.path("trtllm-engines").exists());

    // Without a GPU or a builder a dry run still shows the commands, with warnings.
    let nothing = env.path("empty-bin");
    std::fs::create_dir_all(&nothing).unwrap();
    let out = env.run(
        &["build", profile.to_str().unwrap(), "--dry-run", "--json"],
        &[("STANDIN_GPUS", ""), ("PATH", nothing.to_str().unwrap())],
    );
    let report = json(&out);
    assert_eq!(report["status"], "dry-run");
    assert_eq!(report["command"][0], "trtllm-build");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("trtllm-build was not found"), "{warnings}");
    assert!(warnings.contains("no GPU found"), "{warnings}");
    assert!(env.calls().is_empty());
}

#[test]
fn profile_errors_name_the_file_and_key_and_run_nothing() {
    let env = Env::new();
    for (name, body, args, words) in [
        (
            "unknown",
            tiny_profile("max_seqlen = 64\n"),
            vec![],
            vec!["unknown field `max_seqlen`", "unknown.toml", "engines/README.md"],
        ),
        (
            "short",
            tiny_profile("").replace("max_seq_len = 64", "max_seq_len = 16"),
            vec![],
            vec!["short.toml: `max_seq_len` is 16, less than max_input_len 32"],
        ),
        (
            "tp3",
            tiny_profile("tp = 3\n"),
            vec![],
            vec!["tp3.toml: `tp` is 3", "Allowed tp sizes: 1, 2, 4"],
        ),
        (
            "toolong",
            tiny_profile("").replace("max_seq_len = 64", "max_seq_len = 256"),
            vec![],
            vec!["`max_seq_len` is 256", "max_position_embeddings 128"],
        ),
        (
            "override",
            tiny_profile(""),
            vec!["--max-input-len", "100"],
            vec![
                "--max-input-len (overriding",
                "`max_input_len` is 100, more than max_seq_len 64",
            ],
        ),
        (
            "override-tp",
            tiny_profile(""),
            vec!["--tp-size", "8"],
            vec!["--tp-size (overriding", "`tp` is 8"],
        ),
        (
            "missing",
            tiny_profile("").replace("max_num_tokens = 64\n", ""),
            vec![],
            vec!["missing.toml: `max_num_tokens` is missing"],
        ),
        (
            "badflag",
            tiny_profile("extra_flags = [\"--use_paged_kv_cache\", \"enable\"]\n"),
            vec![],
            vec!["`extra_flags` has --use_paged_kv_cache, which trtllm-build 1.2 does not accept"],
        ),
        (
            "owned",
            tiny_profile("extra_flags = [\"--workers\", \"4\"]\n"),
            vec![],
            vec!["`extra_flags` has --workers", "profile key `workers`"],
        ),
        (
            "mistyped",
            tiny_profile("paged_kv_cache = \"yes\"\n"),
            vec![],
            vec!["mistyped.toml", "paged_kv_cache", "expected a boolean"],
        ),
        (
            "plugin",
            tiny_profile("gemm_plugin = \"float16\"\n"),
            vec![],
            vec!["`gemm_plugin` is \"float16\" but dtype is \"bfloat16\""],
        ),
    ] {
        let profile = env.profile(name, &body);
        let mut a = vec!["build", profile.to_str().unwrap()];
        a.extend(args);
        let err = failed(&env.run(&a, &[]));
        for w in &words {
            assert!(err.contains(w), "{name}: {w}\n{err}");
        }
    }
    // Neither a profile nor a model; a profile name that does not exist.
    let err = failed(&env.run(&["build"], &[]));
    assert!(err.contains("PROFILE") || err.contains("--model"), "{err}");
    let err = failed(&env.run(&["build", "no-such-profile"], &[]));
    assert!(err.contains("no engines/no-such-profile.toml"), "{err}");
    assert!(env.calls().is_empty());
    assert!(!env.path("cache").exists());
}

#[test]
fn no_gpu_found_is_refused() {
    let env = Env::new();
    let profile = env.profile("tiny", &tiny_profile(""));
    let p = profile.to_str().unwrap();
    let err = failed(&env.run(&["build", p], &[("STANDIN_GPUS", "")]));
    assert!(
        err.contains("no GPU found") && err.contains("No devices were found"),
        "{err}"
    );
    assert!(err.contains("--dry-run"), "{err}");
    let err = failed(&env.run(
        &["build", p],
        &[("TRTLLM_MINITRON_NVIDIA_SMI", "/nonexistent/nvidia-smi")],
    ));
    assert!(
        err.contains("no GPU found: cannot run /nonexistent/nvidia-smi"),
        "{err}"
    );
    assert!(env.calls().is_empty());
    assert!(
        !env.path("cache").exists(),
        "converted before finding out there is no GPU"
    );
}

#[test]
fn tensorrt_llm_without_the_engine_flow_is_refused() {
    let env = Env::new();
    let profile = env.profile("tiny", &tiny_profile(""));
    let p = profile.to_str().unwrap();
    env.set_versions(Some("1.3.0rc2"), "10.14.1.48");
    let err = failed(&env.run(&["build", p], &[]));
    assert!(
        err.contains("TensorRT-LLM 1.3.0rc2") && err.contains("removed in 1.3") && err.contains("1.2.x"),
        "{err}"
    );
    env.set_versions(Some("0.17.0"), "10.8.0.43");
    let err = failed(&env.run(&["build", p], &[]));
    assert!(err.contains("older than 1.0"), "{err}");
    env.set_versions(None, "10.13.3.9");
    let err = failed(&env.run(&["build", p], &[]));
    assert!(
        err.contains("tensorrt_llm Python package is not installed"),
        "{err}"
    );
    assert!(env.calls().is_empty());
    // The refusal comes before any conversion.
    assert!(!env.path("cache").exists());
}

#[test]
fn trtllm_build_is_found_by_flag_then_env_then_path() {
    let env = Env::new();
    let profile = env.profile("tiny", &tiny_profile(""));
    let p = profile.to_str().unwrap();
    std::fs::create_dir_all(env.path("elsewhere")).unwrap();
    let elsewhere = stand_ins::install_as(&env.path("elsewhere"), "trtllm-build");
    std::fs::remove_file(env.bin().join("trtllm-build")).unwrap();

    let err = failed(&env.run(&["build", p], &[]));
    assert!(
        err.contains("trtllm-build was not found") && err.contains("TRTLLM_BUILD"),
        "{err}"
    );
    let e = elsewhere.to_str().unwrap();
    let report = json(&env.run(&["build", p, "--json"], &[("TRTLLM_BUILD", e)]));
    assert_eq!(report["toolchain"]["trtllm_build"], e);
    let report = json(&env.run(&["build", p, "--json", "--force", "--trtllm-build", e], &[]));
    assert_eq!(report["command"][0], e);
    let err = failed(&env.run(&["build", p, "--trtllm-build", "/nonexistent/trtllm-build"], &[]));
    assert!(
        err.contains("--trtllm-build names /nonexistent/trtllm-build"),
        "{err}"
    );
}

#[test]
fn a_trtllm_checkpoint_is_built_as_it_is() {
    let env = Env::new();
    let ckpt = env.path("ckpt-tp2");
    ok(&env.run(
        &[
            "convert",
            "--model",
            model("mqa-tied-f16").to_str().unwrap(),
            "--output",
            ckpt.to_str().unwrap(),
            "--tp-size",
            "2",
        ],
        &[],
    ));
    let body = format!(
        "model = \"{}\"\ndtype = \"float16\"\ntp = 2\nmax_batch_size = 1\nmax_input_len = 16\nmax_seq_len = 32\nmax_num_tokens = 32\n",
        ckpt.display()
    );
    let profile = env.profile("ckpt", &body);
    let report = json(&env.run(&["build", profile.to_str().unwrap(), "--json"], &[]));
    assert_eq!(report["checkpoint"]["dir"], ckpt.to_str().unwrap());
    assert!(report["checkpoint"]["convert_reason"].is_null());
    assert!(!env.path("cache").exists(), "converted a checkpoint again");

    let err = failed(&env.run(&["build", profile.to_str().unwrap(), "--tp-size", "1"], &[]));
    assert!(
        err.contains("`tp` is 1, but the TensorRT-LLM checkpoint"),
        "{err}"
    );

    // Without a profile, dtype and tp default to the checkpoint's own.
    let report = json(&env.run(
        &["build", "--model", ckpt.to_str().unwrap(), "--dry-run", "--json"],
        &[],
    ));
    let s = &report["profile"]["settings"];
    assert_eq!(
        (s["dtype"].as_str(), s["tp"].as_u64(), s["workers"].as_u64()),
        (Some("float16"), Some(2), Some(2))
    );
}

#[test]
fn a_fresh_conversion_is_reused_across_profiles() {
    let env = Env::new();
    let a = env.profile("a", &tiny_profile(""));
    let b = env.profile(
        "b",
        &tiny_profile("").replace("max_batch_size = 2", "max_batch_size = 1"),
    );
    let first = json(&env.run(&["build", a.to_str().unwrap(), "--json"], &[]));
    assert!(first["checkpoint"]["convert_reason"].is_string());
    let dry = ok(&env.run(&["build", b.to_str().unwrap(), "--dry-run"], &[]));
    assert!(
        dry.contains("convert       skipped: using the checkpoint"),
        "{dry}"
    );
    let second = json(&env.run(&["build", b.to_str().unwrap(), "--json"], &[]));
    assert!(second["checkpoint"]["convert_reason"].is_null());
    assert_eq!(first["checkpoint"]["dir"], second["checkpoint"]["dir"]);
}

#[test]
fn model_without_a_profile_uses_documented_defaults() {
    let env = Env::new();
    let src = model("gqa-headdim-bf16");
    let report = json(&env.run(
        &[
            "build",
            "--model",
            src.to_str().unwrap(),
            "--max-batch-size",
            "2",
            "--dry-run",
            "--json",
        ],
        &[],
    ));
    let s = &report["profile"]["settings"];
    // max_seq_len = max_position_embeddings (<= 4096), max_input_len half of it.
    assert_eq!(
        (s["max_seq_len"].as_u64(), s["max_input_len"].as_u64()),
        (Some(128), Some(64))
    );
    assert_eq!(s["max_num_tokens"], 128);
    assert_eq!(s["dtype"], "bfloat16");
    assert_eq!(
        report["output"],
        "trtllm-engines/gqa-headdim-bf16-bfloat16-tp1-pp1"
    );
}

#[test]
fn extra_flags_reach_the_builder() {
    let env = Env::new();
    let profile = env.profile(
        "extra",
        &tiny_profile(
            "extra_flags = [\"--multiple_profiles\", \"enable\", \"--max_prompt_embedding_table_size=16\"]\n",
        ),
    );
    ok(&env.run(&["build", profile.to_str().unwrap(), "--output", "e"], &[]));
    let args = &env.calls()[0];
    assert!(args.ends_with(&[
        "--multiple_profiles".into(),
        "enable".into(),
        "--max_prompt_embedding_table_size=16".into()
    ]));
    let config = read_json(&env.path("e/config.json"));
    assert_eq!(config["build_config"]["plugin_config"]["multiple_profiles"], true);
    assert_eq!(config["build_config"]["max_prompt_embedding_table_size"], 16);
}

/// `--force` replaces an engine of ours, never a directory holding anything else.
#[test]
fn an_output_that_is_not_ours_is_never_replaced() {
    let env = Env::new();
    let profile = env.profile("tiny", &tiny_profile(""));
    let p = profile.to_str().unwrap();
    std::fs::create_dir_all(env.path("taken/data")).unwrap();
    std::fs::write(env.path("taken/notes.txt"), "mine").unwrap();
    let before = snapshot(&env.path("taken"));
    for force in [false, true] {
        let mut args = vec!["build", p, "--output", "taken"];
        if force {
            args.push("--force");
        }
        let err = failed(&env.run(&args, &[]));
        assert!(
            err.contains("data/, notes.txt") && err.contains("even with --force"),
            "{err}"
        );
        assert!(snapshot(&env.path("taken")) == before);
    }
    assert!(env.calls().is_empty(), "trtllm-build ran");
    assert!(
        !env.path("cache").exists(),
        "converted before refusing the output"
    );
    // A conversion of ours is not an engine either.
    ok(&env.run(
        &[
            "convert",
            "--model",
            model("gqa-headdim-bf16").to_str().unwrap(),
            "--output",
            "ckpt",
        ],
        &[],
    ));
    let err = failed(&env.run(&["build", p, "--output", "ckpt", "--force"], &[]));
    assert!(err.contains("trtllm-minitron-manifest.json"), "{err}");
    // An engine of ours is replaced.
    ok(&env.run(&["build", p, "--output", "mine"], &[]));
    ok(&env.run(&["build", p, "--output", "mine", "--force"], &[]));
    assert_eq!(env.calls().len(), 2);
}

/// The stand-in itself: it must reject what trtllm-build 1.2 rejects, or the
/// tests above would prove nothing about the flags.
#[test]
fn the_stand_in_rejects_what_trtllm_build_1_2_rejects() {
    let env = Env::new();
    let run = |args: &[&str]| {
        Command::new(env.bin().join("trtllm-build"))
            .args(args)
            .current_dir(env.tmp.path())
            .env("PYTHONPATH", env.path("python"))
            .env_remove("STANDIN_TRTLLM_BUILD_MODE")
            .env_remove("STANDIN_TRTLLM_BUILD_CALLS")
            .output()
            .unwrap()
    };
    for bad in [
        vec!["--version"],
        vec!["--max_batch_size", "eight"],
        vec!["--context_fmha", "on"],
        vec!["--gemm_plugin", "fp16"],
        vec!["--kv_cache_type", "blocks"],
        vec!["--paged_context_fmha", "enable"],
        vec!["--log_level", "loud"],
        vec!["--max_b", "8"],
        vec!["--strip_plan=yes"],
        vec!["--lora_dir"],
    ] {
        let out = run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error: "), "{bad:?}: {}", stderr(&out));
    }
    // A Hugging Face directory is not a checkpoint it can build.
    let out = run(&[
        "--checkpoint_dir",
        model("gqa-headdim-bf16").to_str().unwrap(),
        "--output_dir",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no 'architecture'"), "{}", stderr(&out));
    // A rank file whose tensors are not in the config's dtype.
    let ckpt = env.path("ckpt");
    ok(&env.run(
        &[
            "convert",
            "--model",
            model("gqa-headdim-bf16").to_str().unwrap(),
            "--output",
            ckpt.to_str().unwrap(),
        ],
        &[],
    ));
    edit_json(&ckpt.join("config.json"), |c| c["dtype"] = "float16".into());
    let out = run(&["--checkpoint_dir", ckpt.to_str().unwrap(), "--output_dir", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is BF16, config dtype is float16"),
        "{}",
        stderr(&out)
    );
    assert!(!env.path("x/config.json").exists());
    // build.py refuses multiple profiles with a fixed opt_num_tokens.
    edit_json(&ckpt.join("config.json"), |c| c["dtype"] = "bfloat16".into());
    let out = run(&[
        "--checkpoint_dir",
        ckpt.to_str().unwrap(),
        "--output_dir",
        "x",
        "--multiple_profiles",
        "enable",
        "--opt_num_tokens",
        "32",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("multiple_profiles is enabled, while opt_num_tokens is set"),
        "{}",
        stderr(&out)
    );
    // Abbreviations and `=` work as in argparse, negative numbers are values.
    let out = run(&[
        "--checkpoint_dir",
        ckpt.to_str().unwrap(),
        "--output_dir=x",
        "--max_batch=1",
        "--max_seq",
        "64",
        "--opt_num_tokens",
        "-1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let config = read_json(&env.path("x/config.json"));
    assert_eq!(config["build_config"]["max_batch_size"], 1);
    assert_eq!(config["build_config"]["max_seq_len"], 64);
    assert_eq!(config["build_config"]["opt_num_tokens"], -1);
}

/// The shipped demo profile, by name from the repository root, through the
/// stand-in builder.
#[test]
fn the_demo_profile_builds_by_name_from_the_repository() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/fixtures/demo-shakespeare/config.json").is_file(),
        "the demo model is committed, but tests/fixtures/demo-shakespeare has no config.json"
    );
    let env = Env::new();
    let out = env.path("demo-engine");
    let run = |args: &[&str]| env.command(args).current_dir(repo).output();
    let dry = ok(&run(&[
        "build",
        "demo-shakespeare",
        "--output",
        out.to_str().unwrap(),
        "--dry-run",
    ]));
    assert!(
        dry.contains("--gather_context_logits --gather_generation_logits"),
        "{dry}"
    );
    let report = json(&run(&[
        "build",
        "demo-shakespeare",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(report["status"], "built");
    assert_eq!(report["profile"]["name"], "demo-shakespeare");
    let m = read_json(&out.join("trtllm-minitron-build.json"));
    assert_eq!(m["profile"]["settings"]["max_seq_len"], 512);
    assert!(out.join("tokenizer.json").is_file());
}

#[test]
fn help_shows_examples_and_what_runs_multi_gpu_engines() {
    let out = cli(&["build", "--help"]);
    let text = ok(&out);
    for words in [
        "trtllm-minitron build ",
        "--dry-run",
        "$TRTLLM_BUILD",
        "`trtllm-minitron run` drives single-GPU engines",
        "which `run` does not implement",
    ] {
        assert!(text.contains(words), "{words}: {text}");
    }
}
