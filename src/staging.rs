//! Atomic output directories: everything is written into a hidden sibling
//! directory, which is renamed into place only when complete. Dropping an
//! uncommitted stage (error, Ctrl-C) removes it, so nothing half-written is
//! ever seen at the output path.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub struct StagedDir {
    target: PathBuf,
    temp: PathBuf,
    /// Parent directories we created, removed again if we fail.
    created_parents: Vec<PathBuf>,
    committed: bool,
}

/// What this tool writes into an output directory, so it knows one of its own:
/// the file every such directory holds, and what to call the directory.
#[derive(Debug, Clone, Copy)]
pub struct Ours {
    /// A file only this tool writes there (a manifest).
    pub marker: &'static str,
    /// "conversion", "engine".
    pub what: &'static str,
}

/// Whether the output path may be written: it does not exist, is an empty
/// directory, or (with `replace`) holds an earlier output of ours. A
/// directory holding anything else is never replaced, whatever `replace`
/// says: its contents are named in the error.
pub fn check_replaceable(target: &Path, ours: Ours, replace: bool) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    if !target.is_dir() {
        return Err(Error::InvalidOutput(format!(
            "output {} exists and is not a directory",
            target.display()
        )));
    }
    let Some(contents) = contents(target)? else {
        return Ok(());
    };
    if target.join(ours.marker).is_file() {
        return if replace {
            Ok(())
        } else {
            Err(Error::OutputExists {
                path: target.to_path_buf(),
                what: ours.what,
            })
        };
    }
    Err(Error::OutputNotOurs {
        path: target.to_path_buf(),
        contents,
        marker: ours.marker,
    })
}

/// What `dir` holds, for a message: its first names in order (directories
/// with a `/`) and how many more; `None` when it is empty.
pub fn contents(dir: &Path) -> Result<Option<String>> {
    const SHOWN: usize = 8;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let slash = if entry.path().is_dir() { "/" } else { "" };
        names.push(format!("{}{slash}", entry.file_name().to_string_lossy()));
    }
    if names.is_empty() {
        return Ok(None);
    }
    names.sort();
    let mut listed = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        listed.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    Ok(Some(listed))
}

impl StagedDir {
    /// Prepares to write `target` (see [`check_replaceable`]); an existing
    /// target is only replaced at commit.
    pub fn begin(target: &Path, ours: Ours, replace: bool) -> Result<Self> {
        check_replaceable(target, ours, replace)?;
        let name = target
            .file_name()
            .ok_or_else(|| {
                Error::InvalidOutput(format!("output {} has no directory name", target.display()))
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut created_parents = Vec::new();
        let mut missing = parent.clone();
        while !missing.exists() {
            created_parents.push(missing.clone());
            match missing.parent() {
                Some(p) if !p.as_os_str().is_empty() => missing = p.to_path_buf(),
                _ => break,
            }
        }
        std::fs::create_dir_all(&parent).at(&parent)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let temp = parent.join(format!(".{name}.partial-{}-{nanos}", std::process::id()));
        let stage = StagedDir {
            target: target.to_path_buf(),
            temp: temp.clone(),
            created_parents,
            committed: false,
        };
        std::fs::create_dir(&temp).at(&temp)?;
        Ok(stage)
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Moves the finished directory into place, replacing an existing target.
    pub fn commit(mut self) -> Result<()> {
        let old = self.temp.with_file_name(format!(
            "{}.replaced",
            self.temp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let replacing = self.target.exists();
        if replacing {
            std::fs::rename(&self.target, &old).at(&self.target)?;
        }
        if let Err(e) = std::fs::rename(&self.temp, &self.target) {
            if replacing {
                // Put the previous output back rather than leave nothing.
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(Error::io(&self.target, e));
        }
        self.committed = true;
        if replacing {
            std::fs::remove_dir_all(&old).at(&old)?;
        }
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.temp);
        // Innermost first; remove_dir only removes empty directories.
        for dir in &self.created_parents {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `path` made absolute through its deepest existing ancestor (the path itself
/// may not exist yet), so two spellings of one place compare equal.
pub fn absolute(path: &Path) -> PathBuf {
    let mut probe = path.to_path_buf();
    let mut rest = Vec::new();
    while !probe.exists() {
        match (probe.file_name(), probe.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                probe = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(&probe).unwrap_or(probe);
    out.extend(rest.iter().rev());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Ours = Ours {
        marker: "manifest.json",
        what: "conversion",
    };

    #[test]
    fn nothing_is_left_when_dropped() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("a/b/out");
        let stage = StagedDir::begin(&target, OURS, false).unwrap();
        std::fs::write(stage.path().join("x"), "1").unwrap();
        drop(stage);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_output_of_ours_is_replaced_only_when_asked_at_commit() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("manifest.json"), "{}").unwrap();
        std::fs::write(target.join("old"), "1").unwrap();
        assert!(matches!(
            StagedDir::begin(&target, OURS, false),
            Err(Error::OutputExists { .. })
        ));
        let stage = StagedDir::begin(&target, OURS, true).unwrap();
        std::fs::write(stage.path().join("new"), "2").unwrap();
        assert!(target.join("old").exists(), "replaced before commit");
        stage.commit().unwrap();
        assert!(target.join("new").exists() && !target.join("old").exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn anything_else_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("out");
        std::fs::create_dir_all(target.join("sub")).unwrap();
        for i in 0..10 {
            std::fs::write(target.join(format!("f{i}")), "x").unwrap();
        }
        let err = StagedDir::begin(&target, OURS, true).err().unwrap().to_string();
        assert!(err.contains("f0, f1, f2, f3, f4, f5, f6, f7 and 3 more"), "{err}");
        assert!(err.contains("manifest.json"), "{err}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
        // An empty directory is no one's.
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        StagedDir::begin(&empty, OURS, false).unwrap().commit().unwrap();
    }
}
