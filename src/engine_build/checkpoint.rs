//! The TensorRT-LLM checkpoint an engine is built from: the profile's model
//! resolved (Hugging Face model or an existing checkpoint), converted into
//! the conversion cache when needed and reused while fresh, and fingerprinted
//! so a changed checkpoint triggers a rebuild.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{BuildError, BuildResult};
use super::profile::{Merged, ModelFacts, Profile};
use crate::convert::{ConvertOptions, convert, open_source};
use crate::error::{Error, IoContext};
use crate::hf::config::NemotronConfig;
use crate::hf::source::{self, ModelSource};
use crate::progress::Progress;
use crate::target::{FNV_OFFSET, cache_dir_for, fnv1a};
use crate::trtllm::config::{ConfigKind, TrtllmConfig};
use crate::trtllm::conversion_manifest::{ConversionManifest, ConversionOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    HuggingFace,
    /// A TensorRT-LLM checkpoint (e.g. made by `convert`), built as it is.
    TrtllmCheckpoint,
}

#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub spec: String,
    pub source: ModelSource,
    pub kind: ModelKind,
    pub facts: ModelFacts,
    /// For a TensorRT-LLM checkpoint: its config (dtype and mapping are fixed).
    pub checkpoint_config: Option<TrtllmConfig>,
}

/// Resolves `spec`: relative paths in a profile are relative to the profile's
/// directory (`base`); anything that is not a directory there is a hub id or
/// a path as `convert --model` takes it.
pub fn resolve_model(spec: &str, base: Option<&Path>) -> BuildResult<ResolvedModel> {
    let relative = base
        .map(|b| b.join(spec))
        .filter(|p| p.is_dir() && !Path::new(spec).is_absolute());
    let src = match relative {
        Some(dir) => source::resolve(&dir.to_string_lossy())?,
        None => source::resolve(spec)?,
    };
    let config_path = src.dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).at(&config_path)?;
    let raw: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    let label = src
        .hub_id
        .clone()
        .unwrap_or_else(|| src.dir.display().to_string());
    let kind = ConfigKind::of(&raw);
    if kind == ConfigKind::Engine {
        return Err(Error::InvalidInput(format!(
            "{label} is already an engine directory; `model` must be a Hugging Face model or a TensorRT-LLM checkpoint"
        ))
        .into());
    }
    if kind == ConfigKind::Checkpoint {
        let config: TrtllmConfig = serde_json::from_value(raw).map_err(|source| Error::Json {
            path: config_path.clone(),
            source,
        })?;
        let facts = ModelFacts {
            config: config.model_config(),
            dtype: config.dtype,
            label,
            mapping: Some(config.parallelism()),
        };
        return Ok(ResolvedModel {
            spec: spec.to_string(),
            source: src,
            kind: ModelKind::TrtllmCheckpoint,
            facts,
            checkpoint_config: Some(config),
        });
    }
    // Reads the weights' headers too, so a broken model fails before anything runs.
    let checked = open_source(&src)?;
    let config: NemotronConfig = checked.config.clone();
    Ok(ResolvedModel {
        spec: spec.to_string(),
        facts: ModelFacts {
            config,
            dtype: checked.dtype,
            label,
            mapping: None,
        },
        source: src,
        kind: ModelKind::HuggingFace,
        checkpoint_config: None,
    })
}

/// A given TensorRT-LLM checkpoint is built as is: the profile must agree with it.
pub fn check_fixed_checkpoint(m: &ResolvedModel, p: &Profile, merged: &Merged) -> BuildResult<()> {
    let Some(c) = &m.checkpoint_config else {
        return Ok(());
    };
    let dir = m.source.dir.display();
    let mismatch = |key: &str, want: String, have: String| {
        merged.err(
            key,
            format!(
                "is {want}, but the TensorRT-LLM checkpoint {dir} was converted with {have}; point `model` at the Hugging Face model to convert it again, or use {have}"
            ),
        )
    };
    if c.dtype != p.dtype {
        return Err(mismatch("dtype", p.dtype.to_string(), c.dtype.to_string()));
    }
    if c.mapping.tp_size != p.tp {
        return Err(mismatch(
            "tp",
            p.tp.to_string(),
            format!("tp = {}", c.mapping.tp_size),
        ));
    }
    if c.mapping.pp_size != p.pp {
        return Err(mismatch(
            "pp",
            p.pp.to_string(),
            format!("pp = {}", c.mapping.pp_size),
        ));
    }
    Ok(())
}

/// Where the checkpoint is and whether it must be made first.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointPlan {
    pub dir: PathBuf,
    /// Why a conversion is needed; `None` when an existing checkpoint is used.
    pub convert_reason: Option<String>,
    /// The equivalent `trtllm-minitron convert` command, for a Hugging Face model.
    pub convert_command: Option<Vec<String>>,
}

pub fn plan(m: &ResolvedModel, p: &Profile) -> BuildResult<CheckpointPlan> {
    if m.kind == ModelKind::TrtllmCheckpoint {
        return Ok(CheckpointPlan {
            dir: m.source.dir.clone(),
            convert_reason: None,
            convert_command: None,
        });
    }
    let dir = cache_dir_for(&m.source, p.dtype, p.parallelism())?;
    let options = ConversionOptions {
        dtype: p.dtype,
        tp_size: p.tp,
        pp_size: p.pp,
    };
    let convert_reason = match ConversionManifest::read(&dir) {
        Err(_) => Some("no conversion with these options yet".to_string()),
        Ok(manifest) => manifest
            .staleness(&m.source.dir, options)
            .map(|why| format!("the cached conversion is stale: {why}")),
    };
    let command = vec![
        "trtllm-minitron".to_string(),
        "convert".into(),
        "--model".into(),
        m.source.dir.display().to_string(),
        "--output".into(),
        dir.display().to_string(),
        "--dtype".into(),
        p.dtype.to_string(),
        "--tp-size".into(),
        p.tp.to_string(),
        "--pp-size".into(),
        p.pp.to_string(),
        "--force".into(),
    ];
    Ok(CheckpointPlan {
        dir,
        convert_reason,
        convert_command: Some(command),
    })
}

/// Converts when the plan says so. Returns the seconds spent converting.
pub fn ensure(
    plan: &CheckpointPlan,
    m: &ResolvedModel,
    p: &Profile,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> BuildResult<Option<f64>> {
    if plan.convert_reason.is_none() {
        return Ok(None);
    }
    let options = ConvertOptions {
        dtype: Some(p.dtype),
        parallelism: p.parallelism(),
        force: true,
        jobs: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
    };
    let report = convert(&m.source, &plan.dir, &options, progress, stop)?;
    Ok(Some(report.seconds))
}

/// What the engine was built from, recorded in the build manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub dir: PathBuf,
    /// FNV-1a 64 over config.json and each rank file's name, size, modification
    /// time and safetensors header: cheap to recompute, and changed by any re-conversion.
    pub fingerprint: String,
    pub rank_files: Vec<String>,
}

pub fn fingerprint(dir: &Path, world: usize) -> BuildResult<CheckpointRecord> {
    let config = dir.join("config.json");
    let bytes = std::fs::read(&config).at(&config)?;
    let mut h = fnv1a(FNV_OFFSET, &bytes);
    let mut rank_files = Vec::new();
    for r in 0..world {
        let name = format!("rank{r}.safetensors");
        let path = dir.join(&name);
        let meta = std::fs::metadata(&path).map_err(|e| {
            BuildError::from(Error::InvalidInput(format!(
                "checkpoint {} has no {name} ({e}); expected rank0..rank{} .safetensors for tp*pp = {world}",
                dir.display(),
                world - 1
            )))
        })?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h = fnv1a(h, name.as_bytes());
        h = fnv1a(h, &meta.len().to_le_bytes());
        h = fnv1a(h, &modified.to_le_bytes());
        h = fnv1a(h, &safetensors_header(&path)?);
        rank_files.push(name);
    }
    Ok(CheckpointRecord {
        dir: dir.to_path_buf(),
        fingerprint: format!("{h:016x}"),
        rank_files,
    })
}

/// The 8-byte length and the JSON header of a safetensors file.
fn safetensors_header(path: &Path) -> BuildResult<Vec<u8>> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).at(path)?;
    let n = u64::from_le_bytes(len).min(100 << 20);
    let mut header = len.to_vec();
    file.take(n).read_to_end(&mut header).at(path)?;
    Ok(header)
}
