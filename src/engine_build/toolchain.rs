//! Finding `trtllm-build` and the TensorRT-LLM and TensorRT versions it will
//! use.
//!
//! `trtllm-build` 1.2 has no `--version` flag (its argparse parser would reject
//! it), so the versions are read by the Python interpreter that runs it: the
//! one named on its `#!` line (a pip console script), else `python3` beside it,
//! else `python3` on PATH; `TRTLLM_MINITRON_PYTHON` overrides all three. That
//! interpreter locates the `tensorrt_llm` and `tensorrt` packages on its own
//! `sys.path` (the ones `trtllm-build` imports) and reads `__version__` from
//! their source without importing them: importing `tensorrt_llm` takes many
//! seconds and initialises CUDA and MPI. Installed-package metadata, then a
//! real import, are the fallbacks.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::error::{BuildError, BuildResult};
use crate::trtllm::build_manifest::Toolchain;

/// The first TensorRT-LLM version without the TensorRT engine flow.
pub const FIRST_WITHOUT_ENGINES: (u64, u64) = (1, 3);
/// The oldest version whose `trtllm-build` flags this tool passes.
pub const OLDEST_SUPPORTED: (u64, u64) = (1, 0);

/// `--trtllm-build PATH`, else `TRTLLM_BUILD`, else `trtllm-build` on PATH.
pub fn locate(explicit: Option<&Path>) -> BuildResult<PathBuf> {
    if let Some(p) = explicit {
        return check_executable(p, "--trtllm-build");
    }
    if let Some(p) = std::env::var_os("TRTLLM_BUILD").filter(|v| !v.is_empty()) {
        return check_executable(Path::new(&p), "TRTLLM_BUILD");
    }
    find_on_path("trtllm-build").ok_or_else(|| {
        BuildError::BuilderNotFound(
            "trtllm-build was not found: pass --trtllm-build PATH, set TRTLLM_BUILD, or put it on PATH. \
             It comes with TensorRT-LLM 1.2.x (NVIDIA's TensorRT-LLM 1.2 release container has it on PATH); \
             see \"Building a real engine\" in README.md"
                .into(),
        )
    })
}

fn check_executable(p: &Path, source: &str) -> BuildResult<PathBuf> {
    // A bare name is looked up on PATH, as a shell would.
    let resolved = if p.components().count() == 1 && !p.exists() {
        find_on_path(&p.to_string_lossy())
    } else {
        Some(p.to_path_buf())
    };
    match resolved {
        Some(path) if is_executable(&path) => Ok(path),
        _ => Err(BuildError::BuilderNotFound(format!(
            "{source} names {}, which is not an executable file",
            p.display()
        ))),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The interpreter that runs `builder`.
pub fn python_for(builder: &Path) -> BuildResult<PathBuf> {
    if let Some(p) = std::env::var_os("TRTLLM_MINITRON_PYTHON").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(interp) = shebang_interpreter(builder) {
        return Ok(interp);
    }
    let beside = builder.parent().map(|d| d.join("python3"));
    if let Some(b) = beside.filter(|b| is_executable(b)) {
        return Ok(b);
    }
    find_on_path("python3").ok_or_else(|| {
        BuildError::Versions(format!(
            "cannot find the Python interpreter that runs {}: it has no #! line naming one, and there is no python3 beside it or on PATH; set TRTLLM_MINITRON_PYTHON",
            builder.display()
        ))
    })
}

/// `#!/abs/python3.12` -> that path; `#!/usr/bin/env [-S] python3` -> python3 on PATH.
fn shebang_interpreter(builder: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let n = std::fs::File::open(builder).ok()?.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    let line = text.strip_prefix("#!")?.lines().next()?.trim();
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if Path::new(program).file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        return find_on_path(name);
    }
    program.contains("python").then(|| PathBuf::from(program))
}

/// Prints one line, `TRTLLM_MINITRON_VERSIONS {json}`, after anything the packages print.
const PROBE: &str = r#"
import importlib.util, json, re, sys
def source_version(name, files):
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is None:
        return None, None
    where = spec.origin or (list(spec.submodule_search_locations or []) or [None])[0]
    for d in list(spec.submodule_search_locations or []):
        for f in files:
            try:
                text = open(d + "/" + f, encoding="utf-8").read()
            except OSError:
                continue
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
            if m:
                return m.group(1), where
    return None, where
def metadata_version(dists):
    import importlib.metadata as md
    for d in dists:
        try:
            return md.version(d)
        except Exception:
            pass
    return None
def import_version(name):
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        return getattr(__import__(name), "__version__", None)
    except Exception as e:
        print("import %s failed: %r" % (name, e), file=sys.stderr)
        return None
    finally:
        sys.stdout = out
found = {"python": sys.version.split()[0]}
for key, files, dists in [
    ("tensorrt_llm", ["version.py", "__init__.py"], ["tensorrt_llm", "tensorrt-llm"]),
    ("tensorrt", ["__init__.py", "version.py"], ["tensorrt", "tensorrt_cu13", "tensorrt_cu12", "tensorrt_cu12_bindings"]),
]:
    version, where = source_version(key, files)
    version = version or metadata_version(dists) or (import_version(key) if where else None)
    found[key] = version
    found[key + "_location"] = where
print("TRTLLM_MINITRON_VERSIONS " + json.dumps(found))
"#;

#[derive(Debug, Deserialize)]
struct ProbeResult {
    tensorrt_llm: Option<String>,
    tensorrt: Option<String>,
    tensorrt_llm_location: Option<String>,
}

/// Reads the versions `builder` will use.
pub fn detect(builder: &Path) -> BuildResult<Toolchain> {
    let python = python_for(builder)?;
    let out = Command::new(&python).args(["-c", PROBE]).output().map_err(|e| {
        BuildError::Versions(format!(
            "cannot run {} (the Python that runs {}) to read the TensorRT-LLM version: {e}",
            python.display(),
            builder.display()
        ))
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("TRTLLM_MINITRON_VERSIONS "));
    let parsed: Option<ProbeResult> = line.and_then(|l| serde_json::from_str(l).ok());
    let Some(found) = parsed else {
        return Err(BuildError::Versions(format!(
            "{} could not report the TensorRT-LLM version ({}): {}",
            python.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    };
    let where_ = format!("for {} (Python {})", builder.display(), python.display());
    let trtllm = found.tensorrt_llm.ok_or_else(|| {
        BuildError::Versions(format!(
            "the tensorrt_llm Python package is not installed {where_}; trtllm-build cannot run without it"
        ))
    })?;
    let trt = found.tensorrt.ok_or_else(|| {
        BuildError::Versions(format!("the tensorrt Python package is not installed {where_}"))
    })?;
    Ok(Toolchain {
        trtllm_build: builder.to_path_buf(),
        python,
        tensorrt_llm_version: trtllm,
        tensorrt_version: trt,
        tensorrt_llm_location: found.tensorrt_llm_location,
    })
}

/// `1.2.0rc6` -> (1, 2).
pub fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_text: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor_text.parse().ok()?))
}

/// Refuses versions that cannot build engines with these flags.
pub fn check_supported(t: &Toolchain) -> BuildResult<()> {
    let v = &t.tensorrt_llm_version;
    let Some(mm) = major_minor(v) else {
        return Err(BuildError::UnsupportedVersion(format!(
            "cannot read TensorRT-LLM version \"{v}\" (from {}); expected something like 1.2.0",
            t.python.display()
        )));
    };
    if mm >= FIRST_WITHOUT_ENGINES {
        return Err(BuildError::UnsupportedVersion(format!(
            "TensorRT-LLM {v} (used by {}) has no TensorRT engine flow: trtllm-build and the C++ engine Executor \
             were removed in 1.3. Build with TensorRT-LLM 1.2.x, e.g. inside NVIDIA's TensorRT-LLM 1.2 release \
             container, and point --trtllm-build (or TRTLLM_BUILD) at its trtllm-build",
            t.trtllm_build.display()
        )));
    }
    if mm < OLDEST_SUPPORTED {
        return Err(BuildError::UnsupportedVersion(format!(
            "TensorRT-LLM {v} (used by {}) is older than 1.0: its trtllm-build takes other flags and writes an \
             engine format the 1.2 runtime cannot load. Use TensorRT-LLM 1.2.x",
            t.trtllm_build.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(major_minor("1.2.0"), Some((1, 2)));
        assert_eq!(major_minor("1.3.0rc1"), Some((1, 3)));
        assert_eq!(major_minor("0.21.0"), Some((0, 21)));
        assert_eq!(major_minor("1.2rc3"), Some((1, 2)));
        assert_eq!(major_minor("one"), None);
        let t = |v: &str| Toolchain {
            trtllm_build: "/x/trtllm-build".into(),
            python: "/x/python3".into(),
            tensorrt_llm_version: v.into(),
            tensorrt_version: "10".into(),
            tensorrt_llm_location: None,
        };
        assert!(check_supported(&t("1.2.0")).is_ok());
        assert!(check_supported(&t("1.0.0")).is_ok());
        let e = check_supported(&t("1.3.0rc1")).unwrap_err().to_string();
        assert!(e.contains("removed in 1.3"), "{e}");
        assert!(check_supported(&t("0.17.0")).is_err());
    }

    #[test]
    fn shebangs() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("trtllm-build");
        std::fs::write(&script, "#!/opt/venv/bin/python3.12\nimport sys\n").unwrap();
        assert_eq!(
            shebang_interpreter(&script),
            Some(PathBuf::from("/opt/venv/bin/python3.12"))
        );
        std::fs::write(&script, "#!/bin/bash\necho\n").unwrap();
        assert_eq!(shebang_interpreter(&script), None);
    }
}
