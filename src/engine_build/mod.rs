//! `build`: a Minitron model to a TensorRT-LLM engine. The profile (and any
//! command-line overrides) is checked against the model; the model is
//! converted into the conversion cache unless a fresh conversion exists; then
//! TensorRT-LLM's own `trtllm-build` runs with every limit explicit, its output
//! staged in a temporary directory, validated, given a build manifest, and
//! renamed into place. An engine whose manifest matches what would be built
//! now is left alone ("up to date").

pub mod checkpoint;
pub mod error;
pub mod flags;
pub mod profile;
pub mod report;
pub mod runner;
pub mod toolchain;
pub mod up_to_date;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde_json::Value;

use crate::convert::TOKENIZER_FILES;
use crate::error::{Error, IoContext};
use crate::json_file;
use crate::progress::{Progress, Silent};
use crate::staging::{self, Ours, StagedDir};
use crate::trtllm::build_manifest::{
    BUILD_LOG_FILE, BUILD_MANIFEST_FILE, BuildManifest, Durations, ModelRecord, ProfileRecord, Toolchain,
};
use crate::trtllm::build_settings::BuildSettings;
use crate::trtllm::config::CONFIG_FILE;
use crate::trtllm::fingerprint;
use crate::trtllm::gpu::{self, Gpu, arch_examples};
pub use error::{BuildError, BuildResult};
use profile::{LoadedProfile, Merged, ProfileKeys};
pub use report::{BuildReport, BuildStatus};
pub use runner::BuilderStatus;
use up_to_date::Wanted;

/// Receives what a build does as it does it (the CLI prints and draws it).
pub trait BuildObserver: Sync {
    fn warning(&self, _message: &str) {}
    /// A step starts: "converting ...", "running trtllm-build ...".
    fn step(&self, _message: &str) {}
    /// Progress of the conversion step (bytes).
    fn convert_progress(&self) -> &dyn Progress {
        &Silent
    }
    /// Called about ten times a second while trtllm-build runs.
    fn builder_progress(&self, _status: &BuilderStatus) {}
}

/// Observes nothing.
pub struct Quiet;
impl BuildObserver for Quiet {}

#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// PROFILE: a profile file, or the name of one under `./engines`.
    pub profile: Option<String>,
    /// Command-line values, each replacing the profile key of the same name.
    pub overrides: ProfileKeys,
    /// Default: `trtllm-engines/<profile name>`.
    pub output: Option<PathBuf>,
    /// Default: `TRTLLM_BUILD`, else `trtllm-build` on PATH.
    pub trtllm_build: Option<PathBuf>,
    pub dry_run: bool,
    /// Rebuild even when up to date. Only an engine directory of ours is ever replaced.
    pub force: bool,
}

/// An engine directory: `--force` replaces only one holding its build manifest.
pub const OUTPUT: Ours = Ours {
    marker: BUILD_MANIFEST_FILE,
    what: "engine",
};

/// Where the output goes when `--output` is not given.
pub fn default_output(name: &str) -> PathBuf {
    Path::new("trtllm-engines").join(name)
}

pub fn build(
    req: &BuildRequest,
    observer: &dyn BuildObserver,
    stop: &AtomicBool,
) -> BuildResult<BuildReport> {
    let started = Instant::now();
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |w: String| {
        observer.warning(&w);
        warnings.push(w);
    };

    // 1. The profile, merged with the command line and checked against the model.
    let loaded = match &req.profile {
        Some(arg) => Some(LoadedProfile::read(&profile::find_profile(arg)?)?),
        None => None,
    };
    if loaded.is_none() && req.overrides.model.is_none() {
        return Err(BuildError::ProfileNotFound(
            "give a PROFILE (a file, or a name under ./engines) or --model MODEL".into(),
        ));
    }
    let merged = Merged::new(loaded.as_ref(), &req.overrides);
    let spec = merged.values.model.clone().ok_or_else(|| {
        merged.err(
            "model",
            "is missing: give it in the profile or with --model MODEL",
        )
    })?;
    let base = match (&loaded, merged.overridden.contains("model")) {
        (Some(l), false) => Some(l.base_dir()),
        _ => None,
    };
    let model = checkpoint::resolve_model(&spec, base.as_deref())?;
    let settings = profile::resolve(&merged, &model.facts)?;
    checkpoint::check_fixed_checkpoint(&model, &settings, &merged)?;
    let name = match &loaded {
        Some(l) => l.name.clone(),
        None => derived_name(&model, &settings),
    };
    let profile_record = ProfileRecord {
        name: name.clone(),
        file: loaded.as_ref().map(|l| l.path.clone()),
        description: loaded.as_ref().and_then(|l| l.file.description.clone()),
        settings: settings.clone(),
    };
    let model_record = ModelRecord {
        spec: spec.clone(),
        dir: std::fs::canonicalize(&model.source.dir).unwrap_or_else(|_| model.source.dir.clone()),
        hub_id: model.source.hub_id.clone(),
        revision: model.source.revision.clone(),
    };
    let output = req.output.clone().unwrap_or_else(|| default_output(&name));

    // 2. The builder and its versions; 3. the GPU. A dry run only warns.
    let toolchain = match find_toolchain(req.trtllm_build.as_deref()) {
        Ok(t) => Some(t),
        Err(e) if req.dry_run => {
            warn(format!("{e} (dry run: going on)"));
            None
        }
        Err(e) => return Err(e),
    };
    let gpus = match gpu::detect() {
        Ok(g) => g,
        Err(why) if req.dry_run => {
            warn(format!(
                "no GPU found ({why}); a real build needs one (dry run: going on)"
            ));
            Vec::new()
        }
        Err(why) => {
            return Err(BuildError::NoGpu(format!(
                "no GPU found: {why}. trtllm-build needs an NVIDIA GPU of the architecture the engine will run on \
                 (the engine only runs on that architecture); --dry-run shows the commands without one"
            )));
        }
    };
    for w in gpu_warnings(&gpus, &settings) {
        warn(w);
    }

    // 4. The checkpoint and the command.
    let plan = checkpoint::plan(&model, &settings)?;
    let program = toolchain
        .as_ref()
        .map(|t| t.trtllm_build.display().to_string())
        .unwrap_or_else(|| "trtllm-build".into());
    let display_args = flags::builder_args(&settings, &plan.dir, &output);
    let command: Vec<String> = std::iter::once(program.clone())
        .chain(display_args.clone())
        .collect();

    // 5. Up to date?
    let existing = BuildManifest::read(&output).ok();
    let mut rebuild_reason = None;
    let mut up_to_date = false;
    if let Some(old) = &existing {
        let reason = match (&plan.convert_reason, &toolchain, gpus.first()) {
            (Some(why), _, _) => Some(format!("the checkpoint must be made again ({why})")),
            (None, Some(t), Some(g)) => {
                let record = fingerprint::fingerprint(&plan.dir, settings.world_size())?;
                up_to_date::staleness(
                    old,
                    &output,
                    &Wanted {
                        settings: &settings,
                        checkpoint: &record,
                        toolchain: t,
                        gpu: g,
                        args: &display_args,
                    },
                )
            }
            _ => Some("cannot tell without trtllm-build and a GPU".into()),
        };
        match reason {
            None => up_to_date = true,
            Some(r) => rebuild_reason = Some(r),
        }
    }
    let mut report = BuildReport {
        status: BuildStatus::DryRun,
        output: output.clone(),
        profile: profile_record.clone(),
        model: model_record.clone(),
        checkpoint: plan.clone(),
        command,
        toolchain: toolchain.clone(),
        gpus: gpus.clone(),
        warnings: Vec::new(),
        rebuild_reason: rebuild_reason.clone(),
        up_to_date,
        log: None,
        durations: None,
    };
    if req.dry_run {
        report.warnings = warnings;
        return Ok(report);
    }
    if up_to_date && !req.force {
        report.status = BuildStatus::UpToDate;
        report.warnings = warnings;
        return Ok(report);
    }
    // Both are present unless this is a dry run (handled above).
    let (Some(toolchain), Some(gpu0)) = (toolchain, gpus.first().cloned()) else {
        return Err(BuildError::NoGpu("no trtllm-build or no GPU".into()));
    };
    if let Some(why) = &rebuild_reason {
        observer.step(&format!("rebuilding {}: {why}", output.display()));
    }
    refuse_overlap(&output, &[&model.source.dir, &plan.dir])?;
    // An engine of ours is replaced without --force (it is stale, or --force
    // asked); anything else never is. Said before a long conversion.
    let replace = req.force || existing.is_some();
    staging::check_replaceable(&output, OUTPUT, replace)?;

    // 6. Convert if needed.
    if let Some(why) = &plan.convert_reason {
        observer.step(&format!(
            "converting {} to {} ({}, tp={} pp={}): {why}",
            spec,
            plan.dir.display(),
            settings.dtype,
            settings.tp,
            settings.pp
        ));
    }
    let convert_seconds = checkpoint::ensure(&plan, &model, observer.convert_progress(), stop)?;
    let record = fingerprint::fingerprint(&plan.dir, settings.world_size())?;
    let checkpoint_config: Value = json_file::read(&plan.dir.join(CONFIG_FILE))?;

    // 7. Build into a staging directory. What is said and recorded names the
    // output as it will be once moved into place.
    let stage = StagedDir::begin(&output, OUTPUT, replace)?;
    let args = flags::builder_args(&settings, &plan.dir, stage.path());
    let command: Vec<String> = std::iter::once(program.clone())
        .chain(display_args.iter().cloned())
        .collect();
    let log = stage.path().join(BUILD_LOG_FILE);
    let failed_log = failed_log_path(&output);
    observer.step(&format!(
        "running {} (into a staging directory, moved into place once validated; log: {}, or {} if it fails)",
        flags::shell_line(&program, &display_args),
        output.join(BUILD_LOG_FILE).display(),
        failed_log.display()
    ));
    let build_seconds = match runner::run(
        &toolchain.trtllm_build,
        &args,
        &log,
        settings.world_size(),
        observer,
        stop,
    ) {
        Ok(s) => s,
        Err(BuildError::BuilderFailed { status, tail, .. }) => {
            keep_log(&log, &failed_log);
            return Err(BuildError::BuilderFailed {
                status,
                tail,
                log: failed_log,
            });
        }
        Err(e) => return Err(e),
    };

    // 8. Validate, complete, commit.
    let validate_started = Instant::now();
    let engine_files =
        validate::validate(stage.path(), &settings, &checkpoint_config, &toolchain).map_err(|problem| {
            keep_log(&log, &failed_log);
            BuildError::InvalidEngine {
                problem,
                log: failed_log.clone(),
            }
        })?;
    for name in TOKENIZER_FILES {
        let from = plan.dir.join(name);
        if from.is_file() {
            let to = stage.path().join(name);
            std::fs::copy(&from, &to).at(&to)?;
        }
    }
    let durations = Durations {
        convert_seconds,
        build_seconds,
        validate_seconds: validate_started.elapsed().as_secs_f64(),
        total_seconds: started.elapsed().as_secs_f64(),
    };
    let manifest = BuildManifest {
        tool: crate::trtllm::conversion_manifest::TOOL.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_unix: crate::trtllm::conversion_manifest::now_unix(),
        profile: profile_record,
        model: model_record,
        checkpoint: record,
        toolchain: toolchain.clone(),
        gpu: gpu0,
        command: command.clone(),
        durations: durations.clone(),
        engine_files,
    };
    manifest.write(stage.path())?;
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Interrupted.into());
    }
    stage.commit()?;
    let _ = std::fs::remove_file(&failed_log);

    report.status = BuildStatus::Built;
    report.command = command;
    report.toolchain = Some(toolchain);
    report.warnings = warnings;
    report.log = Some(output.join(BUILD_LOG_FILE));
    report.durations = Some(durations);
    Ok(report)
}

fn find_toolchain(explicit: Option<&Path>) -> BuildResult<Toolchain> {
    let builder = toolchain::locate(explicit)?;
    let t = toolchain::detect(&builder)?;
    toolchain::check_supported(&t)?;
    Ok(t)
}

/// Mismatches between this machine's GPUs and the profile, worth saying before a long build.
fn gpu_warnings(gpus: &[Gpu], p: &BuildSettings) -> Vec<String> {
    let mut out = Vec::new();
    let Some(first) = gpus.first() else {
        return out;
    };
    if let Some(target) = &p.target_arch
        && *target != first.sm
    {
        out.push(format!(
            "the profile targets {target} ({}), but GPU 0 here is {} ({}): the engine will be built for {} and will only run on {} GPUs ({})",
            arch_examples(target),
            first.name,
            first.sm,
            first.sm,
            first.sm,
            arch_examples(&first.sm)
        ));
    }
    if let Some(other) = gpus.iter().find(|g| g.sm != first.sm) {
        out.push(format!(
            "this machine mixes GPU architectures (GPU 0 {} {}, GPU {} {} {}); ranks built on different ones will not run together",
            first.name, first.sm, other.index, other.name, other.sm
        ));
    }
    let world = p.world_size();
    if gpus.len() < world {
        out.push(format!(
            "the engine has {world} ranks but this machine has {} GPU(s): trtllm-build builds them {} at a time here, and running it needs {world} GPUs (TensorRT-LLM's multi-process runtime, mpirun -n {world}; `trtllm-minitron run` drives single-GPU engines only)",
            gpus.len(),
            gpus.len().min(p.workers)
        ));
    }
    out
}

/// `Minitron-8B-Base-bfloat16-tp2-pp1`, for `--model` builds without a profile.
fn derived_name(m: &checkpoint::ResolvedModel, p: &BuildSettings) -> String {
    let base = m
        .source
        .hub_id
        .as_deref()
        .and_then(|id| id.rsplit('/').next())
        .map(str::to_string)
        .or_else(|| {
            std::fs::canonicalize(&m.source.dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "model".into());
    format!("{base}-{}-tp{}-pp{}", p.dtype, p.tp, p.pp)
}

/// `<parent>/<name>.build-failed.log`: survives the staging directory's removal.
fn failed_log_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "engine".into());
    output.with_file_name(format!("{name}.build-failed.log"))
}

fn keep_log(log: &Path, keep: &Path) {
    if std::fs::copy(log, keep).is_err() {
        // No log at all (the builder never started): leave an explanation instead.
        let _ = std::fs::write(keep, "trtllm-build wrote no output\n");
    }
}

/// Writing the engine into the model or checkpoint (or `--force` removing them) must not happen.
fn refuse_overlap(output: &Path, inputs: &[&Path]) -> BuildResult<()> {
    let out = crate::staging::absolute(output);
    for input in inputs {
        let Ok(inp) = std::fs::canonicalize(input) else {
            continue;
        };
        if out.starts_with(&inp) || inp.starts_with(&out) {
            return Err(Error::InvalidOutput(format!(
                "output {} overlaps {}; choose an output directory outside the model and its checkpoint",
                output.display(),
                input.display()
            ))
            .into());
        }
    }
    Ok(())
}
