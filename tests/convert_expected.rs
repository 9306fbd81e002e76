//! `convert` against TensorRT-LLM checkpoints computed independently with torch
//! from the spec by scripts/make-fixtures.py: every tensor bit for bit, and the
//! config.json key for key.

mod common;

use common::*;
use serde_json::Value;

#[derive(serde::Deserialize)]
struct Case {
    model: String,
    dtype: String,
    tp: usize,
    pp: usize,
    dir: String,
}

fn compare_rank_files(
    expected_dir: &std::path::Path,
    actual_dir: &std::path::Path,
    world: usize,
    what: &str,
) {
    for r in 0..world {
        let file = format!("rank{r}.safetensors");
        let exp_bytes = std::fs::read(expected_dir.join(&file)).unwrap();
        let act_bytes =
            std::fs::read(actual_dir.join(&file)).unwrap_or_else(|e| panic!("{what}: {file}: {e}"));
        // Read ours with the reference crate: an independent check of our writer.
        let exp = safetensors::SafeTensors::deserialize(&exp_bytes).unwrap();
        let act = safetensors::SafeTensors::deserialize(&act_bytes).unwrap();
        let mut exp_names = exp.names();
        let mut act_names = act.names();
        exp_names.sort();
        act_names.sort();
        assert_eq!(act_names, exp_names, "{what}: tensor names of {file}");
        for name in exp_names {
            let (e, a) = (exp.tensor(name).unwrap(), act.tensor(name).unwrap());
            assert_eq!(a.dtype(), e.dtype(), "{what}: {file}: {name} dtype");
            assert_eq!(a.shape(), e.shape(), "{what}: {file}: {name} shape");
            if a.data() != e.data() {
                let es = e.dtype().bitsize() / 8;
                let first = a
                    .data()
                    .chunks(es)
                    .zip(e.data().chunks(es))
                    .position(|(x, y)| x != y)
                    .unwrap();
                panic!("{what}: {file}: {name} differs first at element {first}");
            }
        }
    }
    assert!(
        !actual_dir.join(format!("rank{world}.safetensors")).exists(),
        "{what}: extra rank file"
    );
}

#[test]
fn every_expected_checkpoint_is_reproduced_bit_for_bit() {
    let expected_root = fixtures().join("expected");
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(expected_root.join("index.json")).unwrap()).unwrap();
    assert!(cases.len() >= 10, "the fixture index lists the settings");
    let out_root = tempfile::tempdir().unwrap();
    for case in cases {
        let what = format!("{} {} tp{} pp{}", case.model, case.dtype, case.tp, case.pp);
        let out = out_root.path().join(case.dir.replace('/', "__"));
        let model = model(&case.model);
        let (tp, pp) = (case.tp.to_string(), case.pp.to_string());
        let run = cli(&[
            "convert",
            "--model",
            model.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--dtype",
            &case.dtype,
            "--tp-size",
            &tp,
            "--pp-size",
            &pp,
        ]);
        assert!(run.status.success(), "{what}: {}", stderr(&run));

        let expected_dir = expected_root.join(&case.dir);
        let read = |p: std::path::PathBuf| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        assert_eq!(
            read(out.join("config.json")),
            read(expected_dir.join("config.json")),
            "{what}: config.json"
        );
        compare_rank_files(&expected_dir, &out, case.tp * case.pp, &what);
    }
}

#[test]
fn default_dtype_is_the_checkpoints_own() {
    let out_root = tempfile::tempdir().unwrap();
    let out = out_root.path().join("o");
    let model = model("mqa-tied-f16");
    let run = cli(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["dtype"], "float16");
    assert_eq!(report["source_format"], "sharded-safetensors");
    compare_rank_files(
        &fixtures().join("expected/mqa-tied-f16/float16-tp1-pp1"),
        &out,
        1,
        "default dtype",
    );
}

/// Drops a directory's file pages from the page cache (where the filesystem does).
fn evict(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        let len = file.metadata().unwrap().len();
        trtllm_minitron::convert::page_cache::release(&file, 0..len);
    }
}

/// Whether this filesystem opens files with O_DIRECT (tmpfs before Linux 6.6 does not).
fn takes_o_direct(path: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    cfg!(target_os = "linux")
        && std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .is_ok()
}

#[test]
fn cold_and_cached_sources_convert_to_the_same_bytes() {
    // Both weight formats, a cast and a tp split with column cuts.
    for (name, dtype, tp, weights) in [
        ("gqa-headdim-bf16", "bfloat16", 2, "model.safetensors"),
        ("bin-f32", "float16", 5, "pytorch_model.bin"),
    ] {
        let expected = fixtures().join(format!("expected/{name}/{dtype}-tp{tp}-pp1"));
        assert!(expected.is_dir(), "fixture {}", expected.display());
        let (_src_tmp, src) = copy_model(name);
        let weights = src.join(weights);
        assert!(weights.is_file(), "{}", weights.display());
        let out_root = tempfile::tempdir().unwrap();
        for state in ["cold", "cached"] {
            let what = format!("{name} {dtype} tp{tp}, {state} source");
            if state == "cold" {
                evict(&src);
            } else {
                std::fs::read(&weights).unwrap();
            }
            let out = out_root.path().join(state);
            let tp = tp.to_string();
            let run = cli(&[
                "convert",
                "--model",
                src.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--dtype",
                dtype,
                "--tp-size",
                &tp,
                "--json",
            ]);
            assert!(run.status.success(), "{what}: {}", stderr(&run));
            let report: Value = serde_json::from_slice(&run.stdout).unwrap();
            let reads = &report["source_reads"];
            let (direct, buffered) = (
                reads["direct_bytes"].as_u64().unwrap(),
                reads["buffered_bytes"].as_u64().unwrap(),
            );
            assert!(direct + buffered > 0, "{what}: {report}");
            if state == "cached" {
                assert_eq!(direct, 0, "{what}: a cached source is read from the cache");
            } else if takes_o_direct(&weights) {
                assert!(
                    direct > buffered,
                    "{what}: a cold source is read with O_DIRECT: {reads}"
                );
            }
            compare_rank_files(&expected, &out, tp.parse().unwrap(), &what);
        }
    }
}
