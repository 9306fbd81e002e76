//! Checks an engine directory before TensorRT-LLM loads it, so a mismatch is a
//! clear message rather than TensorRT's ("The engine plan file is generated on
//! an incompatible device..."): the build manifest's GPU architecture and
//! TensorRT-LLM version against this machine and the linked library, else
//! config.json's `version`; one GPU only; and the loaded library against the
//! headers the bridge was compiled against.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::trtllm::build_manifest::{BUILD_MANIFEST_FILE, BuildManifest};
use crate::trtllm::config::DirConfig;

/// What `run` needs to know about an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineInfo {
    pub vocab_size: usize,
    pub world_size: usize,
    /// config.json's `version`: the TensorRT-LLM that built it.
    pub version: Option<String>,
    /// Built with `--gather_generation_logits` (`build_config.gather_generation_logits`).
    pub gathers_generation_logits: bool,
    /// Built with `--gather_context_logits` (`build_config.gather_context_logits`):
    /// without it the executor refuses requests for context logits.
    pub gathers_context_logits: bool,
    /// `build_config.max_seq_len`: prompt and generated tokens together.
    pub max_seq_len: Option<usize>,
    /// `build_config.max_batch_size`: requests the engine runs at once.
    pub max_batch_size: Option<usize>,
    /// `build_config.max_input_len`: prompt tokens of one request.
    pub max_input_len: Option<usize>,
}

/// Reads the engine's config.json.
pub fn engine_info(dir: &Path) -> Result<EngineInfo> {
    let DirConfig { path, json: v, .. } = DirConfig::read(dir)?;
    let field = |name: &str, problem: &str| Error::ConfigField {
        path: path.clone(),
        field: name.into(),
        problem: problem.into(),
    };
    let pretrained = v.get("pretrained_config").ok_or_else(|| {
        field(
            "pretrained_config",
            "missing: this is not a TensorRT-LLM engine config",
        )
    })?;
    let vocab_size = pretrained
        .get("vocab_size")
        .and_then(Value::as_u64)
        .ok_or_else(|| field("pretrained_config.vocab_size", "missing or not a number"))?
        as usize;
    let mapping = pretrained.get("mapping");
    let world_size = mapping
        .and_then(|m| m.get("world_size"))
        .and_then(Value::as_u64)
        .or_else(|| {
            let tp = mapping?.get("tp_size")?.as_u64()?;
            let pp = mapping?.get("pp_size").and_then(Value::as_u64).unwrap_or(1);
            Some(tp * pp)
        })
        .unwrap_or(1) as usize;
    let build_size = |key: &str| {
        v.pointer(&format!("/build_config/{key}"))
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    };
    Ok(EngineInfo {
        vocab_size,
        world_size,
        version: v.get("version").and_then(Value::as_str).map(str::to_string),
        gathers_generation_logits: v
            .pointer("/build_config/gather_generation_logits")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        gathers_context_logits: v
            .pointer("/build_config/gather_context_logits")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_seq_len: build_size("max_seq_len"),
        max_batch_size: build_size("max_batch_size"),
        max_input_len: build_size("max_input_len"),
    })
}

/// Refuses an engine this process cannot run: built for another GPU
/// architecture (`sm`: this machine's, when known) or TensorRT-LLM version
/// (`runtime_version`: the linked library's), or for more than one GPU.
pub fn check_engine(dir: &Path, sm: Option<&str>, runtime_version: &str) -> Result<EngineInfo> {
    let info = engine_info(dir)?;
    let refuse = |why: String| Error::InvalidInput(format!("{}: {why}", dir.display()));
    if info.world_size > 1 {
        return Err(refuse(format!(
            "this engine is split over {} GPUs (tp_size x pp_size); `run --backend trtllm` drives \
             single-GPU engines only (one rank, rank0.engine), and running it under mpirun does not \
             change that: build the engine with tp_size = pp_size = 1 (the reference backend runs \
             multi-rank checkpoints on the CPU)",
            info.world_size
        )));
    }
    if dir.join(BUILD_MANIFEST_FILE).is_file() {
        let manifest = BuildManifest::read(dir)?;
        match sm {
            Some(sm) => manifest.check_runtime(sm, runtime_version).map_err(refuse)?,
            None => {
                let built = &manifest.toolchain.tensorrt_llm_version;
                if built != runtime_version {
                    return Err(refuse(format!(
                        "this engine was built by TensorRT-LLM {built}; this runtime is TensorRT-LLM \
                         {runtime_version}: rebuild it with `trtllm-minitron build`"
                    )));
                }
            }
        }
    } else if let Some(built) = &info.version
        && built != runtime_version
    {
        return Err(refuse(format!(
            "config.json says TensorRT-LLM {built} built this engine; this runtime is TensorRT-LLM \
             {runtime_version}: engines only load with the version that built them"
        )));
    }
    Ok(info)
}

/// Refuses a library of another TensorRT-LLM release than the headers the
/// bridge was compiled against (`headers`, when they said): config classes
/// cross by value with the headers' layout, so a mismatch that links cleanly
/// (a library swapped after the build, or an `LD_LIBRARY_PATH` naming another
/// installation) would corrupt memory rather than fail.
pub fn check_library(headers: Option<&str>, library: &str) -> Result<()> {
    match headers {
        Some(h) if h != library => Err(Error::InvalidInput(format!(
            "this binary was compiled against the headers of TensorRT-LLM {h}, but the TensorRT-LLM \
             library it loaded is {library}: rebuild it (cargo build --features trtllm) against the \
             installed version, or load the library it was built with"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn reads_vocab_and_world_size() {
        let dir = engine(
            r#"{"version": "1.2.0", "pretrained_config": {"vocab_size": 256000,
                "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1}}, "build_config": {}}"#,
        );
        let info = check_engine(dir.path(), Some("sm80"), "1.2.0").unwrap();
        assert_eq!((info.vocab_size, info.world_size), (256000, 1));
        assert!(!info.gathers_generation_logits && !info.gathers_context_logits);
        assert_eq!(
            (info.max_seq_len, info.max_batch_size, info.max_input_len),
            (None, None, None)
        );
    }

    #[test]
    fn reads_the_sizes_the_engine_was_built_for() {
        let dir = engine(
            r#"{"pretrained_config": {"vocab_size": 8},
                "build_config": {"max_batch_size": 8, "max_input_len": 2048, "max_seq_len": 4096}}"#,
        );
        let info = engine_info(dir.path()).unwrap();
        assert_eq!(
            (info.max_batch_size, info.max_input_len, info.max_seq_len),
            (Some(8), Some(2048), Some(4096))
        );
    }

    #[test]
    fn refuses_another_version_without_a_manifest() {
        let dir =
            engine(r#"{"version": "1.1.0", "pretrained_config": {"vocab_size": 8}, "build_config": {}}"#);
        let err = check_engine(dir.path(), None, "1.2.0").unwrap_err().to_string();
        assert!(err.contains("1.1.0") && err.contains("1.2.0"), "{err}");
    }

    #[test]
    fn refuses_multi_gpu_engines() {
        let dir = engine(
            r#"{"pretrained_config": {"vocab_size": 8, "mapping": {"tp_size": 2, "pp_size": 1}},
                "build_config": {}}"#,
        );
        let err = check_engine(dir.path(), None, "1.2.0").unwrap_err().to_string();
        assert!(
            err.contains("2 GPUs") && err.contains("single-GPU engines only"),
            "{err}"
        );
        assert!(err.contains("mpirun does not change that"), "{err}");
    }

    #[test]
    fn refuses_a_library_of_another_release_than_the_headers() {
        assert!(check_library(Some("1.2.0"), "1.2.0").is_ok());
        // Headers without version.h: nothing to compare.
        assert!(check_library(None, "1.2.0").is_ok());
        let err = check_library(Some("1.2.0"), "1.2.0rc2").unwrap_err().to_string();
        assert!(
            err.contains("headers of TensorRT-LLM 1.2.0") && err.contains("is 1.2.0rc2"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_checkpoint_config() {
        let dir = engine(r#"{"architecture": "NemotronForCausalLM"}"#);
        assert!(check_engine(dir.path(), None, "1.2.0").is_err());
    }
}
