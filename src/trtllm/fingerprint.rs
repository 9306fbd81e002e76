//! Fingerprints that must stay the same from one run, and one build of this
//! tool, to the next: FNV-1a 64 (std's hasher may change between Rust
//! releases), for conversion cache directory names, and the checkpoint
//! fingerprint an engine's build manifest records.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// The FNV-1a 64 offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `h` over `bytes`.
pub fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What the engine was built from, recorded in the build manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub dir: PathBuf,
    /// FNV-1a 64 over config.json and each rank file's name, size, modification
    /// time and safetensors header: cheap to recompute, and changed by any re-conversion.
    pub fingerprint: String,
    pub rank_files: Vec<String>,
}

pub fn fingerprint(dir: &Path, world: usize) -> Result<CheckpointRecord> {
    let config = dir.join("config.json");
    let bytes = std::fs::read(&config).at(&config)?;
    let mut h = fnv1a(FNV_OFFSET, &bytes);
    let mut rank_files = Vec::new();
    for r in 0..world {
        let name = format!("rank{r}.safetensors");
        let path = dir.join(&name);
        let meta = std::fs::metadata(&path).map_err(|e| {
            Error::InvalidInput(format!(
                "checkpoint {} has no {name} ({e}); expected rank0..rank{} .safetensors for tp*pp = {world}",
                dir.display(),
                world - 1
            ))
        })?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h = fnv1a(h, name.as_bytes());
        h = fnv1a(h, &meta.len().to_le_bytes());
        h = fnv1a(h, &modified.to_le_bytes());
        h = fnv1a(h, &safetensors_header(&path)?);
        rank_files.push(name);
    }
    Ok(CheckpointRecord {
        dir: dir.to_path_buf(),
        fingerprint: format!("{h:016x}"),
        rank_files,
    })
}

/// The 8-byte length and the JSON header of a safetensors file.
fn safetensors_header(path: &Path) -> Result<Vec<u8>> {
    let mut file = std::fs::File::open(path).at(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).at(path)?;
    let n = u64::from_le_bytes(len).min(100 << 20);
    let mut header = len.to_vec();
    file.take(n).read_to_end(&mut header).at(path)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        // From the FNV reference test suite (Landon Curt Noll).
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }
}
