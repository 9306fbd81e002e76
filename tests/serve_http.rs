//! `serve` over HTTP: the binary on the demo model, driven with a plain HTTP
//! client as the OpenAI clients drive it. Completions equal `run`'s output;
//! concurrent greedy requests equal each request run alone; streaming, stop
//! strings, seeds; OpenAI error objects naming the field; the API key; a full
//! queue; clients that go away; graceful shutdown on SIGTERM and Ctrl-C.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::Server;
use common::*;
use serde_json::{Value, json};

const MODEL: &str = "demo-shakespeare";

fn demo() -> PathBuf {
    fixtures().join(MODEL)
}

/// `serve --model DEMO --port 0 EXTRA...`.
fn start_server(extra: &[&str]) -> Server {
    start_model(&demo(), extra, &[])
}

/// `serve --model MODEL --port 0 EXTRA...` with `env` (and no API key from outside).
fn start_model(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut args = vec!["serve", "--model", model.to_str().unwrap(), "--port", "0"];
    args.extend_from_slice(extra);
    let mut cli = Cli::new(&args).env_remove("TRTLLM_MINITRON_API_KEY");
    for (k, v) in env {
        cli = cli.env(k, v);
    }
    Server::spawn(cli)
}

/// `run --json` of one text prompt alone, with the server's conversion cache.
fn run_alone(server: &Server, prompt: &str, max_new_tokens: usize) -> Value {
    let out = cli_in(
        server.cache(),
        &[
            "run",
            "--model",
            demo().to_str().unwrap(),
            "--max-new-tokens",
            &max_new_tokens.to_string(),
            "--json",
            prompt,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

fn greedy(prompt: Value, max_tokens: usize) -> Value {
    json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

#[test]
fn a_completion_is_runs_output_with_usage() {
    let server = start_server(&[]);
    let alone = run_alone(&server, "ROMEO:", 12);
    let body = server.complete(&greedy(json!("ROMEO:"), 12));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["text"], alone["text"]);
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(choice["logprobs"], Value::Null);
    let prompt_tokens = alone["input_ids"].as_array().unwrap().len();
    assert_eq!(body["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(body["usage"]["completion_tokens"], 12);
    assert_eq!(body["usage"]["total_tokens"], prompt_tokens + 12);

    // The same prompt as token ids; two prompts give two choices.
    let body = server.complete(&greedy(alone["input_ids"].clone(), 12));
    assert_eq!(body["choices"][0]["text"], alone["text"]);
    let other = run_alone(&server, "JULIET:", 5);
    let body = server.complete(&greedy(json!(["ROMEO:", "JULIET:"]), 5));
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(body["choices"][1]["index"], 1);
    assert_eq!(body["choices"][1]["text"], other["text"]);

    // Log-probs of the generated tokens: `run`'s, token for token; the texts add up.
    let body = server.complete(&json!({"model": MODEL, "prompt": "ROMEO:", "max_tokens": 12,
        "temperature": 0, "logprobs": 0}));
    let lp = &body["choices"][0]["logprobs"];
    let theirs = f64s(&alone["logprobs"]);
    let ours = f64s(&lp["token_logprobs"]);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-5, "{ours:?} vs {theirs:?}");
    }
    let pieces: String = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(pieces, alone["text"].as_str().unwrap());
}

#[test]
fn concurrent_greedy_requests_equal_each_request_run_alone() {
    // Three decode together, prompts join four tokens per step.
    let server = start_server(&["--max-batch", "3", "--prefill-chunk", "4"]);
    let prompts = [
        ("To be or not to be, that is the question:", 20),
        ("ROMEO:", 9),
        (
            "Now is the winter of our discontent made glorious summer by this sun of York;",
            14,
        ),
        ("A", 25),
        ("KING HENRY:\nOnce more unto the breach, dear friends,", 6),
        ("O", 17),
    ];
    let got: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, (p, n))| {
                let server = &server;
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(30 * i as u64));
                    server.complete(&greedy(json!(p), *n))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((p, n), body) in prompts.iter().zip(&got) {
        let alone = run_alone(&server, p, *n);
        assert_eq!(body["choices"][0]["text"], alone["text"], "prompt {p:?}");
        assert_eq!(
            body["usage"]["completion_tokens"],
            alone["output_ids"].as_array().unwrap().len(),
            "prompt {p:?}"
        );
    }
}

#[test]
fn streaming_sends_the_same_text_in_chunks_then_usage_and_done() {
    let server = start_server(&[]);
    let whole = server.complete(&greedy(json!("JULIET:"), 16));
    let mut body = greedy(json!("JULIET:"), 16);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = server.stream("/v1/completions", &body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage, chunks) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
    assert!(chunks.len() > 2, "streamed in pieces: {chunks:?}");
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == chunks[0]["id"] && c["object"] == "text_completion")
    );
}

#[test]
fn a_stop_string_ends_the_text_before_it() {
    let server = start_server(&[]);
    let whole = server.complete(&greedy(json!("ROMEO:"), 30));
    let text = whole["choices"][0]["text"].as_str().unwrap().to_string();
    // A word from the middle of the greedy text.
    let stop = text.split_whitespace().nth(3).expect("a few words").to_string();
    let cut = &text[..text.find(&stop).unwrap()];
    let mut body = greedy(json!("ROMEO:"), 30);
    body["stop"] = json!(["@@never@@", stop]);
    let stopped = server.complete(&body);
    assert_eq!(stopped["choices"][0]["text"], cut);
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    let used = stopped["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(used < 30, "generation stopped early ({used} tokens)");

    body["stream"] = json!(true);
    let events = server.stream("/v1/completions", &body);
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, cut);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn a_seed_reproduces_a_sampled_completion() {
    let server = start_server(&[]);
    let sampled = |seed: u64| {
        let body = json!({"model": MODEL, "prompt": "To be or not to be,", "max_tokens": 24,
            "temperature": 1.0, "top_p": 0.95, "seed": seed});
        server.complete(&body)["choices"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(sampled(7), sampled(7));
    assert_ne!(sampled(7), sampled(8));
    // And equals `run` with the same options.
    let out = cli_in(
        server.cache(),
        &[
            "run",
            "--model",
            demo().to_str().unwrap(),
            "--max-new-tokens",
            "24",
            "--temperature",
            "1",
            "--top-p",
            "0.95",
            "--seed",
            "7",
            "--json",
            "To be or not to be,",
        ],
    );
    let alone: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(alone["text"].as_str().unwrap(), sampled(7));
}

#[test]
fn bad_requests_get_openai_errors_naming_the_field() {
    let server = start_server(&[]);
    let ok = greedy(json!("ROMEO:"), 4);
    let with = |key: &str, value: Value| {
        let mut b = ok.clone();
        b[key] = value;
        b.to_string()
    };
    let long_prompt: Vec<u32> = (0..600).map(|i| 10 + i % 1000).collect();
    let cases: Vec<(String, u16, Option<&str>, &str)> = vec![
        ("{\"model\": ".into(), 400, None, "could not parse the JSON body"),
        ("[1, 2]".into(), 400, None, "must be a JSON object"),
        (
            with("temperature", json!("hot")),
            400,
            Some("temperature"),
            "invalid type: string",
        ),
        (
            with("max_tokens", json!(-1)),
            400,
            Some("max_tokens"),
            "Invalid value for 'max_tokens'",
        ),
        (
            with("frobnicate", json!(1)),
            400,
            Some("frobnicate"),
            "Unrecognized request argument",
        ),
        (with("n", json!(2)), 400, Some("n"), "one choice"),
        (
            with("echo", json!(true)),
            400,
            Some("echo"),
            "echo is not supported",
        ),
        (with("logprobs", json!(3)), 400, Some("logprobs"), "logprobs = 3"),
        (
            with("top_p", json!(0)),
            400,
            Some("top_p"),
            "expected a value in (0, 1]",
        ),
        (with("top_k", json!(2000)), 400, Some("top_k"), "at most 1024"),
        (
            with("temperature", json!(-0.5)),
            400,
            Some("temperature"),
            "must be >= 0",
        ),
        (
            with("max_tokens", json!(0)),
            400,
            Some("max_tokens"),
            "at least 1",
        ),
        (
            with("max_tokens", json!(600)),
            400,
            Some("max_tokens"),
            "maximum context length is 512",
        ),
        (
            with("prompt", json!(long_prompt)),
            400,
            Some("prompt"),
            "more than the 512 this model takes",
        ),
        (
            with("prompt", json!(vec![9; 512])),
            400,
            Some("prompt"),
            "leaves no room",
        ),
        (
            with("prompt", json!([5, 4096])),
            400,
            Some("prompt"),
            "token id 4096 is out of range",
        ),
        (with("prompt", json!("")), 400, Some("prompt"), "is empty"),
        (
            with("prompt", json!({"text": "x"})),
            400,
            Some("prompt"),
            "prompt must be a string",
        ),
        (
            with("stop", json!(["a", "b", "c", "d", "e"])),
            400,
            Some("stop"),
            "at most 4",
        ),
        (
            with("presence_penalty", json!(0.5)),
            400,
            Some("presence_penalty"),
            "not supported",
        ),
        (
            with("model", json!("gpt-4")),
            404,
            Some("model"),
            "`gpt-4` does not exist",
        ),
        (
            json!({"prompt": "x"}).to_string(),
            400,
            Some("model"),
            "Missing required parameter: 'model'",
        ),
    ];
    for (body, status, param, message) in cases {
        let (got, json, _) = server.post_raw("/v1/completions", &body, &[]);
        let error = &json["error"];
        assert_eq!(got, status, "{body}: {json}");
        assert_eq!(error["param"].as_str(), param, "{body}: {json}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}: {json}"
        );
        assert!(error["type"].is_string() && error.get("code").is_some(), "{json}");
    }
    // Chat: no chat template in the demo model.
    let (status, json) = server.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 400);
    assert_eq!(json["error"]["param"], "messages");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no chat template")
    );
    // A body over the limit: 413.
    let huge = format!(
        "{{\"model\": \"{MODEL}\", \"prompt\": \"{}\"}}",
        "a".repeat(2 << 20)
    );
    let (status, json, _) = server.post_raw("/v1/completions", &huge, &[]);
    assert_eq!(status, 413, "{json}");
    // Unknown paths and methods: JSON errors too.
    let (status, text) = server.get("/v1/engines", &[]);
    assert_eq!(status, 404);
    assert!(text.contains("Unknown endpoint /v1/engines"), "{text}");
    let (status, text) = server.get("/v1/completions", &[]);
    assert_eq!(status, 405, "{text}");
    // The server is still fine.
    server.complete(&ok);
    assert_eq!(
        server.metric("trtllm_minitron_http_requests_total{path=\"/v1/completions\",status=\"400\"}"),
        21.0
    );
}

#[test]
fn an_api_key_is_required_when_set_and_compared_exactly() {
    let server = start_model(&demo(), &[], &[("TRTLLM_MINITRON_API_KEY", "s3cret")]);
    let body = greedy(json!("ROMEO:"), 2).to_string();
    let (status, json, _) = server.post_raw("/v1/completions", &body, &[]);
    assert_eq!(status, 401);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("didn't provide an API key")
    );
    for wrong in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer S3CRET",
        "s3cret",
        "Basic s3cret",
    ] {
        let (status, json, _) = server.post_raw("/v1/completions", &body, &[("Authorization", wrong)]);
        assert_eq!(status, 401, "{wrong}: {json}");
        assert_eq!(json["error"]["code"], "invalid_api_key");
    }
    let (status, _, _) = server.post_raw("/v1/completions", &body, &[("Authorization", "Bearer s3cret")]);
    assert_eq!(status, 200);
    assert_eq!(server.get("/v1/models", &[]).0, 401);
    let (status, models) = server.get("/v1/models", &[("Authorization", "Bearer s3cret")]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&models).unwrap()["data"][0]["id"],
        MODEL
    );
    // Health and metrics stay open (the server listens on 127.0.0.1 unless told otherwise).
    assert_eq!(server.get("/health", &[]).0, 200);
    assert_eq!(server.get("/metrics", &[]).0, 200);
}

/// Sends a streaming request on a raw socket and reads until the first token
/// chunk; dropping what it returns disconnects.
fn start_stream(server: &Server, max_tokens: usize) -> BufReader<TcpStream> {
    let body = json!({"model": MODEL, "prompt": "ROMEO:", "max_tokens": max_tokens,
        "temperature": 0, "stream": true})
    .to_string();
    let mut socket = TcpStream::connect(server.addr()).unwrap();
    write!(
        socket,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    while !line.starts_with("data: {") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended early");
    }
    reader
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_queue_is_429_with_retry_after() {
    let server = start_server(&["--max-batch", "1", "--max-queue", "0"]);
    let _running = start_stream(&server, 400);
    let body = greedy(json!("JULIET:"), 2).to_string();
    let (status, json, retry) = server.post_raw("/v1/completions", &body, &[]);
    assert_eq!(status, 429, "{json}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full")
    );
}

#[test]
fn a_client_that_goes_away_is_cancelled_at_the_next_step() {
    let server = start_server(&["--max-batch", "1"]);
    let tokens = "trtllm_minitron_generation_tokens_total";
    // Tokens taken from the backend after the client left: read when it has
    // left, so that the count does not depend on how many tokens an optimised
    // build generates before the test gets there (dozens on the tiny model).
    let after_leaving = |left_at: f64, abandoned: f64| {
        wait_until("the request is abandoned", Duration::from_secs(30), || {
            server.metric("trtllm_minitron_generations_finished_total{reason=\"abandoned\"}") == abandoned
                && server.metric("trtllm_minitron_running_batch_size") == 0.0
        });
        server.metric(tokens) - left_at
    };
    // Streaming: the client reads one chunk and leaves.
    drop(start_stream(&server, 400));
    let left_at = server.metric(tokens);
    let late = after_leaving(left_at, 1.0);
    assert!(
        late < 100.0,
        "{late} tokens were taken for a client that had left"
    );
    let after = server.metric(tokens);
    assert!(after < 400.0, "the request ran to its end ({after} tokens)");
    // Not streaming: the client sends its request and leaves at once.
    let body = greedy(json!("JULIET:"), 400).to_string();
    let mut socket = TcpStream::connect(server.addr()).unwrap();
    write!(
        socket,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    wait_until("the request runs", Duration::from_secs(30), || {
        server.metric(tokens) > after
    });
    drop(socket);
    let left_at = server.metric(tokens);
    let late = after_leaving(left_at, 2.0);
    assert!(
        late < 100.0,
        "{late} tokens were taken for a client that had left"
    );
    assert!(
        server.metric(tokens) < after + 400.0,
        "the request ran to its end"
    );
    // With the batch free again, a new request runs at once.
    server.complete(&greedy(json!("ROMEO:"), 3));
}

#[test]
fn sigterm_lets_running_requests_finish_then_exits_0() {
    let mut server = start_server(&[]);
    let mut stream = start_stream(&server, 24);
    server.signal("TERM");
    // The running stream completes.
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let status = server.wait_exit(Duration::from_secs(30)).expect("serve exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(server.addr()).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn ctrl_c_past_the_shutdown_timeout_cancels_and_exits_0() {
    let mut server = start_server(&["--shutdown-timeout", "0.5"]);
    let mut stream = start_stream(&server, 500);
    let started = Instant::now();
    server.signal("INT");
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("shutting down"), "{rest}");
    assert!(!rest.contains("[DONE]"), "{rest}");
    let status = server.wait_exit(Duration::from_secs(30)).expect("serve exits");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn models_health_and_metrics() {
    let server = start_server(&["--served-model-name", "bard"]);
    let (status, text) = server.get("/v1/models", &[]);
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "bard");
    assert_eq!(models["data"][0]["max_model_len"], 512);
    assert_eq!(
        server.get("/health", &[]),
        (200, "{\"status\":\"ok\"}".to_string())
    );
    let (status, json) = server.post("/v1/completions", &greedy(json!("ROMEO:"), 2));
    assert_eq!(status, 404, "the served name, not the directory's: {json}");
    let (status, _) = server.post(
        "/v1/completions",
        &json!({"model": "bard", "prompt": "ROMEO:", "max_tokens": 3}),
    );
    assert_eq!(status, 200);
    let expected = [
        "trtllm_minitron_http_requests_total{path=\"/v1/completions\",status=\"200\"} 1",
        "trtllm_minitron_http_requests_total{path=\"/v1/completions\",status=\"404\"} 1",
        "trtllm_minitron_generation_tokens_total 3",
        "trtllm_minitron_generations_finished_total{reason=\"length\"} 1",
        "trtllm_minitron_time_to_first_token_seconds_count 1",
        "trtllm_minitron_inter_token_latency_seconds_count 2",
        "trtllm_minitron_queue_depth 0",
        "trtllm_minitron_running_batch_size 0",
    ];
    // The scheduler records a finished request just after its last token is
    // sent, so a scrape right after the response may lag by a step: wait
    // (boundedly) for the counters to settle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let (_, metrics) = server.get("/metrics", &[]);
        let settled = expected.iter().all(|line| metrics.lines().any(|l| l == *line));
        if settled || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    for line in expected {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    assert!(metrics.contains("trtllm_minitron_prompt_tokens_total "));
}

#[test]
fn chat_completions_render_the_models_template() {
    // The demo model with a chat template of the usual Hugging Face kind.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join(MODEL);
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(demo()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    let template = "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'].strip() }}\n\n\
        {% elif m['role'] == 'user' %}{{ m['role'].upper() }}:\n{{ m['content'] }}\n\
        {% else %}{{ raise_exception('only system and user messages') }}{% endif %}{% endfor %}\
        {% if add_generation_prompt %}ROMEO:\n{% endif %}";
    edit_json(&model.join("tokenizer_config.json"), |v| {
        v["chat_template"] = json!(template);
    });
    let server = start_model(&model, &[], &[]);
    let messages = json!([
        {"role": "system", "content": "  A scene in Verona. "},
        {"role": "user", "content": [{"type": "text", "text": "Speak."}]},
    ]);
    let rendered = "A scene in Verona.\n\nUSER:\nSpeak.\nROMEO:\n";
    let out = cli_in(
        server.cache(),
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--max-new-tokens",
            "10",
            "--json",
            rendered,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alone: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let (status, body) = server.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": messages, "max_tokens": 10, "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], alone["text"]);
    assert_eq!(
        body["usage"]["prompt_tokens"],
        alone["input_ids"].as_array().unwrap().len()
    );
    // Streamed: a role chunk first, then content deltas, then the finish.
    let events = server.stream(
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": messages, "max_tokens": 10, "temperature": 0, "stream": true}),
    );
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, alone["text"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    // The template's own refusal is a 400 with its message.
    let (status, body) = server.post(
        "/v1/chat/completions",
        &json!({"model": MODEL, "messages": [{"role": "assistant", "content": "x"}]}),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only system and user messages"),
        "{body}"
    );
}

#[test]
fn a_checkpoint_without_a_tokenizer_takes_and_returns_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let out = cli(&[
        "convert",
        "--model",
        demo().to_str().unwrap(),
        "--output",
        ckpt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::remove_file(ckpt.join(name)).unwrap();
    }
    let out = cli(&[
        "run",
        "--model",
        ckpt.to_str().unwrap(),
        "--input-ids",
        "5,300,41",
        "--max-new-tokens",
        "6",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let alone: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let server = start_model(&ckpt, &["--served-model-name", MODEL], &[]);
    let body = server.complete(&greedy(json!([5, 300, 41]), 6));
    assert_eq!(body["choices"][0]["token_ids"], alone["output_ids"]);
    assert_eq!(body["choices"][0]["text"], "");
    let mut streamed = greedy(json!([5, 300, 41]), 6);
    streamed["stream"] = json!(true);
    let ids: Vec<Value> = server
        .stream("/v1/completions", &streamed)
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["token_ids"]
                .get(0)
                .cloned()
        })
        .collect();
    assert_eq!(Value::from(ids), alone["output_ids"]);
    let (status, json) = server.post("/v1/completions", &greedy(json!("ROMEO:"), 2));
    assert_eq!(status, 400);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no tokenizer"),
        "{json}"
    );
}
