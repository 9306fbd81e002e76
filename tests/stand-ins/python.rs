//! STAND-IN for the `python3` that runs `trtllm-build` (a pip console script
//! sits beside its interpreter), as `build` uses it: to run trtllm-minitron's
//! version probe (`PROBE` in `src/engine_build/toolchain.rs`) with `-c`.
//! It runs nothing else: any other code is refused with status 2.
//!
//! For the probe it answers what CPython running that script answers with
//! the tests' packages on `PYTHONPATH`: one line
//! `TRTLLM_MINITRON_VERSIONS {json}` with `python`, and for `tensorrt_llm`
//! and `tensorrt` the version read from the package's source (`version.py`
//! then `__init__.py` for tensorrt_llm, the other order for tensorrt) and
//! the package's location (its `__init__.py`), both `null` when the package
//! is not found.
//! There is no installed-package metadata to fall back on, as in a
//! directory of bare packages.

use crate::json::Json;
use crate::packages;

/// The marker the probe prints before its JSON; its presence identifies the probe.
const PROBE_MARKER: &str = "TRTLLM_MINITRON_VERSIONS";

pub fn main(args: &[String]) -> i32 {
    let code = match args {
        [flag, code] if flag == "-c" => code,
        _ => {
            eprintln!(
                "stand-in python3: only `-c <trtllm-minitron's version probe>` is supported, got {args:?}"
            );
            return 2;
        }
    };
    if !code.contains(PROBE_MARKER) {
        eprintln!(
            "stand-in python3: this is not trtllm-minitron's version probe; the stand-in runs nothing else"
        );
        return 2;
    }
    let mut found = Json::Object(vec![("python".into(), Json::str("3.12.3"))]);
    for (name, files) in [
        ("tensorrt_llm", ["version.py", "__init__.py"]),
        ("tensorrt", ["__init__.py", "version.py"]),
    ] {
        let pkg = packages::find(name);
        let version = pkg.as_deref().and_then(|p| packages::source_version(p, &files));
        // `find_spec(name).origin`: a package's __init__.py.
        let location = pkg.map(|p| p.join("__init__.py").display().to_string());
        found.set(name, Json::opt_str(version.as_deref()));
        found.set(&format!("{name}_location"), Json::opt_str(location.as_deref()));
    }
    println!("{PROBE_MARKER} {}", found.to_text());
    0
}
