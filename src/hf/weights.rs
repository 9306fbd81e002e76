//! The weight files of a Hugging Face checkpoint, memory-mapped, behind one
//! name -> tensor view table, whatever the format: `model.safetensors`, sharded
//! safetensors with `model.safetensors.index.json`, `pytorch_model.bin`, or
//! sharded `.bin` with `pytorch_model.bin.index.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use crate::DType;
use crate::error::{Error, IoContext, Result};
use crate::hf::torch_bin::read_torch_bin;
use crate::json_file;
use crate::safetensors_file::{dtype_from_safetensors_name, read_header};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    Safetensors,
    ShardedSafetensors,
    PytorchBin,
    ShardedPytorchBin,
}

impl WeightFormat {
    pub fn describe(self) -> &'static str {
        match self {
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::ShardedSafetensors => "sharded safetensors",
            WeightFormat::PytorchBin => "pytorch_model.bin (torch.save zip)",
            WeightFormat::ShardedPytorchBin => "sharded pytorch_model.bin",
        }
    }
}

/// One memory-mapped weight file.
pub struct WeightFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// The open file behind `map`, for reading it with plain reads (conversion).
    file: File,
    map: Mmap,
}

impl WeightFile {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The whole file, memory-mapped.
    pub fn mapped(&self) -> &[u8] {
        &self.map
    }
}

/// Where a tensor lives: a byte range of one file.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub file: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub range: Range<usize>,
}

/// A borrowed view of one stored tensor (row-major, little-endian).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

pub struct WeightStore {
    pub dir: PathBuf,
    pub format: WeightFormat,
    pub files: Vec<WeightFile>,
    pub tensors: BTreeMap<String, TensorRef>,
}

const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
const SAFETENSORS_SINGLE: &str = "model.safetensors";
const BIN_INDEX: &str = "pytorch_model.bin.index.json";
const BIN_SINGLE: &str = "pytorch_model.bin";

impl WeightStore {
    /// Finds and maps the weight files of `dir`, preferring safetensors.
    pub fn open(dir: &Path) -> Result<Self> {
        let candidates = [
            (SAFETENSORS_INDEX, WeightFormat::ShardedSafetensors),
            (SAFETENSORS_SINGLE, WeightFormat::Safetensors),
            (BIN_INDEX, WeightFormat::ShardedPytorchBin),
            (BIN_SINGLE, WeightFormat::PytorchBin),
        ];
        let Some((name, format)) = candidates.iter().find(|(name, _)| dir.join(name).is_file()) else {
            return Err(Error::Weights {
                dir: dir.to_path_buf(),
                problem: format!(
                    "no weight files: looked for {}",
                    candidates.map(|(n, _)| n).join(", ")
                ),
            });
        };
        let mut store = WeightStore {
            dir: dir.to_path_buf(),
            format: *format,
            files: Vec::new(),
            tensors: BTreeMap::new(),
        };
        match format {
            WeightFormat::Safetensors | WeightFormat::PytorchBin => {
                store.add_file(&dir.join(name), None)?;
            }
            WeightFormat::ShardedSafetensors | WeightFormat::ShardedPytorchBin => {
                let index = dir.join(name);
                let weight_map = read_weight_map(&index)?;
                // Shards in first-mention order, each with the tensors the index puts there.
                let mut shards: Vec<(String, Vec<String>)> = Vec::new();
                let mut slot: HashMap<String, usize> = HashMap::new();
                for (tensor, shard) in &weight_map {
                    let i = *slot.entry(shard.clone()).or_insert_with(|| {
                        shards.push((shard.clone(), Vec::new()));
                        shards.len() - 1
                    });
                    shards[i].1.push(tensor.clone());
                }
                // Every shard name is checked before any file is opened.
                let paths = shards
                    .iter()
                    .map(|(shard, _)| shard_path(dir, &index, shard))
                    .collect::<Result<Vec<_>>>()?;
                for (path, (_, names)) in paths.iter().zip(&shards) {
                    store.add_file(path, Some((&index, names)))?;
                }
            }
        }
        Ok(store)
    }

    /// Maps one file and adds its tensors. With an index, the file must hold
    /// exactly the tensors the index assigns to it.
    fn add_file(&mut self, path: &Path, index: Option<(&Path, &[String])>) -> Result<()> {
        let file = File::open(path).at(path)?;
        let bytes = file.metadata().at(path)?.len();
        // SAFETY: the map is read-only; the checkpoint must not be modified while
        // we read it (the same contract as every mmap-based loader, torch's included).
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        // The parsers touch a few bytes here and there: without this, each touch
        // reads megabytes around it, caching tensor data nobody asked for yet.
        let _ = map.advise(memmap2::Advice::Random);
        let found = self.parse_tensors(&map, path);
        let _ = map.advise(memmap2::Advice::Normal);
        let found = found?;
        if let Some((index_path, expected)) = index {
            let have: std::collections::BTreeSet<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
            if let Some(missing) = expected.iter().find(|n| !have.contains(n.as_str())) {
                return Err(Error::Weights {
                    dir: self.dir.clone(),
                    problem: format!(
                        "{} puts tensor `{missing}` in {}, but that file does not hold it",
                        index_path.display(),
                        path.display()
                    ),
                });
            }
            let wanted: std::collections::BTreeSet<&str> = expected.iter().map(String::as_str).collect();
            if let Some((extra, _)) = found.iter().find(|(n, _)| !wanted.contains(n.as_str())) {
                return Err(Error::Weights {
                    dir: self.dir.clone(),
                    problem: format!(
                        "{} holds tensor `{extra}`, which {} does not list for it",
                        path.display(),
                        index_path.display()
                    ),
                });
            }
        }
        for (name, tref) in found {
            if self.tensors.contains_key(&name) {
                return Err(Error::Tensor {
                    path: path.to_path_buf(),
                    tensor: name,
                    problem: "appears in more than one weight file".into(),
                });
            }
            self.tensors.insert(name, tref);
        }
        self.files.push(WeightFile {
            path: path.to_path_buf(),
            bytes,
            file,
            map,
        });
        Ok(())
    }

    /// The tensors a weight file holds, as its header (safetensors) or pickle (`.bin`) says.
    fn parse_tensors(&self, map: &[u8], path: &Path) -> Result<Vec<(String, TensorRef)>> {
        let file_index = self.files.len();
        Ok(if self.format_is_bin() {
            read_torch_bin(map)
                .map_err(|error| Error::TorchBin {
                    path: path.to_path_buf(),
                    error: error.into(),
                })?
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        TensorRef {
                            file: file_index,
                            dtype: t.dtype,
                            shape: t.shape,
                            range: t.data,
                        },
                    )
                })
                .collect()
        } else {
            read_header(map, path)?
                .into_iter()
                .map(|e| {
                    let dtype = dtype_from_safetensors_name(&e.dtype).ok_or_else(|| Error::Tensor {
                        path: path.to_path_buf(),
                        tensor: e.name.clone(),
                        problem: format!("dtype {} is not supported; expected BF16, F16 or F32", e.dtype),
                    })?;
                    Ok((
                        e.name,
                        TensorRef {
                            file: file_index,
                            dtype,
                            shape: e.shape,
                            range: e.range,
                        },
                    ))
                })
                .collect::<Result<_>>()?
        })
    }

    fn format_is_bin(&self) -> bool {
        matches!(
            self.format,
            WeightFormat::PytorchBin | WeightFormat::ShardedPytorchBin
        )
    }

    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        let (name, t) = self.tensors.get_key_value(name)?;
        let file = &self.files[t.file];
        Some(TensorView {
            name,
            path: &file.path,
            dtype: t.dtype,
            shape: &t.shape,
            data: &file.map[t.range.clone()],
        })
    }

    /// Total size of the weight files on disk.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Reads `weight_map` of an index file (tensor name -> shard file name).
fn read_weight_map(index: &Path) -> Result<BTreeMap<String, String>> {
    let value: Value = json_file::read(index)?;
    let field_err = |problem: &str| Error::ConfigField {
        path: index.to_path_buf(),
        field: "weight_map".into(),
        problem: problem.into(),
    };
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| field_err("is missing; expected an object of tensor name -> shard file"))?;
    if map.is_empty() {
        return Err(field_err("is empty"));
    }
    map.iter()
        .map(|(k, v)| {
            let shard = v
                .as_str()
                .ok_or_else(|| field_err(&format!("entry `{k}` is {v}; expected a file name")))?;
            Ok((k.clone(), shard.to_string()))
        })
        .collect()
}

/// The path of a shard named by an index; refuses names that leave the model directory.
fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<PathBuf> {
    let rel = Path::new(shard);
    let inside = !shard.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(Error::Weights {
            dir: dir.to_path_buf(),
            problem: format!(
                "{} names shard \"{shard}\", a path outside the model directory; shards must be plain file names in it",
                index.display()
            ),
        });
    }
    let path = dir.join(rel);
    if !path.is_file() {
        return Err(Error::Weights {
            dir: dir.to_path_buf(),
            problem: format!("{} names shard {shard}, which does not exist", index.display()),
        });
    }
    Ok(path)
}
