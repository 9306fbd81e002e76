//! STAND-IN for TensorRT-LLM 1.2's `trtllm-build`. It is NOT TensorRT-LLM,
//! needs no GPU and builds no engine: the `rank{r}.engine` files it writes are
//! text saying so, and nothing can load or run them. It checks what
//! `trtllm-minitron build` passes to the real builder, on machines where
//! TensorRT-LLM cannot be installed. Each behaviour below names where it
//! comes from in TensorRT-LLM's Python sources (`tensorrt_llm/...`).
//!
//! Test controls (environment):
//!   STANDIN_TRTLLM_BUILD_MODE  ok (default) | fail (exit 1 midway with a traceback)
//!                              | crash (killed by SIGKILL after rank 0)
//!                              | missing-rank (exit 0 without the last rank file)
//!                              | bad-config (build_config.max_batch_size off by one)
//!                              | no-output (exit 0, write nothing)
//!   STANDIN_TRTLLM_BUILD_CALLS a file; each run appends its argv as one JSON line.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::argparse::{Given, Opt, Takes, Type, parse_args};
use crate::json::{self, Json};
use crate::packages;

// Choices of the plugin options, from the `PluginConfig` field types in
// `tensorrt_llm/plugin/plugin.py` (`add_plugin_argument` turns `None` into "disable").
const PLUGIN_DTYPE: &[&str] = &["auto", "float16", "float32", "bfloat16", "int32", "disable"];
const GEMM_PLUGIN: &[&str] = &[
    "auto", "float16", "float32", "bfloat16", "int32", "fp8", "nvfp4", "disable",
];
const FP8_ONLY: &[&str] = &["fp8", "disable"];
const ALLREDUCE: &[&str] = &["float16", "bfloat16", "disable"];
const ENABLE: &[&str] = &["enable", "disable"];

const fn opt(names: &'static [&'static str], dest: &'static str, takes: Takes) -> Opt {
    Opt { names, dest, takes }
}

const STR: Takes = Takes::One(Type::Str);
const INT: Takes = Takes::One(Type::Int);
const SWITCH: Takes = Takes::Switch;
const fn choice(c: &'static [&'static str]) -> Takes {
    Takes::One(Type::Choices(c))
}

/// `parse_arguments()` of `tensorrt_llm/commands/build.py` (1.2: no auto-parallel
/// group), then `add_plugin_argument` of `tensorrt_llm/plugin/plugin.py` for
/// the names in its `cli_plugin_args`.
const OPTIONS: &[Opt] = &[
    opt(&["--checkpoint_dir"], "checkpoint_dir", STR),
    opt(&["--model_config"], "model_config", STR),
    opt(&["--build_config"], "build_config", STR),
    opt(&["--model_cls_file"], "model_cls_file", STR),
    opt(&["--model_cls_name"], "model_cls_name", STR),
    opt(&["--output_dir"], "output_dir", STR),
    opt(&["--max_batch_size"], "max_batch_size", INT),
    opt(&["--max_input_len"], "max_input_len", INT),
    opt(&["--max_seq_len", "--max_decoder_seq_len"], "max_seq_len", INT),
    opt(&["--max_beam_width"], "max_beam_width", INT),
    opt(&["--max_num_tokens"], "max_num_tokens", INT),
    opt(&["--opt_num_tokens"], "opt_num_tokens", INT),
    opt(&["--max_encoder_input_len"], "max_encoder_input_len", INT),
    opt(
        &["--max_prompt_embedding_table_size", "--max_multimodal_len"],
        "max_prompt_embedding_table_size",
        INT,
    ),
    opt(
        &["--kv_cache_type"],
        "kv_cache_type",
        Takes::One(Type::Custom(kv_cache_type)),
    ),
    opt(&["--paged_kv_cache"], "paged_kv_cache", STR),
    opt(&["--input_timing_cache"], "input_timing_cache", STR),
    opt(&["--output_timing_cache"], "output_timing_cache", STR),
    opt(
        &["--profiling_verbosity"],
        "profiling_verbosity",
        choice(&["layer_names_only", "detailed", "none"]),
    ),
    opt(&["--strip_plan"], "strip_plan", SWITCH),
    opt(&["--weight_sparsity"], "weight_sparsity", SWITCH),
    opt(&["--weight_streaming"], "weight_streaming", SWITCH),
    opt(&["--fast_build"], "fast_build", SWITCH),
    opt(&["--workers"], "workers", INT),
    // `severity_map` of tensorrt_llm/logger.py.
    opt(
        &["--log_level"],
        "log_level",
        choice(&[
            "internal_error",
            "error",
            "warning",
            "info",
            "verbose",
            "debug",
            "trace",
        ]),
    ),
    opt(&["--enable_debug_output"], "enable_debug_output", SWITCH),
    opt(&["--visualize_network"], "visualize_network", STR),
    opt(&["--dry_run"], "dry_run", SWITCH),
    opt(&["--monitor_memory"], "monitor_memory", SWITCH),
    opt(
        &["--logits_dtype"],
        "logits_dtype",
        choice(&["float16", "float32"]),
    ),
    opt(&["--gather_context_logits"], "gather_context_logits", SWITCH),
    opt(
        &["--gather_generation_logits"],
        "gather_generation_logits",
        SWITCH,
    ),
    opt(&["--gather_all_token_logits"], "gather_all_token_logits", SWITCH),
    opt(&["--lora_dir"], "lora_dir", Takes::Many(Type::Str)),
    opt(
        &["--lora_ckpt_source"],
        "lora_ckpt_source",
        choice(&["hf", "nemo"]),
    ),
    // (The real one also limits these to LoraManager.LORA_MODULE_IDS.)
    opt(
        &["--lora_target_modules"],
        "lora_target_modules",
        Takes::Many(Type::Str),
    ),
    opt(&["--max_lora_rank"], "max_lora_rank", INT),
    opt(
        &["--speculative_decoding_mode"],
        "speculative_decoding_mode",
        choice(&[
            "draft_tokens_external",
            "lookahead_decoding",
            "medusa",
            "explicit_draft_tokens",
            "eagle",
        ]),
    ),
    opt(&["--max_draft_len"], "max_draft_len", INT),
    // Plugins.
    opt(
        &["--bert_attention_plugin"],
        "bert_attention_plugin",
        choice(PLUGIN_DTYPE),
    ),
    opt(
        &["--gpt_attention_plugin"],
        "gpt_attention_plugin",
        choice(PLUGIN_DTYPE),
    ),
    opt(&["--gemm_plugin"], "gemm_plugin", choice(GEMM_PLUGIN)),
    opt(&["--gemm_swiglu_plugin"], "gemm_swiglu_plugin", choice(FP8_ONLY)),
    opt(
        &["--fp8_rowwise_gemm_plugin"],
        "fp8_rowwise_gemm_plugin",
        choice(PLUGIN_DTYPE),
    ),
    opt(&["--lora_plugin"], "lora_plugin", choice(PLUGIN_DTYPE)),
    opt(&["--dora_plugin"], "dora_plugin", choice(ENABLE)),
    opt(&["--moe_plugin"], "moe_plugin", choice(PLUGIN_DTYPE)),
    opt(
        &["--mamba_conv1d_plugin"],
        "mamba_conv1d_plugin",
        choice(PLUGIN_DTYPE),
    ),
    opt(&["--nccl_plugin"], "nccl_plugin", choice(PLUGIN_DTYPE)),
    opt(
        &["--low_latency_gemm_plugin"],
        "low_latency_gemm_plugin",
        choice(FP8_ONLY),
    ),
    opt(
        &["--low_latency_gemm_swiglu_plugin"],
        "low_latency_gemm_swiglu_plugin",
        choice(FP8_ONLY),
    ),
    opt(
        &["--gemm_allreduce_plugin"],
        "gemm_allreduce_plugin",
        choice(ALLREDUCE),
    ),
    // Features (booleans, given as enable/disable).
    opt(&["--context_fmha"], "context_fmha", choice(ENABLE)),
    opt(
        &["--bert_context_fmha_fp32_acc"],
        "bert_context_fmha_fp32_acc",
        choice(ENABLE),
    ),
    opt(
        &["--remove_input_padding"],
        "remove_input_padding",
        choice(ENABLE),
    ),
    opt(&["--tokens_per_block"], "tokens_per_block", INT),
    opt(
        &["--use_paged_context_fmha"],
        "use_paged_context_fmha",
        choice(ENABLE),
    ),
    opt(
        &["--use_fp8_context_fmha"],
        "use_fp8_context_fmha",
        choice(ENABLE),
    ),
    opt(&["--fuse_fp4_quant"], "fuse_fp4_quant", choice(ENABLE)),
    opt(&["--multiple_profiles"], "multiple_profiles", choice(ENABLE)),
    opt(&["--paged_state"], "paged_state", choice(ENABLE)),
    opt(&["--streamingllm"], "streamingllm", choice(ENABLE)),
    opt(&["--norm_quant_fusion"], "norm_quant_fusion", choice(ENABLE)),
    opt(&["--reduce_fusion"], "reduce_fusion", choice(ENABLE)),
    opt(&["--user_buffer"], "user_buffer", choice(ENABLE)),
    opt(&["--use_fused_mlp"], "use_fused_mlp", choice(ENABLE)),
    opt(&["--pp_reduce_scatter"], "pp_reduce_scatter", choice(ENABLE)),
];

/// `enum_type(KVCacheType)` of build.py: `KVCacheType[value.upper()]`, so any case.
fn kv_cache_type(value: &str) -> Result<String, String> {
    let upper = value.to_uppercase();
    if ["CONTINUOUS", "PAGED", "DISABLED"].contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "Invalid value '{value}'. Expected one of ['continuous', 'paged', 'disabled']"
        ))
    }
}

/// Checkpoint dtypes and their safetensors names (`tensorrt_llm/_utils.py`).
fn safetensors_dtype(dtype: &str) -> Option<&'static str> {
    match dtype {
        "bfloat16" => Some("BF16"),
        "float16" => Some("F16"),
        "float32" => Some("F32"),
        _ => None,
    }
}

/// `tensorrt_llm/logger.py`: "[TRT-LLM] [I] ..." on stdout.
fn log(level: &str, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[TRT-LLM] [{level}] {text}");
    let _ = out.flush();
}

/// The real builder fails with a Python exception: a traceback and status 1.
fn fail(text: &str) -> ! {
    eprintln!("Traceback (most recent call last):\n  File \"trtllm-build (stand-in)\", line 1, in <module>");
    eprintln!("RuntimeError: {text}");
    std::process::exit(1)
}

pub fn main(argv: &[String]) -> i32 {
    let args = parse_args("trtllm-build (stand-in)", OPTIONS, argv);
    if let Some(calls) = std::env::var_os("STANDIN_TRTLLM_BUILD_CALLS").filter(|c| !c.is_empty()) {
        let line = Json::Object(vec![(
            "argv".into(),
            Json::Array(argv.iter().map(|a| Json::str(a)).collect()),
        )]);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&calls)
            .and_then(|mut f| writeln!(f, "{}", line.to_text()));
        if let Err(e) = written {
            fail(&format!("cannot append to STANDIN_TRTLLM_BUILD_CALLS: {e}"));
        }
    }
    let mode = std::env::var("STANDIN_TRTLLM_BUILD_MODE").unwrap_or_else(|_| "ok".into());
    // build.py imports tensorrt_llm before anything else.
    let version = packages::tensorrt_llm_version().unwrap_or_else(|e| {
        eprintln!(
            "Traceback (most recent call last):\n  File \"trtllm-build (stand-in)\", line 1, in <module>\n{e}"
        );
        std::process::exit(1)
    });
    log(
        "I",
        &format!("stand-in trtllm-build, TensorRT-LLM version {version}: NOT a real build"),
    );

    // build.py main(): --gather_all_token_logits turns on both gathers, and
    // context logits cannot be gathered with draft tokens.
    let all = args.switch("gather_all_token_logits");
    let gather_context = all || args.switch("gather_context_logits");
    let gather_generation = all || args.switch("gather_generation_logits");
    if gather_context && args.int_or("max_draft_len", 0) > 0 {
        fail(
            "Gather context logits is not support with draft len > 0. If want to get the accepted tokens' logits from target model, please just enable gather_generation_logits",
        );
    }
    let output_dir = PathBuf::from(args.text_or("output_dir", "engine_outputs"));
    // A pool of zero workers cannot start (concurrent.futures' ProcessPoolExecutor
    // raises for max_workers <= 0); build.py passes min(GPUs, --workers) to it.
    if args.int_or("workers", 1) < 1 {
        fail("max_workers must be greater than 0");
    }
    if args.has("paged_kv_cache") {
        log(
            "W",
            "Option --paged_kv_cache is deprecated, use --kv_cache_type=paged/disabled instead.",
        );
    }
    let (config, world) = check_checkpoint(args.text("checkpoint_dir"));
    // build.py main(), with no --build_config.
    if args.text_or("multiple_profiles", "disable") == "enable" && args.has("opt_num_tokens") {
        fail(
            "multiple_profiles is enabled, while opt_num_tokens is set. They are not supposed to be working in the same time for now.",
        );
    }
    // build_model() in build.py.
    if args.text_or("streamingllm", "disable") == "enable" {
        fail(
            "StreamingLLM is no longer supported because attention sink cannot work with the non-cyclic kv cache kernel & runtime changes.",
        );
    }
    if mode == "no-output" {
        return 0;
    }
    if let Err(e) = std::fs::create_dir_all(&output_dir) {
        fail(&format!("{}: {e}", output_dir.display()));
    }
    let build_config = build_config(&args, &config, gather_context, gather_generation, &mode);
    let mut pretrained = config.clone();
    // PretrainedConfig.to_dict() writes the whole Mapping (tensorrt_llm/mapping.py).
    let mut mapping = config.get("mapping").cloned().unwrap_or(Json::Object(Vec::new()));
    for (key, value) in [
        ("gpus_per_node", 8),
        ("cp_size", 1),
        ("moe_tp_size", 1),
        ("moe_ep_size", 1),
    ] {
        mapping.set(key, Json::int(value));
    }
    pretrained.set("mapping", mapping);
    let dtype = config
        .get("dtype")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let last = if mode == "missing-rank" { world - 1 } else { world };
    for r in 0..last {
        log("I", &format!("Set dtype to {dtype}."));
        log(
            "I",
            &format!("Build TensorRT engine Unnamed Network {r} (stand-in: nothing is compiled)"),
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        // serialize_engine() in tensorrt_llm/builder.py logs these two lines.
        let path = output_dir.join(format!("rank{r}.engine"));
        log("I", &format!("Serializing engine to {}...", path.display()));
        if let Err(e) = std::fs::write(
            &path,
            "STAND-IN: not a TensorRT engine. Written by tests/stand-ins (trtllm-build) for \
             trtllm-minitron's tests; nothing can load or run it.\n",
        ) {
            fail(&format!("{}: {e}", path.display()));
        }
        log("I", "Engine serialized. Total time: 00:00:00");
        if mode == "fail" && r == 0 {
            fail("stand-in failure requested (STANDIN_TRTLLM_BUILD_MODE=fail)");
        }
        if mode == "crash" && r == 0 {
            let _ = std::io::stdout().flush();
            kill_self();
        }
    }
    // Engine.save() in tensorrt_llm/builder.py: config.json holds the version,
    // the pretrained config and the build config (json.dump, indent 4).
    let engine_config = Json::Object(vec![
        ("version".into(), Json::str(&version)),
        ("pretrained_config".into(), pretrained),
        ("build_config".into(), build_config),
    ]);
    let path = output_dir.join("config.json");
    if let Err(e) = std::fs::write(&path, engine_config.to_pretty()) {
        fail(&format!("{}: {e}", path.display()));
    }
    log("I", "Total time of building all engines: 00:00:00");
    0
}

/// SIGKILL to itself, as the kernel's OOM killer ends a real build.
fn kill_self() -> ! {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    // SAFETY: kill(2) with this process's own id; it does not return.
    unsafe {
        kill(std::process::id() as i32, SIGKILL);
    }
    std::process::exit(137)
}

/// The `build_config` an engine's config.json holds: the limits and plugin
/// settings of `BuildConfig.from_dict` in build.py (max_seq_len defaults to
/// the model's max_position_embeddings; the KV cache is paged unless
/// `--kv_cache_type` or `--paged_kv_cache disable` says otherwise).
fn build_config(
    args: &Given,
    config: &Json,
    gather_context: bool,
    gather_generation: bool,
    mode: &str,
) -> Json {
    let kv = match args.text("kv_cache_type") {
        Some(kv) => kv.to_string(),
        None if args.text_or("paged_kv_cache", "enable") == "enable" => "PAGED".into(),
        None => "CONTINUOUS".into(),
    };
    let plugin = |dest: &str, default: Option<&str>| match args.text(dest).or(default) {
        None | Some("disable") => Json::Null,
        Some(v) => Json::str(v),
    };
    let enabled = |dest: &str, default: &str| Json::Bool(args.text_or(dest, default) == "enable");
    let max_seq_len = args
        .int("max_seq_len")
        .or_else(|| config.get("max_position_embeddings").and_then(Json::as_i64));
    let bad = i64::from(mode == "bad-config");
    let dtype = config.get("dtype").cloned().unwrap_or(Json::Null);
    Json::Object(vec![
        (
            "max_input_len".into(),
            Json::int(args.int_or("max_input_len", 1024)),
        ),
        ("max_seq_len".into(), Json::opt_int(max_seq_len)),
        ("opt_batch_size".into(), Json::int(8)),
        (
            "max_batch_size".into(),
            Json::int(args.int_or("max_batch_size", 2048) + bad),
        ),
        (
            "max_beam_width".into(),
            Json::int(args.int_or("max_beam_width", 1)),
        ),
        (
            "max_num_tokens".into(),
            Json::int(args.int_or("max_num_tokens", 8192)),
        ),
        ("opt_num_tokens".into(), Json::opt_int(args.int("opt_num_tokens"))),
        (
            "max_prompt_embedding_table_size".into(),
            Json::int(args.int_or("max_prompt_embedding_table_size", 0)),
        ),
        ("kv_cache_type".into(), Json::String(kv.clone())),
        ("gather_context_logits".into(), Json::Bool(gather_context)),
        ("gather_generation_logits".into(), Json::Bool(gather_generation)),
        ("strongly_typed".into(), Json::Bool(true)),
        (
            "plugin_config".into(),
            Json::Object(vec![
                ("dtype".into(), dtype),
                (
                    "gpt_attention_plugin".into(),
                    plugin("gpt_attention_plugin", Some("auto")),
                ),
                ("gemm_plugin".into(), plugin("gemm_plugin", None)),
                ("context_fmha".into(), enabled("context_fmha", "enable")),
                ("paged_kv_cache".into(), Json::Bool(kv == "PAGED")),
                (
                    "remove_input_padding".into(),
                    enabled("remove_input_padding", "enable"),
                ),
                (
                    "tokens_per_block".into(),
                    Json::int(args.int_or("tokens_per_block", 32)),
                ),
                (
                    "use_paged_context_fmha".into(),
                    enabled("use_paged_context_fmha", "enable"),
                ),
                (
                    "multiple_profiles".into(),
                    enabled("multiple_profiles", "disable"),
                ),
            ]),
        ),
    ])
}

/// The checkpoint as trtllm-build reads it: `PretrainedConfig.from_json_file`
/// on config.json, the model class from `MODEL_MAP` by `architecture`, then
/// `from_checkpoint` loading `rank{r}.safetensors` for every rank of the
/// mapping (tensors in the config's dtype and the shapes the config implies;
/// the embedding on the first pipeline stage, `ln_f` and `lm_head` on the
/// last; `tensorrt_llm/models/modeling_utils.py`). Returns the config and
/// the world size.
fn check_checkpoint(dir: Option<&str>) -> (Json, i64) {
    let Some(dir) = dir else {
        fail("--checkpoint_dir is required (this stand-in does not build from --model_config)");
    };
    let ckpt = Path::new(dir);
    let path = ckpt.join("config.json");
    if !path.is_file() {
        fail(&format!(
            "{} does not exist: --checkpoint_dir must be a TensorRT-LLM checkpoint",
            path.display()
        ));
    }
    let config = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| json::parse(&text))
        .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    for key in [
        "architecture",
        "dtype",
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "mapping",
    ] {
        if config.get(key).is_none() {
            fail(&format!("{} has no '{key}'", path.display()));
        }
    }
    let architecture = config
        .get("architecture")
        .and_then(Json::as_str)
        .unwrap_or_default();
    if architecture != "NemotronForCausalLM" {
        fail(&format!(
            "Unsupported model architecture: {architecture} (the stand-in knows only NemotronForCausalLM)"
        ));
    }
    let dtype = config.get("dtype").and_then(Json::as_str).unwrap_or_default();
    let Some(want_dtype) = safetensors_dtype(dtype) else {
        fail(&format!("unsupported dtype '{dtype}'"));
    };
    let int = |v: Option<&Json>, default: i64| v.and_then(Json::as_i64).unwrap_or(default);
    let mapping = config.get("mapping").cloned().unwrap_or(Json::Null);
    let tp = int(mapping.get("tp_size"), 1);
    let pp = int(mapping.get("pp_size"), 1);
    let world = int(mapping.get("world_size"), tp * pp);
    if world != tp * pp || tp < 1 || pp < 1 {
        fail(&format!(
            "mapping world_size {world} != tp_size {tp} * pp_size {pp}"
        ));
    }
    let heads = int(config.get("num_attention_heads"), 0);
    let hidden = int(config.get("hidden_size"), 0);
    let kv = int(config.get("num_key_value_heads"), heads);
    let head = int(
        config.get("head_size"),
        if heads > 0 { hidden / heads } else { 0 },
    );
    let qkv_rows = (heads / tp + 2 * (kv / tp).max(1)) * head;
    for r in 0..world {
        let rank_file = ckpt.join(format!("rank{r}.safetensors"));
        if !rank_file.is_file() {
            fail(&format!(
                "{} does not exist (mapping world_size is {world})",
                rank_file.display()
            ));
        }
        let header = read_header(&rank_file);
        for (name, t) in header.fields() {
            let got = t.get("dtype").and_then(Json::as_str).unwrap_or_default();
            if got != want_dtype {
                fail(&format!(
                    "{}: {name} is {got}, config dtype is {dtype}",
                    rank_file.display()
                ));
            }
        }
        let pp_rank = r / tp;
        let mut need = vec!["transformer.layers.0.attention.qkv.weight"];
        if pp_rank == 0 {
            need.push("transformer.vocab_embedding.weight");
        }
        if pp_rank == pp - 1 {
            need.extend(["transformer.ln_f.weight", "lm_head.weight"]);
        }
        for name in need {
            if header.get(name).is_none() {
                fail(&format!("{} has no tensor {name}", rank_file.display()));
            }
        }
        let shape: Vec<i64> = header
            .get("transformer.layers.0.attention.qkv.weight")
            .and_then(|t| t.get("shape"))
            .and_then(Json::as_array)
            .map(|s| s.iter().filter_map(Json::as_i64).collect())
            .unwrap_or_default();
        if shape != [qkv_rows, hidden] {
            fail(&format!(
                "{}: qkv shape {shape:?}, expected {:?}",
                rank_file.display(),
                [qkv_rows, hidden]
            ));
        }
    }
    (config, world)
}

/// A safetensors header (the format's own rule: 8-byte little-endian length,
/// JSON, then a data section exactly as long as the offsets say).
fn read_header(path: &Path) -> Json {
    let read = || -> Result<Json, String> {
        let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|_| "not a safetensors file (shorter than 8 bytes)".to_string())?;
        let n = u64::from_le_bytes(len);
        let mut text = vec![0u8; usize::try_from(n).map_err(|e| e.to_string())?];
        f.read_exact(&mut text).map_err(|e| e.to_string())?;
        let size = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        let mut header = json::parse(&String::from_utf8_lossy(&text))?;
        header.remove("__metadata__");
        let end = header
            .fields()
            .iter()
            .filter_map(|(_, t)| t.get("data_offsets")?.as_array()?.get(1)?.as_i64())
            .max()
            .unwrap_or(0);
        if 8 + n + end as u64 != size {
            return Err(format!(
                "data section is {} bytes, header says {end}",
                size - 8 - n
            ));
        }
        Ok(header)
    };
    read().unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())))
}
