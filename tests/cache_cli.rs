//! `trtllm-minitron cache list|rm|prune`: the conversion cache that run,
//! check and build convert into, managed.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

/// A cache of the test's own, and copies of fixture models to convert into it.
struct Sandbox {
    cache: tempfile::TempDir,
    models: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            cache: tempfile::tempdir().unwrap(),
            models: tempfile::tempdir().unwrap(),
        }
    }

    /// A copy of fixture `name` at `models/as_name`.
    fn model(&self, name: &str, as_name: &str) -> PathBuf {
        let dst = self.models.path().join(as_name);
        std::fs::create_dir(&dst).unwrap();
        for entry in std::fs::read_dir(model(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
        dst
    }

    /// `run` on `src`, which converts it into the cache (or reuses it).
    fn use_model(&self, src: &Path) {
        let out = cli_in(
            self.cache.path(),
            &[
                "run",
                "--model",
                src.to_str().unwrap(),
                "--input-ids",
                "1,2",
                "--max-new-tokens",
                "1",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn cache(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["cache"];
        all.extend_from_slice(args);
        cli_in(self.cache.path(), &all)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cache(&all);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn entries(&self) -> Vec<Value> {
        self.json(&["list"])["entries"].as_array().unwrap().clone()
    }

    fn entry_of(&self, src: &Path) -> Value {
        let src = std::fs::canonicalize(src).unwrap();
        self.entries()
            .into_iter()
            .find(|e| e["source"] == src.to_str().unwrap())
            .unwrap_or_else(|| panic!("no entry of {}", src.display()))
    }

    fn entries_dir(&self) -> PathBuf {
        self.cache.path().join("checkpoints")
    }
}

/// Sets when an entry was last used.
fn used_ago(entry_dir: &Path, ago: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(entry_dir.join(".last-used"))
        .unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// fresh, stale (source changed), orphaned (source gone), and what a killed
/// conversion leaves: one of each, told apart.
fn cache_of_every_kind(s: &Sandbox) -> (PathBuf, PathBuf) {
    let fresh = s.model("mha-f32-safetensors", "fresh");
    let stale = s.model("mha-f32-safetensors", "stale");
    let gone = s.model("mha-f32-safetensors", "gone");
    for m in [&fresh, &stale, &gone] {
        s.use_model(m);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(stale.join("config.json"))
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    // A staging directory whose process is gone (pid beyond any pid_max).
    let killed = s.entries_dir().join(".x-0123.partial-4999999-17");
    std::fs::create_dir(&killed).unwrap();
    std::fs::write(killed.join("rank0.safetensors"), vec![0u8; 1000]).unwrap();
    (fresh, stale)
}

#[test]
fn list_says_source_options_size_last_use_and_status() {
    let s = Sandbox::new();
    assert!(stdout(&s.cache(&["list"])).contains("is empty"));
    let (fresh, stale) = cache_of_every_kind(&s);
    let entries = s.entries();
    assert_eq!(entries.len(), 4, "{entries:?}");
    let status = |e: &Value| e["status"].as_str().unwrap().to_string();
    let f = s.entry_of(&fresh);
    assert_eq!(status(&f), "fresh");
    assert_eq!(f["options"]["dtype"], "float32");
    assert_eq!(
        (f["options"]["tp_size"].as_u64(), f["options"]["pp_size"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(f["bytes"].as_u64().unwrap() > 1000, "{f}");
    let used = f["last_used_unix"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - used < 120, "{used} vs {now}");
    let st = s.entry_of(&stale);
    assert_eq!(status(&st), "stale");
    assert!(
        st["why"].as_str().unwrap().contains("config.json changed"),
        "{st}"
    );
    let kinds: Vec<String> = entries.iter().map(status).collect();
    assert!(kinds.contains(&"orphaned".to_string()), "{kinds:?}");
    let broken = entries.iter().find(|e| status(e) == "broken").unwrap();
    assert!(
        broken["why"].as_str().unwrap().contains("did not finish"),
        "{broken}"
    );
    assert_eq!(broken["bytes"], 1000);

    let text = stdout(&s.cache(&["list"]));
    for words in [
        "NAME",
        "LAST USED",
        "float32 tp1 pp1",
        "just now",
        "fresh",
        "stale (",
        "orphaned",
        "broken (",
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }
    assert!(text.contains(&s.cache.path().display().to_string()), "{text}");
}

#[test]
fn using_an_entry_records_when() {
    let s = Sandbox::new();
    let m = s.model("mha-f32-safetensors", "m");
    s.use_model(&m);
    let dir = PathBuf::from(s.entry_of(&m)["dir"].as_str().unwrap());
    used_ago(&dir, Duration::from_secs(3 * 86400));
    let before = s.entry_of(&m)["last_used_unix"].as_u64().unwrap();
    assert!(stdout(&s.cache(&["list"])).contains("3 days ago"));
    s.use_model(&m); // fresh: reused, not converted
    let after = s.entry_of(&m)["last_used_unix"].as_u64().unwrap();
    assert!(after >= before + 3 * 86400 - 5, "{before} -> {after}");
}

#[test]
fn prune_removes_what_nothing_reuses_and_older_than_the_idle() {
    let s = Sandbox::new();
    let (fresh, _stale) = cache_of_every_kind(&s);
    let dry = s.json(&["prune", "--dry-run"]);
    assert_eq!(dry["pruned"].as_array().unwrap().len(), 3, "{dry}");
    assert_eq!(s.entries().len(), 4, "a dry run removed something");
    let text = stdout(&s.cache(&["prune", "--dry-run"]));
    assert!(
        text.contains("would remove") && text.contains("its source is gone"),
        "{text}"
    );

    let done = s.json(&["prune"]);
    let reasons: Vec<&str> = done["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(done["bytes"].as_u64().unwrap() > 1000);
    let left = s.entries();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["status"], "fresh");
    assert_eq!(listing(&s.entries_dir()).len(), 1);

    // --older-than: a fresh entry idle for longer goes too, a recent one stays.
    let dir = PathBuf::from(s.entry_of(&fresh)["dir"].as_str().unwrap());
    used_ago(&dir, Duration::from_secs(2 * 3600));
    assert!(
        s.json(&["prune", "--older-than", "3h"])["pruned"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let done = s.json(&["prune", "--older-than", "1h"]);
    assert!(
        done["pruned"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not used for 2h"),
        "{done}"
    );
    assert!(s.entries().is_empty());

    let bad = s.cache(&["prune", "--older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--older-than <DURATION>"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn rm_by_name_or_by_model_and_all() {
    let s = Sandbox::new();
    let a = s.model("mha-f32-safetensors", "a");
    let b = s.model("gqa-headdim-bf16", "b");
    let c = s.model("mha-f32-safetensors", "c");
    for m in [&a, &b, &c] {
        s.use_model(m);
    }
    let name = s.entry_of(&a)["name"].as_str().unwrap().to_string();
    let out = s.cache(&["rm", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removed {name}")),
        "{}",
        stdout(&out)
    );
    // A model directory removes its conversions; the model itself is untouched.
    let before = snapshot(&b);
    let removed = s.json(&["rm", b.to_str().unwrap()]);
    assert_eq!(removed["entries"].as_array().unwrap().len(), 1);
    assert!(snapshot(&b) == before);
    assert_eq!(s.entries().len(), 1);
    // Nothing by that name: an error, nothing removed.
    let out = s.cache(&["rm", "no-such-entry"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no cache entry is named no-such-entry"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.entries().len(), 1);
    assert_eq!(
        s.cache(&["rm"]).status.code(),
        Some(2),
        "rm needs entries or --all"
    );
    assert!(s.cache(&["rm", "--all"]).status.success());
    assert!(s.entries().is_empty());
    assert!(c.join("config.json").is_file());
}
