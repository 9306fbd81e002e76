//! `run` end to end through the binary: outputs against transformers' golden
//! tokens and logits, inputs from every source, decoding options, the
//! conversion cache, and bad inputs.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn golden_ids(model: &str, name: &str) -> Vec<u64> {
    let bytes = std::fs::read(fixtures().join("golden").join(format!("{model}.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u64)
        .collect()
}

fn ids_arg(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn greedy_output_matches_transformers_from_every_kind_of_model_path() {
    let cache = tempfile::tempdir().unwrap();
    let name = "gqa-headdim-bf16";
    let input = ids_arg(&golden_ids(name, "input_ids_0"));
    let want: Vec<u64> = golden_ids(name, "greedy_0");
    let hf = model(name);
    let tp2 = cache.path().join("tp2pp2");
    let conv = cli(&[
        "convert",
        "--model",
        hf.to_str().unwrap(),
        "--output",
        tp2.to_str().unwrap(),
        "--tp-size",
        "2",
        "--pp-size",
        "2",
    ]);
    assert!(conv.status.success(), "{}", stderr(&conv));
    for path in [hf.to_str().unwrap(), tp2.to_str().unwrap()] {
        let out = cli_in(
            cache.path(),
            &[
                "run",
                "--model",
                path,
                "--input-ids",
                &input,
                "--max-new-tokens",
                "8",
                "--ignore-eos",
                "--json",
            ],
        );
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 1);
        let got: Vec<u64> = lines[0]["output_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{path}");
        assert_eq!(lines[0]["finish_reason"], "length");
    }
}

#[test]
fn logits_file_holds_context_and_generation_logits() {
    let cache = tempfile::tempdir().unwrap();
    let name = "bin-f32";
    let input = golden_ids(name, "input_ids_0");
    let logits_path = cache.path().join("logits.safetensors");
    let out = cli_in(
        cache.path(),
        &[
            "run",
            "--model",
            model(name).to_str().unwrap(),
            "--input-ids",
            &ids_arg(&input),
            "--max-new-tokens",
            "8",
            "--ignore-eos",
            "--output-logits",
            logits_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&logits_path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let golden_bytes = std::fs::read(fixtures().join("golden/bin-f32.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&golden_bytes).unwrap();
    for (ours, theirs) in [
        ("context_logits", "logits_0"),
        ("generation_logits", "greedy_logits_0"),
    ] {
        let (a, b) = (st.tensor(ours).unwrap(), golden.tensor(theirs).unwrap());
        assert_eq!(a.shape(), b.shape(), "{ours}");
        let f = |d: &[u8]| {
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        let (a, b) = (f(a.data()), f(b.data()));
        let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max < 1e-3, "{ours}: max diff {max}");
    }
}

#[test]
fn json_log_probs_are_transformers_log_softmax_of_each_chosen_token() {
    let cache = tempfile::tempdir().unwrap();
    let name = "bin-f32";
    let out = cli_in(
        cache.path(),
        &[
            "run",
            "--model",
            model(name).to_str().unwrap(),
            "--input-ids",
            &ids_arg(&golden_ids(name, "input_ids_0")),
            "--max-new-tokens",
            "8",
            "--ignore-eos",
            "--json",
        ],
    );
    let line = &json_lines(&out)[0];
    let got = f64s(&line["logprobs"]);
    // Greedy at temperature 1: log-softmax of transformers' logits at its token.
    let tokens = golden_ids(name, "greedy_0");
    let bytes = std::fs::read(fixtures().join("golden/bin-f32.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits = golden.tensor("greedy_logits_0").unwrap();
    let vocab = logits.shape()[1];
    let rows: Vec<f64> = logits
        .data()
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_eq!(got.len(), tokens.len());
    for (step, (&lp, &token)) in got.iter().zip(&tokens).enumerate() {
        let row = &rows[step * vocab..(step + 1) * vocab];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_z = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        let want = row[token as usize] - log_z;
        assert!((lp - want).abs() < 1e-3, "step {step}: {lp} vs {want}");
    }
}

#[test]
fn prompts_from_arguments_files_and_stdin() {
    let cache = tempfile::tempdir().unwrap();
    let m = model("gqa-headdim-bf16");
    let file = cache.path().join("prompts.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\": \"the test\"}\n{\"input_ids\": [5, 17, 42]}\nplain line\n",
    )
    .unwrap();
    let out = Cli::new(&[
        "run",
        "--model",
        m.to_str().unwrap(),
        "--prompt-file",
        file.to_str().unwrap(),
        "-",
        "--max-new-tokens",
        "4",
        "--json",
    ])
    .cache(cache.path())
    .stdin("from stdin\n")
    .output();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    // The single-prompt path gives the same tokens as the batched one.
    let alone = json_lines(&cli_in(
        cache.path(),
        &[
            "run",
            "--model",
            m.to_str().unwrap(),
            "--input-ids",
            "5,17,42",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    ));
    let batched = lines
        .iter()
        .find(|l| l["input_ids"] == serde_json::json!([5, 17, 42]))
        .unwrap();
    assert_eq!(batched["output_ids"], alone[0]["output_ids"]);
    for l in &lines {
        assert!(l["text"].is_string());
    }
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let cache = tempfile::tempdir().unwrap();
    let m = model("gqa-headdim-bf16");
    let sample = |seed: &str| {
        let out = cli_in(
            cache.path(),
            &[
                "run",
                "--model",
                m.to_str().unwrap(),
                "--input-ids",
                "5,17,42",
                "--max-new-tokens",
                "24",
                "--temperature",
                "1.5",
                "--seed",
                seed,
                "--ignore-eos",
                "--json",
            ],
        );
        json_lines(&out)[0]["output_ids"].clone()
    };
    assert_eq!(sample("7"), sample("7"));
    assert_ne!(sample("7"), sample("8"));
}

#[test]
fn stop_strings_end_generation_before_the_stop_text() {
    let cache = tempfile::tempdir().unwrap();
    let m = model("gqa-headdim-bf16");
    let base = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--model",
            m.to_str().unwrap(),
            "the",
            "--max-new-tokens",
            "16",
            "--ignore-eos",
            "--json",
        ];
        args.extend_from_slice(extra);
        json_lines(&cli_in(cache.path(), &args)).remove(0)
    };
    let full = base(&[]);
    let text = full["text"].as_str().unwrap().to_string();
    assert!(text.chars().count() > 6, "{text}");
    // A stop string taken from the middle of the greedy output.
    let start = text.char_indices().nth(3).unwrap().0;
    let end = text.char_indices().nth(6).map(|c| c.0).unwrap_or(text.len());
    let stop = &text[start..end];
    let cut = base(&["--stop", stop]);
    assert_eq!(cut["finish_reason"], "stop");
    assert_eq!(cut["text"].as_str().unwrap(), &text[..text.find(stop).unwrap()]);
}

#[test]
fn conversion_cache_is_reused_while_fresh() {
    let cache = tempfile::tempdir().unwrap();
    let (_t, src) = copy_model("mha-f32-safetensors");
    let args = [
        "run",
        "--model",
        src.to_str().unwrap(),
        "--input-ids",
        "1,2,3",
        "--max-new-tokens",
        "2",
        "--json",
    ];
    // Converting says once, even with stderr not a terminal, what, where and why.
    let out = cli_in(cache.path(), &args);
    assert!(out.status.success());
    let dirs = listing(&cache.path().join("checkpoints"));
    assert_eq!(dirs.len(), 1);
    let entry = cache.path().join("checkpoints").join(&dirs[0]);
    let said = stderr(&out);
    assert_eq!(said.matches("converting ").count(), 1, "{said}");
    for words in [
        format!("converting {}", src.display()),
        "(float32, tp=1, about ".into(),
        format!("into the conversion cache at {}", entry.display()),
        "no conversion with these options yet".into(),
    ] {
        assert!(said.contains(&words), "{words:?} in {said}");
    }
    let rank0 = cache
        .path()
        .join("checkpoints")
        .join(&dirs[0])
        .join("rank0.safetensors");
    let first = std::fs::metadata(&rank0).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = cli_in(cache.path(), &args);
    assert!(out.status.success());
    assert!(!stderr(&out).contains("converting"), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&rank0).unwrap().modified().unwrap(),
        first,
        "reconverted a fresh cache"
    );
    // Touching the source makes the cached conversion stale.
    let f = std::fs::File::options()
        .write(true)
        .open(src.join("model.safetensors"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    let out = cli_in(cache.path(), &args);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("the cached conversion is stale: source file model.safetensors changed"),
        "{}",
        stderr(&out)
    );
    assert_ne!(
        std::fs::metadata(&rank0).unwrap().modified().unwrap(),
        first,
        "kept a stale cache"
    );
}

/// More new tokens than the model's context holds: a warning on stderr and in
/// the JSON, and generation stops at the context.
#[test]
fn max_new_tokens_past_the_context_warns() {
    let cache = tempfile::tempdir().unwrap();
    let m = model("gqa-headdim-bf16");
    let out = cli_in(
        cache.path(),
        &[
            "run",
            "--model",
            m.to_str().unwrap(),
            "--input-ids",
            "5,6,7",
            "--input-ids",
            "5",
            "--max-new-tokens",
            "100000",
            "--ignore-eos",
            "--json",
        ],
    );
    let lines = json_lines(&out);
    let warning = "--max-new-tokens 100000: prompt 0 has 3 tokens and the model's context holds 128 \
                   (max_position_embeddings), so at most 125 new tokens can follow";
    assert!(
        stderr(&out).contains(&format!("warning: {warning}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(lines[0]["output_ids"].as_array().unwrap().len(), 125);
    assert_eq!(lines[0]["finish_reason"], "length");
    assert_eq!(lines[0]["max_new_tokens"], 125);
    assert!(lines[0]["warnings"][0].as_str().unwrap().starts_with(warning));
    assert_eq!(lines[1]["max_new_tokens"], 127);
    // Within the context: no warning.
    let out = cli_in(
        cache.path(),
        &[
            "run",
            "--model",
            m.to_str().unwrap(),
            "--input-ids",
            "5",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    );
    let lines = json_lines(&out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(lines[0]["max_new_tokens"], 4);
    assert!(lines[0].get("warnings").is_none(), "{}", lines[0]);
}

fn run_fails(args: &[&str], needles: &[&str]) {
    let cache = tempfile::tempdir().unwrap();
    let out = cli_in(cache.path(), args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for n in needles {
        assert!(stderr(&out).contains(n), "expected {n:?} in {}", stderr(&out));
    }
}

#[test]
fn bad_run_inputs_get_clear_errors() {
    let m = model("gqa-headdim-bf16");
    let m = m.to_str().unwrap();
    let long = (0..129)
        .map(|i| (i % 90 + 4).to_string())
        .collect::<Vec<_>>()
        .join(",");
    run_fails(
        &["run", "--model", m, "--input-ids", &long],
        &["129 tokens", "max_position_embeddings 128"],
    );
    run_fails(
        &["run", "--model", m, "--input-ids", "5,101"],
        &["token id 101 is out of range", "101 tokens"],
    );
    // (Bad option values are usage errors: tests/exit_status.rs.)
    run_fails(&["run", "--model", m], &["no prompt"]);
    // mha-f32-safetensors ships no tokenizer.
    run_fails(
        &[
            "run",
            "--model",
            model("mha-f32-safetensors").to_str().unwrap(),
            "hello",
        ],
        &["text prompts need a tokenizer", "--input-ids"],
    );

    let work = tempfile::tempdir().unwrap();
    let ckpt = work.path().join("tp2");
    assert!(
        cli(&[
            "convert",
            "--model",
            m,
            "--output",
            ckpt.to_str().unwrap(),
            "--tp-size",
            "2"
        ])
        .status
        .success()
    );
    std::fs::remove_file(ckpt.join("rank1.safetensors")).unwrap();
    run_fails(
        &["run", "--model", ckpt.to_str().unwrap(), "--input-ids", "5"],
        &["tp=2", "rank1.safetensors is missing"],
    );
}
