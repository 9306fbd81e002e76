//! The library's error type. Every variant names the file, field or tensor at fault
//! and says what was expected, so the CLI can print it as is.
//!
//! This module imports nothing from the crate, so every module can use it.
//! Modules with their own typed errors (the torch `.bin` reader, the
//! tokenizer, sampling options, parallel mappings) convert them into it where
//! those types are defined.

use std::path::PathBuf;

/// A typed error from a module below, kept as the source of a variant here.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Each message is complete: where an error wraps another (an OS error, a
/// JSON parser's), its text is part of the message and it is not also given as
/// the `source`, so a printer that follows sources says it once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    #[error("{path}: not valid JSON: {error}")]
    Json { path: PathBuf, error: serde_json::Error },

    /// A config.json field is missing, of the wrong type, or has a value we cannot use.
    #[error("{path}: field `{field}`: {problem}")]
    ConfigField {
        path: PathBuf,
        field: String,
        problem: String,
    },

    /// The config is readable but describes a model this tool does not convert.
    #[error("{path}: {problem}")]
    Config { path: PathBuf, problem: String },

    /// A safetensors file whose header or layout is broken.
    #[error("{path}: not a valid safetensors file: {problem}")]
    Safetensors { path: PathBuf, problem: String },

    /// A `pytorch_model.bin` the restricted unpickler refuses (`hf::torch_bin`).
    #[error("{path}: {error}")]
    TorchBin { path: PathBuf, error: Source },

    /// One tensor disagrees with the config (dtype, shape) or cannot be used.
    #[error("{path}: tensor `{tensor}`: {problem}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },

    /// The set of weight files or tensors in a model directory is wrong.
    #[error("{dir}: {problem}")]
    Weights { dir: PathBuf, problem: String },

    /// The requested tensor/pipeline parallel mapping is not possible for this model.
    #[error("{0}")]
    Mapping(String),

    /// A model given by hub id or path could not be found.
    #[error("{0}")]
    ModelNotFound(String),

    /// The output holds an earlier output of this tool.
    #[error("output {path} holds an earlier {what} of trtllm-minitron; pass --force to replace it")]
    OutputExists { path: PathBuf, what: &'static str },

    /// The output holds files this tool did not write: never replaced.
    #[error(
        "output {path} is not empty and was not written by trtllm-minitron (it has {contents}, and no {marker}); \
         it is never replaced, even with --force: choose another output directory, or empty this one yourself"
    )]
    OutputNotOurs {
        path: PathBuf,
        contents: String,
        marker: &'static str,
    },

    #[error("{0}")]
    InvalidOutput(String),

    /// A directory `inspect` does not recognise.
    #[error("{path}: {problem}")]
    Unrecognised { path: PathBuf, problem: String },

    /// A run-time input (prompt, option, token id) that cannot be used.
    #[error("{0}")]
    InvalidInput(String),

    /// A tokenizer that cannot be loaded or used (`tokenizer`).
    #[error(transparent)]
    Tokenizer(Source),

    /// Ctrl-C or SIGTERM while writing an output: its staging directory was removed.
    #[error("interrupted; no partial output was left behind")]
    Interrupted,

    /// Ctrl-C or SIGTERM during generation: the message ("interrupted ...") says what is
    /// on stdout and which files were not written.
    #[error("{0}")]
    GenerationInterrupted(String),
}

impl Error {
    /// Ended by Ctrl-C or SIGTERM (exit status 130).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Error::Interrupted | Error::GenerationInterrupted(_))
    }

    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

/// Adds the path to an `io::Error`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A printer that follows sources (the CLI does) must say an OS error once.
    #[test]
    fn a_wrapped_error_is_in_the_message_and_not_also_the_source() {
        let io = Error::io("/x/config.json", std::io::Error::from_raw_os_error(2));
        assert_eq!(
            io.to_string(),
            "/x/config.json: No such file or directory (os error 2)"
        );
        assert!(io.source().is_none());
        let json = Error::Json {
            path: "c.json".into(),
            error: serde_json::from_str::<u32>("\"x\"").unwrap_err(),
        };
        assert!(
            json.to_string()
                .starts_with("c.json: not valid JSON: invalid type"),
            "{json}"
        );
        assert!(json.source().is_none());
    }
}
