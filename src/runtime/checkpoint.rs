//! A TensorRT-LLM checkpoint opened for the reference runtime: config plus every
//! rank file memory-mapped, each tensor checked against the layout `convert`
//! writes (names, shapes, dtype), so the runtime can index without surprises.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::DType;
use crate::error::{Error, IoContext, Result};
use crate::safetensors_file::{dtype_from_safetensors_name, read_header};
use crate::trtllm::config::{ARCHITECTURE, CONFIG_FILE, TrtllmConfig};
use crate::trtllm::plan::{RankPlan, plan_ranks};

/// One tensor of one rank file.
#[derive(Debug, Clone)]
pub struct TensorLoc {
    pub rank: usize,
    pub shape: Vec<usize>,
    pub range: Range<usize>,
}

pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: TrtllmConfig,
    pub dtype: DType,
    pub plans: Vec<RankPlan>,
    maps: Vec<Mmap>,
    tensors: Vec<HashMap<String, TensorLoc>>,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let config = TrtllmConfig::read(dir)?;
        if config.architecture != ARCHITECTURE {
            return Err(Error::Config {
                path: dir.join(CONFIG_FILE),
                problem: format!(
                    "architecture is {}; expected NemotronForCausalLM",
                    config.architecture
                ),
            });
        }
        let model = config.model_config();
        let par = config.parallelism();
        par.validate(&model)?;
        let plans = plan_ranks(&model, par);
        let missing: Vec<String> = plans
            .iter()
            .map(|p| p.file_name())
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Weights {
                dir: dir.to_path_buf(),
                problem: format!(
                    "the checkpoint is tp={} pp={} ({} ranks) but {} missing",
                    par.tp,
                    par.pp,
                    par.world_size(),
                    missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
                ),
            });
        }
        let mut maps = Vec::new();
        let mut tensors = Vec::new();
        for plan in &plans {
            let path = dir.join(plan.file_name());
            let file = File::open(&path).at(&path)?;
            // SAFETY: read-only map; the checkpoint must not change while it is used.
            // populate(): map every page now, in one pass, rather than one fault per
            // 4 KiB page during the first forward pass (seconds on Minitron-8B).
            let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.at(&path)?;
            let mut table = HashMap::new();
            for entry in read_header(&map, &path)? {
                let tensor_err = |problem: String| Error::Tensor {
                    path: path.clone(),
                    tensor: entry.name.clone(),
                    problem,
                };
                if dtype_from_safetensors_name(&entry.dtype) != Some(config.dtype) {
                    return Err(tensor_err(format!(
                        "is {}, but config.json says {}",
                        entry.dtype, config.dtype
                    )));
                }
                table.insert(
                    entry.name.clone(),
                    TensorLoc {
                        rank: plan.rank,
                        shape: entry.shape,
                        range: entry.range,
                    },
                );
            }
            for t in &plan.tensors {
                match table.get(&t.name) {
                    None => {
                        return Err(Error::Tensor {
                            path: path.clone(),
                            tensor: t.name.clone(),
                            problem: format!("is missing (expected shape {:?})", t.shape),
                        });
                    }
                    Some(loc) if loc.shape != t.shape => {
                        return Err(Error::Tensor {
                            path: path.clone(),
                            tensor: t.name.clone(),
                            problem: format!("has shape {:?}; config.json implies {:?}", loc.shape, t.shape),
                        });
                    }
                    Some(_) => {}
                }
            }
            maps.push(map);
            tensors.push(table);
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            dtype: config.dtype,
            config,
            plans,
            maps,
            tensors,
        })
    }

    /// Where tensor `name` of rank file `rank` is (validated at open).
    pub fn loc(&self, rank: usize, name: &str) -> Result<&TensorLoc> {
        self.tensors
            .get(rank)
            .and_then(|t| t.get(name))
            .ok_or_else(|| Error::Tensor {
                path: self.dir.join(format!("rank{rank}.safetensors")),
                tensor: name.to_string(),
                problem: "is missing".into(),
            })
    }

    pub fn data(&self, loc: &TensorLoc) -> &[u8] {
        &self.maps[loc.rank][loc.range.clone()]
    }

    /// Total bytes of tensor data, for bandwidth figures.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .flat_map(|t| t.values())
            .map(|l| l.range.len() as u64)
            .sum()
    }
}
