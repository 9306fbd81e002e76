//! Reader for PyTorch `pytorch_model.bin` checkpoints (`torch.save(state_dict, path)`,
//! the zip format of torch >= 1.6).
//!
//! The file is a zip archive `<prefix>/data.pkl` + `<prefix>/data/<key>` (one entry per
//! storage), stored uncompressed. The pickle is run by a restricted unpickler
//! ([`pickle`]) that never executes anything, and each tensor comes back as a byte range
//! into the caller's memory map: nothing is copied, which matters for a 16.5 GB file.

mod pickle;

use std::collections::HashMap;
use std::io::Cursor;
use std::ops::Range;
use std::rc::Rc;

use zip::CompressionMethod;

use crate::DType;
use pickle::Tensor;

/// One tensor of the state dict, located in the `.bin` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchTensor {
    /// State-dict key, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range in the whole `.bin` file: row-major contiguous, little-endian.
    pub data: Range<usize>,
}

impl TorchTensor {
    /// Number of elements (the product of `shape`; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TorchBinError {
    #[error("not a readable zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error(
        "no `<prefix>/data.pkl` entry in the zip archive: not a torch.save checkpoint \
         (the legacy pre-1.6 non-zip format is not supported)"
    )]
    NoDataPkl,
    #[error("the zip archive has two `<prefix>/data.pkl` entries: `{first}` and `{second}`")]
    SeveralDataPkl { first: String, second: String },
    #[error("the zip archive lists the same entry name more than once")]
    DuplicateZipEntry,
    #[error("zip entry `{entry}`: {problem}")]
    ZipEntry { entry: String, problem: String },
    #[error("zip entry `{entry}` gives the byte order as {found:?}; only \"little\" is supported")]
    ByteOrder { entry: String, found: String },
    #[error(
        "data.pkl byte {offset}: pickle opcode {opcode} is not allowed \
         (torch.save never emits it for a state dict)"
    )]
    ForbiddenOpcode { opcode: String, offset: usize },
    #[error(
        "data.pkl byte {offset}: global `{module}.{name}` is not allowed (only \
         collections.OrderedDict, torch._utils._rebuild_tensor_v2, \
         torch._utils._rebuild_parameter and torch storage classes are)"
    )]
    ForbiddenGlobal {
        module: String,
        name: String,
        offset: usize,
    },
    #[error(
        "data.pkl is truncated: opcode {opcode} at byte {offset} needs {needed} bytes \
         but {available} remain"
    )]
    Truncated {
        opcode: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("data.pkl ends at byte {0} without a STOP opcode (truncated)")]
    NoStop(usize),
    #[error("data.pkl byte {offset}: opcode {opcode}: {problem}")]
    Pickle {
        opcode: &'static str,
        offset: usize,
        problem: String,
    },
    #[error("duplicate dict key `{key}` at data.pkl byte {offset}")]
    DuplicateKey { key: String, offset: usize },
    #[error("the checkpoint is not a dict of tensors: {0}")]
    NotAStateDict(String),
    #[error(
        "tensor `{tensor}`: unsupported dtype (storage class torch.{storage}); only \
         HalfStorage (float16), BFloat16Storage (bfloat16) and FloatStorage (float32) are supported"
    )]
    UnsupportedDtype { tensor: String, storage: String },
    #[error(
        "tensor `{tensor}` is not row-major contiguous: shape {shape:?} has stride {stride:?}, \
         expected {expected:?}"
    )]
    NonContiguous {
        tensor: String,
        shape: Vec<usize>,
        stride: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{tensor}`: {problem}")]
    Tensor { tensor: String, problem: String },
}

/// Reads the state dict of a `torch.save` zip checkpoint held in `file` (normally a
/// memory map of the whole file). Tensors come back in the order of the pickle.
pub fn read_torch_bin(file: &[u8]) -> Result<Vec<TorchTensor>, TorchBinError> {
    let zip = ZipIndex::new(file)?;
    let prefix = zip.prefix()?;

    let byteorder = format!("{prefix}/byteorder");
    if let Some(range) = zip.stored(&byteorder)? {
        let found = file.get(range).unwrap_or_default();
        if found != b"little" {
            return Err(TorchBinError::ByteOrder {
                entry: byteorder,
                found: String::from_utf8_lossy(found).into_owned(),
            });
        }
    }

    let pkl_name = format!("{prefix}/data.pkl");
    let pkl = zip.stored(&pkl_name)?.ok_or(TorchBinError::NoDataPkl)?;
    let pkl = file.get(pkl).ok_or_else(|| TorchBinError::ZipEntry {
        entry: pkl_name,
        problem: "data lies outside the file".into(),
    })?;

    // Storages shared by several tensors are looked up once.
    let mut entries: HashMap<Rc<str>, (String, Range<usize>)> = HashMap::new();
    let mut out = Vec::new();
    for (name, tensor) in pickle::unpickle(pkl)? {
        let key = &*tensor.storage.key;
        let (entry, range) = match entries.get(key) {
            Some(found) => found.clone(),
            None => {
                let entry = format!("{prefix}/data/{key}");
                let range = zip.stored(&entry)?.ok_or_else(|| TorchBinError::Tensor {
                    tensor: name.clone(),
                    problem: format!("its storage zip entry `{entry}` is missing"),
                })?;
                entries.insert(tensor.storage.key.clone(), (entry.clone(), range.clone()));
                (entry, range)
            }
        };
        out.push(place(name, &tensor, &entry, range)?);
    }
    Ok(out)
}

/// Checks a tensor's dtype and layout against its storage entry (`entry` spans `range`
/// of the file) and returns where its bytes are.
fn place(name: String, t: &Tensor, entry: &str, range: Range<usize>) -> Result<TorchTensor, TorchBinError> {
    let storage = &t.storage;
    let dtype = match storage.class {
        pickle::StorageClass::Known(d) => d,
        pickle::StorageClass::Unsupported(s) => {
            return Err(TorchBinError::UnsupportedDtype {
                tensor: name,
                storage: s.to_string(),
            });
        }
    };
    let bad = |problem: String| TorchBinError::Tensor {
        tensor: name.clone(),
        problem,
    };
    let size = dtype.size();

    let storage_bytes = storage
        .numel
        .checked_mul(size)
        .ok_or_else(|| bad(format!("storage of {} elements overflows", storage.numel)))?;
    if storage_bytes > range.len() {
        return Err(bad(format!(
            "storage `{entry}` declares {} elements ({storage_bytes} bytes) but the zip entry has {} bytes",
            storage.numel,
            range.len()
        )));
    }

    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {:?} overflows", t.shape)))?;

    // Row-major contiguity as torch defines it: dims of size 1 may have any stride,
    // and an empty tensor is contiguous whatever its strides.
    if numel != 0 {
        let mut expected = vec![0usize; t.shape.len()];
        let mut next = 1usize;
        let mut ok = true;
        for ((exp, &dim), &stride) in expected.iter_mut().zip(&t.shape).zip(&t.stride).rev() {
            *exp = next;
            if dim != 1 && stride != next {
                ok = false;
            }
            // Cannot overflow: the product of all dims fits (checked above).
            next = next.saturating_mul(dim);
        }
        if !ok {
            return Err(TorchBinError::NonContiguous {
                tensor: name,
                shape: t.shape.clone(),
                stride: t.stride.clone(),
                expected,
            });
        }
    }

    let end = t
        .offset
        .checked_add(numel)
        .filter(|&end| end <= storage.numel)
        .ok_or_else(|| {
            bad(format!(
                "elements {}..{}+{} lie outside its storage `{entry}` of {} elements",
                t.offset, t.offset, numel, storage.numel
            ))
        })?;
    // Both fit in the entry (end <= numel and numel * size <= entry length), so these
    // cannot overflow; checked anyway so that a logic slip is an error, not a panic.
    let start_byte = t
        .offset
        .checked_mul(size)
        .and_then(|b| b.checked_add(range.start));
    let end_byte = end.checked_mul(size).and_then(|b| b.checked_add(range.start));
    let (Some(start_byte), Some(end_byte)) = (start_byte, end_byte) else {
        return Err(bad("byte offsets overflow".into()));
    };
    Ok(TorchTensor {
        name,
        dtype,
        shape: t.shape.clone(),
        data: start_byte..end_byte,
    })
}

struct ZipEntry {
    data_start: u64,
    compressed_size: u64,
    size: u64,
    method: CompressionMethod,
    encrypted: bool,
}

/// The zip's entries by name, with where each one's data starts in the file.
struct ZipIndex {
    file_len: usize,
    names: Vec<String>,
    entries: HashMap<String, ZipEntry>,
}

impl ZipIndex {
    fn new(file: &[u8]) -> Result<Self, TorchBinError> {
        let mut archive = zip::ZipArchive::new(Cursor::new(file))?;
        if archive.has_duplicate_names() {
            return Err(TorchBinError::DuplicateZipEntry);
        }
        let mut names = Vec::new();
        let mut entries = HashMap::new();
        for i in 0..archive.len() {
            // by_index_raw parses the local header (which fixes data_start) without
            // setting up decompression.
            let f = archive.by_index_raw(i)?;
            // torch writes ASCII names; anything else cannot be an entry we look up.
            let Ok(name) = std::str::from_utf8(f.name_raw()) else {
                continue;
            };
            let data_start = f.data_start().ok_or_else(|| TorchBinError::ZipEntry {
                entry: name.to_string(),
                problem: "its local header could not be located".into(),
            })?;
            names.push(name.to_string());
            entries.insert(
                name.to_string(),
                ZipEntry {
                    data_start,
                    compressed_size: f.compressed_size(),
                    size: f.size(),
                    method: f.compression(),
                    encrypted: f.encrypted(),
                },
            );
        }
        Ok(ZipIndex {
            file_len: file.len(),
            names,
            entries,
        })
    }

    /// The archive's top-level folder (torch names it after the file: `archive`,
    /// `pytorch_model`, ...), found as the one `<prefix>/data.pkl`.
    fn prefix(&self) -> Result<&str, TorchBinError> {
        let mut found: Option<&str> = None;
        for name in &self.names {
            let Some(prefix) = name.strip_suffix("/data.pkl") else {
                continue;
            };
            if prefix.is_empty() || prefix.contains('/') {
                continue;
            }
            if let Some(first) = found {
                return Err(TorchBinError::SeveralDataPkl {
                    first: format!("{first}/data.pkl"),
                    second: name.clone(),
                });
            }
            found = Some(prefix);
        }
        found.ok_or(TorchBinError::NoDataPkl)
    }

    /// The file range of an uncompressed entry, `None` if there is no such entry.
    fn stored(&self, name: &str) -> Result<Option<Range<usize>>, TorchBinError> {
        let Some(e) = self.entries.get(name) else {
            return Ok(None);
        };
        let fail = |problem: String| TorchBinError::ZipEntry {
            entry: name.to_string(),
            problem,
        };
        if e.encrypted {
            return Err(fail("is encrypted".into()));
        }
        if e.method != CompressionMethod::Stored {
            return Err(fail(format!(
                "is compressed ({}); torch.save stores entries uncompressed, and only \
                 those can be memory-mapped",
                e.method
            )));
        }
        if e.compressed_size != e.size {
            return Err(fail(format!(
                "is stored but its sizes disagree ({} vs {} bytes)",
                e.compressed_size, e.size
            )));
        }
        let start = usize::try_from(e.data_start).ok();
        let end = e
            .data_start
            .checked_add(e.size)
            .and_then(|end| usize::try_from(end).ok());
        match (start, end) {
            (Some(start), Some(end)) if end <= self.file_len => Ok(Some(start..end)),
            _ => Err(fail(format!(
                "its {} bytes at offset {} lie outside the {}-byte file",
                e.size, e.data_start, self.file_len
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
