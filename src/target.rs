//! What a `--model` argument names, and opening it for generation: a
//! TensorRT-LLM checkpoint (used as is), an engine directory, or a Hugging
//! Face model (directory or cached hub id), converted once into the
//! conversion cache and reused while fresh. `run` and `check` (and a server)
//! open their backend here.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::convert::{cache, open_source};
use crate::error::{Error, Result};
use crate::generation::GenerationBackend;
use crate::hf::source::{self, ModelSource};
use crate::progress::{Progress, human_size};
use crate::runtime::model::Model;
use crate::tokenizer::{TOKENIZER_FILE, Tokenizer};
use crate::trtllm::config::{ConfigKind, DirConfig};
use crate::trtllm::conversion_manifest::{ConversionManifest, ConversionOptions};
use crate::trtllm::mapping::Parallelism;

/// The directory a model argument comes down to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Checkpoint(PathBuf),
    Engine(PathBuf),
}

/// `--backend`: which generation backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    // (Plain comments: doc comments would become clap's per-value help.)
    // The CPU reference runtime (Hugging Face models and checkpoints).
    Reference,
    // TensorRT-LLM's Executor (engines; needs --features trtllm).
    Trtllm,
    // Engines on TensorRT-LLM, everything else on the reference runtime.
    Auto,
}

/// The checkpoint or engine directory `spec` names; a Hugging Face model is
/// converted into the conversion cache first, unless a fresh conversion is there.
pub fn resolve(spec: &str, progress: &dyn Progress, stop: &AtomicBool) -> Result<Target> {
    let src = source::resolve(spec)?;
    match DirConfig::read(&src.dir)?.kind {
        ConfigKind::Checkpoint => Ok(Target::Checkpoint(src.dir)),
        ConfigKind::Engine => Ok(Target::Engine(src.dir)),
        // Anything else is read as a Hugging Face config, whose parser names what is wrong.
        ConfigKind::HuggingFace | ConfigKind::Unknown => {
            converted_checkpoint(&src, progress, stop).map(Target::Checkpoint)
        }
    }
}

/// The cached conversion of a Hugging Face model in its own dtype (tp=1, pp=1),
/// made or refreshed as needed. Converting takes a while (tens of seconds,
/// 16.5 GB for the 8B), so it is said once beforehand: what, where and why.
fn converted_checkpoint(src: &ModelSource, progress: &dyn Progress, stop: &AtomicBool) -> Result<PathBuf> {
    let checked = open_source(src)?;
    let options = ConversionOptions::new(checked.dtype, Parallelism { tp: 1, pp: 1 });
    let entry = cache::lookup(src, options)?;
    if let Some(why) = &entry.stale {
        let name = src
            .hub_id
            .clone()
            .unwrap_or_else(|| src.dir.display().to_string());
        progress.say(&format!(
            "converting {name} ({}, tp=1, about {}) into the conversion cache at {} ({why}); \
             later runs reuse it while the source is unchanged",
            options.dtype,
            human_size(checked.store.total_bytes()),
            entry.dir.display()
        ));
    }
    cache::ensure(&checked, &entry, progress, stop)?;
    Ok(entry.dir)
}

/// A backend ready to generate, with what it runs and its tokenizer: what `run` and
/// `check` both open from a `--model` argument.
pub struct Opened {
    pub backend: Box<dyn GenerationBackend>,
    /// The TensorRT-LLM checkpoint the backend runs.
    pub checkpoint: PathBuf,
    pub tokenizer: Option<Tokenizer>,
    /// Whether `backend` is the CPU reference runtime (not an engine).
    pub reference: bool,
}

/// Resolves `model` (Hugging Face model, checkpoint or engine, as `run --model` takes)
/// and opens it on `backend`, with the tokenizer at `tokenizer` (a file or its
/// directory) or else the one beside the checkpoint; `needs_tokenizer` makes
/// a missing one an error.
pub fn open_backend(
    model: &str,
    backend: BackendChoice,
    tokenizer: Option<&Path>,
    needs_tokenizer: bool,
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> Result<Opened> {
    let target = resolve(model, progress, stop)?;
    let checkpoint = match (&target, backend) {
        #[cfg(feature = "trtllm")]
        (Target::Engine(dir), BackendChoice::Trtllm | BackendChoice::Auto) => {
            // The tokenizer beside the engine, else beside the checkpoint it was built from.
            let beside = match Tokenizer::find_beside(dir) {
                Some(_) => dir.clone(),
                None => crate::trtllm::build_manifest::BuildManifest::read(dir)
                    .map(|m| m.checkpoint.dir)
                    .unwrap_or_else(|_| dir.clone()),
            };
            let tokenizer = load_tokenizer(tokenizer, needs_tokenizer, &beside)?;
            let engine = crate::executor::engine::open_engine(dir)?;
            return Ok(Opened {
                backend: Box::new(engine),
                checkpoint: dir.clone(),
                tokenizer,
                reference: false,
            });
        }
        #[cfg(feature = "trtllm")]
        (Target::Engine(dir), BackendChoice::Reference) => {
            return Err(Error::InvalidInput(format!(
                "{}: the reference backend runs Hugging Face models and TensorRT-LLM checkpoints, \
                 not engines: use --backend trtllm (or auto)",
                dir.display()
            )));
        }
        #[cfg(feature = "trtllm")]
        (Target::Checkpoint(dir), BackendChoice::Trtllm) => {
            return Err(Error::InvalidInput(format!(
                "{}: --backend trtllm runs engine directories, and this is a checkpoint: \
                 build an engine from it with `trtllm-minitron build`, or use --backend reference",
                dir.display()
            )));
        }
        #[cfg(not(feature = "trtllm"))]
        (Target::Engine(dir), _) | (Target::Checkpoint(dir), BackendChoice::Trtllm) => {
            return Err(Error::InvalidInput(format!(
                "{}: running {} needs the TensorRT-LLM backend, which this build does not include \
                 (rebuild with --features trtllm on a machine with TensorRT-LLM); \
                 the reference backend runs Hugging Face models and TensorRT-LLM checkpoints",
                dir.display(),
                if matches!(target, Target::Engine(_)) {
                    "an engine"
                } else {
                    "--backend trtllm"
                }
            )));
        }
        (Target::Checkpoint(dir), BackendChoice::Reference | BackendChoice::Auto) => dir.clone(),
    };
    let tokenizer = load_tokenizer(tokenizer, needs_tokenizer, &checkpoint)?;
    let model = Model::open(&checkpoint)?;
    Ok(Opened {
        backend: Box::new(model),
        checkpoint,
        tokenizer,
        reference: true,
    })
}

/// `--tokenizer`, else the tokenizer beside the checkpoint (tokenizer.json, else a
/// SentencePiece tokenizer.model); required only for text prompts.
fn load_tokenizer(explicit: Option<&Path>, needs_text: bool, checkpoint: &Path) -> Result<Option<Tokenizer>> {
    let path = match explicit {
        Some(p) if p.is_dir() => Some(Tokenizer::find_beside(p).unwrap_or_else(|| p.join(TOKENIZER_FILE))),
        Some(p) => Some(p.to_path_buf()),
        None => Tokenizer::find_beside(checkpoint),
    };
    match path {
        Some(p) => {
            if !p.is_file() {
                return Err(Error::InvalidInput(format!(
                    "--tokenizer {}: no such file; expected tokenizer.json, a SentencePiece tokenizer.model, \
                     or the directory holding one",
                    p.display()
                )));
            }
            // A tokenizer beside a cached conversion is a copy of the model's own: name that.
            let source_dir = (explicit.is_none() && checkpoint.starts_with(cache::cache_root()))
                .then(|| ConversionManifest::read(checkpoint).ok())
                .flatten()
                .map(|m| m.source.dir);
            Ok(Some(Tokenizer::from_file(&p).map_err(|e| match &source_dir {
                Some(dir) => e.in_dir(dir),
                None => e,
            })?))
        }
        None if needs_text => Err(Error::InvalidInput(format!(
            "text prompts need a tokenizer, but there is no tokenizer.json or tokenizer.model in {} \
             (pass --tokenizer PATH, or give token ids with --input-ids)",
            checkpoint.display()
        ))),
        None => Ok(None),
    }
}
