//! The TensorRT-LLM checkpoint an engine is built from: the profile's model
//! resolved (Hugging Face model or an existing checkpoint), converted into
//! the conversion cache when needed and reused while fresh, and fingerprinted
//! so a changed checkpoint triggers a rebuild.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::error::BuildResult;
use super::profile::{Merged, ModelFacts};
use crate::convert::cache::{self, CacheEntry};
use crate::convert::{CheckedSource, open_source};
use crate::error::Error;
use crate::hf::source::{self, ModelSource};
use crate::progress::Progress;
use crate::trtllm::build_settings::BuildSettings;
use crate::trtllm::config::{ConfigKind, DirConfig, TrtllmConfig};
use crate::trtllm::conversion_manifest::ConversionOptions;

/// The model a build starts from.
pub struct ResolvedModel {
    pub spec: String,
    pub source: ModelSource,
    pub facts: ModelFacts,
    /// For a TensorRT-LLM checkpoint, built as it is: its config (dtype and mapping are fixed).
    pub checkpoint_config: Option<TrtllmConfig>,
    /// For a Hugging Face model: the source, opened and checked once, that the
    /// conversion reads.
    pub checked: Option<CheckedSource>,
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
    let dir_config = DirConfig::read(&src.dir)?;
    let label = src
        .hub_id
        .clone()
        .unwrap_or_else(|| src.dir.display().to_string());
    match dir_config.kind {
        ConfigKind::Engine => Err(Error::InvalidInput(format!(
            "{label} is already an engine directory; `model` must be a Hugging Face model or a TensorRT-LLM checkpoint"
        ))
        .into()),
        ConfigKind::Checkpoint => {
            let config = dir_config.checkpoint()?;
            let facts = ModelFacts {
                config: config.model_config(),
                dtype: config.dtype,
                label,
                mapping: Some(config.parallelism()),
            };
            Ok(ResolvedModel {
                spec: spec.to_string(),
                source: src,
                facts,
                checkpoint_config: Some(config),
                checked: None,
            })
        }
        ConfigKind::HuggingFace | ConfigKind::Unknown => {
            // Reads the weights' headers too, so a broken model fails before anything runs.
            let checked = open_source(&src)?;
            Ok(ResolvedModel {
                spec: spec.to_string(),
                facts: ModelFacts {
                    config: checked.config.clone(),
                    dtype: checked.dtype,
                    label,
                    mapping: None,
                },
                source: src,
                checkpoint_config: None,
                checked: Some(checked),
            })
        }
    }
}

/// A given TensorRT-LLM checkpoint is built as is: the profile must agree with it.
pub fn check_fixed_checkpoint(m: &ResolvedModel, p: &BuildSettings, merged: &Merged) -> BuildResult<()> {
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
    /// The conversion cache's entry, for a Hugging Face model.
    #[serde(skip)]
    cache: Option<CacheEntry>,
}

pub fn plan(m: &ResolvedModel, p: &BuildSettings) -> BuildResult<CheckpointPlan> {
    if m.checked.is_none() {
        return Ok(CheckpointPlan {
            dir: m.source.dir.clone(),
            convert_reason: None,
            convert_command: None,
            cache: None,
        });
    }
    let entry = cache::lookup(&m.source, ConversionOptions::new(p.dtype, p.parallelism()))?;
    let command = vec![
        "trtllm-minitron".to_string(),
        "convert".into(),
        "--model".into(),
        m.source.dir.display().to_string(),
        "--output".into(),
        entry.dir.display().to_string(),
        "--dtype".into(),
        p.dtype.to_string(),
        "--tp-size".into(),
        p.tp.to_string(),
        "--pp-size".into(),
        p.pp.to_string(),
        "--force".into(),
    ];
    Ok(CheckpointPlan {
        dir: entry.dir.clone(),
        convert_reason: entry.stale.clone(),
        convert_command: Some(command),
        cache: Some(entry),
    })
}

/// Converts when the plan says so. Returns the seconds spent converting.
pub fn ensure(
    plan: &CheckpointPlan,
    m: &ResolvedModel,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> BuildResult<Option<f64>> {
    let (Some(entry), Some(checked)) = (&plan.cache, &m.checked) else {
        return Ok(None);
    };
    let report = cache::ensure(checked, entry, progress, stop)?;
    Ok(report.map(|r| r.seconds))
}
