//! Where a model comes from: a directory, or a hub id resolved offline from the
//! local Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`). Nothing is ever downloaded.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A resolved model directory, remembering the hub id it came from.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub dir: PathBuf,
    pub hub_id: Option<String>,
    pub revision: Option<String>,
}

/// Resolves `spec`: an existing directory wins; otherwise `org/name[@revision]` is
/// looked up in the local cache.
pub fn resolve(spec: &str) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(ModelSource {
            dir: path.to_path_buf(),
            hub_id: None,
            revision: None,
        });
    }
    if path.exists() {
        return Err(Error::ModelNotFound(format!(
            "{spec} is a file; expected a model directory (holding config.json) or a hub id such as nvidia/Minitron-8B-Base"
        )));
    }
    let Some((id, revision)) = parse_hub_id(spec) else {
        return Err(Error::ModelNotFound(format!(
            "{spec}: no such directory, and not a hub id of the form org/name (e.g. nvidia/Minitron-8B-Base)"
        )));
    };
    resolve_in_cache(&hub_cache_dir(), id, revision)
}

/// `org/name` or `org/name@revision`; anything that could escape the cache is refused.
fn parse_hub_id(spec: &str) -> Option<(&str, Option<&str>)> {
    let (id, rev) = match spec.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (spec, None),
    };
    let ok_part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let (org, name) = id.split_once('/')?;
    if !ok_part(org) || !ok_part(name) || rev.is_some_and(|r| !ok_part(r)) {
        return None;
    }
    Some((id, rev))
}

/// The hub cache directory, following huggingface_hub's environment variables.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

/// Finds `models--org--name/snapshots/<commit>` for a revision (default `main`).
pub fn resolve_in_cache(cache: &Path, id: &str, revision: Option<&str>) -> Result<ModelSource> {
    let repo_dir = cache.join(format!("models--{}", id.replace('/', "--")));
    let rev = revision.unwrap_or("main");
    let not_cached = |detail: String| {
        Error::ModelNotFound(format!(
            "{id} is not in the local Hugging Face cache ({detail}).\n\
             This tool never downloads. Fetch it first, e.g.:\n  \
             hf download {id}{rev_flag}\n\
             (or `huggingface-cli download {id}`), or set HF_HOME / HF_HUB_CACHE to the cache that holds it, \
             or pass the model directory itself.",
            rev_flag = revision.map(|r| format!(" --revision {r}")).unwrap_or_default()
        ))
    };
    if !repo_dir.is_dir() {
        return Err(not_cached(format!("looked for {}", repo_dir.display())));
    }
    // A ref names a commit; a revision may also be a commit hash directly.
    let ref_file = repo_dir.join("refs").join(rev);
    let commit = match std::fs::read_to_string(&ref_file) {
        Ok(text) => text.trim().to_string(),
        Err(_) => rev.to_string(),
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if !snapshot.join("config.json").is_file() {
        return Err(not_cached(format!(
            "no snapshot with config.json at {}",
            snapshot.display()
        )));
    }
    Ok(ModelSource {
        dir: snapshot,
        hub_id: Some(id.to_string()),
        revision: Some(commit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_checked() {
        assert_eq!(
            parse_hub_id("nvidia/Minitron-8B-Base"),
            Some(("nvidia/Minitron-8B-Base", None))
        );
        assert_eq!(
            parse_hub_id("nvidia/Minitron-8B-Base@v1"),
            Some(("nvidia/Minitron-8B-Base", Some("v1")))
        );
        for bad in ["../x", "a/../b", "a/b/c", "nvidia", "/abs/path", "a/b@../c"] {
            assert_eq!(parse_hub_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolves_a_cached_snapshot_and_explains_a_missing_one() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--nvidia--Minitron-8B-Base");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        let src = resolve_in_cache(cache.path(), "nvidia/Minitron-8B-Base", None).unwrap();
        assert_eq!(src.dir, snap);
        assert_eq!(src.revision.as_deref(), Some("abc123"));

        let err = resolve_in_cache(cache.path(), "nvidia/Minitron-4B-Base", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the local Hugging Face cache"), "{err}");
        assert!(err.contains("hf download nvidia/Minitron-4B-Base"), "{err}");
    }
}
