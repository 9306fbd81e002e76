//! The safetensors container: header parsing with errors that name the tensor,
//! and header building for the streaming writer.
//!
//! Why not only the `safetensors` crate: its reader reports a bad tensor without
//! its name in several cases, and its writer needs every tensor materialised,
//! which a 16 GB conversion cannot afford. Tests read our output back with the
//! crate as an independent check.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::DType;
use crate::error::{Error, Result};

/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER: usize = 100_000_000;

/// One tensor as the header describes it; `range` is absolute in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub range: Range<usize>,
}

impl HeaderEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Element size of a safetensors dtype name, for the dtypes a header may hold.
fn element_bits(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" => 64,
        _ => return None,
    })
}

/// Parses and validates the header of a whole safetensors file (memory-mapped).
/// Entries come back in file order.
pub fn read_header(file: &[u8], path: &Path) -> Result<Vec<HeaderEntry>> {
    let bad = |problem: String| Error::Safetensors {
        path: path.to_path_buf(),
        problem,
    };
    let Some(len_bytes) = file.get(..8) else {
        return Err(bad(format!(
            "the file is {} bytes, shorter than the 8-byte header length (truncated?)",
            file.len()
        )));
    };
    let mut le = [0u8; 8];
    le.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(le);
    let available = file.len() - 8;
    if n > available as u64 {
        return Err(bad(format!(
            "the header length {n} runs past the end of the file ({} bytes; truncated or not safetensors?)",
            file.len()
        )));
    }
    let n = n as usize;
    if n > MAX_HEADER {
        return Err(bad(format!(
            "the header is {n} bytes, over the {MAX_HEADER}-byte limit"
        )));
    }
    let data_start = 8 + n;
    let data_len = file.len() - data_start;
    let text = std::str::from_utf8(&file[8..data_start])
        .map_err(|e| bad(format!("the header is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text.trim_end_matches([' ', '\0']))
        .map_err(|e| bad(format!("the header is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(bad("the header is not a JSON object".into()));
    };

    let mut entries = Vec::with_capacity(map.len());
    for (name, info) in map {
        if name == "__metadata__" {
            continue;
        }
        let tensor_err = |problem: String| Error::Tensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
            problem,
        };
        let dtype = info
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| tensor_err("header entry has no string `dtype`".into()))?
            .to_string();
        let bits = element_bits(&dtype).ok_or_else(|| tensor_err(format!("unknown dtype \"{dtype}\"")))?;
        let shape = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| tensor_err("header entry has no `shape` list of non-negative integers".into()))?;
        let offsets = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| tensor_err("header entry has no `data_offsets` [begin, end]".into()))?;
        let (begin, end) = offsets;
        if begin > end || end > data_len as u64 {
            return Err(tensor_err(format!(
                "data_offsets [{begin}, {end}] are out of range: the data section holds {data_len} bytes (truncated file?)"
            )));
        }
        let needed = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(bits))
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| tensor_err(format!("shape {shape:?} overflows")))?;
        let held = (end - begin) as usize;
        if held != needed {
            return Err(tensor_err(format!(
                "data_offsets [{begin}, {end}] hold {held} bytes, but shape {shape:?} of {dtype} needs {needed}"
            )));
        }
        entries.push(HeaderEntry {
            name,
            dtype,
            shape,
            range: data_start + begin as usize..data_start + end as usize,
        });
    }
    entries.sort_by_key(|e| (e.range.start, e.range.end));
    for pair in entries.windows(2) {
        if pair[1].range.start < pair[0].range.end {
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                tensor: pair[1].name.clone(),
                problem: format!("its data overlaps tensor `{}`", pair[0].name),
            });
        }
    }
    Ok(entries)
}

/// The header of a file about to be written: tensors laid out back to back in the
/// given order. Returns the full header (length prefix included) and each
/// tensor's byte size.
pub fn build_header(tensors: &[(String, DType, Vec<usize>)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * dtype.size();
        map.insert(
            name.clone(),
            json!({
                "dtype": safetensors_dtype_name(*dtype),
                "shape": shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text = Value::Object(map).to_string().into_bytes();
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(text.len() + 8);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out
}

pub fn safetensors_dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F32 => "F32",
    }
}

pub fn dtype_from_safetensors_name(name: &str) -> Option<DType> {
    match name {
        "F16" => Some(DType::F16),
        "BF16" => Some(DType::BF16),
        "F32" => Some(DType::F32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(header: &str, data: usize) -> Vec<u8> {
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header.as_bytes());
        f.resize(f.len() + data, 0);
        f
    }

    fn err(file: &[u8]) -> String {
        read_header(file, Path::new("x.safetensors"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn round_trips_with_the_reference_crate() {
        let tensors = vec![
            ("b".to_string(), DType::BF16, vec![2, 3]),
            ("a".to_string(), DType::F32, vec![5]),
        ];
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let mut file = build_header(&tensors, &meta);
        assert_eq!(file.len() % 8, 0);
        file.extend((0..32u8).collect::<Vec<_>>());
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert_eq!(st.tensor("b").unwrap().data(), &(0..12u8).collect::<Vec<_>>()[..]);
        assert_eq!(st.tensor("a").unwrap().shape(), &[5]);
        let ours = read_header(&file, Path::new("t")).unwrap();
        assert_eq!(ours[0].name, "b");
        assert_eq!(ours[1].range.len(), 20);
    }

    #[test]
    fn bad_headers_are_named() {
        assert!(err(&[1, 2, 3]).contains("shorter than the 8-byte header"));
        let mut f = file_with("{}", 0);
        f[0] = 200;
        assert!(err(&f).contains("header length 200 runs past the end"));
        let e = err(&file_with(
            r#"{"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#,
            4,
        ));
        assert!(e.contains("`w`") && e.contains("out of range"), "{e}");
        let e = err(&file_with(
            r#"{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#,
            8,
        ));
        assert!(e.contains("hold 8 bytes, but shape [3] of F16 needs 6"), "{e}");
        let e = err(&file_with(
            r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}}"#,
            12,
        ));
        assert!(e.contains("`b`") && e.contains("overlaps tensor `a`"), "{e}");
        assert!(err(&file_with("[1]", 0)).contains("not a JSON object"));
    }
}
