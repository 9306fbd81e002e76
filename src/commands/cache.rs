//! `cache`: the conversion cache `run`, `check` and `build` convert into:
//! `list` what is there, `rm` entries, `prune` what nothing will reuse.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::convert::cache::{self, CachedConversion, EntryStatus, Pruned};
use crate::error::Result;
use crate::progress::human_size;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  trtllm-minitron cache list
  trtllm-minitron cache prune --dry-run
  trtllm-minitron cache prune --older-than 30d
  trtllm-minitron cache rm nvidia/Minitron-8B-Base
  trtllm-minitron cache rm Minitron-8B-Base-1f2e3d4c5b6a7980 --json

The cache is $TRTLLM_MINITRON_CACHE, else $XDG_CACHE_HOME/trtllm-minitron, else
~/.cache/trtllm-minitron. To move it, move the directory and set TRTLLM_MINITRON_CACHE to
its new place: entries are found by their source model, not by where the cache is.")]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
    /// Print a machine-readable report on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Every conversion: its source, options, size, when it was last used, and whether it is
    /// fresh, stale (the source changed), orphaned (the source is gone) or broken.
    List,
    /// Remove conversions: by the name `list` shows, or every conversion of a model
    /// (its directory or hub id).
    Rm {
        /// Entry names, model directories or hub ids.
        #[arg(value_name = "ENTRY", required_unless_present = "all")]
        entries: Vec<String>,
        /// Remove every conversion.
        #[arg(long, conflicts_with = "entries")]
        all: bool,
    },
    /// Remove what nothing will reuse: orphaned, stale and broken conversions, and with
    /// --older-than also fresh ones not used for that long.
    Prune {
        /// Also remove conversions not used for this long, e.g. 30d, 12h, 2weeks.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What a `cache` command reports (the same value prints as text or JSON).
#[derive(Debug, Serialize)]
pub struct CacheReport {
    /// The cache's root directory.
    pub root: PathBuf,
    pub action: &'static str,
    /// `list`: every entry; `rm`: the removed ones.
    pub entries: Vec<CachedConversion>,
    /// `prune`: the removed ones (or, with --dry-run, those that would be), and why.
    pub pruned: Vec<Pruned>,
    pub dry_run: bool,
    /// Bytes of the entries listed, removed or pruned.
    pub bytes: u64,
}

pub fn run(args: &CacheArgs) -> Result<CacheReport> {
    let mut report = CacheReport {
        root: cache::cache_root(),
        action: "list",
        entries: Vec::new(),
        pruned: Vec::new(),
        dry_run: false,
        bytes: 0,
    };
    match &args.action {
        CacheAction::List => report.entries = cache::list()?,
        CacheAction::Rm { entries, all } => {
            report.action = "rm";
            report.entries = cache::remove(entries, *all)?;
        }
        CacheAction::Prune { older_than, dry_run } => {
            report.action = "prune";
            report.dry_run = *dry_run;
            report.pruned = cache::prune(*older_than, *dry_run)?;
        }
    }
    report.bytes = report
        .entries
        .iter()
        .chain(report.pruned.iter().map(|p| &p.entry))
        .map(|e| e.bytes)
        .sum();
    Ok(report)
}

/// "3 h ago", for a time in the past.
fn ago(unix: Option<u64>) -> String {
    let Some(t) = unix else {
        return "?".into();
    };
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(t);
    let secs = SystemTime::now()
        .duration_since(then)
        .unwrap_or_default()
        .as_secs();
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

fn source(e: &CachedConversion) -> String {
    match (&e.hub_id, &e.source) {
        (Some(id), _) => id.clone(),
        (None, Some(dir)) => dir.display().to_string(),
        (None, None) => "?".into(),
    }
}

fn options(e: &CachedConversion) -> String {
    e.options.map_or("?".into(), |o| {
        format!("{} tp{} pp{}", o.dtype, o.tp_size, o.pp_size)
    })
}

fn status(e: &CachedConversion) -> String {
    match &e.status {
        EntryStatus::Stale { why } => format!("stale ({why})"),
        EntryStatus::Broken { why } => format!("broken ({why})"),
        EntryStatus::InProgress { pid } => format!("in progress (process {pid})"),
        other => other.label().into(),
    }
}

impl fmt::Display for CacheReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = self.root.display();
        match self.action {
            "list" if self.entries.is_empty() => writeln!(f, "the conversion cache {root} is empty"),
            "list" => {
                writeln!(
                    f,
                    "conversion cache {root}: {} conversion(s), {}",
                    self.entries.len(),
                    human_size(self.bytes)
                )?;
                let mut rows =
                    vec![["NAME", "SOURCE", "OPTIONS", "SIZE", "LAST USED", "STATUS"].map(String::from)];
                for e in &self.entries {
                    rows.push([
                        e.name.clone(),
                        source(e),
                        options(e),
                        human_size(e.bytes),
                        ago(e.last_used_unix),
                        status(e),
                    ]);
                }
                let widths: Vec<usize> = (0..6)
                    .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
                    .collect();
                for row in rows {
                    let cells: Vec<String> = row
                        .iter()
                        .zip(&widths)
                        .map(|(cell, w)| format!("{cell:<w$}"))
                        .collect();
                    writeln!(f, "{}", cells.join("  ").trim_end())?;
                }
                Ok(())
            }
            "rm" => {
                for e in &self.entries {
                    writeln!(f, "removed {} ({}, {})", e.name, source(e), human_size(e.bytes))?;
                }
                writeln!(f, "freed {} in {root}", human_size(self.bytes))
            }
            _ => {
                let verb = if self.dry_run { "would remove" } else { "removed" };
                for p in &self.pruned {
                    let e = &p.entry;
                    writeln!(
                        f,
                        "{verb} {} ({}, {}): {}",
                        e.name,
                        source(e),
                        human_size(e.bytes),
                        p.reason
                    )?;
                }
                if self.pruned.is_empty() {
                    writeln!(f, "nothing to prune in {root}")
                } else if self.dry_run {
                    writeln!(f, "dry run: {} would be freed in {root}", human_size(self.bytes))
                } else {
                    writeln!(f, "freed {} in {root}", human_size(self.bytes))
                }
            }
        }
    }
}
