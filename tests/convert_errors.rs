//! Bad inputs: each must fail with a message naming the file/field/tensor at
//! fault, exit non-zero, leave no output (not even a staging directory), and
//! leave the source untouched.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// Runs `convert` on `src` into `<tmp>/work/out` with extra args, and checks
/// the failure contract (exit status 1: the work failed). Returns stderr.
fn fails(src: &Path, extra: &[&str], needles: &[&str]) -> String {
    fails_with(1, src, extra, needles)
}

/// [`fails`] with another exit status (2: an option value the model cannot take).
fn fails_with(status: i32, src: &Path, extra: &[&str], needles: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("nested/out");
    let before = snapshot(src);
    let mut args = vec![
        "convert",
        "--model",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = cli(&args);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(status), "exit status; stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    assert!(
        listing(work.path()).is_empty(),
        "left behind: {:?}",
        listing(work.path())
    );
    assert!(snapshot(src) == before, "the source was modified");
    err
}

fn first_tensor_of(path: &Path) -> (String, [u64; 2]) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = &v["data_offsets"];
            (k.clone(), [o[0].as_u64().unwrap(), o[1].as_u64().unwrap()])
        })
        .min_by_key(|(_, o)| o[0])
        .unwrap()
}

#[test]
fn missing_config() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    std::fs::remove_file(src.join("config.json")).unwrap();
    fails(&src, &[], &["no config.json"]);
}

#[test]
fn invalid_config_json() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    std::fs::write(src.join("config.json"), "{\"model_type\": \"nemotron\",").unwrap();
    fails(&src, &[], &["config.json", "not valid JSON"]);
}

#[test]
fn not_a_nemotron_model() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    edit_json(&src.join("config.json"), |c| c["model_type"] = json!("llama"));
    fails(&src, &[], &["config.json", "`model_type`", "\"llama\""]);
}

#[test]
fn inconsistent_heads() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    edit_json(&src.join("config.json"), |c| c["num_key_value_heads"] = json!(3));
    fails(
        &src,
        &[],
        &["`num_key_value_heads`", "does not divide num_attention_heads 4"],
    );
}

#[test]
fn tp_and_pp_the_spec_does_not_allow() {
    let src = model("gqa-headdim-bf16");
    fails_with(
        2,
        &src,
        &["--tp-size", "3"],
        &["--tp-size 3 is not possible", "Allowed tp sizes: 1, 2, 4"],
    );
    fails_with(2, &src, &["--pp-size", "4"], &["--pp-size 4", "3 layers"]);
    fails_with(2, &src, &["--tp-size", "0"], &["at least 1"]);
    // MQA: any tp dividing the heads works (kv duplicated), but 8 does not divide 4 heads.
    fails_with(
        2,
        &model("mqa-tied-f16"),
        &["--tp-size", "8"],
        &["num_attention_heads 4"],
    );
}

#[test]
fn truncated_safetensors() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    let path = src.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    fails(&src, &[], &["model.safetensors", "out of range", "truncated"]);
}

#[test]
fn header_length_past_end_of_file() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    let path = src.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(&(10u64 << 30).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    fails(
        &src,
        &[],
        &[
            "model.safetensors",
            "header length 10737418240 runs past the end of the file",
        ],
    );
}

#[test]
fn tensor_offsets_out_of_range() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    let path = src.join("model.safetensors");
    let (name, [a, b]) = first_tensor_of(&path);
    edit_safetensors_header(&path, |h| {
        h[&name]["data_offsets"] = json!([a + (1 << 40), b + (1 << 40)])
    });
    fails(&src, &[], &[&format!("tensor `{name}`"), "out of range"]);
}

#[test]
fn overlapping_tensor_offsets() {
    let (_t, src) = copy_model("mha-f32-safetensors");
    let path = src.join("model.safetensors");
    let (first, [a, b]) = first_tensor_of(&path);
    // Point a tensor of the same size at the first one's bytes.
    let other = "model.layers.0.input_layernorm.bias";
    assert_ne!(first, other);
    edit_safetensors_header(&path, |h| {
        let len =
            h[other]["data_offsets"][1].as_u64().unwrap() - h[other]["data_offsets"][0].as_u64().unwrap();
        assert!(len <= b - a);
        h[other]["data_offsets"] = json!([a, a + len]);
    });
    fails(&src, &[], &["overlaps tensor"]);
}

#[test]
fn dtype_that_disagrees_with_the_config() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    edit_json(&src.join("config.json"), |c| c["torch_dtype"] = json!("float16"));
    fails(
        &src,
        &[],
        &[
            "model.safetensors",
            "is bfloat16, but",
            "config.json declares float16",
        ],
    );
}

#[test]
fn shape_that_disagrees_with_the_config() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    // head_dim 12 (= hidden/heads) is what TensorRT-LLM's own converter would assume.
    edit_json(&src.join("config.json"), |c| c["head_dim"] = json!(12));
    fails(
        &src,
        &[],
        &[
            "tensor `model.layers.0.self_attn.q_proj.weight`",
            "has shape [64, 48]",
            "implies [48, 48]",
        ],
    );
}

#[test]
fn missing_tensor() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    edit_safetensors_header(&src.join("model.safetensors"), |h| {
        h.remove("model.layers.1.mlp.down_proj.weight");
    });
    fails(
        &src,
        &[],
        &["tensor `model.layers.1.mlp.down_proj.weight`", "is missing"],
    );
}

#[test]
fn unexpected_tensor() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    edit_json(&src.join("config.json"), |c| c["num_hidden_layers"] = json!(2));
    fails(&src, &[], &["tensor `model.layers.2.", "unexpected tensor"]);
}

#[test]
fn index_naming_a_missing_shard() {
    let (_t, src) = copy_model("mqa-tied-f16");
    edit_json(&src.join("model.safetensors.index.json"), |i| {
        i["weight_map"]["model.norm.weight"] = json!("model-00009-of-00009.safetensors");
    });
    fails(
        &src,
        &[],
        &[
            "model.safetensors.index.json",
            "model-00009-of-00009.safetensors",
            "does not exist",
        ],
    );
}

#[test]
fn index_naming_a_path_outside_the_model() {
    let (tmp, src) = copy_model("mqa-tied-f16");
    // A real file outside the model directory, so only the path rule can refuse it.
    std::fs::copy(
        src.join("model-00001-of-00003.safetensors"),
        tmp.path().join("outside.safetensors"),
    )
    .unwrap();
    for shard in ["../outside.safetensors", "/etc/passwd"] {
        edit_json(&src.join("model.safetensors.index.json"), |i| {
            i["weight_map"]["model.norm.weight"] = json!(shard);
        });
        fails(&src, &[], &[shard, "outside the model directory"]);
    }
}

fn bin_model_with(pickle_fixture: &str) -> (tempfile::TempDir, PathBuf) {
    let (tmp, src) = copy_model("bin-f32");
    std::fs::copy(
        fixtures().join("pickle").join(pickle_fixture),
        src.join("pytorch_model.bin"),
    )
    .unwrap();
    (tmp, src)
}

#[test]
fn pickle_with_a_forbidden_global() {
    let (_t, src) = bin_model_with("evil-global.bin");
    let err = fails(&src, &[], &["pytorch_model.bin", "is not allowed"]);
    assert!(err.contains("system"), "names the global: {err}");
}

#[test]
fn pickle_with_a_forbidden_opcode() {
    let (_t, src) = bin_model_with("evil-opcode.bin");
    fails(&src, &[], &["pytorch_model.bin", "opcode", "not allowed"]);
}

#[test]
fn an_earlier_conversion_is_replaced_only_with_force() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let src = model("gqa-headdim-bf16");
    let convert = |extra: &[&str]| {
        let mut args = vec![
            "convert",
            "--model",
            src.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    assert!(convert(&[]).status.success());
    let before = snapshot(&out);
    let run = convert(&["--tp-size", "2"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("holds an earlier conversion") && stderr(&run).contains("pass --force"),
        "{}",
        stderr(&run)
    );
    assert!(snapshot(&out) == before);
    assert_eq!(listing(work.path()), vec!["out"]);

    let run = convert(&["--tp-size", "2", "--force"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(out.join("rank1.safetensors").exists());
    assert_eq!(listing(work.path()), vec!["out"]);
}

/// `--force` replaces only what this tool wrote: a directory holding anything
/// else is refused, saying what is there, and nothing in it is touched.
#[test]
fn force_never_replaces_a_directory_the_tool_did_not_write() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    std::fs::create_dir_all(out.join("photos")).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("photos/cat.jpg"), "meow").unwrap();
    let before = snapshot(&out);
    let src = model("gqa-headdim-bf16");
    for force in [false, true] {
        let mut args = vec![
            "convert",
            "--model",
            src.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        let run = cli(&args);
        assert_eq!(run.status.code(), Some(1), "force {force}");
        let err = stderr(&run);
        assert!(
            err.contains("notes.txt, photos/") && err.contains("not written by trtllm-minitron"),
            "{err}"
        );
        assert!(err.contains("even with --force"), "{err}");
        assert!(snapshot(&out) == before);
        assert_eq!(std::fs::read(out.join("photos/cat.jpg")).unwrap(), b"meow");
        assert_eq!(listing(work.path()), vec!["out"]);
    }
    // An empty directory is fine.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = cli(&[
        "convert",
        "--model",
        src.to_str().unwrap(),
        "--output",
        empty.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn output_inside_the_source_is_refused() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    let before = snapshot(&src);
    for out in [src.join("converted"), src.clone()] {
        let run = cli(&[
            "convert",
            "--model",
            src.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--force",
        ]);
        assert_eq!(run.status.code(), Some(1));
        assert!(
            stderr(&run).contains("overlaps the source model directory"),
            "{}",
            stderr(&run)
        );
    }
    assert!(snapshot(&src) == before);
}

#[test]
fn unknown_hub_id_says_how_to_download() {
    let cache = tempfile::tempdir().unwrap();
    let out = cache.path().join("out");
    let run = Cli::new(&[
        "convert",
        "--model",
        "nvidia/Minitron-8B-Base",
        "--output",
        out.to_str().unwrap(),
    ])
    .env("HF_HUB_CACHE", cache.path())
    .output();
    assert_eq!(run.status.code(), Some(1));
    let err = stderr(&run);
    assert!(
        err.contains("not in the local Hugging Face cache")
            && err.contains("hf download nvidia/Minitron-8B-Base"),
        "{err}"
    );
    assert!(!out.exists());
}
