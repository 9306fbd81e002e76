//! Checkpoints that ship only a SentencePiece `tokenizer.model`: the tokenizer built from
//! it must give the ids transformers gives (fixtures from scripts/make-spm-fixture.py).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;
use trtllm_minitron::tokenizer::{StreamDecoder, Tokenizer, TokenizerSource};

fn spm_dir() -> PathBuf {
    fixtures().join("tokenizer-spm")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(spm_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

/// A directory holding the fixture BPE model as `tokenizer.model`, with an optional
/// `tokenizer_config.json`.
fn model_dir(config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.model");
    std::fs::copy(spm_dir().join("bpe.model"), &path).unwrap();
    if let Some(c) = config {
        std::fs::write(dir.path().join("tokenizer_config.json"), c).unwrap();
    }
    (dir, path)
}

fn streamed(t: &Tokenizer, ids: &[u32]) -> String {
    let mut d = StreamDecoder::new(t);
    let mut out: String = ids.iter().map(|&i| d.push(i).unwrap()).collect();
    out.push_str(&d.finish().unwrap());
    out
}

#[test]
fn same_ids_and_text_as_transformers() {
    let (dir, path) = model_dir(None);
    assert_eq!(Tokenizer::find_beside(dir.path()), Some(path.clone()));
    let t = Tokenizer::from_file(&path).unwrap();
    assert_eq!(t.source(), TokenizerSource::SentencePiece);
    let expected = expected();
    assert_eq!(t.vocab_size() as u64, expected["vocab_size"].as_u64().unwrap());
    assert_eq!((t.bos_id(), t.eos_id()), (Some(2), Some(3)));
    let cases = expected["cases"].as_object().unwrap();
    assert!(cases.contains_key("multilingual") && cases.contains_key("code"));
    for (name, case) in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = t.encode(text, None).unwrap();
        assert_eq!(got, want, "{name}: ids");
        // transformers' default (no BOS) is ours too.
        assert_eq!(got, ids(&case["ids_default"]), "{name}: default ids");
        let decoded = t.decode(&got).unwrap();
        assert_eq!(decoded, case["decoded"].as_str().unwrap(), "{name}: decoded");
        assert_eq!(streamed(&t, &got), decoded, "{name}: streamed");
        let tokens: Vec<String> = got.iter().map(|&i| t.id_token(i).unwrap()).collect();
        assert_eq!(
            serde_json::to_value(&tokens).unwrap(),
            case["tokens"],
            "{name}: tokens"
        );
    }
    // Round trips where transformers' do (texts without special tokens).
    for name in ["multilingual", "code"] {
        let case = &cases[name];
        assert_eq!(case["decoded"], case["text"], "{name}");
        assert!(
            case["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str().unwrap().starts_with("<0x"))
                || name == "code",
            "{name}: the byte fallback is exercised"
        );
    }
}

#[test]
fn tokenizer_config_settings_as_transformers_reads_them() {
    let cases = expected()["cases"].clone();
    let (_dir, path) = model_dir(Some(r#"{"add_bos_token": true, "bos_token": "<s>"}"#));
    let t = Tokenizer::from_file(&path).unwrap();
    for (name, case) in cases.as_object().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            t.encode(text, None).unwrap(),
            ids(&case["ids_with_bos"]),
            "{name}: with BOS"
        );
        assert_eq!(
            t.encode(text, Some(false)).unwrap(),
            ids(&case["ids"]),
            "{name}: --no-add-bos"
        );
    }
    let (_dir, path) = model_dir(Some(r#"{"legacy": true}"#));
    let t = Tokenizer::from_file(&path).unwrap();
    for (name, case) in cases.as_object().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            t.encode(text, None).unwrap(),
            ids(&case["ids_legacy"]),
            "{name}: legacy"
        );
    }
}

#[test]
fn json_is_preferred_and_other_models_are_refused_with_the_fix() {
    let (dir, _) = model_dir(None);
    std::fs::copy(
        fixtures().join("models/gqa-headdim-bf16/tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let found = Tokenizer::find_beside(dir.path()).unwrap();
    assert_eq!(found, dir.path().join("tokenizer.json"));
    assert_eq!(
        Tokenizer::from_file(&found).unwrap().source(),
        TokenizerSource::Json
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.model");
    std::fs::copy(spm_dir().join("unigram.model"), &path).unwrap();
    let e = Tokenizer::from_file(&path).unwrap_err().to_string();
    assert!(e.contains(&*path.to_string_lossy()), "{e}");
    assert!(e.contains("SentencePiece Unigram model"), "{e}");
    let fix = format!(
        "python3 -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{0}').backend_tokenizer.save('{0}/tokenizer.json')\"",
        dir.path().display()
    );
    assert!(e.contains(&fix), "{e}");

    std::fs::write(&path, b"{\"not\": \"protobuf\"}").unwrap();
    let e = Tokenizer::from_file(&path).unwrap_err().to_string();
    assert!(e.contains("not a SentencePiece model"), "{e}");
}

/// A Hugging Face model directory whose only tokenizer file is `tokenizer.model`:
/// the demo model's weights (vocab 2048 >= the fixture's 1000 pieces).
fn hf_dir_with_spm_only() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let demo = fixtures().join("demo-shakespeare");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(demo.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(spm_dir().join("bpe.model"), dir.path().join("tokenizer.model")).unwrap();
    dir
}

#[test]
fn run_inspect_and_convert_use_tokenizer_model() {
    let model = hf_dir_with_spm_only();
    let cache = tempfile::tempdir().unwrap();
    let m = model.path().to_str().unwrap();
    let case = &expected()["cases"]["multilingual"];
    let text = case["text"].as_str().unwrap();

    let out = cli_in(
        cache.path(),
        &["run", "--model", m, text, "--max-new-tokens", "3", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["input_ids"], case["ids"]);

    let out = cli_in(cache.path(), &["inspect", m, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["tokenizer"]["path"],
        model.path().join("tokenizer.model").to_str().unwrap()
    );
    assert_eq!(v["tokenizer"]["source"], "sentence-piece");
    assert_eq!(v["tokenizer"]["vocab_size"], 1000);
    let out = cli_in(cache.path(), &["inspect", m]);
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(text_out.contains("tokenizer.model"), "{text_out}");

    let out_dir = tempfile::tempdir().unwrap();
    let ckpt = out_dir.path().join("ckpt");
    let out = cli_in(
        cache.path(),
        &["convert", "--model", m, "--output", ckpt.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(ckpt.join("tokenizer.model")).unwrap(),
        std::fs::read(spm_dir().join("bpe.model")).unwrap()
    );
    assert!(!ckpt.join("tokenizer.json").exists());
    let out = cli_in(cache.path(), &["inspect", ckpt.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["tokenizer"]["path"],
        ckpt.join("tokenizer.model").to_str().unwrap()
    );
    assert_eq!(v["tokenizer"]["problem"], Value::Null);

    // A Unigram model: `run` on the model directory names the user's file (not the copy in
    // the conversion cache), says why, and says once how to make a tokenizer.json.
    std::fs::copy(
        spm_dir().join("unigram.model"),
        model.path().join("tokenizer.model"),
    )
    .unwrap();
    let out = cli_in(cache.path(), &["run", "--model", m, "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let file = model.path().join("tokenizer.model");
    assert!(
        err.contains(&format!("cannot build a tokenizer from {}", file.display())),
        "{err}"
    );
    assert!(err.contains(&format!("from_pretrained('{m}')")), "{err}");
    assert_eq!(err.matches("SentencePiece Unigram model").count(), 1, "{err}");
    let out = cli_in(cache.path(), &["inspect", m, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["tokenizer"]["problem"].as_str().unwrap().contains("Unigram"),
        "{v}"
    );
}
