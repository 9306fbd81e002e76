//! `convert`: a Hugging Face Nemotron checkpoint to a TensorRT-LLM checkpoint
//! directory (`config.json` + `rank{r}.safetensors`). The source is read once,
//! front to back, and streamed into every rank file at once; the output is staged
//! and renamed into place.

pub mod cache;
pub mod copy_plan;
pub mod page_cache;
pub mod rank_files;
pub mod source_reader;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::DType;
use crate::error::{Error, IoContext, Result};
use crate::hf::config::NemotronConfig;
use crate::hf::layout::check_weights;
use crate::hf::source::ModelSource;
use crate::hf::weights::{WeightFormat, WeightStore};
use crate::json_file;
use crate::progress::Progress;
use crate::staging::{Ours, StagedDir};
use crate::trtllm::config::{CONFIG_FILE, TrtllmConfig, no_config};
use crate::trtllm::conversion_manifest::{
    self as manifest, ConversionManifest, ConversionOptions, FileRecord, SourceRecord,
};
use crate::trtllm::mapping::Parallelism;
use crate::trtllm::plan::plan_ranks;
use copy_plan::{SourceTable, plan_copies};
use rank_files::{RankLayout, RankSummary};

/// Files copied next to the converted checkpoint so later commands find the tokenizer.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
];

/// A converted checkpoint: `--force` replaces only a directory holding its manifest.
pub const OUTPUT: Ours = Ours {
    marker: manifest::MANIFEST_FILE,
    what: "conversion",
};

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Target dtype; `None` keeps the checkpoint's own.
    pub dtype: Option<DType>,
    pub parallelism: Parallelism,
    pub force: bool,
    /// Threads that cut, cast and write (one more reads the source).
    pub jobs: usize,
}

impl ConvertOptions {
    /// `jobs` when not given: one worker per core.
    pub fn default_jobs() -> usize {
        std::thread::available_parallelism().map(usize::from).unwrap_or(2)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub source: PathBuf,
    pub hub_id: Option<String>,
    pub source_format: WeightFormat,
    pub source_dtype: DType,
    pub dtype: DType,
    pub tp_size: usize,
    pub pp_size: usize,
    pub source_bytes: u64,
    /// How the weight bytes were read (O_DIRECT from disk, or through the page cache).
    pub source_reads: stream::SourceReads,
    pub bytes_written: u64,
    pub seconds: f64,
    pub ranks: Vec<RankSummary>,
    pub tokenizer_files: Vec<String>,
}

impl std::fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gb = self.bytes_written as f64 / 1e9;
        writeln!(
            f,
            "wrote {} ({} -> {}, tp={} pp={}): {} rank file(s), {:.2} GB in {:.1} s ({:.2} GB/s)",
            self.output.display(),
            self.source_dtype,
            self.dtype,
            self.tp_size,
            self.pp_size,
            self.ranks.len(),
            gb,
            self.seconds,
            gb / self.seconds.max(1e-9)
        )?;
        let reads = &self.source_reads;
        writeln!(
            f,
            "read {:.2} GB of weights: {:.2} GB straight from disk, {:.2} GB through the page cache",
            (reads.direct_bytes + reads.buffered_bytes) as f64 / 1e9,
            reads.direct_bytes as f64 / 1e9,
            reads.buffered_bytes as f64 / 1e9
        )?;
        if !self.tokenizer_files.is_empty() {
            writeln!(f, "copied {}", self.tokenizer_files.join(", "))?;
        }
        Ok(())
    }
}

/// A source checked and ready to convert: config, weights and their dtype.
pub struct CheckedSource {
    pub source: ModelSource,
    pub config: NemotronConfig,
    pub store: WeightStore,
    pub dtype: DType,
}

/// Reads and validates config and weights; nothing is written.
pub fn open_source(source: &ModelSource) -> Result<CheckedSource> {
    let config_path = source.dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(no_config(&source.dir));
    }
    let config = NemotronConfig::from_file(&config_path)?;
    let store = WeightStore::open(&source.dir)?;
    let dtype = check_weights(&config, &store, &config_path)?;
    Ok(CheckedSource {
        source: source.clone(),
        config,
        store,
        dtype,
    })
}

pub fn convert(
    source: &ModelSource,
    output: &Path,
    options: &ConvertOptions,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<ConvertReport> {
    convert_checked(&open_source(source)?, output, options, progress, stop)
}

/// [`convert`] of a source already opened and checked by [`open_source`].
pub fn convert_checked(
    checked: &CheckedSource,
    output: &Path,
    options: &ConvertOptions,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<ConvertReport> {
    let started = Instant::now();
    let source = &checked.source;
    refuse_output_inside_source(&source.dir, output)?;
    let par = options.parallelism;
    par.validate(&checked.config)?;
    let dtype = options.dtype.unwrap_or(checked.dtype);

    let stage = StagedDir::begin(output, OUTPUT, options.force)?;
    let dir = stage.path();
    let config = TrtllmConfig::new(&checked.config, dtype, par);
    json_file::write(&dir.join(CONFIG_FILE), &config)?;

    let plans = plan_ranks(&checked.config, par);
    let layouts: Vec<RankLayout> = plans.iter().map(|p| RankLayout::new(p, dtype)).collect();
    let copy = plan_copies(&plans, &layouts, &SourceTable::of(&checked.store), dtype)?;
    let total: u64 = layouts.iter().map(|l| l.len - l.header.len() as u64).sum();
    progress.begin("converting", total);
    let job = stream::Job {
        layouts: &layouts,
        copy: &copy,
        store: &checked.store,
        dtype,
        tuning: stream::Tuning::with_workers(options.jobs),
    };
    let (ranks, source_reads) = stream::write_rank_files(&job, dir, progress, stop)?;
    progress.finish();

    let mut tokenizer_files = Vec::new();
    for name in TOKENIZER_FILES {
        let from = source.dir.join(name);
        if from.is_file() {
            std::fs::copy(&from, dir.join(name)).at(&from)?;
            tokenizer_files.push(name.to_string());
        }
    }

    let manifest = ConversionManifest {
        tool: manifest::TOOL.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: manifest::now_unix(),
        source: SourceRecord {
            dir: std::fs::canonicalize(&source.dir).unwrap_or_else(|_| source.dir.clone()),
            hub_id: source.hub_id.clone(),
            revision: source.revision.clone(),
            format: checked.store.format.describe().into(),
            dtype: checked.dtype,
            files: source_files(checked)?,
        },
        options: ConversionOptions {
            dtype,
            tp_size: par.tp,
            pp_size: par.pp,
        },
        outputs: ranks
            .iter()
            .map(|r| r.file.clone())
            .chain(["config.json".to_string()])
            .chain(tokenizer_files.iter().cloned())
            .map(|name| FileRecord::of(dir, &name))
            .collect::<Result<_>>()?,
    };
    manifest.write(dir)?;
    if stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    stage.commit()?;

    Ok(ConvertReport {
        output: output.to_path_buf(),
        source: source.dir.clone(),
        hub_id: source.hub_id.clone(),
        source_format: checked.store.format,
        source_dtype: checked.dtype,
        dtype,
        tp_size: par.tp,
        pp_size: par.pp,
        source_bytes: checked.store.total_bytes(),
        source_reads,
        bytes_written: ranks.iter().map(|r| r.bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
        ranks,
        tokenizer_files,
    })
}

/// Writing into the source would modify it, and `--force` could delete it.
fn refuse_output_inside_source(source: &Path, output: &Path) -> Result<()> {
    let src = std::fs::canonicalize(source).at(source)?;
    let out = crate::staging::absolute(output);
    if out.starts_with(&src) || src.starts_with(&out) {
        return Err(Error::InvalidOutput(format!(
            "output {} overlaps the source model directory {}; choose an output outside it (the source is never modified)",
            output.display(),
            source.display()
        )));
    }
    Ok(())
}

fn source_files(checked: &CheckedSource) -> Result<Vec<FileRecord>> {
    let dir = &checked.source.dir;
    let mut names = vec!["config.json".to_string()];
    for index in ["model.safetensors.index.json", "pytorch_model.bin.index.json"] {
        if dir.join(index).is_file() {
            names.push(index.to_string());
        }
    }
    for f in &checked.store.files {
        if let Ok(rel) = f.path.strip_prefix(dir) {
            names.push(rel.to_string_lossy().into_owned());
        }
    }
    names.extend(
        TOKENIZER_FILES
            .iter()
            .filter(|n| dir.join(n).is_file())
            .map(|n| n.to_string()),
    );
    names.iter().map(|n| FileRecord::of(dir, n)).collect()
}
