//! What a build did (or, for a dry run, would do): `--json` prints it as is,
//! and its `Display` is what people read.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::checkpoint::CheckpointPlan;
use super::flags;
use crate::trtllm::build_manifest::{Durations, ModelRecord, ProfileRecord, Toolchain};
use crate::trtllm::gpu::Gpu;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildStatus {
    Built,
    UpToDate,
    DryRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub status: BuildStatus,
    pub output: PathBuf,
    pub profile: ProfileRecord,
    pub model: ModelRecord,
    pub checkpoint: CheckpointPlan,
    /// trtllm-build's command, program first. For a dry run its --output_dir is
    /// the final directory; a real build writes to a staging sibling first.
    pub command: Vec<String>,
    pub toolchain: Option<Toolchain>,
    pub gpus: Vec<Gpu>,
    pub warnings: Vec<String>,
    /// Why an existing engine is being rebuilt (or, for a dry run, would be).
    pub rebuild_reason: Option<String>,
    /// For a dry run: whether the existing engine is already up to date.
    pub up_to_date: bool,
    pub log: Option<PathBuf>,
    pub durations: Option<Durations>,
}

impl BuildReport {
    pub fn command_line(&self) -> String {
        match self.command.split_first() {
            Some((program, args)) => flags::shell_line(program, args),
            None => String::new(),
        }
    }
}

impl BuildReport {
    /// "TensorRT-LLM 1.2.0, TensorRT 10.13 (trtllm-build, Python python3)".
    fn versions(&self) -> Option<String> {
        self.toolchain.as_ref().map(|t| {
            format!(
                "TensorRT-LLM {}, TensorRT {} ({}, Python {})",
                t.tensorrt_llm_version,
                t.tensorrt_version,
                t.trtllm_build.display(),
                t.python.display()
            )
        })
    }

    fn fmt_dry_run(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.profile;
        let out = self.output.display();
        writeln!(f, "dry run: nothing was converted or built")?;
        let file = p
            .file
            .as_ref()
            .map(|f| format!(" ({})", f.display()))
            .unwrap_or_default();
        writeln!(f, "profile       {}{file}", p.name)?;
        writeln!(
            f,
            "model         {} -> {}",
            self.model.spec,
            self.model.dir.display()
        )?;
        match (&self.checkpoint.convert_reason, &self.checkpoint.convert_command) {
            (Some(why), Some(cmd)) => {
                writeln!(
                    f,
                    "convert       {}",
                    cmd.iter()
                        .map(|a| flags::shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" ")
                )?;
                writeln!(f, "              ({why})")?;
            }
            _ => writeln!(
                f,
                "convert       skipped: using the checkpoint {}",
                self.checkpoint.dir.display()
            )?,
        }
        writeln!(f, "trtllm-build  {}", self.command_line())?;
        writeln!(
            f,
            "output        {out} (written to a temporary sibling, validated, then renamed into place)"
        )?;
        if self.up_to_date {
            writeln!(f, "engine        up to date: a real build would do nothing")?;
        } else if let Some(why) = &self.rebuild_reason {
            writeln!(f, "engine        would be rebuilt: {why}")?;
        }
        writeln!(
            f,
            "builder       {}",
            self.versions().unwrap_or_else(|| "not found".into())
        )?;
        match self.gpus.first() {
            Some(g) => writeln!(
                f,
                "gpu           {} ({}, {} MiB) x {}",
                g.name,
                g.sm,
                g.memory_mib.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                self.gpus.len()
            ),
            None => writeln!(f, "gpu           none found"),
        }
    }
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.profile;
        let s = &p.settings;
        let out = self.output.display();
        match self.status {
            BuildStatus::UpToDate => writeln!(
                f,
                "up to date: {out} (profile {}, {} tp={} pp={}); nothing to do (--force rebuilds)",
                p.name, s.dtype, s.tp, s.pp
            ),
            BuildStatus::Built => {
                let d = self.durations.clone().unwrap_or_default();
                writeln!(
                    f,
                    "built {out} (profile {}, {} tp={} pp={}): {} rank engine(s) in {:.1} s (convert {:.1} s, trtllm-build {:.1} s)",
                    p.name,
                    s.dtype,
                    s.tp,
                    s.pp,
                    s.world_size(),
                    d.total_seconds,
                    d.convert_seconds.unwrap_or(0.0),
                    d.build_seconds
                )?;
                if let Some(v) = self.versions() {
                    writeln!(f, "  with {v}")?;
                }
                if let Some(log) = &self.log {
                    writeln!(f, "  log {}", log.display())?;
                }
                if s.world_size() > 1 {
                    writeln!(
                        f,
                        "  {n} ranks: it runs on {n} GPUs under TensorRT-LLM's own multi-process runtime \
                         (mpirun -n {n}); `trtllm-minitron run` drives single-GPU engines only",
                        n = s.world_size()
                    )?;
                }
                Ok(())
            }
            BuildStatus::DryRun => self.fmt_dry_run(f),
        }
    }
}
