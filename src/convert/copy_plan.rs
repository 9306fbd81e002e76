//! Conversion turned around to the source's point of view: every source tensor
//! is read once, in the order of the weight files, and each block of its rows is
//! written to every place the rank plans put it. Reading the files front to back
//! is what lets the kernel read ahead (as it does for `cp`), and a tensor needed
//! by several ranks is read once rather than once per rank.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::DType;
use crate::convert::rank_files::RankLayout;
use crate::error::{Error, Result};
use crate::hf::weights::{TensorRef, WeightStore};
use crate::trtllm::plan::RankPlan;

/// Rows `rows`, columns `cols` of a source tensor (as a matrix), cast and
/// stacked at `offset` of output file `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub output: usize,
    pub offset: u64,
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub add_one: bool,
}

/// One source tensor to read and where its rows go.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRead {
    pub name: String,
    pub file: usize,
    /// File offset of the tensor's first byte.
    pub start: u64,
    pub dtype: DType,
    /// Elements per row (the last dimension; a 1-D tensor is one row).
    pub width: usize,
    pub rows_in_source: usize,
    /// The rows any target needs.
    pub rows: Range<usize>,
    pub targets: Vec<Target>,
}

impl SourceRead {
    pub fn row_bytes(&self) -> usize {
        self.width * self.dtype.size()
    }

    /// File bytes of rows `rows`.
    pub fn byte_range(&self, rows: &Range<usize>) -> Range<u64> {
        let rb = self.row_bytes() as u64;
        self.start + rows.start as u64 * rb..self.start + rows.end as u64 * rb
    }
}

/// Zero bytes (lm_head vocab padding).
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroFill {
    pub output: usize,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Default)]
pub struct CopyPlan {
    /// In file order: by weight file, then by offset.
    pub reads: Vec<SourceRead>,
    pub zeros: Vec<ZeroFill>,
}

/// Where the source tensors are: the name -> location table of a weight store
/// and the paths of its files (for error messages).
pub struct SourceTable<'a> {
    pub dir: &'a Path,
    pub paths: Vec<&'a Path>,
    pub tensors: &'a BTreeMap<String, TensorRef>,
}

impl<'a> SourceTable<'a> {
    pub fn of(store: &'a WeightStore) -> Self {
        SourceTable {
            dir: &store.dir,
            paths: store.files.iter().map(|f| f.path.as_path()).collect(),
            tensors: &store.tensors,
        }
    }

    fn path(&self, file: usize) -> PathBuf {
        self.paths
            .get(file)
            .map_or_else(|| self.dir.to_path_buf(), |p| p.to_path_buf())
    }
}

/// The reads and fills that produce `layouts[i]` from `plans[i]` in `dtype`.
pub fn plan_copies(
    plans: &[RankPlan],
    layouts: &[RankLayout],
    source: &SourceTable<'_>,
    dtype: DType,
) -> Result<CopyPlan> {
    let mut reads: Vec<SourceRead> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    let mut zeros = Vec::new();
    for (output, (plan, layout)) in plans.iter().zip(layouts).enumerate() {
        for (tensor, &tensor_offset) in plan.tensors.iter().zip(&layout.tensor_offsets) {
            let mut offset = tensor_offset;
            for piece in &tensor.pieces {
                let len = (piece.elements() * dtype.size()) as u64;
                let Some(name) = &piece.source else {
                    zeros.push(ZeroFill { output, offset, len });
                    offset += len;
                    continue;
                };
                let i = match slot.get(name.as_str()) {
                    Some(&i) => i,
                    None => {
                        reads.push(source_read(name, source)?);
                        slot.insert(name, reads.len() - 1);
                        reads.len() - 1
                    }
                };
                let read = &mut reads[i];
                let rows_in_source = read.rows_in_source;
                if piece.rows.end > rows_in_source || piece.cols.end > read.width {
                    return Err(Error::Tensor {
                        path: source.path(read.file),
                        tensor: name.clone(),
                        problem: format!(
                            "the plan needs rows {:?} and columns {:?}, outside its {rows_in_source} x {} elements (internal error)",
                            piece.rows, piece.cols, read.width
                        ),
                    });
                }
                read.rows = if read.targets.is_empty() {
                    piece.rows.clone()
                } else {
                    read.rows.start.min(piece.rows.start)..read.rows.end.max(piece.rows.end)
                };
                read.targets.push(Target {
                    output,
                    offset,
                    rows: piece.rows.clone(),
                    cols: piece.cols.clone(),
                    add_one: piece.add_one,
                });
                offset += len;
            }
        }
    }
    reads.sort_by_key(|r| (r.file, r.start));
    let plan = CopyPlan { reads, zeros };
    check_tiling(&plan, layouts, dtype)?;
    Ok(plan)
}

fn source_read(name: &str, source: &SourceTable<'_>) -> Result<SourceRead> {
    let t = source.tensors.get(name).ok_or_else(|| Error::Weights {
        dir: source.dir.to_path_buf(),
        problem: format!("tensor `{name}` is missing"),
    })?;
    let width = t.shape.last().copied().unwrap_or(1);
    let rows_in_source = t.shape.iter().rev().skip(1).product::<usize>();
    if (rows_in_source * width * t.dtype.size()) as u64 != (t.range.end - t.range.start) as u64 {
        return Err(Error::Tensor {
            path: source.path(t.file),
            tensor: name.to_string(),
            problem: format!(
                "holds {} bytes, not the {} its shape {:?} needs",
                t.range.end - t.range.start,
                rows_in_source * width * t.dtype.size(),
                t.shape
            ),
        });
    }
    Ok(SourceRead {
        name: name.to_string(),
        file: t.file,
        start: t.range.start as u64,
        dtype: t.dtype,
        width,
        rows_in_source,
        rows: 0..0,
        targets: Vec::new(),
    })
}

/// Every output byte after the header is written exactly once: the targets
/// and fills of each file tile it without gap or overlap. A failure here is a
/// bug in the plan, caught before any byte is written.
fn check_tiling(plan: &CopyPlan, layouts: &[RankLayout], dtype: DType) -> Result<()> {
    let mut spans: Vec<Vec<(u64, u64)>> = vec![Vec::new(); layouts.len()];
    for read in &plan.reads {
        for t in &read.targets {
            let len = (t.rows.len() * t.cols.len() * dtype.size()) as u64;
            spans[t.output].push((t.offset, len));
        }
    }
    for z in &plan.zeros {
        spans[z.output].push((z.offset, z.len));
    }
    for (layout, spans) in layouts.iter().zip(&mut spans) {
        spans.sort_unstable();
        let mut at = layout.header.len() as u64;
        for &(offset, len) in spans.iter() {
            if offset != at {
                return Err(Error::InvalidOutput(format!(
                    "{}: the conversion plan leaves bytes {at}..{offset} {} (internal error)",
                    layout.file_name,
                    if offset > at { "unwritten" } else { "written twice" }
                )));
            }
            at += len;
        }
        if at != layout.len {
            return Err(Error::InvalidOutput(format!(
                "{}: the conversion plan writes {at} bytes of {} (internal error)",
                layout.file_name, layout.len
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::config::NemotronConfig;
    use crate::trtllm::mapping::Parallelism;
    use crate::trtllm::plan::plan_ranks;

    /// H48, 4 heads of 16, 2 kv heads, 3 layers, vocab 101.
    fn config() -> NemotronConfig {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/gqa-headdim-bf16/config.json");
        NemotronConfig::from_file(&path).unwrap()
    }

    /// The expected tensors laid out in one file, in name order (as safetensors does).
    fn source(c: &NemotronConfig) -> BTreeMap<String, TensorRef> {
        let mut at = 1000;
        crate::hf::layout::expected_tensors(c)
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product::<usize>() * 2;
                let t = TensorRef {
                    file: 0,
                    dtype: DType::BF16,
                    shape,
                    range: at..at + len,
                };
                at += len;
                (name, t)
            })
            .collect()
    }

    fn table(tensors: &BTreeMap<String, TensorRef>) -> SourceTable<'_> {
        SourceTable {
            dir: Path::new("m"),
            paths: vec![Path::new("m/model.safetensors")],
            tensors,
        }
    }

    fn plan(c: &NemotronConfig, tp: usize, pp: usize) -> (Vec<RankLayout>, CopyPlan) {
        let plans = plan_ranks(c, Parallelism { tp, pp });
        let layouts: Vec<_> = plans.iter().map(|p| RankLayout::new(p, DType::BF16)).collect();
        let tensors = source(c);
        let copy = plan_copies(&plans, &layouts, &table(&tensors), DType::BF16).unwrap();
        (layouts, copy)
    }

    #[test]
    fn every_source_tensor_is_read_once_in_file_order() {
        let c = config();
        for (tp, pp) in [(1, 1), (2, 1), (4, 1), (1, 3), (2, 3)] {
            let (_, copy) = plan(&c, tp, pp);
            let starts: Vec<u64> = copy.reads.iter().map(|r| r.start).collect();
            let mut sorted = starts.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(starts, sorted, "tp{tp} pp{pp}: reads in file order, none twice");
            assert_eq!(
                copy.reads.len(),
                source(&c).len(),
                "tp{tp} pp{pp}: every tensor read"
            );
            // A layer's q_proj feeds every tp rank once.
            let q = copy
                .reads
                .iter()
                .find(|r| r.name == "model.layers.0.self_attn.q_proj.weight")
                .unwrap();
            assert_eq!(q.targets.len(), tp);
            assert_eq!(q.rows, 0..64);
        }
    }

    #[test]
    fn vocab_padding_becomes_zero_fills_and_everything_is_tiled() {
        // 101 rows over tp 2: rank 1's lm_head ends with one zero row.
        let (layouts, copy) = plan(&config(), 2, 1);
        assert_eq!(copy.zeros.len(), 1);
        let z = &copy.zeros[0];
        assert_eq!((z.output, z.len), (1, 48 * 2));
        assert_eq!(z.offset + z.len, layouts[1].len, "lm_head is the last tensor");
    }

    #[test]
    fn a_plan_that_leaves_a_gap_is_refused() {
        let c = config();
        let plans = plan_ranks(&c, Parallelism { tp: 1, pp: 1 });
        let mut layouts: Vec<_> = plans.iter().map(|p| RankLayout::new(p, DType::BF16)).collect();
        layouts[0].len += 2;
        let tensors = source(&c);
        let err = plan_copies(&plans, &layouts, &table(&tensors), DType::BF16).unwrap_err();
        assert!(err.to_string().contains("internal error"), "{err}");
        layouts[0].len -= 2;
        layouts[0].tensor_offsets[3] += 2;
        let err = plan_copies(&plans, &layouts, &table(&tensors), DType::BF16).unwrap_err();
        assert!(err.to_string().contains("unwritten"), "{err}");
    }
}
