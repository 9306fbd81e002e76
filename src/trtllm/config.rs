//! `config.json` files: the checkpoint config that `trtllm-build` reads for a
//! Nemotron model (exactly the keys the spec lists, nothing else), and the
//! one reader that tells a directory's kind (Hugging Face model, checkpoint,
//! engine) from its config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DType;
use crate::error::{Error, Result};
use crate::hf::config::NemotronConfig;
use crate::json_file;
use crate::trtllm::mapping::Parallelism;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingConfig {
    pub world_size: usize,
    pub tp_size: usize,
    pub pp_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationConfig {
    pub quant_algo: Option<String>,
    pub kv_cache_quant_algo: Option<String>,
}

/// Field order follows the spec, so the file reads like TensorRT-LLM's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrtllmConfig {
    pub architecture: String,
    pub dtype: DType,
    pub logits_dtype: DType,
    /// Unpadded; lm_head rows are padded to a multiple of tp in the tensors only.
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_size: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub norm_epsilon: f64,
    pub position_embedding_type: String,
    pub rotary_base: f64,
    pub rotary_pct: f64,
    pub max_position_embeddings: usize,
    pub gpt_variant: String,
    pub bias: bool,
    pub use_parallel_embedding: bool,
    pub embedding_sharding_dim: usize,
    pub mapping: MappingConfig,
    pub quantization: QuantizationConfig,
}

pub const ARCHITECTURE: &str = "NemotronForCausalLM";
/// The config file of every kind of model directory.
pub const CONFIG_FILE: &str = "config.json";

impl TrtllmConfig {
    pub fn new(hf: &NemotronConfig, dtype: DType, par: Parallelism) -> Self {
        TrtllmConfig {
            architecture: ARCHITECTURE.into(),
            dtype,
            logits_dtype: DType::F32,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads,
            head_size: hf.head_dim,
            intermediate_size: hf.intermediate_size,
            hidden_act: "squared-relu".into(),
            norm_epsilon: hf.norm_eps,
            position_embedding_type: "rope_gpt_neox".into(),
            rotary_base: hf.rope_theta,
            rotary_pct: hf.partial_rotary_factor,
            max_position_embeddings: hf.max_position_embeddings,
            gpt_variant: "nemotron".into(),
            bias: false,
            use_parallel_embedding: false,
            embedding_sharding_dim: 0,
            mapping: MappingConfig {
                world_size: par.world_size(),
                tp_size: par.tp,
                pp_size: par.pp,
            },
            quantization: QuantizationConfig {
                quant_algo: None,
                kv_cache_quant_algo: None,
            },
        }
    }
}

impl TrtllmConfig {
    /// Reads `dir/config.json` as a checkpoint config.
    pub fn read(dir: &Path) -> Result<Self> {
        json_file::read(&dir.join(CONFIG_FILE))
    }

    /// The model dimensions this checkpoint describes (lm_head always stored, so untied).
    pub fn model_config(&self) -> NemotronConfig {
        NemotronConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.head_size,
            max_position_embeddings: self.max_position_embeddings,
            norm_eps: self.norm_epsilon,
            rope_theta: self.rotary_base,
            partial_rotary_factor: self.rotary_pct,
            tie_word_embeddings: false,
            dtype: Some(self.dtype),
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    pub fn parallelism(&self) -> Parallelism {
        Parallelism {
            tp: self.mapping.tp_size,
            pp: self.mapping.pp_size,
        }
    }
}

/// What a directory's `config.json` describes, told by the keys each kind has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// `pretrained_config` + `build_config`, as `trtllm-build` writes.
    Engine,
    /// `architecture` + `mapping`, as `convert` writes.
    Checkpoint,
    /// `model_type` or `architectures`, as transformers writes.
    HuggingFace,
    Unknown,
}

impl ConfigKind {
    pub fn of(config: &serde_json::Value) -> Self {
        let has = |k: &str| config.get(k).is_some();
        if has("pretrained_config") && has("build_config") {
            ConfigKind::Engine
        } else if has("architecture") && has("mapping") {
            ConfigKind::Checkpoint
        } else if has("model_type") || has("architectures") {
            ConfigKind::HuggingFace
        } else {
            ConfigKind::Unknown
        }
    }
}

/// A directory's `config.json`, read once, and the kind of directory it makes.
#[derive(Debug, Clone)]
pub struct DirConfig {
    pub path: PathBuf,
    pub json: Value,
    pub kind: ConfigKind,
}

/// What every kind of model directory this tool reads holds, for messages.
pub const EXPECTED_DIRS: &str = "expected a Hugging Face model directory (config.json and the weights, e.g. a \
     snapshot fetched by `hf download nvidia/Minitron-8B-Base`), a TensorRT-LLM checkpoint (made by \
     `trtllm-minitron convert`) or an engine directory (made by `trtllm-minitron build`)";

/// The error for a directory without config.json: what it holds instead.
pub fn no_config(dir: &Path) -> Error {
    let holds = match crate::staging::contents(dir) {
        Ok(None) => "the directory is empty".to_string(),
        Ok(Some(names)) => format!("it has {names}"),
        Err(e) => e.to_string(),
    };
    Error::Unrecognised {
        path: dir.to_path_buf(),
        problem: format!("no config.json ({holds}); {EXPECTED_DIRS}"),
    }
}

impl DirConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() && dir.is_dir() {
            return Err(no_config(dir));
        }
        let json: Value = json_file::read(&path)?;
        Ok(DirConfig {
            kind: ConfigKind::of(&json),
            path,
            json,
        })
    }

    /// The config as a TensorRT-LLM checkpoint's.
    pub fn checkpoint(&self) -> Result<TrtllmConfig> {
        json_file::decode(&self.json, &self.path)
    }

    /// The dtype the config states: a checkpoint's `dtype`, an engine's
    /// `pretrained_config.dtype`, a Hugging Face model's `torch_dtype`.
    pub fn dtype(&self) -> Result<DType> {
        let v = &self.json;
        let name = v
            .get("dtype")
            .or_else(|| v.pointer("/pretrained_config/dtype"))
            .or_else(|| v.get("torch_dtype"))
            .and_then(|d| d.as_str());
        name.and_then(DType::parse).ok_or_else(|| Error::ConfigField {
            path: self.path.clone(),
            field: "dtype".into(),
            problem: format!("expected bfloat16, float16 or float32, found {name:?}"),
        })
    }
}
