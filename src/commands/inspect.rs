//! `inspect`: tells what a directory holds (a Hugging Face Nemotron checkpoint, a
//! TensorRT-LLM checkpoint, or a TensorRT-LLM engine) and summarises it.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::hf::config::NemotronConfig;
use crate::hf::layout::check_weights;
use crate::hf::source;
use crate::hf::weights::WeightStore;
use crate::safetensors_file::read_header;
use crate::tokenizer::TokenizerInfo;
use crate::trtllm::config::{ConfigKind, DirConfig, EXPECTED_DIRS};
use crate::trtllm::conversion_manifest::{ConversionManifest, MANIFEST_FILE};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  trtllm-minitron inspect nvidia/Minitron-8B-Base
  trtllm-minitron inspect ckpt/minitron-8b-bf16 --json")]
pub struct InspectArgs {
    /// Directory (or cached hub id) to describe.
    pub path: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Inspects `spec`: a directory, else a hub id in the local Hugging Face cache.
pub fn inspect_spec(spec: &str) -> Result<Inspection> {
    let path = if Path::new(spec).exists() {
        PathBuf::from(spec)
    } else {
        source::resolve(spec)?.dir
    };
    inspect(&path)
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Inspection {
    HfCheckpoint(HfSummary),
    TrtllmCheckpoint(TrtllmSummary),
    Engine(EngineSummary),
}

/// A Hugging Face model directory, Nemotron or not: what it is, and whether
/// `convert` would take it.
#[derive(Debug, Serialize)]
pub struct HfSummary {
    pub path: PathBuf,
    pub architecture: String,
    pub model_type: Option<String>,
    /// The Nemotron config; `None` when config.json does not describe one.
    pub config: Option<NemotronConfig>,
    /// The weight files' format; `None` when there are none `convert` reads.
    pub format: Option<String>,
    pub dtype: Option<String>,
    pub parameters: u64,
    pub bytes: u64,
    pub files: Vec<String>,
    /// Why `convert` would refuse it, if it would.
    pub problem: Option<String>,
    /// The tokenizer `run` would use (tokenizer.json, else tokenizer.model).
    pub tokenizer: Option<TokenizerInfo>,
}

#[derive(Debug, Serialize)]
pub struct RankFile {
    pub file: String,
    pub tensors: usize,
    pub elements: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct TrtllmSummary {
    pub path: PathBuf,
    pub architecture: String,
    pub dtype: String,
    pub dims: Dims,
    pub mapping: Value,
    pub parameters: u64,
    pub bytes: u64,
    pub ranks: Vec<RankFile>,
    pub missing_ranks: Vec<usize>,
    pub manifest: Option<ConversionManifest>,
    /// The tokenizer `run` would use (tokenizer.json, else tokenizer.model).
    pub tokenizer: Option<TokenizerInfo>,
}

#[derive(Debug, Serialize)]
pub struct EngineSummary {
    pub path: PathBuf,
    pub version: Option<String>,
    pub architecture: String,
    pub dtype: String,
    pub dims: Dims,
    pub mapping: Value,
    pub build_config: Value,
    pub ranks: Vec<RankFile>,
    pub missing_ranks: Vec<usize>,
    pub bytes: u64,
    /// Written by `trtllm-minitron build`: profile, checkpoint, versions, GPU, command.
    pub build_manifest: Option<Box<crate::trtllm::build_manifest::BuildManifest>>,
    /// The tokenizer `run` would use (tokenizer.json, else tokenizer.model).
    pub tokenizer: Option<TokenizerInfo>,
}

/// The dims shared by checkpoint and engine configs.
#[derive(Debug, Serialize)]
pub struct Dims {
    pub vocab_size: u64,
    pub hidden_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_size: u64,
    pub intermediate_size: u64,
}

impl Dims {
    fn from_trtllm(c: &Value) -> Self {
        let get = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
        let heads = get("num_attention_heads");
        Dims {
            vocab_size: get("vocab_size"),
            hidden_size: get("hidden_size"),
            num_hidden_layers: get("num_hidden_layers"),
            num_attention_heads: heads,
            num_key_value_heads: c
                .get("num_key_value_heads")
                .and_then(Value::as_u64)
                .unwrap_or(heads),
            head_size: get("head_size"),
            intermediate_size: get("intermediate_size"),
        }
    }

    /// Parameters of the untied, unpadded model these dims describe.
    fn parameters(&self) -> u64 {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_size;
        let kv = self.num_key_value_heads * self.head_size;
        let layer = (q + 2 * kv) * h + h * q + 2 * h * self.intermediate_size + 4 * h;
        2 * self.vocab_size * h + layer * self.num_hidden_layers + 2 * h
    }
}

pub fn inspect(path: &Path) -> Result<Inspection> {
    let unrecognised = |problem: &str| Error::Unrecognised {
        path: path.to_path_buf(),
        problem: problem.into(),
    };
    if !path.is_dir() {
        return Err(unrecognised(&format!("not a directory; {EXPECTED_DIRS}")));
    }
    let DirConfig {
        path: config_path,
        json: config,
        kind,
    } = DirConfig::read(path)?;
    match kind {
        ConfigKind::Engine => return inspect_engine(path, &config).map(Inspection::Engine),
        ConfigKind::Checkpoint => return inspect_trtllm(path, &config).map(Inspection::TrtllmCheckpoint),
        ConfigKind::HuggingFace => {
            return inspect_hf(path, &config, &config_path).map(Inspection::HfCheckpoint);
        }
        ConfigKind::Unknown => {}
    }
    Err(unrecognised(
        "config.json has neither `model_type` (Hugging Face), `architecture` + `mapping` (TensorRT-LLM checkpoint) nor `pretrained_config` + `build_config` (engine)",
    ))
}

/// Describes any Hugging Face model directory; what `convert` would refuse
/// (another architecture, missing or mismatched weights) is its `problem`.
fn inspect_hf(path: &Path, raw: &Value, config_path: &Path) -> Result<HfSummary> {
    let config = NemotronConfig::from_json(raw, config_path);
    let store = WeightStore::open(path);
    let problem = match (&config, &store) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), Err(e)) => Some(e.to_string()),
        (Ok(c), Ok(s)) => check_weights(c, s, config_path).err().map(|e| e.to_string()),
    };
    let store = store.ok();
    let tensors = store.iter().flat_map(|s| s.tensors.values());
    let parameters = tensors
        .clone()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let dtypes: std::collections::BTreeSet<String> = tensors.map(|t| t.dtype.to_string()).collect();
    Ok(HfSummary {
        path: path.to_path_buf(),
        architecture: raw
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or(if config.is_ok() {
                "NemotronForCausalLM"
            } else {
                "?"
            })
            .to_string(),
        model_type: raw.get("model_type").and_then(Value::as_str).map(str::to_string),
        format: store.as_ref().map(|s| s.format.describe().into()),
        dtype: (!dtypes.is_empty()).then(|| dtypes.into_iter().collect::<Vec<_>>().join("+")),
        parameters,
        bytes: store.as_ref().map_or(0, WeightStore::total_bytes),
        files: store
            .iter()
            .flat_map(|s| &s.files)
            .map(|f| file_name(&f.path))
            .collect(),
        config: config.ok(),
        problem,
        tokenizer: TokenizerInfo::beside(path),
    })
}

fn inspect_trtllm(path: &Path, config: &Value) -> Result<TrtllmSummary> {
    let world = world_size(config);
    let (ranks, missing_ranks) = rank_files(path, world, "safetensors", true)?;
    let dims = Dims::from_trtllm(config);
    Ok(TrtllmSummary {
        path: path.to_path_buf(),
        architecture: str_field(config, "architecture"),
        dtype: str_field(config, "dtype"),
        parameters: dims.parameters(),
        dims,
        mapping: config.get("mapping").cloned().unwrap_or(Value::Null),
        bytes: ranks.iter().map(|r| r.bytes).sum(),
        ranks,
        missing_ranks,
        manifest: path
            .join(MANIFEST_FILE)
            .is_file()
            .then(|| ConversionManifest::read(path).ok())
            .flatten(),
        tokenizer: TokenizerInfo::beside(path),
    })
}

fn inspect_engine(path: &Path, config: &Value) -> Result<EngineSummary> {
    let pretrained = config.get("pretrained_config").cloned().unwrap_or(Value::Null);
    let world = world_size(&pretrained);
    let (ranks, missing_ranks) = rank_files(path, world, "engine", false)?;
    let build_manifest = crate::trtllm::build_manifest::BuildManifest::read(path)
        .ok()
        .map(Box::new);
    Ok(EngineSummary {
        path: path.to_path_buf(),
        version: config.get("version").and_then(Value::as_str).map(str::to_string),
        architecture: str_field(&pretrained, "architecture"),
        dtype: str_field(&pretrained, "dtype"),
        dims: Dims::from_trtllm(&pretrained),
        mapping: pretrained.get("mapping").cloned().unwrap_or(Value::Null),
        build_config: config.get("build_config").cloned().unwrap_or(Value::Null),
        bytes: ranks.iter().map(|r| r.bytes).sum(),
        ranks,
        missing_ranks,
        // As `run` finds it: beside the engine, else beside the checkpoint it was built from.
        tokenizer: TokenizerInfo::beside(path)
            .or_else(|| TokenizerInfo::beside(&build_manifest.as_ref()?.checkpoint.dir)),
        build_manifest,
    })
}

fn world_size(config: &Value) -> usize {
    let m = config.get("mapping");
    let get = |k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    };
    get("world_size").unwrap_or_else(|| get("tp_size").unwrap_or(1) * get("pp_size").unwrap_or(1))
}

/// `rank{r}.{ext}` for r < world; safetensors headers are parsed (and so validated).
fn rank_files(path: &Path, world: usize, ext: &str, parse: bool) -> Result<(Vec<RankFile>, Vec<usize>)> {
    let mut ranks = Vec::new();
    let mut missing = Vec::new();
    for r in 0..world {
        let name = format!("rank{r}.{ext}");
        let file_path = path.join(&name);
        if !file_path.is_file() {
            missing.push(r);
            continue;
        }
        let bytes = std::fs::metadata(&file_path).at(&file_path)?.len();
        let (tensors, elements) = if parse {
            let file = File::open(&file_path).at(&file_path)?;
            // SAFETY: read-only map of a file we do not modify.
            let map = unsafe { memmap2::Mmap::map(&file) }.at(&file_path)?;
            let header = read_header(&map, &file_path)?;
            (header.len(), header.iter().map(|e| e.numel() as u64).sum())
        } else {
            (0, 0)
        };
        ranks.push(RankFile {
            file: name,
            tensors,
            elements,
            bytes,
        });
    }
    Ok((ranks, missing))
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("?").to_string()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Bytes in the largest binary unit that keeps the number >= 1.
fn human_bytes(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.2} {} ({bytes} bytes)", units[unit])
    }
}

/// A parameter count as people quote it (8.27B, 65.7K).
fn human_count(n: u64) -> String {
    let (div, suffix) = match n {
        0..1_000_000 => (1e3, "K"),
        1_000_000..1_000_000_000 => (1e6, "M"),
        _ => (1e9, "B"),
    };
    format!("{:.2}{suffix} ({n})", n as f64 / div)
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inspection::HfCheckpoint(s) => {
                let model_type = s.model_type.as_deref().unwrap_or("none given");
                writeln!(
                    f,
                    "{}: Hugging Face checkpoint ({}, model_type {model_type})",
                    s.path.display(),
                    s.architecture
                )?;
                match &s.format {
                    Some(format) => writeln!(
                        f,
                        "  weights     {format} [{}], dtype {}",
                        s.files.join(", "),
                        s.dtype.as_deref().unwrap_or("?")
                    )?,
                    None => writeln!(f, "  weights     none that convert reads")?,
                }
                if let Some(c) = &s.config {
                    writeln!(
                        f,
                        "  dims        vocab {} hidden {} layers {} heads {} kv_heads {} head_dim {} ffn {}",
                        c.vocab_size,
                        c.hidden_size,
                        c.num_hidden_layers,
                        c.num_attention_heads,
                        c.num_key_value_heads,
                        c.head_dim,
                        c.intermediate_size
                    )?;
                    writeln!(
                        f,
                        "  rope        theta {} rotary dims {} of {}; tied embeddings: {}",
                        c.rope_theta,
                        c.rotary_dim(),
                        c.head_dim,
                        c.tie_word_embeddings
                    )?;
                }
                writeln!(f, "  parameters  {}", human_count(s.parameters))?;
                writeln!(f, "  size        {}", human_bytes(s.bytes))?;
                write_tokenizer(f, &s.tokenizer)?;
                match &s.problem {
                    None => writeln!(f, "  convertible yes"),
                    Some(p) => writeln!(f, "  convertible NO: {p}"),
                }
            }
            Inspection::TrtllmCheckpoint(s) => {
                writeln!(
                    f,
                    "{}: TensorRT-LLM checkpoint ({}, {})",
                    s.path.display(),
                    s.architecture,
                    s.dtype
                )?;
                write_dims(f, &s.dims)?;
                writeln!(f, "  mapping     {}", s.mapping)?;
                writeln!(f, "  parameters  {}", human_count(s.parameters))?;
                writeln!(f, "  size        {}", human_bytes(s.bytes))?;
                for r in &s.ranks {
                    writeln!(
                        f,
                        "  {:<22} {} tensors, {}",
                        r.file,
                        r.tensors,
                        human_bytes(r.bytes)
                    )?;
                }
                write_missing(f, &s.missing_ranks, "safetensors")?;
                write_tokenizer(f, &s.tokenizer)?;
                if let Some(m) = &s.manifest {
                    let src = m
                        .source
                        .hub_id
                        .clone()
                        .unwrap_or_else(|| m.source.dir.display().to_string());
                    writeln!(
                        f,
                        "  converted   by {} {} from {} ({}, {})",
                        m.tool, m.tool_version, src, m.source.format, m.source.dtype
                    )?;
                }
                Ok(())
            }
            Inspection::Engine(s) => {
                writeln!(
                    f,
                    "{}: TensorRT-LLM engine ({}, {})",
                    s.path.display(),
                    s.architecture,
                    s.dtype
                )?;
                if let Some(v) = &s.version {
                    writeln!(f, "  version     {v}")?;
                }
                write_dims(f, &s.dims)?;
                writeln!(f, "  mapping     {}", s.mapping)?;
                for key in [
                    "max_batch_size",
                    "max_input_len",
                    "max_seq_len",
                    "max_num_tokens",
                    "max_beam_width",
                ] {
                    if let Some(v) = s.build_config.get(key) {
                        writeln!(f, "  {key:<11} {v}")?;
                    }
                }
                write_engine_build(f, s)?;
                write_tokenizer(f, &s.tokenizer)?;
                for r in &s.ranks {
                    writeln!(f, "  {:<22} {}", r.file, human_bytes(r.bytes))?;
                }
                write_missing(f, &s.missing_ranks, "engine")
            }
        }
    }
}

fn write_tokenizer(f: &mut fmt::Formatter<'_>, t: &Option<TokenizerInfo>) -> fmt::Result {
    match t {
        None => writeln!(
            f,
            "  tokenizer   none (text prompts need --tokenizer; --input-ids work without)"
        ),
        Some(t) => {
            write!(f, "  tokenizer   {}: {}", t.path.display(), t.source.describe())?;
            match (&t.problem, t.vocab_size) {
                (Some(p), _) => writeln!(f, "; UNUSABLE: {p}"),
                (None, Some(n)) => writeln!(f, ", {n} tokens"),
                (None, None) => writeln!(f),
            }
        }
    }
}

/// The rest of an engine's build config, and its build manifest if `build` made it.
fn write_engine_build(f: &mut fmt::Formatter<'_>, s: &EngineSummary) -> fmt::Result {
    let b = &s.build_config;
    let p = b.get("plugin_config").unwrap_or(&Value::Null);
    let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "?".into());
    writeln!(
        f,
        "  kv cache    {} (tokens_per_block {}); gather logits: context {} generation {}",
        show(b.get("kv_cache_type")),
        show(p.get("tokens_per_block")),
        show(b.get("gather_context_logits")),
        show(b.get("gather_generation_logits"))
    )?;
    writeln!(
        f,
        "  plugins     gemm {} gpt_attention {}; context_fmha {} paged_context_fmha {}",
        show(p.get("gemm_plugin")),
        show(p.get("gpt_attention_plugin")),
        show(p.get("context_fmha")),
        show(p.get("use_paged_context_fmha"))
    )?;
    let Some(m) = &s.build_manifest else {
        return writeln!(f, "  built by    (no trtllm-minitron build manifest)");
    };
    let file = m
        .profile
        .file
        .as_ref()
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default();
    writeln!(f, "  profile     {}{file}", m.profile.name)?;
    writeln!(
        f,
        "  built by    {} {} with TensorRT-LLM {}, TensorRT {}",
        m.tool, m.tool_version, m.toolchain.tensorrt_llm_version, m.toolchain.tensorrt_version
    )?;
    writeln!(
        f,
        "  built on    {} ({}, compute {}): runs only on {} GPUs",
        m.gpu.name, m.gpu.sm, m.gpu.compute_capability, m.gpu.sm
    )?;
    writeln!(
        f,
        "  from        {} (checkpoint {}, fingerprint {})",
        m.model
            .hub_id
            .clone()
            .unwrap_or_else(|| m.model.dir.display().to_string()),
        m.checkpoint.dir.display(),
        m.checkpoint.fingerprint
    )?;
    writeln!(
        f,
        "  took        {:.1} s (convert {:.1} s, trtllm-build {:.1} s)",
        m.durations.total_seconds,
        m.durations.convert_seconds.unwrap_or(0.0),
        m.durations.build_seconds
    )?;
    let command = m
        .command
        .split_first()
        .map(|(prog, args)| crate::engine_build::flags::shell_line(prog, args))
        .unwrap_or_default();
    writeln!(f, "  command     {command}")
}

fn write_dims(f: &mut fmt::Formatter<'_>, d: &Dims) -> fmt::Result {
    writeln!(
        f,
        "  dims        vocab {} hidden {} layers {} heads {} kv_heads {} head_size {} ffn {}",
        d.vocab_size,
        d.hidden_size,
        d.num_hidden_layers,
        d.num_attention_heads,
        d.num_key_value_heads,
        d.head_size,
        d.intermediate_size
    )
}

fn write_missing(f: &mut fmt::Formatter<'_>, missing: &[usize], ext: &str) -> fmt::Result {
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.iter().map(|r| format!("rank{r}.{ext}")).collect();
    writeln!(f, "  MISSING     {}", names.join(", "))
}
