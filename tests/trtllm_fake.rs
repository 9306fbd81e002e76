//! `run --backend trtllm` end to end through the real bridge (`cpp/`), build.rs's
//! discovery and runpath, the response thread and the backend, against the fake
//! TensorRT-LLM library of `tests/fake_trtllm/` (compiled against the real 1.2
//! headers; no model, no GPU). Each test reads what the fake recorded of the
//! calls it received.
//!
//! Needs `--features trtllm` built against the fake, in either of its layouts
//! (NVIDIA's release container, a pip install):
//!   scripts/build-fake-trtllm target/fake-trtllm HEADERS CUDA_HEADERS
//!   (. target/fake-trtllm/env && cargo test --features trtllm --test trtllm_fake)
//!   (. target/fake-trtllm/env-wheel && cargo test --features trtllm --test trtllm_fake)
//! (`.ci/run` does both when TensorRT-LLM's headers are available). Built against a
//! real TensorRT-LLM, or without the bridge, these tests say so and do nothing.
#![cfg(feature = "trtllm")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::server::Server;
use serde_json::{Value, json};
use trtllm_minitron::executor::api::{ExecutorApi, ExecutorOptions, RequestSpec};
use trtllm_minitron::executor::ffi::TrtllmExecutor;
use trtllm_minitron::executor::router::{Event, Router};

const VOCAB: i64 = 2048;
/// The demo tokenizer's end-of-sequence id.
const EOS: i64 = 3;

/// The fake's description of the layout this build linked (the FAKE_TRTLLM
/// file build.rs's library directory holds): its name and the directories its
/// runtime libraries must be loaded from. `None` when this build does not link
/// the fake.
fn fake_layout() -> Option<Value> {
    let marker = option_env!("TRTLLM_MINITRON_LINKED_LIB_DIR").map(|d| Path::new(d).join("FAKE_TRTLLM"));
    let layout = marker
        .and_then(|m| std::fs::read_to_string(m).ok())
        .and_then(|text| serde_json::from_str(&text).ok());
    if layout.is_none() {
        eprintln!(
            "trtllm_fake: skipped: this build does not link the fake TensorRT-LLM (scripts/build-fake-trtllm)"
        );
    }
    layout
}

fn fake() -> bool {
    fake_layout().is_some()
}

/// A stand-in engine directory the fake loads: config.json as trtllm-build
/// writes it (the keys the runner and the fake read), an empty rank0.engine, and
/// the demo model's tokenizer.
struct Engine {
    tmp: tempfile::TempDir,
}

impl Engine {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// An engine whose config.json is edited by `edit` first.
    fn with(edit: impl FnOnce(&mut Value)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("engine");
        std::fs::create_dir(&dir).unwrap();
        let mut config = serde_json::json!({
            "version": "1.2.0",
            "pretrained_config": {
                "architecture": "NemotronForCausalLM",
                "vocab_size": VOCAB,
                "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1}
            },
            "build_config": {
                "max_input_len": 64,
                "max_seq_len": 4096,
                "gather_context_logits": true,
                "gather_generation_logits": true
            }
        });
        edit(&mut config);
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::write(dir.join("rank0.engine"), b"").unwrap();
        std::fs::copy(
            common::fixtures().join("demo-shakespeare/tokenizer.json"),
            dir.join("tokenizer.json"),
        )
        .unwrap();
        Engine { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("engine")
    }

    fn record_path(&self) -> PathBuf {
        self.tmp.path().join("record.jsonl")
    }

    /// `trtllm-minitron run --model ENGINE ARGS` with nothing in its environment
    /// but the fake's record file: no LD_LIBRARY_PATH, no PATH.
    fn command(&self, args: &[&str]) -> common::Cli {
        let dir = self.dir();
        let mut all = vec!["run", "--backend", "trtllm", "--model", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        common::Cli::new(&all)
            .env_clear()
            .env("TRTLLM_FAKE_RECORD", self.record_path())
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output()
    }

    /// `trtllm-minitron serve --engine ENGINE --port 0 ARGS`, in the same
    /// empty environment as `command`.
    fn serve(&self, args: &[&str]) -> Server {
        let dir = self.dir();
        let mut all = vec!["serve", "--engine", dir.to_str().unwrap(), "--port", "0"];
        all.extend_from_slice(args);
        Server::spawn(
            common::Cli::new(&all)
                .env_clear()
                .env("TRTLLM_FAKE_RECORD", self.record_path()),
        )
    }

    /// What the fake recorded, one JSON object per call.
    fn record(&self) -> Vec<Value> {
        std::fs::read_to_string(self.record_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn events(&self, name: &str) -> Vec<Value> {
        self.record().into_iter().filter(|e| e["event"] == name).collect()
    }
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{:?}: {}", out.status, common::stderr(out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect()
}

/// The recorded request's numeric fields are these values.
fn assert_fields(request: &Value, expected: &[(&str, f64)]) {
    for &(field, value) in expected {
        let got = request[field].as_f64();
        assert!(
            got.is_some_and(|g| (g - value).abs() < 1e-6),
            "{field}: {got:?}, expected {value}: {request}"
        );
    }
}

#[test]
fn starts_without_ld_library_path_and_decodes_greedily() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let out = engine.run(&["--input-ids", "100,101", "--max-new-tokens", "4", "--json"]);
    let line = ok_json(&out);
    // The fake's greedy model continues last+1.
    assert_eq!(ids(&line["output_ids"]), vec![102, 103, 104, 105]);
    assert_eq!(line["finish_reason"], "length");

    let events: Vec<String> = engine
        .record()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["init_plugins", "executor", "enqueue", "shutdown"]);
    let executor = &engine.events("executor")[0];
    assert_eq!(executor["max_beam_width"], 1);
    assert_eq!(executor["normalize_log_probs"], false);
    // The runtime libraries in other directories were loaded and called...
    assert_eq!(executor["tensorrt_version"], 101300);
    assert_eq!(executor["cudart_version"], 13000);
    // ... each from the directory discovery chose in this layout.
    let layout = fake_layout().unwrap();
    for lib in ["tensorrt", "mpi", "cudart"] {
        let loaded = PathBuf::from(executor["loaded"][lib].as_str().unwrap());
        let want = Path::new(layout[lib].as_str().unwrap()).canonicalize().unwrap();
        assert_eq!(
            loaded.parent().unwrap().canonicalize().unwrap(),
            want,
            "{lib} in the {} layout",
            layout["layout"]
        );
    }
    let request = &engine.events("enqueue")[0];
    assert_eq!(ids(&request["input_ids"]), vec![100, 101]);
    assert_eq!(request["streaming"], true);
    assert_eq!(request["return_all_generated_tokens"], false);
    assert_eq!(request["exclude_input_from_output"], true);
    assert_fields(
        request,
        &[
            ("top_k", 1.0),
            ("top_p", 1.0),
            ("temperature", 1.0),
            ("seed", 0.0),
            ("min_tokens", 0.0),
            ("repetition_penalty", 1.0),
            ("presence_penalty", 0.0),
            ("frequency_penalty", 0.0),
            ("end_id", EOS as f64),
            ("pad_id", EOS as f64),
        ],
    );
}

#[test]
fn prints_streamed_text() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let out = engine.run(&["ROMEO:", "--max-new-tokens", "6"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.trim_end().chars().count() >= 1, "{text:?}");
    assert_eq!(engine.events("enqueue").len(), 1);
}

#[test]
fn temperature_sampling_arrives_as_the_reference_samples() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let sampled = |seed: &str| {
        let out = engine.run(&[
            "--input-ids",
            "100,101",
            "--max-new-tokens",
            "6",
            "--temperature",
            "0.8",
            "--seed",
            seed,
            "--json",
        ]);
        ids(&ok_json(&out)["output_ids"])
    };
    let first = sampled("3");
    // Not the greedy continuation: the library samples (unset, its topK 0 and
    // topP 0.0 would have decoded greedily).
    assert_ne!(first, vec![102, 103, 104, 105, 106, 107]);
    assert_eq!(first, sampled("3"));
    let request = &engine.events("enqueue")[0];
    assert_fields(
        request,
        &[
            ("top_k", 0.0),
            ("top_p", 1.0),
            ("temperature", 0.8),
            ("seed", 3.0),
            ("min_tokens", 0.0),
            ("repetition_penalty", 1.0),
        ],
    );

    let out = engine.run(&[
        "--input-ids",
        "9",
        "--top-k",
        "40",
        "--top-p",
        "0.9",
        "--repetition-penalty",
        "1.2",
        "--json",
    ]);
    ok_json(&out);
    let request = engine.events("enqueue").pop().unwrap();
    assert_fields(
        &request,
        &[
            ("top_k", 40.0),
            ("top_p", 0.9),
            ("temperature", 1.0),
            ("repetition_penalty", 1.2),
        ],
    );
}

#[test]
fn context_logits_are_copied_once_and_log_probs_are_not_repeated() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let logits = engine.tmp.path().join("logits.safetensors");
    let out = engine.run(&[
        "--input-ids",
        "7,8,9",
        "--max-new-tokens",
        "5",
        "--json",
        "--output-logits",
        logits.to_str().unwrap(),
    ]);
    let line = ok_json(&out);
    // The fake's log-prob of the k-th token is -k/8; each response lists all so far.
    assert_eq!(
        common::f64s(&line["logprobs"]),
        vec![-0.125, -0.25, -0.375, -0.5, -0.625]
    );
    // Five streamed responses carried the context logits; the bridge read them once.
    let shutdown = &engine.events("shutdown")[0];
    assert_eq!(shutdown["context_logits_reads"]["1"], 1, "{shutdown}");

    let bytes = std::fs::read(&logits).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let context = st.tensor("context_logits").unwrap();
    assert_eq!(context.shape(), &[3, VOCAB as usize]);
    let values: Vec<f32> = context
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert!(values.iter().enumerate().all(|(i, &v)| v == (i % 5) as f32 * 0.5));
    let generation = st.tensor("generation_logits").unwrap();
    assert_eq!(generation.shape(), &[5, VOCAB as usize]);
}

/// The safetensors file's `__metadata__`.
fn safetensors_metadata(bytes: &[u8]) -> Value {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

#[test]
fn the_end_token_ends_generation_and_is_returned() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let logits = engine.tmp.path().join("logits.safetensors");
    // Greedy after 1 is 2, then the end id 3, which the library does not return.
    let out = engine.run(&[
        "--input-ids",
        "0,1",
        "--max-new-tokens",
        "10",
        "--json",
        "--output-logits",
        logits.to_str().unwrap(),
    ]);
    let line = ok_json(&out);
    assert_eq!(ids(&line["output_ids"]), vec![2, EOS]);
    assert_eq!(line["finish_reason"], "end_id");
    assert_eq!(line["logprobs"].as_array().unwrap().len(), 1);
    // No logits for the end token either, and the file says so.
    let bytes = std::fs::read(&logits).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("generation_logits").unwrap().shape(),
        &[1, VOCAB as usize]
    );
    let rows = &safetensors_metadata(&bytes)["generation_logits"];
    assert!(
        rows.as_str().unwrap().contains("but the final end token"),
        "{rows}"
    );
}

#[test]
fn the_library_errors_reach_the_user() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    // Over the engine's max_input_len (64): an error response for that request.
    let long: Vec<String> = (0..70).map(|i| (i + 10).to_string()).collect();
    let out = engine.run(&["--input-ids", &long.join(","), "--max-new-tokens", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("prompt 0") && err.contains("exceeds maximum input length"),
        "{err}"
    );
    assert_eq!(engine.events("shutdown").len(), 1);
}

#[test]
fn an_option_out_of_the_library_range_is_refused_before_anything_is_enqueued() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let out = engine.run(&["--input-ids", "5", "--top-k", "5000"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        common::stderr(&out).contains("invalid value '5000' for '--top-k <K>'"),
        "{}",
        common::stderr(&out)
    );
    assert!(engine.events("enqueue").is_empty());
}

#[test]
fn ctrl_c_cancels_the_request_and_shuts_the_executor_down() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let mut child = engine
        .command(&["--input-ids", "5", "--max-new-tokens", "3000", "--ignore-eos"])
        .env("TRTLLM_FAKE_STEP_MS", "20")
        .into_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Tokens stream as they come: interrupt once the first ones are out.
    let status = common::interrupt(&mut child, 8, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    let cancels = engine.events("cancel");
    assert_eq!(cancels.len(), 1, "{:?}", engine.record());
    assert_eq!(cancels[0]["id"], 1);
    assert_eq!(engine.events("shutdown").len(), 1);
}

#[test]
fn context_logits_are_whole_when_prompts_share_a_prefix() {
    if !fake() {
        return;
    }
    // One request at a time, so the second prompt's context runs after the first's
    // and, with KV-cache block reuse, would take their two shared 4-token blocks
    // from the cache and leave those rows of its context logits unwritten.
    let engine = Engine::with(|c| {
        c["build_config"]["max_batch_size"] = 1.into();
        c["build_config"]["plugin_config"] = serde_json::json!({"tokens_per_block": 4});
    });
    let logits = engine.tmp.path().join("logits.safetensors");
    let shared = "10,11,12,13,14,15,16,17";
    let out = engine.run(&[
        "--input-ids",
        &format!("{shared},18,19"),
        "--input-ids",
        &format!("{shared},20,21,22"),
        "--max-new-tokens",
        "2",
        "--output-logits",
        logits.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let bytes = std::fs::read(&logits).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, rows) in [("context_logits.0", 10), ("context_logits.1", 11)] {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.shape(), &[rows, VOCAB as usize]);
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // The fake's context logits are (i % 5) / 2 for every computed element.
        let wrong = values
            .iter()
            .enumerate()
            .position(|(i, &v)| v != (i % 5) as f32 * 0.5);
        assert_eq!(wrong.map(|i| i / VOCAB as usize), None, "{name}: first wrong row");
    }
    assert!(
        engine.events("warning").is_empty(),
        "{:?}",
        engine.events("warning")
    );
    assert_eq!(engine.events("executor")[0]["enable_block_reuse"], false);
}

#[test]
fn top_k_above_the_vocabulary_is_sent_as_no_top_k() {
    if !fake() {
        return;
    }
    // TensorRT-LLM's top-k kernel decodes greedily when K exceeds the vocabulary
    // and log-probs are returned (--json asks for them).
    let engine = Engine::with(|c| c["pretrained_config"]["vocab_size"] = 512.into());
    let out = engine.run(&[
        "--input-ids",
        "100,101",
        "--max-new-tokens",
        "6",
        "--top-k",
        "600",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--json",
    ]);
    let line = ok_json(&out);
    assert_fields(&engine.events("enqueue")[0], &[("top_k", 0.0), ("top_p", 1.0)]);
    assert_ne!(
        ids(&line["output_ids"]),
        vec![102, 103, 104, 105, 106, 107],
        "decoded greedily"
    );
}

#[test]
fn a_library_of_another_release_than_the_headers_is_refused() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let out = engine
        .command(&["--input-ids", "5", "--max-new-tokens", "2"])
        .env("TRTLLM_FAKE_VERSION", "1.2.1")
        .output();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("headers of TensorRT-LLM 1.2.0") && err.contains("is 1.2.1"),
        "{err}"
    );
    assert!(engine.events("executor").is_empty(), "the engine was loaded");
}

/// Opens the fake executor in this process (without a record file).
fn open(engine: &Engine) -> TrtllmExecutor {
    TrtllmExecutor::open(&ExecutorOptions::new(engine.dir())).unwrap()
}

fn long_request(max_tokens: i32) -> RequestSpec {
    RequestSpec {
        input_ids: vec![5],
        max_tokens,
        streaming: true,
        temperature: Some(1.0),
        top_k: Some(1),
        top_p: Some(1.0),
        min_tokens: Some(0),
        end_id: Some(-1),
        ..RequestSpec::default()
    }
}

#[test]
fn requests_still_running_are_cancelled_so_that_shutdown_does_not_wait_for_them() {
    if !fake() {
        return;
    }
    let engine = Engine::with(|c| c["build_config"]["max_seq_len"] = (1 << 20).into());
    // As TensorRT-LLM does, the fake's shutdown waits for every active request
    // to generate its last token (2 ms a step): 300 tokens take 0.6 s.
    let api = open(&engine);
    api.enqueue(&long_request(300)).unwrap();
    let started = Instant::now();
    api.shutdown().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // A router dropped while a 20000-token request streams (40 s to its end)
    // cancels it first, and shuts down within a few steps.
    let router = Router::start(open(&engine), Duration::from_millis(20));
    let (tx, rx) = mpsc::channel();
    router.submit(&long_request(20_000), 0, tx).unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok((0, Event::Step(_)))
    ));
    let started = Instant::now();
    drop(router);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn serve_answers_through_the_real_bridge_as_run_does() {
    if !fake() {
        return;
    }
    let engine = Engine::new();
    let prompts = [vec![100, 101], vec![7], vec![300, 301, 302]];
    let alone: Vec<Value> = prompts
        .iter()
        .map(|p| {
            let ids: Vec<String> = p.iter().map(i64::to_string).collect();
            ok_json(&engine.run(&["--input-ids", &ids.join(","), "--max-new-tokens", "5", "--json"]))
        })
        .collect();
    let enqueued = engine.events("enqueue").len();
    let shutdowns = engine.events("shutdown").len();

    let mut server = engine.serve(&[]);
    let body =
        |prompt: &[i64]| json!({"model": "engine", "prompt": prompt, "max_tokens": 5, "temperature": 0});
    let one = server.complete(&body(&prompts[0]));
    assert_eq!(one["choices"][0]["text"], alone[0]["text"]);
    assert_eq!(one["choices"][0]["finish_reason"], "length");
    assert_eq!(one["usage"]["completion_tokens"], 5);
    let mut streamed = body(&prompts[0]);
    streamed["stream"] = json!(true);
    let text: String = server
        .stream("/v1/completions", &streamed)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, alone[0]["text"].as_str().unwrap());
    // Requests in flight together in the executor, each as `run` alone.
    std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let server = &server;
                s.spawn(move || server.complete(&body(p)))
            })
            .collect();
        for (handle, want) in handles.into_iter().zip(&alone) {
            assert_eq!(handle.join().unwrap()["choices"][0]["text"], want["text"]);
        }
    });
    for request in &engine.events("enqueue")[enqueued..] {
        assert_eq!(request["streaming"], true, "{request}");
    }
    assert_eq!(engine.events("enqueue").len(), enqueued + 5);

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(30)).expect("serve exits");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        engine.events("shutdown").len(),
        shutdowns + 1,
        "{:?}",
        engine.record()
    );
}
