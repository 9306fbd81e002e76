//! Tensor/pipeline parallel mapping: which (tp, pp) a model allows, rank numbering,
//! and each pipeline stage's layers.

use std::ops::Range;

use crate::hf::config::NemotronConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Parallelism {
    pub tp: usize,
    pub pp: usize,
}

impl Parallelism {
    pub fn world_size(self) -> usize {
        self.tp * self.pp
    }

    /// `r = pp_rank * tp + tp_rank`, as TensorRT-LLM numbers ranks.
    pub fn rank(self, pp_rank: usize, tp_rank: usize) -> usize {
        pp_rank * self.tp + tp_rank
    }

    /// Layers of pipeline stage `pp_rank`: torch.tensor_split(0..L, pp), so the
    /// first L % pp stages get one extra layer.
    pub fn layers(self, num_layers: usize, pp_rank: usize) -> Range<usize> {
        let base = num_layers / self.pp;
        let extra = num_layers % self.pp;
        let start = pp_rank * base + pp_rank.min(extra);
        let len = base + usize::from(pp_rank < extra);
        start..start + len
    }

    /// Checks the mapping against the model, naming the rule it breaks and the
    /// values that would work.
    pub fn validate(self, c: &NemotronConfig) -> Result<(), MappingError> {
        if self.tp == 0 || self.pp == 0 {
            return Err(MappingError::Zero);
        }
        if let Some(rule) = tp_violation(self.tp, c) {
            return Err(MappingError::Tp {
                tp: self.tp,
                rule,
                allowed: allowed_tp_sizes(c),
            });
        }
        if self.pp > c.num_hidden_layers {
            return Err(MappingError::Pp {
                pp: self.pp,
                layers: c.num_hidden_layers,
            });
        }
        Ok(())
    }
}

/// A tensor/pipeline parallel mapping the model does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("--tp-size and --pp-size must be at least 1")]
    Zero,
    #[error("--tp-size {tp} is not possible for this model: {}", self.reason())]
    Tp {
        tp: usize,
        /// The rule it breaks, e.g. "num_attention_heads 48 is not a multiple of it".
        rule: String,
        allowed: Vec<usize>,
    },
    #[error("--pp-size {pp} is not possible for this model: {}", self.reason())]
    Pp { pp: usize, layers: usize },
}

impl MappingError {
    /// Why the value does not work, without naming the option (a profile names its key instead).
    pub fn reason(&self) -> String {
        match self {
            MappingError::Zero => "it must be at least 1".into(),
            MappingError::Tp { rule, allowed, .. } => format!(
                "{rule}. Allowed tp sizes: {}",
                allowed
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            MappingError::Pp { layers, .. } => {
                format!("it has {layers} layers, and every pipeline stage needs at least one")
            }
        }
    }
}

impl From<MappingError> for crate::Error {
    fn from(e: MappingError) -> Self {
        crate::Error::Mapping(e.to_string())
    }
}

fn tp_violation(tp: usize, c: &NemotronConfig) -> Option<String> {
    let (heads, kv) = (c.num_attention_heads, c.num_key_value_heads);
    if heads % tp != 0 {
        return Some(format!("num_attention_heads {heads} is not a multiple of it"));
    }
    if !kv.is_multiple_of(tp) && !tp.is_multiple_of(kv) {
        return Some(format!(
            "num_key_value_heads {kv} must be a multiple of tp, or tp a multiple of it"
        ));
    }
    if !c.intermediate_size.is_multiple_of(tp) {
        return Some(format!(
            "intermediate_size {} is not a multiple of it",
            c.intermediate_size
        ));
    }
    None
}

/// Every tp size the model allows (all divide num_attention_heads).
pub fn allowed_tp_sizes(c: &NemotronConfig) -> Vec<usize> {
    (1..=c.num_attention_heads)
        .filter(|&tp| tp_violation(tp, c).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_tensor_split() {
        let p = Parallelism { tp: 1, pp: 3 };
        let ranges: Vec<_> = (0..3).map(|r| p.layers(32, r)).collect();
        assert_eq!(ranges, vec![0..11, 11..22, 22..32]);
        let p = Parallelism { tp: 1, pp: 2 };
        assert_eq!((p.layers(3, 0), p.layers(3, 1)), (0..2, 2..3));
    }

    #[test]
    fn minitron_8b_tp_sizes() {
        let c = NemotronConfig {
            vocab_size: 256000,
            hidden_size: 4096,
            intermediate_size: 16384,
            num_hidden_layers: 32,
            num_attention_heads: 48,
            num_key_value_heads: 8,
            head_dim: 128,
            max_position_embeddings: 4096,
            ..NemotronConfig::tiny()
        };
        // 48 heads, 8 kv heads, F = 16384 = 2^14: 3, 6, 12, 24, 48 break kv/F rules.
        assert_eq!(allowed_tp_sizes(&c), vec![1, 2, 4, 8, 16]);
        let e = Parallelism { tp: 3, pp: 1 }.validate(&c).unwrap_err().to_string();
        assert!(
            e.contains("num_key_value_heads 8") && e.contains("1, 2, 4, 8, 16"),
            "{e}"
        );
        let e = Parallelism { tp: 1, pp: 33 }
            .validate(&c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("32 layers"), "{e}");
    }
}
