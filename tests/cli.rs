//! The command line around conversion: help, hub ids from a local cache,
//! inspect, manifest, cancellation.

mod common;

use std::sync::atomic::AtomicBool;

use common::*;
use serde_json::{Value, json};
use trtllm_minitron::convert::{ConvertOptions, convert};
use trtllm_minitron::hf::source::ModelSource;
use trtllm_minitron::progress::Silent;
use trtllm_minitron::trtllm::conversion_manifest::{ConversionManifest, ConversionOptions};
use trtllm_minitron::trtllm::mapping::Parallelism;
use trtllm_minitron::{DType, Error};

#[test]
fn help_of_each_subcommand_shows_an_example() {
    for sub in ["convert", "inspect", "run", "build", "check", "cache"] {
        let run = cli(&[sub, "--help"]);
        assert!(run.status.success());
        let text = String::from_utf8_lossy(&run.stdout);
        assert!(text.contains(&format!("trtllm-minitron {sub} ")), "{sub}: {text}");
    }
}

/// Every option of every command says what it does, and `--model` is spelled
/// one way everywhere.
#[test]
fn every_option_is_described_and_model_reads_the_same_everywhere() {
    use clap::Args;
    use trtllm_minitron::commands::{build, cache, check, convert, inspect, run};
    let cache = cache::CacheArgs::augment_args(clap::Command::new("cache"));
    let mut commands = vec![
        convert::ConvertArgs::augment_args(clap::Command::new("convert")),
        inspect::InspectArgs::augment_args(clap::Command::new("inspect")),
        run::RunArgs::augment_args(clap::Command::new("run")),
        build::BuildArgs::augment_args(clap::Command::new("build")),
        check::CheckArgs::augment_args(clap::Command::new("check")),
    ];
    commands.extend(cache.get_subcommands().cloned());
    commands.push(cache);
    for command in commands {
        for arg in command.get_arguments() {
            let name = format!("{} {}", command.get_name(), arg.get_id());
            assert!(arg.get_help().is_some(), "{name} has no description");
            if arg.get_id() == "model" {
                let names: Vec<String> = arg
                    .get_value_names()
                    .unwrap_or_default()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                assert_eq!(names, ["MODEL"], "{name}");
            }
        }
    }
    // What --backend auto picks is in run's help.
    let help = String::from_utf8_lossy(&cli(&["run", "--help"]).stdout).into_owned();
    assert!(
        help.contains("(engines on TensorRT-LLM, everything else on the reference)"),
        "{help}"
    );
}

/// `build`'s default output directory is not something to commit.
#[test]
fn the_default_engine_directory_is_git_ignored() {
    let first = trtllm_minitron::engine_build::default_output("any")
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap();
    let ignore =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim_matches('/') == first),
        "{first}/ is not in .gitignore:\n{ignore}"
    );
}

/// Lays out a Hugging Face cache the way huggingface_hub does: blobs, a
/// snapshot of symlinks, and refs/main.
fn fake_hub_cache(model_name: &str, id: &str) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join(format!("models--{}", id.replace('/', "--")));
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for (i, entry) in std::fs::read_dir(model(model_name)).unwrap().enumerate() {
        let entry = entry.unwrap();
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(entry.path(), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob{i}"), snap.join(entry.file_name())).unwrap();
    }
    cache
}

#[test]
fn hub_id_is_resolved_offline_from_the_cache() {
    let cache = fake_hub_cache("mqa-tied-f16", "nvidia/Tiny-Test");
    let out = cache.path().join("converted");
    let run = Cli::new(&[
        "convert",
        "--model",
        "nvidia/Tiny-Test",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ])
    .env("HF_HOME", "/nonexistent")
    .env("HF_HUB_CACHE", cache.path())
    .output();
    assert!(run.status.success(), "{}", stderr(&run));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["hub_id"], "nvidia/Tiny-Test");
    let manifest = ConversionManifest::read(&out).unwrap();
    assert_eq!(manifest.source.hub_id.as_deref(), Some("nvidia/Tiny-Test"));
    assert_eq!(manifest.source.revision.as_deref(), Some("0123abcd"));
}

#[test]
fn manifest_records_sources_and_detects_staleness() {
    let (_t, src) = copy_model("gqa-headdim-bf16");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("o");
    let run = cli(&[
        "convert",
        "--model",
        src.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--tp-size",
        "2",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let m = ConversionManifest::read(&out).unwrap();
    let names: Vec<&str> = m.source.files.iter().map(|f| f.name.as_str()).collect();
    for expected in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let opts = ConversionOptions {
        dtype: DType::BF16,
        tp_size: 2,
        pp_size: 1,
    };
    assert_eq!(m.staleness(&src, opts), None);
    assert!(
        m.staleness(&src, ConversionOptions { tp_size: 1, ..opts })
            .unwrap()
            .contains("options differ")
    );
    // Same size, different content: the mtime catches it.
    let cfg = src.join("config.json");
    let f = std::fs::File::options().write(true).open(&cfg).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    assert!(m.staleness(&src, opts).unwrap().contains("config.json changed"));
    // The tokenizer files were copied next to the checkpoint.
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(src.join("tokenizer.json")).unwrap()
    );
}

#[test]
fn a_stop_request_leaves_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("o");
    let src = ModelSource {
        dir: model("gqa-headdim-bf16"),
        hub_id: None,
        revision: None,
    };
    let opts = ConvertOptions {
        dtype: None,
        parallelism: Parallelism { tp: 2, pp: 1 },
        force: false,
        jobs: 2,
    };
    let stop = AtomicBool::new(true);
    let result = convert(&src, &out, &opts, &Silent, &stop);
    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
    assert!(listing(work.path()).is_empty(), "{:?}", listing(work.path()));
}

#[test]
fn inspect_recognises_each_kind() {
    let run = cli(&["inspect", model("bin-f32").to_str().unwrap(), "--json"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["kind"], "hf-checkpoint");
    assert_eq!(v["config"]["head_dim"], 8);
    assert_eq!(v["problem"], Value::Null);
    // Parameter count from the stored tensors: the bin-f32 fixture's shapes.
    let (h, f, l, v_) = (40u64, 80u64, 4u64, 50u64);
    assert_eq!(
        v["parameters"],
        json!(2 * v_ * h + l * (4 * h * h + 2 * h * f + 4 * h) + 2 * h)
    );

    let work = tempfile::tempdir().unwrap();
    let ckpt = work.path().join("ckpt");
    let run = cli(&[
        "convert",
        "--model",
        model("bin-f32").to_str().unwrap(),
        "--output",
        ckpt.to_str().unwrap(),
        "--tp-size",
        "5",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run = cli(&["inspect", ckpt.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["kind"], "trtllm-checkpoint");
    assert_eq!(v["mapping"]["tp_size"], 5);
    assert_eq!(v["ranks"].as_array().unwrap().len(), 5);
    assert_eq!(v["missing_ranks"], json!([]));
    std::fs::remove_file(ckpt.join("rank3.safetensors")).unwrap();
    let run = cli(&["inspect", ckpt.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&run.stdout).contains("MISSING     rank3.safetensors"));

    // An engine directory as trtllm-build lays it out (config + rank files; the
    // bytes here are not an engine, only the layout is).
    let engine = work.path().join("engine");
    std::fs::create_dir(&engine).unwrap();
    let pretrained: Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    let config = json!({"version": "1.2.0", "pretrained_config": pretrained, "build_config": {"max_batch_size": 8, "max_seq_len": 256}});
    std::fs::write(engine.join("config.json"), config.to_string()).unwrap();
    for r in 0..5 {
        std::fs::write(engine.join(format!("rank{r}.engine")), b"layout only").unwrap();
    }
    let run = cli(&["inspect", engine.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["kind"], "engine");
    assert_eq!(v["build_config"]["max_batch_size"], 8);

    for (path, needle) in [
        (work.path().join("nowhere"), "no such directory"),
        (fixtures().join("pickle"), "no config.json"),
    ] {
        let run = cli(&["inspect", path.to_str().unwrap()]);
        assert_eq!(run.status.code(), Some(1));
        assert!(stderr(&run).contains(needle), "{}", stderr(&run));
    }
}

/// `inspect` describes a Hugging Face model `convert` would refuse, and says why.
#[test]
fn inspect_says_what_a_foreign_model_is_and_why_convert_refuses_it() {
    let work = tempfile::tempdir().unwrap();
    let llama = work.path().join("llama");
    std::fs::create_dir(&llama).unwrap();
    std::fs::write(
        llama.join("config.json"),
        json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8}).to_string(),
    )
    .unwrap();
    // One f32 tensor [2, 2], as safetensors lays it out.
    let header = br#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0u8; 16]);
    std::fs::write(llama.join("model.safetensors"), file).unwrap();

    let run = cli(&["inspect", llama.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = stdout(&run);
    assert!(
        text.contains("Hugging Face checkpoint (LlamaForCausalLM, model_type llama)"),
        "{text}"
    );
    assert!(text.contains("parameters  0.00K (4)"), "{text}");
    assert!(
        text.contains("convertible NO:")
            && text.contains("\"llama\"")
            && text.contains("NemotronForCausalLM"),
        "{text}"
    );
    let v: Value =
        serde_json::from_slice(&cli(&["inspect", llama.to_str().unwrap(), "--json"]).stdout).unwrap();
    assert_eq!(v["kind"], "hf-checkpoint");
    assert_eq!(v["model_type"], "llama");
    assert_eq!(v["config"], Value::Null);
    assert!(v["problem"].as_str().unwrap().contains("model_type"));

    // A Nemotron config without weights: described, not convertible.
    let bare = work.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::copy(
        model("gqa-headdim-bf16").join("config.json"),
        bare.join("config.json"),
    )
    .unwrap();
    let run = cli(&["inspect", bare.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = stdout(&run);
    assert!(text.contains("weights     none that convert reads"), "{text}");
    assert!(
        text.contains("convertible NO:") && text.contains("no weight files"),
        "{text}"
    );
}
