//! Python packages as the stand-ins find them: the tests' throwaway
//! `tensorrt_llm` and `tensorrt` packages, which carry nothing but a
//! `__version__`. Python looks a top-level package up along `sys.path`, whose
//! first entries are `PYTHONPATH`'s directories in order, and a regular
//! package is a directory holding `__init__.py` (the Python reference, "The
//! import system", regular packages and `sys.path`). The stand-ins search
//! `PYTHONPATH` only: there is no site-packages behind them.

use std::path::PathBuf;

/// The directory of package `name`: the first `PYTHONPATH` entry that has it.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PYTHONPATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|pkg| pkg.join("__init__.py").is_file())
}

/// `__version__ = "..."` from the first of `files` in the package that
/// assigns it: what trtllm-minitron's version probe reads
/// (`src/engine_build/toolchain.rs`, `source_version`), and what
/// `tensorrt_llm/version.py` holds in TensorRT-LLM (`__init__.py` imports it).
pub fn source_version(pkg: &std::path::Path, files: &[&str]) -> Option<String> {
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(pkg.join(f)).ok()?;
        text.lines().find_map(version_assignment)
    })
}

/// `__version__ = "1.2.0"` (or single quotes) at the start of a line.
fn version_assignment(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("__version__")?
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    let end = body.find(['"', '\''])?;
    (body[end..].starts_with(quote) && end > 0).then(|| body[..end].to_string())
}

/// What `import tensorrt_llm; tensorrt_llm.__version__` gives the stand-in
/// builder, or the exception Python would raise.
pub fn tensorrt_llm_version() -> Result<String, String> {
    let pkg = find("tensorrt_llm").ok_or("ModuleNotFoundError: No module named 'tensorrt_llm'")?;
    source_version(&pkg, &["version.py", "__init__.py"])
        .ok_or_else(|| "AttributeError: module 'tensorrt_llm' has no attribute '__version__'".to_string())
}
