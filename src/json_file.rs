//! JSON files read and written with errors that name the file: every
//! `config.json`, manifest and index goes through here.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// Reads and parses `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|error| Error::Json {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads `value`, already parsed from `path`, as a `T`.
pub fn decode<T: DeserializeOwned>(value: &serde_json::Value, path: &Path) -> Result<T> {
    T::deserialize(value).map_err(|error| Error::Json {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes `value` to `path`, pretty-printed with a final newline.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|error| Error::Json {
        path: path.to_path_buf(),
        error,
    })?;
    std::fs::write(path, text + "\n").at(path)
}
