//! What each rank file holds: every output tensor as a list of row blocks cut from
//! Hugging Face tensors (or zero rows for vocab padding). Pure bookkeeping, no
//! data, so it is cheap to test and to print.

use std::ops::Range;

use crate::hf::config::NemotronConfig;
use crate::hf::layout::{self, layer_tensor};
use crate::trtllm::mapping::Parallelism;

/// Rows `rows` and columns `cols` of a source tensor seen as a matrix (a 1-D
/// tensor is one row). `source: None` means zero rows (lm_head padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub source: Option<String>,
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    /// LayerNorm1p: add 1 after casting, in the target dtype.
    pub add_one: bool,
}

impl Piece {
    fn whole_rows(source: String, rows: Range<usize>, width: usize) -> Self {
        Piece {
            source: Some(source),
            rows,
            cols: 0..width,
            add_one: false,
        }
    }

    pub fn elements(&self) -> usize {
        self.rows.len() * self.cols.len()
    }
}

/// One tensor of a rank file: its pieces stacked along dim 0.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub pieces: Vec<Piece>,
}

impl OutputTensor {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RankPlan {
    pub rank: usize,
    pub tp_rank: usize,
    pub pp_rank: usize,
    /// Global layer numbers of this pipeline stage (renumbered from 0 in the file).
    pub layers: Range<usize>,
    pub tensors: Vec<OutputTensor>,
}

impl RankPlan {
    pub fn file_name(&self) -> String {
        format!("rank{}.safetensors", self.rank)
    }
}

/// The plans of all ranks, in rank order. `par` must have been validated.
pub fn plan_ranks(c: &NemotronConfig, par: Parallelism) -> Vec<RankPlan> {
    let mut plans: Vec<RankPlan> = (0..par.pp)
        .flat_map(|pp_rank| (0..par.tp).map(move |tp_rank| (pp_rank, tp_rank)))
        .map(|(pp_rank, tp_rank)| plan_rank(c, par, pp_rank, tp_rank))
        .collect();
    plans.sort_by_key(|p| p.rank);
    plans
}

fn plan_rank(c: &NemotronConfig, par: Parallelism, pp_rank: usize, tp_rank: usize) -> RankPlan {
    let (h, tp, r) = (c.hidden_size, par.tp, tp_rank);
    let layers = par.layers(c.num_hidden_layers, pp_rank);
    let mut tensors = Vec::new();
    let norm = |name: String, source: String| OutputTensor {
        name,
        shape: vec![h],
        pieces: vec![Piece {
            source: Some(source),
            rows: 0..1,
            cols: 0..h,
            add_one: true,
        }],
    };
    let bias = |name: String, source: String| OutputTensor {
        name,
        shape: vec![h],
        pieces: vec![Piece::whole_rows(source, 0..1, h)],
    };

    if pp_rank == 0 {
        tensors.push(OutputTensor {
            name: "transformer.vocab_embedding.weight".into(),
            shape: vec![c.vocab_size, h],
            pieces: vec![Piece::whole_rows(layout::EMBEDDING.into(), 0..c.vocab_size, h)],
        });
    }
    for (local, global) in layers.clone().enumerate() {
        let out = |suffix: &str| format!("transformer.layers.{local}.{suffix}");
        let src = |suffix: &str| layer_tensor(global, suffix);

        tensors.push(norm(out("input_layernorm.weight"), src("input_layernorm.weight")));
        tensors.push(bias(out("input_layernorm.bias"), src("input_layernorm.bias")));

        let q_per_rank = c.q_rows() / tp;
        let kv_rows = kv_rows_for_rank(c, tp, r);
        tensors.push(OutputTensor {
            name: out("attention.qkv.weight"),
            shape: vec![q_per_rank + 2 * kv_rows.len(), h],
            pieces: vec![
                Piece::whole_rows(
                    src("self_attn.q_proj.weight"),
                    r * q_per_rank..(r + 1) * q_per_rank,
                    h,
                ),
                Piece::whole_rows(src("self_attn.k_proj.weight"), kv_rows.clone(), h),
                Piece::whole_rows(src("self_attn.v_proj.weight"), kv_rows, h),
            ],
        });
        tensors.push(column_chunk(
            out("attention.dense.weight"),
            src("self_attn.o_proj.weight"),
            h,
            c.q_rows(),
            tp,
            r,
        ));

        tensors.push(norm(
            out("post_layernorm.weight"),
            src("post_attention_layernorm.weight"),
        ));
        tensors.push(bias(
            out("post_layernorm.bias"),
            src("post_attention_layernorm.bias"),
        ));

        let f_per_rank = c.intermediate_size / tp;
        tensors.push(OutputTensor {
            name: out("mlp.fc.weight"),
            shape: vec![f_per_rank, h],
            pieces: vec![Piece::whole_rows(
                src("mlp.up_proj.weight"),
                r * f_per_rank..(r + 1) * f_per_rank,
                h,
            )],
        });
        tensors.push(column_chunk(
            out("mlp.proj.weight"),
            src("mlp.down_proj.weight"),
            h,
            c.intermediate_size,
            tp,
            r,
        ));
    }
    if pp_rank == par.pp - 1 {
        tensors.push(norm(
            "transformer.ln_f.weight".into(),
            layout::FINAL_NORM_WEIGHT.into(),
        ));
        tensors.push(bias(
            "transformer.ln_f.bias".into(),
            layout::FINAL_NORM_BIAS.into(),
        ));
        tensors.push(lm_head(c, tp, r));
    }
    RankPlan {
        rank: par.rank(pp_rank, tp_rank),
        tp_rank,
        pp_rank,
        layers,
        tensors,
    }
}

/// k/v rows of tp rank `r`: a contiguous block of kv heads, or, when tp exceeds
/// the kv heads, the one head this rank shares with tp/kv_heads - 1 others
/// (repeat_interleave then chunk).
fn kv_rows_for_rank(c: &NemotronConfig, tp: usize, r: usize) -> Range<usize> {
    let (kv, d) = (c.num_key_value_heads, c.head_dim);
    if kv % tp == 0 {
        let per = kv / tp;
        r * per * d..(r + 1) * per * d
    } else {
        let head = r / (tp / kv);
        head * d..(head + 1) * d
    }
}

/// Columns `[r*w, (r+1)*w)` of a `[rows, width*tp]` row-parallel weight.
fn column_chunk(name: String, source: String, rows: usize, cols: usize, tp: usize, r: usize) -> OutputTensor {
    let per = cols / tp;
    OutputTensor {
        name,
        shape: vec![rows, per],
        pieces: vec![Piece {
            source: Some(source),
            rows: 0..rows,
            cols: r * per..(r + 1) * per,
            add_one: false,
        }],
    }
}

/// lm_head rows of rank `r`, vocab zero-padded to a multiple of tp.
fn lm_head(c: &NemotronConfig, tp: usize, r: usize) -> OutputTensor {
    let h = c.hidden_size;
    let source = if c.tie_word_embeddings {
        layout::EMBEDDING
    } else {
        layout::LM_HEAD
    };
    let per = c.vocab_size.div_ceil(tp);
    let (start, end) = (r * per, (r + 1) * per);
    let real_end = end.min(c.vocab_size);
    let mut pieces = Vec::new();
    if start < real_end {
        pieces.push(Piece::whole_rows(source.into(), start..real_end, h));
    }
    let padding = end - start.max(real_end);
    if padding > 0 {
        pieces.push(Piece {
            source: None,
            rows: 0..padding,
            cols: 0..h,
            add_one: false,
        });
    }
    OutputTensor {
        name: "lm_head.weight".into(),
        shape: vec![per, h],
        pieces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(heads: usize, kv: usize, vocab: usize) -> NemotronConfig {
        NemotronConfig {
            vocab_size: vocab,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            ..NemotronConfig::tiny()
        }
    }

    #[test]
    fn every_tensor_is_exactly_covered_by_its_pieces() {
        for (tp, pp) in [(1, 1), (2, 1), (4, 1), (1, 3), (2, 2)] {
            for plan in plan_ranks(&tiny(4, 2, 101), Parallelism { tp, pp }) {
                for t in plan.tensors {
                    let covered: usize = t.pieces.iter().map(Piece::elements).sum();
                    assert_eq!(covered, t.elements(), "{} at tp{tp} pp{pp}", t.name);
                }
            }
        }
    }

    #[test]
    fn kv_heads_are_duplicated_when_tp_exceeds_them() {
        let c = tiny(4, 2, 101);
        let rows: Vec<_> = (0..4).map(|r| kv_rows_for_rank(&c, 4, r)).collect();
        assert_eq!(rows, vec![0..16, 0..16, 16..32, 16..32]);
        assert_eq!(kv_rows_for_rank(&c, 2, 1), 16..32);
    }

    #[test]
    fn lm_head_is_padded_on_the_last_rank() {
        let c = tiny(4, 2, 101);
        let last = lm_head(&c, 4, 3);
        assert_eq!(last.shape, vec![26, 48]);
        assert_eq!(last.pieces[0].rows, 78..101);
        assert_eq!(last.pieces[1].source, None);
        assert_eq!(last.pieces[1].rows.len(), 3);
    }

    #[test]
    fn pipeline_stages_renumber_layers_and_split_ends() {
        let plans = plan_ranks(&tiny(4, 2, 101), Parallelism { tp: 1, pp: 2 });
        let names = |p: &RankPlan| p.tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        let (first, last) = (names(&plans[0]), names(&plans[1]));
        assert!(first.contains(&"transformer.vocab_embedding.weight".to_string()));
        assert!(
            !first
                .iter()
                .any(|n| n.starts_with("lm_head") || n.contains("ln_f"))
        );
        assert!(last.contains(&"transformer.layers.0.mlp.fc.weight".to_string()));
        assert!(!last.iter().any(|n| n.contains("layers.1.")));
        assert_eq!(
            plans[1].tensors[0].pieces[0].source.as_deref(),
            Some("model.layers.2.input_layernorm.weight")
        );
    }
}
