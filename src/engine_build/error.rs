//! Errors of `build`. Each names what is at fault (profile file and key,
//! command-line flag, builder, GPU, engine file) and what was expected, so the
//! CLI can print them as they are.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A profile file that cannot be read as TOML or has an unknown or mistyped key
    /// (the TOML error names the key and line).
    #[error("profile {file}: {problem}")]
    ProfileSyntax { file: PathBuf, problem: String },

    /// A profile key (or the command-line flag overriding it) with a value that cannot work.
    #[error("{origin}: `{key}` {problem}")]
    ProfileValue {
        /// The profile file, or the flag that set the value.
        origin: String,
        key: String,
        problem: String,
        /// The value came from a command-line flag (a usage error, exit status 2).
        from_flag: bool,
    },

    /// PROFILE names no file and no profile under `engines/`.
    #[error("{0}")]
    ProfileNotFound(String),

    #[error("{0}")]
    BuilderNotFound(String),

    /// The TensorRT-LLM / TensorRT versions behind `trtllm-build` could not be read.
    #[error("{0}")]
    Versions(String),

    /// A TensorRT-LLM version that cannot build engines with this tool.
    #[error("{0}")]
    UnsupportedVersion(String),

    #[error("{0}")]
    NoGpu(String),

    /// trtllm-build exited non-zero or was killed.
    #[error("trtllm-build {status}; last lines of its log:\n{tail}\nfull log: {}", log.display())]
    BuilderFailed {
        status: String,
        tail: String,
        log: PathBuf,
    },

    /// trtllm-build finished but its output is not the engine the profile asked for.
    #[error("trtllm-build exited successfully but its output is not the engine asked for: {problem}\nfull log: {}", log.display())]
    InvalidEngine { problem: String, log: PathBuf },

    /// Conversion, I/O and the other library errors (boxed: crate::Error is large).
    #[error(transparent)]
    Library(Box<crate::Error>),
}

impl From<crate::Error> for BuildError {
    fn from(e: crate::Error) -> Self {
        BuildError::Library(Box::new(e))
    }
}

pub type BuildResult<T> = std::result::Result<T, BuildError>;
