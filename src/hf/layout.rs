//! The tensors a Nemotron checkpoint must hold, checked against its config
//! before anything is written.

use std::collections::BTreeSet;

use crate::DType;
use crate::error::{Error, Result};
use crate::hf::config::NemotronConfig;
use crate::hf::weights::WeightStore;

pub const EMBEDDING: &str = "model.embed_tokens.weight";
pub const LM_HEAD: &str = "lm_head.weight";
pub const FINAL_NORM_WEIGHT: &str = "model.norm.weight";
pub const FINAL_NORM_BIAS: &str = "model.norm.bias";

/// `model.layers.{layer}.{suffix}`.
pub fn layer_tensor(layer: usize, suffix: &str) -> String {
    format!("model.layers.{layer}.{suffix}")
}

/// Every tensor the model needs, with its shape.
pub fn expected_tensors(c: &NemotronConfig) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let mut out = vec![(EMBEDDING.to_string(), vec![c.vocab_size, h])];
    for l in 0..c.num_hidden_layers {
        let mut add = |suffix: &str, shape: Vec<usize>| out.push((layer_tensor(l, suffix), shape));
        add("self_attn.q_proj.weight", vec![c.q_rows(), h]);
        add("self_attn.k_proj.weight", vec![c.kv_rows(), h]);
        add("self_attn.v_proj.weight", vec![c.kv_rows(), h]);
        add("self_attn.o_proj.weight", vec![h, c.q_rows()]);
        add("mlp.up_proj.weight", vec![f, h]);
        add("mlp.down_proj.weight", vec![h, f]);
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            add(&format!("{norm}.weight"), vec![h]);
            add(&format!("{norm}.bias"), vec![h]);
        }
    }
    out.push((FINAL_NORM_WEIGHT.to_string(), vec![h]));
    out.push((FINAL_NORM_BIAS.to_string(), vec![h]));
    if !c.tie_word_embeddings {
        out.push((LM_HEAD.to_string(), vec![c.vocab_size, h]));
    }
    out
}

/// Buffers some exporters save that carry no weights.
fn is_ignorable(name: &str) -> bool {
    name.ends_with(".rotary_emb.inv_freq")
}

/// Checks that the store holds exactly the model's tensors with the config's
/// shapes and one floating dtype, and returns that dtype.
pub fn check_weights(
    c: &NemotronConfig,
    store: &WeightStore,
    config_path: &std::path::Path,
) -> Result<DType> {
    let expected = expected_tensors(c);
    let mut source_dtype = c.dtype;
    for (name, shape) in &expected {
        let Some(t) = store.get(name) else {
            return Err(Error::Weights {
                dir: store.dir.clone(),
                problem: format!(
                    "tensor `{name}` (shape {shape:?}) is missing from the weight files ({})",
                    store.format.describe()
                ),
            });
        };
        if t.shape != shape.as_slice() {
            return Err(Error::Tensor {
                path: t.path.to_path_buf(),
                tensor: name.clone(),
                problem: format!(
                    "has shape {:?}, but {} implies {shape:?}",
                    t.shape,
                    config_path.display()
                ),
            });
        }
        match source_dtype {
            None => source_dtype = Some(t.dtype),
            Some(d) if d != t.dtype => {
                let origin = if c.dtype.is_some() {
                    format!("{} declares {d}", config_path.display())
                } else {
                    format!("the other tensors are {d}")
                };
                return Err(Error::Tensor {
                    path: t.path.to_path_buf(),
                    tensor: name.clone(),
                    problem: format!("is {}, but {origin}", t.dtype),
                });
            }
            Some(_) => {}
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let tied_head = c.tie_word_embeddings.then_some(LM_HEAD);
    for name in store.tensors.keys() {
        if known.contains(name.as_str()) || is_ignorable(name) || tied_head == Some(name.as_str()) {
            continue;
        }
        let t = store
            .get(name)
            .map(|t| t.path.display().to_string())
            .unwrap_or_default();
        return Err(Error::Tensor {
            path: t.into(),
            tensor: name.clone(),
            problem: format!(
                "is not part of a NemotronForCausalLM with {} layers (unexpected tensor; is this the right config.json?)",
                c.num_hidden_layers
            ),
        });
    }
    // Unreachable with a non-empty expected list, but keeps the function total.
    source_dtype.ok_or_else(|| Error::Weights {
        dir: store.dir.clone(),
        problem: "no tensors".into(),
    })
}
