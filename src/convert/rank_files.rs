//! The byte layout of each `rank{r}.safetensors`, known from the plan alone:
//! its header, where each tensor's data starts, and its length. Knowing every
//! offset up front lets conversion write the files in any order.

use std::collections::BTreeMap;

use crate::DType;
use crate::safetensors_file::build_header;
use crate::trtllm::plan::RankPlan;

pub struct RankLayout {
    pub rank: usize,
    pub file_name: String,
    pub header: Vec<u8>,
    /// Absolute file offset of each plan tensor's data, in plan order.
    pub tensor_offsets: Vec<u64>,
    /// The whole file: header and data.
    pub len: u64,
    pub tensors: usize,
}

impl RankLayout {
    pub fn new(plan: &RankPlan, dtype: DType) -> Self {
        let entries: Vec<(String, DType, Vec<usize>)> = plan
            .tensors
            .iter()
            .map(|t| (t.name.clone(), dtype, t.shape.clone()))
            .collect();
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        let header = build_header(&entries, &metadata);
        // The same order and sizes as the header's data_offsets.
        let mut offset = header.len() as u64;
        let mut tensor_offsets = Vec::with_capacity(plan.tensors.len());
        for t in &plan.tensors {
            tensor_offsets.push(offset);
            offset += (t.elements() * dtype.size()) as u64;
        }
        RankLayout {
            rank: plan.rank,
            file_name: plan.file_name(),
            header,
            tensor_offsets,
            len: offset,
            tensors: plan.tensors.len(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RankSummary {
    pub rank: usize,
    pub file: String,
    pub bytes: u64,
    pub tensors: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trtllm::plan::{OutputTensor, Piece};

    #[test]
    fn offsets_agree_with_the_header_read_back() {
        let piece = |rows: usize, cols: usize| Piece {
            source: Some("x".into()),
            rows: 0..rows,
            cols: 0..cols,
            add_one: false,
        };
        let plan = RankPlan {
            rank: 1,
            tp_rank: 1,
            pp_rank: 0,
            layers: 0..1,
            tensors: vec![
                OutputTensor {
                    name: "b".into(),
                    shape: vec![3, 5],
                    pieces: vec![piece(3, 5)],
                },
                OutputTensor {
                    name: "a".into(),
                    shape: vec![7],
                    pieces: vec![piece(1, 7)],
                },
            ],
        };
        let layout = RankLayout::new(&plan, DType::BF16);
        assert_eq!(layout.file_name, "rank1.safetensors");
        let h = layout.header.len() as u64;
        assert_eq!(h % 8, 0);
        assert_eq!(layout.tensor_offsets, vec![h, h + 30]);
        assert_eq!(layout.len, h + 30 + 14);
        // The reference reader agrees on where each tensor lives.
        let mut file = layout.header.clone();
        file.extend((0..44u8).collect::<Vec<_>>());
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        assert_eq!(st.tensor("b").unwrap().data(), &file[h as usize..h as usize + 30]);
        assert_eq!(st.tensor("a").unwrap().data(), &file[h as usize + 30..]);
    }
}
